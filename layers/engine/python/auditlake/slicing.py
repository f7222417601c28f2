"""How many queries a run keeps in flight, and where a window is cut into the slices they read.

At a vendor's real latency (100 to 500 ms a request), one query paged one page at a time is bound by latency, not by
the rate limit: at 250 ms it makes about 240 requests a minute, a sixth of Asana's 1,500. So the engine reads a long
window in slices, each a query of its own with its own vendor cursor, several at once (engine.py), and the one
pacer of the vendor's token (pacing.py) keeps them all under the shared limit.

- Readers: enough queries in flight to keep the pacer's pace at ASSUMED_LATENCY seconds a request, at most
  MAX_READERS, at most what the vendor allows at once (`max_concurrent_requests`), and no more than the stream's
  state item has room for beside the ids it keeps (each open slice keeps its cursor and its last page's ids there,
  and DynamoDB caps an item at 400 KB); counted for each window. FETCH_CONCURRENCY sets it (1: one query at a time,
  as before slices existed). An account's streams after its first run at once (ClickUp's six classes), each with
  the readers the pace calls for (their volumes differ; the pacer keeps them together under the limit).
- Slices: a window shorter than SLICED_WINDOW (every scheduled tick's) is read whole, so an idle tick stays one
  query. A longer one is handed out from its start, a slice at a time, as readers free up: an even share of what is
  left among the readers (so all of them read, and finish together), holding between FEWEST_PAGES and TARGET_PAGES
  pages at the density where the window is densest now (its recent slices, each read weighing twice the one before
  it, or an open slice's pages so far). The first slice, and every slice while nothing has been found, is a quarter
  of an even share of the window (among BLIND_READERS at most: an empty slice costs a request); the others wait
  for the first page to show the density (one request's latency). Each slice costs a request that only finds
  its end, hence the floor. No slice is shorter than MIN_SLICE, nor than REREAD_FACTOR times what the vendor's
  query reads before its start (`query_reread`: Make's reads the UTC day before, so its slices are 4 days at
  least), and each ends where the vendor's query can end (`query_granularity`: Make filters by day).

Slices only change how a window is read: each event belongs to the one slice its time falls in, every slice is paged
to a stated end, and the window completes, as before, when all of its span is read.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from auditlake.archive import window_start
from auditlake.state import SliceState, WindowState, pack_ids
from auditlake.timeutil import MILLISECOND
from auditlake.vendor import Order, VendorAdapter

if TYPE_CHECKING:
    from auditlake.settings import Settings

ASSUMED_LATENCY = 0.5  # seconds a request takes at the vendor, for sizing the readers (real APIs: 0.1 to 0.5 s)
MAX_READERS = 48
# An open slice keeps its last page's ids in the state item (about ID_BYTES each, compressed, for the 64-hex ids
# state.py assumes) and a kilobyte of bounds and cursor. Of DynamoDB's 400 KB an item, the slices and the stream's
# `seen` ids share SLICES_BUDGET: the window's `carry` may grow to 3,000 ids (about 130 KB) while it is read, and the
# digest's pending objects and the rest take about 20 KB. (A backfill's or a reconciliation's item has neither
# `seen` nor `carry`: no overlap.)
ID_BYTES = 44
SLICES_BUDGET = 250_000
SLICED_WINDOW = timedelta(hours=1)
MIN_SLICE = timedelta(minutes=1)
TARGET_PAGES = 20
FEWEST_PAGES = 5
REREAD_FACTOR = 4  # a slice is at least this many times what its query re-reads before it
RECENT_WEIGHT = 0.5  # what a slice read counts for in the density, against the slice read after it
BLIND_READERS = 16  # slices cut before anything is found are cut as for at most this many readers
PART_READERS = 4  # up to this many readers, a part holds MAX_OBJECT_EVENTS; beyond, parts are shared out ...
FEWEST_PART_EVENTS = 2_000  # ... down to this (objects of fewer events cost more S3 requests and Athena reads)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def readers(adapter: VendorAdapter, settings: Settings, seen: Mapping[str, int]) -> int:
    """How many slices a window is read in at once: FETCH_CONCURRENCY, else enough for the pace the vendor's token
    allows; either way no more than the caps, the room in the state item counted with the stream's `seen` ids."""
    pace = adapter.http.pacer.per_minute
    if settings.fetch_concurrency is not None:
        wanted = settings.fetch_concurrency
    elif pace is None:
        wanted = 4  # no limit documented or announced yet: a few, until a 429 or a header teaches the pacer one
    else:
        wanted = math.ceil(pace / 60 * ASSUMED_LATENCY)
    room = (SLICES_BUDGET - (len(pack_ids(seen)) if seen else 0)) // (settings.page_size * ID_BYTES + 1_000)
    # Streams read at once each keep the readers the pace calls for: their volumes differ (one may hold most of
    # the events), and the pacer keeps them all under the limit together.
    cap = min(MAX_READERS, adapter.max_concurrent_requests or MAX_READERS, room)
    return max(1, min(wanted, cap))


