"""The Make collector's contract: the objects it writes, its records, Make's paging pitfalls (newest-first default,
whole-day dates, offsets that shift), zones, and what bad input does to it."""

from __future__ import annotations

import importlib
import itertools
import json
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
import requests
from conftest import Clock, Pauses, check_archive, context
from worlds import make_backfill_requests

from auditlake import http, timeutil
from auditlake.deadline import Deadline
from auditlake.errors import CursorExpired, SecretError
from auditlake.http import HttpClient
from auditlake.records import COLUMNS
from auditlake.state import StateStore, StreamKey
from auditlake.timeutil import from_millis, parse_event_time, to_iso, to_millis
from auditlake.vendor import End, VendorAdapter, Window
from auditlake_local.simulators import Fault, SimRequest, SimResponse, SimulatorAdapter
from auditlake_local.simulators.make import DEFAULT_ORGANIZATION_ID, ZONES, MakeSimulator, generate_events
from auditlake_local.stack import LocalStack
from auditlake_local.template import PROJECT_ROOT

# Quirks placed at the Nth request, and request counts: read with one query at a time (test_slicing.py reads them
# in slices).
pytestmark = pytest.mark.usefixtures("sequential_reading")

MAKE_TOKEN = "5f0c6a2e-91b4-4d37-8e2a-7c1d9b3f4a60"
ORG = DEFAULT_ORGANIZATION_ID
MAKE_BASE = "https://make.test/api/v2"
STREAM_KEY = StreamKey("make", str(ORG))
STREAM = str(STREAM_KEY)
LOGS_PATH = f"/api/v2/audit-logs/organization/{ORG}"
KEY = re.compile(rf"events/vendor=make/dt=(\d{{4}}-\d\d-\d\d)/make-{ORG}_\d{{8}}T\d{{9}}Z-\d{{8}}T\d{{9}}Z_p\d{{6}}"
                 r"\.json\.gz")


def make_secret(**changes: str | None) -> dict[str, str]:
    secret = {"token": MAKE_TOKEN, "organization_id": str(ORG), "zone": "eu1", "base_url": MAKE_BASE, **changes}
    return {name: value for name, value in secret.items() if value is not None}


@pytest.fixture
def make(stack: LocalStack, clock: Clock, pauses: Pauses) -> Iterator[MakeSimulator]:
    simulator = MakeSimulator(MAKE_TOKEN, ORG, now=clock.now)
    session = http.shared_session()
    session.mount("https://make.test/", SimulatorAdapter(simulator))
    stack.put_secret("MakeCollector", make_secret())
    yield simulator
    session.adapters.pop("https://make.test/", None)


@pytest.fixture
def zones(stack: LocalStack, clock: Clock, pauses: Pauses) -> Iterator[Callable[[MakeSimulator], None]]:
    """Mounts a simulator on every real zone host, so a secret without base_url reaches it by its zone."""
    session = http.shared_session()

    def mount(simulator: MakeSimulator) -> None:
        for zone in ZONES:
            session.mount(f"https://{zone}/", SimulatorAdapter(simulator))

    yield mount
    for zone in ZONES:
        session.adapters.pop(f"https://{zone}/", None)


def at_time_of_day(clock: Clock, hour: int) -> datetime:
    """Moves the clock to today's `hour`:00 UTC, so day boundaries in a test do not depend on when it runs."""
    now = clock.now()
    clock.advance(now.replace(hour=hour, minute=0, second=0, microsecond=0) - now)
    return clock.now()


def adapter_class() -> type[VendorAdapter]:
    """The adapter itself, imported as Lambda does (its code directory on sys.path), for tests below the stack."""
    code_dir = str(PROJECT_ROOT / "functions" / "make")
    if code_dir not in sys.path:
        sys.path.insert(0, code_dir)
    return importlib.import_module("make_collector").Make


def stored_state(stack: LocalStack) -> Any:
    return StateStore(boto3.client("dynamodb"), stack.table).read(STREAM_KEY)


def assert_exactly_once(stack: LocalStack, simulator: MakeSimulator) -> None:
    result = check_archive(stack, "make", simulator.ground_truth())
    assert result.events > 0
    assert (result.missing, result.duplicates, result.unexpected) == (0, 0, 0), result


def logs_requests(simulator: MakeSimulator, since: int = 0) -> list[Any]:
    return [r for r in simulator.requests_log[since:] if r.path == LOGS_PATH]


def paging(requests_made: list[Any]) -> list[tuple[str, str]]:
    return [(r.params["pg[offset]"][0], r.params["pg[limit]"][0]) for r in requests_made]


def millis(entry: dict[str, Any]) -> int:
    """An entry's triggeredAt in epoch ms, whatever the simulator's `time_format`."""
    return to_millis(parse_event_time(entry["triggeredAt"], "triggeredAt"))


def older_than(simulator: MakeSimulator, moment: datetime) -> int:
    """How many retrievable entries happened before `moment`: the offset a hint aimed there names, in a query that
    holds them all."""
    return sum(millis(entry) < to_millis(moment) for entry in simulator.ground_truth().values())


# --- records and objects ----------------------------------------------------------------------------------------


def test_records_match_the_entries_and_days_are_partitions(stack: LocalStack, make: MakeSimulator,
                                                           clock: Clock) -> None:
    now = clock.now()
    make.add_events(generate_events(600, now - timedelta(days=4), now - timedelta(minutes=10), seed=3))

    assert stack.invoke("MakeCollector")["status"] == "ok"

    truth = make.ground_truth()
    records = stack.archived_records("make")
    assert sorted(r["event_id"] for r in records) == sorted(truth)
    days = set()
    for record in records:
        match = KEY.fullmatch(record.pop("_key"))
        assert match, record
        raw = json.loads(record["raw"])
        assert tuple(record) == COLUMNS and raw == truth[record["event_id"]]
        assert record["event_time"] == to_iso(parse_event_time(raw["triggeredAt"], "triggeredAt"))
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", raw["triggeredAt"])  # whole seconds, served
        assert record["event_time"].startswith(match[1]), "partitioned by the entry's UTC date"
        days.add(match[1])
        assert record["stream"] == str(ORG) and record["action"] == raw["eventName"]
        assert record["actor_id"] == str(raw["actor"]["id"]) and record["actor_type"] == "user"
        assert record["actor_email"] == raw["actor"].get("email") and record["actor_name"] == raw["actor"].get("name")
        assert record["target_id"] == raw["targetId"] and record["outcome"] == "success"
        assert record["source_ip"] is None and record["user_agent"] is None  # Make does not log them
    assert len(days) >= 4, "several days of entries span several dt= partitions"
    by_action = {r["action"]: r for r in records}
    assert (by_action["scenario_updated"]["category"], by_action["scenario_updated"]["target_type"]) == \
        ("scenario", "scenario")
    assert (by_action["user_role_changed"]["category"], by_action["user_role_changed"]["target_type"]) == \
        ("user_role", "user")
    assert by_action["organization_variable_updated"]["category"] == "organization_variable"


