"""Asana audit log events: `GET /workspaces/{workspace_gid}/audit_log_events`.

What Asana documents, and what this adapter does about it:
- Service-account token as `Authorization: Bearer`; one workspace (the organization) per secret.
- Events come oldest first; `start_at` is inclusive and `end_at` exclusive, so a window maps onto one query.
- `next_page.offset` pages on; once caught up Asana keeps returning `next_page` with an empty `data` (the
  stream never ends by itself), so an empty page ends the window; a page shorter than asked does not.
- Events exist from 2021-10-08 and are deleted after 90 days.
- 1,500 requests per minute per token on paid plans, which requests are paced under; a 429 carries `Retry-After`.
- Errors: `{"errors": [{"message", "help", "phrase"}]}`. A 402 (Payment Required, documented) or 403 means the
  domain's plan or the token cannot read audit logs: one AuditLogsUnavailable that says what Asana requires.

What Asana leaves open, and how the adapter stays exact anyway:
- `limit`: the parameter says 1..100, the endpoint's prose "the default limit is 1000": at most 100 is sent
  whatever PAGE_SIZE says, so either reading accepts it.
- Offset lifetime: offsets "expire after some time" (other endpoints' live 900 s). An offset that is refused with
  a 400 (what other endpoints answer) or a 410 raises CursorExpired, and the engine resumes the window from the
  newest archived instant (`start_at` inclusive), skipping the ids it already holds; any other error on a request
  that carried an offset restarts the window the same way once per window and run (the engine's rule).
- `next_page: null` is documented only for a query that never matched anything. On a page of events it would
  claim the end where more may follow, so it is not taken at its word: the window goes on with a new query from
  the page's newest millisecond (the ids served at it carried in the cursor), and ends when that query repeats
  nothing new, on a page shorter than asked. A page of one millisecond that cannot be paged past (after an
  offset, or full and repeated) is a MalformedResponse, never a silent end.
- Capture latency: events may be published well after their created_at; the next window's overlap catches those
  published within it (later ones are the reconciliation's).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from auditlake.errors import CursorExpired, MalformedResponse, VendorError
from auditlake.records import Normalised, text
from auditlake.timeutil import floor_millis, parse_event_time, parse_time, to_iso
from auditlake.vendor import End, Order, Page, VendorAdapter, Window

MAX_LIMIT = 100  # the `limit` parameter's documented bounds are 1..100
EXPIRED_OFFSET_STATUSES = frozenset({400, 410})  # 400: what other endpoints answer; 410 Gone: the other plausible one


class Asana(VendorAdapter):
    vendor = "asana"
    title = "Asana"
    default_base_url = "https://app.asana.com/api/1.0"
    secret_fields = ("token", "workspace_gid")
    order = Order.OLDEST_FIRST
    retention = timedelta(days=90)
    earliest = datetime(2021, 10, 8, tzinfo=UTC)
    rate_limit_per_minute = 1500  # developers.asana.com/docs/rate-limits: paid domains, per token
    max_concurrent_requests = 50  # the same page: at most 50 GET requests in flight per token
    audit_log_requirement = ("Asana's audit log API needs an Enterprise+ or Legacy Enterprise organization, or "
                             "Enterprise with the Compliance Management add-on, and a service account's token")

    @classmethod
    def auth_headers(cls, secret: Mapping[str, str]) -> dict[str, str]:
        return {"Authorization": f"Bearer {secret['token']}"}

    @classmethod
    def error_details(cls, status: int, body: Any) -> tuple[str | None, str]:
        errors = body.get("errors") if isinstance(body, dict) else None
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            first = errors[0]
            return text(first.get("phrase")), str(first.get("message") or first.get("help") or "error")
        return None, f"unexpected error body: {str(body)[:120]}"

    @classmethod
    def lacks_audit_logs(cls, status: int, code: str | None) -> bool:
        # 402 Payment Required is among the endpoint's documented errors; 403 is what a token that is not a service
        # account's, or a domain without the feature, gets.
        return status in (402, 403)

    def streams(self) -> list[str]:
        return [self.secret["workspace_gid"]]

    def fetch_page(self, stream: str, window: Window, cursor: Any | None) -> Page:
        # A cursor is Asana's offset for the window's query (a string), or, after a `next_page: null` on a page of
        # events, a dict: the query restarted `from` a millisecond, with its own `offset` or the `ids` served at it.
        start, offset, restart = window.start, cursor if isinstance(cursor, str) else None, None
        if isinstance(cursor, dict):
            restart = cursor
            start = max(window.start, parse_time(restart["from"]))
            offset = restart.get("offset")
        limit = min(self.page_size, MAX_LIMIT)
        params: dict[str, Any] = {"start_at": to_iso(start), "end_at": to_iso(window.end), "limit": limit}
        if offset:
            params["offset"] = offset
        try:
            body = self.http.get(f"/workspaces/{stream}/audit_log_events", params)
        except VendorError as exc:
            if exc.status in EXPIRED_OFFSET_STATUSES and offset:
                raise CursorExpired(f"asana rejected the stored offset: {exc.message}") from exc
            raise
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise MalformedResponse(self.vendor, "audit_log_events response has no 'data' list")
        data, next_page = body["data"], body.get("next_page")
        if not data:
            return Page(events=[], end=End.EMPTY)
        if next_page is None:
            return self._after_null_next_page(data, restart if offset is None else None, offset is not None, limit)
        # A next_page that is there but unreadable must not end the window: the events after this page would be
        # skipped for good.
        new_offset = next_page.get("offset") if isinstance(next_page, dict) else None
        if not isinstance(new_offset, str) or not new_offset:
            raise MalformedResponse(self.vendor, f"next_page has no 'offset' string: {str(next_page)[:80]}")
        if restart is not None:  # the offset belongs to the restarted query, which must be sent again with it
            return Page(events=data, cursor={"from": restart["from"], "offset": new_offset})
        return Page(events=data, cursor=new_offset)

    def _after_null_next_page(self, data: list[Any], restart: dict[str, Any] | None, paged: bool,
                              limit: int) -> Page:
        """A page of events with `next_page: null`, which Asana documents only for a query that never matched:
        the window goes on from the page's newest millisecond, unless the page shows that nothing follows.

        `restart` is the cursor this page was asked with when it restarted the query (no offset sent); `paged`
        whether an offset was sent, i.e. earlier pages of the same query may have served this page's millisecond.
        """
        try:
            first, last = (floor_millis(self.event_time(event)) for event in (data[0], data[-1]))
            at_last = [self.event_id(event) for event in data if floor_millis(self.event_time(event)) == last]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MalformedResponse(self.vendor, f"a page of events with next_page null is unreadable "
                                                 f"({type(exc).__name__}: {exc})") from exc
        if restart is not None and parse_time(restart["from"]) == last:
            # Nothing past the millisecond the query restarted at: the end, unless the page repeats a full page
            # of it (more of it may lie beyond, and without an offset no query reaches them).
            served = set(restart.get("ids") or ())
            new = set(at_last) - served
            if new:
                return Page(events=data, cursor={"from": to_iso(last), "ids": sorted(served | new)})
            if len(data) >= limit:
                raise MalformedResponse(self.vendor, f"next_page is null on a full page of one millisecond "
                                                     f"({to_iso(last)}) served before: it cannot be paged past")
            return Page(events=data, end=End.LAST_PAGE)
        if paged and first == last:
            # Earlier pages of this query may have served part of this millisecond, and a new query from it
            # would serve those again: the engine could not tell them from new events.
            raise MalformedResponse(self.vendor, f"next_page is null on a page of one millisecond ({to_iso(last)}) "
                                                 "reached by an offset: it cannot be paged past")
        return Page(events=data, cursor={"from": to_iso(last), "ids": sorted(at_last)})

    def event_id(self, event: dict[str, Any]) -> str:
        gid = event["gid"]
        if not isinstance(gid, str | int) or isinstance(gid, bool) or not str(gid):
            raise TypeError(f"gid is {gid!r}")
        return str(gid)

    def event_time(self, event: dict[str, Any]) -> datetime:
        return parse_event_time(event["created_at"], "created_at")

    def normalise(self, event: dict[str, Any], stream: str) -> Normalised:
        actor = event.get("actor") or {}
        resource = event.get("resource") or {}
        context = event.get("context") or {}
        event_type = text(event.get("event_type"))
        return Normalised(
            action=event_type,
            category=text(event.get("event_category")),
            actor_id=text(actor.get("gid")),
            actor_email=text(actor.get("email")),
            actor_name=text(actor.get("name")),
            actor_type=text(actor.get("actor_type")),
            target_id=text(resource.get("gid")),
            target_type=text(resource.get("resource_type")),
            target_name=text(resource.get("name")) or text(resource.get("email")),
            source_ip=text(context.get("client_ip_address")),
            user_agent=text(context.get("user_agent")),
            # Asana logs what happened; failures are their own event types (e.g. user_login_failed).
            outcome="failure" if event_type and event_type.endswith("_failed") else "success",
        )
