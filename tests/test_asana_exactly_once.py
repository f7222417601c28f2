"""The exactly-once matrix for Asana: every fault the issue names, the whole archive against the ground truth.

Each scenario runs scheduled ticks (five simulated minutes apart) until the collector reports it is caught up,
then compares every archived record with the simulator's events: missing = 0, duplicates = 0, raw verbatim.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from conftest import ASANA_TOKEN, MATRIX, ArchiveCheck, Clock, check_archive, context

from auditlake.archive import Archive
from auditlake.engine import Collector
from auditlake.state import StateStore
from auditlake.timeutil import parse_time
from auditlake_local.simulators import AsanaSimulator, Fault, generate_events
from auditlake_local.stack import LocalStack

EVENTS = 1500
SMALL_PARTS = {"MAX_OBJECT_EVENTS": "250"}  # several parts per window, so crashes can land between them


class SimulatedCrash(BaseException):
    """The process dies here: nothing after it runs, not even the lease release."""


def seed_events(simulator: AsanaSimulator, clock: Clock, count: int = EVENTS, seed: int = 1) -> None:
    now = clock.now()
    simulator.add_events(generate_events(count, now - timedelta(days=4), now - timedelta(minutes=10), seed=seed))


def run_until_caught_up(stack: LocalStack, clock: Clock, *, max_ticks: int = 30,
                        make_context: Callable[[], Any] | None = None,
                        environment: dict[str, str] | None = None) -> list[dict[str, Any] | BaseException]:
    outcomes: list[dict[str, Any] | BaseException] = []
    for _ in range(max_ticks):
        try:
            summary = stack.invoke("AsanaCollector", context=make_context() if make_context else None,
                                   environment={**SMALL_PARTS, **(environment or {})})
        except (Exception, SimulatedCrash) as exc:
            outcomes.append(exc)
        else:
            outcomes.append(summary)
            if summary["status"] == "ok":
                return outcomes
        clock.advance()
    raise AssertionError(f"not caught up after {max_ticks} ticks: {outcomes[-3:]}")


def assert_exactly_once(name: str, stack: LocalStack, simulator: AsanaSimulator) -> ArchiveCheck:
    result = check_archive(stack, "asana", simulator.ground_truth())
    MATRIX[f"asana {name}"] = result
    assert result.events > 0
    assert (result.missing, result.duplicates, result.unexpected, result.mismatched) == (0, 0, 0, 0), result
    assert result.archived == result.events
    return result


@pytest.mark.parametrize("fault", [Fault.RATE_LIMITED, Fault.SERVER_ERROR, Fault.UNAVAILABLE, Fault.TIMEOUT,
                                   Fault.CONNECTION_RESET, Fault.TRUNCATED_BODY])
def test_http_faults(fault: Fault, stack: LocalStack, asana: AsanaSimulator, clock: Clock, pauses: Any) -> None:
    seed_events(asana, clock)
    asana.faults.random(0.3, [fault], seed=11)
    outcomes = run_until_caught_up(stack, clock)
    assert asana.stats()["faults_injected"] > 0
    assert_exactly_once(f"http:{fault.name.lower()}", stack, asana)
    retries = sum(o["http"]["retries"] for o in outcomes if isinstance(o, dict))
    assert retries > 0 or any(isinstance(o, BaseException) for o in outcomes)


def test_retry_after_is_honoured(stack: LocalStack, asana: AsanaSimulator, clock: Clock, pauses: Any) -> None:
    seed_events(asana, clock, count=300)
    asana.faults.next(Fault.RATE_LIMITED, times=2)
    run_until_caught_up(stack, clock)
    assert pauses.seconds[:2] == [float(asana.fault_retry_after)] * 2
    assert_exactly_once("http:retry_after", stack, asana)


def test_clean_backfill_uses_the_minimum_requests(stack: LocalStack, asana: AsanaSimulator, clock: Clock) -> None:
    seed_events(asana, clock)
    outcomes = run_until_caught_up(stack, clock, environment={"MAX_OBJECT_EVENTS": "10000"})
    assert len(outcomes) == 1
    summary = outcomes[0]
    assert isinstance(summary, dict)
    assert summary["http"]["requests"] == EVENTS // 100 + 1  # full pages plus the empty page that ends the window
    assert_exactly_once("clean backfill", stack, asana)


CRASH_POINTS = ["before_intent", "after_intent", "between_puts", "after_puts", "after_commit", "before_release"]


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_crash_at_every_step(point: str, stack: LocalStack, asana: AsanaSimulator, clock: Clock,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    seed_events(asana, clock)
    crashes = {"left": 1}
    puts = {"n": 0}
    real_save, real_put, real_finish = StateStore.save, Archive.put, Collector._finish

    def crash(where: str) -> None:
        if point == where and crashes["left"]:
            crashes["left"] -= 1
            raise SimulatedCrash(where)

    def save(self: StateStore, state: Any, *args: Any, **kwargs: Any) -> None:
        if state.intent is not None:
            crash("before_intent")
        elif puts["n"]:
            crash("after_puts")
        real_save(self, state, *args, **kwargs)
        if state.intent is None and puts["n"]:
            puts["n"] = 0
            crash("after_commit")

    def put(self: Archive, obj: Any) -> None:
        crash("after_intent")
        if puts["n"]:
            crash("between_puts")
        real_put(self, obj)
        puts["n"] += 1

    def finish(self: Collector, state: Any, result: Any, failure: BaseException | None) -> None:
        if isinstance(failure, SimulatedCrash):
            return  # the process died: no commit, no release
        crash("before_release")
        real_finish(self, state, result, failure)

    monkeypatch.setattr(StateStore, "save", save)
    monkeypatch.setattr(Archive, "put", put)
    monkeypatch.setattr(Collector, "_finish", finish)
    outcomes = run_until_caught_up(stack, clock)
    assert crashes["left"] == 0, "the crash point was never reached"
    assert isinstance(outcomes[0], SimulatedCrash)
    assert_exactly_once(f"crash:{point}", stack, asana)


def test_deadline_mid_window(stack: LocalStack, asana: AsanaSimulator, clock: Clock) -> None:
    seed_events(asana, clock, count=3000)
    budget = {"ms": 0}

    def remaining() -> int:
        return budget["ms"]

    def new_context() -> Any:
        budget["ms"] = 100_000  # 40 s to spend above the 60 s margin ...
        return context(stack, "AsanaCollector", remaining)

    asana.on_request = lambda _request: budget.__setitem__("ms", budget["ms"] - 4_000)  # ... 4 s a page
    outcomes = run_until_caught_up(stack, clock, make_context=new_context)
    statuses = [o["status"] for o in outcomes if isinstance(o, dict)]
    assert statuses.count("backlog") >= 3 and statuses[-1] == "ok"
    assert all(isinstance(o, dict) for o in outcomes), "a backlog never fails a run"
    assert_exactly_once("deadline mid-window", stack, asana)


def test_concurrent_invocation_is_turned_away(stack: LocalStack, asana: AsanaSimulator, clock: Clock) -> None:
    seed_events(asana, clock)
    second: list[dict[str, Any]] = []

    def start_second_run(request: Any) -> None:
        if not second:
            second.append({})  # the second run's own requests must not start a third
            second[0] = stack.invoke("AsanaCollector", environment=SMALL_PARTS)

    asana.on_request = start_second_run
    run_until_caught_up(stack, clock)
    assert second[0]["status"] == "ok" and second[0]["streams"][0]["status"] == "busy"
    assert second[0]["http"]["requests"] == 0
    assert_exactly_once("concurrent invocations", stack, asana)


def test_late_events_within_the_overlap(stack: LocalStack, asana: AsanaSimulator, clock: Clock) -> None:
    seed_events(asana, clock)
    first = run_until_caught_up(stack, clock)[-1]
    assert isinstance(first, dict)
    # Events that happened up to 8 minutes (overlap: 10) before the last window's end, published only after
    # that window was collected; and new events.
    done_until = parse_time(first["streams"][0]["done_until"])
    late = generate_events(40, done_until - timedelta(minutes=8), done_until - timedelta(seconds=1), seed=5)
    asana.add_events(late, published=False)
    clock.advance()
    asana.publish_pending()
    asana.add_events(generate_events(60, clock.now() - timedelta(minutes=4), clock.now() - timedelta(minutes=3),
                                     seed=6))
    clock.advance()
    run_until_caught_up(stack, clock)
    assert_exactly_once("late events", stack, asana)


def test_expired_offset_resumes_without_loss(stack: LocalStack, asana: AsanaSimulator, clock: Clock) -> None:
    seed_events(asana, clock, count=2000)
    budget = {"ms": 0}

    def new_context() -> Any:
        budget["ms"] = 90_000
        asana.expire_offsets()  # every offset stored by the previous tick is now rejected with a 400
        return context(stack, "AsanaCollector", lambda: budget["ms"])

    asana.on_request = lambda _request: budget.__setitem__("ms", budget["ms"] - 3_000)
    outcomes = run_until_caught_up(stack, clock, make_context=new_context)
    assert len(outcomes) >= 3
    assert sum(r.status == 400 for r in asana.requests_log) >= 2  # the expired offsets were really used
    assert_exactly_once("expired offsets", stack, asana)


def test_second_tick_is_idle(stack: LocalStack, asana: AsanaSimulator, clock: Clock) -> None:
    seed_events(asana, clock, count=200)
    run_until_caught_up(stack, clock)
    clock.advance()
    summary = stack.invoke("AsanaCollector")
    assert summary["http"]["requests"] == 1
    assert summary["s3"]["objects"] == 0
    assert summary["dynamodb_operations"] == 2  # take the lease; commit and release it
    assert_exactly_once("idle tick", stack, asana)


def test_token_never_in_archive(stack: LocalStack, asana: AsanaSimulator, clock: Clock) -> None:
    seed_events(asana, clock, count=200)
    run_until_caught_up(stack, clock)
    assert all(ASANA_TOKEN not in json.dumps(r) for r in stack.archived_records())
