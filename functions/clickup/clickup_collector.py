"""ClickUp Workspace audit logs: `POST /api/v3/workspaces/{workspace_id}/auditlogs` (operation `queryAuditLog`).

What ClickUp documents, and what this adapter does about it:
- A personal token in `Authorization` as is (`pk_…`, no scheme); OAuth tokens go as `Bearer …`, so the secret's
  token is sent exactly as stored. Only the Workspace owner may call it, and only on the Enterprise plan; a
  non-Enterprise Workspace answers 404 `INSUFFICIENT_WORKSPACE_ACCESS`, reported as such.
- One query returns one `applicability` class. All six are collected, each its own stream
  `<workspace_id>:<applicability>` with its own state.
- `filter.startTime` / `filter.endTime` are epoch ms; whether either bound is inclusive is not documented, so the
  window's bounds are sent as they are and the engine drops rows outside `[start, end)`.
- Paging is a keyset on time: `pageDirection: "before"` walks newest first from `pageTimestamp` ("the timestamp of
  the last row on the previous page"), `pageRows` rows at a time; no maximum is documented. Whether a row AT
  pageTimestamp is returned is not documented either, and many rows can share a millisecond, so a page boundary
  inside a millisecond loses rows (exclusive) or repeats them forever (inclusive). The cursor therefore re-reads
  the boundary millisecond whatever the semantics (next pageTimestamp = that millisecond + 1), carries the keys of
  the rows already returned there and drops them, and when a page brings the walk no lower (one millisecond holds
  more rows than a page), asks again with twice the rows, up to MAX_PAGE_ROWS; beyond that it fails loudly.
  A window ends on a page shorter than asked (or on rows older than the window's start). The re-read costs
  requests: each page after the first repeats at least the row it starts on, so a class of n rows takes
  2 + (n - 100) // 99 pages of 100 (more where a burst sits on a boundary), not n // 100 + 1. Asking for
  100 + the repeated rows would reach that, but no larger page than 100 is known to be honoured, and a page
  silently capped at 100 would then look like the end and lose rows.
- The response has no documented schema (`200: application/json: {}`), no documented row id and no "has more".
  ASSUMPTIONS, tolerated both ways: rows come as a bare list or inside `data` | `logs` | `items` | `events` |
  `auditLogs`; a row's key is its `id` when it has one, else the SHA-256 of its canonical JSON; its time is the
  first of `startTime` | `eventTime` | `timestamp` | `date` | `createdAt`, ISO 8601 or epoch ms.
- Rate limit: 10,000 requests/min per token (Enterprise). Every response carries `X-RateLimit-Limit`, `-Remaining`
  and `-Reset` (epoch seconds): the HTTP client paces by them (a lower plan's limit is learnt from the first
  response) and after a 429 waits for the reset.
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

from auditlake.errors import MalformedResponse, VendorError
from auditlake.lambda_handler import make_handler
from auditlake.records import Normalised, text
from auditlake.timeutil import from_millis, parse_event_time, to_iso, to_millis
from auditlake.vendor import End, Order, Page, VendorAdapter, Window

APPLICABILITIES = ("auth-and-security", "user-activity", "custom-fields", "hierarchy-activity",
                   "agent-settings-activity", "other-activity")
# The largest page asked for to get past one millisecond that holds more rows than a page: 10x the usual page.
MAX_PAGE_ROWS = 1000
ROW_LIST_KEYS = ("data", "logs", "items", "events", "auditLogs")
TIME_FIELDS = ("startTime", "eventTime", "timestamp", "date", "createdAt")
SUCCESS_STATUSES = frozenset({"success", "completed"})
FAILURE_STATUSES = frozenset({"failed", "error", "system_error"})
_ERROR_CODE = re.compile(r"^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+$")


class ClickUp(VendorAdapter):
    vendor = "clickup"
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
            message = ("the Workspace cannot use audit logs: they need the Enterprise plan and the Workspace "
                       "owner's token")
        trace_id = body.get("trace_id")
        if trace_id is not None:
            message = f"{message} (trace_id {trace_id})"  # what ClickUp support asks for
        return code, message

    @classmethod
    def lacks_audit_logs(cls, status: int, code: str | None) -> bool:
        return code == "INSUFFICIENT_WORKSPACE_ACCESS" or status == 402

    def streams(self) -> list[str]:
        return [f"{self.secret['workspace_id']}:{applicability}" for applicability in APPLICABILITIES]

    def fetch_page(self, stream: str, window: Window, cursor: Any | None) -> Page:
        workspace_id, _, applicability = stream.rpartition(":")
        start_ms, end_ms = to_millis(window.start), to_millis(window.end)
        walk = _Walk.resume(cursor, first_before=end_ms, page_size=self.page_size)
        try:
            rows = self._query(workspace_id, applicability, start_ms, end_ms, "before", walk.before, walk.rows)
        except VendorError as exc:
            if exc.status == 400 and walk.rows > self.page_size and walk.edge is not None:
                raise VendorError(self.vendor, f"pageRows={walk.rows} was refused ({exc.message}); it was needed "
                                               f"because at least {walk.count(walk.edge)} {applicability} rows share "
                                               f"the millisecond {to_iso(from_millis(walk.edge))}",
                                  status=exc.status, code=exc.code) from exc
            raise
        if not rows:
            return Page(events=[], end=End.EMPTY)
        keyed = self._keyed(rows)
        fresh = [row for row, event_id, epoch_ms in keyed if not walk.returned(event_id, epoch_ms)]
        lowest = min(epoch_ms for _, _, epoch_ms in keyed)
        stuck = lowest == walk.edge  # still inside the millisecond the previous page ended in
        walk.advance(lowest, [(event_id, epoch_ms) for _, event_id, epoch_ms in keyed])

        if lowest < start_ms:
            return Page(events=fresh, end=End.PAST_WINDOW)
        if len(rows) < walk.rows:
            if walk.rows > self.page_size and stuck:
                self._check_not_capped(workspace_id, applicability, start_ms, walk, len(rows))
            if not fresh:
                return Page(events=[], end=End.EMPTY)
            walk.before, walk.rows = lowest, self.page_size  # STOPGAP: replaced by the cap-safe walk
            return Page(events=fresh, cursor=walk.dump())
        # Re-read the lowest millisecond: its other rows may not have fit on this page.
        before = min(lowest + 1, walk.before)
        if before < walk.before:
            walk.before, walk.rows = before, self.page_size
        elif walk.rows < MAX_PAGE_ROWS:
            walk.rows = min(2 * walk.rows, MAX_PAGE_ROWS)  # the same request again would return the same page
        else:
            raise VendorError(self.vendor, f"more than {MAX_PAGE_ROWS} {applicability} rows share the millisecond "
                                           f"{to_iso(from_millis(lowest))}; ClickUp pages by timestamp alone, so "
                                           "they cannot be paged past without losing rows", code="burst_too_large")
        return Page(events=fresh, cursor=walk.dump())

    def _query(self, workspace_id: str, applicability: str, start_ms: int, end_ms: int, direction: str,
               page_timestamp: int, page_rows: int) -> list[Any]:
        body = {
            "applicability": applicability,
            "filter": {"startTime": start_ms, "endTime": end_ms},
            "pagination": {"pageRows": page_rows, "pageTimestamp": page_timestamp, "pageDirection": direction},
        }
        return self._rows(self.http.post(f"/workspaces/{workspace_id}/auditlogs", body))

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

    def _keyed(self, rows: list[Any]) -> list[tuple[dict[str, Any], str, int]]:
        """(row, key, epoch ms) per row; an unreadable row refuses the page."""
        keyed = []
        for index, row in enumerate(rows):
            try:
                if not isinstance(row, dict):
                    raise TypeError(f"a row is a {type(row).__name__}, not an object")
                keyed.append((row, self.event_id(row), to_millis(self.event_time(row))))
            except (KeyError, TypeError, ValueError) as exc:
                raise MalformedResponse(self.vendor, f"row #{index} of a page is unreadable "
                                                     f"({type(exc).__name__}: {exc})") from exc
        return keyed

    def _check_not_capped(self, workspace_id: str, applicability: str, start_ms: int, walk: _Walk, got: int) -> None:
        """A short page after asking for more rows, still inside one millisecond: either the window holds nothing
        more, or ClickUp silently serves fewer rows than asked (no maximum is documented) and the rest would be
        lost. Reading the window oldest first tells them apart: any row older than that millisecond, or a row of it
        not yet returned, means ClickUp capped the page."""
        edge = walk.edge
        assert edge is not None
        rows = self._query(workspace_id, applicability, start_ms, edge + 1, "after", start_ms - 1, got)
        for _, event_id, epoch_ms in self._keyed(rows):
            if epoch_ms < edge or (epoch_ms == edge and not walk.returned(event_id, epoch_ms)):
                raise VendorError(self.vendor, f"asked for {walk.rows} rows, ClickUp returned {got}: it appears to "
                                               f"cap pageRows, and the {applicability} rows of the millisecond "
                                               f"{to_iso(from_millis(edge))} fill such a page, so the walk cannot "
                                               "get past them without losing rows", code="page_rows_capped")

    def event_id(self, event: dict[str, Any]) -> str:
        # ASSUMPTION: `id` is the row's key when present. Without one, the row's content is: SHA-256 of its
        # canonical JSON (sorted keys, compact), stable across requests since rows are served the same each time.
        row_id = event.get("id")
        if row_id is not None and row_id != "":
            if isinstance(row_id, bool) or not isinstance(row_id, str | int):
                raise TypeError(f"id is {row_id!r}")
            return str(row_id)
        canonical = json.dumps(event, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def event_time(self, event: dict[str, Any]) -> datetime:
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
            outcome="success" if status in SUCCESS_STATUSES else "failure" if status in FAILURE_STATUSES else None,
        )


class _Walk:
    """Where a window's newest-first walk is: the next pageTimestamp and pageRows, the millisecond the last page
    ended in (`edge`), and the keys of the rows already returned at `edge` and `edge + 1` (the boundary rows a
    re-read brings back, stored as short digests to keep the state item small)."""

    def __init__(self, before: int, rows: int, edge: int | None, returned: dict[int, set[str]]) -> None:
        self.before = before
        self.rows = rows
        self.edge = edge
        self._returned = returned

    @classmethod
    def resume(cls, cursor: Any | None, *, first_before: int, page_size: int) -> _Walk:
        if cursor is None:
            # "If you are requesting the first page, this should be the current timestamp": the window's end.
            return cls(first_before, page_size, None, {})
        return cls(int(cursor["before"]), int(cursor["rows"]), cursor["edge"],
                   {int(epoch_ms): set(digests) for epoch_ms, digests in cursor["returned"].items()})

    def dump(self) -> dict[str, Any]:
        return {"before": self.before, "rows": self.rows, "edge": self.edge,
                "returned": {str(epoch_ms): sorted(digests) for epoch_ms, digests in self._returned.items()}}

    def count(self, epoch_ms: int) -> int:
        return len(self._returned.get(epoch_ms, ()))

    def returned(self, event_id: str, epoch_ms: int) -> bool:
        return _digest(event_id) in self._returned.get(epoch_ms, ())

    def advance(self, lowest: int, page: list[tuple[str, int]]) -> None:
        """Books a page: only what a re-read of `lowest` (from `lowest + 1` down) can bring back is kept."""
        kept = {epoch_ms: digests for epoch_ms, digests in self._returned.items() if lowest <= epoch_ms <= lowest + 1}
        for event_id, epoch_ms in page:
            if lowest <= epoch_ms <= lowest + 1:
                kept.setdefault(epoch_ms, set()).add(_digest(event_id))
        self.edge, self._returned = lowest, kept


def _digest(event_id: str) -> str:
    return hashlib.sha256(event_id.encode()).hexdigest()[:16]


handler = make_handler(ClickUp)
