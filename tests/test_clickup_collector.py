"""The ClickUp collector's contract: six log classes archived exactly once, whatever ClickUp's undocumented
paging and response semantics turn out to be, and clear errors that move nothing."""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import boto3
import pytest
from conftest import Clock, Pauses, check_archive

from auditlake import http
from auditlake.errors import MalformedResponse
from auditlake.records import COLUMNS
from auditlake.state import StateStore
from auditlake_local.simulators import Fault, SimResponse, SimulatorAdapter
from auditlake_local.simulators.clickup import APPLICABILITIES, ClickUpSimulator, applicability_of, generate_events
from auditlake_local.stack import LocalStack
from auditlake_local.template import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT / "functions" / "clickup"))
from clickup_collector import ClickUp

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


def stream_key(applicability: str) -> str:
    return f"clickup#{WORKSPACE}:{applicability}"


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


def test_six_classes_are_six_streams_archived_verbatim(stack: LocalStack, clickup: ClickUpSimulator,
                                                       clock: Clock) -> None:
    seed(clickup, clock, count=400)
    summary = stack.invoke(FUNCTION)

    assert summary["status"] == "ok"
    assert [s["stream"] for s in summary["streams"]] == [stream_key(a) for a in STREAM_ORDER]
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
        assert record["outcome"] == {"success": "success", "failed": "failure", "error": "failure"}[
            raw["eventStatus"]]
        assert f"clickup-{WORKSPACE}-{applicability}_" in record["_key"]
    for applicability in APPLICABILITIES:  # each class keeps its own state
        state = state_of(stack, applicability)
        assert state.done_until is not None and state.window is None
        assert state.events_archived == per_class[applicability]

    clock.advance()
    idle = stack.invoke(FUNCTION)
    assert sum(s["events_archived"] for s in idle["streams"]) == 0
    assert idle["http"]["requests"] == 6  # one short page per class


# --- the same-millisecond burst -----------------------------------------------------------------------------------


@pytest.mark.parametrize("row_ids", [True, False], ids=["ids", "no-ids"])
@pytest.mark.parametrize("inclusive", [False, True], ids=["exclusive", "inclusive"])
def test_bursts_larger_than_a_page_are_archived_exactly_once(inclusive: bool, row_ids: bool, stack: LocalStack,
                                                             start_clickup: Start, clock: Clock) -> None:
    """Under both readings of pageTimestamp, with and without row ids, in parts of 100 rows."""
    clickup = start_clickup(page_timestamp_inclusive=inclusive, row_ids=row_ids)
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
        assert all(len(r["event_id"]) == 64 for r in records)


def test_a_burst_beyond_the_largest_page_is_a_clear_error(stack: LocalStack, start_clickup: Start,
                                                          clock: Clock) -> None:
    events = generate_events(200, clock.now() - timedelta(days=1), clock.now() - timedelta(minutes=10), seed=5)
    events += burst(clock.now() - timedelta(hours=1), 1001)
    start_clickup().add_events(events)

    with pytest.raises(Exception, match=r"clickup API \[burst_too_large\]: more than 1000 auth-and-security rows "
                                        r"share the millisecond") as failure:
        stack.invoke(FUNCTION)
    assert TOKEN not in str(failure.value)
    assert state_of(stack, "auth-and-security").done_until is None  # no cursor past the unreadable burst
    assert state_of(stack, "user-activity").done_until is not None  # the other classes are unaffected

    # Where ClickUp refuses a larger page, the refusal names the burst it was needed for.
    start_clickup(max_page_rows=100).add_events(events)
    with pytest.raises(Exception, match=r"clickup API HTTP 400: pageRows=1000 was refused \(pagination\.pageRows must "
                                        r"not be greater than 100.*\); it was needed because at least \d{3,} "
                                        r"auth-and-security rows share the millisecond"):
        stack.invoke(FUNCTION)
    assert state_of(stack, "auth-and-security").done_until is None


@pytest.mark.parametrize(("size", "older_rows"), [(250, False), (100, True)],
                         ids=["burst-alone", "burst-of-a-page-above-older-rows"])
def test_a_silent_page_row_cap_is_detected_not_mistaken_for_the_end(size: int, older_rows: bool, stack: LocalStack,
                                                                    start_clickup: Start, clock: Clock) -> None:
    clickup = start_clickup(max_page_rows=100, page_rows_over_max="cap")
    if older_rows:
        clickup.add_events(burst(clock.now() - timedelta(hours=2), 20, "USER_LOGIN"))
    clickup.add_events(burst(clock.now() - timedelta(hours=1), size))
    with pytest.raises(Exception, match=r"\[page_rows_capped\]: asked for 200 rows, ClickUp returned 100"):
        stack.invoke(FUNCTION)
    assert state_of(stack, "auth-and-security").done_until is None


def test_a_capped_page_is_fine_when_every_millisecond_fits_in_a_page(stack: LocalStack, start_clickup: Start,
                                                                     clock: Clock) -> None:
    clickup = start_clickup(max_page_rows=100, page_rows_over_max="cap")
    seed(clickup, clock, count=500)
    clickup.add_events(burst(clock.now() - timedelta(hours=1), 99))
    clickup.add_events(burst(clock.now() - timedelta(days=3), 100, "SCIM_UPDATE"))  # a page, and nothing older
    assert stack.invoke(FUNCTION)["status"] == "ok"
    assert_exactly_once(stack, clickup)


# --- the response's undocumented shape ----------------------------------------------------------------------------


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


def test_wrong_token_and_non_enterprise_are_clear_errors_that_move_nothing(stack: LocalStack,
                                                                            start_clickup: Start,
                                                                            clock: Clock) -> None:
    events = seed(start_clickup(), clock, count=200)
    put_secret(stack, token="pk_81000001_WRONGWRONGWRONG")
    with pytest.raises(Exception, match=r"clickup API HTTP 401: Token invalid") as failure:
        stack.invoke(FUNCTION)
    assert "WRONGWRONG" not in str(failure.value)

    put_secret(stack)
    start_clickup(enterprise=False).add_events(events)
    with pytest.raises(Exception, match=r"clickup API HTTP 404 \[INSUFFICIENT_WORKSPACE_ACCESS\]: the Workspace "
                                        r"cannot use audit logs: they need the Enterprise plan"):
        stack.invoke(FUNCTION)
    assert stack.archived_records("clickup") == []
    for applicability in APPLICABILITIES:
        state = state_of(stack, applicability)
        assert state.done_until is None and state.status["last_outcome"] == "error"

    clickup = start_clickup()  # the plan is upgraded: the next tick collects everything
    clickup.add_events(events)
    clock.advance()
    assert stack.invoke(FUNCTION)["status"] == "ok"
    assert_exactly_once(stack, clickup)


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
    assert state.done_until is None and state.window is not None and state.window.cursor is not None
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


# --- the adapter's reading of rows and errors ---------------------------------------------------------------------


def test_error_bodies_v3_and_v2() -> None:
    assert ClickUp.error_details(401, {"status": 401, "message": "Token invalid", "trace_id": 123,
                                       "timestamp": 1}) == (None, "Token invalid (trace_id 123)")
    assert ClickUp.error_details(401, {"err": "Token invalid", "ECODE": "OAUTH_025"}) == ("OAUTH_025",
                                                                                        "Token invalid")
    code, message = ClickUp.error_details(404, {"err": "Workspace not eligible",
                                                "ECODE": "INSUFFICIENT_WORKSPACE_ACCESS"})
    assert code == "INSUFFICIENT_WORKSPACE_ACCESS" and "Enterprise plan" in message
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
