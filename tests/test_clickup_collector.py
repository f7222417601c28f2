"""The ClickUp collector's contract: six log classes archived exactly once, whatever ClickUp's undocumented
paging and response semantics turn out to be, and clear errors that move nothing."""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import boto3
import pytest
from conftest import Clock, Pauses, check_archive

from auditlake import http
from auditlake.errors import MalformedResponse
from auditlake.records import COLUMNS
from auditlake.state import StateStore, StreamKey
from auditlake.timeutil import floor_millis
from auditlake_local.simulators import Fault, SimResponse, SimulatorAdapter
from auditlake_local.simulators.clickup import (
    APPLICABILITIES,
    EVENT_STATUSES,
    OLDER_APPLICABILITIES,
    ClickUpSimulator,
    applicability_of,
    generate_events,
)
from auditlake_local.stack import LocalStack
from auditlake_local.template import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT / "functions" / "clickup"))
from clickup_collector import OUTCOMES, ClickUp

# Quirks placed at the Nth request, and request counts: read with one query at a time (test_slicing.py reads them
# in slices).
pytestmark = pytest.mark.usefixtures("sequential_reading")

TOKEN = "pk_81000001_Z4Q9J2B7X1C8V3N6M5L0K4H2G7F1D9S3"
WORKSPACE = "9015000001"
BASE = "https://clickup.test/api/v3"
FUNCTION = "ClickUpCollector"
STREAM_ORDER = ("auth-and-security", "user-activity", "custom-fields", "hierarchy-activity",
                "agent-settings-activity", "other-activity")

Start = Callable[..., ClickUpSimulator]


@pytest.fixture
def start_clickup(stack: LocalStack, clock: Clock, pauses: Pauses) -> Iterator[Start]:
    """Mounts a ClickUp simulator with the given knobs at the secret's base_url."""
    session = http.shared_session()

    def start(**knobs: Any) -> ClickUpSimulator:
        simulator = ClickUpSimulator(TOKEN, WORKSPACE, now=clock.now, **knobs)
        session.mount("https://clickup.test/", SimulatorAdapter(simulator))
        return simulator

    put_secret(stack)
    yield start
    session.adapters.pop("https://clickup.test/", None)


@pytest.fixture
def clickup(start_clickup: Start) -> ClickUpSimulator:
    return start_clickup()


def put_secret(stack: LocalStack, token: str = TOKEN) -> None:
    stack.put_secret(FUNCTION, {"token": token, "workspace_id": WORKSPACE, "base_url": BASE})


def seed(simulator: ClickUpSimulator, clock: Clock, count: int = 600, seed: int = 3) -> list[dict[str, Any]]:
    now = clock.now()
    events = generate_events(count, now - timedelta(days=2), now - timedelta(minutes=10), seed=seed)
    simulator.add_events(events)
    return events


def burst(at: datetime, count: int, event_type: str = "SCIM_DEPROVISION") -> list[dict[str, Any]]:
    """`count` rows in one millisecond (a bulk deprovisioning), each about a different user."""
    stamp = at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"
    return [{"id": f"burst-{event_type.lower()}-{index:04d}", "eventType": event_type, "eventStatus": "success",
             "title": "User Deprovisioned Via SCIM", "userId": 81000001, "userName": "Grace Hopper",
             "userEmail": "grace.hopper1@example.com", "userRole": 2, "clientIp": "198.51.100.20",
             "startTime": stamp, "endTime": stamp, "targetEmail": f"leaver{index}@example.com"}
            for index in range(count)]


def stream_key(applicability: str) -> StreamKey:
    return StreamKey("clickup", f"{WORKSPACE}:{applicability}")


def state_of(stack: LocalStack, applicability: str) -> Any:
    return StateStore(boto3.client("dynamodb"), stack.table).read(stream_key(applicability))


def assert_exactly_once(stack: LocalStack, simulator: ClickUpSimulator) -> list[dict[str, Any]]:
    """Archive and truth compared by the raw rows (rows may have no id to compare by)."""
    check = check_archive(stack, "clickup", simulator.ground_truth())
    assert check.events > 0
    assert (check.missing, check.duplicates, check.unexpected, check.archived) == (0, 0, 0, check.events), check
    return stack.archived_records("clickup")


