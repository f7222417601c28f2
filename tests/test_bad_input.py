"""The bad-input catalogue: every way a vendor's answer or a collector's secret can be wrong, for every collector.

Each entry tells the same story against each vendor. A good tick archives events (so there is a cursor and there are
objects), new events arrive, and the next tick meets the bad thing. Then:

- an error entry fails that tick with one error that names the vendor and the problem and never the token; every
  failed stream keeps its `done_until` and has no window cursor past what it archived (its counter of archived
  events still equals its records in S3); every object archived before is unchanged (key, ETag, size, last
  modified); and the next tick without the bad thing archives the vendor's events exactly once;
- a benign entry (something a vendor may legitimately do) succeeds, archives exactly once and verbatim, and touches
  no object archived before.

The bad things come from the simulator's own knobs where it has one (plan, role, permission, expired cursors), else
from rewriting its requests and responses on the way to the collector (`Tamper`). Where each vendor keeps its
events, ids and times is stated once, in SHAPES.
"""

from __future__ import annotations

import functools
import gzip
import importlib
import json
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import boto3
import pytest
from conftest import Clock, check_archive
from worlds import VENDORS, World, world_of

from auditlake.errors import AuditlakeError, AuditLogsUnavailable
from auditlake.state import StateStore, StreamKey, StreamState
from auditlake.timeutil import parse_time, to_iso, to_millis
from auditlake.vendor import VendorAdapter
from auditlake_local.simulators import SimRequest, SimResponse
from auditlake_local.simulators import ashby as ashby_simulator
from auditlake_local.stack import LocalStack
from auditlake_local.template import PROJECT_ROOT

PAGE = 30  # small pages: every vendor's new events span several, ClickUp's too (six classes share them)
NEW_EVENTS = 200  # arrive after the good tick
# Parts of a few pages: the cursor is committed while the window is paged.
ENVIRONMENT = {"PAGE_SIZE": str(PAGE), "MAX_OBJECT_EVENTS": "100"}
WRONG_TOKEN = "wrong-token-5d0e8c2b71f4"


# --- where each vendor keeps what ------------------------------------------------------------------------------


def _query_param(name: str) -> Callable[[SimRequest, int], SimRequest]:
    def scaled(request: SimRequest, factor: int) -> SimRequest:
        asked = int(request.param(name) or PAGE)
        return replace(request, query={**request.query, name: [str(min(asked * factor, 1000))]})

    return scaled


def _body_field(*path: str) -> Callable[[SimRequest, int], SimRequest]:
    def scaled(request: SimRequest, factor: int) -> SimRequest:
        body = request.json()
        holder = body
        for name in path[:-1]:
            holder = holder[name]
        holder[path[-1]] = min(int(holder.get(path[-1]) or PAGE) * factor, 1000)
        return replace(request, body=json.dumps(body).encode())

    return scaled


@dataclass(frozen=True)
class Shape:
    rows: str  # the key of a response's list of events
    id: str  # an event's id
    time: str  # the field an event's time is read from
    times: tuple[str, ...]  # every field the collector falls back to for the time
    scope: str  # a required secret field besides the token (the token itself where there is none)
    page_size: Callable[[SimRequest, int], SimRequest]  # the request, asking for `factor` times the rows
    paged: Callable[[SimRequest], bool]  # a request that continues a window (carries the vendor's cursor)


def _clickup_paged(request: SimRequest) -> bool:
    body = request.json()
    return body["pagination"]["pageTimestamp"] < body["filter"]["endTime"]


SHAPES: dict[str, Shape] = {
    "asana": Shape(rows="data", id="gid", time="created_at", times=("created_at",), scope="workspace_gid",
                   page_size=_query_param("limit"), paged=lambda request: request.param("offset") is not None),
    "ashby": Shape(rows="results", id="id", time="createdAt", times=("createdAt", "occurredAt", "timestamp"),
                   scope="token", page_size=_body_field("limit"),
                   paged=lambda request: "cursor" in (request.json() or {})),
    # The simulator's default envelope, `{"data": [...]}` (a bare list is the other shape the collector reads).
    "clickup": Shape(rows="data", id="id", time="startTime",
                     times=("startTime", "eventTime", "timestamp", "date", "createdAt"), scope="workspace_id",
                     page_size=_body_field("pagination", "pageRows"), paged=_clickup_paged),
    "make": Shape(rows="auditLogs", id="uuid", time="triggeredAt", times=("triggeredAt", "createdAt"),
                  scope="organization_id", page_size=_query_param("pg[limit]"),
                  paged=lambda request: int(request.param("pg[offset]") or 0) > 0),
}
assert set(SHAPES) == set(VENDORS), f"test_bad_input.py: SHAPES lacks {sorted(set(VENDORS) - set(SHAPES))}"


