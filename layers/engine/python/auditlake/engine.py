"""The collection engine: closed windows, paged to the end, archived exactly once.

For each stream, a run takes the lease, finishes whatever the last run left (parts being written, a window
being paged), then collects windows `[done_until - overlap, now - lag)` until it is caught up or the deadline
is near. A window is read in slices: parts of its span, each its own vendor query with its own cursor, several
read at once by threads when the window is long (where they end, and how many: slicing.py); a short window is one
slice. A slice is paged in parts; each part is written as it fills, in this order:

1. record the part's object keys in the slice's state (the intent),
2. write the objects (each key once, conditionally),
3. commit: the slice's vendor cursor after the part, its next part number, the ids the next window must skip.

A crash between any two steps leaves, for each slice, either nothing (1), or an intent whose written objects the
next run reads back and skips (2), or a committed part (3). The state is changed and saved under one lock; pages
are fetched and objects written outside it. The window completes, and `done_until` moves to its end, once every
slice is read. Events the vendor publishes late reappear in the next window's overlap, where the `seen` ids drop
the ones already archived.

A backfill is the same machinery on a stream of its own (its StreamKey's kind BACKFILL, `<vendor>#<stream>#backfill`):
its windows cover `[since, origin)`, where `origin` is where the stream's first scheduled window began, so the two
never overlap. History is not late, so a backfill needs no overlap. A reconciliation (reconcile.py) is a backfill of
a span the live collection already completed, on a stream of its own (kind RECONCILE), that skips every id the
archive already holds for that span. Where each window and span begins and ends is planning.py's.

Resume hints: an adapter may end a window with a hint (`Page.hint` on the final page), which the engine stores in
the stream's state, in the same write that completes the window, and hands to every page of the next window
(`Window.hint`: the window's first slice's), with where that window can start at the earliest
(`Window.next_start`: the end less the overlap); the window's final slice gives the next one. The engine never
reads the hint. A cursor expiry drops it, so the window is then read without it; a
window that ends without one clears it. Make uses it to start the next window near its start instead of at
the beginning of its UTC day.

Digests (digest.py) ride on the same commits: a part's commit records its objects for the stream's next digest,
a window's completion the span it covered, and the end of a run seals the digest when one is due.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from auditlake import planning, slicing, timeutil
from auditlake.archive import Archive, PartBuilder, window_id, window_start
from auditlake.deadline import Deadline
from auditlake.digest import DigestWriter, entry_of
from auditlake.errors import (
    AuditlakeError,
    AuditLogsUnavailable,
    CursorExpired,
    DeadlineReached,
    MalformedResponse,
    StreamBusy,
    VendorError,
)
from auditlake.reconcile import ArchivedIds, Reconciliation
from auditlake.records import record_line
from auditlake.settings import Settings
from auditlake.state import Intent, Kind, SliceState, StateStore, StreamKey, StreamState, WindowState
from auditlake.vendor import End, Order, Page, VendorAdapter, Window

LEASE_GRACE_SECONDS = 15
# Ids kept to skip what the next window re-reads. Two such sets live in a state item while a window is open (the
# stream's and the window's), and 3,000 ids are at most about 130 KB compressed (64-hex ids): the item stays far
# below DynamoDB's 400 KB.
MAX_DEDUP_IDS = 3_000
# How long a reader waits, at most, before it looks again whether a new slice may be planned (slicing.Slicer).
INFORMED_WAIT_SECONDS = 0.05

log = logging.getLogger("auditlake")


@dataclass
class StreamResult:
    stream: str
    account: str = "default"  # the vendor's account the stream belongs to (StreamKey.account_name)
    status: str = "ok"  # ok | backlog | busy | error
    events_archived: int = 0
    duplicates_skipped: int = 0
    out_of_window: int = 0
    objects_written: int = 0
    pages_fetched: int = 0
    windows_completed: int = 0
    slices_read: int = 0  # slices of windows read to their end (a window read whole is one)
    cursors_expired: int = 0
    empty_pages: int = 0  # pages that held nothing but the news that a window is complete
    backfill: dict[str, str | None] | None = None  # a backfill's span and progress
    reconciliation: dict[str, Any] | None = None  # the current or last reconciliation, with its progress
    done_until: str | None = None
    newest_event_time: str | None = None
    backlog_seconds: float = 0.0
    error: str | None = None
    digest: str | None = None  # the key of the digest this run wrote

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Part:
    """A part being filled: its objects' builder, its events' (id, time), the cursor after its last page, the
    ids on that page, and the hint the window's final page gave (when this part reached it)."""

    builder: PartBuilder
    events: dict[str, datetime]
    cursor: Any | None
    last_page_ids: set[str]
    hint: Any | None = None