def run_until_caught_up(stack: LocalStack, clock: Clock, max_ticks: int = 10,
                        environment: dict[str, str] | None = None) -> dict[str, Any]:
    for _ in range(max_ticks):
        summary = stack.invoke(FUNCTION, environment=environment)
        if summary["status"] == "ok":
            return summary
        clock.advance()
    raise AssertionError("not caught up")


# --- records and streams ------------------------------------------------------------------------------------------


def test_six_classes_are_six_streams_archived_verbatim(stack: LocalStack, start_clickup: Start,
                                                       clock: Clock) -> None:
    clickup = start_clickup(row_ids=True)  # rows that name themselves, to compare record by record
    seed(clickup, clock, count=400)
    summary = stack.invoke(FUNCTION)

    assert summary["status"] == "ok"
    assert [s["stream"] for s in summary["streams"]] == [str(stream_key(a)) for a in STREAM_ORDER]
    records = assert_exactly_once(stack, clickup)
    truth = clickup.ground_truth()
    per_class = Counter(r["category"] for r in records)
    assert set(per_class) == set(APPLICABILITIES)
    for record in records:
        assert tuple(key for key in record if key != "_key") == COLUMNS
        raw = json.loads(record["raw"])
        assert raw == truth[record["event_id"]] and record["event_id"] == raw["id"]
        applicability = applicability_of(raw["eventType"])
        assert record["stream"] == f"{WORKSPACE}:{applicability}" and record["category"] == applicability
        assert record["event_time"] == raw["startTime"]
        assert record["action"] == raw["eventType"]
        assert record["actor_email"] == raw["userEmail"] and record["source_ip"] == raw["clientIp"]
        assert record["actor_id"] == (str(raw["userId"]) if raw["userId"] is not None else None)
        assert record["actor_name"] == raw["userName"] and record["actor_type"] == "user"
        assert record["outcome"] == OUTCOMES[raw["eventStatus"]]
        assert f"clickup-{WORKSPACE}-{applicability}_" in record["_key"]
    for applicability in APPLICABILITIES:  # each class keeps its own state, and what it learnt of the paging
        state = state_of(stack, applicability)
        assert state.done_until is not None and state.window is None
        assert state.events_archived == per_class[applicability]
        # the largest page ClickUp served for it (at most its cap of 50), never less than the spec example's 10
        assert state.hint == {"served": max(10, min(50, per_class[applicability])), "inclusive": None}

    clock.advance()
    idle = stack.invoke(FUNCTION)
    assert sum(s["events_archived"] for s in idle["streams"]) == 0
    # Per class: one empty page, or, for a class with rows in the overlap, one page shorter than the 50 rows
    # ClickUp served before (so it holds them all) and the empty page below it that proves it.
    overlap_from = datetime.fromisoformat(summary["streams"][0]["done_until"]) - timedelta(minutes=10)
    busy = {applicability_of(row["eventType"]) for row in truth.values()
            if datetime.fromisoformat(row["startTime"]) >= overlap_from}
    assert idle["http"]["requests"] == 6 + len(busy)


# --- exact under every reading the docs allow ---------------------------------------------------------------------

CAPS = {"silent-cap-50": {}, "400-above-1000": {"max_page_rows": 1000, "page_rows_over_max": "reject"},
        "no-cap": {"max_page_rows": None}}
BOUNDS = {"start-excl-end-incl": {}, "start-incl-end-excl": {"start_time_inclusive": True,
                                                              "end_time_inclusive": False}}


