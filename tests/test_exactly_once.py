"""The exactly-once matrix, for every vendor: every fault the issues name, the whole archive against the ground
truth.

Each scenario runs scheduled ticks (five simulated minutes apart) until the collector reports it is caught up,
then compares every archived record with the simulator's events: missing = 0, duplicates = 0, raw verbatim; and
verifies the digests (`auditlake verify`): whatever the scenario did to the runs, every chain is whole, every object
listed, and the covered time without a gap.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import boto3
import pytest
from conftest import MATRIX, ArchiveCheck, Clock, check_archive, context, verify_archive
from worlds import VENDORS, World, world_of

from auditlake import engine
from auditlake.archive import Archive
from auditlake.engine import Collector
from auditlake.state import StateStore
from auditlake.timeutil import parse_time
from auditlake_local.simulators import Fault
from auditlake_local.stack import LocalStack

EVENTS = 1500
SMALL_PARTS = {"MAX_OBJECT_EVENTS": "250"}  # several parts per window, so crashes can land between them


class SimulatedCrash(BaseException):
    """The process dies here: nothing after it runs, not even the lease release."""


@pytest.fixture(params=VENDORS)
def world(request: pytest.FixtureRequest, stack: LocalStack, clock: Clock, pauses: Any) -> Iterator[World]:
    with world_of(request.param, stack, clock.now) as vendor_world:
        yield vendor_world


def seed_events(world: World, clock: Clock, count: int = EVENTS, seed: int = 1) -> None:
    now = clock.now()
    world.seed(count, now - timedelta(days=4), now - timedelta(minutes=10), seed=seed)


def run_until_caught_up(stack: LocalStack, world: World, clock: Clock, *, max_ticks: int = 40,
                        make_context: Callable[[], Any] | None = None,
                        environment: dict[str, str] | None = None) -> list[dict[str, Any] | BaseException]:
    outcomes: list[dict[str, Any] | BaseException] = []
    for _ in range(max_ticks):
        try:
            summary = stack.invoke(world.function_id, context=make_context() if make_context else None,
                                   environment={**SMALL_PARTS, **(environment or {})})
        except (Exception, SimulatedCrash) as exc:
            outcomes.append(exc)
        else:
            outcomes.append(summary)
            if summary["status"] == "ok":
                return outcomes
        clock.advance()
    raise AssertionError(f"not caught up after {max_ticks} ticks: {outcomes[-3:]}")


def assert_exactly_once(name: str, stack: LocalStack, world: World) -> ArchiveCheck:
    result = check_archive(stack, world.vendor, world.simulator.ground_truth())
    MATRIX[f"{world.vendor} {name}"] = result
    assert result.events > 0
    assert (result.missing, result.duplicates, result.unexpected) == (0, 0, 0), result
    assert result.archived == result.events
    report = verify_archive(stack)
    assert report.clean, "\n".join(f.line() for f in report.findings)
    assert report.records == result.archived and len(report.chains) >= world.streams
    return result


@pytest.mark.parametrize("fault", [Fault.RATE_LIMITED, Fault.SERVER_ERROR, Fault.UNAVAILABLE, Fault.TIMEOUT,
                                   Fault.CONNECTION_RESET, Fault.TRUNCATED_BODY])
def test_http_faults(fault: Fault, stack: LocalStack, world: World, clock: Clock, pauses: Any) -> None:
    seed_events(world, clock)
    world.simulator.faults.random(0.3, [fault], seed=11)
    outcomes = run_until_caught_up(stack, world, clock)
    assert world.simulator.stats()["faults_injected"] > 0
    assert_exactly_once(f"http:{fault.name.lower()}", stack, world)
    retries = sum(o["http"]["retries"] for o in outcomes if isinstance(o, dict))
    assert retries > 0 or any(isinstance(o, BaseException) for o in outcomes)


def test_retry_after_is_honoured(stack: LocalStack, world: World, clock: Clock, pauses: Any) -> None:
    seed_events(world, clock, count=300)
    world.simulator.fault_retry_after = 20  # far above the jittered backoff, so the two cannot be confused
    world.simulator.faults.next(Fault.RATE_LIMITED, times=2)
    summaries = [o for o in run_until_caught_up(stack, world, clock) if isinstance(o, dict)]
    assert sum(s["http"]["retries"] for s in summaries) == 2
    waited = sum(s["http"]["retry_seconds"] for s in summaries)  # pacing waits are counted apart
    if world.traits.says_when_to_retry:  # Retry-After, or a reset time in whole epoch seconds (so within 1 s)
        asked = world.simulator.fault_retry_after
        assert 2 * (asked - 1) <= waited <= 2 * (asked + 1), waited
    else:
        assert waited <= 2 + 4, waited  # the backoff: up to 2 s, then up to 4 s
    assert_exactly_once("http:retry_after", stack, world)


def test_clean_backfill_uses_the_minimum_requests(stack: LocalStack, world: World, clock: Clock) -> None:
    seed_events(world, clock)
    # One query at a time: the fewest requests (test_request_counts bounds what slices add).
    outcomes = run_until_caught_up(stack, world, clock, environment={"MAX_OBJECT_EVENTS": "10000",
                                                                     "FETCH_CONCURRENCY": "1"})
    assert len(outcomes) == 1
    summary = outcomes[0]
    assert isinstance(summary, dict)
    assert summary["http"]["requests"] == world.backfill_requests()
    assert_exactly_once("clean backfill", stack, world)


CRASH_POINTS = ["before_intent", "after_intent", "between_puts", "after_puts", "after_commit", "before_release"]


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_crash_at_every_step(point: str, stack: LocalStack, world: World, clock: Clock,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    seed_events(world, clock)
    crashes = {"left": 1}
    puts = {"n": 0}
    real_save, real_put, real_finish = StateStore.save, Archive.put, Collector._finish

    def crash(where: str) -> None:
        if point == where and crashes["left"]:
            crashes["left"] -= 1
            raise SimulatedCrash(where)

    def save(self: StateStore, state: Any, *args: Any, **kwargs: Any) -> None:
        if state.intents:
            crash("before_intent")
        elif puts["n"]:
            crash("after_puts")
        real_save(self, state, *args, **kwargs)
        if not state.intents and puts["n"]:
            puts["n"] = 0
            crash("after_commit")

    def put(self: Archive, obj: Any) -> str | None:
        crash("after_intent")
        if puts["n"]:
            crash("between_puts")
        version = real_put(self, obj)
        puts["n"] += 1
        return version

    def finish(self: Collector, state: Any, result: Any, failure: BaseException | None) -> None:
        if isinstance(failure, SimulatedCrash):
            return  # the process died: no commit, no release
        crash("before_release")
        real_finish(self, state, result, failure)

    monkeypatch.setattr(StateStore, "save", save)
    monkeypatch.setattr(Archive, "put", put)
    monkeypatch.setattr(Collector, "_finish", finish)
    outcomes = run_until_caught_up(stack, world, clock)
    assert crashes["left"] == 0, "the crash point was never reached"
    assert isinstance(outcomes[0], SimulatedCrash)
    assert_exactly_once(f"crash:{point}", stack, world)


def test_deadline_mid_window(stack: LocalStack, world: World, clock: Clock) -> None:
    seed_events(world, clock, count=3000)
    budget = {"ms": 0}

    def remaining() -> int:
        return budget["ms"]

    def new_context() -> Any:
        budget["ms"] = 100_000  # 40 s to spend above the 60 s margin ...
        return context(stack, world.function_id, remaining)

    # ... 4 s a page for each stream's share (ClickUp's six classes share a run, and a first window read in slices
    # costs a request a slice where it is empty)
    cost = 4_000 // world.traits.streams
    world.simulator.on_request = lambda _request: budget.__setitem__("ms", budget["ms"] - cost)
    outcomes = run_until_caught_up(stack, world, clock, make_context=new_context)
    statuses = [o["status"] for o in outcomes if isinstance(o, dict)]
    assert statuses.count("backlog") >= 3 and statuses[-1] == "ok"
    assert all(isinstance(o, dict) for o in outcomes), "a backlog never fails a run"
    assert_exactly_once("deadline mid-window", stack, world)


def test_concurrent_invocation_is_turned_away(stack: LocalStack, world: World, clock: Clock) -> None:
    seed_events(world, clock)
    second: list[dict[str, Any]] = []

    def start_second_run(request: Any) -> None:
        if not second:
            second.append({})  # the second run's own requests must not start a third
            second[0] = stack.invoke(world.function_id, environment=SMALL_PARTS)

    world.simulator.on_request = start_second_run
    run_until_caught_up(stack, world, clock)
    assert second[0]["status"] in ("ok", "backlog") and second[0]["streams"][0]["status"] == "busy"
    if world.streams == 1:
        assert second[0]["http"]["requests"] == 0
    assert_exactly_once("concurrent invocations", stack, world)


@pytest.mark.slow
def test_late_events_within_the_overlap(stack: LocalStack, world: World, clock: Clock) -> None:
    seed_events(world, clock)
    first = run_until_caught_up(stack, world, clock)[-1]
    assert isinstance(first, dict)
    # Events that happened up to 8 minutes (overlap: 10) before the last window's end, published only after
    # that window was collected; and new events.
    done_until = parse_time(first["streams"][0]["done_until"])
    world.seed(40, done_until - timedelta(minutes=8), done_until - timedelta(seconds=1), seed=5, published=False)
    clock.advance()
    assert world.simulator.publish_pending() == 40
    world.seed(60, clock.now() - timedelta(minutes=4), clock.now() - timedelta(minutes=3), seed=6)
    clock.advance()
    run_until_caught_up(stack, world, clock)
    assert_exactly_once("late events", stack, world)


def test_expired_cursor_resumes_without_loss(stack: LocalStack, world: World, clock: Clock) -> None:
    if not world.traits.cursors_expire:
        pytest.skip(f"{world.vendor} pages without cursors that could expire")
    seed_events(world, clock, count=2000)
    budget = {"ms": 0}

    def new_context() -> Any:
        budget["ms"] = 90_000
        world.simulator.expire_cursors()  # every cursor stored by the previous tick is now rejected
        return context(stack, world.function_id, lambda: budget["ms"])

    world.simulator.on_request = lambda _request: budget.__setitem__("ms", budget["ms"] - 3_000)
    outcomes = run_until_caught_up(stack, world, clock, make_context=new_context)
    assert len(outcomes) >= 3
    expired = sum(stream["cursors_expired"] for o in outcomes if isinstance(o, dict) for stream in o["streams"])
    assert expired >= 2  # the expired cursors were really used, and rejected
    assert_exactly_once("expired cursors", stack, world)


def test_second_tick_is_idle(stack: LocalStack, world: World, clock: Clock) -> None:
    seed_events(world, clock, count=200)
    run_until_caught_up(stack, world, clock)
    clock.advance()
    summary = stack.invoke(world.function_id)
    assert summary["http"]["requests"] == world.idle_requests()
    assert summary["s3"]["objects"] == 0
    assert summary["dynamodb_operations"] == 2 * world.streams  # per stream: take the lease; commit and release
    assert_exactly_once("idle tick", stack, world)


def test_token_never_in_archive(stack: LocalStack, world: World, clock: Clock) -> None:
    seed_events(world, clock, count=200)
    run_until_caught_up(stack, world, clock)
    records = stack.archived_records()
    assert records and all(world.token not in json.dumps(r) for r in records)


@pytest.mark.slow
def test_backfill_extends_history_exactly_once(stack: LocalStack, world: World, clock: Clock) -> None:
    now = clock.now()
    world.seed(1500, now - timedelta(days=14), now - timedelta(minutes=10), seed=9)
    run_until_caught_up(stack, world, clock, environment={"INITIAL_LOOKBACK_DAYS": "3"})
    collected = check_archive(stack, world.vendor, world.simulator.ground_truth())
    assert 0 < collected.archived < collected.events, "the first run reaches back 3 of the 14 days"

    budget = {"ms": 0}

    def new_context() -> Any:
        budget["ms"] = 80_000  # 20 s to spend above the margin, 4 s a page: several invocations
        return context(stack, world.function_id, lambda: budget["ms"])

    cost = 4_000 // world.traits.streams  # for each stream's share, as in test_deadline_mid_window
    world.simulator.on_request = lambda _request: budget.__setitem__("ms", budget["ms"] - cost)
    since = (now - timedelta(days=20)).date().isoformat()
    outcomes = []
    for _ in range(40):
        summary = stack.invoke(world.function_id, event={"backfill": {"since": since}}, context=new_context(),
                               environment=SMALL_PARTS)
        outcomes.append(summary)
        if summary["status"] == "ok":
            break
        clock.advance()
    assert len(outcomes) > 1 and outcomes[-1]["status"] == "ok", "resumed over several invocations, then done"
    spans = {s["stream"]: s["backfill"] for s in outcomes[-1]["streams"]}
    assert all(span["done_until"] == span["until"] and span["progress"] == 1.0 for span in spans.values()), spans
    progress = [s["backfill"]["progress"] for o in outcomes for s in o["streams"] if s["status"] != "busy"]
    assert any(0 < p < 1 for p in progress), f"progress is reported inside an open window: {progress}"
    world.simulator.on_request = None

    again = stack.invoke(world.function_id, event={"backfill": {"since": since}})
    assert again["status"] == "ok" and again["http"]["requests"] == 0, "a finished backfill is not repeated"
    clock.advance()
    run_until_caught_up(stack, world, clock)  # the scheduled collection goes on undisturbed
    assert_exactly_once("history backfill", stack, world)


def test_backfill_needs_a_first_collection_and_a_date(stack: LocalStack, world: World, clock: Clock) -> None:
    with pytest.raises(Exception, match="has not been collected yet"):
        stack.invoke(world.function_id, event={"backfill": {"since": "2026-01-01"}})
    with pytest.raises(Exception, match="YYYY-MM-DD"):
        stack.invoke(world.function_id, event={"backfill": {"from": "2026-01-01"}})


def test_a_burst_beyond_the_dedup_capacity(stack: LocalStack, world: World, clock: Clock,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """More events inside one overlap than the state keeps ids of: the next window re-reads less, and still
    archives everything once; the state item stays bounded."""
    monkeypatch.setattr(engine, "MAX_DEDUP_IDS", 150)
    now = clock.now()
    world.seed(900, now - timedelta(minutes=9), now - timedelta(minutes=3), seed=21)
    run_until_caught_up(stack, world, clock)
    for tick in range(3):
        clock.advance()
        now = clock.now()
        world.seed(300, now - timedelta(minutes=5), now - timedelta(minutes=2, seconds=30), seed=30 + tick)
        run_until_caught_up(stack, world, clock)
    states = StateStore(boto3.client("dynamodb"), stack.table).scan()
    assert states and all(len(state.seen) <= 150 for state in states)
    assert any(state.seen_from is not None for state in states), "the cap was reached"
    assert_exactly_once("dedup capacity", stack, world)


def test_a_half_written_part_then_an_expired_cursor(stack: LocalStack, world: World, clock: Clock,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A run dies between the objects of a part that spans several days; the next run finds its cursor
    expired. Resuming from what that half part holds would skip the days it misses."""
    if not world.traits.cursors_expire:
        pytest.skip(f"{world.vendor} pages without cursors that could expire")
    seed_events(world, clock)
    real_put = Archive.put
    written: list[str] = []

    def put(self: Archive, obj: Any) -> str | None:
        part = obj.key.rsplit("_p", 1)[1].removesuffix(".json.gz")
        if part != "000001" and written and written[-1].rsplit("_p", 1)[1].removesuffix(".json.gz") == part:
            raise SimulatedCrash("between the objects of a part")  # a later part (a cursor is stored) spans days
        version = real_put(self, obj)
        written.append(obj.key)
        return version

    monkeypatch.setattr(Archive, "put", put)
    with pytest.raises(SimulatedCrash):
        stack.invoke(world.function_id, environment=SMALL_PARTS)
    monkeypatch.setattr(Archive, "put", real_put)
    world.simulator.expire_cursors()
    clock.advance()
    run_until_caught_up(stack, world, clock)
    assert_exactly_once("half-written part, cursor expired", stack, world)
