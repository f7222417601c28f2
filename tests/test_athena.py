"""Athena: the events table, the vendor views and the saved queries of template.yaml.

Static part: every DDL statement and query parses as Athena SQL (sqlglot), the views are stored the way Athena
stores views, and the saved queries take their documented parameters and prune on `dt`.

Live part: the four collectors archive every simulator's events into the stack on moto; the archive is mirrored
to a directory and queried with DuckDB through the very SQL of the template. Each saved query's rows, and each
view's typed columns, are checked against what the simulators served, read straight from their events.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlglot
from conftest import Clock, Pauses, check_archive
from sqlglot import exp
from worlds import VENDORS, world_of

from auditlake import http, timeutil
from auditlake.records import record_line
from auditlake_local import athena
from auditlake_local.simulators import asana, ashby, clickup, make
from auditlake_local.simulators.people import MAX_PEOPLE, roster
from auditlake_local.stack import LocalStack
from auditlake_local.template import load_template
from auditlake_local.vendors import VENDORS as LOCAL_VENDORS
from auditlake_vendors import adapter as vendor_adapter

TEMPLATE = load_template()
RESOURCES = TEMPLATE["Resources"]
PROJECTED_VENDORS = RESOURCES["EventsTable"]["Properties"]["TableInput"]["Parameters"]["projection.vendor.values"]
VENDOR_NAMES = PROJECTED_VENDORS.split(",")

# Presto types of a view's definition, and what Glue (Hive) and DuckDB call them.
HIVE_TYPE = {"varchar": "string", "timestamp": "timestamp", "integer": "int", "bigint": "bigint",
             "boolean": "boolean", "array(varchar)": "array<string>"}
DUCKDB_TYPE = {"varchar": "VARCHAR", "timestamp": "TIMESTAMP", "integer": "INTEGER", "bigint": "BIGINT",
               "boolean": "BOOLEAN", "array(varchar)": "VARCHAR[]"}
SAVED = {"failed-logins", "admin-role-and-permission-changes", "api-keys-and-tokens-created-or-revoked",
         "users-invited-deprovisioned-or-removed", "everything-one-person-did", "events-per-vendor-per-day"}


# ------------------------------------------------------------------------------------------------ static


def test_events_table_ddl_parses_as_athena() -> None:
    ddl = athena.events_table_ddl("my-archive")
    create = sqlglot.parse_one(ddl, read="athena")
    assert isinstance(create, exp.Create) and create.kind == "TABLE"
    assert create.find(exp.ExternalProperty) is not None
    table_input = RESOURCES["EventsTable"]["Properties"]["TableInput"]
    schema = create.this
    assert schema.this.name == "events" and schema.this.db == "auditlake"
    declared = [(c["Name"], c["Type"]) for c in table_input["StorageDescriptor"]["Columns"]]
    assert [(c.name, c.args["kind"].sql("hive").lower()) for c in schema.expressions] == declared
    partitioned = create.find(exp.PartitionedByProperty)
    assert [(c.name, c.args["kind"].sql("hive").lower()) for c in partitioned.this.expressions] == [
        (k["Name"], k["Type"]) for k in table_input["PartitionKeys"]]
    assert create.find(exp.RowFormatSerdeProperty).this.name == "org.apache.hive.hcatalog.data.JsonSerDe"
    assert create.find(exp.LocationProperty).this.name == "s3://my-archive/events/"
    properties = {p.this.name: p.args["value"].name for p in create.find_all(exp.Property) if type(p) is exp.Property}
    assert properties["projection.enabled"] == "true"
    assert properties["projection.vendor.values"] == PROJECTED_VENDORS
    assert properties["storage.location.template"] == "s3://my-archive/events/vendor=${vendor}/dt=${dt}/"
    # A comment with an apostrophe survives the round trip.
    comments = [c.find(exp.CommentColumnConstraint).this.name for c in schema.expressions]
    assert comments[0] == table_input["StorageDescriptor"]["Columns"][0]["Comment"]


def test_there_is_one_view_per_vendor_and_the_ocsf_view() -> None:
    # ocsf_events (all vendors, in OCSF classes) is tested in test_ocsf.py.
    assert sorted(athena.views()) == sorted([*(f"{vendor}_events" for vendor in VENDOR_NAMES), "ocsf_events"])


@pytest.mark.parametrize("name", [f"{vendor}_events" for vendor in VENDOR_NAMES])
def test_view_is_stored_as_athena_stores_views(name: str) -> None:
    view = athena.views()[name]
    props = RESOURCES[view.logical_id]["Properties"]
    assert props["DatabaseName"] == {"Ref": "AuditDatabase"}
    table = view.table_input
    assert table["TableType"] == "VIRTUAL_VIEW"
    assert table["Parameters"] == {"presto_view": "true", "comment": "Presto View"}
    assert table["ViewExpandedText"] == "/* Presto View */"
    assert table["ViewOriginalText"].startswith("/* Presto View: ") and table["ViewOriginalText"].endswith(" */")
    # The definition resolves names in the stack's database of the default catalog.
    assert view.definition["catalog"] == "awsdatacatalog"
    assert view.definition["schema"] == TEMPLATE["Parameters"]["GlueDatabaseName"]["Default"]
    assert set(view.definition) == {"originalSql", "catalog", "schema", "columns"}
    assert table["StorageDescriptor"]["SerdeInfo"] == {}
    assert table["Description"]
    # The same columns in the definition (Presto types) and in Glue (Hive types).
    assert [c.name for c in view.glue_columns] == [c.name for c in view.columns]
    assert [c.type for c in view.glue_columns] == [HIVE_TYPE[c.type] for c in view.columns]


@pytest.mark.parametrize("name", [f"{vendor}_events" for vendor in VENDOR_NAMES])
def test_view_sql_parses_as_athena_and_selects_its_declared_columns(name: str) -> None:
    view = athena.views()[name]
    create = sqlglot.parse_one(athena.view_ddl(view), read="athena")
    assert isinstance(create, exp.Create) and create.kind == "VIEW"
    select = create.expression
    assert isinstance(select, exp.Select)
    assert select.named_selects == [c.name for c in view.columns]
    assert [t.name for t in select.find_all(exp.Table)] == ["events"]
    # Exactly one vendor's rows, and the partition column kept so queries on the view prune.
    vendor = name.removesuffix("_events")
    where = select.args["where"].this
    assert isinstance(where, exp.EQ) and where.this.name == "vendor" and where.expression.name == vendor
    assert "dt" in select.named_selects
    # The account follows the stream, and records written before the column existed (NULL) are the default's.
    selects = select.named_selects
    assert selects[selects.index("stream") + 1] == "account"
    account = select.selects[selects.index("account")].this
    assert isinstance(account, exp.Coalesce) and account.this.name == "account"
    assert [e.name for e in account.expressions] == ["default"]
    types = {c.name: c.type for c in view.columns}
    assert types["event_time"] == types["collected_at"] == "timestamp"
    # The originalSql is embedded in JSON by the template: it must not need escaping.
    assert '"' not in view.sql and "\\" not in view.sql and "\n" not in view.sql


def test_saved_queries_are_the_analysts_questions() -> None:
    assert set(athena.saved_queries()) == SAVED


@pytest.mark.parametrize("key", sorted(SAVED))
def test_saved_query_is_in_the_workgroup_and_database(key: str) -> None:
    query = athena.saved_queries()[key]
    assert query.database == {"Ref": "AuditDatabase"}
    assert query.workgroup == {"Ref": "AnalystWorkGroup"}
    assert 0 < len(query.name) <= 128 and 0 < len(query.description) <= 1024
    assert athena.saved_query(query.name) is query and athena.saved_query(query.logical_id) is query


@pytest.mark.parametrize("key", sorted(SAVED))
def test_saved_query_parses_as_athena_and_prunes_on_dt(key: str) -> None:
    query = athena.saved_queries()[key]
    tree = sqlglot.parse_one(query.sql, read="athena")
    assert isinstance(tree, exp.Query)
    # Every `?` is documented, in order, and the day range is compared with dt directly: Athena prunes only on
    # predicates it can evaluate before reading.
    assert query.parameters and athena.placeholders(query.sql) == len(query.parameters)
    assert query.parameters[-2:] == ("first_day", "last_day")
    ranges = [b for b in tree.find_all(exp.Between) if isinstance(b.this, exp.Column) and b.this.name == "dt"]
    assert len(ranges) == 1
    assert isinstance(ranges[0].args["low"], exp.Placeholder) and isinstance(ranges[0].args["high"], exp.Placeholder)
    assert {t.name for t in tree.find_all(exp.Table)} - {"daily", "bounds", "calendar", "accounts"} == {"events"}
    # Vendor names the query spells out are projected ones (a typo would silently match nothing).
    named = {eq.expression.name for eq in tree.find_all(exp.EQ)
             if isinstance(eq.this, exp.Column) and eq.this.name == "vendor" and isinstance(eq.expression, exp.Literal)}
    assert named <= set(VENDOR_NAMES)
    assert athena.to_duckdb(query.sql)
    # Every query says which account a row is of, right after the vendor; NULL (older records) is the default's.
    columns = tree.named_selects
    assert columns[columns.index("vendor") + 1] == "account"
    accounts = [c for c in tree.find_all(exp.Coalesce) if isinstance(c.this, exp.Column) and c.this.name == "account"]
    assert accounts and all([e.name for e in c.expressions] == ["default"] for c in accounts)


def test_the_gap_detector_lists_every_projected_vendor() -> None:
    tree = sqlglot.parse_one(athena.saved_queries()["events-per-vendor-per-day"].sql, read="athena")
    values = tree.find(exp.Values)
    assert sorted(literal.name for literal in values.find_all(exp.Literal)) == sorted(VENDOR_NAMES)


def test_roster_is_shared_and_unique() -> None:
    people = roster(MAX_PEOPLE)
    assert len({p.email for p in people}) == MAX_PEOPLE
    assert roster(8) == people[:8]
    now = datetime(2026, 11, 20, tzinfo=UTC)
    emails: dict[str, set[str]] = {}
    for vendor, generate, email_of in (
            ("asana", asana.generate_events, lambda e: (e.get("actor") or {}).get("email")),
            ("ashby", ashby.generate_events, lambda e: (e.get("actor") or {}).get("email")),
            ("clickup", clickup.generate_events, lambda e: e.get("userId") and e.get("userEmail")),
            ("make", make.generate_events, lambda e: (e.get("actor") or {}).get("email"))):
        emails[vendor] = {email_of(e) for e in generate(400, now - timedelta(days=1), now, seed=5)} - {None}
    staff = {p.email for p in roster(16)}
    for vendor, found in emails.items():
        assert found <= staff, vendor  # every named actor is on the roster
    assert len(set.intersection(*emails.values())) >= 8  # the same people act in every tool


def test_an_empty_archive_answers_with_no_rows(tmp_path: Path) -> None:
    connection = athena.connect(tmp_path)
    assert athena.run_sql(connection, "SELECT count(*) FROM events")[1] == [(0,)]
    for view in athena.views():
        assert athena.run_sql(connection, f"SELECT count(*) FROM {view}")[1] == [(0,)]
    columns, rows = athena.run_saved(connection, "failed-logins", ["2026-01-01", "2026-01-31"])
    assert rows == [] and columns[:3] == ["event_time", "vendor", "account"]
    assert athena.run_saved(connection, "events-per-vendor-per-day", ["2026-01-01", "2026-01-31"])[1] == []


def test_saved_query_parameters_are_checked(tmp_path: Path) -> None:
    connection = athena.connect(tmp_path)
    with pytest.raises(athena.ParameterError):
        athena.run_saved(connection, "failed-logins", ["2026-01-01"])
    with pytest.raises(athena.ParameterError):
        athena.run_saved(connection, "failed-logins", {"first_day": "2026-01-01", "day": "2026-01-02"})
    with pytest.raises(athena.UnknownQuery):
        athena.run_saved(connection, "no-such-query", [])


# ------------------------------------------------------------------------------------------------ live

EVENTS = 2400  # per vendor; enough that every question has answers in every vendor that logs such events
SEEDS = {"asana": 31, "ashby": 32, "clickup": 33, "make": 34}
QUIET = {"LOG_LEVEL": "WARNING", "POWERTOOLS_METRICS_DISABLED": "true"}


@dataclass
class Archive:
    directory: Path
    truth: dict[str, list[dict[str, Any]]]  # vendor -> every event its simulator serves
    first_day: str  # the day range the saved queries are asked about
    last_day: str
    gap_day: str  # a day on which Make has no events

    def connect(self) -> duckdb.DuckDBPyConnection:
        return athena.connect(self.directory)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    """Every vendor's simulator seeded, its collector run until caught up, the archive mirrored to a directory.

    Five whole UTC days of events, up to today. Make has none on the middle day (a gap); ClickUp serves its rows
    with ISO times first and epoch milliseconds after (its format is undocumented; both must read the same).
    """
    # The clock reads today's noon: events from midnights on fall on the same days whenever the tests run.
    real = datetime.now(UTC)
    today = datetime.combine(real.date(), datetime.min.time(), UTC)
    clock = Clock(offset=today + timedelta(hours=12) - real)

    def day(back: int) -> datetime:  # midnight UTC, `back` days ago
        return today - timedelta(days=back)

    with pytest.MonkeyPatch.context() as patch, LocalStack.start() as stack:
        patch.setattr(timeutil, "now", clock.now)
        patch.setattr(http, "pause", Pauses())
        start, end = day(5), day(0)
        gap_start, gap_end = day(3), day(2)
        truth: dict[str, list[dict[str, Any]]] = {}
        for vendor in VENDORS:
            with world_of(vendor, stack, clock.now) as world:
                generate, seed = world.local.generate_events, SEEDS[vendor]
                if vendor == "make":
                    world.simulator.add_events(generate(EVENTS // 2, start, gap_start, seed))
                    world.simulator.add_events(generate(EVENTS // 2, gap_end, end, seed + 100))
                elif vendor == "clickup":
                    world.simulator.row_ids = True  # the views are checked event by event, by id
                    middle = day(2) - timedelta(hours=12)
                    world.simulator.add_events(generate(EVENTS // 2, start, middle, seed))
                    world.simulator.time_format = "epoch_ms"
                    world.simulator.add_events(generate(EVENTS // 2, middle, end, seed + 100))
                else:
                    world.simulator.add_events(generate(EVENTS, start, end, seed))
                for _ in range(10):
                    if stack.invoke(world.function_id, environment=QUIET)["status"] == "ok":
                        break
                    clock.advance()
                served = world.simulator.ground_truth()
                result = check_archive(stack, vendor, served)
                assert (result.events, result.missing, result.duplicates, result.unexpected) == (
                    len(served), 0, 0, 0), f"{vendor}: the archive is not the simulator's events: {result}"
                truth[vendor] = list(served.values())
        directory = tmp_path_factory.mktemp("archive")
        assert athena.mirror_archive(stack, directory) > 0
    yield Archive(directory, truth, first_day=day(4).date().isoformat(), last_day=day(1).date().isoformat(),
                  gap_day=gap_start.date().isoformat())


# What the simulators' events say, read from the vendors' own fields (not through the collectors' adapters).

def event_id(vendor: str, event: dict[str, Any]) -> str:
    return str(event[LOCAL_VENDORS[vendor].id_field])


def iso_or_ms(value: Any) -> datetime | None:
    """A vendor's time (ISO 8601 or epoch milliseconds) as the naive UTC timestamp Athena shows."""
    if value is None:
        return None
    if isinstance(value, int):
        return datetime(1970, 1, 1) + timedelta(milliseconds=value)
    return datetime.fromisoformat(value).astimezone(UTC).replace(tzinfo=None)