@pytest.mark.parametrize("bounds", list(BOUNDS))
@pytest.mark.parametrize("inclusive", [False, True], ids=["page-timestamp-exclusive", "page-timestamp-inclusive"])
@pytest.mark.parametrize("cap", list(CAPS))
def test_exact_under_every_page_cap_and_reading_of_the_bounds(cap: str, inclusive: bool, bounds: str,
                                                              stack: LocalStack, start_clickup: Start,
                                                              clock: Clock) -> None:
    """Generated rows (no ids; identical failed logins in one millisecond), bursts just under a capped page at page
    boundaries, rows AT a window's first and last milliseconds, in parts of 100 rows, over three ticks."""
    clickup = start_clickup(page_timestamp_inclusive=inclusive, **CAPS[cap], **BOUNDS[bounds])
    now = clock.now()
    seed(clickup, clock, count=900)
    clickup.add_events(burst(now - timedelta(hours=3), 49))  # a capped page's worth, less one
    clickup.add_events(burst(now - timedelta(hours=3, milliseconds=1), 45, "SCIM_PROVISION"))  # right below it
    clickup.add_events(identical_failed_logins(now - timedelta(hours=6), 7))
    environment = {"MAX_OBJECT_EVENTS": "100"}
    assert stack.invoke(FUNCTION, environment=environment)["status"] == "ok"

    done_until = state_of(stack, "auth-and-security").done_until
    clock.advance()
    window_end = floor_millis(clock.now() - timedelta(seconds=120))  # the next window's end (the default lag)
    start = done_until - timedelta(minutes=10)  # the next window's start (the default overlap)
    # Late rows at the next window's first millisecond, and at its last and the one after it.
    clickup.add_events(burst(start, 3, "CHANGE_2FA") + burst(window_end - timedelta(milliseconds=1), 2, "CHANGE_EMAIL")
                       + burst(window_end, 2, "CHANGE_PASSWORD") + identical_failed_logins(start, 3))
    assert stack.invoke(FUNCTION, environment=environment)["status"] == "ok"
    clock.advance()
    assert stack.invoke(FUNCTION, environment=environment)["status"] == "ok"
    assert_exactly_once(stack, clickup)


def identical_failed_logins(at: datetime, count: int) -> list[dict[str, Any]]:
    """`count` failed logins by one person from one address in one millisecond: without ids, identical rows."""
    stamp = at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"
    return [{"id": f"guess-{stamp}-{index}", "eventType": "USER_LOGIN", "eventStatus": "failed",
             "title": "User Login", "userId": None, "userName": None, "userEmail": "ceo@example.com",
             "userRole": None, "clientIp": "203.0.113.66", "startTime": stamp, "endTime": stamp}
            for index in range(count)]


def test_identical_rows_are_counted_not_merged_across_pages_and_windows(stack: LocalStack, start_clickup: Start,
                                                                         clock: Clock) -> None:
    clickup = start_clickup()  # the defaults: no ids, 50 rows a page
    now = clock.now()
    guesses = now - timedelta(minutes=4)  # inside the next window's overlap
    newer = generate_events(48, guesses + timedelta(milliseconds=5), now - timedelta(minutes=3), seed=11,
                            burst_rate=0, repeat_rate=0)
    clickup.add_events([{**row, "eventType": "USER_LOGOUT", "title": "User Logout"} for row in newer])
    clickup.add_events(identical_failed_logins(guesses, 5))  # the first page ends two copies into them
    clock.advance()
    assert stack.invoke(FUNCTION)["status"] == "ok"
    records = assert_exactly_once(stack, clickup)
    keys = sorted(r["event_id"] for r in records if json.loads(r["raw"])["clientIp"] == "203.0.113.66")
    digest = keys[0]
    assert keys == [digest, f"{digest}-1", f"{digest}-2", f"{digest}-3", f"{digest}-4"]

    clickup.add_events([{**row, "id": "late"} for row in identical_failed_logins(guesses, 1)])  # a sixth, late
    clock.advance()
    again = stack.invoke(FUNCTION)  # the overlap reads them again: the same five keys, skipped, and a sixth
    assert sum(s["events_archived"] for s in again["streams"]) == 1
    assert sum(s["duplicates_skipped"] for s in again["streams"]) >= 5
    records = assert_exactly_once(stack, clickup)
    assert f"{digest}-5" in {r["event_id"] for r in records}


# --- the same-millisecond burst -----------------------------------------------------------------------------------


