"""A rate-limited backfill measured on virtual time: `python -m auditlake_local.bench_pacing [--vendor asana ...]`.

The vendor's simulator enforces the vendor's limit while one collector catches up on a backlog, invoked back to
back as `auditlake backfill` does, in-process on the template's resources (moto). Time is virtual: the simulator's
clock, the engine's clock, the HTTP client's monotonic clock and waits, and the Lambda context's remaining time all
advance together, only when the collector waits. Requests take no virtual time at all, the hardest case for a pacer:
nothing but its own waits keeps it under the limit.

Reported: requests sent, virtual minutes, the requests per minute the vendor accepted against its limit, 429s
received, and the archive checked exactly once against the simulator's ground truth.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import auditlake_vendors
from auditlake import http, timeutil
from auditlake_local.simulators import SimulatorAdapter
from auditlake_local.stack import LambdaContext, LocalStack
from auditlake_local.vendors import VENDORS, LocalVendor

# One query at a time: on virtual time, requests take no time, so slices read at once (whose point is to overlap
# the vendor's latency) would only interleave their waits. Throughput at real latency is bench.py's latency table.
QUIET = {"LOG_LEVEL": "WARNING", "POWERTOOLS_METRICS_DISABLED": "true", "FETCH_CONCURRENCY": "1"}

# Pacing depends on how many requests are sent, not on how many events each carries: ten events a page (a documented
# setting, PAGE_SIZE) make a three-minute backfill at 1,500 requests/min cost 45,000 events of CPU instead of 450,000.
PAGE_SIZE = 10

# The limit each simulator enforces, per minute: the one its adapter believes (Asana's and Make's documented limits,
# Ashby's assumed one, as Ashby documents none), except ClickUp's, its Business Plus limit of 1,000 and not
# Enterprise's 10,000: at 10,000/min a few minutes are millions of events; the collector believes 10,000 and must
# learn 1,000 from X-RateLimit-Limit.
ENFORCED_PER_MINUTE = {"clickup": 1000}


def enforced_limit(vendor: str) -> int:
    limit = ENFORCED_PER_MINUTE.get(vendor) or auditlake_vendors.adapter(vendor).rate_limit_per_minute
    if limit is None:
        raise ValueError(f"{vendor}'s adapter documents no rate limit: give the benchmark one to enforce")
    return limit


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--vendor", action="append", choices=list(VENDORS), help="repeatable; default: all")
    args = parser.parse_args(argv)
    reports = [rate_limited_backfill(VENDORS[name], args.minutes) for name in args.vendor or VENDORS]
    columns = list(reports[0])
    print(" ".join(f"{c:>20}" for c in columns))
    for report in reports:
        print(" ".join(f"{report[c]!s:>20}" for c in columns))


@dataclass
class VirtualTime:
    """Seconds since the run began; they pass only when the collector waits."""

    origin: datetime
    elapsed: float = 0.0

    def now(self) -> datetime:
        return self.origin + timedelta(seconds=self.elapsed)

    def monotonic(self) -> float:
        return self.elapsed

    def pause(self, seconds: float) -> None:
        self.elapsed += max(0.0, seconds)

    def context(self, function_name: str, timeout_seconds: float) -> LambdaContext:
        """A Lambda context whose remaining time runs on this clock from now."""
        started = self.elapsed
        return LambdaContext(function_name=function_name, timeout_seconds=timeout_seconds,
                             remaining_ms=lambda: int((timeout_seconds - (self.elapsed - started)) * 1000))


@contextmanager
def on_virtual_time(clock: VirtualTime) -> Iterator[None]:
    """The engine's clock and the HTTP client's clock and waits, replaced for the duration."""
    saved: tuple[Callable[[], datetime], Callable[[float], None], Callable[[], float]] = (
        timeutil.now, http.pause, http.monotonic)
    timeutil.now, http.pause, http.monotonic = clock.now, clock.pause, clock.monotonic
    try:
        yield
    finally:
        timeutil.now, http.pause, http.monotonic = saved


def events_for(vendor: str, requests: int, page_size: int) -> int:
    """Events whose backfill takes about `requests` requests of `page_size` events. Make's and ClickUp's pages
    each start on the last row already read, so they bring one new row fewer."""
    per_request = page_size - 1 if vendor in ("make", "clickup") else page_size
    return requests * per_request


def rate_limited_backfill(local: LocalVendor, minutes: float = 3, *, enforced_per_minute: int | None = None,
                          page_size: int = PAGE_SIZE, environment: dict[str, str] | None = None,
                          stack: LocalStack | None = None, max_invocations: int = 50) -> dict[str, Any]:
    """Backfills enough events to keep the collector busy `minutes` virtual minutes at the limit, against a
    simulator that enforces `enforced_per_minute` (default: enforced_limit()). `environment` adds to the
    collector's (e.g. RATE_LIMIT_PER_MINUTE). `stack`: an already started one whose archive and state hold
    nothing of this vendor yet (default: a stack of its own)."""
    started, cpu_started = time.perf_counter(), time.process_time()
    limit = enforced_per_minute or enforced_limit(local.vendor)
    clock = VirtualTime(datetime.now(UTC).replace(microsecond=0))
    simulator = local.start(clock.now)
    simulator.rate_limit_per_minute = limit  # type: ignore[attr-defined]  # every simulator has the knob
    events = events_for(local.vendor, round(minutes * limit), page_size)
    now = clock.now()
    simulator.add_events(local.generate_events(events, now - timedelta(days=20), now - timedelta(minutes=10), 7))
    origin = f"https://{local.vendor}.pacing"
    summaries: list[dict[str, Any]] = []
    with (nullcontext(stack) if stack else LocalStack.start()) as local_stack, on_virtual_time(clock):
        session = http.shared_session()
        session.mount(f"{origin}/", SimulatorAdapter(simulator))
        local_stack.put_secret(local.function_id, local.secret(origin))
        try:
            function = local_stack.functions[local.function_id]
            for _ in range(max_invocations):
                context = clock.context(local_stack.refs[local.function_id], function.timeout)
                summary = local_stack.invoke(local.function_id, context=context,
                                       environment={**QUIET, "PAGE_SIZE": str(page_size), **(environment or {})})
                summaries.append(summary)
                if summary["status"] == "ok":
                    break
            else:
                raise RuntimeError(f"{local.vendor}: not caught up after {max_invocations} invocations")
        finally:
            session.adapters.pop(f"{origin}/", None)
        archived = Counter(_canonical(json.loads(r["raw"])) for r in local_stack.archived_records(local.vendor))
    truth = Counter(_canonical(event) for event in simulator.ground_truth().values())
    stats = simulator.stats()
    virtual_minutes = clock.elapsed / 60
    accepted = stats["requests"] - stats["rate_limited"]
    achieved = accepted / virtual_minutes if virtual_minutes else 0.0
    return {
        "vendor": local.vendor,
        "limit_per_minute": limit,
        "requests": stats["requests"],
        "virtual_minutes": round(virtual_minutes, 2),
        "achieved_per_minute": round(achieved),
        "share_of_limit": round(achieved / limit, 3),
        "throttled_429s": stats["rate_limited"],
        "invocations": len(summaries),
        "events": len(truth),
        "missing": sum((truth - archived).values()),
        "duplicates": sum((archived - truth).values()),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "cpu_seconds": round(time.process_time() - cpu_started, 1),
    }


def _canonical(event: Any) -> str:
    return json.dumps(event, sort_keys=True, separators=(",", ":"))


if __name__ == "__main__":
    main()
