"""Window planning (planning.py): every bound, with exact instants.

The clock reads 12:00:00.123456 on 1 December 2026 (microseconds, as Lambda's clock has them), so each case also
shows what is floored to the millisecond and what is not.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest

from auditlake import planning
from auditlake.archive import window_id
from auditlake.planning import MIN_FOLLOW_UP_WINDOW, WindowPlan
from auditlake.settings import Settings
from auditlake.state import Kind, SliceState, Span, StreamKey, StreamState, WindowState
from auditlake.vendor import Order
from auditlake_vendors import adapter

NOW = datetime(2026, 12, 1, 12, 0, 0, 123456, tzinfo=UTC)
NOW_MS = datetime(2026, 12, 1, 12, 0, 0, 123000, tzinfo=UTC)  # NOW, floored to the millisecond
SETTINGS = Settings(state_table="t", archive_bucket="b", kms_key_arn="k", secret_id="s", digest_signing_key_arn="d",
                    lag=timedelta(seconds=120), overlap=timedelta(seconds=600), initial_lookback=timedelta(days=90))
LIVE = StreamKey("asana", "1200000000000001")


@dataclass(frozen=True)
class Vendor:
    """A vendor's bounds, as an adapter class states them (planning.Bounds)."""

    retention: timedelta | None = None
    retention_margin: timedelta = timedelta(0)
    earliest: datetime | None = None
    max_window: timedelta | None = None
    order: Order = Order.OLDEST_FIRST


UNBOUNDED = Vendor()


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def live(**fields: object) -> StreamState:
    return StreamState(key=str(LIVE), version=1, **fields)  # type: ignore[arg-type]


def spanned(kind: Kind, since: datetime, until: datetime, done_until: datetime | None, **fields: object
            ) -> StreamState:
    return StreamState(key=str(LIVE.with_kind(kind)), version=1, backfill=Span(since, until), done_until=done_until,
                       **fields)  # type: ignore[arg-type]


# -- the oldest instant a vendor serves ----------------------------------------------------------------------------


def test_oldest_available_is_the_retention_less_its_margin_or_the_first_day_whichever_is_later() -> None:
    assert planning.oldest_available(UNBOUNDED, NOW) is None
    assert planning.oldest_available(Vendor(retention=timedelta(days=90)), NOW) == NOW - timedelta(days=90)
    make_like = Vendor(retention=timedelta(days=365), retention_margin=timedelta(days=3))
    assert planning.oldest_available(make_like, NOW) == at("2025-12-04T12:00:00.123456")
    assert planning.oldest_available(Vendor(earliest=at("2021-10-08T00:00:00")), NOW) == at("2021-10-08T00:00:00")
    # Both: whichever is later at the time.
    both = Vendor(retention=timedelta(days=90), earliest=at("2026-10-01T00:00:00"))
    assert planning.oldest_available(both, NOW) == at("2026-10-01T00:00:00")
    assert planning.oldest_available(both, at("2027-06-01T00:00:00")) == at("2027-03-03T00:00:00")


def test_oldest_available_reads_the_adapter_classes_as_they_are() -> None:
    assert planning.oldest_available(adapter("asana"), NOW) == at("2026-09-02T12:00:00.123456")  # 90 days
    assert planning.oldest_available(adapter("make"), NOW) == at("2025-12-04T12:00:00.123456")  # 365 less 3 days
    assert planning.oldest_available(adapter("ashby"), NOW) is None
    assert planning.oldest_available(adapter("clickup"), NOW) is None


def test_reachable_moves_a_date_asked_up_to_the_oldest_served_and_no_further() -> None:
    bounded = Vendor(retention=timedelta(days=90))
    edge = NOW - timedelta(days=90)
    assert planning.reachable(bounded, edge - timedelta(milliseconds=1), NOW) == edge
    assert planning.reachable(bounded, edge, NOW) == edge
    assert planning.reachable(bounded, edge + timedelta(days=1), NOW) == edge + timedelta(days=1)
    assert planning.reachable(UNBOUNDED, at("2001-01-01T00:00:00"), NOW) == at("2001-01-01T00:00:00")


# -- a live stream's first window ----------------------------------------------------------------------------------