@pytest.mark.parametrize("row_ids", [True, False], ids=["ids", "no-ids"])
@pytest.mark.parametrize("inclusive", [False, True], ids=["exclusive", "inclusive"])
@pytest.mark.parametrize("cap", ["400-above-1000", "no-cap"])
def test_bursts_larger_than_a_page_are_archived_exactly_once_where_clickup_serves_larger_pages(
        cap: str, inclusive: bool, row_ids: bool, stack: LocalStack, start_clickup: Start, clock: Clock) -> None:
    """Under both readings of pageTimestamp, with and without row ids, in parts of 100 rows."""
    clickup = start_clickup(page_timestamp_inclusive=inclusive, row_ids=row_ids, **CAPS[cap])
    now = clock.now()
    seed(clickup, clock, count=150)
    clickup.add_events(burst(now - timedelta(hours=5), 250))  # 250 rows in one millisecond ...
    clickup.add_events(burst(now - timedelta(hours=5, seconds=-1), 30, "SCIM_PROVISION"))  # ... under 30 newer ones
    clickup.add_events(burst(now - timedelta(hours=9), 200, "SCIM_UPDATE"))  # fills two pages exactly
    clickup.add_events(burst(now - timedelta(days=3), 150, "USER_LOGIN"))  # the oldest rows of the window
    environment = {"MAX_OBJECT_EVENTS": "100"}
    assert stack.invoke(FUNCTION, environment=environment)["status"] == "ok"
    clickup.add_events(burst(clock.now() - timedelta(minutes=3), 100, "TEAM_MEMBER_ADDED"))  # a page, alone
    clock.advance()
    assert stack.invoke(FUNCTION, environment=environment)["status"] == "ok"

    records = assert_exactly_once(stack, clickup)
    assert sum("leaver" in r["raw"] for r in records) == 730
    if not row_ids:  # the key is the row's content hash, so the same row gets the same key on every read
        assert all(len(r["event_id"]) == 64 for r in records if "leaver" in r["raw"])


@pytest.mark.parametrize(("knobs", "size", "message"), [
    ({}, 60, r"\[burst_too_large\]: at least 50 auth-and-security rows share the millisecond \S+ and ClickUp never "
             r"served more than 50 rows a page \(asked for 100\)"),
    ({"max_page_rows": None}, 1001, r"\[burst_too_large\]: at least 1000 auth-and-security rows share the millisecond "
                                    r"\S+ and ClickUp served all 1000 asked for"),
    ({"max_page_rows": 100, "page_rows_over_max": "reject"}, 150,
     r"HTTP 400: pageRows=200 was refused \(pagination\.pageRows must not be greater than 100.*\); it was needed "
     r"because at least 100 auth-and-security rows share the millisecond"),
], ids=["silent-cap", "no-cap", "400-above-100"])
def test_a_burst_beyond_what_clickup_serves_a_page_is_a_clear_error(knobs: dict[str, Any], size: int, message: str,
                                                                    stack: LocalStack, start_clickup: Start,
                                                                    clock: Clock) -> None:
    events = generate_events(200, clock.now() - timedelta(days=1), clock.now() - timedelta(minutes=10), seed=5)
    events += burst(clock.now() - timedelta(hours=1), size)
    clickup = start_clickup(**knobs)
    clickup.add_events(events)

    with pytest.raises(Exception, match=r"clickup API " + message) as failure:
        stack.invoke(FUNCTION)
    assert TOKEN not in str(failure.value)
    assert "auth-and-security" in str(failure.value) and "1 stream(s) failed" in str(failure.value)
    assert state_of(stack, "auth-and-security").done_until is None  # no cursor past the unreadable burst
    assert state_of(stack, "user-activity").done_until is not None  # the other classes are collected
    archived = Counter(json.loads(r["raw"])["eventType"] for r in stack.archived_records("clickup"))
    assert archived["SCIM_DEPROVISION"] < size  # what lies above the burst is kept, the burst is not complete