# --- rewriting what the simulator answers --------------------------------------------------------------------------


def _always(_: Any) -> bool:
    return True


@dataclass
class Rule:
    """One bad thing: the requests it meets, what it does to the request before and to the response after."""

    requests: Callable[[SimRequest], bool] = _always
    responses: Callable[[SimResponse], bool] = _always
    before: Callable[[SimRequest], SimRequest] | None = None
    after: Callable[[SimResponse], SimResponse] | None = None
    times: int | None = 1  # None: every match, until removed
    applied: int = 0

    @property
    def live(self) -> bool:
        return self.times is None or self.applied < self.times


class Tamper:
    """Replaces the simulator's `handle`: the vendor's behaviour, then the rules that are still live."""

    def __init__(self, handle: Callable[[SimRequest], SimResponse]) -> None:
        self.handle = handle
        self.rules: list[Rule] = []

    def add(self, rule: Rule) -> Rule:
        self.rules.append(rule)
        return rule

    def __call__(self, request: SimRequest) -> SimResponse:
        rules = [rule for rule in self.rules if rule.live and rule.requests(request)]
        for rule in rules:
            if rule.before is not None:
                request = rule.before(request)
                if rule.after is None:
                    rule.applied += 1
        response = self.handle(request)
        for rule in rules:
            if rule.after is not None and rule.responses(response):
                response = rule.after(response)
                rule.applied += 1
        return response


def _body(response: SimResponse) -> Any:
    try:
        return json.loads(response.body)
    except ValueError:
        return None


def _rows(shape: Shape, response: SimResponse) -> list[Any] | None:
    body = _body(response)
    rows = body.get(shape.rows) if isinstance(body, dict) else None
    return rows if isinstance(rows, list) else None


def _with_rows(shape: Shape) -> Callable[[SimResponse], bool]:
    return lambda response: response.status == 200 and bool(_rows(shape, response))


def _edit(edit: Callable[[dict[str, Any]], None]) -> Callable[[SimResponse], SimResponse]:
    def after(response: SimResponse) -> SimResponse:
        body = json.loads(response.body)
        edit(body)
        return SimResponse.of_json(response.status, body, response.headers)

    return after


def _edit_first_row(shape: Shape, edit: Callable[[dict[str, Any]], None]) -> Callable[[SimResponse], SimResponse]:
    return _edit(lambda body: edit(body[shape.rows][0]))


def _answer(status: int, payload: Any) -> Callable[[SimResponse], SimResponse]:
    return lambda _response: SimResponse.of_json(status, payload)


# --- one case: a vendor, an entry, and what the entry did ---------------------------------------------------------