def test_every_request_asks_oldest_first_for_whole_days(stack: LocalStack, make: MakeSimulator,
                                                        clock: Clock) -> None:
    now = at_time_of_day(clock, 12)
    make.add_events(generate_events(450, now - timedelta(days=2), now - timedelta(minutes=10), seed=4))

    assert stack.invoke("MakeCollector")["status"] == "ok"

    lookback = timedelta(days=float(stack.functions["MakeCollector"].environment["INITIAL_LOOKBACK_DAYS"]))
    requests_made = logs_requests(make)
    for request in requests_made:
        # Make's default is newest first: offsets over a list that grows at its head would repeat and skip.
        assert request.params["pg[sortBy]"] == ["triggeredAt"] and request.params["pg[sortDir]"] == ["asc"]
        # Days in an unknown zone, filtering a time that may be later than triggeredAt: from the day before the
        # window's first, to the day after tomorrow (UTC).
        assert request.params["dateFrom"] == [(now - lookback - timedelta(days=1)).date().isoformat()]
        assert request.params["dateTo"] == [(now + timedelta(days=2)).date().isoformat()]
        assert request.params["pg[returnTotalCount]"] == ["true"]
    # The first page asks for 100; the next one for the entry before the boundary and 100 more, which the API caps
    # at 100 and says so (pg.limit): from then on it asks for 100. Each next page starts one entry before the first
    # entry of the previous page's last second.
    made = paging(requests_made)
    assert [limit for _, limit in made] == ["100", "101"] + ["100"] * (len(made) - 2)
    offsets = [int(offset) for offset, _ in made]
    assert offsets == sorted(set(offsets)) and all(b - a <= 99 for a, b in itertools.pairwise(offsets))
    assert len(made) == make_backfill_requests(make)  # ending on the page that reaches pg.totalCount
    assert_exactly_once(stack, make)