@pytest.mark.parametrize("cap", list(CAPS))
def test_a_page_of_only_rows_already_returned_is_neither_a_loop_nor_a_burst(cap: str, stack: LocalStack,
                                                                           start_clickup: Start, clock: Clock) -> None:
    """Classes whose last page ends exactly on their oldest rows: the re-read brings only rows already returned."""
    clickup = start_clickup(**CAPS[cap])
    now = clock.now()
    clickup.add_events(burst(now - timedelta(hours=1), 1, "USER_LOGOUT"))  # one row
    clickup.add_events(burst(now - timedelta(hours=2), 9, "TASK_CREATED"))  # nine rows in one millisecond
    page = 50 if cap == "silent-cap-50" else 100
    for index in range(page + page - 1):  # two pages exactly (the second repeats one row)
        clickup.add_events([{**row, "id": f"field-{index}"} for row in burst(now - timedelta(minutes=20 + index), 1,
                                                                                 "FIELD_CREATED")])
    summary = stack.invoke(FUNCTION)
    assert summary["status"] == "ok"
    assert_exactly_once(stack, clickup)
    requests = {s["stream"].rpartition(":")[2]: s["pages_fetched"] for s in summary["streams"]}
    assert requests["auth-and-security"] == requests["user-activity"] == 2  # the page, then the empty one
    assert requests["custom-fields"] == 4  # two full pages, the re-read of the last millisecond, the empty page


def test_a_cap_that_shrinks_after_the_hint_is_caught_and_the_window_read_again(stack: LocalStack,
                                                                               start_clickup: Start,
                                                                               clock: Clock) -> None:
    clickup = start_clickup(max_page_rows=None)
    seed(clickup, clock, count=600)
    assert stack.invoke(FUNCTION)["status"] == "ok"
    assert state_of(stack, "user-activity").hint["served"] == 100
    clickup.max_page_rows = 20  # ClickUp starts capping: a page of 20 is shorter than the 100 it served
    clickup.add_events(generate_events(45, clock.now() - timedelta(minutes=9), clock.now() - timedelta(minutes=3),
                                       seed=13))
    clock.advance()
    summary = stack.invoke(FUNCTION)
    assert summary["status"] == "ok" and sum(s["cursors_expired"] for s in summary["streams"]) >= 1
    assert_exactly_once(stack, clickup)


# --- what ClickUp may filter and page by --------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("time_key", "named"), [("endTime", "endTime"), ("internal", "an internal time")])
def test_paging_by_another_time_than_start_time_fails_loudly_naming_it(time_key: str, named: str,
                                                                       stack: LocalStack, start_clickup: Start,
                                                                       clock: Clock) -> None:
    clickup = start_clickup(time_key=time_key)
    now = clock.now()
    clickup.add_events(generate_events(300, now - timedelta(days=1), now - timedelta(minutes=10), seed=14))
    started = now - timedelta(hours=2)  # a SCIM sync that ran for an hour, and a login while it ran
    clickup.add_events([{**burst(started, 1, "SCIM_UPDATE")[0], "endTime": burst(started + timedelta(hours=1), 1)[0][
        "startTime"]}, *burst(started + timedelta(minutes=30), 1, "USER_LOGIN")])
    for index in range(20):  # twenty logouts in one second: ClickUp stored them in another order
        clickup.add_events([{**row, "id": f"logout-{index}"} for row in burst(
            started - timedelta(hours=1, milliseconds=37 * index), 1, "USER_LOGOUT")])
    with pytest.raises(Exception, match=r"\[paging_key_mismatch\]: auth-and-security row #\d+ has the time \S+, "
                                        r"(after an older row|outside the queried span) .*ClickUp filters and pages by "
                                        + named + r", not by the row's startTime"):
        stack.invoke(FUNCTION)
    assert state_of(stack, "auth-and-security").done_until is None