@dataclass
class Case:
    vendor: str
    world: World
    stack: LocalStack
    tamper: Tamper
    monkeypatch: pytest.MonkeyPatch
    new_ids: set[str]  # events added after the good tick
    undo: list[Callable[[], None]] = field(default_factory=list)
    # Benign entries that change how the vendor serves the new events: the same change, for the expected archive.
    served: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    verify: Callable[[Case, dict[str, Any]], None] | None = None  # more checks of a benign tick's outcome
    pages: list[int] = field(default_factory=list)  # rows per response, where an entry counts them

    @property
    def shape(self) -> Shape:
        return SHAPES[self.vendor]

    @property
    def simulator(self) -> Any:
        return self.world.simulator

    def secret(self, **changes: str) -> dict[str, str]:
        return {**self.world.local.secret(f"https://{self.vendor}.test"), **changes}

    def knob(self, name: str, value: Any) -> None:
        """Sets a simulator knob for the bad tick only."""
        old = getattr(self.simulator, name)
        setattr(self.simulator, name, value)
        self.undo.append(lambda: setattr(self.simulator, name, old))

    def put_secret(self, value: dict[str, str] | str) -> None:
        self.stack.put_secret(self.world.function_id, value)
        self.undo.append(lambda: self.stack.put_secret(self.world.function_id, self.secret()))

    def bad(self, rule: Rule) -> Rule:
        """A rule for the bad tick only."""
        self.tamper.add(rule)
        self.undo.append(lambda: self.tamper.rules.remove(rule))
        return rule

    def serve_new_events(self, change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        """From now on the vendor serves every new event changed so (a property of its data, not a glitch)."""
        shape = self.shape

        def rewrite(body: dict[str, Any]) -> None:
            body[shape.rows] = [change(row) if str(row.get(shape.id)) in self.new_ids else row
                                for row in body[shape.rows]]

        self.served = change
        self.tamper.add(Rule(responses=_with_rows(shape), after=_edit(rewrite), times=None))

    def disarm(self) -> None:
        for step in reversed(self.undo):
            step()
        self.undo.clear()


def _moment(row: dict[str, Any], shape: Shape) -> datetime:
    return parse_time(row[shape.time])


def _changed(name: str, value: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda row: {**row, name: value(row)}


# --- the entries ------------------------------------------------------------------------------------------------


def html_page_with_status_200(case: Case) -> None:
    page = b"<!DOCTYPE html><html><body><h1>Down for maintenance</h1></body></html>"
    case.bad(Rule(after=lambda _r: SimResponse(200, {"Content-Type": "text/html; charset=utf-8"}, page)))


def truncated_json(case: Case) -> None:
    # Every attempt truncated: a single truncated body is retried (the exactly-once matrix covers that).
    case.bad(Rule(after=SimResponse.truncated, times=None))


def empty_body(case: Case) -> None:
    # An empty 200 is retried like a truncated one (a glitch on the way is likelier than an API answering nothing);
    # every attempt empty fails the tick.
    case.bad(Rule(after=lambda r: SimResponse(200, dict(r.headers), b""), times=None))


def invalid_utf8(case: Case) -> None:
    def corrupt(response: SimResponse) -> SimResponse:
        at = response.body.index(f'"{case.shape.id}"'.encode()) + 1
        return SimResponse(response.status, dict(response.headers), response.body[:at] + b"\xff\xfe"
                           + response.body[at:])

    case.bad(Rule(responses=_with_rows(case.shape), after=corrupt))


def null_where_the_list_belongs(case: Case) -> None:
    case.bad(Rule(responses=_with_rows(case.shape), after=_edit(lambda body: body.update({case.shape.rows: None}))))


def event_encoded_as_a_string(case: Case) -> None:
    def stringify(body: dict[str, Any]) -> None:
        body[case.shape.rows][0] = json.dumps(body[case.shape.rows][0])

    case.bad(Rule(responses=_with_rows(case.shape), after=_edit(stringify)))


def paging_field_of_the_wrong_type(case: Case) -> None:
    # The field that says whether and how paging goes on: read wrongly, it would end a window early and skip the
    # rest of it for good. ClickUp and Make say nothing about paging in the body: their event list is what counts.
    wrong = {
        "asana": ("next_page", lambda body: body["next_page"]["offset"]),  # the offset alone, not the object
        "ashby": ("moreDataAvailable", lambda body: str(body["moreDataAvailable"]).lower()),
        "clickup": ("data", lambda body: {"rows": body["data"]}),
        "make": ("auditLogs", lambda body: dict(enumerate(body["auditLogs"]))),
    }
    name, value = wrong[case.vendor]
    case.bad(Rule(responses=_with_rows(case.shape), after=_edit(lambda body: body.update({name: value(body)}))))


def missing_id(case: Case) -> None:
    if case.vendor == "clickup":
        # ClickUp documents no row id: rows without one are keyed by their content (README), so a vendor serving
        # them so must be archived as served.
        case.serve_new_events(lambda row: {k: v for k, v in row.items() if k != case.shape.id})
        return
    case.bad(Rule(responses=_with_rows(case.shape),
                  after=_edit_first_row(case.shape, lambda row: row.pop(case.shape.id))))


def id_of_the_wrong_type(case: Case) -> None:
    name = case.shape.id
    case.bad(Rule(responses=_with_rows(case.shape),
                  after=_edit_first_row(case.shape, lambda row: row.update({name: {"id": row[name]}}))))


def missing_time(case: Case) -> None:
    def drop(row: dict[str, Any]) -> None:
        for name in case.shape.times:
            row.pop(name, None)

    case.bad(Rule(responses=_with_rows(case.shape), after=_edit_first_row(case.shape, drop)))


def _bad_time(spell: Callable[[datetime, Any], Any]) -> Callable[[Case], None]:
    def arm(case: Case) -> None:
        name = case.shape.time
        case.bad(Rule(responses=_with_rows(case.shape), after=_edit_first_row(
            case.shape, lambda row: row.update({name: spell(_moment(row, case.shape), row[name])}))))

    return arm


time_of_the_wrong_type = _bad_time(lambda _moment, value: [value])
time_in_an_unknown_format = _bad_time(lambda moment, _value: moment.strftime("%d/%m/%Y %H:%M:%S"))
time_without_a_zone = _bad_time(lambda moment, _value: moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3])
time_in_epoch_microseconds = _bad_time(lambda moment, _value: to_millis(moment) * 1000)


def _good_time(spell: Callable[[datetime], str]) -> Callable[[Case], None]:
    """Another ISO 8601 spelling of the same instant: unambiguous, so it must be read, and the record's event_time
    must be that instant in UTC."""

    def arm(case: Case) -> None:
        shape = case.shape
        case.serve_new_events(_changed(shape.time, lambda row: spell(_moment(row, shape))))
        original = {key: _moment(row, shape) for key, row in case.simulator.ground_truth().items()
                    if key in case.new_ids}

        def verify(case: Case, _summary: dict[str, Any]) -> None:
            times = {str(json.loads(r["raw"])[shape.id]): r["event_time"] for r in case.stack.archived_records(
                case.vendor)}
            assert all(times[key] == to_iso(moment) for key, moment in original.items())

        case.verify = verify

    return arm


time_with_an_offset = _good_time(
    lambda moment: moment.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat(timespec="milliseconds"))
time_in_iso_basic_format = _good_time(
    lambda moment: moment.strftime("%Y%m%dT%H%M%S.") + f"{moment.microsecond // 1000:03d}Z")


def unknown_fields(case: Case) -> None:
    # Vendors add fields (none promises a closed schema): new event fields are kept verbatim in `raw`, a new
    # envelope field is ignored.
    case.serve_new_events(lambda row: {**row, "addedLater": {"nested": [1, "two", None]}, "flag": True})
    case.tamper.add(Rule(responses=lambda r: isinstance(_body(r), dict),
                         after=_edit(lambda body: body.update({"meta": {"apiVersion": "2099-01"}})), times=None))


def page_far_larger_than_asked(case: Case) -> None:
    # Every collector accepts it. Asana ends a window on an empty page and Ashby on moreDataAvailable: the count
    # does not matter. ClickUp and Make end on a page SHORTER than asked, so a longer page only means "more
    # follows"; Make's next offset is counted from the rows received, ClickUp's next page from the lowest time.
    # Asana's and Ashby's documented maximum, lifted for this vendor (Asana's "default 1000" reading).
    case.monkeypatch.setattr(ashby_simulator, "MAX_LIMIT", 1000)
    if case.vendor == "asana":
        case.monkeypatch.setattr(case.simulator, "max_limit", 1000)
    case.tamper.add(Rule(before=lambda request: case.shape.page_size(request, 5), times=None))

    def count(response: SimResponse) -> SimResponse:
        case.pages.append(len(_rows(case.shape, response) or []))
        return response

    case.tamper.add(Rule(after=count, times=None))
    def verify(case: Case, _summary: dict[str, Any]) -> None:
        assert max(case.pages) > PAGE

    case.verify = verify


def cursor_no_longer_accepted(case: Case) -> None:
    shape = case.shape
    if case.vendor in ("asana", "ashby"):
        # Their offsets and cursors expire (Asana: a 400; Ashby: cursor_invalid): the collector resumes the window
        # from what it archived.
        def expire(request: SimRequest) -> SimRequest:
            case.simulator.expire_cursors()
            return request

        case.bad(Rule(requests=shape.paged, before=expire))
    elif case.vendor == "make":
        # Make pages by offset: the entry a page must start on has gone (expired, or moved by an insert).
        case.bad(Rule(requests=shape.paged, responses=_with_rows(shape),
                      after=_edit(lambda body: body[shape.rows].pop(0))))
    else:
        # ClickUp pages by timestamp, which documents no expiry: a refusal is an unexplained error on a request that
        # carried the stored cursor, which restarts the window once from what is archived.
        case.bad(Rule(requests=shape.paged, after=_answer(400, {
            "status": 400, "message": "Invalid pagination.pageTimestamp", "trace_id": 8812,
            "timestamp": to_millis(datetime.now(UTC))})))

    def verify(_case: Case, summary: dict[str, Any]) -> None:
        assert sum(stream["cursors_expired"] for stream in summary["streams"]) >= 1

    case.verify = verify


def _expired_cursor_answered(**switches: Any) -> Callable[[Case], None]:
    """The vendor's cursor expires mid-window and is answered as the simulator's switches say (an error envelope, a
    status): the collector resumes the window from what it archived, whatever the form."""

    def arm(case: Case) -> None:
        for name, value in switches.items():
            case.monkeypatch.setattr(case.simulator, name, value)
        cursor_no_longer_accepted(case)

    return arm


def wrong_token(case: Case) -> None:
    case.put_secret(case.secret(token=WRONG_TOKEN))


def token_without_permission(case: Case) -> None:
    if case.vendor == "asana":
        # Only service-account tokens may read the audit log.
        case.bad(Rule(after=_answer(403, {"errors": [{
            "message": "You must be a service account to access this resource.",
            "help": "For more information on API status codes and how to handle them, read the docs on errors: "
                    "https://developers.asana.com/docs/errors"}]}), times=None))
    else:
        knob = {"ashby": ("has_permission", False), "clickup": ("owner", False), "make": ("caller_role", "member")}
        case.knob(*knob[case.vendor])


def _without_audit_logs(**switches: Any) -> Callable[[Case], None]:
    """The plan lacks audit logs, through the simulator's own knob, answered as its switches say. Only knobs that
    exist on every simulator's current revision: ClickUp and Make through `enterprise=False`."""

    def arm(case: Case) -> None:
        knob = {"asana": ("audit_logs_available", False), "ashby": ("audit_logs_enabled", False),
                "clickup": ("enterprise", False), "make": ("enterprise", False)}
        for name, value in switches.items():
            case.knob(name, value)
        case.knob(*knob[case.vendor])

    return arm


def _requirement(vendor: str) -> str:
    """What the vendor's adapter says its audit-log API requires, as a regex: an AuditLogsUnavailable names it."""
    code_dir = str(PROJECT_ROOT / "functions" / vendor)
    if code_dir not in sys.path:
        sys.path.insert(0, code_dir)
    module = importlib.import_module(f"{vendor}_collector")
    adapter = next(value for value in vars(module).values() if isinstance(value, type)
                   and issubclass(value, VendorAdapter) and value is not VendorAdapter)
    return re.escape(adapter.audit_log_requirement)


def _unavailable(status: str, vendors: tuple[str, ...] = tuple(VENDORS)) -> dict[str, str | None]:
    """The error of a plan without audit logs: one AuditLogsUnavailable that names the vendor's requirement."""
    return {vendor: rf"HTTP {status}(?!\d).*: audit logs are not available to this account: "
                    rf".*\({_requirement(vendor)}\)" for vendor in vendors}


def secret_not_json(case: Case) -> None:
    case.put_secret(case.world.token)  # the bare token pasted instead of the JSON object


def secret_missing_a_field(case: Case) -> None:
    case.put_secret({k: v for k, v in case.secret().items() if k != case.shape.scope})


def secret_placeholder(case: Case) -> None:
    case.put_secret(case.secret(token="REPLACE_ME"))


@dataclass(frozen=True)
class Entry:
    arm: Callable[[Case], None]
    # The error each vendor's tick must end in (a regex), or None: the vendor may do this, the tick must succeed.
    # A vendor the entry does not name has no such thing to do (a status or an envelope its API does not use).
    error: dict[str, str | None]
    secret: bool = False  # the secret is wrong: no request, no state touched
    unavailable: bool = False  # the account cannot read audit logs: one error, and nothing archived at all

    @classmethod
    def fails(cls, arm: Callable[[Case], None], error: str, *, secret: bool = False, **per_vendor: str | None) -> Entry:
        return cls(arm, {vendor: per_vendor.get(vendor, error) for vendor in VENDORS}, secret)

    @classmethod
    def tolerated(cls, arm: Callable[[Case], None]) -> Entry:
        return cls(arm, dict.fromkeys(VENDORS))


TIME_FIELD = {vendor: shape.time for vendor, shape in SHAPES.items()}
ID_FIELD = {vendor: shape.id for vendor, shape in SHAPES.items()}


def _each(template: str, names: dict[str, str]) -> dict[str, str]:
    return {vendor: template.format(name=re.escape(name)) for vendor, name in names.items()}


CATALOGUE: dict[str, Entry] = {
    "html_page_with_status_200": Entry.fails(html_page_with_status_200, r"HTTP 200 \[malformed_response\].*HTML page"),
    "truncated_json": Entry.fails(truncated_json, r"gave up after 5 attempts.*truncated or invalid JSON"),
    "empty_body": Entry.fails(empty_body, r"gave up after 5 attempts.*an empty body"),
    "invalid_utf8": Entry.fails(invalid_utf8, r"\[malformed_response\].*invalid UTF-8 \(at byte \d+\)"),
    "null_where_the_list_belongs": Entry.fails(
        null_where_the_list_belongs, "", asana=r"no 'data' list", ashby=r"no 'results' list",
        clickup=r"neither a list of rows nor an object with one of data", make=r"no 'auditLogs' list"),
    "paging_field_of_the_wrong_type": Entry.fails(
        paging_field_of_the_wrong_type, "", asana=r"next_page has no 'offset' string: eyJ",
        ashby=r"no boolean 'moreDataAvailable'", clickup=r"an object with keys \['data'\], neither a list",
        make=r"no 'auditLogs' list"),
    "event_encoded_as_a_string": Entry.fails(
        event_encoded_as_a_string, r"#0 of a page is unreadable \(TypeError: an? \w+ is a str, not an object\)",
        make=r"'auditLogs' entry #0 is a str, not an object"),
    "missing_id": Entry.fails(missing_id, "", asana=r"event #0 .*unreadable \(KeyError: 'gid'\)",
                              ashby=r"event #0 .*unreadable \(KeyError: 'id'\)", clickup=None,
                              make=r"event #0 .*unreadable \(KeyError: 'uuid'\)"),
    "id_of_the_wrong_type": Entry.fails(id_of_the_wrong_type, "",
                                        **_each(r"#0 .*unreadable.*\b{name} is \{{", ID_FIELD)),
    "missing_time": Entry.fails(missing_time, "", **_each(r"#0 .*unreadable \(KeyError: .*{name}", TIME_FIELD)),
    "time_of_the_wrong_type": Entry.fails(time_of_the_wrong_type, "",
                                          **_each(r"#0 .*unreadable.*\b{name} is .*, not a time", TIME_FIELD)),
    "time_in_an_unknown_format": Entry.fails(time_in_an_unknown_format, "",
                                             **_each(r"#0 .*unreadable.*\b{name} is '\d\d/\d\d/\d{{4}} .*, not a time",
                                                     TIME_FIELD)),
    "time_without_a_zone": Entry.fails(time_without_a_zone, "",
                                       **_each(r"#0 .*unreadable.*\b{name} is .*without a zone", TIME_FIELD)),
    "time_in_epoch_microseconds": Entry.fails(time_in_epoch_microseconds, "",
                                              **_each(r"#0 .*unreadable.*\b{name} is '\d{{16}}', not a time",
                                                      TIME_FIELD)),
    "time_with_an_offset": Entry.tolerated(time_with_an_offset),
    "time_in_iso_basic_format": Entry.tolerated(time_in_iso_basic_format),
    "unknown_fields": Entry.tolerated(unknown_fields),
    "page_far_larger_than_asked": Entry.tolerated(page_far_larger_than_asked),
    # ClickUp documents no expiry for its timestamp keyset, but a refusal of a request that carried a stored cursor
    # restarts the window once (the engine's rule), so it recovers too.
    "cursor_no_longer_accepted": Entry.tolerated(cursor_no_longer_accepted),
    "wrong_token": Entry.fails(wrong_token, "", asana=r"HTTP 401.*Not Authorized",
                               ashby=r"HTTP 403 \[invalid_api_key\]", clickup=r"HTTP 401.*Token invalid",
                               make=r"HTTP 401"),
    "token_without_permission": Entry.fails(
        token_without_permission, "", asana=r"HTTP 403.*service account",
        ashby=r"HTTP 403 \[missing_endpoint_permission\]", clickup=r"HTTP 403.*owner",
        make=r"HTTP 403.*Admin or Owner"),
    # A plan without audit logs, for every status and envelope each simulator can answer it with (ClickUp and Make
    # as their current simulators do: their helpers own those).
    "plan_without_audit_logs": Entry(_without_audit_logs(), {
        **_unavailable(r"\d{3}", ("clickup", "make")), **_unavailable("402", ("asana",)),
        **_unavailable(r"200 \[audit_logs_not_enabled\]", ("ashby",))}, unavailable=True),
    "plan_without_audit_logs_403": Entry(_without_audit_logs(no_audit_logs_status=403), {
        **_unavailable("403", ("asana",))}, unavailable=True),
    "feature_not_enabled_403": Entry(_without_audit_logs(not_enabled_status=403), {
        **_unavailable(r"403 \[audit_logs_not_enabled\]", ("ashby",))}, unavailable=True),
    "feature_not_enabled_404": Entry(_without_audit_logs(not_enabled_status=404), {
        **_unavailable(r"404 \[audit_logs_not_enabled\]", ("ashby",))}, unavailable=True),
    "feature_not_enabled_in_the_current_envelope": Entry(_without_audit_logs(error_envelope="error_info"), {
        **_unavailable(r"200 \[audit_logs_not_enabled\]", ("ashby",))}, unavailable=True),
    "feature_not_enabled_in_a_sentence": Entry(_without_audit_logs(error_envelope="errors_sentence"), {
        **_unavailable(r"200 \[audit_logs_not_enabled\]", ("ashby",))}, unavailable=True),
    # An expired cursor in every form the vendor may answer it in (the base entry: each simulator's default).
    "expired_cursor_in_the_current_envelope": Entry(_expired_cursor_answered(error_envelope="error_info"),
                                                    {"ashby": None}),
    "expired_cursor_in_a_sentence": Entry(_expired_cursor_answered(error_envelope="errors_sentence"),
                                          {"ashby": None}),
    "expired_cursor_in_a_sentence_naming_no_code": Entry(_expired_cursor_answered(error_envelope="errors_prose"),
                                                         {"ashby": None}),
    "expired_offset_answered_410": Entry(_expired_cursor_answered(expired_offset_status=410), {"asana": None}),
    "secret_not_json": Entry.fails(secret_not_json, r"secret \S+ is not JSON", secret=True),
    "secret_missing_a_field": Entry.fails(secret_missing_a_field, "", secret=True,
                                          **_each(r"secret \S+ is missing field '{name}'",
                                                  {vendor: shape.scope for vendor, shape in SHAPES.items()})),
    "secret_placeholder": Entry.fails(secret_placeholder, r"field 'token' still holds the placeholder", secret=True),
}
CASES = [pytest.param(vendor, name, id=f"{vendor}-{name}") for name in CATALOGUE for vendor in VENDORS
         if vendor in CATALOGUE[name].error]


# --- the stack: one per module, emptied between cases (building it costs more than a case) ---------------------


@functools.cache
def _client(service: str) -> Any:
    return boto3.client(service)  # one per module's stack: creating a client costs more than most calls


@pytest.fixture(scope="module")
def module_stack() -> Iterator[LocalStack]:
    with LocalStack.start() as local:
        _client.cache_clear()
        yield local
        _client.cache_clear()


@pytest.fixture
def stack(module_stack: LocalStack) -> LocalStack:
    dynamodb, s3 = _client("dynamodb"), _client("s3")
    keys = [{"stream": item["stream"]} for item in dynamodb.scan(TableName=module_stack.table)["Items"]]
    for start in range(0, len(keys), 25):
        dynamodb.batch_write_item(RequestItems={module_stack.table: [
            {"DeleteRequest": {"Key": key}} for key in keys[start:start + 25]]})
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=module_stack.bucket):
        versions = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                    for v in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]]
        if versions:
            s3.delete_objects(Bucket=module_stack.bucket, Delete={"Objects": versions, "Quiet": True})
    return module_stack