def test_the_first_window_starts_the_initial_lookback_before_now_and_ends_the_lag_before_it() -> None:
    assert planning.first_window_start(UNBOUNDED, timedelta(days=90), NOW) == at("2026-09-02T12:00:00.123")
    plan = planning.next_window(UNBOUNDED, live(), SETTINGS, NOW, first=True)
    assert plan == WindowPlan(at("2026-09-02T12:00:00.123"), at("2026-12-01T11:58:00.123"))


def test_the_first_window_starts_inside_the_retention_by_its_margin() -> None:
    make_like = Vendor(retention=timedelta(days=365), retention_margin=timedelta(days=3))
    settings = replace(SETTINGS, initial_lookback=timedelta(days=400))
    assert planning.first_window_start(make_like, settings.initial_lookback, NOW) == at("2025-12-04T12:00:00.123")
    plan = planning.next_window(make_like, live(), settings, NOW, first=True)
    assert plan is not None and plan.start == at("2025-12-04T12:00:00.123") and plan.lost_before is None


def test_the_first_window_starts_no_earlier_than_the_vendors_first_day() -> None:
    ashby_like = Vendor(earliest=at("2026-11-01T00:00:00"))
    plan = planning.next_window(ashby_like, live(), SETTINGS, NOW, first=True)
    assert plan == WindowPlan(at("2026-11-01T00:00:00"), at("2026-12-01T11:58:00.123"))


def test_a_first_window_longer_than_the_vendor_allows_is_cut_at_max_window() -> None:
    capped = Vendor(max_window=timedelta(days=30))
    plan = planning.next_window(capped, live(), SETTINGS, NOW, first=True)
    assert plan == WindowPlan(at("2026-09-02T12:00:00.123"), at("2026-10-02T12:00:00.123"))


def test_no_first_window_when_the_lookback_is_inside_the_lag() -> None:
    settings = replace(SETTINGS, initial_lookback=timedelta(seconds=60))  # starts after now - lag: nothing closed yet
    assert planning.first_window_start(UNBOUNDED, settings.initial_lookback, NOW) == at("2026-12-01T11:59:00.123")
    assert planning.next_window(UNBOUNDED, live(), settings, NOW, first=True) is None


# -- later live windows ----------------------------------------------------------------------------------------------


def test_a_later_window_re_reads_the_overlap() -> None:
    state = live(done_until=at("2026-12-01T11:00:00"))
    plan = planning.next_window(UNBOUNDED, state, SETTINGS, NOW, first=True)
    assert plan == WindowPlan(at("2026-12-01T10:50:00"), at("2026-12-01T11:58:00.123"))


def test_the_overlap_starts_no_earlier_than_the_ids_kept_to_skip_it() -> None:
    state = live(done_until=at("2026-12-01T11:00:00"), seen_from=at("2026-12-01T10:57:30.250"))
    plan = planning.next_window(UNBOUNDED, state, SETTINGS, NOW, first=True)
    assert plan == WindowPlan(at("2026-12-01T10:57:30.250"), at("2026-12-01T11:58:00.123"))
    earlier = live(done_until=at("2026-12-01T11:00:00"), seen_from=at("2026-12-01T10:40:00"))
    assert planning.next_window(UNBOUNDED, earlier, SETTINGS, NOW, first=True) == \
        WindowPlan(at("2026-12-01T10:50:00"), at("2026-12-01T11:58:00.123"))


def test_a_caught_up_stream_has_no_window() -> None:
    at_the_lag = live(done_until=at("2026-12-01T11:58:00.123"))
    assert planning.next_window(UNBOUNDED, at_the_lag, SETTINGS, NOW, first=True) is None
    a_millisecond_behind = live(done_until=at("2026-12-01T11:58:00.122"))
    assert planning.next_window(UNBOUNDED, a_millisecond_behind, SETTINGS, NOW, first=True) == \
        WindowPlan(at("2026-12-01T11:48:00.122"), at("2026-12-01T11:58:00.123"))


def test_a_follow_up_window_in_the_same_run_needs_a_minute_of_new_time() -> None:
    just_short = live(done_until=at("2026-12-01T11:58:00.123") - MIN_FOLLOW_UP_WINDOW + timedelta(milliseconds=1))
    assert planning.next_window(UNBOUNDED, just_short, SETTINGS, NOW, first=False) is None
    assert planning.next_window(UNBOUNDED, just_short, SETTINGS, NOW, first=True) is not None
    a_minute = live(done_until=at("2026-12-01T11:57:00.123"))
    assert planning.next_window(UNBOUNDED, a_minute, SETTINGS, NOW, first=False) == \
        WindowPlan(at("2026-12-01T11:47:00.123"), at("2026-12-01T11:58:00.123"))


