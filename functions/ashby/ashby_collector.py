"""Ashby's audit log (beta): `POST https://api.ashbyhq.com/auditLog.list`.

What Ashby documents, and what this adapter does about it:
- HTTP Basic auth with the API key as username and an empty password; the key needs the auditLogsRead permission
  and the organization the Audit Logs feature. `Accept: application/json; version=1` as in Ashby's examples.
- RPC style: every call is a POST with a JSON body; `limit` is at most 100 (sent as page_size, capped).
- `startDate` alone silently means `[startDate, startDate + 24 h]`, `endDate` alone or neither a 24-hour window:
  both bounds are always sent. An explicit span is at most 18 months: windows are capped at 540 days, so a first
  run or a long outage is collected in several windows.
- Entries come newest first. `nextCursor` is valid only with the same dates and filters, so an interrupted window
  is resumed with its stored bounds and cursor. The last page has `moreDataAvailable: false`;
  `moreDataAvailable: true` without a `nextCursor`, or with the cursor just sent, is malformed (no endless loop,
  no silent stop).
- Errors mostly arrive as HTTP 200 `{"success": false, "errorInfo": {"code", "message", "requestId"}}`; an older
  revision of the responses page shows `{"success": false, "errors": ["requested_job_not_found"]}`, a list of
  strings without a code field. The code is read from either form, at any status: `errorInfo.code`, else a known
  code a string names (the bare code, or a sentence naming it), else a string that is itself a bare code. Every
  error is a VendorError, never an empty success.
- `audit_logs_not_enabled` (documented) and `missing_endpoint_permission` (a 403) are AuditLogsUnavailable, whatever
  the status, and so is a 404: the endpoint is in beta and "may not be available for all organizations".
- `warnings` are logged. A missing key is a 401, a wrong key a 403. auditLog.list's rejected-cursor code is
  `cursor_invalid`; the changelog adds the generic `next_cursor_expired` and `invalid_next_cursor`.

What Ashby leaves open, and how the adapter stays exact anyway:
- Cursor lifetime: cursors expire after an undocumented time, and an expired one stays expired. A rejected cursor
  (any of the three codes, in either envelope) raises CursorExpired and the engine re-queries the window up to
  the oldest archived instant. An error naming no code (a sentence in the older envelope) on a request that
  carried a cursor restarts the window the same way, once per window and run (the engine's rule): no stream stays
  stuck on a stored cursor.
- Bound inclusivity: startDate is sent 1 ms before the window's start, so an entry at the start is returned
  whether or not startDate is inclusive; the engine drops whatever falls outside the window (e.g. an entry at an
  inclusive endDate, which the next window collects).
- Entry schema: the id is `id`; the time the first of `createdAt`, `occurredAt`, `timestamp`. An entry with none
  of them refuses its page (MalformedResponse naming the fields it has), so nothing is archived under a guessed
  time. Unknown categories and target types are valid ("treat unknown values as valid").
- A full last page: whether it says `moreDataAvailable: false` itself is not documented; if it says true, the
  empty page after it says false, and that ends the window (one request more, never a guess from the page size).
- Rate limits and retention: requests are paced at an assumed 300/min, a 429 lowers the pace and its Retry-After
  is honoured by the HTTP client.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from auditlake.errors import AuditLogsUnavailable, CursorExpired, MalformedResponse, VendorError
from auditlake.records import Normalised, text
from auditlake.timeutil import MILLISECOND, parse_event_time, to_iso
from auditlake.vendor import End, Order, Page, VendorAdapter, Window

ENDPOINT = "/auditLog.list"
MAX_LIMIT = 100
TIME_FIELDS = ("createdAt", "occurredAt", "timestamp")
# Ashby's cursor codes: auditLog.list's own, and the generic pagination ones from the changelog.
CURSOR_CODES = frozenset({"cursor_invalid", "next_cursor_expired", "invalid_next_cursor"})
# The organization lacks the Audit Logs feature; the key lacks the auditLogsRead permission (HTTP 403).
UNAVAILABLE_CODES = frozenset({"audit_logs_not_enabled", "missing_endpoint_permission"})
# Every code auditLog.list documents, and the generic paging ones: what the older envelope's strings are read for.
KNOWN_CODES = CURSOR_CODES | UNAVAILABLE_CODES | {"invalid_input"}
_CODE = re.compile(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b")

log = logging.getLogger("auditlake")


class Ashby(VendorAdapter):
    vendor = "ashby"
    title = "Ashby"
    default_base_url = "https://api.ashbyhq.com"
    secret_fields = ("token",)
    order = Order.NEWEST_FIRST
    # "max 18 months": 540 days stays inside it however months are counted (18 calendar months >= 546 days).
    max_window = timedelta(days=540)
    # ASSUMPTION: Ashby documents no limit; 5 requests/s is "a few per second", the only guidance found. A lower
    # real limit is learnt from its 429s.
    rate_limit_per_minute = 300
    audit_log_requirement = ("Ashby's auditLog.list needs the organization's Audit Logs feature (in beta) and an API "
                             "key with the auditLogsRead permission")

    @classmethod
    def auth_headers(cls, secret: Mapping[str, str]) -> dict[str, str]:
        credentials = base64.b64encode(f"{secret['token']}:".encode()).decode()
        return {"Authorization": f"Basic {credentials}", "Accept": "application/json; version=1"}

    @classmethod
    def error_details(cls, status: int, body: Any) -> tuple[str | None, str]:
        if isinstance(body, dict):
            info = body.get("errorInfo")
            if isinstance(info, dict):
                code = text(info.get("code"))
                message = text(info.get("message")) or code or "error"
                request_id = text(info.get("requestId"))
                return code, f"{message} (requestId {request_id})" if request_id else message
            errors = body.get("errors")  # the older envelope: a list of error strings, no code field
            if isinstance(errors, list) and errors:
                said = [str(error) for error in errors]
                return _code_in(said), "; ".join(said)
        return None, f"unexpected error body: {str(body)[:120]}"

    @classmethod
    def lacks_audit_logs(cls, status: int, code: str | None) -> bool:
        # A 404 for the one endpoint this adapter calls: the beta endpoint is not there for this organization.
        return code in UNAVAILABLE_CODES or status == 404

    def streams(self) -> list[str]:
        return ["organization"]  # an API key belongs to one organization

    def fetch_page(self, stream: str, window: Window, cursor: Any | None) -> Page:
        request: dict[str, Any] = {
            "startDate": to_iso(window.start - MILLISECOND),
            "endDate": to_iso(window.end),
            "limit": min(self.page_size, MAX_LIMIT),
        }
        if cursor is not None:
            request["cursor"] = cursor
        try:
            body = self.http.post(ENDPOINT, request)
        except VendorError as exc:
            if cursor is not None and exc.code in CURSOR_CODES:
                raise CursorExpired(f"ashby rejected the stored cursor: [{exc.code}] {exc.message}") from exc
            raise
        if not isinstance(body, dict) or not isinstance(body.get("success"), bool):
            raise MalformedResponse(self.vendor, "auditLog.list response has no boolean 'success'", status=200)
        if not body["success"]:
            code, message = self.error_details(200, body)
            message = self.http.redact(message)
            if cursor is not None and code in CURSOR_CODES:
                raise CursorExpired(f"ashby rejected the stored cursor: [{code}] {message}")
            if self.lacks_audit_logs(200, code):
                raise AuditLogsUnavailable(self.vendor, message, requirement=self.audit_log_requirement, status=200,
                                           code=code)
            # Not retried: each of Ashby's 200 errors (feature, input, cursor) needs a change, not a second try.
            raise VendorError(self.vendor, message, status=200, code=code)
        warnings = body.get("warnings")
        if warnings:
            log.warning("ashby answered with warnings", extra={"warnings": warnings})
        results, more = body.get("results"), body.get("moreDataAvailable")
        if not isinstance(results, list):
            raise MalformedResponse(self.vendor, "auditLog.list response has no 'results' list", status=200)
        if not isinstance(more, bool):
            raise MalformedResponse(self.vendor, "auditLog.list response has no boolean 'moreDataAvailable'",
                                    status=200)
        if not more:
            return Page(events=results, end=End.LAST_PAGE)
        next_cursor = body.get("nextCursor")
        if not isinstance(next_cursor, str) or not next_cursor:
            raise MalformedResponse(self.vendor, "moreDataAvailable is true but there is no nextCursor", status=200)
        if next_cursor == cursor:
            raise MalformedResponse(self.vendor, "nextCursor repeats the cursor just sent: paging would not advance",
                                    status=200)
        return Page(events=results, cursor=next_cursor)

    def event_id(self, event: dict[str, Any]) -> str:
        entry_id = event["id"]
        if not isinstance(entry_id, str | int) or isinstance(entry_id, bool) or not str(entry_id):
            raise TypeError(f"id is {entry_id!r}")
        return str(entry_id)

    def event_time(self, event: dict[str, Any]) -> datetime:
        for name in TIME_FIELDS:
            if event.get(name) is not None:
                return parse_event_time(event[name], name)
        # Never a guess (another field, the collection time): the page is refused, naming what the entry holds.
        raise KeyError(f"none of {', '.join(TIME_FIELDS)}; the entry has {', '.join(sorted(map(str, event)))}")

    def normalise(self, event: dict[str, Any], stream: str) -> Normalised:
        actor = _object(event.get("actor"))
        target = _object(event.get("target"))
        details = _object(event.get("details"))
        category = text(event.get("category"))
        return Normalised(
            # A category names what happened (e.g. JobStatusChanged) and belongs to exactly one target type, which
            # is the coarser grouping.
            action=category,
            category=text(target.get("type")),
            actor_id=text(actor.get("id")),
            actor_email=text(actor.get("email")),
            actor_name=text(actor.get("name")),
            actor_type=text(actor.get("type")),
            target_id=text(target.get("id")),
            target_type=text(target.get("type")),
            target_name=text(target.get("name")),
            # Where an entry carries the request's address and client is not documented: top level or details.
            source_ip=text(event.get("ipAddress")) or text(details.get("ipAddress")),
            user_agent=text(event.get("userAgent")) or text(details.get("userAgent")),
            # Entries record what happened; failures are their own categories (e.g. UserLoginFailed).
            outcome="failure" if category and category.endswith("Failed") else "success",
        )


def _code_in(errors: list[str]) -> str | None:
    """The code of an older-form error: a known code the strings name (as the whole string or inside a sentence),
    else a string that is itself a bare code. None when they name none."""
    found = [match for error in errors for match in _CODE.findall(error)]
    return next((code for code in found if code in KNOWN_CODES), None) \
        or next((error.strip() for error in errors if _CODE.fullmatch(error.strip())), None)


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
