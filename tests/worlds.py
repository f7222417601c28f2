"""One vendor's world for the scenarios every collector must pass: its simulator wired into the stack's HTTP
session, its secret in place, and what that vendor's paging costs at best.

The scenarios (test_exactly_once.py) are written once and run against every world; what differs between vendors
is stated here, next to the vendor's name, and nowhere in the scenarios.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from auditlake import http
from auditlake_local.simulators import SimulatorAdapter, VendorSimulator
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
    # HTTP requests a clean backfill of the simulator's current events needs at the least.
    minimum_requests: Callable[[VendorSimulator], int]
    # HTTP requests of a tick that finds nothing new.
    idle_requests: Callable[[VendorSimulator], int]


def pages_then_end(events: int) -> int:
    """Full pages, then the short (or empty) page that ends the window."""
    return events // PAGE + 1


TRAITS: dict[str, Traits] = {
    # Asana's stream never ends by itself: the window ends on an empty page after the last full one.
    "asana": Traits(streams=1, cursors_expire=True, says_when_to_retry=True,
                    minimum_requests=lambda sim: pages_then_end(len(sim.ground_truth())),
                    idle_requests=lambda sim: 1),
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

    def minimum_requests(self) -> int:
        return self.traits.minimum_requests(self.simulator)

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
