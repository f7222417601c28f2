"""The ocsf_events view: every vendor's events in OCSF 1.x classes, answered by DuckDB through the template's SQL.

Records are built from the simulators' raw events (with the collectors' own normalisation, as the engine writes
them) into an archive directory. Each view row is checked against what the raw event says, read from the vendor's
own fields: the class and activity its event type maps to in the vendor's file, the status from its outcome, the
time, the actor, the address; an event type nobody maps is the Base Event; and no row is lost or repeated.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlglot
import yaml
from sqlglot import exp

from auditlake import timeutil
from auditlake.records import record_line
from auditlake_local import athena
from auditlake_local.simulators import asana, ashby, clickup, make
from auditlake_local.template import load_template
from auditlake_vendors import adapter as vendor_adapter

PROJECT_ROOT = Path(__file__).resolve().parents[1]
RESOURCES = load_template()["Resources"]
VENDORS = ("asana", "ashby", "clickup", "make")
# Each vendor's file is the one place its mapping is written: event type -> [class_uid, activity_id].
MAPPING: dict[str, dict[str, list[int]]] = {
    vendor: yaml.safe_load((PROJECT_ROOT / "template" / "vendors" / f"{vendor}.yaml").read_text())["ocsf"]
    for vendor in VENDORS}

# OCSF 1.3 (https://schema.ocsf.io/1.3.0/): each class's category, and the activity ids each class defines.
CATEGORY = {0: 0, 3001: 3, 3002: 3, 3004: 3, 3005: 3, 6003: 6}
ACTIVITIES = {
    3001: {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 99},  # Account Change
    3002: {1, 2, 3, 4, 5, 6, 99},  # Authentication: 1 Logon, 2 Logoff
    3004: {1, 2, 3, 4, 5, 6, 7, 99},  # Entity Management
    3005: {1, 2, 99},  # User Access Management: 1 Assign Privileges, 2 Revoke Privileges
    6003: {1, 2, 3, 4, 99},  # API Activity: Create, Read, Update, Delete
}
BASE_CLASS, OTHER = 0, 99

GENERATE: dict[str, Callable[..., list[dict[str, Any]]]] = {
    "asana": asana.generate_events, "ashby": ashby.generate_events, "clickup": clickup.generate_events,
    "make": make.generate_events}
EVENTS = 8000  # per vendor: enough that the rarest event type (weight 1 in ~700-1000) is drawn
SEEDS = {"asana": 61, "ashby": 62, "clickup": 63, "make": 64}
ID_FIELD = {"asana": "gid", "ashby": "id", "clickup": "id", "make": "uuid"}
TYPE_FIELD = {"asana": "event_type", "ashby": "category", "clickup": "eventType", "make": "eventName"}
TIME_FIELD = {"asana": "created_at", "ashby": "createdAt", "clickup": "startTime", "make": "triggeredAt"}
# A type no vendor file maps, one per vendor: it must land in the base class.
NEW_TYPE = {"asana": "portfolio_renamed", "ashby": "HiringPlanChanged", "clickup": "DOC_SHARED",
            "make": "template_published"}

# A few event types spelled out here as an analyst would expect them, so a wrong line in a vendor's file (not only
# a view that misreads the file) fails: (vendor, event type) -> (class_uid, activity_id).
EXPECTED = {
    ("asana", "user_login_failed"): (3002, 1), ("asana", "user_logged_out"): (3002, 2),
    ("asana", "user_password_changed"): (3001, 3), ("asana", "user_two_factor_auth_disabled"): (3001, 11),
    ("asana", "task_deleted"): (6003, 4),
    ("ashby", "UserLoggedIn"): (3002, 1), ("ashby", "UserDeactivated"): (3001, 5),
    ("ashby", "ApiKeyRevoked"): (3004, 4), ("ashby", "CandidateMerged"): (BASE_CLASS, OTHER),
    ("clickup", "USER_LOGIN"): (3002, 1), ("clickup", "RESET_PASSWORD"): (3001, 4),
    ("clickup", "TEAM_MEMBER_REMOVED"): (3005, 2), ("clickup", "TASK_CREATED"): (6003, 1),
    ("clickup", "ACCESS_REQUEST_CREATED"): (BASE_CLASS, OTHER),
    ("make", "user_invited"): (3001, 1), ("make", "user_role_changed"): (3005, 99),
    ("make", "scenario_updated"): (6003, 3), ("make", "key_deleted"): (3004, 4),
}
CLICKUP_STATUS = {"success": 1, "completed": 1, "warn": 1, "failed": 2, "error": 2, "system_error": 2}


def expected_class(vendor: str, event_type: str) -> tuple[int, int]:
    return tuple(MAPPING[vendor].get(event_type, (BASE_CLASS, OTHER)))  # type: ignore[return-value]


def status(vendor: str, event: dict[str, Any]) -> int:
    """OCSF status_id from the vendor's own fields: 1 Success, 2 Failure, 0 Unknown."""
    if vendor == "clickup":
        return CLICKUP_STATUS.get(event.get("eventStatus"), 0)
    failed = {"asana": "_failed", "ashby": "Failed", "make": "_failed"}[vendor]
    return 2 if event[TYPE_FIELD[vendor]].endswith(failed) else 1


