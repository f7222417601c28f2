"""Window planning: the bounds of a stream's next window, the span a backfill or a reconciliation covers, and how far
through its span one is.

Pure: functions of the vendor's bounds (its adapter class, or an instance), a stream's state, the settings and the
time it is, returning values. Nothing here reads a clock, a table or a vendor; the engine (engine.py) does, and acts
on what these return. The operator tool uses `reachable` to say where a backfill it is asked for will start.

The rules, in one place:
- A live stream's first window starts `initial_lookback` before now, no earlier than the vendor still serves
  (`oldest_available`); that start is the stream's origin, where a backfill ends.
- Every later live window starts at `done_until` less the overlap (no earlier than `seen_from`, where the ids kept
  to skip what it re-reads begin) and ends at now less the lag. Within one run a further window is only opened once
  at least MIN_FOLLOW_UP_WINDOW of new time has closed.
- A backfill's or a reconciliation's windows run from its `done_until` to the end of its span, without overlap:
  history is not late.
- No window is longer than the vendor's `max_window`; every bound is whole milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from auditlake.archive import window_start
from auditlake.state import Kind, Span, StreamState
from auditlake.timeutil import floor_millis
from auditlake.vendor import Order

if TYPE_CHECKING:
    from auditlake.settings import Settings

# Within one run, a further window is only worth opening when at least this much new time has closed.
MIN_FOLLOW_UP_WINDOW = timedelta(minutes=1)


class Bounds(Protocol):
    """What planning reads of a vendor: a VendorAdapter subclass (or an instance of one) is one."""

    retention: timedelta | None  # events older than this are gone at the vendor
    retention_margin: timedelta  # a first window starts this far inside the retention
    earliest: datetime | None  # the vendor has no events before this
    max_window: timedelta | None  # the longest span one query may cover
    order: Order  # the order the vendor returns a window's events in


@dataclass(frozen=True)
class WindowPlan:
    """The next window, `[start, end)`. `lost_before` is set when the window starts before the vendor's retention
    edge (now less its retention): the uncollected events before that instant are gone at the vendor."""

    start: datetime
    end: datetime
    lost_before: datetime | None = None


def oldest_available(bounds: Bounds, now: datetime) -> datetime | None:
    """The oldest instant the vendor still serves, if it says: its retention less the margin, its first day."""
    candidates = []
    if bounds.retention is not None:
        candidates.append(now - bounds.retention + bounds.retention_margin)
    if bounds.earliest is not None:
        candidates.append(bounds.earliest)
    return max(candidates) if candidates else None


def reachable(bounds: Bounds, asked: datetime, now: datetime) -> datetime:
    """`asked`, or the oldest instant the vendor still serves when that is later."""
    oldest = oldest_available(bounds, now)
    return oldest if oldest is not None and asked < oldest else asked


def first_window_start(bounds: Bounds, initial_lookback: timedelta, now: datetime) -> datetime:
    """Where a live stream's first window starts, and so its origin: `initial_lookback` before now, no earlier than
    the vendor still serves."""
    return floor_millis(reachable(bounds, now - initial_lookback, now))


def next_window(bounds: Bounds, state: StreamState, settings: Settings, now: datetime, *,
                first: bool) -> WindowPlan | None:
    """The stream's next window, or None when there is nothing to collect now. `first`: the run has planned no
    window yet (a further one needs MIN_FOLLOW_UP_WINDOW of new time)."""
    end = floor_millis(now - settings.lag)
    done_until = state.done_until
    lost_before = None
    if state.stream_key.kind is not Kind.LIVE:
        span = state.backfill
        if span is None or done_until is None or done_until >= span.until:
            return None
        start, end = done_until, span.until
    elif done_until is None:
        start = first_window_start(bounds, settings.initial_lookback, now)
    else:
        if end <= done_until or (not first and end - done_until < MIN_FOLLOW_UP_WINDOW):
            return None
        start = done_until - settings.overlap
        if state.seen_from is not None:
            start = max(start, state.seen_from)
        if bounds.retention is not None and start < now - bounds.retention:
            lost_before = now - bounds.retention
    start = floor_millis(start)
    if bounds.max_window is not None:
        end = min(end, start + bounds.max_window)
    if end <= start:
        return None
    return WindowPlan(start, end, lost_before)


def span_unfinished(state: StreamState) -> bool:
    """Whether a backfill's or a reconciliation's span is still being read: its `done_until` is short of its end."""
    span = state.backfill
    return span is not None and (state.done_until is None or state.done_until < span.until)


def backfill_span(bounds: Bounds, asked: datetime, until: datetime, now: datetime) -> Span | None:
    """What a backfill asked for from `asked` covers: up to `until` (the lower edge of what is collected: the live
    stream's origin, or where an earlier backfill began), from no earlier than the vendor still serves. None when
    nothing lies between."""
    since = floor_millis(reachable(bounds, asked, now))
    return Span(since=since, until=until) if since < until else None


def reconciliation_span(bounds: Bounds, *, origin: datetime, done_until: datetime, overlap: timedelta,
                        length: timedelta, asked: datetime | None, now: datetime) -> Span | None:
    """What a reconciliation re-reads of a live stream that began at `origin` and has completed up to `done_until`:
    from `asked` (by hand) or `length` before now (on schedule), no earlier than the origin (before it is a
    backfill's) nor than the vendor still serves; up to `done_until` less the overlap, which no live window re-reads
    again. None when nothing lies between."""
    until = floor_millis(done_until - overlap)
    since = max(asked if asked is not None else now - length, origin)
    since = floor_millis(reachable(bounds, since, now))
    return Span(since=since, until=until) if since < until else None


def progress(state: StreamState, order: Order) -> float:
    """The share of a backfill's or a reconciliation's span archived, 0 to 1 (1 without a span): its completed
    windows, plus what the open window's slices have read up to their frontiers (the newest archived instant for
    oldest-first vendors, the oldest for newest-first ones)."""
    span = state.backfill
    if span is None:
        return 1.0
    start = state.done_until or span.since
    covered = start - span.since
    window = state.window
    if window is not None:
        covered += window.read_until - window_start(window.id)
        for piece in window.slices:
            piece_start = window_start(piece.id)
            read = timedelta(0)
            if piece.frontier_time is not None:
                read = piece.frontier_time - piece_start if order is Order.OLDEST_FIRST \
                    else piece.planned_end - piece.frontier_time
            covered -= piece.planned_end - piece_start - read
    total = span.until - span.since
    return round(min(1.0, max(0.0, covered / total)), 4) if total else 1.0
