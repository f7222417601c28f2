"""A seeded chaos run: every collector through many scheduled ticks while its vendor keeps producing events, with
faults injected at random points, and the archive's invariants checked after every tick.

`run(seed, ticks, vendors) -> Report`; `python -m auditlake_local.chaos --seeds 200 --ticks 40` sweeps seeds and
prints, per seed, the ticks, the faults injected by kind, the events checked, and for a failing seed the replay
command. Everything a run does is decided by `random.Random(seed)` and a clock that starts at a fixed instant, so a
seed replays the same run.

Faults, per tick and per invocation:

- HTTP: the simulators' FaultPlan, every `Fault` kind, at a random rate.
- S3 PutObject and DynamoDB writes (`Archive.put`, `StateStore.save`, `StateStore.acquire`, and the digest's
  write) failing before the call, or after it succeeded (the write happened, the caller sees an error).
- Process death (`ProcessDeath`, a BaseException): before or after any of those writes, inside an HTTP request,
  or just before the lease release. Nothing runs after it, not even the release.
- The Lambda deadline: a context whose remaining time drops with every request and every retry wait (time that
  passes on the clocks too).
- A second invocation of the same collector, started from inside one of the first one's requests.
- Vendor cursors expiring between ticks; late events (captured with a time up to 5 minutes back, published at the
  next tick if that is within the overlap of their time; never later, which is the documented limit).
- Clock skew: the collectors' clock moves 5 min +- up to 30 s per tick, and sometimes a few seconds backwards
  (an invocation right after the previous one, on a host whose clock is a little behind).

Invariants after every tick, per vendor:

1. exactly once so far: no record twice (by content or by event_id), none that is not a ground-truth event;
2. each stream's `done_until` never decreases and never passes the collectors' clock minus the lag;
3. every ground-truth event of a stream older than `done_until - overlap` (the span no later window re-reads)
   is archived;
4. every object is gzip NDJSON (no Content-Encoding) whose records have exactly the archive's columns, ISO ms Z
   times, a JSON `raw`, the `dt` of their partition and the record count the object's metadata states;
5. no stream's lease is held by a run that is not running: a run that ended, with or without an error, left no
   lease; a lease left by a process death or a failed DynamoDB write expires by the invocation's end plus the
   grace;
6. an invocation fails only if a fault was injected into it, and its error never carries the token.

At the end, with the faults off, ticks run until every stream of every vendor is ok; then the archive must equal
each vendor's ground truth exactly once, no stream may have a lease, and `auditlake verify` must find nothing:
every digest chain whole and signed, every object listed and intact, the covered time without a gap.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import random
import re
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError

from auditlake import http, timeutil
from auditlake.archive import Archive
from auditlake.digest import DigestWriter
from auditlake.engine import LEASE_GRACE_SECONDS, Collector
from auditlake.records import COLUMNS
from auditlake.state import StateStore, StreamKey
from auditlake.timeutil import parse_time
from auditlake_cli.verify import Verifier, load_public_key
from auditlake_local.simulators import Fault, SimulatorAdapter, VendorSimulator, clickup
from auditlake_local.stack import LambdaContext, LocalStack
from auditlake_local.vendors import VENDORS, LocalVendor

TICK = timedelta(minutes=5)
START = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)  # a fixed start, so a seed replays exactly; the seed shifts it
MAX_FINAL_TICKS = 30
# Log and metric output of hundreds of invocations would drown the report.
QUIET = {"LOG_LEVEL": "CRITICAL", "POWERTOOLS_METRICS_DISABLED": "true"}
ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
OBJECT_KEY = re.compile(r"^events/vendor=(?P<vendor>[a-z]+)/dt=(?P<dt>\d{4}-\d{2}-\d{2})/[^/]+\.json\.gz$")
DDB_ERRORS = ("ThrottlingException", "ProvisionedThroughputExceededException", "InternalServerError",
              "RequestLimitExceeded")
S3_ERRORS = ("InternalError", "SlowDown", "ServiceUnavailable", "RequestTimeout")
# Where an AWS call can fail or the process can die: the call's name and the modes it can meet.
AWS_MODES = ("error_before", "error_after")
CRASH_MODES = ("crash_before", "crash_after")
_deserialize = TypeDeserializer().deserialize


class ProcessDeath(BaseException):
    """The process dies here: nothing after it runs, not even the lease release."""


class InvariantBroken(AssertionError):
    def __init__(self, invariant: str, vendor: str, detail: str) -> None:
        super().__init__(f"[{invariant}] {vendor}: {detail}")
        self.invariant = invariant
        self.vendor = vendor


@dataclass
class Report:
    seed: int
    ticks: int
    vendors: tuple[str, ...]
    faults: Counter[str] = field(default_factory=Counter)  # injected, by kind
    outcomes: Counter[str] = field(default_factory=Counter)  # invocations by outcome
    events_checked: int = 0  # ground-truth events found archived exactly once at the end
    checks: int = 0  # per-tick invariant checks passed (one per vendor and tick)
    final_ticks: int = 0  # clean ticks it took to catch up at the end
    digests_verified: int = 0  # by `auditlake verify` at the end
    seconds: float = 0.0
    failure: str | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None

    @property
    def replay(self) -> str:
        vendors = "".join(f" --vendor {v}" for v in self.vendors) if set(self.vendors) != set(VENDORS) else ""
        return f"python -m auditlake_local.chaos --seed {self.seed} --ticks {self.ticks}{vendors}"

    def line(self) -> str:
        faults = " ".join(f"{kind}={n}" for kind, n in sorted(self.faults.items()))
        outcomes = " ".join(f"{kind}={n}" for kind, n in sorted(self.outcomes.items()))
        status = "ok" if self.ok else "FAILED"
        return (f"seed {self.seed:>6} {status:<6} ticks={self.ticks}+{self.final_ticks} "
                f"events_checked={self.events_checked} checks={self.checks} digests={self.digests_verified} "
                f"{self.seconds:.1f}s | "
                f"runs: {outcomes} | faults: {faults}")


# -- clocks ------------------------------------------------------------------------------------------------------


@dataclass
class Clocks:
    """The vendors' clock (true time, never backwards) and the collectors' clock, which is skewed from it."""

    vendor: datetime
    skew: timedelta = timedelta(0)
    engine_max: datetime | None = None  # the latest the collectors' clock has shown
    scheduled: datetime | None = None  # when the current schedule tick was due

    def vendor_now(self) -> datetime:
        return self.vendor

    def engine_now(self) -> datetime:
        return self.vendor + self.skew

    def advance(self, seconds: float) -> None:
        """Time spent inside a tick (requests, retry waits) passes on both clocks."""
        self.vendor += timedelta(seconds=seconds)
        self._seen()

    def tick(self, rng: random.Random, *, backwards_rate: float) -> str:
        """The next schedule tick, 5 minutes after the last one, on a collectors' clock skewed by up to 15 s either
        way (5 min +- up to 30 s between ticks); sometimes a re-run seconds after the last invocation, on a host
        whose clock is a few seconds behind."""
        before = self.engine_now()
        if rng.random() < backwards_rate:
            self.vendor += timedelta(seconds=rng.uniform(0, 2))
            self.skew = max(timedelta(seconds=-45), self.skew - timedelta(seconds=rng.uniform(3, 8)))
        else:
            self.scheduled = (self.scheduled or self.vendor) + TICK
            self.vendor = max(self.vendor, self.scheduled)  # a tick that ran long delays the next
            self.skew = timedelta(seconds=rng.uniform(-15, 15))
        self._seen()
        return "clock_back" if self.engine_now() < before else "clock"

    def _seen(self) -> None:
        now = self.engine_now()
        self.engine_max = now if self.engine_max is None else max(self.engine_max, now)


# -- one vendor ---------------------------------------------------------------------------------------------------


@dataclass
class VendorWorld:
    local: LocalVendor
    simulator: VendorSimulator
    origin: str
    done_until: dict[str, datetime] = field(default_factory=dict)  # per stream key, the highest seen
    pending: list[tuple[str, datetime]] = field(default_factory=list)  # captured unpublished: (id, time)
    canonical: dict[str, str] = field(default_factory=dict)  # ground-truth key -> canonical content
    placement: dict[str, tuple[str, datetime]] = field(default_factory=dict)  # ground-truth key -> stream, time

    @property
    def vendor(self) -> str:
        return self.local.vendor

    @property
    def function_id(self) -> str:
        return self.local.function_id

    def stream_of(self, event: dict[str, Any]) -> str:
        """The state key of the stream an event belongs to (README: Records, per-vendor mapping)."""
        scope = self.local.scope
        match self.vendor:
            case "asana":
                stream = scope["workspace_gid"]
            case "ashby":
                stream = "organization"
            case "clickup":
                stream = f"{scope['workspace_id']}:{clickup.applicability_of(event.get('eventType'))}"
            case "make":
                stream = scope["organization_id"]
            case _:
                raise ValueError(self.vendor)
        return str(StreamKey(self.vendor, stream))

    def time_of(self, event: dict[str, Any]) -> datetime:
        """The event's time, by the vendor's documented field (README: Records)."""
        fields = {"asana": ("created_at",), "ashby": ("createdAt", "occurredAt", "timestamp"),
                  "clickup": ("startTime", "eventTime", "timestamp", "date", "createdAt"),
                  "make": ("triggeredAt", "createdAt")}[self.vendor]
        value = next(event[name] for name in fields if event.get(name) is not None)
        return parse_time(value)


# -- invocations and the injected faults ---------------------------------------------------------------------------


@dataclass
class Invocation:
    request_id: str
    vendor: str
    started: datetime  # on the collectors' clock
    budget_s: float  # the remaining time it started with
    budget_ms: float  # the remaining time now
    cost_ms: tuple[float, float]  # what each request spends of the remaining time

    def remaining_ms(self) -> int:
        return int(self.budget_ms)

    def lease_bound(self, beyond: float = 0.0) -> int:
        """The latest a lease of this run may expire: the end of the invocation plus the grace (plus a second for
        rounding), and `beyond` that."""
        return int(self.started.timestamp() + self.budget_s + LEASE_GRACE_SECONDS + beyond) + 1


@dataclass
class Armed:
    """The faults armed for one tick of one vendor: per call name, the call number that meets which mode."""

    at: dict[str, tuple[int, str]] = field(default_factory=dict)
    concurrent_at: int | None = None  # the request during which a second invocation starts


class Chaos:
    """Holds the run's randomness and the patched AWS calls; the patches consult it on every call."""

    def __init__(self, rng: random.Random, report: Report, clocks: Clocks) -> None:
        self.rng = rng
        self.report = report
        self.clocks = clocks
        self.active: list[Invocation] = []
        self.armed = Armed()
        self.calls: Counter[str] = Counter()
        self.injected = 0  # AWS faults and deaths so far
        self.written: list[str] = []  # object keys, as the archive wrote them
        self.orphaning: dict[str, Invocation] = {}  # request id -> an invocation that may have left a lease

    def current(self) -> Invocation | None:
        return self.active[-1] if self.active else None

    def arm(self, armed: Armed) -> None:
        self.armed = armed
        self.calls.clear()

    def hit(self, call: str) -> str | None:
        """Counts the call; returns the mode armed for it, if this is the armed call."""
        self.calls[call] += 1
        number, mode = self.armed.at.get(call, (0, ""))
        if number != self.calls[call]:
            return None
        kind = f"{'crash' if mode.startswith('crash') else 'aws'}:{call}:{mode}"
        self.report.faults[kind] += 1
        self.injected += 1
        invocation = self.current()
        if invocation is not None and (mode.startswith("crash") or call in ("save", "acquire")):
            # A death, or a DynamoDB write that failed, may leave its lease held until it expires.
            self.orphaning[invocation.request_id] = invocation
        return mode

    def spend(self, seconds: float) -> None:
        """Time passes: for every running invocation, and on the clocks."""
        for invocation in self.active:
            invocation.budget_ms -= seconds * 1000
        self.clocks.advance(seconds)

    def client_error(self, service: str, operation: str) -> ClientError:
        code = self.rng.choice(DDB_ERRORS if service == "dynamodb" else S3_ERRORS)
        return ClientError({"Error": {"Code": code, "Message": f"injected {code}"},
                            "ResponseMetadata": {"HTTPStatusCode": 500 if "Internal" in code else 503}}, operation)