class Collector:
    def __init__(self, adapter: VendorAdapter, settings: Settings, store: StateStore, archive: Archive,
                 digests: DigestWriter, deadline: Deadline, owner: str,
                 now: Callable[[], datetime] | None = None, *, account: str | None = None) -> None:
        """`account`: the vendor's account `adapter` reads (None: its default one), which the streams' keys name."""
        self.adapter = adapter
        self.vendor = adapter.vendor
        self.account = account
        self.settings = settings
        self.store = store
        self.archive = archive
        self.digests = digests
        self.deadline = deadline
        self.owner = owner
        self.now = now or timeutil.now

    # -- a stream's run ------------------------------------------------------------------------------------

    def run_stream(self, stream: str, backfill_since: datetime | None = None,
                   reconcile: Reconciliation | None = None) -> StreamResult:
        """Collects the stream up to now (minus the lag); or, with `backfill_since`, its history before the
        stream's first window, from that date on; or, with `reconcile`, re-reads a span the live collection has
        completed and archives what the archive lacks (reconcile.py)."""
        kind = Kind.BACKFILL if backfill_since is not None else Kind.RECONCILE if reconcile is not None \
            else Kind.LIVE
        key = StreamKey(self.vendor, stream, kind, self.account)
        result = StreamResult(stream=str(key), account=key.account_name)
        if reconcile is not None and not self._reconciliation_due(key, reconcile, result):
            return result  # not due: one read, no lease, no vendor request
        try:
            state = self.store.acquire(key, self.owner, self._lease_until(), int(self.now().timestamp()))
        except StreamBusy as exc:
            log.warning("stream busy, skipping this tick", extra={"stream": str(key), "reason": str(exc)})
            result.status = "busy"
            return result
        run = _StreamRun(self, key, state, result)
        failure: BaseException | None = None
        try:
            if backfill_since is not None:
                self._aim_backfill(key, state, backfill_since)
            elif reconcile is not None:
                self._aim_reconcile(key, state, reconcile)
                run.archived = ArchivedIds(self.archive, key.live)
            run.collect()
        except BaseException as exc:
            failure = exc
            result.status = "error"
            result.error = str(exc)
            raise
        finally:
            self._finish(state, result, failure)
        return result

    def _aim_backfill(self, key: StreamKey, state: StreamState, since: datetime) -> None:
        """Points the backfill stream at `[since, lower edge of what is collected)`; an unfinished span is
        finished first (run again for an earlier date)."""
        span = state.backfill
        if planning.span_unfinished(state):
            if span is not None and since < span.since:
                log.warning("an earlier backfill is unfinished; it is finished first, then run the backfill again",
                            extra={"stream": state.key, "unfinished_since": timeutil.to_iso(span.since)})
            return
        if span is not None:
            until = span.since  # everything from there on is collected already
        else:
            live = self.store.read(key.live)
            if live is None or live.origin is None:
                raise AuditlakeError(f"{key.live} has not been collected yet: the first scheduled run sets where a "
                                     "backfill ends")
            until = live.origin
        now = self.now()
        reachable = planning.reachable(self.adapter, since, now)
        if reachable > since:
            log.warning("backfill starts at the oldest instant the vendor still serves", extra={
                "stream": state.key, "asked": timeutil.to_iso(since), "oldest": timeutil.to_iso(reachable)})
        span = planning.backfill_span(self.adapter, since, until, now)
        if span is not None:
            state.backfill = span
            state.done_until = span.since

    def _reconciliation_due(self, key: StreamKey, request: Reconciliation, result: StreamResult) -> bool:
        """Whether a reconciliation should run now: one is unfinished, one is asked for by hand, or the last one
        began `request.every` ago or more."""
        state = self.store.read(key)
        if state is None or request.since is not None or state.window is not None \
                or planning.span_unfinished(state):
            return True
        last = state.reconciliation or {}
        result.reconciliation = last or None
        started = last.get("started_at")
        return started is None or self.now() - timeutil.parse_time(started) >= request.every

    def _aim_reconcile(self, key: StreamKey, state: StreamState, request: Reconciliation) -> None:
        """Points the reconciliation stream at the span to re-read (planning.reconciliation_span). An unfinished
        reconciliation is finished first."""
        if planning.span_unfinished(state):
            if request.since is not None and state.backfill is not None:
                log.warning("a reconciliation is unfinished; it is finished first, then run the reconciliation again",
                            extra={"stream": state.key, "unfinished_since": timeutil.to_iso(state.backfill.since)})
            return
        live = self.store.read(key.live)
        if live is None or live.done_until is None or live.origin is None:
            log.info("nothing collected yet to reconcile", extra={"stream": state.key})
            return
        now = self.now()
        span = planning.reconciliation_span(self.adapter, origin=live.origin, done_until=live.done_until,
                                            overlap=self.settings.overlap, length=request.span, asked=request.since,
                                            now=now)
        if span is None:
            return
        state.backfill = span
        state.done_until = span.since
        state.reconciliation = {"started_at": timeutil.to_iso(now), "since": timeutil.to_iso(span.since),
                                "until": timeutil.to_iso(span.until), "found": 0, "completed_at": None}

    def _finish(self, state: StreamState, result: StreamResult, failure: BaseException | None) -> None:
        """Seals a digest if one is due, commits what is safe and releases the lease; the run's outcome goes into
        the state for operators."""
        digest_failure = self._seal_digest(state, result, failure)
        kind = state.stream_key.kind
        now = self.now()
        caught_up_to = timeutil.floor_millis(now - self.settings.lag)
        if kind is not Kind.LIVE:
            span = state.backfill
            caught_up_to = span.until if span is not None else (state.done_until or caught_up_to)
            progress = {
                "since": timeutil.to_iso(span.since) if span else None,
                "until": timeutil.to_iso(span.until) if span else None,
                "done_until": timeutil.to_iso(state.done_until) if state.done_until else None,
                "progress": planning.progress(state, self.adapter.order),
            }
            if kind is Kind.BACKFILL:
                result.backfill = progress
            elif state.reconciliation is not None:
                reconciliation = state.reconciliation
                reconciliation["found"] = int(reconciliation.get("found") or 0)  # booked by each commit
                if state.window is None and span is not None and state.done_until is not None \
                        and state.done_until >= span.until and reconciliation.get("completed_at") is None:
                    reconciliation["completed_at"] = timeutil.to_iso(now)
                result.reconciliation = {**reconciliation, "done_until": progress["done_until"],
                                         "progress": progress["progress"]}
        if state.done_until is not None:
            result.done_until = timeutil.to_iso(state.done_until)
            result.backlog_seconds = max(0.0, (caught_up_to - state.done_until).total_seconds())
        if state.newest_event_time is not None:
            result.newest_event_time = timeutil.to_iso(state.newest_event_time)
        if kind is not Kind.LIVE:
            behind = state.window is not None or result.backlog_seconds > 0
        else:
            behind = state.window is not None or state.done_until is None \
                or result.backlog_seconds > planning.MIN_FOLLOW_UP_WINDOW.total_seconds()
        if result.status == "ok" and behind:
            result.status = "backlog"
        state.status = {
            "last_run_at": timeutil.to_iso(now),
            "last_outcome": result.status,
            "last_error": result.error,
            "last_events_archived": result.events_archived,
            "backlog_seconds": result.backlog_seconds,
        }
        if kind is not Kind.LIVE:
            state.status["backfill_progress"] = planning.progress(state, self.adapter.order)
        try:
            self.store.save(state, self.owner, self._lease_until(), release=True)
        except Exception:
            if failure is None:
                raise
            log.exception("could not record the failed run's state; its lease expires by itself",
                          extra={"stream": state.key})
        if digest_failure is not None:
            raise digest_failure

    def _seal_digest(self, state: StreamState, result: StreamResult, failure: BaseException | None
                     ) -> Exception | None:
        """Writes the stream's next digest when one is due. A run that failed at the vendor has committed what it
        fetched, so that is sealed too; after any other failure memory may be ahead of the state, and the next run
        seals. A digest that cannot be written fails the run (after its commit), and the next run writes it."""
        if not (failure is None or isinstance(failure, VendorError)):
            return None
        if not self.digests.due(state, self.now()):
            return None
        try:
            result.digest = self.digests.seal(state, self.now())
        except Exception as exc:
            log.exception("could not write the stream's digest", extra={"stream": state.key})
            if failure is not None:
                return None  # the run fails anyway, with its own error
            result.status = "error"
            result.error = f"digest: {exc}"
            return exc
        return None

    def _lease_until(self) -> int:
        # The lease outlives this invocation by a little, never by a whole schedule period: a run that dies
        # without releasing it blocks at most the next tick's first seconds.
        return int(self.now().timestamp() + self.deadline.remaining() + LEASE_GRACE_SECONDS)

    def save(self, state: StreamState) -> None:
        self.store.save(state, self.owner, self._lease_until())