def event_time(vendor: str, event: dict[str, Any]) -> datetime:
    moment = iso_or_ms(event[{"asana": "created_at", "ashby": "createdAt", "clickup": "startTime",
                              "make": "triggeredAt"}[vendor]])
    assert moment is not None
    return moment


def action(vendor: str, event: dict[str, Any]) -> str:
    return event[{"asana": "event_type", "ashby": "category", "clickup": "eventType", "make": "eventName"}[vendor]]


def actor_email(vendor: str, event: dict[str, Any]) -> str | None:
    if vendor == "clickup":
        return event.get("userEmail")
    return (event.get("actor") or {}).get("email")


def path(event: dict[str, Any], *keys: str | int) -> Any:
    value: Any = event
    for key in keys:
        if isinstance(key, int):
            value = value[key] if isinstance(value, list) and len(value) > key else None
        else:
            value = value.get(key) if isinstance(value, dict) else None
    return value


def text(value: Any) -> str | None:
    """A JSON scalar as Athena's json_extract_scalar returns it."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def in_range(archive: Archive, vendor: str, event: dict[str, Any]) -> bool:
    return archive.first_day <= event_time(vendor, event).date().isoformat() <= archive.last_day


def expected(archive: Archive, row: Callable[[str, dict[str, Any]], tuple[Any, ...] | None]) -> list[tuple[Any, ...]]:
    """Rows (event_time, vendor, account, *selected, event_id) for the events `row` selects in the query's day
    range, ordered as the queries order them."""
    rows = []
    for vendor, events in archive.truth.items():
        for event in events:
            if in_range(archive, vendor, event) and (selected := row(vendor, event)) is not None:
                rows.append((event_time(vendor, event), vendor, event_id(vendor, event), selected))
    # Each vendor has one account here, its default one.
    return [(moment, vendor, "default", *selected, identifier)
            for moment, vendor, identifier, selected in sorted(rows)]


def ask(archive: Archive, key: str, columns: list[str], *parameters: str) -> list[tuple[Any, ...]]:
    names, rows = athena.run_saved(archive.connect(), key, [*parameters, archive.first_day, archive.last_day])
    assert set(columns) <= set(names), names
    return [tuple(row[names.index(c)] for c in ["event_time", "vendor", "account", *columns, "event_id"])
            for row in rows]


def vendors_of(rows: list[tuple[Any, ...]]) -> set[str]:
    return {row[1] for row in rows}


def test_failed_logins(archive: Archive) -> None:
    def row(vendor: str, event: dict[str, Any]) -> tuple[Any, ...] | None:
        if vendor == "asana" and event["event_type"] == "user_login_failed":
            return (event["actor"].get("email"), path(event, "context", "client_ip_address"),
                    path(event, "details", "method", 0))
        if vendor == "ashby" and event["category"] == "UserLoginFailed":
            return (event["actor"].get("email") or event["details"].get("attemptedEmail"),
                    event["details"].get("ipAddress"), event["details"].get("reason"))
        if vendor == "clickup" and event["eventType"] == "USER_LOGIN" and event["eventStatus"] in {
                "failed", "error", "system_error"}:
            return event["userEmail"], event.get("clientIp"), event["title"]
        return None

    want = expected(archive, row)
    assert vendors_of(want) == {"asana", "ashby", "clickup"}  # Make logs no sign-ins
    assert any(r[3] and r[3].endswith("@example.net") for r in want if r[1] == "ashby")  # an unknown user
    assert ask(archive, "failed-logins", ["login", "source_ip", "detail"]) == want


ADMIN_CHANGES = {
    "asana": {"user_workspace_admin_role_changed", "workspace_associated_email_domain_added",
              "workspace_require_app_approvals_of_type_changed", "team_privacy_settings_changed"},
    "ashby": {"UserPermissionsChanged", "SsoConfigurationChanged"},
    "clickup": {"CHANGE_USER_ROLE", "CHANGE_ROLE_PERMISSIONS", "CUSTOM_ROLE_CREATED", "CUSTOM_ROLE_UPDATED",
                "CUSTOM_ROLE_DELETED", "CHANGE_2FA_POLICY", "CHANGE_SSO_POLICY", "SSO_CONFIG_UPDATED",
                "ADVANCED_SETTINGS_UPDATED", "BYPASS_SSO_ENABLED", "CHAT_RETENTION_SETTING_UPDATED",
                "CHAT_RETENTION_SETTING_DELETED", "SPACE_ACCESS_UPDATED", "SPACE_PUBLIC_PRIVATE_SETTING_UPDATED",
                "FOLDER_ACCESS_UPDATED", "LIST_ACCESS_UPDATED", "LIST_PUBLIC_PRIVATE_SETTING_UPDATED",
                "FIELD_MEMBER_PERMISSION_SET", "FIELD_MEMBER_PERMISSION_REMOVED", "ACCESS_REQUEST_RESOLVED",
                "TEAM_MEMBER_ADDED", "TEAM_MEMBER_REMOVED"},
    "make": {"user_role_changed", "user_team_role_changed"},
}


def test_admin_role_and_permission_changes(archive: Archive) -> None:
    def row(vendor: str, event: dict[str, Any]) -> tuple[Any, ...] | None:
        if action(vendor, event) not in ADMIN_CHANGES[vendor]:
            return None
        old = new = target = None
        if vendor == "asana":
            old, new, target = path(event, "details", "old_value"), path(event, "details", "new_value"), \
                path(event, "resource", "gid")
        elif vendor == "ashby":
            old, new, target = path(event, "details", "oldValue"), path(event, "details", "newValue"), \
                path(event, "target", "id")
        elif vendor == "make":
            target = event["targetId"]
        return action(vendor, event), actor_email(vendor, event), target, text(old), text(new)

    want = expected(archive, row)
    assert vendors_of(want) == set(VENDOR_NAMES)
    assert {r[1] for r in want if r[6] is not None} == {"asana", "ashby"}  # the values before, where logged
    assert ask(archive, "admin-role-and-permission-changes",
               ["action", "actor_email", "target_id", "old_value", "new_value"]) == want


def test_api_keys_and_tokens(archive: Archive) -> None:
    keys = {"asana": {"service_account_created"}, "ashby": {"ApiKeyCreated", "ApiKeyRevoked"},
            "make": {"key_created", "key_deleted"}}

    def row(vendor: str, event: dict[str, Any]) -> tuple[Any, ...] | None:
        name = action(vendor, event)
        if name not in keys.get(vendor, set()):
            return None
        change = "created" if name.lower().endswith("created") else "revoked"
        key_id, key_name, permissions = {
            "asana": lambda: (path(event, "resource", "gid"), path(event, "resource", "name"), None),
            "ashby": lambda: (path(event, "target", "id"), path(event, "target", "name"),
                              path(event, "details", "permissions")),
            "make": lambda: (event["targetId"], None, None),
        }[vendor]()
        return (change, name, actor_email(vendor, event), key_id, key_name,
                None if permissions is None else json.dumps(permissions, separators=(",", ":")))

    want = expected(archive, row)
    assert vendors_of(want) == {"asana", "ashby", "make"}  # ClickUp does not log API tokens
    assert {r[3] for r in want} == {"created", "revoked"}
    assert ask(archive, "api-keys-and-tokens-created-or-revoked",
               ["change", "action", "actor_email", "key_id", "key_name", "permissions"]) == want


def test_users_invited_deprovisioned_or_removed(archive: Archive) -> None:
    changes = {
        "asana": {"user_invited": "invited", "user_deprovisioned": "deprovisioned"},
        "ashby": {"UserInvited": "invited", "UserDeactivated": "deprovisioned"},
        "clickup": {"INVITE_TO_WORKSPACE": "invited", "SCIM_PROVISION": "provisioned",
                    "SCIM_DEPROVISION": "deprovisioned", "REMOVE_FROM_WORKSPACE": "removed", "LEAVE_WORKSPACE": "left"},
        "make": {"user_invited": "invited", "user_removed": "removed"},
    }

    def row(vendor: str, event: dict[str, Any]) -> tuple[Any, ...] | None:
        name = action(vendor, event)
        if name not in changes[vendor]:
            return None
        user_id, user_email = {
            "asana": lambda: (path(event, "resource", "gid"), path(event, "resource", "email")),
            "ashby": lambda: (path(event, "target", "id"), path(event, "details", "email")),
            "clickup": lambda: (None, event["userEmail"] if name == "LEAVE_WORKSPACE" else None),
            "make": lambda: (event["targetId"], None),
        }[vendor]()
        return changes[vendor][name], name, actor_email(vendor, event), user_id, user_email

    want = expected(archive, row)
    assert vendors_of(want) == set(VENDOR_NAMES)
    assert {"invited", "deprovisioned", "removed"} <= {r[3] for r in want}
    assert ask(archive, "users-invited-deprovisioned-or-removed",
               ["change", "action", "actor_email", "user_id", "user_email"]) == want


def test_everything_one_person_did(archive: Archive) -> None:
    per_vendor = Counter((actor_email(vendor, event), vendor) for vendor, events in archive.truth.items()
                         for event in events if in_range(archive, vendor, event) and actor_email(vendor, event))
    everywhere = [email for email in {e for e, _ in per_vendor}
                  if all(per_vendor[(email, vendor)] for vendor in VENDOR_NAMES)]
    assert everywhere, "the simulators share no person"
    person = max(sorted(everywhere), key=lambda email: sum(per_vendor[(email, vendor)] for vendor in VENDOR_NAMES))

    def row(vendor: str, event: dict[str, Any]) -> tuple[Any, ...] | None:
        return (action(vendor, event),) if actor_email(vendor, event) == person else None

    want = expected(archive, row)
    assert vendors_of(want) == set(VENDOR_NAMES)
    assert ask(archive, "everything-one-person-did", ["action"], person.upper()) == want


def test_events_per_vendor_per_day(archive: Archive) -> None:
    counts = Counter((vendor, event_time(vendor, event).date().isoformat())
                     for vendor, events in archive.truth.items() for event in events
                     if in_range(archive, vendor, event))
    days = sorted({d for _, d in counts})
    first, last = date.fromisoformat(days[0]), date.fromisoformat(days[-1])
    calendar = [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]
    want = [(vendor, "default", d, counts[(vendor, d)]) for vendor in sorted(VENDOR_NAMES) for d in calendar]
    assert (archive.gap_day in calendar) and counts[("make", archive.gap_day)] == 0  # the gap is there to find
    columns, rows = athena.run_saved(archive.connect(), "events-per-vendor-per-day",
                                     {"first_day": archive.first_day, "last_day": archive.last_day})
    assert columns == ["vendor", "account", "dt", "events"]
    assert rows == want
    assert ("make", "default", archive.gap_day, 0) in rows


def test_parameters_may_be_given_as_athena_literals(archive: Archive) -> None:
    connection = archive.connect()
    plain = athena.run_saved(connection, "failed-logins", [archive.first_day, archive.last_day])
    quoted = athena.run_saved(connection, "failed-logins", [f"'{archive.first_day}'", f"'{archive.last_day}'"])
    assert plain == quoted and plain[1]


def test_events_table_reads_the_archive_as_written(archive: Archive) -> None:
    _, rows = athena.run_sql(archive.connect(), "SELECT vendor, count(*) AS n, count(DISTINCT event_id) AS ids "
                                                "FROM events GROUP BY vendor ORDER BY vendor")
    assert rows == [(vendor, len(archive.truth[vendor]), len(archive.truth[vendor])) for vendor in sorted(VENDORS)]
    _, raws = athena.run_sql(archive.connect(), "SELECT vendor, raw FROM events")
    served = Counter((vendor, json.dumps(event, sort_keys=True)) for vendor, events in archive.truth.items()
                     for event in events)
    assert Counter((vendor, json.dumps(json.loads(raw), sort_keys=True)) for vendor, raw in raws) == served


# Every view starts with the table's columns (times as timestamps), ends with raw and dt, and has the vendor's own
# columns in between; here each column a test reads from the vendor's events.
COMMON = ["event_id", "event_time", "stream", "account", "action", "category", "actor_id", "actor_email",
          "actor_name", "actor_type", "target_id", "target_type", "target_name", "source_ip", "user_agent", "outcome",
          "collected_at"]
VIEW_FIELDS: dict[str, dict[str, Callable[[dict[str, Any]], Any]]] = {
    "asana": {
        "event_time": lambda e: event_time("asana", e),
        "action": lambda e: e["event_type"],
        "context_type": lambda e: path(e, "context", "context_type"),
        "api_authentication_method": lambda e: path(e, "context", "api_authentication_method"),
        "oauth_app_name": lambda e: path(e, "context", "oauth_app_name"),
        "rule_name": lambda e: path(e, "context", "rule_name"),
        "on_behalf_of_user_id": lambda e: text(path(e, "context", "on_behalf_of_user_id")),
        "resource_subtype": lambda e: path(e, "resource", "resource_subtype"),
        "resource_email": lambda e: path(e, "resource", "email"),
        "group_name": lambda e: path(e, "details", "group", "name"),
        "old_value": lambda e: text(path(e, "details", "old_value")),
        "new_value": lambda e: text(path(e, "details", "new_value")),
        "login_method": lambda e: path(e, "details", "method", 0),
    },
    "ashby": {
        "event_time": lambda e: event_time("ashby", e),
        "action": lambda e: e["category"],
        "authentication_method": lambda e: path(e, "details", "authenticationMethod"),
        "failure_reason": lambda e: path(e, "details", "reason"),
        "attempted_email": lambda e: path(e, "details", "attemptedEmail"),
        "changed_field": lambda e: path(e, "details", "field"),
        "old_value": lambda e: text(path(e, "details", "oldValue")),
        "new_value": lambda e: text(path(e, "details", "newValue")),
        "invited_email": lambda e: path(e, "details", "email"),
        "invited_role": lambda e: path(e, "details", "role"),
        "api_key_permissions": lambda e: path(e, "details", "permissions"),
        "allows_confidential_access": lambda e: path(e, "details", "allowsConfidentialAccess"),
    },
    "clickup": {
        "event_time": lambda e: event_time("clickup", e),
        "action": lambda e: e["eventType"],
        "workspace_id": lambda e: str(e["workspaceId"]),
        "title": lambda e: e["title"],
        "event_status": lambda e: e["eventStatus"],
        "user_role": lambda e: e["userRole"],
        "user_role_name": lambda e: {1: "owner", 2: "admin", 3: "member", 4: "guest"}.get(e["userRole"]),
        "end_time": lambda e: iso_or_ms(e.get("endTime")),
    },
    "make": {
        "event_time": lambda e: event_time("make", e),
        "action": lambda e: e["eventName"],
        "organization_id": lambda e: e["organizationId"],
        "organization_name": lambda e: e["organization"]["name"],
        "team_id": lambda e: path(e, "team", "id"),
        "team_name": lambda e: path(e, "team", "name"),
        "version_from": lambda e: path(e, "version", "from"),
        "version_to": lambda e: path(e, "version", "to"),
        "actor_anonymized": lambda e: bool(path(e, "actor", "anonymized")),
        "created_at": lambda e: iso_or_ms(e["createdAt"]),
    },
}


@pytest.mark.parametrize("vendor", VENDOR_NAMES)
def test_vendor_view_has_typed_columns_and_only_its_vendors_events(archive: Archive, vendor: str) -> None:
    view = athena.views()[f"{vendor}_events"]
    connection = archive.connect()
    described = connection.execute(f"DESCRIBE {view.name}").fetchall()
    assert [(name, kind) for name, kind, *_ in described] == [(c.name, DUCKDB_TYPE[c.type]) for c in view.columns]
    names = [c.name for c in view.columns]
    assert names[: len(COMMON)] == COMMON and names[-2:] == ["raw", "dt"]
    assert names[len(COMMON): -2] == [name for name in VIEW_FIELDS[vendor] if name not in COMMON]

    columns, rows = athena.run_sql(connection, f"SELECT * FROM {view.name}")
    by_id = {row[columns.index("event_id")]: dict(zip(columns, row, strict=True)) for row in rows}
    events = {event_id(vendor, event): event for event in archive.truth[vendor]}
    assert len(rows) == len(by_id) == len(events) and by_id.keys() == events.keys()
    for identifier, event in events.items():
        got = by_id[identifier]
        assert json.loads(got["raw"]) == event
        assert got["dt"] == event_time(vendor, event).date().isoformat()
        assert isinstance(got["collected_at"], datetime)
        assert got["account"] == "default"
        for name, read in VIEW_FIELDS[vendor].items():
            assert got[name] == read(event), (identifier, name)
    # Every typed column holds values somewhere, so the checks above compared more than NULLs.
    for name in VIEW_FIELDS[vendor]:
        assert any(row[name] is not None for row in by_id.values()), name
    if vendor == "clickup":  # both of ClickUp's time formats were read
        assert {isinstance(e.get("endTime"), int) for e in events.values()} == {True, False}


# ------------------------------------------------------------------------------------------------ accounts
# Two Make organizations in one archive: the default one's records as they were written before the `account`
# column existed (no such key), a second one's (`us-sub`) with it, on four whole UTC days before today.

ORGANIZATIONS = {"default": 4187, "us-sub": 4190}


@dataclass
class AccountsArchive:
    directory: Path
    accounts: dict[str, str]  # event id -> the account it was archived for
    events: dict[str, dict[str, Any]]  # event id -> the vendor's event
    days: list[date]
    gap: date  # a day on which the second organization has no events

    def connect(self) -> duckdb.DuckDBPyConnection:
        return athena.connect(self.directory)

    @property
    def day_range(self) -> list[str]:
        """The saved queries' first_day and last_day: every day of the archive."""
        return [self.days[0].isoformat(), self.days[-1].isoformat()]

    def ids(self, account: str) -> set[str]:
        return {identifier for identifier, owner in self.accounts.items() if owner == account}


