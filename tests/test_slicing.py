"""Windows read in slices, several at once (slicing.py): exactly once under every quirk the vendors' docs allow, across
crashes that leave several slices open, from a state written before slices, at real concurrency on a socket, and
within DynamoDB's item size.

The vendors' own test modules read one query at a time (they place quirks at the Nth request); here the same quirks
are read in slices.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from conftest import Clock, check_archive, verify_archive
from worlds import World, world_of

from auditlake import http, slicing
from auditlake.archive import Archive, window_id
from auditlake.settings import Settings
from auditlake.state import Kind, SliceState, StateStore, StreamKey, StreamState, WindowState, _to_item
from auditlake.vendor import VendorAdapter
from auditlake_local.simulators import Latency, serve
from auditlake_local.stack import LocalStack
from auditlake_local.vendors import VENDORS as LOCAL_VENDORS
from auditlake_vendors import adapter

SLICED = {"FETCH_CONCURRENCY": "8", "MAX_OBJECT_EVENTS": "300"}

# The quirks each simulator offers beyond its defaults (which are already the least friendly the docs allow).
QUIRKS: list[tuple[str, dict[str, Any]]] = [
    ("asana", {}),
    ("asana", {"null_next_page": "on_last_page"}),
    ("asana", {"null_next_page": "on_every_page"}),
    ("ashby", {}),
    ("ashby", {"start_inclusive": True, "end_inclusive": False}),
    ("ashby", {"more_data_when_full": False}),
    ("clickup", {}),
    ("clickup", {"page_timestamp_inclusive": True, "start_time_inclusive": True, "end_time_inclusive": False}),
    ("clickup", {"max_page_rows": 40, "time_format": "epoch_ms"}),
    ("make", {}),
    ("make", {"max_limit": 50, "total_count": False}),
    ("make", {"date_to_inclusive": True, "tie_order": "stable", "time_format": "epoch_ms"}),
]


def catch_up(stack: LocalStack, world: World, clock: Clock, environment: dict[str, str],
             ticks: int = 20) -> list[dict[str, Any]]:
    summaries = []
    for _ in range(ticks):
        summaries.append(stack.invoke(world.function_id, environment=environment))
        if summaries[-1]["status"] == "ok":
            return summaries
        clock.advance()
    raise AssertionError(f"not caught up after {ticks} ticks")


def assert_exactly_once(stack: LocalStack, world: World) -> None:
    result = check_archive(stack, world.vendor, world.simulator.ground_truth())
    assert result.events > 0
    assert (result.missing, result.duplicates, result.unexpected) == (0, 0, 0), result
    report = verify_archive(stack)
    assert report.clean, "\n".join(f.line() for f in report.findings)


@pytest.mark.parametrize(("vendor", "quirks"), QUIRKS, ids=[f"{v}-{'-'.join(q) or 'defaults'}" for v, q in QUIRKS])
def test_every_quirk_read_in_slices_is_archived_exactly_once(vendor: str, quirks: dict[str, Any], stack: LocalStack,
                                                            clock: Clock, pauses: Any) -> None:
    with world_of(vendor, stack, clock.now, **quirks) as world:
        now = clock.now()
        world.seed(2500, now - timedelta(days=20), now - timedelta(minutes=10), seed=7)
        world.seed(300, now - timedelta(days=3, minutes=10), now - timedelta(days=3), seed=8)  # a burst
        summaries = catch_up(stack, world, clock, SLICED)
        assert sum(s["slices_read"] for s in summaries[0]["streams"]) > world.streams, "read in slices"
        assert_exactly_once(stack, world)


class SimulatedCrash(BaseException):
    """The process dies: nothing after it is written, by any of its threads."""


def test_a_run_that_dies_with_several_slices_open_is_recovered_exactly_once(
        stack: LocalStack, clock: Clock, pauses: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    real_put, real_save = Archive.put, StateStore.save
    dead = {"after_puts": 6, "dead": False}

    def put(self: Archive, obj: Any) -> str | None:
        if dead["dead"]:
            raise SimulatedCrash("dead")
        version = real_put(self, obj)
        dead["after_puts"] -= 1
        if dead["after_puts"] == 0:
            dead["dead"] = True  # this object is written, its commit never is
            raise SimulatedCrash(obj.key)
        return version

    def save(self: StateStore, state: Any, *args: Any, **kwargs: Any) -> None:
        if dead["dead"]:
            raise SimulatedCrash("dead")
        real_save(self, state, *args, **kwargs)

    with world_of("asana", stack, clock.now) as world:
        now = clock.now()
        world.seed(6000, now - timedelta(days=80), now - timedelta(minutes=10), seed=3)
        monkeypatch.setattr(Archive, "put", put)
        monkeypatch.setattr(StateStore, "save", save)
        with pytest.raises(SimulatedCrash):
            stack.invoke(world.function_id, environment=SLICED)
        monkeypatch.setattr(Archive, "put", real_put)
        monkeypatch.setattr(StateStore, "save", real_save)
        state = StateStore(boto3.client("dynamodb"), stack.table).read(StreamKey("asana", world.local.scope[
            "workspace_gid"]))
        assert state is not None and state.window is not None and len(state.window.slices) > 1
        assert state.intents, "the dead run left a part half written"
        clock.advance(timedelta(minutes=10))  # its lease expires
        catch_up(stack, world, clock, SLICED)
        assert_exactly_once(stack, world)


def test_a_window_stored_before_slices_is_resumed_as_one_slice(stack: LocalStack, clock: Clock, pauses: Any,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """An item written before slices existed (the query bounds and cursor in the window, the intent beside it)."""
    with world_of("asana", stack, clock.now) as world:
        now = clock.now()
        world.seed(900, now - timedelta(days=2), now - timedelta(minutes=10), seed=5)
        real_put = Archive.put
        puts = {"n": 0}

        def put(self: Archive, obj: Any) -> str | None:
            puts["n"] += 1
            if puts["n"] == 2:
                raise SimulatedCrash(obj.key)  # the second part's intent is stored, its object never written
            return real_put(self, obj)

        monkeypatch.setattr(Archive, "put", put)
        with pytest.raises(SimulatedCrash):
            stack.invoke(world.function_id, environment={"FETCH_CONCURRENCY": "1", "MAX_OBJECT_EVENTS": "300"})
        monkeypatch.setattr(Archive, "put", real_put)
        dynamodb = boto3.client("dynamodb")
        key = str(StreamKey("asana", world.local.scope["workspace_gid"]))
        item = dynamodb.get_item(TableName=stack.table, Key={"stream": {"S": key}})["Item"]
        window = item["window"]["M"]
        (piece,) = window.pop("slices")["L"]
        fields = piece["M"]
        item["intent"] = fields.pop("intent")
        for name in ("read_until", "read_events", "read_seconds", "hint"):
            window.pop(name, None)
        window.update({name: value for name, value in fields.items() if name != "id"})
        dynamodb.put_item(TableName=stack.table, Item=item)
        stored = StateStore(dynamodb, stack.table).read(StreamKey("asana", world.local.scope["workspace_gid"]))
        assert stored is not None and stored.window is not None and len(stored.window.slices) == 1
        assert stored.window.slices[0].id == stored.window.id and stored.intents

        clock.advance(timedelta(minutes=10))
        catch_up(stack, world, clock, SLICED)
        assert_exactly_once(stack, world)


@pytest.fixture
def served_asana(stack: LocalStack, clock: Clock) -> Iterator[World]:
    """Asana's simulator on a real socket, answering in 20 ms: requests from several slices are in flight at once."""
    local = LOCAL_VENDORS["asana"]
    world = World(local, local.start(clock.now), None)  # type: ignore[arg-type]
    with serve(world.simulator, latency=Latency(0.02, 0.01)) as origin:
        stack.put_secret(local.function_id, local.secret(origin))
        yield world