@pytest.mark.parametrize(("rewrite", "message"), [
    ("ignore_sort_dir", r"asked for pg\[sortDir\]=asc, got sortDir='desc'"),
    ("descending_rows", r"entry #1 of a page is older than the one before it"),
])
def test_a_page_that_is_not_oldest_first_is_refused(rewrite: str, message: str, stack: LocalStack,
                                                    make: MakeSimulator, clock: Clock,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    now = clock.now()
    make.add_events(generate_events(300, now - timedelta(days=1), now - timedelta(minutes=10), seed=5))
    real_route = make.route

    def route(request: SimRequest) -> SimResponse:
        if rewrite == "ignore_sort_dir":  # the API's default order comes back
            query = {name: values for name, values in request.query.items() if name != "pg[sortDir]"}
            return real_route(replace(request, query=query))
        body = real_route(request).json()  # the rows newest first, without a pg block to tell
        return SimResponse.of_json(200, {"auditLogs": body["auditLogs"][::-1]})

    monkeypatch.setattr(make, "route", route)
    with pytest.raises(Exception, match=rf"make API \[malformed_response\]: {message}"):
        stack.invoke("MakeCollector")
    assert stack.archived_records("make") == []
    assert stored_state(stack).done_until is None


# --- boundary days and shifting offsets -------------------------------------------------------------------------


def test_the_next_window_starts_where_its_start_falls_in_the_query(stack: LocalStack, make: MakeSimulator,
                                                                  clock: Clock) -> None:
    now = at_time_of_day(clock, 18)
    midnight = now.replace(hour=0)
    make.add_events(generate_events(500, midnight - timedelta(days=2), now - timedelta(minutes=30), seed=6))
    make.add_events(generate_events(10, now - timedelta(minutes=9), now - timedelta(minutes=4), seed=7))
    first = stack.invoke("MakeCollector")
    assert first["status"] == "ok"
    next_start = datetime.fromisoformat(first["streams"][0]["done_until"]) - timedelta(minutes=10)  # the overlap
    before_start = older_than(make, next_start)
    assert before_start > 100, "the query holds more than a page before the next window's start"
    first_query = logs_requests(make)[0].params

    clock.advance()
    now = clock.now()
    make.add_events(generate_events(40, now - timedelta(minutes=6), now - timedelta(minutes=3), seed=8))
    since = len(make.requests_log)
    summary = stack.invoke("MakeCollector")

    second = logs_requests(make, since)
    assert len(second) == 1, "one request, not the query's entries before the window again"
    assert (second[0].params["dateFrom"], second[0].params["dateTo"]) == (first_query["dateFrom"],
                                                                          first_query["dateTo"])
    # It starts one entry before the first entry at or after the window's start (which proves the offset), and
    # asks for no more than the API has shown it serves.
    assert paging(second) == [(str(before_start - 1), "100")]
    stream = summary["streams"][0]
    assert stream["events_archived"] == 40 and stream["out_of_window"] == 0
    assert stream["duplicates_skipped"] == 10  # the overlap's entries, already archived
    assert_exactly_once(stack, make)


def test_a_shift_before_the_hinted_entry_falls_back_to_the_whole_query(stack: LocalStack, make: MakeSimulator,
                                                                       clock: Clock) -> None:
    now = at_time_of_day(clock, 18)
    midnight = now.replace(hour=0)
    make.add_events(generate_events(400, midnight, now - timedelta(minutes=15), seed=30))
    assert stack.invoke("MakeCollector")["status"] == "ok"
    # Published an hour after it happened (later than the overlap reaches back, so it is the documented limit):
    # it lands before the entry the hint names and moves it one place on.
    hour_late = generate_events(1, now - timedelta(hours=1, minutes=1), now - timedelta(hours=1), seed=31)
    make.add_events(hour_late)
    clock.advance()
    now = clock.now()
    make.add_events(generate_events(30, now - timedelta(minutes=6), now - timedelta(minutes=3), seed=32))
    since = len(make.requests_log)

    shifted = stack.invoke("MakeCollector")

    offsets = [int(offset) for offset, _ in paging(logs_requests(make, since))]
    # The hinted offset, refused; then the narrowed window's query from its first entry, whole.
    assert offsets[0] > 0 and offsets[1] == 0 and offsets[1:] == sorted(offsets[1:]) and len(offsets) > 4, offsets
    assert shifted["streams"][0]["cursors_expired"] == 1 and shifted["streams"][0]["events_archived"] == 30
    clock.advance()
    since = len(make.requests_log)
    assert stack.invoke("MakeCollector")["status"] == "ok"
    assert len(logs_requests(make, since)) == 1, "the window read whole left a new hint"
    archived = {r["event_id"] for r in stack.archived_records("make")}
    assert set(make.ground_truth()) - archived == {hour_late[0]["uuid"]}
    result = check_archive(stack, "make", make.ground_truth())
    assert (result.duplicates, result.unexpected) == (0, 0), result


def test_a_state_without_a_hint_reads_the_query_whole_once(stack: LocalStack, make: MakeSimulator,
                                                           clock: Clock) -> None:
    """A state item written before hints existed, a hint of an earlier version, or a garbled one: the query is
    read from its first entry, and that window leaves a hint."""
    now = at_time_of_day(clock, 12)
    make.add_events(generate_events(300, now.replace(hour=0), now - timedelta(minutes=15), seed=33))
    assert stack.invoke("MakeCollector")["status"] == "ok"
    table = boto3.client("dynamodb")
    old_hint = json.dumps({"day": now.date().isoformat(), "offset": 250, "uuid": "x" * 32, "triggeredAt": 1})
    for update in ({"UpdateExpression": "REMOVE hint"},
                   {"UpdateExpression": "SET hint = :hint", "ExpressionAttributeValues": {":hint": {"S": '"12"'}}},
                   {"UpdateExpression": "SET hint = :hint", "ExpressionAttributeValues": {":hint": {"S": old_hint}}}):
        table.update_item(TableName=stack.table, Key={"stream": {"S": STREAM}}, **update)
        clock.advance()
        since = len(make.requests_log)
        assert stack.invoke("MakeCollector")["status"] == "ok"
        made = paging(logs_requests(make, since))
        assert made[0] == ("0", "100") and len(made) >= 4, made  # 300 entries, 99 new a page at most after the first
        clock.advance()
        since = len(make.requests_log)
        assert stack.invoke("MakeCollector")["status"] == "ok"
        assert len(logs_requests(make, since)) == 1
    assert_exactly_once(stack, make)


def test_windows_across_midnight_keep_to_one_request(stack: LocalStack, make: MakeSimulator, clock: Clock) -> None:
    """Ticks through midnight UTC: once a day, a window's last page moves the hint to a query from the next
    window's day (one request more, to count that query); every other tick is one request."""
    midnight = at_time_of_day(clock, 0)
    clock.advance(timedelta(minutes=-30))
    # Entries become visible as their time passes: the log keeps growing through every tick.
    make.add_events(generate_events(400, midnight - timedelta(days=1), midnight - timedelta(minutes=40), seed=34))
    make.add_events(generate_events(160, midnight - timedelta(minutes=40), midnight + timedelta(minutes=25),
                                    seed=35))
    assert stack.invoke("MakeCollector")["status"] == "ok"
    per_tick = []
    for _ in range(12):
        clock.advance()
        since = len(make.requests_log)
        assert stack.invoke("MakeCollector")["status"] == "ok"
        per_tick.append([(r.params["dateFrom"][0], *paging([r])[0]) for r in logs_requests(make, since)])
    assert sorted(len(requests_made) for requests_made in per_tick) == [1] * 11 + [2], per_tick
    moved = next(requests_made for requests_made in per_tick if len(requests_made) == 2)
    assert moved[1][1:] == ("0", "1"), "the count of the query the hint moves to"
    after = per_tick[per_tick.index(moved) + 1]
    assert after[0][0] == moved[1][0] and after[0][1] != "0", "the next window starts near its start in that query"
    assert all(requests_made[0][1] != "0" for requests_made in per_tick), "no tick reads a query from its start"
    assert_exactly_once(stack, make)


def test_late_entries_shifting_the_offsets_neither_duplicate_nor_lose_rows(stack: LocalStack, make: MakeSimulator,
                                                                            clock: Clock) -> None:
    now = clock.now()
    make.add_events(generate_events(1500, now - timedelta(days=3), now - timedelta(minutes=10), seed=9))
    # Entries Make publishes hours after they happened, in the middle of what the first run already read: they
    # shift every later offset by more than a page. No overlap reaches back that far, so they are the only entries
    # that are not archived (the reconciliation's to find).
    hours_late = generate_events(150, now - timedelta(days=2, hours=18), now - timedelta(days=2, hours=16), seed=10)
    make.add_events(hours_late, published=False)
    budget = {"ms": 0, "runs": 0}
    starts: list[int] = []

    def new_context() -> Any:
        budget["runs"] += 1
        if budget["runs"] == 2:  # published while the first run's offset waits for the next run
            assert make.publish_pending() == 150
        budget["ms"] = 84_000  # 24 s above the 60 s margin, 4 s a page: six pages a run
        starts.append(len(make.requests_log))
        return context(stack, "MakeCollector", lambda: budget["ms"])

    make.on_request = lambda _request: budget.__setitem__("ms", budget["ms"] - 4_000)
    outcomes = []
    for _ in range(12):
        outcomes.append(stack.invoke("MakeCollector", context=new_context()))
        if outcomes[-1]["status"] == "ok":
            break
        clock.advance()
    assert outcomes[-1]["status"] == "ok" and len(outcomes) >= 3
    assert [o["streams"][0]["cursors_expired"] for o in outcomes[:2]] == [0, 1]  # the shift was noticed
    second_run = paging(logs_requests(make, starts[1]))
    last_of_first = paging(logs_requests(make)[:len(logs_requests(make)) - len(logs_requests(make, starts[1]))])[-1]
    # The second run's first request starts where the first run stopped, and is refused by the boundary check;
    # the window is then read again, narrowed to what is archived, from its query's first entry.
    assert int(second_run[0][0]) > int(last_of_first[0]) and second_run[1][0] == "0"

    # Late by minutes, within the overlap: the next window collects them.
    done_until = datetime.fromisoformat(outcomes[-1]["streams"][0]["done_until"])
    make.add_events(generate_events(20, done_until - timedelta(minutes=8), done_until - timedelta(seconds=1),
                                    seed=12), published=False)
    clock.advance()
    make.publish_pending()
    clock.advance()
    assert stack.invoke("MakeCollector")["status"] == "ok"

    result = check_archive(stack, "make", make.ground_truth())
    archived = {r["event_id"] for r in stack.archived_records("make")}
    assert (result.duplicates, result.unexpected) == (0, 0), result
    assert set(make.ground_truth()) - archived == {entry["uuid"] for entry in hours_late}


def adapter_for(simulator: MakeSimulator, session: requests.Session, page_size: int = 100) -> Any:
    secret, make = make_secret(), adapter_class()
    session.mount("https://make.test/", SimulatorAdapter(simulator))
    client = HttpClient("make", MAKE_BASE, headers=make.auth_headers(secret), error_details=make.error_details,
                        deadline=Deadline(lambda: 600_000, timedelta(seconds=1)), session=session,
                        lacks_audit_logs=make.lacks_audit_logs, audit_log_requirement=make.audit_log_requirement)
    return make(secret, client, page_size)


def test_entries_expiring_under_a_stored_offset_are_noticed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Entries leaving the 12-month retention shift offsets the other way: a row would be skipped."""
    moment = {"now": datetime(2025, 6, 1, 12, tzinfo=UTC)}
    monkeypatch.setattr(timeutil, "now", lambda: moment["now"])
    simulator = MakeSimulator(MAKE_TOKEN, ORG, now=lambda: moment["now"])
    oldest = moment["now"] - timedelta(days=365)
    simulator.add_events(generate_events(300, oldest + timedelta(minutes=30), oldest + timedelta(hours=3), seed=13))
    with requests.Session() as session:
        adapter = adapter_for(simulator, session)
        window = Window(oldest, moment["now"])
        first = adapter.fetch_page(str(ORG), window, None)
        assert len(first.events) == 100 and first.end is None
        times = [millis(event) for event in first.events]
        # The next page starts at the first entry of the page's last second, which exactly `at` entries precede.
        assert (first.cursor["at"], first.cursor["boundary"]) == (times.index(times[-1]), times[-1])
        second = adapter.fetch_page(str(ORG), window, first.cursor)
        assert second.events and second.end is None
        assert not {e["uuid"] for e in first.events} & {e["uuid"] for e in second.events}

        moment["now"] += timedelta(hours=1)  # the first entries are now older than 12 months
        with pytest.raises(CursorExpired, match="shifted"):
            adapter.fetch_page(str(ORG), window, second.cursor)


def test_a_hint_is_used_only_for_a_window_it_covers(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hint names a query and how many of its entries are older than an instant. It is used by a window that
    starts at or after that instant, whose days its query covers: entries from the window's start on are then
    all at or after its offset, whatever order Make gives entries of one second."""
    now = datetime(2026, 3, 4, 15, tzinfo=UTC)
    monkeypatch.setattr(timeutil, "now", lambda: now)
    simulator = MakeSimulator(MAKE_TOKEN, ORG, now=lambda: now)
    simulator.add_events(generate_events(40, now - timedelta(hours=5), now - timedelta(hours=1), seed=36))
    entries = sorted(simulator.ground_truth().values(), key=millis)
    with requests.Session() as session:
        adapter = adapter_for(simulator, session)
        aim = millis(entries[25])
        assert millis(entries[24]) < aim
        hint = {"from": "2026-03-03", "to": "2026-03-06", "at": 25, "t": aim, "served": 100}
        at_aim = from_millis(aim)
        for start, hinted, expected in [
            # From the entry before, which proves the offset, asking for what the API has shown it serves.
            (at_aim, hint, ("24", "100")),
            (at_aim + timedelta(seconds=5), {**hint, "served": None}, ("24", "101")),
            (at_aim - timedelta(milliseconds=1), hint, ("0", "100")),  # an entry before the aim may belong to it
            (at_aim + timedelta(days=1), {**hint, "from": "2026-03-05"}, ("0", "100")),  # not the window's query
            (at_aim, {**hint, "to": "2026-03-04"}, ("0", "100")),  # no longer covers what is stored today
            (at_aim, {**hint, "at": "25"}, ("0", "100")),  # garbled
        ]:
            since = len(simulator.requests_log)
            page = adapter.fetch_page(str(ORG), Window(start, start + timedelta(hours=1), hint=hinted), None)
            assert paging(logs_requests(simulator, since))[0] == expected
            if expected[0] == "24":  # the entry before the aim proves the offset, and is not an event of the window
                assert {e["uuid"] for e in page.events} == {e["uuid"] for e in entries[25:]}
        # A window's final page aims the next hint at the next window's earliest start.
        page = adapter.fetch_page(str(ORG), Window(now - timedelta(hours=6), now, next_start=at_aim), None)
        assert page.end is End.COUNT
        assert page.hint == {"from": "2026-03-03", "to": "2026-03-06", "at": 25, "t": aim, "served": 100}


def test_an_api_that_ignores_the_offset_stops_with_a_clear_error(stack: LocalStack, make: MakeSimulator,
                                                                 clock: Clock,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    now = clock.now()
    make.add_events(generate_events(300, now - timedelta(days=1), now - timedelta(minutes=10), seed=14))
    real_route = make.route

    def route(request: SimRequest) -> SimResponse:
        query = {name: values for name, values in request.query.items() if name != "pg[offset]"}
        return real_route(replace(request, query=query))

    monkeypatch.setattr(make, "route", route)
    with pytest.raises(Exception, match=r"make API \[offset_ignored\]: asked for pg\[offset\]=\d+, got a page at "
                                        r"offset 0 that does not reach it: the API does not page by pg\[offset\]"):
        stack.invoke("MakeCollector")
    archived = stack.archived_records("make")
    # What the pages that did reach their offsets gave is kept, once; the rest waits until the API pages again.
    assert 100 <= len(archived) == len({r["event_id"] for r in archived}) < 300


def test_an_api_that_ignores_the_offset_without_saying_so_stops_too(stack: LocalStack, make: MakeSimulator,
                                                                    clock: Clock,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a pg block to tell, every boundary check fails: the offsets look shifted, time after time."""
    now = clock.now()
    make.add_events(generate_events(300, now - timedelta(days=1), now - timedelta(minutes=10), seed=14))
    real_route = make.route

    def route(request: SimRequest) -> SimResponse:
        query = {name: values for name, values in request.query.items() if name != "pg[offset]"}
        return SimResponse.of_json(200, {"auditLogs": real_route(replace(request, query=query)).json()["auditLogs"]})

    monkeypatch.setattr(make, "route", route)
    # Eleven in a row; the engine then restarts the window once without its cursor, and the twelfth is raised.
    with pytest.raises(Exception, match=r"make API \[offsets_unstable\]: the audit log's offsets shifted 12 times"):
        stack.invoke("MakeCollector")
    archived = stack.archived_records("make")
    assert 100 <= len(archived) == len({r["event_id"] for r in archived}) < 300


# --- retention --------------------------------------------------------------------------------------------------


def test_the_first_run_never_asks_for_more_than_12_months(stack: LocalStack, make: MakeSimulator,
                                                          clock: Clock) -> None:
    now = clock.now()
    expired_soon = generate_events(200, now - timedelta(days=400), now - timedelta(days=364), seed=15) + \
        generate_events(20, now - timedelta(days=365) + timedelta(hours=1), now - timedelta(days=364), seed=37)
    kept = generate_events(300, now - timedelta(days=362), now - timedelta(minutes=10), seed=16)
    make.add_events(expired_soon + kept)

    assert stack.invoke("MakeCollector", environment={"INITIAL_LOOKBACK_DAYS": "400"})["status"] == "ok"

    first = logs_requests(make)[0]
    # The window starts three days inside the 365; its query a day before that (days in any zone).
    assert first.params["dateFrom"] == [(now - timedelta(days=363)).date().isoformat()]
    archived = {r["event_id"] for r in stack.archived_records("make")}
    assert archived == {entry["uuid"] for entry in kept}
    assert any(uuid in make.ground_truth() for uuid in (entry["uuid"] for entry in expired_soon))


# --- zones ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("zone", "home"), [
    ("eu2", "eu2.make.com"),
    ("eu2.make.com", "eu2.make.com"),
    ("https://EU2.make.com/api/v2", "eu2.make.com"),
    ("us1.make.celonis.com", "us1.make.celonis.com"),
    ("us2", "us2.make.com"),
])
def test_the_zone_in_the_secret_picks_the_host(zone: str, home: str, stack: LocalStack, clock: Clock,
                                               zones: Callable[[MakeSimulator], None]) -> None:
    simulator = MakeSimulator(MAKE_TOKEN, ORG, zone=home, now=clock.now)
    zones(simulator)  # on every zone's host: any other zone would answer 400
    now = clock.now()
    simulator.add_events(generate_events(120, now - timedelta(days=1), now - timedelta(minutes=10), seed=17))
    stack.put_secret("MakeCollector", make_secret(zone=zone, base_url=None))

    assert stack.invoke("MakeCollector")["status"] == "ok"
    assert_exactly_once(stack, simulator)
    assert all(r.status == 200 for r in simulator.requests_log)


def test_the_wrong_zone_is_a_clear_error(stack: LocalStack, clock: Clock,
                                         zones: Callable[[MakeSimulator], None]) -> None:
    simulator = MakeSimulator(MAKE_TOKEN, ORG, zone="eu2.make.com", now=clock.now)
    zones(simulator)
    stack.put_secret("MakeCollector", make_secret(zone="eu1", base_url=None))
    with pytest.raises(Exception, match=r"make API HTTP 400 \[SC400\]: Bad request \(User has no organization in "
                                        r"the zone\) \(the secret's 'zone' must be the zone the organization"):
        stack.invoke("MakeCollector")
    assert stored_state(stack).done_until is None


@pytest.mark.parametrize(("secret", "message"), [
    (make_secret(zone="eu3", base_url=None), r"make secret field 'zone' is 'eu3', which is not a Make zone"),
    (make_secret(zone="eu1.make.com.evil.test", base_url=None), r"field 'zone' .* not a Make zone"),
    (make_secret(zone=None), r"missing field 'zone'"),
    (make_secret(organization_id="Example Corp"), r"field 'organization_id' must be the organization's numeric id"),
    (make_secret(token=None), r"missing field 'token'"),
])
def test_unusable_secret_names_the_field(secret: dict[str, str], message: str, stack: LocalStack,
                                         make: MakeSimulator) -> None:
    stack.put_secret("MakeCollector", secret)
    with pytest.raises(Exception, match=message) as failure:
        stack.invoke("MakeCollector")
    assert MAKE_TOKEN not in str(failure.value)
    assert make.stats()["requests"] == 0


def test_zone_names_and_hosts() -> None:
    make = adapter_class()
    with pytest.raises(SecretError, match="'zone'"):
        make.base_url(make_secret(zone="ap1", base_url=None))
    assert make.base_url(make_secret(zone="eu1.celonis", base_url=None)) == "https://eu1.make.celonis.com/api/v2"
    assert make.base_url(make_secret(zone=" US1 ", base_url=None)) == "https://us1.make.com/api/v2"
    assert make.base_url(make_secret(zone="nonsense")) == MAKE_BASE  # the secret's base_url always wins


# --- access and errors ------------------------------------------------------------------------------------------


UNAVAILABLE = r"make API HTTP 40[23] \[SC40[23]\]: audit logs are not available to this account: "
REQUIREMENT = r" \(Make's audit logs need the Enterprise plan, and a token of an Admin or Owner of the organization\)"


@pytest.mark.parametrize(("knob", "message"), [
    ({"caller_role": "member"}, UNAVAILABLE + r"Permission denied \(Access denied\.\) \(the token's user must be an "
                                r"Admin or Owner of the organization, and audit logs need the Enterprise plan\)"
                                + REQUIREMENT),
    # Docs are silent on what a plan without audit logs gets: 402 (the simulator's default) or 403.
    ({"enterprise": False}, UNAVAILABLE + r"Payment Required \(Audit logs are available on the Enterprise plan "
                            r"only\.\)" + REQUIREMENT),
    ({"enterprise": False, "no_audit_logs_status": 403}, UNAVAILABLE + r"Permission denied \(Audit logs are "
                                                         r"available on the Enterprise plan only\.\)"),
    ({"token": "wrong-token-value"}, r"make API HTTP 401 \[SC401\]: Access denied \(Invalid access token\.\)"),
])
def test_access_errors_are_clear_move_nothing_and_recover(knob: dict[str, Any], message: str, stack: LocalStack,
                                                          make: MakeSimulator, clock: Clock) -> None:
    now = clock.now()
    make.add_events(generate_events(250, now - timedelta(days=1), now - timedelta(minutes=10), seed=18))
    if "token" in knob:
        stack.put_secret("MakeCollector", make_secret(token=knob["token"]))
    else:
        for name, value in knob.items():
            setattr(make, name, value)

    with pytest.raises(Exception, match=message) as failure:
        stack.invoke("MakeCollector")
    assert "wrong-token-value" not in str(failure.value) and MAKE_TOKEN not in str(failure.value)
    assert stack.archived_records("make") == []
    state = stored_state(stack)
    assert state.done_until is None and state.status["last_outcome"] == "error"

    make.caller_role, make.enterprise = "owner", True
    stack.put_secret("MakeCollector", make_secret())
    clock.advance()
    assert stack.invoke("MakeCollector")["status"] == "ok"
    assert_exactly_once(stack, make)


def test_a_malformed_page_keeps_what_came_before_and_recovers(stack: LocalStack, make: MakeSimulator,
                                                              clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    now = clock.now()
    make.add_events(generate_events(800, now - timedelta(days=2), now - timedelta(minutes=10), seed=19))
    real_route = make.route
    calls = {"n": 0}
    served: list[dict[str, Any]] = []

    def route(request: SimRequest) -> SimResponse:
        calls["n"] += 1
        if calls["n"] == 4:
            return SimResponse.of_json(200, {"data": [], "pg": {"offset": 0}})
        response = real_route(request)
        served.extend(response.json()["auditLogs"])
        return response

    monkeypatch.setattr(make, "route", route)
    with pytest.raises(Exception, match=r"make API \[malformed_response\]: audit-logs response has no 'auditLogs'"):
        stack.invoke("MakeCollector", environment={"MAX_OBJECT_EVENTS": "99"})
    # Every entry of the three pages before the bad one is archived, once ...
    archived = [r["event_id"] for r in stack.archived_records("make")]
    assert sorted(archived) == sorted({entry["uuid"] for entry in served}) and len(archived) > 250
    # ... and the cursor is right after them: at the first entry of the third page's last second.
    cursor = stored_state(stack).window.slices[0].cursor
    assert cursor["boundary"] == millis(served[-1]) and set(cursor["taken_ids"]) <= set(archived)
    clock.advance()
    assert stack.invoke("MakeCollector")["status"] == "ok"
    assert_exactly_once(stack, make)


def test_rate_limit_without_retry_after_backs_off_then_names_makes_message(stack: LocalStack, make: MakeSimulator,
                                                                           clock: Clock, pauses: Pauses) -> None:
    now = clock.now()
    make.add_events(generate_events(150, now - timedelta(days=1), now - timedelta(minutes=10), seed=20))
    make.faults.next(Fault.RATE_LIMITED, times=2)
    summary = stack.invoke("MakeCollector")
    assert summary["status"] == "ok" and summary["http"]["throttles"] == 2
    assert summary["http"]["retries"] == 2 and summary["http"]["retry_seconds"] <= 2 + 4  # backoff, no header

    make.faults.next(Fault.RATE_LIMITED, times=5)
    clock.advance()
    with pytest.raises(Exception, match=r"make API HTTP 429 \[SC429\]: gave up after 5 attempts; last error: "
                                        r"Requests limit for organization exceeded, please try again later\."):
        stack.invoke("MakeCollector")
    assert_exactly_once(stack, make)


@pytest.mark.parametrize("time_format", ["iso_seconds", "iso_ms", "epoch_ms", "epoch_s"])
def test_triggered_at_is_read_in_every_format(time_format: str, stack: LocalStack, make: MakeSimulator,
                                               clock: Clock) -> None:
    """The spec types triggeredAt as an integer (epoch ms assumed), the docs' example is ISO in whole seconds, and
    seconds since the epoch are as plausible: each is read as the instant it names."""
    make.time_format = time_format
    now = clock.now()
    make.add_events(generate_events(300, now - timedelta(days=1), now - timedelta(minutes=10), seed=21))
    assert stack.invoke("MakeCollector")["status"] == "ok"
    by_id = {r["event_id"]: r for r in stack.archived_records("make")}
    for uuid, entry in make.ground_truth().items():
        served = entry["triggeredAt"]
        assert isinstance(served, int) == time_format.startswith("epoch")
        expected = from_millis(served * 1000 if time_format == "epoch_s" else served) if isinstance(served, int) \
            else datetime.fromisoformat(served)
        assert by_id[uuid]["event_time"] == to_iso(expected)
    assert_exactly_once(stack, make)


@pytest.mark.parametrize("inclusive", [False, True])
def test_date_to_either_way_loses_nothing(inclusive: bool, stack: LocalStack, make: MakeSimulator,
                                          clock: Clock) -> None:
    """Docs are silent on whether dateTo's own day is included (the simulator excludes it by default): asking for
    the day after tomorrow works either way."""
    now = at_time_of_day(clock, 12)
    make.date_to_inclusive = inclusive
    make.add_events(generate_events(300, now - timedelta(days=1), now - timedelta(minutes=10), seed=22))
    assert stack.invoke("MakeCollector")["status"] == "ok"
    assert_exactly_once(stack, make)


# --- what the docs leave open: every alternative ------------------------------------------------------------------

ALTERNATIVES: list[dict[str, Any]] = [
    {},  # the defaults: the least friendly alternative of each
    {"page_cap": "lying"}, {"page_cap": "reject"}, {"page_cap": "ignore"}, {"page_cap": "none"},
    {"total_count": False}, {"total_count": False, "page_cap": "lying"},
    {"time_format": "iso_ms"}, {"time_format": "epoch_ms"}, {"time_format": "epoch_s"},
    {"tie_order": "stable"},
    {"date_filter": "triggeredAt"}, {"day_zone": timedelta(0)}, {"day_zone": timedelta(hours=14)},
    {"date_to_inclusive": True},
]


def switch(simulator: MakeSimulator, knobs: dict[str, Any]) -> None:
    """Sets the simulator's switches (before any entry is added: `time_format` renders entries as they come)."""
    for name, value in knobs.items():
        setattr(simulator, name, value)


def asked_above(simulator: MakeSimulator, limit: int) -> int:
    return sum(int(r.params["pg[limit]"][0]) > limit for r in logs_requests(simulator))


@pytest.mark.parametrize("knobs", ALTERNATIVES, ids=lambda knobs: ",".join(f"{k}={v}" for k, v in knobs.items())
                         or "defaults")
def test_a_backfill_is_exact_under_every_alternative(knobs: dict[str, Any], stack: LocalStack, make: MakeSimulator,
                                                      clock: Clock) -> None:
    switch(make, knobs)
    now = clock.now()
    make.add_events(generate_events(1500, now - timedelta(days=4), now - timedelta(minutes=10), seed=40))
    summary = stack.invoke("MakeCollector", environment={"MAX_OBJECT_EVENTS": "250"})  # parts end mid-window
    assert summary["status"] == "ok"
    assert_exactly_once(stack, make)
    if make.page_cap != "none":
        # Never more than 100 asked once the API has shown it serves 100: the first page after the first asks for
        # 101 (and is answered with 100, a 400, or 100 said to be 101), the look past that short page too.
        probed = knobs.get("page_cap") == "lying" and knobs.get("total_count") is False
        assert asked_above(make, 100) == (2 if probed else 1)
    if knobs in ({}, {"page_cap": "none"}):
        assert summary["http"]["requests"] == make_backfill_requests(make)


def test_a_page_larger_than_asked_is_data(stack: LocalStack, make: MakeSimulator, clock: Clock) -> None:
    """An API that serves its own page size whatever is asked (`page_cap="ignore"`): 100 entries to a collector
    asking for 40. Nothing is an error and nothing is read twice beyond the proving entry and the last second."""
    switch(make, {"page_cap": "ignore"})
    now = clock.now()
    make.add_events(generate_events(1200, now - timedelta(days=2), now - timedelta(minutes=10), seed=41))
    summary = stack.invoke("MakeCollector", environment={"PAGE_SIZE": "40"})
    assert summary["status"] == "ok"
    assert {r.params["pg[limit]"][0] for r in logs_requests(make)} <= {"40", "41"}
    assert make.stats()["events_served"] > 2 * 40 * summary["http"]["requests"]  # pages of 100
    assert summary["http"]["requests"] <= -(-1200 // 60) + 1
    assert_exactly_once(stack, make)


def test_a_cap_below_the_ask_with_an_echo_of_the_ask(stack: LocalStack, make: MakeSimulator, clock: Clock) -> None:
    """The least friendly page cap there is: 100 served, 101 echoed, and no count. A short page is then neither an
    end nor a cap: the collector looks past its last second. Once entries follow a short page, it never asks for
    more than the 100 it was served, and a window ends on an empty page."""
    switch(make, {"page_cap": "lying", "total_count": False})
    now = clock.now()
    # 180 entries a minute apart, then a burst of 30 in one second (entries 180 to 209), which the second page's
    # cap cuts.
    start = (now - timedelta(days=1)).replace(microsecond=0)
    spaced = [{**entry, "triggeredAt": to_millis(start + timedelta(minutes=n))}
              for n, entry in enumerate(generate_events(180, start - timedelta(days=1), start, seed=42, late_rate=0))]
    second = start + timedelta(hours=4)
    make.add_events([*spaced, *[{**entry, "triggeredAt": to_millis(second) + n}
                                for n, entry in enumerate(generate_events(30, second, second + timedelta(seconds=1),
                                                                          seed=43, late_rate=0))],
                     *generate_events(300, second + timedelta(hours=1), now - timedelta(minutes=10), seed=44)])
    summary = stack.invoke("MakeCollector")
    assert summary["status"] == "ok" and summary["streams"][0]["empty_pages"] == 1
    made = paging(logs_requests(make))
    # A page; the next from the entry before its last (one-entry) second, served 100 and said to be 101; a look
    # past that short page, where the burst goes on; the burst from its first entry, asking for 100 from then on.
    assert made[:4] == [("0", "100"), ("98", "101"), ("197", "101"), ("179", "100")], made
    assert all(int(limit) <= 100 for _, limit in made[4:])
    assert_exactly_once(stack, make)


@pytest.mark.parametrize("page_cap", ["none", "silent"])
def test_a_second_holding_more_entries_than_a_page(page_cap: str, stack: LocalStack, make: MakeSimulator,
                                                   clock: Clock) -> None:
    """250 entries in one second. Without a cap, larger pages are asked for until the second fits; with the
    default cap of 100 it cannot fit, and the run stops saying so, keeping what came before it."""
    switch(make, {"page_cap": page_cap})
    now = clock.now()
    second = (now - timedelta(hours=5)).replace(microsecond=0)
    before = generate_events(150, now - timedelta(days=1), second - timedelta(minutes=1), seed=45)
    bulk = [{**entry, "triggeredAt": to_millis(second) + n % 1000}
            for n, entry in enumerate(generate_events(250, second, second + timedelta(seconds=1), seed=46,
                                                      late_rate=0))]
    after = generate_events(150, second + timedelta(minutes=1), now - timedelta(minutes=10), seed=47)
    make.add_events(before + bulk + after)
    if page_cap == "none":
        assert stack.invoke("MakeCollector")["status"] == "ok"
        assert max(int(limit) for _, limit in paging(logs_requests(make))) > 250
        assert_exactly_once(stack, make)
        return
    with pytest.raises(Exception, match=rf"make API \[tie_group_too_large\]: at least \d+ entries share triggeredAt "
                                        rf"{to_iso(second)}, and the API serves at most 100 a page \(pg\[limit\]\): "
                                        r"offset paging cannot pass that instant exactly"):
        stack.invoke("MakeCollector")
    archived = [r["event_id"] for r in stack.archived_records("make")]
    assert len(archived) == len(set(archived)) and {e["uuid"] for e in before} <= set(archived)
    assert not {e["uuid"] for e in after} & set(archived) and stored_state(stack).done_until is None


@pytest.mark.parametrize("knobs", [{}, {"total_count": False, "page_cap": "lying"},
                                   {"tie_order": "stable", "time_format": "epoch_ms", "date_filter": "triggeredAt",
                                    "day_zone": timedelta(0)}],
                         ids=["defaults", "no-count-lying-cap", "friendly"])
def test_late_and_late_stored_entries_under_the_alternatives(knobs: dict[str, Any], stack: LocalStack,
                                                             make: MakeSimulator, clock: Clock) -> None:
    """Entries published late shift the offsets a stored cursor and a hint rely on, whatever the switches: they
    are noticed, nothing is archived twice, and what the overlap reaches is archived."""
    switch(make, knobs)
    now = clock.now()
    make.add_events(generate_events(1200, now - timedelta(days=2), now - timedelta(minutes=10), seed=48))
    # In the part the first run reads (its four pages hold about the first 16 hours).
    hours_late = generate_events(60, now - timedelta(days=2) + timedelta(hours=2),
                                 now - timedelta(days=2) + timedelta(hours=4), seed=49)
    make.add_events(hours_late, published=False)
    budget = {"ms": 0}

    def new_context() -> Any:
        budget["ms"] = 80_000  # four pages a run
        return context(stack, "MakeCollector", lambda: budget["ms"])

    make.on_request = lambda _request: budget.__setitem__("ms", budget["ms"] - 4_000)
    outcomes = [stack.invoke("MakeCollector", context=new_context())]
    assert outcomes[0]["status"] == "backlog"
    make.publish_pending()  # under the stored cursor
    for _ in range(30):
        clock.advance()
        outcomes.append(stack.invoke("MakeCollector", context=new_context()))
        if outcomes[-1]["status"] == "ok":
            break
    assert outcomes[-1]["status"] == "ok"
    assert sum(o["streams"][0]["cursors_expired"] for o in outcomes) >= 1
    make.on_request = None
    # Stored minutes after they happened, inside the overlap (later than the lag): the next window finds them.
    done_until = datetime.fromisoformat(outcomes[-1]["streams"][0]["done_until"])
    make.add_events(generate_events(15, done_until - timedelta(minutes=6), done_until - timedelta(seconds=1),
                                    seed=50), published=False)
    clock.advance()
    make.publish_pending()
    clock.advance()
    assert stack.invoke("MakeCollector")["status"] == "ok"
    result = check_archive(stack, "make", make.ground_truth())
    archived = {r["event_id"] for r in stack.archived_records("make")}
    assert (result.duplicates, result.unexpected) == (0, 0), result
    assert set(make.ground_truth()) - archived == {entry["uuid"] for entry in hours_late}  # the reconciliation's


@pytest.mark.parametrize("day_zone", [timedelta(hours=-10), timedelta(0), timedelta(hours=14)])
def test_entries_stored_after_their_window_are_found_by_a_later_window(day_zone: timedelta, stack: LocalStack,
                                                                       make: MakeSimulator, clock: Clock) -> None:
    """Make filters dateFrom/dateTo by createdAt (the default): an entry stored later than its window was read,
    on the next UTC day, is still in the next window's query (dateTo is the day after tomorrow), and that window's
    overlap reaches back to when it happened. One stored an hour late is past every overlap: a late event, for
    the reconciliation."""
    switch(make, {"day_zone": day_zone})
    midnight = at_time_of_day(clock, 0) + timedelta(days=1)
    clock.advance(midnight - timedelta(minutes=3) - clock.now())
    make.add_events(generate_events(300, midnight - timedelta(days=1), midnight - timedelta(minutes=20), seed=51))
    stored_late = {**generate_events(1, midnight - timedelta(minutes=6), midnight - timedelta(minutes=5), seed=52,
                                     late_rate=0)[0], "createdAt": to_iso(midnight + timedelta(minutes=4))}
    hour_late = {**generate_events(1, midnight - timedelta(minutes=9), midnight - timedelta(minutes=8), seed=53,
                                   late_rate=0)[0], "createdAt": to_iso(midnight + timedelta(hours=1))}
    make.add_events([stored_late, hour_late])
    assert stack.invoke("MakeCollector")["status"] == "ok"  # at 23:57: neither is stored yet
    assert stored_late["uuid"] not in {r["event_id"] for r in stack.archived_records("make")}
    for _ in range(3):  # 00:02, 00:07, 00:12
        clock.advance()
        assert stack.invoke("MakeCollector")["status"] == "ok"
    archived = {r["event_id"] for r in stack.archived_records("make")}
    assert stored_late["uuid"] in archived
    clock.advance(timedelta(hours=1))
    assert stack.invoke("MakeCollector")["status"] == "ok"
    archived = {r["event_id"] for r in stack.archived_records("make")}
    assert set(make.ground_truth()) - archived == {hour_late["uuid"]}
    result = check_archive(stack, "make", make.ground_truth())
    assert (result.duplicates, result.unexpected) == (0, 0), result


def test_an_idle_tick_is_one_request_with_ties_around_the_next_windows_start(stack: LocalStack, make: MakeSimulator,
                                                                            clock: Clock) -> None:
    """Bursts of 15 entries in each second around where the next window starts, in an order of each query's own
    (the default): the hint counts the entries older than that instant, which no order changes. (The overlap's
    entries, read again by every tick, fit in one page.)"""
    now = clock.now()
    make.add_events(generate_events(600, now - timedelta(days=1), now - timedelta(minutes=15), seed=54))
    around = (now - timedelta(minutes=12)).replace(microsecond=0)
    make.add_events([{**entry, "triggeredAt": to_millis(around) + (n // 15 - 3) * 1000 + n % 15}
                     for n, entry in enumerate(generate_events(90, around, around + timedelta(seconds=1), seed=55,
                                                               late_rate=0))])
    first = stack.invoke("MakeCollector")
    assert first["status"] == "ok"
    next_start = datetime.fromisoformat(first["streams"][0]["done_until"]) - timedelta(minutes=10)
    assert abs(next_start - around) < timedelta(seconds=5), "the next window starts among the bursts"
    for _ in range(3):
        clock.advance()
        since = len(make.requests_log)
        idle = stack.invoke("MakeCollector")
        assert idle["status"] == "ok" and len(logs_requests(make, since)) == 1
        assert idle["streams"][0]["out_of_window"] == 0
    assert_exactly_once(stack, make)


def test_a_rate_limit_lower_than_documented(stack: LocalStack, make: MakeSimulator, clock: Clock) -> None:
    """A shared organization: 429s long before 1,000 a minute, without Retry-After. Runs back off, give up, and
    the next ones go on from what is archived."""
    make.rate_limit_per_minute = 6
    now = clock.now()
    make.add_events(generate_events(1500, now - timedelta(days=3), now - timedelta(minutes=10), seed=56))
    for _ in range(20):
        clock.advance()
        try:
            if stack.invoke("MakeCollector")["status"] == "ok":
                break
        except Exception as exc:  # a run that gives up on 429s; the next tick goes on
            assert "Requests limit for organization exceeded" in str(exc)
    else:
        raise AssertionError("not caught up")
    assert make.stats()["rate_limited"] > 0
    assert_exactly_once(stack, make)
