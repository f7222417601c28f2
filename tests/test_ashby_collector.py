"""The Ashby collector's contract: the objects it writes, its records, Ashby's paging pitfalls, and what bad input
does to it."""

from __future__ import annotations

import base64
import gzip
import importlib
import json
import logging
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import boto3
import pytest
from conftest import Clock, Pauses, check_archive, context

from auditlake import http, timeutil
from auditlake.records import COLUMNS
from auditlake.state import StateStore, StreamKey
from auditlake.timeutil import parse_time
from auditlake.vendor import VendorAdapter
from auditlake_local.simulators import SimRequest, SimResponse, SimulatorAdapter
from auditlake_local.simulators.ashby import ERROR_ENVELOPES, AshbySimulator, generate_events
from auditlake_local.stack import LocalStack
from auditlake_local.template import PROJECT_ROOT

# Quirks placed at the Nth request, and request counts: read with one query at a time (test_slicing.py reads them
# in slices).
pytestmark = pytest.mark.usefixtures("sequential_reading")

ASHBY_KEY = "ashby-api-key-7c1e2d9f4b3a"
ASHBY_BASE = "https://ashby.test"
STREAM_KEY = StreamKey("ashby", "organization")
STREAM = str(STREAM_KEY)
ISO_MS_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
SMALL_PARTS = {"MAX_OBJECT_EVENTS": "100"}  # one part per page, so a failure mid-window leaves committed parts


def adapter_class() -> type[VendorAdapter]:
    """The adapter itself, imported as Lambda does (its code directory on sys.path), for tests below the stack."""
    code_dir = str(PROJECT_ROOT / "functions" / "ashby")
    if code_dir not in sys.path:
        sys.path.insert(0, code_dir)
    return importlib.import_module("ashby_collector").Ashby


@dataclass
class Traffic:
    """What reached the simulator's endpoint: each request's body and headers, and each response's body."""

    bodies: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    answers: list[dict[str, Any]] = field(default_factory=list)

    def error_codes(self) -> list[str | None]:
        """The code of each error answer, in whichever envelope it came (as the adapter reads it)."""
        return [adapter_class().error_details(200, a)[0] for a in self.answers if a.get("success") is False]


@contextmanager
def mounted(stack: LocalStack, simulator: AshbySimulator) -> Iterator[AshbySimulator]:
    session = http.shared_session()
    session.mount(f"{ASHBY_BASE}/", SimulatorAdapter(simulator))
    stack.put_secret("AshbyCollector", {"token": ASHBY_KEY, "base_url": ASHBY_BASE})
    try:
        yield simulator
    finally:
        session.adapters.pop(f"{ASHBY_BASE}/", None)


@pytest.fixture
def ashby(stack: LocalStack, clock: Clock, pauses: Pauses) -> Iterator[AshbySimulator]:
    with mounted(stack, AshbySimulator(ASHBY_KEY, now=clock.now)) as simulator:
        yield simulator


@pytest.fixture
def traffic(ashby: AshbySimulator, monkeypatch: pytest.MonkeyPatch) -> Traffic:
    seen = Traffic()
    real_route = ashby.route

    def route(request: SimRequest) -> SimResponse:
        seen.bodies.append(request.json() or {})
        seen.headers.append(dict(request.headers))
        response = real_route(request)
        seen.answers.append(response.json())
        return response

    monkeypatch.setattr(ashby, "route", route)
    return seen