def test_slices_are_read_at_once_over_a_real_socket(stack: LocalStack, served_asana: World, clock: Clock,
                                                    pauses: Any) -> None:
    world = served_asana
    now = clock.now()
    world.seed(20_000, now - timedelta(days=20), now - timedelta(minutes=10), seed=11)
    summary = stack.invoke(world.function_id, environment={"MAX_OBJECT_EVENTS": "2000"})
    assert summary["status"] == "ok"
    stats = world.simulator.stats()
    assert stats["peak_in_flight"] > 1, "slices are read at once"
    assert stats["peak_in_flight"] <= slicing.readers(_adapter("asana"), _settings(), {})  # Asana's readers
    assert stats.get("over_concurrency", 0) == 0
    assert_exactly_once(stack, world)
    clock.advance()
    idle = stack.invoke(world.function_id)
    assert idle["http"]["requests"] <= 2, "an idle tick reads its short window with one query"


def _client(vendor: str, limit: int | None = None) -> http.HttpClient:
    adapter_class = adapter(vendor)
    return http.HttpClient(vendor, "https://example.test", headers={}, error_details=adapter_class.error_details,
                           deadline=None,  # type: ignore[arg-type]
                           rate_limit_per_minute=limit or adapter_class.rate_limit_per_minute)


def _settings(**values: Any) -> Settings:
    return Settings(state_table="t", archive_bucket="b", kms_key_arn="k", secret_id="s", digest_signing_key_arn="d",
                    **values)


