"""What collection costs in HTTP requests, for every vendor: a clean backfill takes exactly the fewest requests its
paging allows (tests/worlds.py says what that is per vendor), and a tick that finds nothing new takes one request per
stream, writes nothing to S3 and takes the lease and releases it, even when its UTC day already holds thousands of
events."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from conftest import Clock, check_archive
from worlds import PAGE, VENDORS, World, pages_then_empty_page, pages_then_end, world_of

from auditlake.timeutil import parse_time
from auditlake_local.simulators import clickup
from auditlake_local.stack import LocalStack

ONE_PART = {"MAX_OBJECT_EVENTS": "10000"}
SEQUENTIAL = {"FETCH_CONCURRENCY": "1"}


@pytest.fixture(params=VENDORS)
def world(request: pytest.FixtureRequest, stack: LocalStack, clock: Clock, pauses: Any) -> Iterator[World]:
    with world_of(request.param, stack, clock.now) as vendor_world:
        yield vendor_world


@pytest.mark.parametrize("events", [0, 99, 100, 101, 2500])
def test_a_clean_backfill_takes_the_fewest_requests(events: int, stack: LocalStack, world: World,
                                                    clock: Clock) -> None:
    """Read with one query at a time; test_slices_cost_at_most_their_end_requests reads the same in slices."""
    now = clock.now()
    world.seed(events, now - timedelta(days=4), now - timedelta(minutes=10), seed=events + 1)

    summary = stack.invoke(world.function_id, environment={**ONE_PART, **SEQUENTIAL})

    assert summary["status"] == "ok", "one invocation collects it all"
    assert summary["http"]["requests"] == world.backfill_requests()
    if world.vendor == "make":  # the page that reaches pg.totalCount ends the window: no request to confirm it
        full = max(0, events - PAGE)
        # After the first page, each brings at most 98 new entries (one proves the offset, one at least is re-read).
        assert summary["http"]["requests"] >= 1 + -(-full // 98)
    if world.vendor == "asana":  # only an empty page ends the window
        assert summary["http"]["requests"] == pages_then_empty_page(events)
    if world.vendor == "ashby":  # moreDataAvailable: false ends it, after a full last page on an empty page
        assert summary["http"]["requests"] == pages_then_end(events)
    result = check_archive(stack, world.vendor, world.simulator.ground_truth())
    assert (result.events, result.archived, result.missing, result.duplicates) == (events, events, 0, 0)


@pytest.mark.parametrize("events", [0, 99, 2500, 20_000])
def test_slices_cost_at_most_their_end_requests(events: int, stack: LocalStack, world: World, clock: Clock) -> None:
    """Read in slices, several at once (the default): each slice may end on a short page of its own and, where only
    an empty page ends a query (Asana), on one request more; beyond those, no request is spent."""
    now = clock.now()
    world.seed(events, now - timedelta(days=4), now - timedelta(minutes=10), seed=events + 1)
    summary = stack.invoke(world.function_id, environment=ONE_PART)
    assert summary["status"] == "ok", "one invocation collects it all"
    slices = sum(stream["slices_read"] for stream in summary["streams"])
    assert slices >= world.streams
    spare = 2 * (slices - world.streams)
    if world.vendor == "make":
        # Each slice after the first also re-reads the UTC day before its start (its days' zone is not
        # documented): a day of entries, against the four days a slice spans at least.
        spare += world.backfill_requests() // 4 * (slices - world.streams)
    assert summary["http"]["requests"] <= world.backfill_requests() + spare
    result = check_archive(stack, world.vendor, world.simulator.ground_truth())
    assert (result.events, result.archived, result.missing, result.duplicates) == (events, events, 0, 0)


def test_an_idle_tick_on_a_busy_day_is_one_request_per_stream(stack: LocalStack, world: World, clock: Clock) -> None:
    """2,500 events earlier in the UTC day the next window starts in, 30 inside its overlap. (With an empty overlap,
    test_exactly_once checks the idle tick of every vendor.)"""
    now = clock.now()
    now = now.replace(hour=20, minute=0, second=0, microsecond=0) - (timedelta(days=1) if now.hour < 20 else
                                                                      timedelta(0))
    clock.advance(now - clock.now())
    midnight = now.replace(hour=0)
    world.seed(2500, midnight, now - timedelta(minutes=20), seed=3)  # the UTC day the next window starts in
    world.seed(30, now - timedelta(minutes=9), now - timedelta(minutes=4), seed=4)  # read again by the overlap
    assert stack.invoke(world.function_id)["status"] == "ok"
    clock.advance()

    idle = stack.invoke(world.function_id)

    assert idle["status"] == "ok"
    if world.vendor == "asana":
        # The overlap's events come on a page of their own, and only an empty page says the stream is caught up.
        assert idle["http"]["requests"] == 2
    elif world.vendor == "clickup":
        # A class with rows in the window: one page, shorter than the largest page served (learnt in the first
        # tick), so it holds them all; then the empty page below it that proves it. A class without: one empty page.
        assert idle["http"]["requests"] == world.streams + len({
            clickup.applicability_of(row["eventType"]) for row in world.simulator.ground_truth().values()
            if parse_time(row["startTime"]) >= now - timedelta(minutes=9)})
    else:
        assert idle["http"]["requests"] == world.streams
    assert idle["s3"]["objects"] == 0
    assert idle["dynamodb_operations"] == 2 * world.streams  # per stream: take the lease; commit and release
    assert sum(stream["duplicates_skipped"] for stream in idle["streams"]) == 30
    assert sum(stream["out_of_window"] for stream in idle["streams"]) == 0, "nothing before the window is read"
    result = check_archive(stack, world.vendor, world.simulator.ground_truth())
    assert (result.events, result.missing, result.duplicates) == (2530, 0, 0)
