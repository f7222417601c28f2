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
from typing import Any

from auditlake import http
from auditlake_local.simulators import SimulatorAdapter, VendorSimulator, asana
from auditlake_local.stack import LocalStack

PAGE = 100  # the collectors' default page size


@dataclass
class World:
    vendor: str
    function_id: str
    token: str
    simulator: VendorSimulator
    generate: Callable[..., list[dict[str, Any]]]
    streams: int  # streams per invocation
    cursors_expire: bool  # whether the vendor's paging cursors can expire at all
    says_when_to_retry: bool  # whether its 429 carries Retry-After or a reset time
    # HTTP requests a clean backfill of the simulator's current events needs at the least.
    minimum_requests: Callable[[], int]
    # HTTP requests of a tick that finds nothing new (None: one per stream).
    idle_requests_hint: Callable[[], int] | None = None

    def idle_requests(self) -> int:
        return self.idle_requests_hint() if self.idle_requests_hint else self.streams

    def seed(self, count: int, start: datetime, end: datetime, seed: int, *, published: bool = True) -> None:
        self.simulator.add_events(self.generate(count, start, end, seed), published=published)


def _pages_then_end(events: int) -> int:
    """Full pages, then the short (or empty) page that ends the window."""
    return events // PAGE + 1


def _asana(stack: LocalStack, now: Callable[[], datetime]) -> tuple[World, str, dict[str, str]]:
    token, workspace = "asana-sa-token-4f1d0c9e7b2a", "1200000000000001"
    simulator = asana.AsanaSimulator(token=token, workspace_gid=workspace, now=now)
    world = World("asana", "AsanaCollector", token, simulator, asana.generate_events, streams=1, cursors_expire=True,
                  says_when_to_retry=True,
                  # Asana's stream never ends by itself: an empty page after the last full one.
                  minimum_requests=lambda: _pages_then_end(len(simulator.ground_truth())))
    return world, "https://asana.test/", {"token": token, "workspace_gid": workspace,
                                          "base_url": "https://asana.test/api/1.0"}


BUILDERS: dict[str, Callable[[LocalStack, Callable[[], datetime]], tuple[World, str, dict[str, str]]]] = {
    "asana": _asana,
}
VENDORS = list(BUILDERS)


@contextmanager
def world_of(vendor: str, stack: LocalStack, now: Callable[[], datetime]) -> Iterator[World]:
    world, mount, secret = BUILDERS[vendor](stack, now)
    session = http.shared_session()
    session.mount(mount, SimulatorAdapter(world.simulator))
    stack.put_secret(world.function_id, secret)
    try:
        yield world
    finally:
        session.adapters.pop(mount, None)