def _objects(stack: LocalStack, vendor: str) -> dict[str, tuple[str, int, datetime]]:
    """Every archived object of the vendor: key -> (ETag, size, last modified); any rewrite changes the last."""
    objects = {}
    for page in _client("s3").get_paginator("list_objects_v2").paginate(Bucket=stack.bucket,
                                                                              Prefix=f"events/vendor={vendor}/"):
        for item in page.get("Contents", []):
            objects[item["Key"]] = (item["ETag"], item["Size"], item["LastModified"])
    return objects


def _items(stack: LocalStack, vendor: str) -> dict[str, dict[str, Any]]:
    items = _client("dynamodb").scan(TableName=stack.table)["Items"]
    return {item["stream"]["S"]: item for item in items if item["stream"]["S"].startswith(f"{vendor}#")}


def _states(stack: LocalStack, vendor: str) -> dict[str, StreamState]:
    states = StateStore(_client("dynamodb"), stack.table).scan()
    return {state.key: state for state in states if state.stream_key.vendor == vendor}


def _assert_untouched(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert before, "the good tick archived objects"
    assert {key: after.get(key) for key in before} == before


def _assert_exactly_once(stack: LocalStack, vendor: str, truth: dict[str, dict[str, Any]]) -> None:
    result = check_archive(stack, vendor, truth)
    assert (result.missing, result.duplicates, result.unexpected, result.archived) == (0, 0, 0, result.events), result


def _assert_counts_match_the_archive(stack: LocalStack, vendor: str, states: dict[str, StreamState]) -> None:
    """What each stream's state says it archived is what S3 holds for it: no cursor was committed for events that
    were not written."""
    s3, per_stream = _client("s3"), Counter[str]()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=stack.bucket, Prefix=f"events/vendor={vendor}/"):
        for item in page.get("Contents", []):
            body = s3.get_object(Bucket=stack.bucket, Key=item["Key"])["Body"].read()
            per_stream.update(json.loads(line)["stream"] for line in gzip.decompress(body).splitlines())
    for key, state in states.items():
        assert state.events_archived == per_stream.get(StreamKey.parse(key).stream, 0), key


