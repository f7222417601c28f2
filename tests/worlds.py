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
from auditlake.timeutil import parse_event_time, to_millis
from auditlake_local.simulators import SimulatorAdapter, VendorSimulator, clickup, make
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
    # HTTP requests a clean backfill of the simulator's current events takes, exactly: the fewest the vendor's
    # paging allows.
    backfill_requests: Callable[[VendorSimulator], int]
    # HTTP requests of a tick that finds nothing new (and nothing in its overlap): one per stream.
    idle_requests: int


def pages_then_end(events: int) -> int:
    """Full pages, then the short (or empty) page that ends the window."""
    return events // PAGE + 1


def pages_then_empty_page(events: int) -> int:
    """Every page that holds events, then the empty page that says the stream is caught up."""
    return -(-events // PAGE) + 1


def keyset_pages(times_newest_first: list[int]) -> int:
    """Pages of a walk by timestamp, newest first, PAGE rows a page, until a short page. Each page after the first
    starts at the first row of the millisecond the page before ended in: that millisecond's other rows may not
    have fit, and whether a row at pageTimestamp is served is undocumented, so the millisecond is read again and
    each page after the first repeats at least one row."""
    pages, position = 0, 0
    while True:
        pages += 1
        page = times_newest_first[position: position + PAGE]
        if len(page) < PAGE:
            return pages
        restart = times_newest_first.index(page[-1], position)
        if restart == position:
            raise ValueError("a millisecond holds a whole page; the walk then asks for larger pages")
        position = restart


def clickup_backfill_requests(simulator: VendorSimulator) -> int:
    """ClickUp: six classes, each walked newest first by timestamp (`keyset_pages`); bursts of rows sharing a
    millisecond at a page boundary are read again whole."""
    per_class: dict[str, list[int]] = {name: [] for name in clickup.APPLICABILITIES}
    for row in simulator.ground_truth().values():
        start = row["startTime"]  # ISO 8601, or epoch ms with the simulator's `time_format="epoch_ms"`
        millis = start if isinstance(start, int) else round(datetime.fromisoformat(start).timestamp() * 1000)
        per_class[clickup.applicability_of(row.get("eventType"))].append(millis)
    return sum(keyset_pages(sorted(times, reverse=True)) for times in per_class.values())


def make_backfill_requests(simulator: VendorSimulator) -> int:
    """Make: offset pages over one query, ascending by triggeredAt, until offset + rows reaches pg.totalCount. The
    first page asks for PAGE entries; each next one starts one entry before the first entry of the previous page's
    last instant (that entry proves the offset whatever order ties come in, and the instant is read whole again)
    and asks for PAGE + 1, which the default cap serves as 100 and echoes, so from then on it asks for 100: a page
    brings 99 - (entries of its last instant) new ones. With the default `page_cap`/`total_count` (or no cap)."""
    assert isinstance(simulator, make.MakeSimulator)
    if simulator.page_cap not in ("silent", "none") or not simulator.total_count:
        raise ValueError("counted for a silent cap or none, with pg.totalCount")
    times = sorted(to_millis(parse_event_time(event["triggeredAt"], "triggeredAt"))
                   for event in simulator.ground_truth().values())
    cap = simulator.max_limit if simulator.page_cap == "silent" else None
    requests, at, served = 0, 0, None
    while True:
        requests += 1
        sentinel = 1 if at else 0
        ask = PAGE + sentinel if served is None else min(PAGE + sentinel, served)
        rows = ask if cap is None else min(ask, cap)
        if rows < ask:
            served = rows  # echoed: never asked for more again
        fresh = times[at: at - sentinel + rows]
        if at + len(fresh) >= len(times):
            return requests
        older = fresh.index(fresh[-1])
        if older == 0:
            raise ValueError("one instant fills a page; the collector then asks for larger pages")
        at += older


TRAITS: dict[str, Traits] = {
    # Asana's stream never ends by itself: the window ends on an empty page (a short page is not documented as the
    # end).
    "asana": Traits(streams=1, cursors_expire=True, says_when_to_retry=True,
                    backfill_requests=lambda sim: pages_then_empty_page(len(sim.ground_truth())), idle_requests=1),
    # Ashby's last page says it is the last (no nextCursor): no extra request finds the end.
    "ashby": Traits(streams=1, cursors_expire=True, says_when_to_retry=True,
                    backfill_requests=lambda sim: max(1, -(-len(sim.ground_truth()) // PAGE)), idle_requests=1),
    # ClickUp: above events // 100 + 1 per class, since its keyset re-reads each page's boundary millisecond and
    # no page larger than 100 rows is known to be honoured (the adapter's docstring).
    "clickup": Traits(streams=len(clickup.APPLICABILITIES), cursors_expire=False, says_when_to_retry=True,
                      backfill_requests=clickup_backfill_requests, idle_requests=len(clickup.APPLICABILITIES)),
    # Make pages by offset (no cursor to expire) and documents no rate-limit header. Pages overlap by the last
    # instant and one entry (`make_backfill_requests`); the window ends on the page that reaches pg.totalCount, and
    # a window starts where the last one left a hint.
    "make": Traits(streams=1, cursors_expire=False, says_when_to_retry=False,
                   backfill_requests=make_backfill_requests, idle_requests=1),
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

    def backfill_requests(self) -> int:
        return self.traits.backfill_requests(self.simulator)

    def idle_requests(self) -> int:
        return self.traits.idle_requests


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
