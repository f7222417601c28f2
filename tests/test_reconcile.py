"""Reconciliation, for every vendor: the live collection is made to miss events (published days after their
time, far beyond the overlap), and a reconciliation finds and archives every one of them, exactly once, recorded
in its own digest chain; a second one finds nothing; one that is not due asks the vendor nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import boto3
import pytest
from conftest import MATRIX, Clock, check_archive, context, verify_archive
from worlds import VENDORS, World, world_of

from auditlake.archive import Archive
from auditlake.engine import Collector
from auditlake.lambda_handler import METRICS_NAMESPACE, PUBLISHED_METRICS
from auditlake.reconcile import ArchivedIds
from auditlake.state import Kind, StateStore, StreamKey
from auditlake.timeutil import parse_time
from auditlake_local.stack import LocalStack

ON_TIME = 900
LATE = 150
RECONCILE: dict[str, Any] = {"reconcile": {}}


@pytest.fixture(params=VENDORS)
def world(request: pytest.FixtureRequest, stack: LocalStack, clock: Clock, pauses: Any) -> Iterator[World]:
    with world_of(request.param, stack, clock.now) as vendor_world:
        yield vendor_world


def collect_until_caught_up(stack: LocalStack, world: World, clock: Clock, event: dict[str, Any] | None = None,
                            *, max_ticks: int = 40, **invoke: Any) -> list[dict[str, Any]]:
    summaries = []
    for _ in range(max_ticks):
        summary = stack.invoke(world.function_id, event, **invoke)
        summaries.append(summary)
        if summary["status"] == "ok":
            return summaries
        clock.advance()
    raise AssertionError(f"not done after {max_ticks} invocations: {summaries[-2:]}")


def found(summaries: list[dict[str, Any]]) -> int:
    return sum(stream["events_archived"] for summary in summaries for stream in summary["streams"])


def miss_late_events(stack: LocalStack, world: World, clock: Clock) -> None:
    """The live collection catches up; then events from one to two days ago are published: far later than the
    overlap, so the live collection never reads their time again."""
    now = clock.now()
    world.seed(ON_TIME, now - timedelta(days=3), now - timedelta(minutes=20), seed=11)
    world.seed(LATE, now - timedelta(days=2), now - timedelta(days=1), seed=12, published=False)
    collect_until_caught_up(stack, world, clock)
    assert world.simulator.publish_pending() == LATE
    clock.advance()
    collect_until_caught_up(stack, world, clock)
    assert check_archive(stack, world.vendor, world.simulator.ground_truth()).missing == LATE


def test_reconciliation_finds_what_the_live_collection_missed(stack: LocalStack, world: World, clock: Clock,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    miss_late_events(stack, world, clock)
    capsys.readouterr()
    summaries = collect_until_caught_up(stack, world, clock, RECONCILE)
    assert found(summaries) == LATE
    assert all(summary["mode"] == "reconcile" for summary in summaries)

    result = check_archive(stack, world.vendor, world.simulator.ground_truth())
    MATRIX[f"{world.vendor} reconciled late events"] = result
    assert (result.missing, result.duplicates, result.unexpected) == (0, 0, 0), result
    report = verify_archive(stack)
    assert report.clean, "\n".join(f.line() for f in report.findings)
    assert any(StreamKey.parse(chain).kind is Kind.RECONCILE for chain in report.chains)

    # Each stream's state says what its last reconciliation covered and found; the metric says it per stream.
    store = StateStore(boto3.client("dynamodb"), stack.table)
    reconciliations = [s.reconciliation for s in store.scan() if s.stream_key.kind is Kind.RECONCILE]
    assert len(reconciliations) == world.streams
    assert all(r is not None and r["completed_at"] for r in reconciliations)
    assert sum(r["found"] for r in reconciliations if r) == LATE
    published = [json.loads(line) for line in capsys.readouterr().out.splitlines()
                 if line.startswith("{") and "ReconciledEvents" in line]
    per_stream = [m for m in published if "stream" in m]
    assert sum(sum(m["ReconciledEvents"]) for m in per_stream) == LATE  # EMF: a list of values
    assert {m["stream"] for m in per_stream} == {s.key for s in store.scan() if s.stream_key.kind is Kind.RECONCILE}
    assert sum(sum(m["ReconciledEvents"]) for m in published if "stream" not in m) == LATE
    # Published as PUBLISHED_METRICS says (the dashboard and alarms are held to that table): names, units and
    # dimension sets, the run's and each stream's.
    dimension_sets = set()
    for document in published:
        for directive in document["_aws"]["CloudWatchMetrics"]:
            assert directive["Namespace"] == METRICS_NAMESPACE
            for metric in directive["Metrics"]:
                spec = PUBLISHED_METRICS[metric["Name"]]
                assert metric["Unit"] == spec.unit.value
                assert len(directive["Dimensions"]) == 1
                assert set(directive["Dimensions"][0]) in [set(s) for s in spec.dimension_sets]
                dimension_sets.add(frozenset(directive["Dimensions"][0]))
    assert dimension_sets == {frozenset(s) for s in PUBLISHED_METRICS["ReconciledEvents"].dimension_sets}


def test_a_reconciliation_that_is_not_due_asks_the_vendor_nothing(stack: LocalStack, world: World,
                                                                  clock: Clock) -> None:
    miss_late_events(stack, world, clock)
    collect_until_caught_up(stack, world, clock, RECONCILE)
    requests = world.simulator.stats()["requests"]
    clock.advance(timedelta(hours=1))
    summary = stack.invoke(world.function_id, RECONCILE)
    assert summary["status"] == "ok" and found([summary]) == 0
    assert world.simulator.stats()["requests"] == requests

    # A day later the next one runs: the live collection has archived everything since, so it finds nothing.
    clock.advance(timedelta(hours=24))
    collect_until_caught_up(stack, world, clock)
    assert found(collect_until_caught_up(stack, world, clock, RECONCILE)) == 0
    result = check_archive(stack, world.vendor, world.simulator.ground_truth())
    assert (result.missing, result.duplicates) == (0, 0)
    assert verify_archive(stack).clean


@pytest.mark.slow
def test_reconciliation_never_races_the_live_collection(stack: LocalStack, world: World, clock: Clock) -> None:
    """Its span ends where the live stream's completed time less the overlap ends: what the live collection may
    still re-read is left to it, so the two never archive the same event."""
    miss_late_events(stack, world, clock)
    summary = collect_until_caught_up(stack, world, clock, RECONCILE)[-1]
    store = StateStore(boto3.client("dynamodb"), stack.table)
    overlap = timedelta(seconds=float(stack.functions[world.function_id].environment["OVERLAP_SECONDS"]))
    for stream in summary["streams"]:
        live = store.read(StreamKey.parse(stream["stream"]).live)
        assert live is not None and live.done_until is not None
        reconciliation = stream["reconciliation"]
        assert parse_time(reconciliation["until"]) <= live.done_until - overlap
        assert parse_time(reconciliation["since"]) >= live.origin

    # Late events inside the live overlap, published now: the live collection's next tick takes them.
    now = clock.now()
    world.seed(40, now - timedelta(minutes=8), now - timedelta(minutes=4), seed=13, published=False)
    world.simulator.publish_pending()
    clock.advance(timedelta(hours=25))
    collect_until_caught_up(stack, world, clock, RECONCILE)
    collect_until_caught_up(stack, world, clock)
    result = check_archive(stack, world.vendor, world.simulator.ground_truth())
    assert (result.missing, result.duplicates) == (0, 0), result


def test_a_reconciliation_cut_short_by_the_deadline_resumes(stack: LocalStack, world: World, clock: Clock) -> None:
    miss_late_events(stack, world, clock)
    budget = {"ms": 0}

    def new_context() -> Any:
        budget["ms"] = 100_000  # 40 s to spend above the 60 s margin
        return context(stack, world.function_id, lambda: budget["ms"])

    # 4 s a request over the streams' share: 10 requests a run for each stream (its slices, sparse here, take one
    # each; ClickUp's six classes share the run)
    cost = 4_000 // world.traits.streams
    world.simulator.on_request = lambda _request: budget.__setitem__("ms", budget["ms"] - cost)
    summaries = []
    for _ in range(40):
        summaries.append(stack.invoke(world.function_id, RECONCILE, context=new_context()))
        if summaries[-1]["status"] == "ok":
            break
    assert [s["status"] for s in summaries].count("backlog") >= 1 and summaries[-1]["status"] == "ok"
    assert found(summaries) == LATE
    result = check_archive(stack, world.vendor, world.simulator.ground_truth())
    assert (result.missing, result.duplicates) == (0, 0), result
    assert verify_archive(stack).clean


@pytest.mark.slow
def test_reconciliation_off_and_by_hand(stack: LocalStack, world: World, clock: Clock) -> None:
    miss_late_events(stack, world, clock)
    off = {"RECONCILE_INTERVAL_HOURS": "0"}
    summary = stack.invoke(world.function_id, RECONCILE, environment=off)
    assert summary["reconciliation"] == "off" and summary["streams"] == []
    # By hand, from a date, it runs whatever the schedule says.
    since = (clock.now() - timedelta(days=2)).date().isoformat()
    summaries = collect_until_caught_up(stack, world, clock, {"reconcile": {"since": since}}, environment=off)
    assert found(summaries) == LATE
    assert check_archive(stack, world.vendor, world.simulator.ground_truth()).missing == 0


class DayArchive:
    """An archive of one stream whose objects hold `ids[day]` on each day; it counts what is read."""

    def __init__(self, ids: dict[date, list[str]]) -> None:
        self.ids = ids
        self.reads: list[date] = []

    def stream_objects(self, key: StreamKey, days: list[date]) -> list[str]:
        assert key == StreamKey("asana", "1")
        return [f"{day.isoformat()}/asana-1_w_p000001.json.gz" for day in days if day in self.ids]

    def read_events(self, key: str) -> list[tuple[str, datetime]]:
        day = date.fromisoformat(key.partition("/")[0])
        self.reads.append(day)
        return [(event_id, datetime(day.year, day.month, day.day, tzinfo=UTC)) for event_id in self.ids[day]]


def test_archived_ids_are_read_a_day_at_a_time_and_at_most_two_days_are_held() -> None:
    days = [date(2026, 11, d) for d in range(20, 27)]
    archive = DayArchive({day: [f"{day}-{n}" for n in range(3)] for day in days})
    archived = ArchivedIds(archive, StreamKey("asana", "1"))  # type: ignore[arg-type]
    for day in days:  # a span read oldest first, several events a day
        moment = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
        assert archived.holds(f"{day}-1", moment) and not archived.holds(f"{day}-9", moment)
        assert len(archived._days) <= 2
    assert archive.reads == days and archived.objects_read == len(days)  # each day's objects read once
    for day in reversed(days):  # newest first, as Ashby and ClickUp read
        assert archived.holds(f"{day}-0", datetime(day.year, day.month, day.day, tzinfo=UTC))
    assert archive.reads == days + list(reversed(days))[2:]  # the two days still held are not read again


class SimulatedCrash(BaseException):
    """The process dies here: nothing after it runs, not even the lease release."""


@pytest.mark.slow
def test_a_reconciliation_that_dies_after_writing_still_reports_what_it_found(
        stack: LocalStack, world: World, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run dies after its objects are written, before its commit: the next run reads them back (skipping
    their events) and reports them as found, since the run that died never did, and the alarm must hear of them."""
    miss_late_events(stack, world, clock)
    real_put, real_save, real_finish = Archive.put, StateStore.save, Collector._finish
    crashes = {"left": 1}

    def put(self: Archive, obj: Any) -> str | None:
        if not crashes["left"]:
            raise SimulatedCrash("the process is gone")  # its other threads (slices) write nothing more either
        version = real_put(self, obj)
        if "-reconcile_" in obj.key and crashes["left"]:
            crashes["left"] -= 1
            raise SimulatedCrash(obj.key)
        return version

    def save(self: StateStore, state: Any, *args: Any, **kwargs: Any) -> None:
        if not crashes["left"]:
            raise SimulatedCrash("the process is gone")
        real_save(self, state, *args, **kwargs)

    def finish(self: Collector, state: Any, result: Any, failure: BaseException | None) -> None:
        if not isinstance(failure, SimulatedCrash):  # a dead process commits nothing and releases nothing
            real_finish(self, state, result, failure)

    monkeypatch.setattr(Archive, "put", put)
    monkeypatch.setattr(StateStore, "save", save)
    monkeypatch.setattr(Collector, "_finish", finish)
    with pytest.raises(SimulatedCrash):
        stack.invoke(world.function_id, RECONCILE)
    monkeypatch.setattr(Archive, "put", real_put)  # not undo(): that would also take the test's clock away
    monkeypatch.setattr(StateStore, "save", real_save)
    monkeypatch.setattr(Collector, "_finish", real_finish)
    clock.advance(timedelta(minutes=10))  # the dead run's lease expires
    summaries = collect_until_caught_up(stack, world, clock, RECONCILE)
    assert found(summaries) == LATE
    result = check_archive(stack, world.vendor, world.simulator.ground_truth())
    assert (result.missing, result.duplicates, result.unexpected) == (0, 0, 0), result
    assert verify_archive(stack).clean
