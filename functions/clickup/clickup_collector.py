"""ClickUp Workspace audit logs: `POST /api/v3/workspaces/{workspace_id}/auditlogs` (operation `queryAuditLog`).

What ClickUp documents, and what this adapter does about it:
- A personal token in `Authorization` as is (`pk_…`, no scheme); OAuth tokens go as `Bearer …`, so the secret's
  token is sent exactly as stored. Only the Workspace owner may call it, and only on the Enterprise plan. A plan
  without audit logs is reported as such (AuditLogsUnavailable) whatever ClickUp answers: 404
  `INSUFFICIENT_WORKSPACE_ACCESS` (a third party's report), 402, or 403 (also what a non-owner's token gets).
- One query returns one `applicability` class. All six of the current spec are collected, each its own stream
  `<workspace_id>:<applicability>` with its own state. An older spec revision had four: a Workspace that refuses a
  class (400 naming `applicability`) fails that class's stream with an error naming it, every run, while the other
  classes are collected in the same run. Leaving a class out silently would stop archiving a class of security
  events on a 400 that may as well be a regression at ClickUp; its state does not move, so it resumes where it
  stopped once ClickUp accepts it.
- Times are epoch ms. Whether `filter.startTime` / `filter.endTime` are inclusive is not documented: the query asks
  for `[start - 1 ms, end]`, which holds the window `[start, end)` under either reading, and the engine drops the
  rows outside it.
- Paging is a keyset on time, newest first (`pageDirection: "before"` from `pageTimestamp`, `pageRows` a page).
  Not documented: the largest page, whether a row AT pageTimestamp is served, and which time the keyset and the
  filter compare (rows carry `startTime` and `endTime`). So:
  * A short page is never taken for the end. ClickUp may cap pages silently, so the last millisecond of a page may
    be cut: the next page starts at that millisecond again (`pageTimestamp` = it + 1 ms, or itself once ClickUp
    has shown it serves a row at pageTimestamp) and the rows already returned are dropped.
  * The walk tracks the largest page ClickUp has served (at least 10, the pageRows of the spec's own example;
    carried from window to window in the resume hint, with the inclusivity learnt). ASSUMPTION: a cap, if any, is
    a fixed number of rows. A page shorter than both what was asked and that size then holds everything the query
    matched, and the walk steps below its lowest millisecond, where ClickUp must answer an empty page: only that
    (or a row older than the window) ends a window. Anything else there (a cap that shrank) makes the adapter
    raise CursorExpired: the engine reads the window again from what it archived, without the hint.
  * A page of rows all in the millisecond it starts at brings the walk no lower: when ClickUp served all it was
    asked, the page is asked again twice as large (up to MAX_PAGE_ROWS); when it served fewer than asked and no
    more than it ever served, one query without a filter tells a cap from a complete page. A millisecond with
    more rows than ClickUp serves a page cannot be paged by timestamp: a clear error (`burst_too_large`) naming
    the class, the millisecond and the counts, and the cursor does not move past it.
  * Rows must come in `startTime` order, inside the queried span: a row that does not (ClickUp keys by `endTime`
    or an internal time) fails the page (`paging_key_mismatch`, naming the key that explains it), since a walk by
    startTime could then skip rows for good.
  Each page after the first repeats at least the row it starts on: a class of n rows served c to a page takes
  1 + ceil((n - c) / (c - 1)) pages (more where a burst sits on a page boundary), then the empty page.
- The response has no documented schema (`200: application/json: {}`), no documented row id and no "has more".
  ASSUMPTIONS, tolerated both ways: rows come as a bare list or inside `data` | `logs` | `items` | `events` |
  `auditLogs`; a row's time is the first of `startTime` | `eventTime` | `timestamp` | `date` | `createdAt`, ISO
  8601 or epoch ms. A row's key is its `id` when it has one. Without one (the only published row has none), two
  byte-identical rows in one millisecond (a burst of failed logins) are two events: the key is the SHA-256 of the
  row's canonical JSON, then `-<k>` for its k-th further copy on the page. Every page reads each millisecond from
  its first row, so the k-th copy is the same key on every read, in every window.
- `eventStatus` (success, failed, warn, skipped, started, completed, error, system_error) maps to the outcome
  column per OUTCOMES.
- Rate limit: 10,000 requests/min per token (Enterprise). Every response carries `X-RateLimit-Limit`, `-Remaining`
  and `-Reset` (epoch seconds): the HTTP client paces by them (a lower plan's limit is learnt from the first
  response) and after a 429, and only a 429, waits for the reset; a 5xx backs off.
- Errors: v3 operations answer `{status, message, trace_id, timestamp}`, v2 ones `{err, ECODE}`; which one this
  operation uses is not documented, so both are read.
- Retention is not documented ("limits vary by plan"): no retention is assumed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from auditlake.errors import CursorExpired, MalformedResponse, VendorError
from auditlake.records import Normalised, parsed_json_encoder, text
from auditlake.timeutil import from_millis, parse_event_time, to_iso, to_millis
from auditlake.vendor import End, Order, Page, VendorAdapter, Window

APPLICABILITIES = ("auth-and-security", "user-activity", "custom-fields", "hierarchy-activity",
                   "agent-settings-activity", "other-activity")
# The pageRows of the spec's own example request: a page of that many rows is taken as served, so a shorter page
# holds all the query matched even before ClickUp has served a larger one.
DOCUMENTED_PAGE_ROWS = 10
# The largest page asked for to get past one millisecond that holds more rows than a page: 10x the usual page.
MAX_PAGE_ROWS = 1000
ROW_LIST_KEYS = ("data", "logs", "items", "events", "auditLogs")
TIME_FIELDS = ("startTime", "eventTime", "timestamp", "date", "createdAt")
# eventStatus -> the outcome column ("success" | "failure" | None). `warn`: done, with a warning; `skipped`: not
# done, and not a failure either; `started`: not over yet (a later row says how it ended).
OUTCOMES: dict[str, str | None] = {
    "success": "success", "completed": "success", "warn": "success",
    "failed": "failure", "error": "failure", "system_error": "failure",
    "skipped": None, "started": None,
}
_ERROR_CODE = re.compile(r"^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+$")


class _Row(dict[str, Any]):
    """A row as served, with its key and its time in epoch ms: the key depends on the page it came on (the
    ordinal of an identical copy), so the adapter computes it once and hands the engine the row that carries it."""

    __slots__ = ("key", "ms")

    def __init__(self, row: dict[str, Any], key: str, ms: int) -> None:
        super().__init__(row)
        self.key = key
        self.ms = ms


class ClickUp(VendorAdapter):
    vendor = "clickup"
    title = "ClickUp"
    default_base_url = "https://api.clickup.com/api/v3"
    secret_fields = ("token", "workspace_id")
    order = Order.NEWEST_FIRST
    rate_limit_per_minute = 10_000  # developer.clickup.com/docs/rate-limits: per token, Enterprise plan
    audit_log_requirement = "ClickUp's audit logs need the Enterprise plan and the Workspace owner's token"

    @classmethod
    def auth_headers(cls, secret: Mapping[str, str]) -> dict[str, str]:
        return {"Authorization": secret["token"].strip()}

    @classmethod
    def error_details(cls, status: int, body: Any) -> tuple[str | None, str]:
        if not isinstance(body, dict):
            return None, f"unexpected error body: {str(body)[:120]}"
        message = text(body.get("message")) or text(body.get("err")) or "error"
        code = text(body.get("ECODE")) or text(body.get("code"))
        if code is None and _ERROR_CODE.match(message):
            code = message  # a bare code as the message, e.g. INSUFFICIENT_WORKSPACE_ACCESS
        if code == "INSUFFICIENT_WORKSPACE_ACCESS":
            message = "the Workspace cannot use audit logs"
        trace_id = body.get("trace_id")
        if trace_id is not None:
            message = f"{message} (trace_id {trace_id})"  # what ClickUp support asks for
        return code, message

    @classmethod
    def lacks_audit_logs(cls, status: int, code: str | None) -> bool:
        # 402 and 403 are what other APIs answer for a plan without the feature; a 403 is also a token that is not
        # the owner's, which the requirement names too.
        return code == "INSUFFICIENT_WORKSPACE_ACCESS" or status in (402, 403)

    def streams(self) -> list[str]:
        return [f"{self.secret['workspace_id']}:{applicability}" for applicability in APPLICABILITIES]

    # -- the walk ------------------------------------------------------------------------------------------------

    def fetch_page(self, stream: str, window: Window, cursor: Any | None) -> Page:
        workspace_id, _, applicability = stream.rpartition(":")
        start_ms, end_ms = to_millis(window.start), to_millis(window.end)
        walk = _Walk.resume(cursor, window.hint, first_before=end_ms, page_size=self.page_size)
        # The window [start, end) under either reading of the filter's bounds; the engine drops what lies outside.
        low, high = start_ms - 1, end_ms
        asked, before = walk.rows, walk.before
        rows = self._keyed(self._query(workspace_id, applicability, walk, low, high))
        self._check_paging_key(rows, applicability, low, min(high, before))
        largest = walk.served
        walk.served = max(walk.served, len(rows))

        if walk.below is not None:
            # The page before held everything below its top: ClickUp must now answer nothing.
            if rows:
                raise CursorExpired(f"{applicability}: a page of {walk.below} rows (asked for {asked}) held all "
                                    f"ClickUp had below it, yet {len(rows)} more rows followed: its page size is not "
                                    "fixed; the window is read again from what is archived")
            return Page(events=[], end=End.EMPTY, hint=walk.hint())
        if not rows:
            if walk.edge is not None:  # the millisecond asked for again had rows a moment ago
                raise CursorExpired(f"{applicability}: the rows of {to_iso(from_millis(walk.edge))} ClickUp served "
                                    "are gone; the window is read again from what is archived")
            return Page(events=[], end=End.EMPTY, hint=walk.hint())

        at_bound = any(row.ms == before for row in rows)
        if at_bound:
            walk.inclusive = True  # a row AT pageTimestamp was served
        elif walk.known(before):
            # Rows at pageTimestamp exist, and an inclusive answer would have begun with them.
            if walk.inclusive:
                walk.inclusive = False
                walk.before = before + 1  # re-read the edge under the other reading; nothing of this page is used
                return Page(events=[], cursor=walk.dump())
            walk.inclusive = False

        fresh = [row for row in rows if not walk.returned(row)]
        walk.book(rows)
        lowest = rows[-1].ms
        if lowest < start_ms and any(row.ms < start_ms for row in fresh):
            return Page(events=fresh, end=End.PAST_WINDOW, hint=walk.hint())
        if len(rows) < asked and len(rows) < largest:
            return Page(events=fresh, cursor=walk.step_below(lowest, len(rows)))
        if walk.edge is None or lowest < walk.edge:
            walk.move_to(lowest, self.page_size)
            return Page(events=fresh, cursor=walk.dump())
        # No lower than the page before: every row of this page is in that page's last millisecond (or, under an
        # inclusive pageTimestamp, the one above it).
        edge = walk.edge
        if at_bound:
            walk.before = edge  # now known inclusive: ask for the edge alone
            return Page(events=fresh, cursor=walk.dump())
        if len(rows) == asked:
            if asked >= MAX_PAGE_ROWS:
                raise self._burst(applicability, edge, len(rows), asked, f"ClickUp served all {asked} asked for")
            walk.rows = min(2 * asked, MAX_PAGE_ROWS)  # the same request would return the same page
            return Page(events=fresh, cursor=walk.dump())
        # Fewer than asked, and as many as ClickUp ever served in a page: a cap, or the edge's last rows?
        probe = len(self._query(workspace_id, applicability, walk, None, None, before=end_ms))
        walk.served = max(walk.served, probe)
        if probe > len(rows):
            return Page(events=fresh, cursor=walk.step_below(edge, len(rows)))
        raise self._burst(applicability, edge, len(rows), asked,
                          f"ClickUp never served more than {walk.served} rows a page (asked for {asked})")

    def _burst(self, applicability: str, edge: int, count: int, asked: int, served: str) -> VendorError:
        return VendorError(self.vendor, f"at least {count} {applicability} rows share the millisecond "
                                        f"{to_iso(from_millis(edge))} and {served}: ClickUp pages by timestamp "
                                        "alone, so the rest of that millisecond cannot be read without losing rows",
                           code="burst_too_large")

    def _query(self, workspace_id: str, applicability: str, walk: _Walk, low: int | None, high: int | None,
               *, before: int | None = None) -> list[Any]:
        body: dict[str, Any] = {"applicability": applicability}
        if low is not None and high is not None:
            body["filter"] = {"startTime": low, "endTime": high}
        page_timestamp = walk.before if before is None else before
        body["pagination"] = {"pageRows": walk.rows, "pageTimestamp": page_timestamp, "pageDirection": "before"}
        try:
            return self._rows(self.http.post(f"/workspaces/{workspace_id}/auditlogs", body))
        except VendorError as exc:
            if exc.status != 400:
                raise
            if "applicability" in exc.message:
                raise VendorError(self.vendor, f"this Workspace refuses the log class {applicability} "
                                               f"({exc.message}); the other classes are collected, this one is not "
                                               "until ClickUp accepts it", status=400,
                                  code=exc.code or "applicability_refused") from exc
            if walk.rows > self.page_size and walk.edge is not None:
                raise VendorError(self.vendor, f"pageRows={walk.rows} was refused ({exc.message}); it was needed "
                                               f"because at least {walk.count(walk.edge)} {applicability} rows share "
                                               f"the millisecond {to_iso(from_millis(walk.edge))}",
                                  status=exc.status, code=exc.code) from exc
            raise

    def _rows(self, body: Any) -> list[Any]:
        """The rows of a response. ASSUMPTION (no schema is published): a bare list, or an object holding the
        list under one of ROW_LIST_KEYS."""
        if isinstance(body, list):
            return body
        if isinstance(body, dict):
            for key in ROW_LIST_KEYS:
                if isinstance(body.get(key), list):
                    return body[key]
        shape = f"an object with keys {sorted(body)[:8]}" if isinstance(body, dict) else type(body).__name__
        raise MalformedResponse(self.vendor, f"queryAuditLog returned {shape}, neither a list of rows nor an object "
                                             f"with one of {'|'.join(ROW_LIST_KEYS)}")

    def _keyed(self, rows: list[Any]) -> list[_Row]:
        """The page's rows with their keys and times; an unreadable row refuses the page. A row without an id is
        keyed by its content and its ordinal among identical rows on the page (identical rows share a time)."""
        keyed: list[_Row] = []
        copies: dict[str, int] = {}  # not a Counter: its __missing__ is a Python call, and every digest misses once
        for index, row in enumerate(rows):
            try:
                if not isinstance(row, dict):
                    raise TypeError(f"a row is a {type(row).__name__}, not an object")
                epoch_ms = to_millis(self.event_time(row))
                key = _own_id(row)
                if key is None:
                    digest = _content_digest(row)
                    copy = copies.get(digest, 0)
                    copies[digest] = copy + 1
                    key = digest if copy == 0 else f"{digest}-{copy}"
                keyed.append(_Row(row, key, epoch_ms))
            except (KeyError, TypeError, ValueError) as exc:
                raise MalformedResponse(self.vendor, f"row #{index} of a page is unreadable "
                                                     f"({type(exc).__name__}: {exc})") from exc
        return keyed

    def _check_paging_key(self, rows: list[_Row], applicability: str, low: int, high: int) -> None:
        """Rows keyed by startTime come newest first, inside [low, high]. One that is not can only be explained by
        ClickUp filtering and paging by another time: then a walk by startTime may skip rows for good."""
        previous: int | None = None
        for index, row in enumerate(rows):
            if low <= row.ms <= high and (previous is None or row.ms <= previous):
                previous = row.ms
                continue
            where = "outside the queried span" if not low <= row.ms <= high else "after an older row"
            raise VendorError(self.vendor, f"{applicability} row #{index} has the time {to_iso(from_millis(row.ms))}, "
                                           f"{where} [{to_iso(from_millis(low))}, {to_iso(from_millis(high))}]: "
                                           f"ClickUp filters and pages by {_paging_key(rows, low, high)}, not by the "
                                           "row's startTime, and a walk by startTime could skip rows for good",
                              code="paging_key_mismatch")

    # -- rows ----------------------------------------------------------------------------------------------------

    def event_id(self, event: dict[str, Any]) -> str:
        if isinstance(event, _Row):
            return event.key  # keyed with its page (the ordinal of an identical copy)
        key = _own_id(event)
        return key if key is not None else _content_digest(event)

    def event_time(self, event: dict[str, Any]) -> datetime:
        if isinstance(event, _Row):
            return from_millis(event.ms)  # read with its page: the same instant, not parsed again
        for name in TIME_FIELDS:  # ASSUMPTION: the first of these the row has, ISO 8601 or epoch ms
            if event.get(name) is not None:
                return parse_event_time(event[name], name)
        raise KeyError(f"none of {'|'.join(TIME_FIELDS)}")

    def normalise(self, event: dict[str, Any], stream: str) -> Normalised:
        status = text(event.get("eventStatus"))
        user_id, email = text(event.get("userId")), text(event.get("userEmail"))
        return Normalised(
            action=text(event.get("eventType")),
            category=stream.rpartition(":")[2],  # rows do not say their class; the query that returned them does
            actor_id=user_id,
            actor_email=email,
            actor_name=text(event.get("userName")),
            actor_type="user" if user_id or email else None,
            source_ip=text(event.get("clientIp")),
            outcome=OUTCOMES.get(status) if status is not None else None,
        )


def _own_id(row: dict[str, Any]) -> str | None:
    """The row's `id`, when it has one (ASSUMPTION: unique)."""
    row_id = row.get("id")
    if row_id is None or row_id == "":
        return None
    if isinstance(row_id, bool) or not isinstance(row_id, str | int):
        raise TypeError(f"id is {row_id!r}")
    return str(row_id)