class _StreamRun:
    """One run over one stream: the state machine of windows, slices and parts."""

    def __init__(self, collector: Collector, key: StreamKey, state: StreamState, result: StreamResult) -> None:
        self.c = collector
        self.adapter = collector.adapter
        self.settings = collector.settings
        self.key = key
        self.kind = key.kind
        # A backfill or a reconciliation reads a fixed span of the past: history is not late, so no overlap.
        self.overlap = timedelta(0) if key.kind is not Kind.LIVE else collector.settings.overlap
        self.archived: ArchivedIds | None = None  # a reconciliation's: what the archive already holds
        self.stream = key.stream
        self.state = state
        self.result = result
        self.cursor_doubted: set[str] = set()  # slices restarted in this run after an unexplained error
        # How many slices of the current window are read at once, where they end, and how many events a part of
        # one holds: set for each window.
        self.readers = 1
        self.slicer = slicing.Slicer(self.adapter, 1, self.settings.page_size)
        self.part_events = self.settings.max_object_events
        # The state, the result and the digest's entries are shared by the slices' readers: each change to them, and
        # each save, happens under this lock; fetching pages and writing objects happen outside it.
        self.lock = threading.RLock()
        self.reading: set[str] = set()  # the slices a reader holds
        self.stop = threading.Event()  # a reader failed: the others commit what they hold and end

    def collect(self) -> None:
        window = self.state.window
        for piece in list(window.slices) if window is not None else []:
            if piece.intent is not None:
                self._recover_intent(window, piece)
        first = True
        while not self.c.deadline.near():
            if self.state.window is None:
                self.state.window = self._plan_window(first)
                if self.state.window is None:
                    return
            first = False
            if not self._collect_window(self.state.window):
                return

    # -- planning ------------------------------------------------------------------------------------------

    def _plan_window(self, first: bool) -> WindowState | None:
        now = self.c.now()
        if self.kind is Kind.LIVE and self.state.done_until is None:
            # Where a backfill will end; set even when no window fits yet (the next run sets it again).
            self.state.origin = planning.first_window_start(self.adapter, self.settings.initial_lookback, now)
        plan = planning.next_window(self.adapter, self.state, self.settings, now, first=first)
        if plan is None:
            return None
        if plan.lost_before is not None:
            log.warning("the vendor's retention has passed part of the uncollected span; events older than %s are "
                        "gone at the vendor", timeutil.to_iso(plan.lost_before), extra={"stream": self.state.key})
        return WindowState(id=window_id(plan.start, plan.end), planned_end=plan.end, read_until=plan.start)

    def _take_slice(self, window: WindowState) -> SliceState | None:
        """The next slice for a reader (under the lock): an open one nobody reads (what a previous run left first),
        else a new one from where the window's span is handed out up to; None when all is handed out, or when the
        slicer waits to see how dense the window is."""
        for piece in window.slices:
            if piece.id not in self.reading:
                self.reading.add(piece.id)
                return piece
        if window.read_until >= window.planned_end or not self.slicer.may_plan(window, len(self.reading)):
            return None
        start = window.read_until
        end = self.slicer.end(start, window)
        piece = SliceState(id=window_id(start, end), start=start, end=end, planned_end=end)
        window.slices.append(piece)
        window.read_until = end
        self.reading.add(piece.id)
        return piece

    # -- a window ------------------------------------------------------------------------------------------

    def _collect_window(self, window: WindowState) -> bool:
        """Reads the window's slices, several at once when the vendor's rate limit leaves room for it (slicing.py),
        each in parts. True when the window is complete, False when the deadline (or a failed slice) stopped it."""
        self.readers = slicing.readers(self.adapter, self.settings, self.state.seen)
        self.slicer = slicing.Slicer(self.adapter, self.readers, self.settings.page_size)
        self.part_events = slicing.part_events(self.settings.max_object_events, self.readers)
        if self.readers == 1:
            self._read_slices(window)
        else:
            with ThreadPoolExecutor(self.readers, thread_name_prefix=f"{self.c.vendor}-slice") as pool:
                futures = [pool.submit(self._read_slices, window) for _ in range(self.readers)]
            failures = [f.exception() for f in futures if f.exception() is not None]
            if failures:
                raise failures[0]  # the first; each reader committed what it had fetched before it stopped
        return self.state.window is not window or window.complete

    def _read_slices(self, window: WindowState) -> None:
        """A reader: takes slices and reads each to its end, until the window is handed out or the run must stop."""
        try:
            while not self.stop.is_set() and not self.c.deadline.near():
                with self.lock:
                    piece = self._take_slice(window)
                    handed_out = window.read_until >= window.planned_end
                if piece is None:
                    if handed_out:
                        return
                    self.slicer.informed.wait(INFORMED_WAIT_SECONDS)
                    continue
                try:
                    done = self._read_slice(window, piece)
                finally:
                    with self.lock:
                        self.reading.discard(piece.id)
                if not done:
                    return
        except BaseException:
            self.stop.set()
            raise

    def _read_slice(self, window: WindowState, piece: SliceState) -> bool:
        """Pages one slice in parts. True when it is read to its end, False when the run must stop."""
        while True:
            part = _Part(PartBuilder(self.key, piece.id, piece.part), {}, piece.cursor, piece.last_page_ids)
            stop: BaseException | None = None
            exhausted = cursor_expired = False
            try:
                exhausted = self._fill(part, window, piece)
            except CursorExpired as exc:
                log.warning("vendor cursor no longer accepted; resuming the slice from what is archived",
                            extra={"stream": self.state.key, "reason": str(exc)})
                cursor_expired = True
            except VendorError as exc:
                if not self._may_be_the_cursor(exc, part, piece):
                    stop = exc
                else:
                    # An error the adapter does not read as a rejected cursor (an envelope it does not know, a
                    # status the vendor never documented) may still be one: a cursor that stays rejected must not
                    # hold the stream for ever. Once per slice and run, the slice restarts from what is archived,
                    # without the cursor; if the error comes back, it is the vendor's and is raised.
                    log.warning("vendor error on a request that carried a stored cursor; resuming the slice from "
                                "what is archived, without it", extra={"stream": self.state.key, "reason": str(exc)})
                    with self.lock:
                        self.cursor_doubted.add(piece.id)
                    cursor_expired = True
            except DeadlineReached as exc:
                log.info("deadline near while fetching", extra={"stream": self.state.key, "reason": str(exc)})
                stop = exc
            except Exception as exc:
                stop = exc
            self._commit(part, window, piece, exhausted)  # what was fetched before a failure is safe to keep
            if stop is not None and not isinstance(stop, DeadlineReached):
                raise stop
            if cursor_expired:
                with self.lock:
                    self.result.cursors_expired += 1
                    self._narrow(window, piece)
                continue
            if exhausted:
                return True
            if stop is not None or self.c.deadline.near() or self.stop.is_set():
                return False

    def _may_be_the_cursor(self, exc: VendorError, part: _Part, piece: SliceState) -> bool:
        """Whether a vendor error on a page request might be the vendor rejecting the stored cursor, and is worth
        one restart of the slice without it: an error answer (not a body of the wrong shape), not a retryable
        failure, not throttling, authentication or a plan without audit logs, and only the first time in this run."""
        return part.cursor is not None and not exc.retryable \
            and not isinstance(exc, AuditLogsUnavailable | MalformedResponse) \
            and exc.status not in (401, 403, 429) and piece.id not in self.cursor_doubted

    def _fill(self, part: _Part, window: WindowState, piece: SliceState) -> bool:
        """Fetches pages into the part until it is full, the slice ends (True) or the run must stop."""
        # The window's first slice starts where the previous window's hint aims; the next window starts no earlier
        # than this window's end less the overlap (the kept ids can only move it later).
        query = Window(piece.start, piece.end, hint=self.state.hint if _first(window, piece) else None,
                       next_start=window.planned_end - self.overlap)
        while part.builder.records < self.part_events:
            if self.c.deadline.near() or self.stop.is_set():
                return False
            page = self.adapter.fetch_page(self.stream, query, part.cursor)
            self._add_page(part, window, piece, page.events)  # first: an unreadable event is named as such
            self._check_end(page, piece)
            if page.end is not None:
                with self.lock:
                    self.result.empty_pages += not page.events
                part.cursor = None
                part.hint = page.hint
                return True
            part.cursor = page.cursor
        return False

    def _check_end(self, page: Page, piece: SliceState) -> None:
        """A slice is read to its end only for a reason the vendor states (End), never because a page is short; the
        two reasons the engine can see for itself are checked."""
        if page.end is None:
            if page.cursor is None:
                raise AuditlakeError(f"{self.c.vendor} adapter returned a page with neither a cursor nor an end")
            return
        if page.end is End.EMPTY and page.events:
            raise AuditlakeError(f"{self.c.vendor} adapter ended a window on a page of {len(page.events)} events "
                                 "as if it were empty")
        if page.end is End.PAST_WINDOW:
            if self.adapter.order is Order.OLDEST_FIRST:
                past = any(self.adapter.event_time(e) >= piece.end for e in page.events)
            else:
                past = any(self.adapter.event_time(e) < piece.start for e in page.events)
            if not past:
                raise AuditlakeError(f"{self.c.vendor} adapter ended a window on an event past it, but no event of "
                                     "the page lies past the window")

    def _add_page(self, part: _Part, window: WindowState, piece: SliceState, events: list[dict[str, Any]]) -> None:
        """Adds a page's new events to the part, all or nothing: a page with an unreadable event is refused whole.

        Slices cover disjoint spans and an event belongs to the one its time falls in, so no two slices archive
        the same event; the window's `carry` and the stream's `seen` are read without the lock (only a commit
        replaces them, and `seen` only once every slice is read)."""
        collected_at = timeutil.to_iso(self.c.now())
        fresh: dict[str, tuple[datetime, bytes]] = {}
        page_ids: set[str] = set()
        out_of_slice = duplicates = 0
        edge: datetime | None = None  # the last event's time: how far, in the vendor's order, the page reached
        for index, event in enumerate(events):
            try:
                if not isinstance(event, dict):
                    raise TypeError(f"an event is a {type(event).__name__}, not an object")
                event_id = self.adapter.event_id(event)
                event_time = edge = self.adapter.event_time(event)
                page_ids.add(event_id)
                if not piece.start <= event_time < piece.end:
                    out_of_slice += 1  # the slice (or window) that covers it collects it
                    continue
                if event_id in self.state.seen or event_id in window.carry or event_id in piece.skip \
                        or event_id in part.events or event_id in part.last_page_ids or event_id in fresh \
                        or (self.archived is not None and self.archived.holds(event_id, event_time)):
                    duplicates += 1
                    continue
                fresh[event_id] = (event_time, record_line(
                    event_id=event_id, event_time=event_time, stream=self.stream, account=self.key.account_name,
                    normalised=self.adapter.normalise(event, self.stream), collected_at=collected_at, raw=event))
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise MalformedResponse(self.c.vendor, f"event #{index} of a page is unreadable "
                                                       f"({type(exc).__name__}: {exc})") from exc
        with self.lock:
            self.result.pages_fetched += 1
            self.result.out_of_window += out_of_slice
            self.result.duplicates_skipped += duplicates
        self.slicer.observe(piece, len(events) - out_of_slice, edge)
        for event_id, (event_time, line) in fresh.items():
            part.events[event_id] = event_time
            part.builder.add(event_time, line)
        part.last_page_ids = page_ids

    def _commit(self, part: _Part, window: WindowState, piece: SliceState, exhausted: bool) -> None:
        """Writes the part (intent, objects, commit); a part without new events only moves the cursor. The state
        is saved under the lock, the objects are written outside it, so slices write while others fetch."""
        with self.lock:
            if not part.events:
                if exhausted:
                    # Saved with the next write or the lease release; a crash before that re-reads from the stored
                    # cursor, which is never the slice's start: a part that reached the end completes in its commit.
                    self._slice_read(window, piece, part.hint)
                elif part.cursor != piece.cursor:
                    piece.cursor = part.cursor
                    piece.last_page_ids = part.last_page_ids
                    self.c.save(self.state)
                return
            piece.intent = Intent(part=piece.part, keys=part.builder.keys())
            self.c.save(self.state)
        entries = []
        for obj in part.builder.seal():
            self.c.archive.put(obj)
            entries.append(entry_of(obj))
        with self.lock:
            self.result.objects_written += len(entries)
            for entry in entries:
                DigestWriter.record(self.state, entry)
            piece.intent = None
            piece.cursor = part.cursor
            piece.last_page_ids = part.last_page_ids
            piece.part += 1
            self._remember(window, piece, part.events)
            if exhausted:
                # In the same write: a stored cursor of None would otherwise mean both "not started" and "finished".
                self._slice_read(window, piece, part.hint)
            self.c.save(self.state)
            if DigestWriter.full(self.state):
                # A busy run seals early, so the objects waiting for a digest never outgrow the state item.
                self.result.digest = self.c.digests.seal(self.state, self.c.now()) or self.result.digest
                self.c.save(self.state)

    def _slice_read(self, window: WindowState, piece: SliceState, hint: Any | None) -> None:
        """A slice is read to its end (under the lock); the window completes with its last one."""
        window.slices.remove(piece)
        self.slicer.read(window, piece)
        self.result.slices_read += 1
        if piece.planned_end >= window.planned_end:
            window.hint = hint  # the window's final slice speaks for the window after it
        if window.complete:
            self._complete(window)

    def _remember(self, window: WindowState, piece: SliceState, events: dict[str, datetime], *,
                  contiguous: bool = True) -> None:
        """Books archived events (under the lock): counts, the slice's frontier to resume from, the ids the next
        window must skip.

        The frontier moves only for `contiguous` events: a whole part, paged from the committed cursor. Part of a
        part (the objects a dying run managed to write) may hold older days and miss newer ones, so resuming from
        its edge after a cursor expiry would skip what it misses."""
        if not events:
            return
        self.state.events_archived += len(events)
        self.result.events_archived += len(events)
        if self.kind is Kind.RECONCILE and self.state.reconciliation is not None:
            # Booked in the commit that archives them: what a run found is reported even if it dies after.
            found = self.state.reconciliation
            found["found"] = int(found.get("found") or 0) + len(events)
        newest = max(events.values())
        if self.state.newest_event_time is None or newest > self.state.newest_event_time:
            self.state.newest_event_time = newest
        if contiguous:
            self._advance_frontier(piece, events)
        overlap_from = timeutil.to_millis(window.planned_end - self.overlap)
        if window.carry_from is not None:
            overlap_from = max(overlap_from, timeutil.to_millis(window.carry_from))
        carry = dict(window.carry)  # a new dict: readers look ids up in the old one without the lock
        for event_id, event_time in events.items():
            millis = timeutil.to_millis(event_time)
            if millis >= overlap_from:
                carry[event_id] = millis
        window.carry, cut = _capped(carry)
        if cut is not None:
            window.carry_from = timeutil.from_millis(cut)

    def _advance_frontier(self, piece: SliceState, events: dict[str, datetime]) -> None:
        # Oldest-first vendors resume after the newest archived instant, newest-first ones before the oldest.
        edge = max(events.values()) if self.adapter.order is Order.OLDEST_FIRST else min(events.values())
        beyond = (lambda t: t > piece.frontier_time) if self.adapter.order is Order.OLDEST_FIRST else \
            (lambda t: t < piece.frontier_time)
        if piece.frontier_time is None or beyond(edge):
            piece.frontier_time = edge
            piece.frontier_ids = set()
        if edge == piece.frontier_time:
            piece.frontier_ids |= {i for i, t in events.items() if t == edge}

    def _narrow(self, window: WindowState, piece: SliceState) -> None:
        """After a cursor expiry: re-query only what is not yet archived of the slice, skipping the ids at its
        frontier."""
        if piece.frontier_time is not None:
            if self.adapter.order is Order.OLDEST_FIRST:
                piece.start = piece.frontier_time
            else:
                piece.end = piece.frontier_time + timeutil.MILLISECOND
            piece.skip |= piece.frontier_ids
        piece.cursor = None
        if _first(window, piece):
            self.state.hint = None  # the vendor may have contradicted it; the narrowed slice is read without it

    def _complete(self, window: WindowState) -> None:
        self.state.hint = window.hint  # for the next window
        if self.state.done_until is None or window.planned_end > self.state.done_until:
            self.state.done_until = window.planned_end
        floor = timeutil.to_millis(self.state.done_until - self.overlap)
        if window.carry_from is not None:
            floor = max(floor, timeutil.to_millis(window.carry_from))
        kept = {i: t for i, t in {**self.state.seen, **window.carry}.items() if t >= floor}
        self.state.seen, cut = _capped(kept)
        if cut is not None:
            floor = cut
        # The next window starts no earlier than the ids kept: it never re-reads what it could not skip.
        self.state.seen_from = timeutil.from_millis(floor) if floor > timeutil.to_millis(
            self.state.done_until - self.overlap) else None
        if self.state.seen_from is not None:
            log.warning("more events inside one overlap than ids are kept; the next window re-reads less",
                        extra={"stream": self.state.key, "from": timeutil.to_iso(self.state.seen_from)})
        DigestWriter.record_window(self.state, window)
        self.state.window = None
        self.result.windows_completed += 1

    # -- recovery ------------------------------------------------------------------------------------------

    def _recover_intent(self, window: WindowState, piece: SliceState) -> None:
        """A previous run died while writing a part of the slice: what it wrote stays archived, and is skipped from
        now on."""
        intent = piece.intent
        assert intent is not None
        recovered: dict[str, datetime] = {}
        written = 0
        for key in intent.keys:
            if self.c.archive.exists(key):
                recovered.update(self.c.archive.read_events(key))
                written += 1
                DigestWriter.record(self.state, self.c.digests.read_stored(key))
        log.warning("recovering an interrupted write", extra={"stream": self.state.key, "keys": intent.keys,
                                                               "events_recovered": len(recovered)})
        piece.skip |= set(recovered)
        piece.part = intent.part + 1
        piece.intent = None
        # The stored cursor is still the one before the part: its pages are read again, the written events skipped.
        self._remember(window, piece, recovered, contiguous=written == len(intent.keys))
        if self.kind is not Kind.RECONCILE:
            self.result.events_archived -= len(recovered)  # archived by the run that died, not by this one
        # A reconciliation counts them here: the run that died never reported what it found, and each one is an
        # event the live collection missed, which the alarm must hear of.
        self.c.save(self.state)


def _first(window: WindowState, piece: SliceState) -> bool:
    """Whether the slice is the window's first (it starts where the window was planned to: the previous window's
    hint is about it)."""
    return window_start(piece.id) == window_start(window.id)


def _capped(ids: dict[str, int]) -> tuple[dict[str, int], int | None]:
    """At most MAX_DEDUP_IDS ids, the newest, cut between two instants so an instant is kept whole; and the
    instant the kept ids begin at when some were dropped (None: all kept)."""
    if len(ids) <= MAX_DEDUP_IDS:
        return ids, None
    times = sorted(ids.values(), reverse=True)
    cut = times[MAX_DEDUP_IDS - 1]
    if times[MAX_DEDUP_IDS] == cut:  # the instant at the limit does not fit whole: keep only what is newer
        cut += 1
    return {i: t for i, t in ids.items() if t >= cut}, cut
