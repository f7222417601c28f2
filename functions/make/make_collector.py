"""Make audit logs: `GET https://{zone}/api/v2/audit-logs/organization/{organizationId}`.

What Make documents, and what this adapter does about it:
- API token as `Authorization: Token …`; the caller must be the organization's Admin or Owner (else 403) and audit
  logs are Enterprise-only. Each organization lives in one zone (eu1, eu2, us1, us2 on make.com; eu1, us1 on
  make.celonis.com) and another zone answers 400 "User has no organization in the zone": the secret names the
  zone, and an unknown zone is refused before any request.
- Entries come newest first unless asked otherwise; offset paging over a list whose head grows would repeat and
  skip entries, so every request asks for `pg[sortBy]=triggeredAt&pg[sortDir]=asc` (and a page that is not
  ascending is refused rather than trusted).
- `dateFrom`/`dateTo` are whole days (time zone and dateTo's inclusiveness undocumented): the query spans the UTC
  day of the window's start to the day after its end, and the engine drops what lies outside the window. So
  every run re-reads its boundary day, and uuids already archived are skipped.
- Paging is `pg[offset]`/`pg[limit]` with no "has more" flag: a page with fewer entries than the limit is the last,
  and so is one that reaches the window's end. An offset is only a position: an entry published late or expired
  before it shifts every entry after it. Each next page therefore starts one entry early, at the last entry
  already read; when that entry is no longer there, the offsets have shifted and the adapter raises
  CursorExpired, so the engine resumes the window from what it has archived.
- `uuid` identifies an entry; `triggeredAt` (an integer, epoch ms assumed; Make's SDK types it as an ISO string,
  both are read) is when it happened, `createdAt` when it was stored (used only when triggeredAt is absent).
- Entries are kept 12 months: the first run starts two days inside that, since its first day is read whole and
  entries expiring under an offset-paged query would shift it.
- Errors: `{"detail", "message", "code", "suberrors"?}`; 429 says "Requests limit for organization exceeded,
  please try again later." (1,000 requests per minute per Enterprise organization) with no rate headers and no
  Retry-After documented: requests are paced under 1,000/min, and after a 429 the HTTP client's backoff applies.
- Entries carry no IP address or user agent.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from auditlake.errors import CursorExpired, MalformedResponse, SecretError, VendorError
from auditlake.http import HttpClient
from auditlake.lambda_handler import make_handler
from auditlake.records import Normalised, text
from auditlake.timeutil import parse_event_time
from auditlake.vendor import Order, Page, VendorAdapter, Window

# The API's zones (the OpenAPI document's servers), each serving `/api/v2`: the make.com zones by the names Make
# gives them (eu1 …), the Celonis ones by their hosts or as `eu1.celonis`/`us1.celonis`.
ZONES = {
    "eu1": "eu1.make.com",
    "eu2": "eu2.make.com",
    "us1": "us1.make.com",
    "us2": "us2.make.com",
    "eu1.celonis": "eu1.make.celonis.com",
    "us1.celonis": "us1.make.celonis.com",
}
ZONE_HOSTS = frozenset(ZONES.values())
# Offsets that keep shifting under every attempt mean the log is being rewritten faster than it can be read, or
# the API ignores `pg[offset]`: stop and say so rather than re-reading the boundary day for ever.
MAX_CONSECUTIVE_SHIFTS = 10


class Make(VendorAdapter):
    vendor = "make"
    default_base_url = "https://eu1.make.com/api/v2"
    secret_fields = ("token", "organization_id", "zone")
    order = Order.OLDEST_FIRST
    retention = timedelta(days=365)
    rate_limit_per_minute = 1000  # developers.make.com rate-limiting page: per organization, Enterprise plan
    retention_margin = timedelta(days=2)

    def __init__(self, secret: Mapping[str, str], http: HttpClient, page_size: int) -> None:
        # One entry of each page repeats the last one read, so a page must hold at least one more.
        super().__init__(secret, http, max(page_size, 2))
        self._shifts = 0

    @classmethod
    def base_url(cls, secret: Mapping[str, str]) -> str:
        if secret.get("base_url"):
            return secret["base_url"]
        return f"https://{zone_host(secret.get('zone', ''))}/api/v2"

    @classmethod
    def auth_headers(cls, secret: Mapping[str, str]) -> dict[str, str]:
        return {"Authorization": f"Token {secret['token']}"}

    @classmethod
    def error_details(cls, status: int, body: Any) -> tuple[str | None, str]:
        if not isinstance(body, dict) or not any(key in body for key in ("detail", "message", "code")):
            return None, f"unexpected error body: {str(body)[:120]}"
        message, detail = text(body.get("message")), text(body.get("detail"))
        said = message or detail or "error"
        if message and detail and message.rstrip(".") != detail.rstrip("."):
            said = f"{message} ({detail})"
        suberrors = body.get("suberrors")
        if isinstance(suberrors, list):
            said += "".join(f"; {sub['message']}" for sub in suberrors if isinstance(sub, dict) and sub.get("message"))
        if status == 403:
            said += (" (the token's user must be an Admin or Owner of the organization, and audit logs need the "
                     "Enterprise plan)")
        elif status == 400 and detail and "zone" in detail.lower():
            said += " (the secret's 'zone' must be the zone the organization lives in)"
        return text(body.get("code")), said

    def streams(self) -> list[str]:
        organization_id = self.secret["organization_id"]
        if not organization_id.isdigit():
            raise SecretError("make secret field 'organization_id' must be the organization's numeric id")
        return [organization_id]

    def fetch_page(self, stream: str, window: Window, cursor: Any | None) -> Page:
        offset, anchor = (0, None) if cursor is None else (int(cursor["offset"]), str(cursor["anchor"]))
        params = {
            "dateFrom": _utc_day(window.start),
            # The day after the window's end: right whether dateTo's own day is included or not.
            "dateTo": _utc_day(window.end + timedelta(days=1)),
            "pg[sortBy]": "triggeredAt",
            "pg[sortDir]": "asc",
            "pg[offset]": offset - 1 if anchor else offset,
            "pg[limit]": self.page_size,
        }
        body = self.http.get(f"/audit-logs/organization/{stream}", params)
        if not isinstance(body, dict) or not isinstance(body.get("auditLogs"), list):
            raise MalformedResponse(self.vendor, "audit-logs response has no 'auditLogs' list")
        rows: list[Any] = body["auditLogs"]
        for index, row in enumerate(rows):
            if not isinstance(row, dict):
                raise MalformedResponse(self.vendor, f"'auditLogs' entry #{index} is a {type(row).__name__}, not an "
                                                     "object")
        full = len(rows) >= self.page_size
        if anchor:
            if not rows or rows[0].get("uuid") != anchor:
                self._shifts += 1
                if self._shifts > MAX_CONSECUTIVE_SHIFTS:
                    raise VendorError(self.vendor, f"the audit log's offsets shifted {self._shifts} times in a row; "
                                                   "paging cannot make progress", code="offsets_unstable")
                raise CursorExpired(f"make entries were inserted or expired before offset {offset}; the offsets "
                                    "have shifted")
            self._shifts = 0
            rows = rows[1:]
        newest = self._check_ascending(rows, body.get("pg"))
        if not full or not rows or (newest is not None and newest >= window.end):
            return Page(events=rows, cursor=None)
        return Page(events=rows, cursor={"offset": offset + len(rows), "anchor": rows[-1].get("uuid")})

    def _check_ascending(self, rows: list[Any], pg: Any) -> datetime | None:
        """The newest triggeredAt of the page; MalformedResponse when the page is not oldest first (unreadable
        entries are left for the engine, which refuses the page naming the entry)."""
        if isinstance(pg, dict) and pg.get("sortDir") not in (None, "asc"):
            raise MalformedResponse(self.vendor, f"asked for pg[sortDir]=asc, got sortDir={pg.get('sortDir')!r}")
        newest: datetime | None = None
        for index, row in enumerate(rows):
            try:
                moment = self.event_time(row)
            except (KeyError, TypeError, ValueError, AttributeError):
                continue
            if newest is not None and moment < newest:
                raise MalformedResponse(self.vendor, f"entry #{index} of a page is older than the one before it: "
                                                     "entries are not in ascending triggeredAt order")
            newest = moment
        return newest

    def event_id(self, event: dict[str, Any]) -> str:
        uuid = event["uuid"]
        if not isinstance(uuid, str) or not uuid:
            raise TypeError(f"uuid is {uuid!r}")
        return uuid

    def event_time(self, event: dict[str, Any]) -> datetime:
        for name in ("triggeredAt", "createdAt"):  # when it happened; when it was stored only as a fallback
            if event.get(name) is not None:
                return parse_event_time(event[name], name)
        raise KeyError("neither triggeredAt nor createdAt")

    def normalise(self, event: dict[str, Any], stream: str) -> Normalised:
        actor = event.get("actor") or {}
        event_name = text(event.get("eventName"))
        # Event names are `<object>_<verb>` (scenario_updated, organization_variable_created): the object is the
        # category and the type of the target.
        subject = (event_name.rpartition("_")[0] or None) if event_name else None
        return Normalised(
            action=event_name,
            category=subject,
            actor_id=text(actor.get("id")),
            actor_email=text(actor.get("email")),
            actor_name=text(actor.get("name")),
            actor_type="user" if actor else None,
            target_id=text(event.get("targetId")),
            # user_invited, user_role_changed, user_team_role_changed: the target is the user.
            target_type="user" if subject and subject.startswith("user") else subject,
            # Make logs changes that were made; a failure would be an event of its own.
            outcome="failure" if event_name and event_name.endswith("_failed") else "success",
        )


def zone_host(zone: str) -> str:
    """The API host of a zone given as Make names it (`eu1`) or as its host (`eu1.make.com`, a URL to it)."""
    name = zone.strip().lower().removeprefix("https://").removeprefix("http://").split("/", 1)[0]
    if name in ZONES:
        return ZONES[name]
    if name in ZONE_HOSTS:
        return name
    known = ", ".join([*ZONES, *sorted(ZONE_HOSTS)])
    raise SecretError(f"make secret field 'zone' is {zone!r}, which is not a Make zone; use one of {known}")


def _utc_day(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d")


handler = make_handler(Make)