def old_record_line(**fields: Any) -> bytes:
    """A record as written before the account column: today's line without its `account` member."""
    line = record_line(**fields)
    old = line.replace(b'"account":"default",', b"", 1)
    assert old != line and "account" not in json.loads(old)
    return old


@pytest.fixture(scope="module")
def accounts_archive(tmp_path_factory: pytest.TempPathFactory) -> AccountsArchive:
    directory = tmp_path_factory.mktemp("accounts")
    adapter = vendor_adapter("make")({"token": "unused", "organization_id": "0", "zone": "eu1"}, http=None,
                                     page_size=100)  # normalise makes no requests
    today = datetime.combine(datetime.now(UTC).date(), datetime.min.time(), UTC)
    start, end, gap = today - timedelta(days=5), today - timedelta(days=1), today - timedelta(days=3)
    served = {
        "default": make.generate_events(300, start, end, seed=41, organization_id=ORGANIZATIONS["default"]),
        "us-sub": make.generate_events(150, start, gap, seed=42, organization_id=ORGANIZATIONS["us-sub"])
        + make.generate_events(150, gap + timedelta(days=1), end, seed=43, organization_id=ORGANIZATIONS["us-sub"]),
    }
    accounts: dict[str, str] = {}
    events: dict[str, dict[str, Any]] = {}
    for account, served_events in served.items():
        stream = str(ORGANIZATIONS[account])
        days: dict[date, list[bytes]] = {}
        for event in served_events:
            identifier, moment = adapter.event_id(event), adapter.event_time(event)
            fields = {"event_id": identifier, "event_time": moment, "stream": stream,
                      "normalised": adapter.normalise(event, stream), "collected_at": timeutil.to_iso(today),
                      "raw": event}
            line = old_record_line(**fields) if account == "default" else record_line(**fields, account=account)
            days.setdefault(moment.date(), []).append(line)
            accounts[identifier], events[identifier] = account, event
        for day, lines in days.items():
            target = directory / f"events/vendor=make/dt={day.isoformat()}/make-{stream}_p0.json.gz"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(gzip.compress(b"".join(lines)))
    assert len(accounts) == sum(len(e) for e in served.values())  # no event id is in both organizations
    days = [(start + timedelta(days=n)).date() for n in range((end - start).days)]
    return AccountsArchive(directory, accounts, events, days, gap.date())