def rewrite_answer(ashby: AshbySimulator, monkeypatch: pytest.MonkeyPatch, number: int,
                   change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """The endpoint's `number`-th answer (1-based) goes through `change` before the collector sees it."""
    real_route = ashby.route
    calls = {"n": 0}

    def route(request: SimRequest) -> SimResponse:
        response = real_route(request)
        calls["n"] += 1
        return SimResponse.of_json(200, change(response.json())) if calls["n"] == number else response

    monkeypatch.setattr(ashby, "route", route)


def seed(simulator: AshbySimulator, clock: Clock, count: int = 400, days: float = 2, seed: int = 3) -> None:
    now = clock.now()
    simulator.add_events(generate_events(count, now - timedelta(days=days), now - timedelta(minutes=10), seed=seed))


def stored_state(stack: LocalStack) -> Any:
    return StateStore(boto3.client("dynamodb"), stack.table).read(STREAM_KEY)


def assert_exactly_once(stack: LocalStack, simulator: AshbySimulator) -> None:
    result = check_archive(stack, "ashby", simulator.ground_truth())
    assert result.events > 0
    assert (result.missing, result.duplicates, result.unexpected) == (0, 0, 0), result
    assert result.archived == result.events


# --- objects and records ----------------------------------------------------------------------------------------


def test_objects_hold_every_entry_verbatim_with_normalised_columns(stack: LocalStack, ashby: AshbySimulator,
                                                                   clock: Clock) -> None:
    seed(ashby, clock, count=1500, days=10)
    summary = stack.invoke("AshbyCollector")
    assert summary["status"] == "ok" and summary["streams"][0]["stream"] == STREAM
    s3 = boto3.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=stack.bucket, Prefix="events/")["Contents"]]
    for key in keys:
        assert re.fullmatch(r"events/vendor=ashby/dt=\d{4}-\d\d-\d\d/ashby-organization_\d{8}T\d{9}Z-\d{8}T\d{9}Z"
                            r"_p\d{6}\.json\.gz", key), key
        head = s3.head_object(Bucket=stack.bucket, Key=key, ChecksumMode="ENABLED")
        assert head["ServerSideEncryption"] == "aws:kms" and head["ChecksumSHA256"]
        for line in gzip.decompress(s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read()).splitlines():
            assert tuple(json.loads(line)) == COLUMNS

    truth = ashby.ground_truth()
    records = stack.archived_records("ashby")
    assert len(records) == len(truth) == 1500 and {r["event_id"] for r in records} == set(truth)
    outcomes: dict[str, set[str]] = {}
    for record in records:
        raw = json.loads(record["raw"])
        assert raw == truth[record["event_id"]]
        assert ISO_MS_Z.match(record["event_time"]) and record["event_time"] == raw["createdAt"]
        assert record["stream"] == "organization"
        assert record["action"] == raw["category"] and record["category"] == raw["target"]["type"]
        actor, target = raw["actor"], raw["target"]
        assert (record["actor_type"], record["actor_id"], record["actor_name"], record["actor_email"]) == (
            actor["type"], actor["id"], actor.get("name"), actor.get("email"))
        assert (record["target_type"], record["target_id"], record["target_name"]) == (
            target["type"], target["id"], target.get("name"))
        assert record["source_ip"] == raw["details"].get("ipAddress")
        assert record["user_agent"] == raw["details"].get("userAgent")
        outcomes.setdefault(raw["category"], set()).add(record["outcome"])
    assert outcomes["UserLoginFailed"] == {"failure"} and outcomes["UserLoggedIn"] == {"success"}
    assert any(r["actor_type"] == "User" and r["actor_email"] and r["source_ip"] for r in records)


def test_every_request_sends_both_dates_basic_auth_and_a_capped_limit(stack: LocalStack, ashby: AshbySimulator,
                                                                      traffic: Traffic, clock: Clock) -> None:
    seed(ashby, clock, count=250)
    stack.invoke("AshbyCollector", environment={"PAGE_SIZE": "500"})
    clock.advance()
    now = clock.now()
    ashby.add_events(generate_events(60, now - timedelta(minutes=4), now - timedelta(minutes=3), seed=4))
    stack.invoke("AshbyCollector", environment={"PAGE_SIZE": "40"})

    assert len(traffic.bodies) >= 3 + 2  # 100 + 100 + 50, then at least 40 + 20
    for body in traffic.bodies:
        assert ISO_MS_Z.match(body["startDate"]) and ISO_MS_Z.match(body["endDate"]), body
        assert body["startDate"] < body["endDate"]
    assert [body["limit"] for body in traffic.bodies] == [100] * 3 + [40] * (len(traffic.bodies) - 3)
    assert ["cursor" in body for body in traffic.bodies[:4]] == [False, True, True, False]
    # The same window's pages carry the same bounds, as the cursor requires.
    assert len({(b["startDate"], b["endDate"]) for b in traffic.bodies[:3]}) == 1
    expected_auth = "Basic " + base64.b64encode(f"{ASHBY_KEY}:".encode()).decode()
    for headers in traffic.headers:
        assert headers["authorization"] == expected_auth
        assert headers["accept"] == "application/json; version=1"
        assert headers["content-type"] == "application/json"
    assert_exactly_once(stack, ashby)


