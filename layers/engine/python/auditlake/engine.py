"""The collection engine: closed windows, paged to the end, archived exactly once.

For each stream, a run takes the lease, finishes whatever the last run left (a part being written, a window
being paged), then collects windows `[done_until - overlap, now - lag)` until it is caught up or the deadline
is near. A window is paged in parts; each part is written as it fills, in this order:

1. record the part's object keys in the state (the intent),
2. write the objects (each key once, conditionally),
3. commit: the vendor cursor after the part, the next part number, the ids the next window must skip.

A crash between any two steps leaves either nothing (1), or an intent whose written objects the next run reads
back and skips (2), or a committed part (3). Events the vendor publishes late reappear in the next window's
overlap, where the `seen` ids drop the ones already archived.

A backfill is the same machinery on a stream of its own (`<vendor>#<stream>#backfill`): its windows cover
`[since, origin)`, where `origin` is where the stream's first scheduled window began, so the two never overlap.
History is not late, so a backfill needs no overlap. A reconciliation (reconcile.py) is a backfill of a span the
live collection already completed, on a stream of its own (`<vendor>#<stream>#reconcile`), that skips every id
the archive already holds for that span.

Resume hints: an adapter may end a window with a hint (`Page.hint` on the final page), which the engine stores in
the stream's state, in the same write that completes the window, and hands to every page of the next window
(`Window.hint`), with where that window can start at the earliest (`Window.next_start`: the end less the
overlap). The engine never reads the hint. A cursor expiry drops it, so the window is then read without it; a
window that ends without one clears it. Make uses it to start the next window near its start instead of at
the beginning of its UTC day.

Digests (digest.py) ride on the same commits: a part's commit records its objects for the stream's next digest,
a window's completion the span it covered, and the end of a run seals the digest when one is due.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from auditlake import timeutil
from auditlake.archive import Archive, PartBuilder, safe_key_part, window_id
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
from auditlake.state import Intent, Kind, Span, StateStore, StreamState, WindowState, kind_of, state_key
from auditlake.vendor import End, Order, Page, VendorAdapter, Window

LEASE_GRACE_SECONDS = 15
# Ids kept to skip what the next window re-reads. Two such sets live in a state item while a window is open (the
# stream's and the window's), and 3,000 ids are at most about 130 KB compressed (64-hex ids): the item stays far
# below DynamoDB's 400 KB.
MAX_DEDUP_IDS = 3_000
# Within one run, a further window is only worth opening when at least this much new time has closed.
MIN_FOLLOW_UP_WINDOW = timedelta(minutes=1)

log = logging.getLogger("auditlake")


@dataclass
class StreamResult:
    stream: str
    status: str = "ok"  # ok | backlog | busy | error
    events_archived: int = 0
    duplicates_skipped: int = 0
    out_of_window: int = 0
    objects_written: int = 0
    pages_fetched: int = 0
    windows_completed: int = 0
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
                 deadline: Deadline, owner: str, now: Callable[[], datetime] | None = None,
                 digests: DigestWriter | None = None) -> None:
        self.adapter = adapter
        self.vendor = adapter.vendor
        self.settings = settings
        self.store = store
        self.archive = archive
        self.deadline = deadline
        self.owner = owner
        self.now = now or timeutil.now
        self.digests = digests

    # -- a stream's run ------------------------------------------------------------------------------------

    def run_stream(self, stream: str, backfill_since: datetime | None = None,
                   reconcile: Reconciliation | None = None) -> StreamResult:
        """Collects the stream up to now (minus the lag); or, with `backfill_since`, its history before the
        stream's first window, from that date on; or, with `reconcile`, re-reads a span the live collection has
        completed and archives what the archive lacks (reconcile.py)."""
        kind = Kind.BACKFILL if backfill_since is not None else Kind.RECONCILE if reconcile is not None \
            else Kind.LIVE
        key = state_key(self.vendor, stream, kind)
        result = StreamResult(stream=key)
        if reconcile is not None and not self._reconciliation_due(key, reconcile, result):
            return result  # not due: one read, no lease, no vendor request
        try:
            state = self.store.acquire(key, self.owner, self._lease_until(), int(self.now().timestamp()))
        except StreamBusy as exc:
            log.warning("stream busy, skipping this tick", extra={"stream": key, "reason": str(exc)})
            result.status = "busy"
            return result
        run = _StreamRun(self, stream, state, result, kind=kind)
        failure: BaseException | None = None
        try:
            if backfill_since is not None:
                self._aim_backfill(stream, state, backfill_since)
            elif reconcile is not None:
                self._aim_reconcile(stream, state, reconcile)
                run.archived = ArchivedIds(self.archive, self.vendor, state_key(self.vendor, stream))
            run.collect()
        except BaseException as exc:
            failure = exc
            result.status = "error"
            result.error = str(exc)
            raise
        finally:
            self._finish(state, result, failure)
        return result

    def oldest_available(self, now: datetime) -> datetime | None:
        """The oldest instant the vendor still serves, if it says: its retention (less the margin), its start."""
        bounds = []
        if self.adapter.retention is not None:
            bounds.append(now - self.adapter.retention + self.adapter.retention_margin)
        if self.adapter.earliest is not None:
            bounds.append(self.adapter.earliest)
        return max(bounds) if bounds else None

    def _aim_backfill(self, stream: str, state: StreamState, since: datetime) -> None:
        """Points the backfill stream at `[since, lower edge of what is collected)`; an unfinished span is
        finished first (run again for an earlier date)."""
        span = state.backfill
        if span is not None and (state.done_until is None or state.done_until < span.until):
            if since < span.since:
                log.warning("an earlier backfill is unfinished; it is finished first, then run the backfill again",
                            extra={"stream": state.key, "unfinished_since": timeutil.to_iso(span.since)})
            return
        if span is not None:
            until = span.since  # everything from there on is collected already
        else:
            live = self.store.read(f"{self.vendor}#{stream}")
            if live is None or live.origin is None:
                raise AuditlakeError(f"{self.vendor}#{stream} has not been collected yet: the first scheduled run "
                                     "sets where a backfill ends")
            until = live.origin
        oldest = self.oldest_available(self.now())
        if oldest is not None and since < oldest:
            log.warning("backfill starts at the oldest instant the vendor still serves", extra={
                "stream": state.key, "asked": timeutil.to_iso(since), "oldest": timeutil.to_iso(oldest)})
            since = oldest
        since = timeutil.floor_millis(since)
        if since < until:
            state.backfill = Span(since=since, until=until)
            state.done_until = since

    def _reconciliation_due(self, key: str, request: Reconciliation, result: StreamResult) -> bool:
        """Whether a reconciliation should run now: one is unfinished, one is asked for by hand, or the last one
        began `request.every` ago or more."""
        state = self.store.read(key)
        if state is None or request.since is not None or state.window is not None or state.intent is not None:
            return True
        span = state.backfill
        if span is not None and (state.done_until is None or state.done_until < span.until):
            return True
        last = state.reconciliation or {}
        result.reconciliation = last or None
        started = last.get("started_at")
        return started is None or self.now() - timeutil.parse_time(started) >= request.every

    def _aim_reconcile(self, stream: str, state: StreamState, request: Reconciliation) -> None:
        """Points the reconciliation stream at the span to re-read: `[now - span (or the date asked), the live
        stream's completed time less the overlap)`, from the live stream's origin on and inside the vendor's
        retention. An unfinished reconciliation is finished first."""
        span = state.backfill
        if span is not None and (state.done_until is None or state.done_until < span.until):
            if request.since is not None:
                log.warning("a reconciliation is unfinished; it is finished first, then run the reconciliation again",
                            extra={"stream": state.key, "unfinished_since": timeutil.to_iso(span.since)})
            return
        live = self.store.read(state_key(self.vendor, stream))
        if live is None or live.done_until is None or live.origin is None:
            log.info("nothing collected yet to reconcile", extra={"stream": state.key})
            return
        now = self.now()
        until = timeutil.floor_millis(live.done_until - self.settings.overlap)
        since = max(request.since or now - request.span, live.origin)
        oldest = self.oldest_available(now)
        if oldest is not None:
            since = max(since, oldest)
        since = timeutil.floor_millis(since)
        if since >= until:
            return
        state.backfill = Span(since=since, until=until)
        state.done_until = since
        state.reconciliation = {"started_at": timeutil.to_iso(now), "since": timeutil.to_iso(since),
                                "until": timeutil.to_iso(until), "found": 0, "completed_at": None}

    def _finish(self, state: StreamState, result: StreamResult, failure: BaseException | None) -> None:
        """Seals a digest if one is due, commits what is safe and releases the lease; the run's outcome goes into
        the state for operators."""
        digest_failure = self._seal_digest(state, result, failure)
        kind = kind_of(state.key)
        now = self.now()
        caught_up_to = timeutil.floor_millis(now - self.settings.lag)
        if kind is not Kind.LIVE:
            span = state.backfill
            caught_up_to = span.until if span is not None else (state.done_until or caught_up_to)
            progress = {
                "since": timeutil.to_iso(span.since) if span else None,
                "until": timeutil.to_iso(span.until) if span else None,
                "done_until": timeutil.to_iso(state.done_until) if state.done_until else None,
                "progress": self._backfill_progress(state),
            }
            if kind is Kind.BACKFILL:
                result.backfill = progress
            elif state.reconciliation is not None:
                reconciliation = state.reconciliation
                reconciliation["found"] = int(reconciliation.get("found") or 0) + result.events_archived
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
                or result.backlog_seconds > MIN_FOLLOW_UP_WINDOW.total_seconds()
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
            state.status["backfill_progress"] = self._backfill_progress(state)
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
        if self.digests is None or not (failure is None or isinstance(failure, VendorError)):
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

    def _backfill_progress(self, state: StreamState) -> float:
        """The share of the backfill span archived: completed windows, plus the open window up to its frontier
        (the newest archived instant for oldest-first vendors, the oldest for newest-first ones)."""
        span = state.backfill
        if span is None:
            return 1.0
        start = state.done_until or span.since
        covered = start - span.since
        window = state.window
        if window is not None and window.frontier_time is not None:
            covered += window.frontier_time - start if self.adapter.order is Order.OLDEST_FIRST \
                else window.planned_end - window.frontier_time
        total = span.until - span.since
        return round(min(1.0, max(0.0, covered / total)), 4) if total else 1.0

    def _lease_until(self) -> int:
        # The lease outlives this invocation by a little, never by a whole schedule period: a run that dies
        # without releasing it blocks at most the next tick's first seconds.
        return int(self.now().timestamp() + self.deadline.remaining() + LEASE_GRACE_SECONDS)

    def save(self, state: StreamState) -> None:
        self.store.save(state, self.owner, self._lease_until())


class _StreamRun:
    """One run over one stream: the state machine of windows and parts."""

    def __init__(self, collector: Collector, stream: str, state: StreamState, result: StreamResult, *,
                 kind: Kind = Kind.LIVE) -> None:
        self.c = collector
        self.adapter = collector.adapter
        self.settings = collector.settings
        # A backfill or a reconciliation reads a fixed span of the past: history is not late, so no overlap.
        self.kind = kind
        self.spanned = kind is not Kind.LIVE
        self.overlap = timedelta(0) if self.spanned else collector.settings.overlap
        self.archived: ArchivedIds | None = None  # a reconciliation's: what the archive already holds
        self.stream = stream
        self.stream_key = safe_key_part(state.key)
        self.state = state
        self.result = result
        self.cursor_doubted: set[str] = set()  # windows restarted in this run after an unexplained error

    def collect(self) -> None:
        if self.state.intent is not None:
            self._recover_intent()
        first = True
        while not self.c.deadline.near():
            if self.state.window is None:
                self.state.window = self._plan_window(first)
                if self.state.window is None:
                    return
            first = False
            if not self._collect_window():
                return

    # -- planning ------------------------------------------------------------------------------------------

    def _plan_window(self, first: bool) -> WindowState | None:
        now = self.c.now()
        end = timeutil.floor_millis(now - self.settings.lag)
        done_until = self.state.done_until
        if self.spanned:
            span = self.state.backfill
            if span is None or done_until is None or done_until >= span.until:
                return None
            start, end = done_until, span.until
        elif done_until is None:
            start = now - self.settings.initial_lookback
            oldest = self.c.oldest_available(now)
            if oldest is not None:
                start = max(start, oldest)
            self.state.origin = timeutil.floor_millis(start)  # where a backfill will end
        else:
            if end <= done_until or (not first and end - done_until < MIN_FOLLOW_UP_WINDOW):
                return None
            start = done_until - self.overlap
            if self.state.seen_from is not None:
                start = max(start, self.state.seen_from)
            if self.adapter.retention is not None and start < now - self.adapter.retention:
                log.warning("the vendor's retention has passed part of the uncollected span; events older than "
                            "%s are gone at the vendor", timeutil.to_iso(now - self.adapter.retention),
                            extra={"stream": self.state.key})
        start = timeutil.floor_millis(start)
        if self.adapter.max_window is not None:
            end = min(end, start + self.adapter.max_window)
        if end <= start:
            return None
        return WindowState(id=window_id(start, end), start=start, end=end, planned_end=end)

    # -- a window ------------------------------------------------------------------------------------------

    def _collect_window(self) -> bool:
        """Pages the current window in parts. True when it is complete, False when the deadline stopped it."""
        window = self.state.window
        assert window is not None
        while True:
            part = _Part(PartBuilder(self.c.vendor, self.stream_key, window.id, window.part), {}, window.cursor,
                         window.last_page_ids)
            stop: BaseException | None = None
            exhausted = cursor_expired = False
            try:
                exhausted = self._fill(part, window)
            except CursorExpired as exc:
                log.warning("vendor cursor no longer accepted; resuming the window from what is archived",
                            extra={"stream": self.state.key, "reason": str(exc)})
                cursor_expired = True
                self.result.cursors_expired += 1
            except VendorError as exc:
                if not self._may_be_the_cursor(exc, part, window):
                    stop = exc
                else:
                    # An error the adapter does not read as a rejected cursor (an envelope it does not know, a
                    # status the vendor never documented) may still be one: a cursor that stays rejected must not
                    # hold the stream for ever. Once per window and run, the window restarts from what is archived,
                    # without the cursor; if the error comes back, it is the vendor's and is raised.
                    log.warning("vendor error on a request that carried a stored cursor; resuming the window from "
                                "what is archived, without it", extra={"stream": self.state.key, "reason": str(exc)})
                    self.cursor_doubted.add(window.id)
                    cursor_expired = True
                    self.result.cursors_expired += 1
            except DeadlineReached as exc:
                log.info("deadline near while fetching", extra={"stream": self.state.key, "reason": str(exc)})
                stop = exc
            except Exception as exc:
                stop = exc
            self._commit(part, window, exhausted)  # what was fetched before a failure is safe to keep
            if stop is not None and not isinstance(stop, DeadlineReached):
                raise stop
            if cursor_expired:
                self._narrow(window)
                continue
            if exhausted:
                return True
            if stop is not None or self.c.deadline.near():
                return False

    def _may_be_the_cursor(self, exc: VendorError, part: _Part, window: WindowState) -> bool:
        """Whether a vendor error on a page request might be the vendor rejecting the stored cursor, and is worth
        one restart of the window without it: an error answer (not a body of the wrong shape), not a retryable
        failure, not throttling, authentication or a plan without audit logs, and only the first time in this run."""
        return part.cursor is not None and not exc.retryable \
            and not isinstance(exc, AuditLogsUnavailable | MalformedResponse) \
            and exc.status not in (401, 403, 429) and window.id not in self.cursor_doubted

    def _fill(self, part: _Part, window: WindowState) -> bool:
        """Fetches pages into the part until it is full, the window ends (True) or the deadline nears."""
        # The next window starts no earlier than this end less the overlap (the kept ids can only move it later).
        query = Window(window.start, window.end, hint=self.state.hint, next_start=window.planned_end - self.overlap)
        while part.builder.records < self.settings.max_object_events:
            if self.c.deadline.near():
                return False
            page = self.adapter.fetch_page(self.stream, query, part.cursor)
            self.result.pages_fetched += 1
            self._add_page(part, window, page.events)  # first: an unreadable event is named as such
            self._check_end(page, window)
            if page.end is not None:
                self.result.empty_pages += not page.events
                part.cursor = None
                part.hint = page.hint
                return True
            part.cursor = page.cursor
        return False

    def _check_end(self, page: Page, window: WindowState) -> None:
        """A window is complete only for a reason the vendor states (End), never because a page is short; the two
        reasons the engine can see for itself are checked."""
        if page.end is None:
            if page.cursor is None:
                raise AuditlakeError(f"{self.c.vendor} adapter returned a page with neither a cursor nor an end")
            return
        if page.end is End.EMPTY and page.events:
            raise AuditlakeError(f"{self.c.vendor} adapter ended a window on a page of {len(page.events)} events "
                                 "as if it were empty")
        if page.end is End.PAST_WINDOW:
            if self.adapter.order is Order.OLDEST_FIRST:
                past = any(self.adapter.event_time(e) >= window.end for e in page.events)
            else:
                past = any(self.adapter.event_time(e) < window.start for e in page.events)
            if not past:
                raise AuditlakeError(f"{self.c.vendor} adapter ended a window on an event past it, but no event of "
                                     "the page lies past the window")

    def _add_page(self, part: _Part, window: WindowState, events: list[dict[str, Any]]) -> None:
        """Adds a page's new events to the part, all or nothing: a page with an unreadable event is refused whole."""
        collected_at = timeutil.to_iso(self.c.now())
        fresh: dict[str, tuple[datetime, bytes]] = {}
        page_ids: set[str] = set()
        for index, event in enumerate(events):
            try:
                if not isinstance(event, dict):
                    raise TypeError(f"an event is a {type(event).__name__}, not an object")
                event_id = self.adapter.event_id(event)
                event_time = self.adapter.event_time(event)
                page_ids.add(event_id)
                if not window.start <= event_time < window.end:
                    self.result.out_of_window += 1  # the window that covers it collects it
                    continue
                if event_id in self.state.seen or event_id in window.carry or event_id in window.skip \
                        or event_id in part.events or event_id in part.last_page_ids or event_id in fresh \
                        or (self.archived is not None and self.archived.holds(event_id, event_time)):
                    self.result.duplicates_skipped += 1
                    continue
                fresh[event_id] = (event_time, record_line(
                    event_id=event_id, event_time=event_time, stream=self.stream,
                    normalised=self.adapter.normalise(event, self.stream), collected_at=collected_at, raw=event))
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise MalformedResponse(self.c.vendor, f"event #{index} of a page is unreadable "
                                                       f"({type(exc).__name__}: {exc})") from exc
        for event_id, (event_time, line) in fresh.items():
            part.events[event_id] = event_time
            part.builder.add(event_time, line)
        part.last_page_ids = page_ids

    def _commit(self, part: _Part, window: WindowState, exhausted: bool) -> None:
        """Writes the part (intent, objects, commit); a part without new events only moves the cursor."""
        if not part.events:
            if exhausted:
                # Saved with the next write or the lease release; a crash before that re-reads from the stored
                # cursor, which is never the window's start: a part that reached the end completes in its commit.
                self._complete(window, part.hint)
            elif part.cursor != window.cursor:
                window.cursor = part.cursor
                window.last_page_ids = part.last_page_ids
                self.c.save(self.state)
            return
        self.state.intent = Intent(part=window.part, keys=part.builder.keys())
        self.c.save(self.state)
        for obj in part.builder.seal():
            self.c.archive.put(obj)
            self.result.objects_written += 1
            if self.c.digests is not None:
                DigestWriter.record(self.state, entry_of(obj))
        self.state.intent = None
        window.cursor = part.cursor
        window.last_page_ids = part.last_page_ids
        window.part += 1
        self._remember(window, part.events)
        if exhausted:
            # In the same write: a stored cursor of None would otherwise mean both "not started" and "finished".
            self._complete(window, part.hint)
        self.c.save(self.state)
        if self.c.digests is not None and DigestWriter.full(self.state):
            # A busy run seals early, so the objects waiting for a digest never outgrow the state item.
            self.result.digest = self.c.digests.seal(self.state, self.c.now()) or self.result.digest
            self.c.save(self.state)

    def _remember(self, window: WindowState, events: dict[str, datetime], *, contiguous: bool = True) -> None:
        """Books archived events: counts, the frontier to resume from, the ids the next window must skip.

        The frontier moves only for `contiguous` events: a whole part, paged from the committed cursor. Part of a
        part (the objects a dying run managed to write) may hold older days and miss newer ones, so resuming from
        its edge after a cursor expiry would skip what it misses."""
        if not events:
            return
        self.state.events_archived += len(events)
        self.result.events_archived += len(events)
        newest = max(events.values())
        if self.state.newest_event_time is None or newest > self.state.newest_event_time:
            self.state.newest_event_time = newest
        if contiguous:
            self._advance_frontier(window, events)
        overlap_from = timeutil.to_millis(window.planned_end - self.overlap)
        if window.carry_from is not None:
            overlap_from = max(overlap_from, timeutil.to_millis(window.carry_from))
        for event_id, event_time in events.items():
            millis = timeutil.to_millis(event_time)
            if millis >= overlap_from:
                window.carry[event_id] = millis
        window.carry, cut = _capped(window.carry)
        if cut is not None:
            window.carry_from = timeutil.from_millis(cut)

    def _advance_frontier(self, window: WindowState, events: dict[str, datetime]) -> None:
        # Oldest-first vendors resume after the newest archived instant, newest-first ones before the oldest.
        edge = max(events.values()) if self.adapter.order is Order.OLDEST_FIRST else min(events.values())
        beyond = (lambda t: t > window.frontier_time) if self.adapter.order is Order.OLDEST_FIRST else \
            (lambda t: t < window.frontier_time)
        if window.frontier_time is None or beyond(edge):
            window.frontier_time = edge
            window.frontier_ids = set()
        if edge == window.frontier_time:
            window.frontier_ids |= {i for i, t in events.items() if t == edge}

    def _narrow(self, window: WindowState) -> None:
        """After a cursor expiry: re-query only what is not yet archived, skipping the ids at the frontier."""
        if window.frontier_time is not None:
            if self.adapter.order is Order.OLDEST_FIRST:
                window.start = window.frontier_time
            else:
                window.end = window.frontier_time + timeutil.MILLISECOND
            window.skip |= window.frontier_ids
        window.cursor = None
        self.state.hint = None  # the vendor may have contradicted it; the narrowed window is read without it

    def _complete(self, window: WindowState, hint: Any | None) -> None:
        self.state.hint = hint  # for the next window
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
        if self.c.digests is not None:
            DigestWriter.record_window(self.state, window)
        self.state.window = None
        self.result.windows_completed += 1

    # -- recovery ------------------------------------------------------------------------------------------

    def _recover_intent(self) -> None:
        """A previous run died while writing a part: what it wrote stays archived, and is skipped from now on."""
        intent, window = self.state.intent, self.state.window
        assert intent is not None and window is not None
        recovered: dict[str, datetime] = {}
        written = 0
        for key in intent.keys:
            if self.c.archive.exists(key):
                recovered.update(self.c.archive.read_events(key))
                written += 1
                if self.c.digests is not None:
                    DigestWriter.record(self.state, self.c.digests.read_stored(key))
        log.warning("recovering an interrupted write", extra={"stream": self.state.key, "keys": intent.keys,
                                                               "events_recovered": len(recovered)})
        window.skip |= set(recovered)
        window.part = intent.part + 1
        self.state.intent = None
        # The stored cursor is still the one before the part: its pages are read again, the written events skipped.
        self._remember(window, recovered, contiguous=written == len(intent.keys))
        if self.kind is not Kind.RECONCILE:
            self.result.events_archived -= len(recovered)  # archived by the run that died, not by this one
        # A reconciliation counts them here: the run that died never reported what it found, and each one is an
        # event the live collection missed, which the alarm must hear of.
        self.c.save(self.state)


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