def test_records_without_the_account_column_read_as_the_default_account(accounts_archive: AccountsArchive) -> None:
    connection = accounts_archive.connect()
    # The table shows what is stored: no account in the older objects.
    _, stored = athena.run_sql(connection, "SELECT event_id, account FROM events")
    assert dict(stored) == {identifier: None if account == "default" else account
                            for identifier, account in accounts_archive.accounts.items()}
    # The view says whose they are.
    _, viewed = athena.run_sql(connection, "SELECT event_id, account, stream FROM make_events")
    assert {identifier: (account, stream) for identifier, account, stream in viewed} == {
        identifier: (account, str(ORGANIZATIONS[account])) for identifier, account in accounts_archive.accounts.items()}


def test_an_account_is_filterable(accounts_archive: AccountsArchive) -> None:
    connection = accounts_archive.connect()
    for account in ORGANIZATIONS:
        _, rows = athena.run_sql(connection, "SELECT event_id FROM make_events "
                                             "WHERE account = ? AND dt BETWEEN ? AND ?",
                                 [account, *accounts_archive.day_range])
        assert {identifier for (identifier,) in rows} == accounts_archive.ids(account)
    _, rows = athena.run_sql(connection, "SELECT event_id FROM events WHERE vendor = 'make' AND account = 'us-sub'")
    assert {identifier for (identifier,) in rows} == accounts_archive.ids("us-sub")


