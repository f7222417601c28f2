"""Make audit logs: `GET https://{zone}/api/v2/audit-logs/organization/{organizationId}`.

What Make documents, what it leaves open, and what this adapter does about it:
- API token as `Authorization: Token …`; the caller must be the organization's Admin or Owner (else 403) and audit
  logs are Enterprise-only. A plan without them answers 403 SC403, or (a third-party client's report) 402: both are
  AuditLogsUnavailable. Each organization lives in one zone (eu1, eu2, us1, us2 on make.com; eu1, us1 on
  make.celonis.com) and another zone answers 400 "User has no organization in the zone": the secret names the
  zone, and an unknown zone is refused before any request.
- Entries come newest first unless asked otherwise: every request asks for `pg[sortBy]=triggeredAt&pg[sortDir]=asc`
  (a page that says or shows another order is refused rather than trusted).
- `dateFrom`/`dateTo` are whole days; which time they filter (triggeredAt, or createdAt, which the docs' example
  shows 35 days later) and in which zone is undocumented. A window's query runs from the day before its start's
  UTC day (covering that day in any zone) to the day after tomorrow (covering whatever is stored until tomorrow
  ends): an entry stored later than it happened is still in the query of every window whose overlap reaches it.
  One stored after every overlap has passed is a late event, for the reconciliation.
- Paging is `pg[offset]`/`pg[limit]` with no "has more" flag, no documented maximum for pg[limit] (the docs' example
  echoes `"limit": 100`) and no documented order among entries with equal triggeredAt, which are many when
  triggeredAt comes in whole seconds (the docs' example, "2024-04-19T12:05:22Z"; the spec says integer: epoch ms
  and seconds are read too). So a page's offset is proved by time, never by position or id: a page after the first
  starts one entry before the first entry of the previous page's last instant, and that entry must be older than
  the instant and the next one not. That holds iff exactly that many entries of the query are older than the
  instant, whatever order ties come in; the instant is read whole again and its entries already passed on are
  dropped. When the check fails, entries were inserted (published late) or expired before the offset: the adapter
  raises CursorExpired and the engine resumes the window from what it archived.
- A window ends only on what the API states: offset + entries reaching `pg.totalCount` (asked for with
  `pg[returnTotalCount]=true`), an entry at or past the window's end, or an empty page. A page shorter than asked
  is never an end: without a count, the next request looks past its last instant (and falls back to reading that
  instant whole if it goes on there, a cap having cut it).
- Every response's `pg` is read back: a `limit` below the one asked, a short page the count says is not the end, a
  short page followed by more entries, or a 400 naming pg[limit] show how many entries a page the API serves, and
  the adapter never asks for more again (in this run, the window's cursor and the hint). A page larger than asked
  is data. An echoed `offset` earlier than asked is followed; one that does not reach the asked offset is an error.
  When one instant's entries fill a page, larger pages are asked for, up to what the API has shown it serves (or
  1,000); an instant with more entries than that stops the run with an error naming the instant.
- A window's final page leaves a resume hint (see the engine): the query and how many of its entries are older
  than the next window's earliest start. The next window starts there when the hint covers it, with the same time
  check: an idle tick is one request. Once a day the query would stop covering tomorrow; the hint then moves to
  the next window's fresh query, its offset less the difference of the two queries' counts (every entry the newer
  query leaves out is older than the aimed instant): one request more, once a day.
- `uuid` identifies an entry; `triggeredAt` is when it happened, `createdAt` when it was stored (used only when
  triggeredAt is absent).
- Entries are kept 12 months: the first run starts three days inside that, since its query starts a day earlier
  and entries expiring under an offset-paged query would shift it.
- Errors: `{"detail", "message", "code", "suberrors"?}`; 429 says "Requests limit for organization exceeded,
  please try again later." (1,000 requests per minute per Enterprise organization; an organization shared with
  other integrations gets less) with no rate headers and no Retry-After documented: requests are paced under
  1,000/min (or RATE_LIMIT_PER_MINUTE), and after a 429 the HTTP client's backoff applies.
- Entries carry no IP address or user agent.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from auditlake import timeutil
from auditlake.errors import AuditLogsUnavailable, CursorExpired, MalformedResponse, SecretError, VendorError
from auditlake.http import HttpClient
from auditlake.records import Normalised, text
from auditlake.timeutil import from_millis, parse_event_time, to_iso, to_millis
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
# When the entries of one instant fill a page, larger pages are asked for, up to this (the SDK's default pg[limit]);
# it also bounds the ids a cursor carries.
GROW_LIMIT = 1_000
# dateTo is this many days after today (UTC): the query covers whatever is stored until tomorrow ends, in any zone.
QUERY_DAYS_AHEAD = 2
# Offsets that keep shifting under every attempt mean the log is being rewritten faster than it can be read, or
# the API ignores `pg[offset]`: stop and say so rather than re-reading the boundary day for ever.
MAX_CONSECUTIVE_SHIFTS = 10


class Make(VendorAdapter):
    vendor = "make"
    title = "Make"
    default_base_url = "https://eu1.make.com/api/v2"
    secret_fields = ("token", "organization_id", "zone")
    order = Order.OLDEST_FIRST
    retention = timedelta(days=365)
    rate_limit_per_minute = 1000  # developers.make.com rate-limiting page: per organization, Enterprise plan
    query_granularity = timedelta(days=1)  # dateFrom/dateTo are days (YYYY-MM-DD)
    # A query reads from the UTC day before its start's (see _start): for a slice, which starts at a UTC midnight,
    # that is the whole day before it.
    query_reread = timedelta(days=1)
    retention_margin = timedelta(days=3)
    audit_log_requirement = ("Make's audit logs need the Enterprise plan, and a token of an Admin or Owner of the "
                             "organization")

    def __init__(self, secret: Mapping[str, str], http: HttpClient, page_size: int) -> None:
        # A page after the first asks for the entry that proves its offset and a whole page more.
        super().__init__(secret, http, min(page_size, MAX_LIMIT - 1))
        self._paging = threading.local()  # the shifts in a row of the query this thread pages (slices run at once)
        self._served: int | None = None  # the most entries a page the API has shown it serves, in this run

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
        now = timeutil.now()
        aim = to_millis(window.next_start or window.end)
        at = self._start(window, now) if cursor is None else _Cursor.load(cursor)
        if self._served is not None:
            at.served = min(at.served or self._served, self._served)
        sentinel = 1 if at.at > 0 else 0  # the entry just before the boundary, which proves the offset
        ask = at.want + sentinel
        if at.served is not None:
            ask = min(ask, at.served)
        if ask <= sentinel:
            raise VendorError(self.vendor, f"the API serves {at.served} entry a page, too few to page with the "
                                           "entry that proves an offset", code="page_too_small")
        offset = at.at - sentinel
        body, ask = self._get(stream, at, offset, ask, sentinel)
        rows, times, pg = self._read(body)
        base = self._follow_offset(pg, offset)
        echo, total = _integer(pg.get("limit")), _integer(pg.get("totalCount"))
        if echo is not None and echo < ask:
            self._learn(at, echo)  # the API said it served fewer than asked: never ask it for more again
        served_count = len(rows) - (offset - base)
        first = at.at - base
        if base < offset and first >= len(rows):
            raise VendorError(self.vendor, f"asked for pg[offset]={offset}, got a page at offset {base} that does not "
                                           "reach it: the API does not page by pg[offset]", code="offset_ignored")
        if not self._boundary_holds(at, times, first, sentinel):
            # The short page the probe looked past was cut by a cap, inside the entries of its last instant: read
            # that instant again from its first entry, never asking for more than was served.
            self._learn(at, at.probe["served"])  # type: ignore[index]
            return Page(events=[], cursor=at.fall_back().dump())
        fresh, fresh_times = rows[first:], times[first:]
        if at.known and not fresh:
            self._shifted(at.at)  # entries at the boundary were read before: they cannot have gone
        if sentinel:
            self._paging.shifts = 0  # an offset was proved
        if at.probe is not None and fresh:
            self._learn(at, at.probe["served"])  # entries follow a short page: it was cut by a cap
        at.probe = None
        if at.aim is None and (at.boundary is None or at.boundary <= aim):
            at.aim = next((at.at + index for index, moment in enumerate(fresh_times) if moment >= aim), None)

        kept = [(row, moment) for row, moment in zip(fresh, fresh_times, strict=True)
                if not (moment == at.taken and row["uuid"] in at.taken_ids)]  # passed on by an earlier page
        events = [row for row, _ in kept]
        reached = at.at + len(fresh)  # entries of the query up to the last one read
        if any(moment >= to_millis(window.end) for _, moment in kept):
            return self._final(stream, at, End.PAST_WINDOW, events, reached, total, aim, now)
        if total is not None and reached >= total:
            return self._final(stream, at, End.COUNT, events, reached, total, aim, now)
        if not fresh:
            if total is not None:  # the count says more follows, yet none was served: neither an end nor a page
                raise VendorError(self.vendor, f"pg.totalCount is {total}, yet no entry was served at offset "
                                               f"{at.at}", code="inconsistent_count")
            return self._final(stream, at, End.EMPTY, events, reached, total, aim, now)

        # Full: as many entries as the API says it serves for this request (a page larger than asked is data).
        full = served_count >= (min(ask, echo) if echo is not None else ask)
        if not full and total is not None and base == offset:
            self._learn(at, served_count)  # short, and the count says more follows: a cap
            full = True
        return Page(events=events, cursor=self._next(at, fresh, fresh_times, full, ask, sentinel, reached,
                                                     served_count).dump())

    def _boundary_holds(self, at: _Cursor, times: list[int], first: int, sentinel: int) -> bool:
        """The boundary check: the entry at `at - 1` is older than the boundary and the one at `at` is not.
        Whatever order the API gives entries of equal triggeredAt, that holds iff exactly `at` entries of the query
        are older than the boundary: no entry was inserted before it, none expired since it was set. A failure
        means the offsets shifted (CursorExpired), or, when probing past a short page, that the page's last
        instant goes on (False)."""
        if sentinel and (first - 1 >= len(times) or times[first - 1] >= at.boundary):  # type: ignore[operator]
            self._shifted(at.at)
        if first < len(times) and at.boundary is not None and times[first] < at.boundary:
            if at.probe is not None and times[first] == at.boundary - 1:
                return False
            self._shifted(at.at)
        return True

    def _next(self, at: _Cursor, fresh: list[dict[str, Any]], fresh_times: list[int], full: bool, ask: int,
              sentinel: int, reached: int, served_count: int) -> _Cursor:
        """Where the page after one that did not end the window starts."""
        newest = fresh_times[-1]
        older = bisect_left(fresh_times, newest)  # entries read before the page's last instant
        group = [row["uuid"] for row, moment in zip(fresh, fresh_times, strict=True) if moment == newest]
        if at.taken == newest:
            group = list(dict.fromkeys([*at.taken_ids, *group]))
        if full and older:
            # The entries of the last instant may go on past the page: the next page starts at that instant's first
            # entry and reads it whole; those already passed on are dropped.
            return at.moved(at.at + older, newest, group, self.page_size)
        if full:
            ceiling = at.served if at.served is not None else max(GROW_LIMIT, self.page_size + 1)
            if ask >= ceiling:
                raise VendorError(self.vendor, f"at least {len(group)} entries share triggeredAt "
                                               f"{to_iso(from_millis(newest))}, and the API serves at most {ceiling} "
                                               "a page (pg[limit]): offset paging cannot pass that instant exactly",
                                  code="tie_group_too_large")
            # One instant fills the page: ask for a larger one, from the same place.
            return at.moved(at.at, at.boundary, group, min(ceiling, ask * 2) - sentinel, taken=newest)
        # Fewer entries than asked, and nothing says whether it is the end or a cap: look past the last instant. If
        # that instant goes on there, the page was cut by a cap (then the instant is read whole).
        return at.probing(reached, newest, older, group, served_count, self.page_size)

    def _start(self, window: Window, now: datetime) -> _Cursor:
        """Where a window starts reading: at the hint the previous window left, when it applies (its query still
        covers this window, and its boundary is not after the window's start), else at the query's first entry."""
        date_from = _utc_day(window.start - timedelta(days=1))
        hint = window.hint
        if isinstance(hint, dict) and _Hint.applies(hint, date_from, _utc_day(now + timedelta(days=1)),
                                                    to_millis(window.start)):
            served = hint.get("served")
            return _Cursor(hint["from"], hint["to"], hint["at"], hint["t"], self.page_size,
                           served if isinstance(served, int) and served > 0 else None)
        return _Cursor(date_from, _utc_day(now + timedelta(days=QUERY_DAYS_AHEAD)), 0, None, self.page_size, None)

    def _get(self, stream: str, at: _Cursor, offset: int, ask: int, sentinel: int) -> tuple[Any, int]:
        """The page; a 400 naming pg[limit] is the API's maximum said aloud: ask for less, and remember it."""
        while True:
            try:
                return self.http.get(f"/audit-logs/organization/{stream}",
                                     _params(at.date_from, at.date_to, offset, ask)), ask
            except VendorError as exc:
                if exc.status != 400 or isinstance(exc, AuditLogsUnavailable) or "limit" not in exc.message.lower():
                    raise
                lower = self.page_size if ask > self.page_size else ask // 2
                if lower <= sentinel:
                    raise
                self._learn(at, lower)
                ask = lower

    def _read(self, body: Any) -> tuple[list[dict[str, Any]], list[int], dict[str, Any]]:
        """The page's entries, their times in epoch ms, and its `pg`; MalformedResponse for an unreadable entry or
        a page that is not oldest first."""
        if not isinstance(body, dict) or not isinstance(body.get("auditLogs"), list):
            raise MalformedResponse(self.vendor, "audit-logs response has no 'auditLogs' list")
        rows: list[Any] = body["auditLogs"]
        pg = body.get("pg") if isinstance(body.get("pg"), dict) else {}
        if pg.get("sortDir") not in (None, "asc") or pg.get("sortBy") not in (None, "triggeredAt"):
            raise MalformedResponse(self.vendor, f"asked for pg[sortDir]=asc, got sortDir={pg.get('sortDir')!r} "
                                                 f"by {pg.get('sortBy')!r}")
        times: list[int] = []
        for index, row in enumerate(rows):
            if not isinstance(row, dict):
                raise MalformedResponse(self.vendor, f"'auditLogs' entry #{index} is a {type(row).__name__}, not an "
                                                     "object")
            try:
                self.event_id(row)
                moment = to_millis(self.event_time(row))
            except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
                raise MalformedResponse(self.vendor, f"event #{index} of a page is unreadable ({type(exc).__name__}: "
                                                     f"{exc})") from exc
            if times and moment < times[-1]:
                raise MalformedResponse(self.vendor, f"entry #{index} of a page is older than the one before it: "
                                                     "entries are not in ascending triggeredAt order")
            times.append(moment)
        return rows, times, pg

    def _follow_offset(self, pg: dict[str, Any], offset: int) -> int:
        """The offset the page starts at, as the API echoes it. An earlier one is followed (its first entries are
        read again); a later one would skip entries."""
        echoed = _integer(pg.get("offset"))
        if echoed is None:
            return offset
        if echoed > offset:
            raise MalformedResponse(self.vendor, f"asked for pg[offset]={offset}, got a page at offset {echoed}")
        return echoed

    def _learn(self, at: _Cursor, served: int) -> None:
        """The most entries a page the API has shown it serves: never ask for more, in this run and this window."""
        at.served = min(at.served or served, served)
        self._served = min(self._served or served, served)

    def _shifted(self, offset: int) -> NoReturn:
        shifts = self._paging.shifts = getattr(self._paging, "shifts", 0) + 1
        if shifts > MAX_CONSECUTIVE_SHIFTS:
            raise VendorError(self.vendor, f"the audit log's offsets shifted {shifts} times in a row; paging "
                                           "cannot make progress", code="offsets_unstable")
        raise CursorExpired(f"make entries were inserted or expired before offset {offset}; the offsets have "
                            "shifted")

    def _final(self, stream: str, at: _Cursor, end: End, events: list[dict[str, Any]], reached: int,
               total: int | None, aim: int, now: datetime) -> Page:
        """The window's last page, with the hint for the next window: the offset in a query of the entries older
        than the next window's earliest start."""
        if at.aim is None and end is not End.PAST_WINDOW and (at.boundary is None or at.boundary <= aim):
            at.aim = reached  # every entry of the query was read, all older than the aim
        return Page(events=events, end=end, hint=self._hint(stream, at, total, aim, now))

    def _hint(self, stream: str, at: _Cursor, total: int | None, aim: int, now: datetime) -> dict[str, Any] | None:
        if at.aim is None:
            return None
        date_from, date_to, offset = at.date_from, at.date_to, at.aim
        if date_to < _utc_day(now + timedelta(days=QUERY_DAYS_AHEAD)):
            # The query would soon stop covering what is stored today: the hint moves to the query the next window
            # would start afresh. Every entry it leaves out is older than the aim (its days end before the aim's
            # day begins, in any zone), so the offset shrinks by the difference of the two counts.
            date_from = _utc_day(from_millis(aim) - timedelta(days=1))
            date_to = _utc_day(now + timedelta(days=QUERY_DAYS_AHEAD))
            other = self._count(stream, date_from, date_to) if total is not None else None
            if other is None or offset - (total - other) < 0:  # type: ignore[operator]
                return None
            offset -= total - other  # type: ignore[operator]
        return {"from": date_from, "to": date_to, "at": offset, "t": aim, "served": at.served}

    def _count(self, stream: str, date_from: str, date_to: str) -> int | None:
        body = self.http.get(f"/audit-logs/organization/{stream}", _params(date_from, date_to, 0, 1))
        pg = body.get("pg") if isinstance(body, dict) else None
        return _integer(pg.get("totalCount")) if isinstance(pg, dict) else None

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


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _params(date_from: str, date_to: str, offset: int, limit: int) -> dict[str, Any]:
    return {"dateFrom": date_from, "dateTo": date_to, "pg[sortBy]": "triggeredAt", "pg[sortDir]": "asc",
            "pg[offset]": offset, "pg[limit]": limit, "pg[returnTotalCount]": "true"}


class _Hint:
    """The hint a window leaves: `{"from", "to"}` the query, `at` how many of its entries are older than `t` (epoch
    ms, the next window's earliest start), `served` the most entries a page the API has shown it serves."""

    @staticmethod
    def applies(hint: dict[str, Any], date_from: str, date_to: str, start: int) -> bool:
        at, moment = hint.get("at"), hint.get("t")
        return isinstance(hint.get("from"), str) and isinstance(hint.get("to"), str) \
            and hint["from"] <= date_from and hint["to"] >= date_to \
            and _integer(at) is not None and _integer(moment) is not None and moment <= start


@dataclass
class _Cursor:
    """Where a window's paging stands, in one query (`date_from`, `date_to`, ascending by triggeredAt).

    Exactly `at` entries of the query are older than `boundary` (epoch ms; None only at the query's first entry):
    the next page starts there, asking for `want` entries after the one at `at - 1`, which proves it. `taken_ids`
    are the entries at `taken` (an instant) already passed on. `known`: entries at or after the boundary were
    read (a page that finds none means the offsets shifted). `aim`: how many entries of the query are older than
    the next window's earliest start, once known. `probe`: where to fall back to when a look past a short page
    finds its last instant going on.
    """

    date_from: str
    date_to: str
    at: int
    boundary: int | None
    want: int
    served: int | None
    taken: int | None = None
    taken_ids: list[str] = field(default_factory=list)
    known: bool = False
    aim: int | None = None
    probe: dict[str, Any] | None = None

    @classmethod
    def load(cls, cursor: Any) -> _Cursor:
        try:
            loaded = cls(**cursor)
            valid = loaded.at >= 0 and (loaded.boundary is not None or loaded.at == 0) and loaded.want > 0
        except TypeError:
            valid = False
        if not valid:  # a cursor of an earlier version: resume from what is archived
            raise CursorExpired("make cursor of an earlier version; the window resumes from what is archived")
        return loaded

    def dump(self) -> dict[str, Any]:
        return asdict(self)

    def moved(self, at: int, boundary: int | None, group: list[str], want: int, *, taken: int | None = None
              ) -> _Cursor:
        return replace(self, at=at, boundary=boundary, want=want, taken=taken if taken is not None else boundary,
                       taken_ids=group, known=True, probe=None)

    def probing(self, reached: int, newest: int, older: int, group: list[str], served: int, page_size: int
                ) -> _Cursor:
        fall_back = {"at": self.at + older, "t": newest, "ids": group, "served": served}
        return replace(self, at=reached, boundary=newest + 1, want=page_size, taken=None, taken_ids=[], known=False,
                       probe=fall_back)

    def fall_back(self) -> _Cursor:
        assert self.probe is not None
        probe = self.probe
        return replace(self, at=probe["at"], boundary=probe["t"], taken=probe["t"], taken_ids=probe["ids"],
                       known=True, probe=None)