def _faulty(chaos: Chaos, call: str, service: str, operation: str, real: Callable[..., Any],
            undo: Callable[..., None] | None = None) -> Callable[..., Any]:
    """`real`, meeting the fault armed for this call: an error or a death before it, or after it succeeded
    (`undo` takes back what the caller would only have done on seeing the success)."""

    def call_with_faults(*args: Any, **kwargs: Any) -> Any:
        mode = chaos.hit(call)
        if mode == "error_before":
            raise chaos.client_error(service, operation)
        if mode == "crash_before":
            raise ProcessDeath(f"before {operation}")
        result = real(*args, **kwargs)
        if call == "put":
            chaos.written.append(args[1].key)
        if mode == "error_after":
            if undo is not None:
                undo(*args, **kwargs)
            raise chaos.client_error(service, operation)
        if mode == "crash_after":
            raise ProcessDeath(f"after {operation}")
        return result

    return call_with_faults


def _unsave(_store: StateStore, state: Any, *_args: Any, **_kwargs: Any) -> None:
    state.version -= 1  # the caller never learnt the write happened, so it never counted the version


@contextmanager
def _patched(chaos: Chaos, clocks: Clocks) -> Iterator[None]:
    """The engine's clock, retry waits, and the AWS writes, wrapped around the real calls."""
    real_put, real_save, real_acquire, real_finish = Archive.put, StateStore.save, StateStore.acquire, Collector._finish
    real_digest_put = DigestWriter._put
    real_now, real_pause = timeutil.now, http.pause

    def finish(self: Collector, state: Any, result: Any, failure: BaseException | None) -> None:
        if isinstance(failure, ProcessDeath):
            return  # the process is gone: no commit, no release
        if chaos.hit("release") == "crash_before":
            raise ProcessDeath("before the lease release")
        real_finish(self, state, result, failure)

    Archive.put = _faulty(chaos, "put", "s3", "PutObject", real_put)  # type: ignore[method-assign]
    StateStore.save = _faulty(chaos, "save", "dynamodb", "PutItem", real_save, _unsave)  # type: ignore[method-assign]
    StateStore.acquire = _faulty(chaos, "acquire", "dynamodb", "UpdateItem", real_acquire)  # type: ignore[method-assign]
    DigestWriter._put = _faulty(chaos, "digest", "s3", "PutObject", real_digest_put)  # type: ignore[method-assign]
    Collector._finish = finish  # type: ignore[method-assign]
    timeutil.now = clocks.engine_now
    http.pause = chaos.spend
    try:
        yield
    finally:
        Archive.put, StateStore.save, StateStore.acquire = real_put, real_save, real_acquire  # type: ignore[method-assign]
        DigestWriter._put = real_digest_put  # type: ignore[method-assign]
        Collector._finish = real_finish  # type: ignore[method-assign]
        timeutil.now, http.pause = real_now, real_pause