# --- errors that move nothing -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_class_the_workspace_refuses_is_named_and_the_others_are_collected(stack: LocalStack,
                                                                             start_clickup: Start,
                                                                             clock: Clock) -> None:
    events = seed(start_clickup(), clock, count=400)
    older = start_clickup(applicabilities=OLDER_APPLICABILITIES)
    older.add_events(events)
    with pytest.raises(Exception, match=r"2 stream\(s\) failed") as failure:
        stack.invoke(FUNCTION)
    for refused in ("agent-settings-activity", "other-activity"):
        assert re.search(rf"{refused}: clickup API HTTP 400 \[applicability_refused\]: this Workspace refuses the "
                         rf"log class {refused} \(applicability must be one of", str(failure.value))
        assert state_of(stack, refused).done_until is None
    for collected in OLDER_APPLICABILITIES:
        assert state_of(stack, collected).done_until is not None

    clickup = start_clickup()  # ClickUp accepts them again: they resume where they stopped
    clickup.add_events(events)
    clock.advance()
    assert stack.invoke(FUNCTION)["status"] == "ok"
    assert_exactly_once(stack, clickup)


@pytest.mark.slow
@pytest.mark.parametrize(("status", "said"), [(404, r" \[INSUFFICIENT_WORKSPACE_ACCESS\]: audit logs are not available "
                                                    r"to this account: the Workspace cannot use audit logs"),
                                              (402, r": audit logs are not available to this account: Audit logs "
                                                    r"require the Enterprise plan"),
                                              (403, r": audit logs are not available to this account: Audit logs "
                                                    r"are not available on this Workspace's plan")])
def test_a_plan_without_audit_logs_is_one_clear_error_whatever_the_status(status: int, said: str, stack: LocalStack,
                                                                          start_clickup: Start,
                                                                          clock: Clock) -> None:
    events = seed(start_clickup(), clock, count=200)
    start_clickup(enterprise=False, no_audit_logs_status=status).add_events(events)
    with pytest.raises(Exception, match=rf"clickup API HTTP {status}{said}.*\(ClickUp's audit logs need the "
                                        r"Enterprise plan and the Workspace owner's token\)"):
        stack.invoke(FUNCTION)
    assert stack.archived_records("clickup") == []
    # The account, not a class: the first stream's error ends the run, and the other classes are not asked.
    states = [state for state in map(partial(state_of, stack), APPLICABILITIES) if state is not None]
    assert len(states) == 1 and states[0].done_until is None and states[0].status["last_outcome"] == "error"

    clickup = start_clickup()  # the plan is upgraded: the next tick collects everything
    clickup.add_events(events)
    clock.advance()
    assert stack.invoke(FUNCTION)["status"] == "ok"
    assert_exactly_once(stack, clickup)


def test_a_wrong_token_is_a_clear_error_that_moves_nothing(stack: LocalStack, start_clickup: Start,
                                                           clock: Clock) -> None:
    seed(start_clickup(), clock, count=200)
    put_secret(stack, token="pk_81000001_WRONGWRONGWRONG")
    with pytest.raises(Exception, match=r"clickup API HTTP 401: Token invalid") as failure:
        stack.invoke(FUNCTION)
    assert "WRONGWRONG" not in str(failure.value)
    assert stack.archived_records("clickup") == []


# --- the response's undocumented shape ----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("knobs", [{"envelope": None, "time_format": "epoch_ms"},
                                   {"envelope": "auditLogs", "row_ids": False}],
                         ids=["bare-list-epoch-ms", "auditLogs-envelope-no-ids"])
def test_response_shape_variants(knobs: dict[str, Any], stack: LocalStack, start_clickup: Start,
                                 clock: Clock) -> None:
    clickup = start_clickup(**knobs)
    events = seed(clickup, clock, count=300)
    assert stack.invoke(FUNCTION)["status"] == "ok"
    records = assert_exactly_once(stack, clickup)
    times = {item["id"]: item["startTime"] for item in events}
    for record in records:
        raw = json.loads(record["raw"])
        if "id" in raw:
            assert record["event_time"] == times[raw["id"]]
        if knobs.get("time_format") == "epoch_ms":
            assert isinstance(raw["startTime"], int)


