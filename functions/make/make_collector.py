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
  day of the window's start to the day after its end, and the engine drops what lies outside the window.
- Paging is `pg[offset]`/`pg[limit]` with no "has more" flag: a page with fewer entries than asked for is the
  last, and so is one that reaches the window's end. An offset is only a position: an entry published late or
  expired before it shifts every entry after it. Each next page therefore starts one entry early, at the last
  entry already read (the anchor), and asks for one entry more than the page size, so it still brings a whole
  page of new entries; when the anchor is no longer there, the offsets have shifted and the adapter raises
  CursorExpired, so the engine resumes the window from what it has archived. `pg[limit]` has no documented
  maximum (Make's SDK describes 10,000), so the page size is kept below it.
- A window that starts in the middle of a day would re-read the whole day before its start on every tick. So a
  window's final page leaves a resume hint (see the engine): for the UTC day of the next window's earliest start,
  the offset, uuid and triggeredAt of the last entry before that start. The next window, if it starts in that
  day and after that entry, reads from there with that entry as its anchor: an idle tick is one request. Every
  entry at or after the window's start sorts after the anchor, so nothing before it is needed; if the anchor
  has moved (entries inserted or expired before it) the engine drops the hint and the day is read from its
  first entry.
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
from auditlake.timeutil import parse_event_time, to_millis
from auditlake.vendor import End, Order, Page, VendorAdapter, Window

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
# pg[limit]'s largest value in Make's SDK (the API documents none); a page asks for up to one more than its size.
MAX_LIMIT = 10_000
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
    audit_log_requirement = ("Make's audit logs need the Enterprise plan, and a token of an Admin or Owner of the "
                             "organization")

    def __init__(self, secret: Mapping[str, str], http: HttpClient, page_size: int) -> None:
        # A page after the first asks for the anchor and a whole page more.
        super().__init__(secret, http, min(page_size, MAX_LIMIT - 1))
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

    @classmethod
    def lacks_audit_logs(cls, status: int, code: str | None) -> bool:
        # Enterprise only; a plan without them is reported as 402 Payment Required by a third-party client, and a 403
        # SC403 is what a caller without the role (or, undocumented, the plan) gets.
        return status in (402, 403)

    def streams(self) -> list[str]:
        organization_id = self.secret["organization_id"]
        if not organization_id.isdigit():
            raise SecretError("make secret field 'organization_id' must be the organization's numeric id")
        return [organization_id]

    def fetch_page(self, stream: str, window: Window, cursor: Any | None) -> Page:
        day = _utc_day(window.start)
        aim = _Aim(window.next_start or window.end)
        if cursor is None:
            resume = _hint_start(window, day)
            offset, anchor = (resume[0] + 1, resume[1]) if resume else (0, None)
            mark = _Mark.fresh(same_day=aim.day == day)
        else:
            offset, anchor = int(cursor["offset"]), cursor.get("anchor")
            mark = _Mark.resume(cursor, same_day=aim.day == day)
        first = offset - 1 if anchor else offset
        limit = self.page_size + 1 if anchor else self.page_size
        params = {
            "dateFrom": day,
            # The day after the window's end: right whether dateTo's own day is included or not.
            "dateTo": _utc_day(window.end + timedelta(days=1)),
            "pg[sortBy]": "triggeredAt",
            "pg[sortDir]": "asc",
            "pg[offset]": first,
            "pg[limit]": limit,
        }
        body = self.http.get(f"/audit-logs/organization/{stream}", params)
        if not isinstance(body, dict) or not isinstance(body.get("auditLogs"), list):
            raise MalformedResponse(self.vendor, "audit-logs response has no 'auditLogs' list")
        rows: list[Any] = body["auditLogs"]
        for index, row in enumerate(rows):
            if not isinstance(row, dict):
                raise MalformedResponse(self.vendor, f"'auditLogs' entry #{index} is a {type(row).__name__}, not an "
                                                     "object")
        if anchor:
            if rows:
                self._check_readable(rows[0])
            if not rows or rows[0].get("uuid") != anchor:
                self._shifts += 1
                if self._shifts > MAX_CONSECUTIVE_SHIFTS:
                    raise VendorError(self.vendor, f"the audit log's offsets shifted {self._shifts} times in a row; "
                                                   "paging cannot make progress", code="offsets_unstable")
                raise CursorExpired(f"make entries were inserted or expired before offset {first}; the offsets "
                                    "have shifted")
            self._shifts = 0
        times = self._ascending_times(rows, body.get("pg"))
        mark.observe(first, rows, times, aim)
        fresh = rows[1:] if anchor else rows
        newest = max((moment for moment in times if moment is not None), default=None)
        if not fresh:
            return Page(events=fresh, end=End.EMPTY, hint=mark.hint(aim))
        if newest is not None and newest >= to_millis(window.end):
            return Page(events=fresh, end=End.PAST_WINDOW, hint=mark.hint(aim))
        return Page(events=fresh, cursor={"offset": first + len(rows), "anchor": fresh[-1].get("uuid"),
                                          **mark.dump()})

    def _check_readable(self, anchor_row: dict[str, Any]) -> None:
        """The anchor is not passed on (it was archived or dropped before), but it is held to the same rules as
        every entry: an unreadable one is the vendor's error, not a sign that the offsets shifted."""
        try:
            self.event_id(anchor_row)
            self.event_time(anchor_row)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MalformedResponse(self.vendor, f"event #0 of a page is unreadable ({type(exc).__name__}: "
                                                 f"{exc})") from exc

    def _ascending_times(self, rows: list[dict[str, Any]], pg: Any) -> list[int | None]:
        """Each entry's time in epoch ms (None where unreadable: the engine refuses the page naming the entry);
        MalformedResponse when the page is not oldest first."""
        if isinstance(pg, dict) and pg.get("sortDir") not in (None, "asc"):
            raise MalformedResponse(self.vendor, f"asked for pg[sortDir]=asc, got sortDir={pg.get('sortDir')!r}")
        times: list[int | None] = []
        newest: int | None = None
        for index, row in enumerate(rows):
            try:
                moment: int | None = to_millis(self.event_time(row))
            except (KeyError, TypeError, ValueError, AttributeError):
                moment = None
            if moment is not None:
                if newest is not None and moment < newest:
                    raise MalformedResponse(self.vendor, f"entry #{index} of a page is older than the one before "
                                                         "it: entries are not in ascending triggeredAt order")
                newest = moment
            times.append(moment)
        return times

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


class _Aim:
    """The earliest instant the next window can start, its UTC day, and that day's first instant (epoch ms)."""

    def __init__(self, moment: datetime) -> None:
        self.millis = to_millis(moment)
        self.day = _utc_day(moment)
        self.day_start = to_millis(datetime.fromisoformat(self.day).replace(tzinfo=UTC))


def _hint_start(window: Window, day: str) -> tuple[int, str] | None:
    """(offset, uuid) of the entry the previous window's hint says this window can start reading at, when the hint
    applies: the same `dateFrom` day, and an entry older than the window's start (every entry from the start on
    then sorts after it, whatever order Make gives entries with equal triggeredAt). None: read the day whole."""
    hint = window.hint
    if not isinstance(hint, dict) or hint.get("day") != day:
        return None
    offset, uuid, moment = hint.get("offset"), hint.get("uuid"), hint.get("triggeredAt")
    if not isinstance(offset, int) or offset < 0 or not isinstance(uuid, str) or not uuid \
            or not isinstance(moment, int) or moment >= to_millis(window.start):
        return None
    return offset, uuid


class _Mark:
    """Follows, page by page, the last entry before the next window's earliest start that lies in that instant's
    UTC day, at its offset among that day's entries (what a query with that `dateFrom` would number it).

    A query numbers entries from its own `dateFrom` day. When that is an earlier day, the entries of the aimed day
    begin at `base`: the offset of the first entry read in it (everything read before it is older, since a query
    is read from its first entry or from an anchor older than the window's start). A cursor stored before hints
    existed does not say whether that entry was already passed, so such a window leaves no hint."""

    def __init__(self, base: int | None, mark: list[Any] | None, *, known: bool) -> None:
        self.base = base
        self.mark = mark
        self.known = known

    @classmethod
    def fresh(cls, *, same_day: bool) -> _Mark:
        return cls(0 if same_day else None, None, known=True)

    @classmethod
    def resume(cls, cursor: dict[str, Any], *, same_day: bool) -> _Mark:
        if "mark" not in cursor:  # a cursor of an earlier version
            return cls(0 if same_day else None, None, known=same_day)
        return cls(cursor.get("base"), cursor.get("mark"), known=True)

    def observe(self, first: int, rows: list[dict[str, Any]], times: list[int | None], aim: _Aim) -> None:
        if not self.known:
            return
        for index, (row, moment) in enumerate(zip(rows, times, strict=True)):
            if moment is None or moment < aim.day_start:
                continue
            if self.base is None:
                self.base = first + index
            if moment < aim.millis and isinstance(row.get("uuid"), str):
                self.mark = [first + index - self.base, row["uuid"], moment]

    def dump(self) -> dict[str, Any]:
        return {"base": self.base, "mark": self.mark} if self.known else {}

    def hint(self, aim: _Aim) -> dict[str, Any] | None:
        if not self.known or self.mark is None:
            return None
        offset, uuid, moment = self.mark
        return {"day": aim.day, "offset": offset, "uuid": uuid, "triggeredAt": moment}


handler = make_handler(Make)