def _adapter(vendor: str, limit: int | None = None) -> VendorAdapter:
    secret = {"token": "t", "workspace_gid": "1", "workspace_id": "1", "organization_id": "1", "zone": "eu1"}
    return adapter(vendor)(secret, _client(vendor, limit), 100)


def overlap_ids(count: int) -> dict[str, int]:
    """`count` ids a live stream keeps for its overlap, 64-hex (the longest state.py assumes)."""
    return {f"{n:064x}": 1_795_864_929_791 + n for n in range(count)}


def test_readers_follow_the_pace_the_vendor_allows_and_the_room_in_the_state() -> None:
    # enough for the pace at half a second a request
    assert slicing.readers(_adapter("asana"), _settings(), {}) == 12  # 1,425/min
    assert slicing.readers(_adapter("make"), _settings(), {}) == 8  # 950/min
    # ClickUp's 10,000/min would want 80: the state item has room for 46 slices of 100-event pages, fewer beside the
    # most ids a live stream keeps for its overlap
    assert slicing.readers(_adapter("clickup"), _settings(), {}) == 46
    assert 10 <= slicing.readers(_adapter("clickup"), _settings(), overlap_ids(3000)) < 46
    assert slicing.readers(_adapter("clickup"), _settings(page_size=1000), {}) == 5
    # the operator's setting, within the same caps
    assert slicing.readers(_adapter("asana"), _settings(fetch_concurrency=1), {}) == 1
    assert slicing.readers(_adapter("asana"), _settings(fetch_concurrency=500), {}) == 46


def _window(start: datetime, end: datetime) -> WindowState:
    return WindowState(id=window_id(start, end), planned_end=end, read_until=start)


def test_a_short_window_is_read_whole_and_make_s_slices_are_whole_days() -> None:
    start = datetime(2026, 11, 1, 10, 30, tzinfo=UTC)
    asana = slicing.Slicer(_adapter("asana"), readers=12, page_size=100)
    tick = _window(start, start + timedelta(minutes=15))
    assert asana.end(start, tick) == tick.planned_end, "a scheduled tick's window is one query"
    sequential = slicing.Slicer(_adapter("asana"), readers=1, page_size=100)
    month = _window(start, start + timedelta(days=30))
    assert sequential.end(start, month) == month.planned_end
    first = asana.end(start, month)
    assert start < first < month.planned_end and first - start == timedelta(days=30) / 48
    make = slicing.Slicer(_adapter("make"), readers=32, page_size=100)
    end = make.end(start, month)  # 4 days (4 x the day it re-reads) after 10:30, cut at the next midnight
    # Make filters by day: a slice ends at a UTC midnight, and spans at least four times what its query re-reads
    assert end == datetime(2026, 11, 6, tzinfo=UTC)