# --- the test ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("vendor", "name"), CASES)
def test_bad_input(vendor: str, name: str, stack: LocalStack, clock: Clock, pauses: Any,
                   monkeypatch: pytest.MonkeyPatch) -> None:
    entry = CATALOGUE[name]
    expected_error = entry.error[vendor]
    with world_of(vendor, stack, clock.now) as world:
        if vendor == "clickup":  # the entries find and edit rows by their id (id-less rows: test_clickup_collector)
            world.simulator.row_ids = True
        tamper = Tamper(world.simulator.handle)
        monkeypatch.setattr(world.simulator, "handle", tamper)
        now = clock.now()
        world.seed(60, now - timedelta(hours=1), now - timedelta(minutes=10), seed=1)
        assert stack.invoke(world.function_id, environment=ENVIRONMENT)["status"] == "ok"
        known = set(world.simulator.ground_truth())
        world.seed(NEW_EVENTS, clock.now() - timedelta(minutes=4), clock.now() - timedelta(minutes=3), seed=2)
        clock.advance()
        new_ids = set(world.simulator.ground_truth()) - known
        assert len(new_ids) == NEW_EVENTS

        objects, states = _objects(stack, vendor), _states(stack, vendor)
        items = _items(stack, vendor) if entry.secret else {}
        requests_before = world.simulator.stats()["requests"]
        case = Case(vendor, world, stack, tamper, monkeypatch, new_ids)
        entry.arm(case)
        armed = list(tamper.rules)

        if expected_error is None:
            summary = stack.invoke(world.function_id, environment=ENVIRONMENT)
            assert summary["status"] == "ok", summary
            assert all(rule.applied for rule in armed), "the bad thing happened"
            truth = world.simulator.ground_truth()
            if case.served is not None:
                truth = {key: case.served(row) if key in new_ids else row for key, row in truth.items()}
            _assert_exactly_once(stack, vendor, truth)
            if case.verify is not None:
                case.verify(case, summary)
            _assert_untouched(objects, _objects(stack, vendor))
            _assert_counts_match_the_archive(stack, vendor, _states(stack, vendor))
            return

        with pytest.raises(AuditlakeError) as failure:
            stack.invoke(world.function_id, environment=ENVIRONMENT)
        message = str(failure.value)
        assert re.search(rf"\b{vendor}\b", message), message
        assert re.search(expected_error, message), message
        assert all(rule.applied for rule in armed), "the bad thing happened"
        assert world.token not in message and WRONG_TOKEN not in message
        if entry.unavailable:
            # One error for the account, from the first stream that met it: the other streams are not tried (they
            # would fail the same way); nothing new is archived.
            assert isinstance(failure.value.__cause__, AuditLogsUnavailable), message
            assert message.count("audit logs are not available to this account") == 1, message
            assert world.simulator.stats()["requests"] - requests_before == 1, "one request, for the first stream"
            assert _objects(stack, vendor).keys() == objects.keys()
        stored = _items(stack, vendor)
        assert world.token not in repr(stored) and WRONG_TOKEN not in repr(stored)
        _assert_untouched(objects, _objects(stack, vendor))
        if entry.secret:
            assert world.simulator.stats()["requests"] == requests_before, "no request without a usable secret"
            assert stored == items, "no state touched"
        else:
            after = _states(stack, vendor)
            failed = {key for key, state in after.items() if state.status.get("last_outcome") == "error"}
            assert failed, "the failure is recorded in the state"
            for key in failed:
                assert after[key].done_until == states[key].done_until, key
                assert after[key].status["last_error"], key
                if name != "cursor_no_longer_accepted":  # every other bad thing meets a window's first page
                    assert after[key].window is None or all(s.cursor is None for s in after[key].window.slices), key
            _assert_counts_match_the_archive(stack, vendor, after)

        case.disarm()
        for _ in range(3):
            clock.advance()
            if stack.invoke(world.function_id, environment=ENVIRONMENT)["status"] == "ok":
                break
        else:
            raise AssertionError("not recovered after 3 good ticks")
        _assert_exactly_once(stack, vendor, world.simulator.ground_truth())
        _assert_untouched(objects, _objects(stack, vendor))