def test_a_backlog_is_read_in_windows_of_max_window() -> None:
    ashby_like = Vendor(max_window=timedelta(days=540))
    state = live(done_until=at("2024-01-01T00:00:00"))
    plan = planning.next_window(ashby_like, state, SETTINGS, NOW, first=True)
    assert plan == WindowPlan(at("2023-12-31T23:50:00"), at("2025-06-23T23:50:00"))
    # the last one ends at now less the lag
    state = live(done_until=at("2026-11-30T00:00:00"))
    assert planning.next_window(ashby_like, state, SETTINGS, NOW, first=True) == \
        WindowPlan(at("2026-11-29T23:50:00"), at("2026-12-01T11:58:00.123"))


def test_a_window_starting_past_the_retention_edge_says_where_events_are_gone() -> None:
    asana_like = Vendor(retention=timedelta(days=90))
    edge = NOW - timedelta(days=90)  # 2026-09-02T12:00:00.123456
    behind = live(done_until=at("2026-09-02T12:10:00.123"))  # its overlap starts 0.456 ms before the edge
    plan = planning.next_window(asana_like, behind, SETTINGS, NOW, first=True)
    assert plan == WindowPlan(at("2026-09-02T12:00:00.123"), at("2026-12-01T11:58:00.123"), lost_before=edge)
    inside = live(done_until=at("2026-09-02T12:10:00.124"))  # its overlap starts after the edge
    plan = planning.next_window(asana_like, inside, SETTINGS, NOW, first=True)
    assert plan is not None and plan.start == at("2026-09-02T12:00:00.124") and plan.lost_before is None
    on_the_edge = live(done_until=at("2026-09-02T12:10:00.123"))  # with a clock on the millisecond: at the edge
    plan = planning.next_window(asana_like, on_the_edge, SETTINGS, NOW_MS, first=True)
    assert plan is not None and plan.start == NOW_MS - timedelta(days=90) and plan.lost_before is None


def test_a_first_window_is_never_said_to_start_past_the_retention_edge() -> None:
    # Floored to the millisecond, the first window starts up to a millisecond before the edge: that is no loss.
    asana_like = Vendor(retention=timedelta(days=90))
    plan = planning.next_window(asana_like, live(), replace(SETTINGS, initial_lookback=timedelta(days=400)), NOW,
                                first=True)
    assert plan == WindowPlan(at("2026-09-02T12:00:00.123"), at("2026-12-01T11:58:00.123"))


# -- backfill and reconciliation windows -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [Kind.BACKFILL, Kind.RECONCILE])
def test_a_span_is_read_from_its_done_until_to_its_end_without_overlap(kind: Kind) -> None:
    state = spanned(kind, at("2026-01-01T00:00:00"), at("2026-09-02T12:00:00.123"), at("2026-03-01T00:00:00"))
    assert planning.next_window(UNBOUNDED, state, SETTINGS, NOW, first=False) == \
        WindowPlan(at("2026-03-01T00:00:00"), at("2026-09-02T12:00:00.123"))
    capped = Vendor(max_window=timedelta(days=30))
    assert planning.next_window(capped, state, SETTINGS, NOW, first=False) == \
        WindowPlan(at("2026-03-01T00:00:00"), at("2026-03-31T00:00:00"))


@pytest.mark.parametrize("kind", [Kind.BACKFILL, Kind.RECONCILE])
def test_a_finished_or_unaimed_span_has_no_window(kind: Kind) -> None:
    until = at("2026-09-02T12:00:00.123")
    assert planning.next_window(UNBOUNDED, spanned(kind, at("2026-01-01T00:00:00"), until, until), SETTINGS, NOW,
                                first=True) is None
    unaimed = StreamState(key=str(LIVE.with_kind(kind)), version=1)
    assert planning.next_window(UNBOUNDED, unaimed, SETTINGS, NOW, first=True) is None