# --- errors that move nothing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("mangle", "message"), [
    (lambda page: {"result": page["data"]},
     r"queryAuditLog returned an object with keys \['result'\], neither a list of rows nor an object with one of "
     r"data\|logs\|items\|events\|auditLogs"),
    (lambda page: {"data": [{**page["data"][0], "startTime": None}]}, r"row #0 .*unreadable.*startTime"),
], ids=["unknown-envelope", "no-time"])
def test_malformed_responses_refuse_the_page_and_keep_the_cursor(
        mangle: Callable[[dict[str, Any]], Any], message: str, stack: LocalStack, clickup: ClickUpSimulator,
        clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    seed(clickup, clock, count=300)
    real_route = clickup.route
    calls = {"n": 0}

    def route(request: Any) -> SimResponse:
        response = real_route(request)
        calls["n"] += 1
        if calls["n"] == 3:  # the third page of the first class
            return SimResponse.of_json(200, mangle(response.json()))
        return response

    monkeypatch.setattr(clickup, "route", route)
    with pytest.raises(Exception, match=r"clickup API \[malformed_response\]: " + message):
        stack.invoke(FUNCTION, environment={"MAX_OBJECT_EVENTS": "50", "PAGE_SIZE": "50"})
    state = state_of(stack, "auth-and-security")
    assert state.done_until is None and state.window is not None and state.window.slices[0].cursor is not None
    kept = len(stack.archived_records("clickup"))
    assert 0 < kept < len(clickup.ground_truth())

    monkeypatch.setattr(clickup, "route", real_route)
    clock.advance()
    run_until_caught_up(stack, clock)
    assert_exactly_once(stack, clickup)


def test_rate_headers_pace_the_run_and_a_429_waits_for_the_reset(stack: LocalStack, start_clickup: Start,
                                                                clock: Clock, pauses: Pauses,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def pause(seconds: float) -> None:  # time passes for ClickUp while the collector waits
        pauses(seconds)
        clock.advance(timedelta(seconds=seconds))

    monkeypatch.setattr(http, "pause", pause)
    clickup = start_clickup(rate_limit_per_minute=5)
    seed(clickup, clock, count=300)
    summary = stack.invoke(FUNCTION)
    # X-RateLimit-Limit says 5 a minute (the adapter expects Enterprise's 10,000); Remaining and Reset spread the
    # rest of each minute, and at 0 the run waits for the reset: no request is ever refused.
    assert summary["status"] == "ok" and summary["http"]["throttles"] == clickup.stats()["rate_limited"] == 0
    assert summary["http"]["requests"] > 5 and summary["http"]["paced_per_minute"] == 5
    assert summary["http"]["pacing_seconds"] >= 60 * (summary["http"]["requests"] // 5 - 1)
    assert_exactly_once(stack, clickup)

    clickup.rate_limit_per_minute = None
    clickup.faults.next(Fault.RATE_LIMITED)  # a 429 whose X-RateLimit-Reset is a second away
    clock.advance()
    summary = stack.invoke(FUNCTION)
    assert summary["status"] == "ok" and summary["http"]["throttles"] == summary["http"]["retries"] == 1
    assert 0 < summary["http"]["retry_seconds"] <= 2

    clickup.faults.next(Fault.SERVER_ERROR)  # a 500 whose X-RateLimit-Reset is the end of the minute: not a wait
    clock.advance()
    summary = stack.invoke(FUNCTION)
    assert summary["status"] == "ok" and summary["http"]["retries"] == 1 and summary["http"]["throttles"] == 0
    assert summary["http"]["retry_seconds"] <= 2  # the backoff, not the reset up to a minute away
    assert_exactly_once(stack, clickup)


def test_every_event_status_has_an_outcome() -> None:
    adapter = ClickUp({"token": TOKEN, "workspace_id": WORKSPACE}, http=None, page_size=100)  # type: ignore[arg-type]
    outcomes = {status: adapter.normalise({"eventStatus": status}, f"{WORKSPACE}:auth-and-security").outcome
                for status in EVENT_STATUSES}
    assert outcomes == {"success": "success", "completed": "success", "warn": "success", "failed": "failure",
                        "error": "failure", "system_error": "failure", "skipped": None, "started": None}
    assert set(OUTCOMES) == EVENT_STATUSES  # the spec's enum, every value
    assert adapter.normalise({"eventStatus": "new_status"}, f"{WORKSPACE}:other-activity").outcome is None
    assert adapter.normalise({}, f"{WORKSPACE}:other-activity").outcome is None


# --- the adapter's reading of rows and errors ---------------------------------------------------------------------


def test_error_bodies_v3_and_v2() -> None:
    assert ClickUp.error_details(401, {"status": 401, "message": "Token invalid", "trace_id": 123,
                                       "timestamp": 1}) == (None, "Token invalid (trace_id 123)")
    assert ClickUp.error_details(401, {"err": "Token invalid", "ECODE": "OAUTH_025"}) == ("OAUTH_025",
                                                                                        "Token invalid")
    code, message = ClickUp.error_details(404, {"err": "Workspace not eligible",
                                                "ECODE": "INSUFFICIENT_WORKSPACE_ACCESS"})
    assert code == "INSUFFICIENT_WORKSPACE_ACCESS" and message == "the Workspace cannot use audit logs"
    assert ClickUp.lacks_audit_logs(404, code) and ClickUp.lacks_audit_logs(402, None)
    assert ClickUp.lacks_audit_logs(403, None) and not ClickUp.lacks_audit_logs(404, None)
    assert ClickUp.error_details(503, "503 Service Unavailable") == (None,
                                                                      "unexpected error body: 503 Service Unavailable")
    assert ClickUp.auth_headers({"token": "pk_1_ABC", "workspace_id": "1"}) == {"Authorization": "pk_1_ABC"}


def test_row_keys_and_times() -> None:
    adapter = ClickUp({"token": TOKEN, "workspace_id": WORKSPACE}, http=None, page_size=100)  # type: ignore[arg-type]
    row = {"eventType": "USER_LOGIN", "startTime": "2025-06-01T12:00:00.123Z", "userId": 7}
    reordered = {"userId": 7, "startTime": "2025-06-01T12:00:00.123Z", "eventType": "USER_LOGIN"}
    assert adapter.event_id(row) == adapter.event_id(reordered)  # canonical JSON: key order does not matter
    assert adapter.event_id(row) != adapter.event_id({**row, "userId": 8})
    assert adapter.event_id({**row, "id": 42}) == "42" and adapter.event_id({**row, "id": "a-b"}) == "a-b"
    expected = datetime.fromisoformat("2025-06-01T12:00:00.123+00:00")
    assert adapter.event_time(row) == expected
    assert adapter.event_time({"eventTime": 1748779200123}) == expected
    assert adapter.event_time({"timestamp": "1748779200123", "date": "x"}) == expected
    assert adapter.event_time({"createdAt": "2025-06-01T12:00:00.123Z"}) == expected
    with pytest.raises(KeyError):
        adapter.event_time({"endTime": 1748779200123})
    for body in ([row], {"data": [row]}, {"logs": [row]}, {"items": [row]}, {"events": [row]}, {"auditLogs": [row]}):
        assert adapter._rows(body) == [row]
    with pytest.raises(MalformedResponse, match="neither a list"):
        adapter._rows({"data": {"rows": [row]}})
    with pytest.raises(MalformedResponse, match=r"row #1 .*unreadable.*str, not an object"):
        adapter._keyed([row, "not a row"])
    with pytest.raises(MalformedResponse, match=r"row #0 .*unreadable.*ValueError"):
        adapter._keyed([{**row, "startTime": "yesterday"}])
    with pytest.raises(MalformedResponse, match=r"row #0 .*unreadable.*id is \[1\]"):
        adapter._keyed([{**row, "id": [1]}])
    # Identical id-less rows on a page: one key each, by their ordinal; rows with ids keep their ids.
    other = {**row, "userId": 9}
    keyed = adapter._keyed([row, other, dict(row), {**row, "id": 5}, dict(row)])
    digest = adapter.event_id(row)
    assert [adapter.event_id(r) for r in keyed] == [digest, adapter.event_id(other), f"{digest}-1", "5",
                                                     f"{digest}-2"]
    assert keyed[2] == row and json.dumps(keyed[2]) == json.dumps(row)  # served verbatim