# -- the run -------------------------------------------------------------------------------------------------------


class _Run:
    def __init__(self, seed: int, ticks: int, vendors: tuple[str, ...], stack: LocalStack, report: Report) -> None:
        self.seed = seed
        self.ticks = ticks
        self.stack = stack
        self.report = report
        self.rng = random.Random(seed)
        self.clocks = Clocks(START + timedelta(seconds=self.rng.randrange(7 * 86_400)))
        self.clocks.engine_max = self.clocks.engine_now()
        self.chaos = Chaos(self.rng, report, self.clocks)
        self.worlds = [self._world(VENDORS[name]) for name in vendors]
        # One query at a time: with a window's slices read at once, thread scheduling would decide which call meets
        # which fault and a seed would no longer replay. Slices under faults are tests/test_slicing.py's and
        # tests/test_exactly_once.py's (both read in slices).
        self.environment = {**QUIET, "MAX_OBJECT_EVENTS": str(self.rng.choice([15, 40, 120])),
                            "PAGE_SIZE": str(self.rng.choice([25, 50, 100])), "FETCH_CONCURRENCY": "1"}
        env = stack.functions[self.worlds[0].function_id].environment
        self.lag = timedelta(seconds=float(env["LAG_SECONDS"]))
        self.overlap = timedelta(seconds=float(env["OVERLAP_SECONDS"]))
        self.margin = timedelta(seconds=float(env["DEADLINE_MARGIN_SECONDS"]))
        self.timeout = stack.functions[self.worlds[0].function_id].timeout
        self.tick = 0
        self.invocations = 0
        self.journal: list[str] = []  # what happened, for the failure message
        self.checked: dict[str, str] = {}  # object key -> ETag, of objects already validated
        self.records: dict[str, list[dict[str, Any]]] = {}  # object key -> its records, in write order
        self.s3 = boto3.client("s3")
        self.dynamodb = boto3.client("dynamodb")

    def _world(self, local: LocalVendor) -> VendorWorld:
        simulator = local.start(self.clocks.vendor_now)
        origin = f"https://{local.vendor}.chaos"
        http.shared_session().mount(f"{origin}/", SimulatorAdapter(simulator))
        self.stack.put_secret(local.function_id, local.secret(origin))
        world = VendorWorld(local, simulator, origin)
        simulator.on_request = lambda _record, w=world: self._on_request(w)
        return world

    def close(self) -> None:
        for world in self.worlds:
            world.simulator.on_request = None
            http.shared_session().adapters.pop(f"{world.origin}/", None)

    def log(self, text: str) -> None:
        self.journal.append(f"t{self.tick}: {text}")

    # -- producing events ----------------------------------------------------------------------------------------

    def seed_history(self) -> None:
        now = self.clocks.vendor_now()
        for world in self.worlds:
            count = self.rng.randint(80, 300)
            world.simulator.add_events(world.local.generate_events(
                count, now - timedelta(days=self.rng.uniform(0.5, 2)), now - timedelta(minutes=3),
                self.rng.randrange(2**31)))
            self.log(f"{world.vendor}: {count} events of history")

    def publish_late(self) -> int:
        """Publishes the events captured unpublished at the last tick, those that are at most the overlap late: the
        documented limit. The others stay unpublished: a vendor that late is outside what the archive promises."""
        published = 0
        now = self.clocks.vendor_now()
        for world in self.worlds:
            due = [key for key, moment in world.pending if now - moment <= self.overlap]
            world.pending.clear()
            published += world.simulator.publish_pending(due)  # type: ignore[call-arg]
        self.report.faults["late_events"] += published
        return published

    def produce(self) -> None:
        """New events a few minutes back from now, and some captured now but published next tick (late)."""
        now = self.clocks.vendor_now()
        self.publish_late()
        for world in self.worlds:
            count = self.rng.choice([0, 1, 3, 8, 20, 40, 150])
            if count:
                world.simulator.add_events(world.local.generate_events(
                    count, now - TICK, now - timedelta(seconds=1), self.rng.randrange(2**31)))
            hidden = self.rng.choice([0, 0, 2, 6])
            if hidden:
                events = world.local.generate_events(hidden, now - TICK, now - timedelta(seconds=1),
                                                     self.rng.randrange(2**31))
                world.simulator.add_events(events, published=False)
                id_field = VENDORS[world.vendor].id_field
                world.pending += [(str(event[id_field]), world.time_of(event)) for event in events]
            self.log(f"{world.vendor}: +{count} events, {hidden} unpublished")

    # -- one tick ------------------------------------------------------------------------------------------------

    def chaos_tick(self) -> None:
        self.tick += 1
        if self.clocks.tick(self.rng, backwards_rate=0.12) == "clock_back":
            self.report.faults["clock_back"] += 1
        self.log(f"vendor clock {timeutil.to_iso(self.clocks.vendor)}, skew {self.clocks.skew.total_seconds():+.1f}s")
        self.produce()
        order = list(self.worlds)
        self.rng.shuffle(order)
        for world in order:
            if self.rng.random() < 0.25:
                world.simulator.expire_cursors()
                self.report.faults["expire_cursors"] += 1
            rate = self.rng.choice([0.0, 0.0, 0.05, 0.15, 0.3, 0.5])
            kinds = self.rng.sample(list(Fault), self.rng.randint(1, len(Fault)))
            world.simulator.faults.clear()
            if rate:
                world.simulator.faults.random(rate, kinds, seed=self.rng.randrange(2**31))
            self.invoke(world, self._arm(), deadline=self.rng.random() < 0.3, http_faults=(rate, kinds))
        for world in self.worlds:
            world.simulator.faults.clear()
        self.check()

    def _arm(self) -> Armed:
        armed = Armed()
        roll = self.rng.random()
        # A run writes a digest or two (ClickUp: up to six), at its end.
        calls = {"put": 4, "save": 4, "acquire": 4, "digest": 2, "request": 12, "release": 4}
        if roll < 0.3:
            call = self.rng.choice(["put", "save", "acquire", "digest"])
            armed.at[call] = (self.rng.randint(1, calls[call]), self.rng.choice(AWS_MODES))
        elif roll < 0.5:
            call = self.rng.choice(["put", "save", "acquire", "digest", "request", "release"])
            mode = "crash_before" if call == "release" else self.rng.choice(CRASH_MODES)
            armed.at[call] = (self.rng.randint(1, calls[call]), mode)
        if self.rng.random() < 0.2:
            armed.concurrent_at = self.rng.randint(1, 6)
        return armed

    def invoke(self, world: VendorWorld, armed: Armed, *, deadline: bool = False,
               http_faults: tuple[float, list[Fault]] = (0.0, [])) -> str:
        """One scheduled invocation; returns its outcome (ok, backlog, error, death)."""
        self.chaos.arm(armed)
        if deadline:  # the deadline arrives somewhere inside this run
            self.report.faults["deadline"] += 1
            invocation = self._invocation(world, budget_s=self.rng.uniform(61, 140), cost=(0.5, 9.0))
        else:
            invocation = self._invocation(world, budget_s=self.timeout, cost=(0.01, 0.3))
        rate, kinds = http_faults
        self.log(f"{world.vendor} {invocation.request_id}: http {rate} {[k.value for k in kinds] if rate else ''} "
                 f"armed {armed.at} concurrent@{armed.concurrent_at} budget {invocation.budget_s:.0f}s")
        outcome, _ = self._call(world, invocation)
        self.report.outcomes[outcome] += 1
        return outcome

    def _invocation(self, world: VendorWorld, *, budget_s: float, cost: tuple[float, float]) -> Invocation:
        self.invocations += 1
        request_id = f"chaos-{self.seed}-t{self.tick}-{world.vendor}-{self.invocations}"
        return Invocation(request_id, world.vendor, self.clocks.engine_now(), budget_s, budget_s * 1000,
                          (cost[0] * 1000, cost[1] * 1000))

    def _call(self, world: VendorWorld, invocation: Invocation) -> tuple[str, dict[str, Any] | None]:
        """Invokes the collector as Lambda would; (outcome, summary). A failure must come from a fault injected
        while it ran (HTTP, AWS or a death), and must not carry the token."""
        function = self.stack.functions[world.function_id]
        context = LambdaContext(function_name=self.stack.refs[world.function_id], timeout_seconds=function.timeout,
                                remaining_ms=invocation.remaining_ms, aws_request_id=invocation.request_id)
        faults_before = world.simulator.faults.injected.total() + self.chaos.injected
        self.chaos.active.append(invocation)
        try:
            summary = self.stack.invoke(world.function_id, context=context, environment=self.environment)
        except ProcessDeath as death:
            self.log(f"{invocation.request_id}: died ({death})")
            return "death", None
        except Exception as exc:
            self.log(f"{invocation.request_id}: error {type(exc).__name__}: {str(exc)[:300]}")
            if world.local.token in str(exc):
                raise InvariantBroken("no token in errors", world.vendor, invocation.request_id) from exc
            if world.simulator.faults.injected.total() + self.chaos.injected == faults_before:
                raise InvariantBroken("failures only from faults", world.vendor,
                                      f"{invocation.request_id} failed with no fault injected: "
                                      f"{type(exc).__name__}: {exc}") from exc
            return "error", None
        finally:
            self.chaos.active.pop()
        statuses = Counter(stream["status"] for stream in summary["streams"])
        self.log(f"{invocation.request_id}: {summary['status']} {dict(statuses)} "
                 f"archived {sum(s['events_archived'] for s in summary['streams'])}")
        return str(summary["status"]), summary

    def _on_request(self, world: VendorWorld) -> None:
        """Per request: the Lambda time it costs; the armed death; the armed second invocation."""
        invocation = self.chaos.current()
        if invocation is not None:
            self.chaos.spend(self.rng.uniform(*invocation.cost_ms) / 1000)
        if self.chaos.hit("request") is not None:
            raise ProcessDeath("during an HTTP request")
        armed = self.chaos.armed
        if armed.concurrent_at is not None and self.chaos.calls["request"] >= armed.concurrent_at \
                and len(self.chaos.active) == 1:
            armed.concurrent_at = None  # one second run, and its own requests start no third
            self.report.faults["concurrent"] += 1
            second = self._invocation(world, budget_s=self.timeout, cost=(0.01, 0.3))
            outcome, _ = self._call(world, second)
            self.report.outcomes[f"second_{outcome}"] += 1

    # -- the end: no faults, until caught up -----------------------------------------------------------------------

    def finish(self) -> None:
        self.chaos.arm(Armed())
        for world in self.worlds:
            world.simulator.faults.clear()
        caught_up: set[str] = set()
        for final in range(1, MAX_FINAL_TICKS + 1):
            self.tick += 1
            self.clocks.tick(self.rng, backwards_rate=0.0)
            if final == 1:  # the last late events are published, and nothing new comes
                self.publish_late()
            caught_up.clear()
            for world in self.worlds:
                invocation = self._invocation(world, budget_s=self.timeout, cost=(0.01, 0.3))
                outcome, summary = self._call(world, invocation)
                if summary is None:
                    raise InvariantBroken("clean ticks succeed", world.vendor, f"{invocation.request_id}: {outcome}")
                if all(stream["status"] == "ok" for stream in summary["streams"]):
                    caught_up.add(world.vendor)
            done = len(caught_up) == len(self.worlds)
            self.check(final=done)
            if done:
                self.report.final_ticks = final
                self._verify_digests()
                return
        raise InvariantBroken("catches up", ",".join(w.vendor for w in self.worlds if w.vendor not in caught_up),
                              f"not every stream ok after {MAX_FINAL_TICKS} clean ticks")

    # -- invariants ----------------------------------------------------------------------------------------------

    def _verify_digests(self) -> None:
        """`auditlake verify` over the whole archive, as an auditor would run it after the storm."""
        kms = boto3.client("kms")
        public = kms.get_public_key(KeyId=self.stack.functions_env("DIGEST_SIGNING_KEY_ARN"))["PublicKey"]
        verifier = Verifier(self.s3, self.stack.bucket, load_public_key(public, "the signing key"),
                            states=StateStore(self.dynamodb, self.stack.table).scan, now=self.clocks.engine_now)
        report = verifier.run()
        if report.findings:
            first = report.findings[0]
            vendor = first.subject.partition("vendor=")[2].partition("/")[0] or first.subject.partition("#")[0]
            raise InvariantBroken("digests verify", vendor, "; ".join(f.line() for f in report.findings[:5]))
        self.report.digests_verified = report.digests

    def _streams(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Every state item, by vendor, then by stream key (read consistently, with the lease attributes)."""
        items: dict[str, dict[str, dict[str, Any]]] = {world.vendor: {} for world in self.worlds}
        for page in self.dynamodb.get_paginator("scan").paginate(TableName=self.stack.table, ConsistentRead=True):
            for raw in page["Items"]:
                item = {k: _deserialize(v) for k, v in raw.items()}
                key = str(item["stream"])
                items.setdefault(StreamKey.parse(key).vendor, {})[key] = item
        return items

    def _archive(self, *, listing: bool) -> dict[str, list[dict[str, Any]]]:
        """Every record, by vendor, validating each object once, when written (objects never change). With
        `listing`, the bucket is listed too: it holds nothing else, and no object has changed since."""
        for key in self.chaos.written:
            if key not in self.checked:
                self._read(key)
        self.chaos.written.clear()
        if listing:
            listed: set[str] = set()
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.stack.bucket,
                                                                          Prefix="events/"):
                for item in page.get("Contents", []):
                    key = item["Key"]
                    listed.add(key)
                    if key not in self.checked:
                        raise InvariantBroken("objects are written once", _vendor_of(key),
                                              f"{key} is in the bucket, but the archive never wrote it")
                    if self.checked[key] != item["ETag"]:
                        raise InvariantBroken("objects are written once", _vendor_of(key), f"{key} changed")
            if listed != set(self.checked):
                gone = sorted(set(self.checked) - listed)
                raise InvariantBroken("objects are written once", _vendor_of(gone[0]), f"{gone[:3]} disappeared")
        records: dict[str, list[dict[str, Any]]] = {world.vendor: [] for world in self.worlds}
        for key, object_records in self.records.items():
            records.setdefault(_vendor_of(key), []).extend(object_records)
        return records

    def _read(self, key: str) -> None:
        vendor = _vendor_of(key)
        obj = self.s3.get_object(Bucket=self.stack.bucket, Key=key)
        self.records[key] = self._validate(vendor, key, obj)
        self.checked[key] = obj["ETag"]

    def _validate(self, vendor: str, key: str, obj: dict[str, Any]) -> list[dict[str, Any]]:
        def broken(detail: str) -> InvariantBroken:
            return InvariantBroken("objects are gzip NDJSON of valid records", vendor, f"{key}: {detail}")

        match = OBJECT_KEY.match(key)
        if match is None or vendor not in {world.vendor for world in self.worlds}:
            raise broken("not an archive key of a vendor in this run")
        if obj.get("ContentEncoding"):
            raise broken(f"Content-Encoding {obj['ContentEncoding']}")
        try:
            lines = gzip.decompress(obj["Body"].read()).decode("utf-8").splitlines()
        except (OSError, EOFError, UnicodeDecodeError) as exc:
            raise broken(f"not gzip UTF-8: {exc}") from exc
        if not lines:
            raise broken("empty")
        records = []
        for number, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
                raw = json.loads(record["raw"]) if isinstance(record, dict) and isinstance(record.get("raw"),
                                                                                              str) else None
            except (ValueError, KeyError) as exc:
                raise broken(f"line {number} is not JSON: {exc}") from exc
            if not isinstance(record, dict) or tuple(record) != COLUMNS:
                raise broken(f"line {number} has columns {list(record) if isinstance(record, dict) else record}")
            if not isinstance(raw, dict):
                raise broken(f"line {number}: raw is not a JSON object string")
            if not all(isinstance(record[c], str) and ISO_MS.match(record[c]) for c in ("event_time", "collected_at")):
                raise broken(f"line {number}: times {record['event_time']!r}, {record['collected_at']!r}")
            if not isinstance(record["event_id"], str) or not record["event_id"]:
                raise broken(f"line {number}: event_id {record['event_id']!r}")
            if record["event_time"][:10] != match["dt"]:
                raise broken(f"line {number}: event_time {record['event_time']} outside dt={match['dt']}")
            if record["outcome"] not in ("success", "failure", None):
                raise broken(f"line {number}: outcome {record['outcome']!r}")
            records.append({**record, "_canonical": _canonical(raw)})  # compared by content, each tick
        stated = obj.get("Metadata", {}).get("records")
        if stated != str(len(records)):
            raise broken(f"metadata says {stated} records, the object holds {len(records)}")
        return records

    def check(self, *, final: bool = False) -> None:
        """Every invariant, for every vendor (with `final`: the archive must equal the ground truth)."""
        streams = self._streams()
        records = self._archive(listing=final or self.tick % 8 == 0)
        for world in self.worlds:
            self._check_vendor(world, streams[world.vendor], records[world.vendor], final=final)
        self.report.checks += len(self.worlds)

    def _check_vendor(self, world: VendorWorld, streams: dict[str, dict[str, Any]], records: list[dict[str, Any]],
                      *, final: bool) -> None:
        vendor = world.vendor
        truth = world.simulator.ground_truth()
        # canonical content -> its truth keys: byte-identical events (ClickUp's id-less rows, e.g. repeated failed
        # logins in one millisecond) are as many events as copies, so the archive is compared as a multiset.
        expected: dict[str, list[str]] = {}
        for truth_key, event in truth.items():
            if truth_key not in world.canonical:  # events are immutable once captured
                world.canonical[truth_key] = _canonical(event)
                world.placement[truth_key] = (world.stream_of(event), world.time_of(event))
            expected.setdefault(world.canonical[truth_key], []).append(truth_key)
        archived = Counter(r["_canonical"] for r in records)
        twice = [c for c, n in archived.items() if n > len(expected.get(c, ())) > 0]
        if twice:
            raise InvariantBroken("exactly once", vendor, f"{len(twice)} events archived twice, e.g. {twice[0][:160]}")
        ids = Counter(r["event_id"] for r in records)
        if any(n > 1 for n in ids.values()):
            raise InvariantBroken("exactly once", vendor, f"event_id twice: {[i for i, n in ids.items() if n > 1][:5]}")
        unexpected = [c for c in archived if c not in expected]
        if unexpected:
            raise InvariantBroken("only ground truth", vendor, f"{len(unexpected)} records are no vendor event, "
                                                               f"e.g. {unexpected[0][:160]}")
        for key, item in streams.items():
            if not item.get("done_until"):
                continue
            done_until = parse_time(item["done_until"])
            previous = world.done_until.get(key)
            if previous is not None and done_until < previous:
                raise InvariantBroken("done_until never decreases", vendor,
                                      f"{key}: {timeutil.to_iso(previous)} -> {item['done_until']}")
            ceiling = (self.clocks.engine_max or self.clocks.engine_now()) - self.lag
            if done_until > ceiling:
                raise InvariantBroken("done_until within the closed past", vendor,
                                      f"{key}: {item['done_until']} > {timeutil.to_iso(ceiling)}")
            world.done_until[key] = done_until
        missing = [(world.placement[truth_key], canonical) for canonical, truth_keys in expected.items()
                   for truth_key in truth_keys[archived[canonical]:]]
        for (stream, moment), canonical in missing:
            if stream in world.done_until and moment < world.done_until[stream] - self.overlap:
                raise InvariantBroken("nothing before done_until - overlap is missing", vendor,
                                      f"{stream}: event at {timeutil.to_iso(moment)} (done_until "
                                      f"{timeutil.to_iso(world.done_until[stream])}) not archived: {canonical[:160]}")
        self._check_leases(world, streams, final=final)
        if final:
            if missing:
                raise InvariantBroken("archive == ground truth", vendor, f"{len(missing)} of {len(truth)} events "
                                                                         "missing after catching up")
            self.report.events_checked += len(truth)

    def _check_leases(self, world: VendorWorld, streams: dict[str, dict[str, Any]], *, final: bool) -> None:
        for key, item in streams.items():
            owner = item.get("lease_owner")
            if owner is None:
                continue
            if final:
                raise InvariantBroken("no lease after the end", world.vendor, f"{key} still leased to {owner}")
            request_id = str(owner).rpartition("/")[0]
            invocation = self.chaos.orphaning.get(request_id)
            if invocation is None:
                raise InvariantBroken("no lease left by a run that ended", world.vendor,
                                      f"{key} is leased to {owner}, whose run ended without dying")
            # README: a lease lasts for the invocation plus the grace.
            expires = int(item["lease_expires"])
            if expires > invocation.lease_bound():
                raise InvariantBroken("a dead run's lease expires", world.vendor,
                                      f"{key}: lease of {owner} until {expires}, after the end of its invocation "
                                      f"and the grace ({invocation.lease_bound()})")


def _vendor_of(key: str) -> str:
    match = OBJECT_KEY.match(key)
    return match["vendor"] if match else key


def _canonical(event: Any) -> str:
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@contextmanager
def _quiet() -> Iterator[None]:
    logger = logging.getLogger("auditlake")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="No application metrics to publish")
            yield
    finally:
        logger.setLevel(level)


def run(seed: int, ticks: int = 25, vendors: list[str] | tuple[str, ...] | None = None) -> Report:
    """One chaos run: `ticks` ticks with faults, then clean ticks until caught up; the Report says what failed."""
    chosen = tuple(vendors or VENDORS)
    unknown = [v for v in chosen if v not in VENDORS]
    if unknown:
        raise ValueError(f"unknown vendors {unknown}; known: {list(VENDORS)}")
    report = Report(seed=seed, ticks=ticks, vendors=chosen)
    started = time.perf_counter()
    jitter_state = random.getstate()
    random.seed(seed)  # the HTTP client's retry jitter, so a seed replays exactly
    try:
        with _quiet(), LocalStack.start() as stack:
            chaos_run = _Run(seed, ticks, chosen, stack, report)
            try:
                with _patched(chaos_run.chaos, chaos_run.clocks):
                    chaos_run.seed_history()
                    try:
                        for _ in range(ticks):
                            chaos_run.chaos_tick()
                        chaos_run.finish()
                    except InvariantBroken as broken:
                        recent = "\n    ".join(chaos_run.journal[-40:])
                        report.failure = f"tick {chaos_run.tick}: {broken}\n  recent:\n    {recent}"
                    for world in chaos_run.worlds:
                        report.faults.update({f"http:{fault.value}": n
                                              for fault, n in world.simulator.faults.injected.items()})
            finally:
                chaos_run.close()
    finally:
        random.setstate(jitter_state)
    report.seconds = time.perf_counter() - started
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A seeded chaos run over the collectors (see the module doc).")
    parser.add_argument("--seeds", type=int, default=20, help="how many seeds to sweep")
    parser.add_argument("--first", type=int, default=1, help="the first seed of the sweep")
    parser.add_argument("--seed", type=int, action="append", help="run only this seed (repeatable): a replay")
    parser.add_argument("--ticks", type=int, default=40, help="ticks with faults per seed")
    parser.add_argument("--vendor", action="append", choices=list(VENDORS), help="repeatable; default: all")
    parser.add_argument("--verbose", action="store_true", help="print the journal of a failing seed")
    args = parser.parse_args(argv)
    seeds = args.seed or list(range(args.first, args.first + args.seeds))
    failed: list[Report] = []
    totals: Counter[str] = Counter()
    for seed in seeds:
        report = run(seed, args.ticks, args.vendor)
        print(report.line(), flush=True)
        totals.update(report.faults)
        if not report.ok:
            failed.append(report)
            assert report.failure is not None
            text = report.failure if args.verbose else report.failure.split("\n  recent:")[0]
            print(f"  FAILED seed {seed}: {text}\n  replay: {report.replay} --verbose", flush=True)
    print(f"{len(seeds) - len(failed)}/{len(seeds)} seeds passed; faults injected: "
          + " ".join(f"{kind}={n}" for kind, n in sorted(totals.items())))
    for report in failed:
        print(f"failing seed {report.seed}: {report.replay}")
    return 1 if failed else 0


if __name__ == "__main__":
    with suppress(KeyboardInterrupt):
        sys.exit(main())