def test_a_span_is_unfinished_until_its_done_until_reaches_its_end() -> None:
    since, until = at("2026-01-01T00:00:00"), at("2026-02-01T00:00:00")
    assert not planning.span_unfinished(live(done_until=until))
    assert planning.span_unfinished(spanned(Kind.BACKFILL, since, until, None))
    assert planning.span_unfinished(spanned(Kind.BACKFILL, since, until, until - timedelta(milliseconds=1)))
    assert not planning.span_unfinished(spanned(Kind.BACKFILL, since, until, until))


# -- the span a backfill covers ------------------------------------------------------------------------------------


def test_a_backfill_runs_from_the_date_asked_to_the_live_origin() -> None:
    origin = at("2026-09-02T12:00:00.123")
    assert planning.backfill_span(UNBOUNDED, at("2026-01-01T00:00:00"), origin, NOW) == \
        Span(at("2026-01-01T00:00:00"), origin)


def test_a_backfill_asked_from_before_the_retention_starts_at_its_edge() -> None:
    asana_like = Vendor(retention=timedelta(days=90), earliest=at("2021-10-08T00:00:00"))
    origin = at("2026-11-01T00:00:00")
    assert planning.backfill_span(asana_like, at("2020-01-01T00:00:00"), origin, NOW) == \
        Span(at("2026-09-02T12:00:00.123"), origin)
    no_retention = Vendor(earliest=at("2021-10-08T00:00:00"))
    assert planning.backfill_span(no_retention, at("2020-01-01T00:00:00"), origin, NOW) == \
        Span(at("2021-10-08T00:00:00"), origin)


def test_a_backfill_meeting_the_live_origin_is_empty() -> None:
    origin = at("2026-09-02T12:00:00.123")
    assert planning.backfill_span(UNBOUNDED, origin, origin, NOW) is None
    assert planning.backfill_span(UNBOUNDED, origin + timedelta(days=1), origin, NOW) is None
    assert planning.backfill_span(UNBOUNDED, origin - timedelta(milliseconds=1), origin, NOW) == \
        Span(origin - timedelta(milliseconds=1), origin)
    # everything the vendor still serves is collected already
    asana_like = Vendor(retention=timedelta(days=90))
    assert planning.backfill_span(asana_like, at("2026-01-01T00:00:00"), at("2026-09-02T12:00:00.123"), NOW) is None


# -- the span a reconciliation re-reads ----------------------------------------------------------------------------


ORIGIN = at("2026-06-01T00:00:00")
DONE_UNTIL = at("2026-12-01T11:58:00.123")  # caught up to now less the lag


def reconciliation(bounds: planning.Bounds = UNBOUNDED, *, origin: datetime = ORIGIN,
                   asked: datetime | None = None) -> Span | None:
    return planning.reconciliation_span(bounds, origin=origin, done_until=DONE_UNTIL, overlap=SETTINGS.overlap,
                                        length=timedelta(days=7), asked=asked, now=NOW)


def test_a_scheduled_reconciliation_re_reads_its_length_up_to_what_no_live_window_re_reads() -> None:
    assert reconciliation() == Span(at("2026-11-24T12:00:00.123"), at("2026-12-01T11:48:00.123"))


def test_a_reconciliation_by_hand_starts_at_the_date_asked() -> None:
    assert reconciliation(asked=at("2026-10-01T00:00:00")) == \
        Span(at("2026-10-01T00:00:00"), at("2026-12-01T11:48:00.123"))


def test_a_reconciliation_starts_no_earlier_than_the_live_origin_nor_the_retention() -> None:
    assert reconciliation(asked=at("2026-01-01T00:00:00")) == \
        Span(at("2026-06-01T00:00:00"), at("2026-12-01T11:48:00.123"))
    asana_like = Vendor(retention=timedelta(days=90))
    assert reconciliation(asana_like, asked=at("2026-01-01T00:00:00")) == \
        Span(at("2026-09-02T12:00:00.123"), at("2026-12-01T11:48:00.123"))


def test_a_reconciliation_of_a_stream_younger_than_its_overlap_is_empty() -> None:
    assert reconciliation(origin=at("2026-12-01T11:48:00.123")) is None
    assert reconciliation(origin=at("2026-12-01T11:48:00.122")) == \
        Span(at("2026-12-01T11:48:00.122"), at("2026-12-01T11:48:00.123"))


