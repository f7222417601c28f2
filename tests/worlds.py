"""One vendor's world for the scenarios every collector must pass: its simulator wired into the stack's HTTP
session, its secret in place, and what that vendor's paging costs at best.

The scenarios (test_exactly_once.py) are written once and run against every world; what differs between vendors
is stated here, next to the vendor's name, and nowhere in the scenarios.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from auditlake import http
from auditlake_local.simulators import SimulatorAdapter, VendorSimulator, clickup
from auditlake_local.stack import LocalStack
from auditlake_local.vendors import VENDORS as LOCAL_VENDORS
from auditlake_local.vendors import LocalVendor

PAGE = 100  # the collectors' default page size


@dataclass(frozen=True)
class Traits:
    """What the scenarios need to know of a vendor's API."""

    streams: int  # streams per invocation
    cursors_expire: bool  # whether the vendor's paging cursors can expire at all
    says_when_to_retry: bool  # whether its 429 carries Retry-After or a reset time
    # HTTP requests a clean backfill of the simulator's current events takes: (at least, at most). Equal for
    # every vendor whose paging is fully determined by the event count.
    backfill_requests: Callable[[VendorSimulator], tuple[int, int]]
    # HTTP requests of a tick that finds nothing new.
    idle_requests: Callable[[VendorSimulator], int]


def pages_then_end(events: int) -> int:
    """Full pages, then the short (or empty) page that ends the window."""
    return events // PAGE + 1


def pages_overlapping_by_one(events: int) -> int:
    """Pages that each start on the last row already read (Make: to detect shifted offsets; ClickUp: to re-read
    the boundary millisecond): one page of 100, then 99 new rows a page, until a short page."""
    return 1 if events < PAGE else 2 + (events - PAGE) // (PAGE - 1)


def make_idle_requests(simulator: VendorSimulator) -> int:
    """An idle Make tick re-reads the whole UTC day its window starts in (`dateFrom` is a day), from offset 0.
    The idle tick's window starts one tick, the lag and the overlap before now."""
    start = simulator.now() - timedelta(minutes=5) - timedelta(seconds=120) - timedelta(seconds=600)
    day = datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp() * 1000
    return pages_overlapping_by_one(sum(e["triggeredAt"] >= day for e in simulator.ground_truth().values()))


def exactly(requests: int) -> tuple[int, int]:
    return requests, requests


def clickup_backfill_requests(simulator: VendorSimulator) -> tuple[int, int]:
    """ClickUp: six classes, each paged newest first by timestamp. Each page after the first re-reads its
    boundary millisecond (inclusive or exclusive `pageTimestamp` is undocumented), so it brings at most 99 new
    rows, fewer where a burst of same-millisecond rows sits on the boundary (about 5% of generated rows)."""
    per_class = Counter(clickup.applicability_of(row.get("eventType")) for row in simulator.ground_truth().values())
    least = sum(pages_overlapping_by_one(per_class[name]) for name in clickup.APPLICABILITIES)
    most = sum(per_class[name] // 90 + 2 for name in clickup.APPLICABILITIES)
    return least, most


TRAITS: dict[str, Traits] = {
    # Asana's stream never ends by itself: the window ends on an empty page after the last full one.
    "asana": Traits(streams=1, cursors_expire=True, says_when_to_retry=True,
                    backfill_requests=lambda sim: exactly(pages_then_end(len(sim.ground_truth()))),
                    idle_requests=lambda sim: 1),
    # Ashby's last page says it is the last (no nextCursor): no extra request finds the end.
    "ashby": Traits(streams=1, cursors_expire=True, says_when_to_retry=True,
                    backfill_requests=lambda sim: exactly(max(1, -(-len(sim.ground_truth()) // PAGE))),
                    idle_requests=lambda sim: 1),
    "clickup": Traits(streams=len(clickup.APPLICABILITIES), cursors_expire=False, says_when_to_retry=True,
                      backfill_requests=clickup_backfill_requests, idle_requests=lambda sim: 6),
    # Make pages by offset (no cursor to expire) and documents no rate-limit header.
    "make": Traits(streams=1, cursors_expire=False, says_when_to_retry=False,
                   backfill_requests=lambda sim: exactly(pages_overlapping_by_one(len(sim.ground_truth()))),
                   idle_requests=make_idle_requests),
}
VENDORS = list(TRAITS)


@dataclass
class World:
    local: LocalVendor
    simulator: VendorSimulator
    traits: Traits

    @property
    def vendor(self) -> str:
        return self.local.vendor

    @property
    def function_id(self) -> str:
        return self.local.function_id

    @property
    def token(self) -> str:
        return self.local.token

    @property
    def streams(self) -> int:
        return self.traits.streams

    def seed(self, count: int, start: datetime, end: datetime, seed: int, *, published: bool = True) -> None:
        self.simulator.add_events(self.local.generate_events(count, start, end, seed), published=published)

    def backfill_requests(self) -> tuple[int, int]:
        return self.traits.backfill_requests(self.simulator)

    def idle_requests(self) -> int:
        return self.traits.idle_requests(self.simulator)


@contextmanager
def world_of(vendor: str, stack: LocalStack, now: Callable[[], datetime]) -> Iterator[World]:
    """The vendor's simulator mounted at `https://<vendor>.test/`, and its collector's secret pointing there."""
    local = LOCAL_VENDORS[vendor]
    world = World(local, local.start(now), TRAITS[vendor])
    origin = f"https://{vendor}.test"
    session = http.shared_session()
    session.mount(f"{origin}/", SimulatorAdapter(world.simulator))
    stack.put_secret(local.function_id, local.secret(origin))
    try:
        yield world
    finally:
        session.adapters.pop(f"{origin}/", None)