def test_an_entry_at_the_window_start_is_collected_whether_or_not_ashby_includes_the_start(
        stack: LocalStack, ashby: AshbySimulator, traffic: Traffic, clock: Clock) -> None:
    seed(ashby, clock, count=50)
    stack.invoke("AshbyCollector", environment={"OVERLAP_SECONDS": "0"})
    done_until = stored_state(stack).done_until
    # Exactly at the next window's start, which (without overlap) is the last window's end.
    ashby.add_events([{**generate_events(1, done_until, done_until + timedelta(milliseconds=1), seed=9)[0],
                       "id": "at-the-boundary"}])
    clock.advance()
    stack.invoke("AshbyCollector", environment={"OVERLAP_SECONDS": "0"})
    assert parse_time(traffic.bodies[-1]["startDate"]) < done_until  # an exclusive startDate still includes it
    assert "at-the-boundary" in {r["event_id"] for r in stack.archived_records("ashby")}
    assert_exactly_once(stack, ashby)


# --- windows: at most 18 months, resumed with their bounds and cursor --------------------------------------------


def test_a_700_day_first_run_is_split_into_windows_within_18_months(stack: LocalStack, ashby: AshbySimulator,
                                                                    traffic: Traffic, clock: Clock) -> None:
    now = clock.now()
    # Clusters (one object per day is written, so not spread thin): old, across the windows' border, recent.
    for days_ago, seed_number in ((699, 1), (400, 2), (160, 3), (1, 4)):
        ashby.add_events(generate_events(150, now - timedelta(days=days_ago, hours=12),
                                         now - timedelta(days=days_ago - 1), seed=seed_number))
    summary = stack.invoke("AshbyCollector", environment={"INITIAL_LOOKBACK_DAYS": "700"})

    assert summary["status"] == "ok" and summary["streams"][0]["windows_completed"] >= 2
    windows = sorted({(parse_time(b["startDate"]), parse_time(b["endDate"])) for b in traffic.bodies})
    assert len(windows) >= 2
    assert all(end - start <= timedelta(days=540, milliseconds=1) for start, end in windows)
    assert windows[0][0] <= clock.now() - timedelta(days=699)  # the first window reaches back to the lookback
    assert "invalid_input" not in traffic.error_codes()
    assert_exactly_once(stack, ashby)


def test_an_interrupted_window_resumes_with_its_bounds_and_cursor(stack: LocalStack, ashby: AshbySimulator,
                                                                  traffic: Traffic, clock: Clock) -> None:
    seed(ashby, clock, count=1000)
    ashby.cursor_ttl = None  # here the cursor is resumed; its expiry is tested below
    budget = {"ms": 0}
    ashby.on_request = lambda _record: budget.__setitem__("ms", budget["ms"] - 4_000)  # 4 s a page

    def tick() -> dict[str, Any]:
        budget["ms"] = 80_000  # 20 s above the 60 s margin: five pages a tick
        return stack.invoke("AshbyCollector", context=context(stack, "AshbyCollector", lambda: budget["ms"]))

    assert tick()["status"] == "backlog"
    last = traffic.bodies[-1]
    assert stored_state(stack).window.slices[0].cursor is not None
    clock.advance()
    sent_before = len(traffic.bodies)
    assert tick()["status"] == "backlog"
    resumed = traffic.bodies[sent_before]
    assert (resumed["startDate"], resumed["endDate"]) == (last["startDate"], last["endDate"])
    assert resumed["cursor"] == traffic.answers[sent_before - 1]["nextCursor"]
    for _ in range(5):
        clock.advance()
        if tick()["status"] == "ok":
            break
    assert "cursor_invalid" not in traffic.error_codes()
    assert_exactly_once(stack, ashby)