def test_the_gap_detector_counts_each_account(accounts_archive: AccountsArchive) -> None:
    counts = Counter((account, event_time("make", accounts_archive.events[identifier]).date())
                     for identifier, account in accounts_archive.accounts.items())
    assert counts[("us-sub", accounts_archive.gap)] == 0
    assert all(counts[("default", d)] for d in accounts_archive.days)
    days = [d.isoformat() for d in accounts_archive.days]
    # Every vendor's default account is listed (with zeros: nothing archived), and each account with events.
    want = [(vendor, "default", d, 0) for vendor in sorted(VENDOR_NAMES) if vendor != "make" for d in days]
    want += [("make", account, d.isoformat(), counts[(account, d)]) for account in sorted(ORGANIZATIONS)
             for d in accounts_archive.days]
    columns, rows = athena.run_saved(accounts_archive.connect(), "events-per-vendor-per-day",
                                     accounts_archive.day_range)
    assert columns == ["vendor", "account", "dt", "events"]
    assert rows == sorted(want)
    assert ("make", "us-sub", accounts_archive.gap.isoformat(), 0) in rows


def test_saved_queries_say_which_account_a_row_is_of(accounts_archive: AccountsArchive) -> None:
    days = accounts_archive.day_range
    people = Counter((actor_email("make", event), accounts_archive.accounts[identifier])
                     for identifier, event in accounts_archive.events.items() if actor_email("make", event))
    person = max(sorted({email for email, _ in people}),
                 key=lambda email: min(people[(email, account)] for account in ORGANIZATIONS))
    assert all(people[(person, account)] for account in ORGANIZATIONS)  # someone acts in both organizations
    for key, parameters, selected in (
            ("everything-one-person-did", [person, *days],
             {i for i, e in accounts_archive.events.items() if actor_email("make", e) == person}),
            ("users-invited-deprovisioned-or-removed", days,
             {i for i, e in accounts_archive.events.items() if e["eventName"] in {"user_invited", "user_removed"}})):
        columns, rows = athena.run_saved(accounts_archive.connect(), key, parameters)
        found = {row[columns.index("event_id")]: row[columns.index("account")] for row in rows}
        assert found == {identifier: accounts_archive.accounts[identifier] for identifier in selected}, key
        assert set(found.values()) == set(ORGANIZATIONS), key
