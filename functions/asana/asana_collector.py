"""Asana audit log events: `GET /workspaces/{workspace_gid}/audit_log_events`.

What Asana documents, and what this adapter does about it:
- Service-account token as `Authorization: Bearer`; one workspace (the organization) per secret.
- Events come oldest first; `start_at` is inclusive and `end_at` exclusive, so a window maps onto one query.
- `next_page.offset` pages on; once caught up Asana keeps returning `next_page` with an empty `data` (the
  stream never ends by itself), so an empty page ends the window, not `next_page: null`.
- `limit` is 1..100 (the prose's "default 1000" conflicts with the parameter's bounds: always send it).
- Offsets expire; an expired offset is a 400, after which the engine resumes the window from the newest
  archived instant (`start_at` inclusive) and skips the ids it already holds.
- Events exist from 2021-10-08 and are deleted after 90 days.
- 1,500 requests per minute per token on paid plans, which requests are paced under; a 429 carries `Retry-After`.
- Errors: `{"errors": [{"message", "help", "phrase"}]}`. A 402 (Payment Required, documented) or 403 means the
  domain's plan or the token cannot read audit logs: one AuditLogsUnavailable that says what Asana requires.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from auditlake.errors import CursorExpired, MalformedResponse, VendorError
from auditlake.lambda_handler import make_handler
from auditlake.records import Normalised, text
from auditlake.timeutil import parse_event_time, to_iso
from auditlake.vendor import End, Order, Page, VendorAdapter, Window


class Asana(VendorAdapter):
    vendor = "asana"
    default_base_url = "https://app.asana.com/api/1.0"
    secret_fields = ("token", "workspace_gid")
    order = Order.OLDEST_FIRST
    retention = timedelta(days=90)
    earliest = datetime(2021, 10, 8, tzinfo=UTC)
    rate_limit_per_minute = 1500  # developers.asana.com/docs/rate-limits: paid domains, per token
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
        params = {"start_at": to_iso(window.start), "end_at": to_iso(window.end), "limit": self.page_size}
        if cursor:
            params["offset"] = cursor
        try:
            body = self.http.get(f"/workspaces/{stream}/audit_log_events", params)
        except VendorError as exc:
            if exc.status == 400 and cursor:
                raise CursorExpired(f"asana rejected the stored offset: {exc.message}") from exc
            raise
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise MalformedResponse(self.vendor, "audit_log_events response has no 'data' list")
        next_page = body.get("next_page")
        if not body["data"]:
            return Page(events=[], end=End.EMPTY)
        if next_page is None:
            # Asana's paging ends with `next_page: null`; this endpoint only says so when nothing ever matched, so
            # a page of events without one is taken at its word (there is no offset to go on with anyway).
            return Page(events=body["data"], end=End.LAST_PAGE)
        # A next_page that is there but unreadable must not end the window: the events after this page would be
        # skipped for good.
        offset = next_page.get("offset") if isinstance(next_page, dict) else None
        if not isinstance(offset, str) or not offset:
            raise MalformedResponse(self.vendor, f"next_page has no 'offset' string: {str(next_page)[:80]}")
        return Page(events=body["data"], cursor=offset)

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


handler = make_handler(Asana)