@pytest.mark.parametrize("envelope", ERROR_ENVELOPES)
def test_cursor_expiry_mid_window_loses_nothing(envelope: str, stack: LocalStack, ashby: AshbySimulator,
                                                traffic: Traffic, clock: Clock) -> None:
    """Recognised as a rejected cursor in every envelope; a sentence that names no code is an unexplained error on
    a stored cursor, which restarts the window all the same (once per window and run)."""
    seed(ashby, clock, count=1000)
    ashby.error_envelope = envelope

    def expire_after_the_fourth_page(record: Any) -> None:
        if record.number == 4:
            ashby.expire_cursors()

    ashby.on_request = expire_after_the_fourth_page
    summary = stack.invoke("AshbyCollector", environment=SMALL_PARTS)

    assert summary["status"] == "ok" and summary["streams"][0]["cursors_expired"] == 1
    assert traffic.error_codes() == [None if envelope == "errors_prose" else "next_cursor_expired"]
    restarted = traffic.bodies[5]  # the window again, without a cursor, up to the oldest archived entry
    assert "cursor" not in restarted and restarted["startDate"] == traffic.bodies[0]["startDate"]
    assert parse_time(restarted["endDate"]) < parse_time(traffic.bodies[0]["endDate"])
    assert_exactly_once(stack, ashby)


@pytest.mark.parametrize("envelope", ERROR_ENVELOPES)
def test_cursors_that_expired_between_ticks_are_restarted(envelope: str, stack: LocalStack, clock: Clock,
                                                          pauses: Pauses) -> None:
    """The simulator's default cursor life is shorter than a tick: every cursor a run stores has expired, for good,
    when the next run sends it. Each run restarts its window from what is archived and gets further."""
    simulator = AshbySimulator(ASHBY_KEY, now=clock.now, error_envelope=envelope)
    with mounted(stack, simulator):
        seed(simulator, clock, count=1500)
        budget = {"ms": 0}
        simulator.on_request = lambda _record: budget.__setitem__("ms", budget["ms"] - 4_000)
        outcomes = []
        for _ in range(12):
            budget["ms"] = 80_000
            summary = stack.invoke("AshbyCollector", environment=SMALL_PARTS,
                                   context=context(stack, "AshbyCollector", lambda: budget["ms"]))
            outcomes.append(summary)
            if summary["status"] == "ok":
                break
            clock.advance()  # 5 minutes: every stored cursor is past its life
        assert outcomes[-1]["status"] == "ok" and len(outcomes) >= 3
        expired = [o["streams"][0]["cursors_expired"] for o in outcomes]
        assert all(count == 1 for count in expired[1:]), expired  # each later run met its stored cursor expired
        assert simulator.stats()["api_errors"] == len(outcomes) - 1  # ... and nothing else went wrong
        assert_exactly_once(stack, simulator)


# --- errors: each names the vendor and the code, and moves nothing ----------------------------------------------


def test_wrong_key_is_a_clear_error_and_moves_nothing(stack: LocalStack, ashby: AshbySimulator,
                                                      clock: Clock) -> None:
    seed(ashby, clock)
    stack.put_secret("AshbyCollector", {"token": "wrong-key-value", "base_url": ASHBY_BASE})
    with pytest.raises(Exception, match=r"ashby API HTTP 403 \[invalid_api_key\]") as failure:
        stack.invoke("AshbyCollector")
    assert "wrong-key-value" not in str(failure.value)
    assert stack.archived_records("ashby") == []
    state = stored_state(stack)
    assert state.done_until is None and state.status["last_outcome"] == "error"
    assert state.window is None or state.window.slices[0].cursor is None

    stack.put_secret("AshbyCollector", {"token": ASHBY_KEY, "base_url": ASHBY_BASE})
    assert stack.invoke("AshbyCollector")["status"] == "ok"
    assert_exactly_once(stack, ashby)


@pytest.mark.parametrize(("knob", "message"), [
    ("audit_logs_enabled", r"ashby API HTTP 200 \[audit_logs_not_enabled\]: audit logs are not available to this "
                           r"account: .*\(Ashby's auditLog\.list needs .*Audit Logs feature"),
    ("has_permission", r"ashby API HTTP 403 \[missing_endpoint_permission\]: audit logs are not available to this "
                       r"account: .*auditLogsRead"),
])
@pytest.mark.parametrize("envelope", ["errors", "errors_sentence", "error_info"])
def test_a_plan_or_permission_gap_is_a_clear_error_never_an_empty_success(
        knob: str, message: str, envelope: str, stack: LocalStack, ashby: AshbySimulator, clock: Clock) -> None:
    seed(ashby, clock)
    ashby.error_envelope = envelope
    setattr(ashby, knob, False)
    for _ in range(2):  # every tick fails the same way; none reports success over an empty log
        with pytest.raises(Exception, match=message) as failure:
            stack.invoke("AshbyCollector")
        assert ASHBY_KEY not in str(failure.value)
        clock.advance()
    assert stack.archived_records("ashby") == []
    assert stored_state(stack).done_until is None

    setattr(ashby, knob, True)
    assert stack.invoke("AshbyCollector")["status"] == "ok"
    assert_exactly_once(stack, ashby)