def test_slices_follow_the_density_the_window_has_shown() -> None:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    month = _window(start, start + timedelta(days=30))
    slicer = slicing.Slicer(_adapter("asana"), readers=10, page_size=100)
    assert not slicer.may_plan(month, reading=1), "the second slice waits for the first page"
    day = start + timedelta(days=1)

    def days(events_a_day: int, at: datetime = day) -> float:
        month.read_events, month.read_seconds = events_a_day, 86_400
        return (slicer.end(at, month) - at) / timedelta(days=1)

    assert days(5_000) == pytest.approx(slicing.TARGET_PAGES * 100 / 5_000, abs=1e-6), "at most TARGET_PAGES pages"
    assert days(5_000, start + timedelta(days=29, hours=12)) == pytest.approx(
        slicing.FEWEST_PAGES * 100 / 5_000, abs=1e-6), "what is left shared evenly, but no fewer pages than that"
    assert days(1_000, start + timedelta(days=20)) == pytest.approx(1.0), "an even share of what is left"
    assert days(0) == pytest.approx(30 / 40), "nothing found yet: a quarter of an even share of the window"
    assert slicer.may_plan(month, reading=1)


def test_the_state_item_stays_within_dynamodb_s_limit_at_the_most_readers() -> None:
    """400 KB an item (DynamoDB's limit); each open slice with a full page of 64-hex ids, a live stream's overlap
    ids at their cap on both sides."""
    start = datetime(2026, 11, 1, tzinfo=UTC)
    for kind in (Kind.LIVE, Kind.BACKFILL):
        overlap = overlap_ids(3000) if kind is Kind.LIVE else {}
        readers = slicing.readers(_adapter("clickup"), _settings(), overlap)
        ids = iter(f"{n:064x}" for n in range(10**6, 10**7))
        slices = []
        for index in range(readers):
            begin = start + timedelta(hours=index)
            page = {next(ids) for _ in range(100)}
            slices.append(SliceState(id=window_id(begin, begin + timedelta(hours=1)), start=begin,
                                     end=begin + timedelta(hours=1), planned_end=begin + timedelta(hours=1),
                                     cursor={"before": 1795864929791, "rows": 100, "returned": {"1": sorted(page)[:3]}},
                                     frontier_time=begin, frontier_ids=set(sorted(page)[:5]), last_page_ids=page))
        window = WindowState(id=window_id(start, start + timedelta(days=2)), planned_end=start + timedelta(days=2),
                             read_until=start + timedelta(hours=readers), slices=slices, carry=dict(overlap))
        state = StreamState(key=str(StreamKey("clickup", "1:auth", kind)), version=1, done_until=start,
                            seen=dict(overlap), window=window)
        size = _item_bytes(_to_item(state))
        assert size < 360_000, (kind, readers, size)  # room left for the digest's pending objects (~16 KB)


def _item_bytes(value: Any) -> int:
    """An item's size as DynamoDB counts it, roughly: names and values, strings and binaries by their bytes."""
    if value is None:
        return 1
    if isinstance(value, bytes):
        return len(value)
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, dict):
        return 3 + sum(len(str(k)) + _item_bytes(v) for k, v in value.items())
    if isinstance(value, list):
        return 3 + sum(1 + _item_bytes(v) for v in value)
    return len(json.dumps(value, default=str))


def test_parts_shrink_as_readers_grow_so_the_events_held_stay_bounded() -> None:
    assert slicing.part_events(10_000, 1) == slicing.part_events(10_000, slicing.PART_READERS) == 10_000
    assert slicing.part_events(10_000, 46) == slicing.FEWEST_PART_EVENTS
    assert slicing.part_events(10_000, 8) == 5_000
    assert slicing.part_events(250, 46) == 250, "never more than MAX_OBJECT_EVENTS"
    for readers in (1, 4, 8, 16, 46):
        held = readers * slicing.part_events(10_000, readers)
        assert held <= max(4 * 10_000, 46 * slicing.FEWEST_PART_EVENTS)