def epoch_ms(value: Any) -> int:
    if isinstance(value, int):
        return value
    return round(datetime.fromisoformat(value).timestamp() * 1000)


def text(value: Any) -> str | None:
    return None if value is None else str(value)


def actor(vendor: str, event: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(uid, name, email) of who acted."""
    if vendor == "clickup":
        return text(event.get("userId")), event.get("userName"), event.get("userEmail")
    who = event.get("actor") or {}
    return text(who.get("gid" if vendor == "asana" else "id")), who.get("name"), who.get("email")


def source_ip(vendor: str, event: dict[str, Any]) -> str | None:
    if vendor == "asana":
        return (event.get("context") or {}).get("client_ip_address")
    if vendor == "ashby":
        return event.get("ipAddress") or (event.get("details") or {}).get("ipAddress")
    if vendor == "clickup":
        return event.get("clientIp")
    return None  # Make's entries carry no address


@dataclass
class Archive:
    directory: Path
    events: dict[str, dict[str, dict[str, Any]]]  # vendor -> event id -> the raw event

    def connect(self) -> duckdb.DuckDBPyConnection:
        return athena.connect(self.directory)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Archive:
    directory = tmp_path_factory.mktemp("ocsf")
    today = datetime.combine(datetime.now(UTC).date(), datetime.min.time(), UTC)
    start, end = today - timedelta(days=4), today - timedelta(minutes=1)
    served: dict[str, dict[str, dict[str, Any]]] = {}
    for vendor in VENDORS:
        cls = vendor_adapter(vendor)
        adapter = cls({**dict.fromkeys(cls.secret_fields, "0"), "zone": "eu1"}, http=None, page_size=100)
        events = GENERATE[vendor](EVENTS, start, end, SEEDS[vendor])
        novel = {**events[-1], TYPE_FIELD[vendor]: NEW_TYPE[vendor], ID_FIELD[vendor]: f"{vendor}-novel-event"}
        events.append(novel)
        days: dict[date, list[bytes]] = defaultdict(list)
        for event in events:
            moment = adapter.event_time(event)
            days[moment.date()].append(record_line(
                event_id=adapter.event_id(event), event_time=moment, stream="s0",
                normalised=adapter.normalise(event, "s0"), collected_at=timeutil.to_iso(today), raw=event))
        for day, lines in days.items():
            target = directory / f"events/vendor={vendor}/dt={day.isoformat()}/{vendor}-s0_p0.json.gz"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(gzip.compress(b"".join(lines)))
        served[vendor] = {str(event[ID_FIELD[vendor]]): event for event in events}
        assert len(served[vendor]) == len(events)  # ids are unique, so rows can be matched one to one
    return Archive(directory, served)


# ------------------------------------------------------------------------------------------------ the mapping


@pytest.mark.parametrize("vendor", VENDORS)
def test_every_mapped_type_is_one_the_vendor_logs_and_a_class_activity_of_ocsf(archive: Archive, vendor: str) -> None:
    logged = {event[TYPE_FIELD[vendor]] for event in archive.events[vendor].values()}
    assert set(MAPPING[vendor]) <= logged, "a mapped type the simulator never logs: a typo?"
    for event_type, (class_uid, activity_id) in MAPPING[vendor].items():
        assert activity_id in ACTIVITIES[class_uid], (event_type, class_uid, activity_id)


def test_the_hand_written_expectations_hold() -> None:
    for (vendor, event_type), want in EXPECTED.items():
        assert expected_class(vendor, event_type) == want, (vendor, event_type)


# ------------------------------------------------------------------------------------------------ the view


def test_view_is_stored_as_athena_stores_views_over_events_alone() -> None:
    view = athena.views()["ocsf_events"]
    table = view.table_input
    assert RESOURCES[view.logical_id]["Properties"]["DatabaseName"] == {"Ref": "AuditDatabase"}
    assert table["TableType"] == "VIRTUAL_VIEW" and table["Parameters"] == {"presto_view": "true",
                                                                           "comment": "Presto View"}
    assert set(view.definition) == {"originalSql", "catalog", "schema", "columns"}
    hive = {"integer": "int", "bigint": "bigint", "varchar": "string"}
    assert [(c.name, hive[c.type]) for c in view.columns] == [(c.name, c.type) for c in view.glue_columns]
    create = sqlglot.parse_one(athena.view_ddl(view), read="athena")
    select = create.expression
    assert select.named_selects == [c.name for c in view.columns]
    assert [t.name for t in select.find_all(exp.Table)] == ["events"]
    # A LEFT JOIN with the mapping and no WHERE: every row of events is kept.
    assert [j.side for j in select.find_all(exp.Join)] == ["LEFT"] and select.args.get("where") is None
    assert '"' not in view.sql and "\\" not in view.sql and "\n" not in view.sql


def test_the_mapping_has_one_row_per_vendor_and_type() -> None:
    values = sqlglot.parse_one(athena.views()["ocsf_events"].sql, read="athena").find(exp.Values)
    rows = [tuple(literal.this for literal in row.expressions) for row in values.expressions]
    keys = [(vendor, action) for vendor, action, *_ in rows]
    assert len(keys) == len(set(keys))  # a key twice would repeat its events
    assert {(vendor, action): (int(c), int(cat), int(a)) for vendor, action, c, cat, a in rows} == {
        (vendor, action): (c, CATEGORY[c], a) for vendor in VENDORS for action, (c, a) in MAPPING[vendor].items()}


def test_every_event_is_one_row(archive: Archive) -> None:
    connection = archive.connect()
    _, counts = athena.run_sql(connection, "SELECT metadata_product_name, count(*), count(DISTINCT metadata_uid) "
                                           "FROM ocsf_events GROUP BY 1 ORDER BY 1")
    _, table = athena.run_sql(connection, "SELECT vendor, count(*), count(DISTINCT event_id) FROM events "
                                          "GROUP BY 1 ORDER BY 1")
    assert counts == table == [(vendor, len(archive.events[vendor]), len(archive.events[vendor]))
                               for vendor in VENDORS]


@pytest.mark.parametrize("vendor", VENDORS)
def test_each_event_lands_in_its_class_with_its_activity_status_time_and_actor(archive: Archive,
                                                                                vendor: str) -> None:
    columns, rows = athena.run_sql(archive.connect(), "SELECT * FROM ocsf_events WHERE metadata_product_name = ?",
                                   [vendor])
    by_id = {row[columns.index("metadata_uid")]: dict(zip(columns, row, strict=True)) for row in rows}
    assert by_id.keys() == archive.events[vendor].keys()
    seen: Counter[tuple[int, int, int]] = Counter()
    for identifier, event in archive.events[vendor].items():
        got, event_type = by_id[identifier], event[TYPE_FIELD[vendor]]
        class_uid, activity_id = expected_class(vendor, event_type)
        uid, name, email = actor(vendor, event)
        assert got == {
            "class_uid": class_uid, "category_uid": CATEGORY[class_uid], "activity_id": activity_id,
            "type_uid": class_uid * 100 + activity_id, "severity_id": 1, "status_id": status(vendor, event),
            "time": epoch_ms(event[TIME_FIELD[vendor]]), "actor_user_uid": uid, "actor_user_name": name,
            "actor_user_email_addr": email, "src_endpoint_ip": source_ip(vendor, event), "metadata_uid": identifier,
            "metadata_event_code": event_type, "metadata_product_name": vendor, "metadata_version": "1.3.0",
            "account": "default", "raw_data": got["raw_data"],
            "dt": datetime.fromtimestamp(epoch_ms(event[TIME_FIELD[vendor]]) / 1000, UTC).date().isoformat(),
        }, (identifier, event_type)
        assert json.loads(got["raw_data"]) == event
        seen[(class_uid, activity_id, got["status_id"])] += 1
    # The checks compared real values: failures, successes, and the base class are all there.
    assert by_id[f"{vendor}-novel-event"]["class_uid"] == BASE_CLASS
    assert {status for *_, status in seen} >= ({1, 2} if vendor != "make" else {1})
    assert any(row["actor_user_email_addr"] for row in by_id.values())
    assert any(row["src_endpoint_ip"] for row in by_id.values()) == (vendor != "make")


def test_shares_of_events_in_a_specific_class(archive: Archive) -> None:
    """The share of each vendor's events the view puts in a class other than the base class, as the README's
    table reports it for the demo: here it must agree with the mapping, event by event."""
    _, rows = athena.run_sql(archive.connect(), "SELECT metadata_product_name, "
                                                "avg(CASE WHEN class_uid <> 0 THEN 1.0 ELSE 0.0 END) "
                                                "FROM ocsf_events GROUP BY 1 ORDER BY 1")
    want = {vendor: sum(event[TYPE_FIELD[vendor]] in MAPPING[vendor] for event in events.values()) / len(events)
            for vendor, events in archive.events.items()}
    assert {vendor: round(share, 9) for vendor, share in rows} == {v: round(s, 9) for v, s in want.items()}
    assert all(0.5 < share < 1 for share in want.values())


def test_the_readme_table_is_the_mapping() -> None:
    """The README's one mapping table says what the vendors' files say: each mapped type in its class and activity
    row, under its vendor; the types it names in the Base Event row are mapped by no file."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme[readme.index("### OCSF: `ocsf_events`"):]
    section = section[: section.index("\n### ")]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "(`class_uid`)" not in line
            and not line.startswith("| ---") and line.count("|") == 7]
    found: dict[tuple[str, str], tuple[int, int]] = {}
    unmapped: set[tuple[str, str]] = set()
    for line in rows:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        class_uid, activity_id = (int(cell.rpartition("(")[2].rstrip(")")) for cell in cells[:2])
        for vendor, cell in zip(VENDORS, cells[2:], strict=True):
            names = {name for name in cell.split("`")[1::2] if name not in TYPE_FIELD.values()}
            for name in names:
                if class_uid == BASE_CLASS:
                    unmapped.add((vendor, name))
                else:
                    assert (vendor, name) not in found, (vendor, name)
                    found[(vendor, name)] = (class_uid, activity_id)
    assert found == {(vendor, name): tuple(pair) for vendor in VENDORS for name, pair in MAPPING[vendor].items()}
    assert unmapped and not any(name in MAPPING[vendor] for vendor, name in unmapped)