@pytest.mark.parametrize("status", [200, 403, 404])
@pytest.mark.parametrize("envelope", ERROR_ENVELOPES)
def test_a_missing_feature_is_audit_logs_unavailable_whatever_the_status_and_envelope(
        status: int, envelope: str, stack: LocalStack, ashby: AshbySimulator, clock: Clock) -> None:
    """`audit_logs_not_enabled` as Ashby documents it (200) or as a 403 / 404, in every envelope. Where the answer
    names no code (a sentence in the older envelope) only a 404 still says "not there for this organization"; a 200
    or 403 is then a plain error in Ashby's own words: loud all the same, and nothing moves."""
    seed(ashby, clock)
    ashby.error_envelope, ashby.not_enabled_status, ashby.audit_logs_enabled = envelope, status, False
    classified = envelope != "errors_prose" or status == 404
    with pytest.raises(Exception, match=rf"ashby API HTTP {status}\b") as failure:
        stack.invoke("AshbyCollector")
    said = str(failure.value)
    assert ("audit logs are not available to this account" in said) is classified, said
    assert ("Ashby's auditLog.list needs the organization's Audit Logs feature" in said) is classified
    assert ASHBY_KEY not in said
    assert stack.archived_records("ashby") == [] and stored_state(stack).done_until is None

    ashby.audit_logs_enabled = True
    assert stack.invoke("AshbyCollector")["status"] == "ok"
    assert_exactly_once(stack, ashby)