# -- progress through a span -----------------------------------------------------------------------------------------


SINCE, UNTIL = at("2026-01-01T00:00:00"), at("2026-01-11T00:00:00")  # ten days


def open_window(start: datetime, end: datetime, frontier: datetime | None) -> WindowState:
    """A window read whole: one slice, paged up to `frontier`."""
    return WindowState(id=window_id(start, end), planned_end=end, read_until=end, slices=[
        SliceState(id=window_id(start, end), start=start, end=end, planned_end=end, frontier_time=frontier)])


def test_progress_is_zero_before_anything_is_archived_and_one_at_the_end() -> None:
    assert planning.progress(spanned(Kind.BACKFILL, SINCE, UNTIL, SINCE), Order.OLDEST_FIRST) == 0.0
    assert planning.progress(spanned(Kind.BACKFILL, SINCE, UNTIL, None), Order.OLDEST_FIRST) == 0.0
    assert planning.progress(spanned(Kind.BACKFILL, SINCE, UNTIL, UNTIL), Order.NEWEST_FIRST) == 1.0
    assert planning.progress(live(done_until=UNTIL), Order.OLDEST_FIRST) == 1.0  # no span: nothing left


def test_progress_counts_completed_windows_and_the_open_window_up_to_its_frontier() -> None:
    done = at("2026-01-04T00:00:00")  # three days completed
    assert planning.progress(spanned(Kind.BACKFILL, SINCE, UNTIL, done), Order.OLDEST_FIRST) == 0.3
    window = open_window(done, at("2026-01-06T00:00:00"), at("2026-01-04T12:00:00"))
    # oldest first: the frontier is the newest instant archived, half a day past done_until
    assert planning.progress(spanned(Kind.BACKFILL, SINCE, UNTIL, done, window=window), Order.OLDEST_FIRST) == 0.35
    # newest first: the frontier is the oldest instant archived, a day and a half before the window's end
    assert planning.progress(spanned(Kind.RECONCILE, SINCE, UNTIL, done, window=window), Order.NEWEST_FIRST) == 0.45
    unstarted = open_window(done, at("2026-01-06T00:00:00"), None)
    assert planning.progress(spanned(Kind.BACKFILL, SINCE, UNTIL, done, window=unstarted), Order.OLDEST_FIRST) == 0.3


def test_progress_counts_the_slices_read_and_the_open_ones_up_to_their_frontiers() -> None:
    done = at("2026-01-04T00:00:00")  # three days completed
    day = timedelta(days=1)
    # A three-day window: its first day's slice read, the second day's open up to noon, the third not handed out.
    second = SliceState(id=window_id(done + day, done + 2 * day), start=done + day, end=done + 2 * day,
                        planned_end=done + 2 * day, frontier_time=done + day + timedelta(hours=12))
    window = WindowState(id=window_id(done, done + 3 * day), planned_end=done + 3 * day, read_until=done + 2 * day,
                         slices=[second])
    assert planning.progress(spanned(Kind.BACKFILL, SINCE, UNTIL, done, window=window), Order.OLDEST_FIRST) == 0.45
    # newest first: the open slice has read from its end back to noon
    assert planning.progress(spanned(Kind.BACKFILL, SINCE, UNTIL, done, window=window), Order.NEWEST_FIRST) == 0.45
    second.frontier_time = None
    assert planning.progress(spanned(Kind.BACKFILL, SINCE, UNTIL, done, window=window), Order.OLDEST_FIRST) == 0.4


def test_progress_is_rounded_and_kept_between_zero_and_one() -> None:
    third = SINCE + (UNTIL - SINCE) / 3
    assert planning.progress(spanned(Kind.BACKFILL, SINCE, UNTIL, third), Order.OLDEST_FIRST) == 0.3333
    past = open_window(at("2026-01-10T00:00:00"), UNTIL, at("2026-01-12T00:00:00"))
    assert planning.progress(spanned(Kind.BACKFILL, SINCE, UNTIL, at("2026-01-10T00:00:00"), window=past),
                             Order.OLDEST_FIRST) == 1.0
    empty = spanned(Kind.BACKFILL, SINCE, SINCE, SINCE)
    assert planning.progress(empty, Order.OLDEST_FIRST) == 1.0