def part_events(max_object_events: int, readers: int) -> int:
    """Events a part of a slice holds before it is written: MAX_OBJECT_EVENTS, shared out once more than
    PART_READERS read at once (down to FEWEST_PART_EVENTS), so that the events all readers hold in parts stay near
    PART_READERS parts' worth, however many readers a long backlog keeps busy."""
    if readers <= PART_READERS:
        return max_object_events
    return min(max_object_events, max(FEWEST_PART_EVENTS, max_object_events * PART_READERS // readers))


class Slicer:
    """Where the slices of a run's windows end. Thread-safe: readers report what they read as they go.

    The density it sizes slices by is the window's slices read to their end (kept in the window's state, so a run
    that resumes the window knows it too) and what this run's open slices have read so far."""

    def __init__(self, adapter: VendorAdapter, readers: int, page_size: int) -> None:
        self.readers = readers
        self.order = adapter.order
        self.grain = adapter.query_granularity
        self.reread = adapter.query_reread
        self.page_size = page_size
        self._lock = threading.Lock()
        self._progress: dict[str, tuple[int, timedelta]] = {}  # per open slice: its events, its span read
        self.informed = threading.Event()  # set once a page or a slice has shown how dense the window is

    def end(self, start: datetime, window: WindowState) -> datetime:
        """Where the slice of `window` that begins at `start` ends."""
        window_end = window.planned_end
        if self.readers == 1 or window_end - window_start(window.id) < SLICED_WINDOW:
            return window_end
        left = window_end - start
        density = self._density(window)
        if density is None:
            # Nothing read yet, or nothing found: a quarter of an even share of the window. Whatever is there (a new
            # account's events are all recent) is still read by several readers; an empty slice costs one request.
            length = (window_end - window_start(window.id)) / (4 * min(self.readers, BLIND_READERS))
        else:
            # As many slices as readers while that much is left, so all of them read; each slice holds at most
            # TARGET_PAGES pages (the last round's readers finish together) and at least FEWEST_PAGES (each slice
            # costs a request that only finds its end).
            per_page = timedelta(seconds=self.page_size / density)
            length = max(min(left / self.readers, per_page * TARGET_PAGES), per_page * FEWEST_PAGES)
        end = self._cut(start + max(length, MIN_SLICE, self.reread * REREAD_FACTOR))
        return window_end if end >= window_end or window_end - end < MIN_SLICE else end

    def _density(self, window: WindowState) -> float | None:
        """Events a second where the window is densest now, as far as it has shown: its recent slices read to their
        end, or an open slice's pages so far, whichever is denser (a dense stretch after an empty one must not be
        cut by the empty one's average); None while nothing has been found."""
        with self._lock:
            open_slices = [events / read.total_seconds() for events, read in self._progress.values()
                           if events and read > timedelta(0)]
        done = window.read_events / window.read_seconds if window.read_events and window.read_seconds else 0.0
        density = max([done, *open_slices])
        return density or None

    def may_plan(self, window: WindowState, reading: int) -> bool:
        """Whether a new slice of `window` may be planned while `reading` slices are being read: the first one
        always; the others once a page or a slice has shown how dense the window is (until then, readers wait a
        moment rather than cut slices blind, each of which costs a request)."""
        return reading == 0 or self.readers == 1 or window.read_seconds > 0 or self.informed.is_set()

    def _cut(self, moment: datetime) -> datetime:
        """The first instant at or after `moment` where the vendor's query can end, in whole milliseconds."""
        steps = math.ceil((moment - _EPOCH) / (self.grain or MILLISECOND))
        return _EPOCH + steps * (self.grain or MILLISECOND)

    def observe(self, piece: SliceState, events: int, edge: datetime | None) -> None:
        """A page of the slice held `events` of its events, the last (in the vendor's order) at `edge`."""
        if edge is not None:
            if self.order is Order.OLDEST_FIRST:
                read = min(max(edge, piece.start), piece.end) - piece.start
            else:
                read = piece.end - min(max(edge, piece.start), piece.end)
        with self._lock:
            seen, before = self._progress.get(piece.id, (0, timedelta(0)))
            self._progress[piece.id] = (seen + events, before if edge is None else max(before, read))
        if edge is not None:
            self.informed.set()

    def read(self, window: WindowState, piece: SliceState) -> None:
        """The slice is read to its end (called under the run's lock): the window counts its events and span."""
        with self._lock:
            events, _ = self._progress.pop(piece.id, (0, timedelta(0)))
        # Each slice read weighs twice the one before: the density follows where the window is dense now, not an
        # average over an empty stretch before it.
        window.read_events = window.read_events * RECENT_WEIGHT + events
        window.read_seconds = window.read_seconds * RECENT_WEIGHT + (piece.planned_end - window_start(
            piece.id)).total_seconds()
        self.informed.set()