def _without(name: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda page: {k: v for k, v in page.items() if k != name}


@pytest.mark.parametrize(("change", "message"), [
    (_without("success"), r"no boolean 'success'"),
    (lambda page: {**page, "results": {"items": page["results"]}}, r"no 'results' list"),
    (_without("moreDataAvailable"), r"no boolean 'moreDataAvailable'"),
    (_without("nextCursor"), r"moreDataAvailable is true but there is no nextCursor"),
    (lambda page: {**page, "results": [{**page["results"][0], "createdAt": None}, *page["results"][1:]]},
     r"event #0 of a page is unreadable.*createdAt"),
])
def test_a_bad_answer_mid_window_keeps_the_parts_before_it_and_the_cursor(
        change: Callable[[dict[str, Any]], dict[str, Any]], message: str, stack: LocalStack,
        ashby: AshbySimulator, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    seed(ashby, clock, count=450)
    rewrite_answer(ashby, monkeypatch, 3, change)
    with pytest.raises(Exception, match=r"ashby API .*" + message):
        stack.invoke("AshbyCollector", environment=SMALL_PARTS)
    assert len(stack.archived_records("ashby")) == 200  # the two pages before the bad one ...
    window = stored_state(stack).window
    assert window is not None and window.slices[0].cursor is not None  # ... and the cursor right after them
    clock.advance()
    assert stack.invoke("AshbyCollector", environment=SMALL_PARTS)["status"] == "ok"
    assert_exactly_once(stack, ashby)


@pytest.mark.parametrize("error", [
    {"success": False, "errorInfo": {"code": "invalid_input", "message": "startDate is not valid"}},
    {"success": False, "errors": ["The cursor could not be used"]},  # the older envelope, naming no code
])
def test_an_unexplained_error_on_a_stored_cursor_restarts_the_window_once(
        error: dict[str, Any], stack: LocalStack, ashby: AshbySimulator, clock: Clock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An error the adapter does not read as a rejected cursor may still be one: the window restarts from what is
    archived, without the cursor, once per run; an error that comes back is raised. No stream stays stuck."""
    seed(ashby, clock, count=450)
    rewrite_answer(ashby, monkeypatch, 3, lambda page: error)
    summary = stack.invoke("AshbyCollector", environment=SMALL_PARTS)
    assert summary["status"] == "ok" and summary["streams"][0]["cursors_expired"] == 1
    assert_exactly_once(stack, ashby)


def test_an_error_that_keeps_coming_back_with_a_cursor_is_raised_but_progress_is_kept(
        stack: LocalStack, ashby: AshbySimulator, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    seed(ashby, clock, count=450)
    real_route = ashby.route

    def refuse_every_cursor(request: SimRequest) -> SimResponse:
        if "cursor" in (request.json() or {}):
            return SimResponse.of_json(200, {"success": False, "errors": ["Something went wrong"]})
        return real_route(request)

    monkeypatch.setattr(ashby, "route", refuse_every_cursor)
    archived = []
    for _ in range(3):
        with pytest.raises(Exception, match=r"ashby API HTTP 200: Something went wrong"):
            stack.invoke("AshbyCollector", environment=SMALL_PARTS)
        archived.append(len(stack.archived_records("ashby")))
        clock.advance()
    # Each run archives a page more (the first page of the window restarted without the cursor) before the error
    # comes back: the stream is never stuck.
    assert 0 < archived[0] < archived[1] < archived[2]
    monkeypatch.setattr(ashby, "route", real_route)
    assert stack.invoke("AshbyCollector", environment=SMALL_PARTS)["status"] == "ok"
    assert_exactly_once(stack, ashby)


def test_a_cursor_that_does_not_advance_is_refused(stack: LocalStack, ashby: AshbySimulator, clock: Clock,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    seed(ashby, clock, count=300)
    first: dict[str, Any] = {}

    def repeat_the_first_cursor(page: dict[str, Any]) -> dict[str, Any]:
        return {**page, "nextCursor": first.setdefault("cursor", page["nextCursor"])}

    real_route = ashby.route
    monkeypatch.setattr(ashby, "route", lambda request: SimResponse.of_json(
        200, repeat_the_first_cursor(real_route(request).json())))
    with pytest.raises(Exception, match=r"ashby API .*nextCursor repeats the cursor just sent"):
        stack.invoke("AshbyCollector")
    assert ashby.stats()["requests"] == 2


# --- bounds and entry schema: what Ashby leaves open ------------------------------------------------------------


@pytest.mark.parametrize(("start_inclusive", "end_inclusive"), [(False, True), (True, False), (True, True),
                                                                (False, False)])
def test_exact_whether_or_not_each_bound_is_inclusive(start_inclusive: bool, end_inclusive: bool, stack: LocalStack,
                                                      clock: Clock, pauses: Pauses,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Entries exactly at each window's start and end, and a millisecond either side, under every reading of
    startDate and endDate: each archived once. The clock stands still during a tick, so each window's end is known
    before the tick that collects it."""
    frozen = {"now": clock.now()}
    monkeypatch.setattr(timeutil, "now", lambda: frozen["now"])
    simulator = AshbySimulator(ASHBY_KEY, now=lambda: frozen["now"], start_inclusive=start_inclusive,
                               end_inclusive=end_inclusive)
    environment = {"OVERLAP_SECONDS": "0", "LAG_SECONDS": "120", **SMALL_PARTS}
    with mounted(stack, simulator):
        out_of_window = 0
        for tick in range(4):
            now = frozen["now"]
            end = timeutil.floor_millis(now - timedelta(seconds=120))  # this tick's window end (and the next start)
            edges = [end + timedelta(milliseconds=delta) for delta in (-1, 0, 1)]
            simulator.add_events([
                {**generate_events(1, moment, moment + timedelta(milliseconds=1), seed=tick * 10 + index)[0],
                 "id": f"edge-{tick}-{index}"} for index, moment in enumerate(edges)])
            simulator.add_events(generate_events(150, now - timedelta(minutes=4), now - timedelta(minutes=2),
                                                 seed=100 + tick))
            summary = stack.invoke("AshbyCollector", environment=environment)
            assert summary["status"] == "ok" and stored_state(stack).done_until == end
            out_of_window += summary["streams"][0]["out_of_window"]
            frozen["now"] += timedelta(minutes=5)
        assert stack.invoke("AshbyCollector", environment=environment)["status"] == "ok"  # the last window's edges
    # An entry outside the window is served only where a bound is inclusive (startDate is sent 1 ms early).
    assert (out_of_window > 0) is (start_inclusive or end_inclusive)
    assert_exactly_once(stack, simulator)


@pytest.mark.parametrize("name", ["createdAt", "occurredAt", "timestamp"])
def test_the_time_is_read_under_each_name_ashby_might_use(name: str, stack: LocalStack, ashby: AshbySimulator,
                                                          clock: Clock) -> None:
    ashby.time_field = name
    seed(ashby, clock, count=300)
    assert stack.invoke("AshbyCollector")["status"] == "ok"
    records = stack.archived_records("ashby")
    assert records and all(record["event_time"] == json.loads(record["raw"])[name] for record in records)
    assert_exactly_once(stack, ashby)


def test_a_time_under_a_name_the_collector_does_not_know_fails_loudly(stack: LocalStack, ashby: AshbySimulator,
                                                                       clock: Clock) -> None:
    """Never archived under a guessed time: the page is refused, naming the fields read and the ones there."""
    seed(ashby, clock, count=150)
    assert stack.invoke("AshbyCollector")["status"] == "ok"
    archived = len(stack.archived_records("ashby"))
    clock.advance()
    now = clock.now()
    ashby.add_events(generate_events(150, now - timedelta(minutes=4), now - timedelta(minutes=3), seed=4))
    ashby.time_field = "eventTime"
    with pytest.raises(Exception, match=r"\[malformed_response\]: event #0 of a page is unreadable \(KeyError: "
                                        r".*none of createdAt, occurredAt, timestamp; the entry has .*eventTime"):
        stack.invoke("AshbyCollector")
    assert len(stack.archived_records("ashby")) == archived
    assert stored_state(stack).window is None or stored_state(stack).window.slices[0].cursor is None
    ashby.time_field = None
    clock.advance()
    assert stack.invoke("AshbyCollector")["status"] == "ok"
    assert_exactly_once(stack, ashby)


# --- tolerance: what Ashby does not document --------------------------------------------------------------------


def test_warnings_are_logged_not_fatal(stack: LocalStack, ashby: AshbySimulator, clock: Clock,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    seed(ashby, clock, count=150)
    rewrite_answer(ashby, monkeypatch, 1, lambda page: {**page, "warnings": ["auditLog.list is in beta"]})
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append  # type: ignore[method-assign]
    logger = logging.getLogger("auditlake")
    logger.addHandler(handler)
    try:
        assert stack.invoke("AshbyCollector")["status"] == "ok"
    finally:
        logger.removeHandler(handler)
    warned = [r for r in seen if r.getMessage() == "ashby answered with warnings"]
    assert len(warned) == 1 and warned[0].warnings == ["auditLog.list is in beta"]  # type: ignore[attr-defined]
    assert_exactly_once(stack, ashby)


def test_unknown_categories_and_other_time_fields_are_archived(stack: LocalStack, ashby: AshbySimulator,
                                                               clock: Clock) -> None:
    now = clock.now()
    two_hours_ago = (now - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    occurred = {"id": "e-occurred", "occurredAt": two_hours_ago,
                "category": "CandidateExported", "actor": {"type": "Support", "id": None},
                "target": {"type": "candidate_export", "id": "x"}}
    stamped = {"id": "e-stamped", "timestamp": (now - timedelta(hours=1)).isoformat(), "category": "Teleported",
               "actor": {"type": "Robot"}, "target": None}
    ashby.add_events([occurred, stamped])
    assert stack.invoke("AshbyCollector")["status"] == "ok"
    records = {r["event_id"]: r for r in stack.archived_records("ashby")}
    assert records["e-occurred"]["event_time"] == occurred["occurredAt"]
    assert parse_time(records["e-stamped"]["event_time"]) == parse_time(stamped["timestamp"])
    assert (records["e-stamped"]["action"], records["e-stamped"]["actor_type"]) == ("Teleported", "Robot")
    assert records["e-stamped"]["target_id"] is None and records["e-occurred"]["source_ip"] is None
    assert_exactly_once(stack, ashby)


def test_429_retry_after_is_honoured(stack: LocalStack, ashby: AshbySimulator, clock: Clock,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    seed(ashby, clock, count=1000)
    ashby.rate_limit_per_minute = 4
    monkeypatch.setattr(http, "pause", lambda seconds: clock.advance(timedelta(seconds=seconds)))
    summary = stack.invoke("AshbyCollector")
    assert summary["status"] == "ok" and summary["http"]["throttles"] > 0
    # The simulator's Retry-After (a whole number of seconds, at least 1) each time, not jittered backoff.
    assert summary["http"]["retry_seconds"] >= summary["http"]["retries"] == summary["http"]["throttles"]
    assert ashby.stats()["rate_limited"] == summary["http"]["throttles"]
    assert_exactly_once(stack, ashby)