# json.dumps(row, sort_keys=True, separators=(",", ":")), without building an encoder per row.
_canonical = parsed_json_encoder(json.JSONEncoder(sort_keys=True, separators=(",", ":")))


def _content_digest(row: dict[str, Any]) -> str:
    """SHA-256 of the row's canonical JSON (sorted keys, compact): the same row, the same digest on every read."""
    return hashlib.sha256(_canonical(row).encode()).hexdigest()


def _paging_key(rows: list[_Row], low: int, high: int) -> str:
    """The row time that would explain the page: `endTime` when it is in order and inside [low, high]."""
    previous: int | None = None
    for row in rows:
        try:
            epoch_ms = to_millis(parse_event_time(row["endTime"], "endTime"))
        except (KeyError, TypeError, ValueError):
            return "an internal time"
        if not low <= epoch_ms <= high or (previous is not None and epoch_ms > previous):
            return "an internal time"
        previous = epoch_ms
    return "endTime"


class _Walk:
    """Where a window's newest-first walk is, and what it has learnt of ClickUp's paging.

    `before` and `rows`: the next pageTimestamp and pageRows. `edge`: the lowest millisecond reached, which the next
    page reads again from its first row; `returned`: digests of the keys already returned at `edge` and `edge + 1`
    (what a re-read brings back). `served`: the largest page ClickUp has served; `inclusive`: whether it serves a
    row AT pageTimestamp (None: not seen yet). `below`: set (to the size of the page that proved it) once the walk
    has stepped below everything ClickUp holds in the window, where only an empty page may follow.
    """

    def __init__(self, before: int, rows: int, *, edge: int | None = None,
                 returned: dict[int, set[str]] | None = None, served: int = DOCUMENTED_PAGE_ROWS,
                 inclusive: bool | None = None, below: int | None = None) -> None:
        self.before = before
        self.rows = rows
        self.edge = edge
        self._returned = returned or {}
        self.served = served
        self.inclusive = inclusive
        self.below = below

    @classmethod
    def resume(cls, cursor: Any | None, hint: Any | None, *, first_before: int, page_size: int) -> _Walk:
        if cursor is None:
            # "If you are requesting the first page, this should be the current timestamp": the window's end.
            served, inclusive = DOCUMENTED_PAGE_ROWS, None
            if isinstance(hint, dict):  # what the stream's last window learnt (advice; contradictions are caught)
                if isinstance(hint.get("served"), int) and not isinstance(hint["served"], bool):
                    served = max(served, hint["served"])
                if isinstance(hint.get("inclusive"), bool):
                    inclusive = hint["inclusive"]
            return cls(first_before, page_size, served=served, inclusive=inclusive)
        return cls(int(cursor["before"]), int(cursor["rows"]), edge=cursor["edge"],
                   returned={int(epoch_ms): set(digests) for epoch_ms, digests in cursor["returned"].items()},
                   # cursors written before these were learnt: nothing known
                   served=int(cursor.get("served", DOCUMENTED_PAGE_ROWS)), inclusive=cursor.get("inclusive"),
                   below=cursor.get("below"))

    def dump(self) -> dict[str, Any]:
        return {"before": self.before, "rows": self.rows, "edge": self.edge,
                "returned": {str(epoch_ms): sorted(digests) for epoch_ms, digests in self._returned.items()},
                "served": self.served, "inclusive": self.inclusive, "below": self.below}

    def hint(self) -> dict[str, Any]:
        return {"served": self.served, "inclusive": self.inclusive}

    def count(self, epoch_ms: int) -> int:
        return len(self._returned.get(epoch_ms, ()))

    def known(self, epoch_ms: int) -> bool:
        return bool(self._returned.get(epoch_ms))

    def returned(self, row: _Row) -> bool:
        digests = self._returned.get(row.ms)
        return digests is not None and _digest(row.key) in digests  # no hash for a row at no remembered instant

    def book(self, rows: list[_Row]) -> None:
        """Remembers the page's rows a re-read of its lowest millisecond (from the one above it) can bring back."""
        lowest = rows[-1].ms
        for row in rows:
            if lowest <= row.ms <= lowest + 1:
                self._returned.setdefault(row.ms, set()).add(_digest(row.key))

    def move_to(self, lowest: int, page_size: int) -> None:
        """The walk got lower: the next page reads `lowest` again from its first row."""
        self._returned = {epoch_ms: digests for epoch_ms, digests in self._returned.items()
                          if lowest <= epoch_ms <= lowest + 1}
        self.edge, self.rows = lowest, page_size
        self.before = lowest if self.inclusive else lowest + 1

    def step_below(self, lowest: int, page_rows: int) -> dict[str, Any]:
        """The page held all the query matched: nothing is left at or below `lowest - 1`, so pageTimestamp there
        asks for nothing under either reading of it, and the answer must be empty."""
        self.edge, self.below, self.before = lowest, page_rows, lowest - 1
        return self.dump()


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]  # short: the state item stays small
