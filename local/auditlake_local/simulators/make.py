"""Make's audit-log API, as Make documents it.

    GET https://{zone}/api/v2/audit-logs/organization/{organizationId}

"Gets a list of all audit log entries for the specified organization. The audit log entries in the response are
sorted by the `triggeredAt` property in descending order by default. You can use pagination to navigate through a
large number of entries. You can get the audit log entries only for organizations in which you have the "Admin" or
"Owner" roles. Otherwise, you get the 403 error." (OpenAPI `getOrganizationAuditLogs`)

Also served: `GET /audit-logs/organization/{organizationId}/filters` and `GET /audit-logs/team/{teamId}`. Not
served (404): the entry detail endpoint, the team filters, and every other path.

Sources: Make's OpenAPI fragments for audit logs, the pages on pagination and sorting, rate limiting and HTTP status
codes, the Help Center's audit-logs page and Make's TypeScript SDK, as collected in the project's vendor notes (§3).
Where the docs are silent, the choice made here is marked "Docs are silent:" and collectors must not depend on it.
"""

from __future__ import annotations

import hmac
import re
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from operator import attrgetter
from random import Random
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from auditlake_local.simulators.base import (
    FaultPlan,
    RequestRecord,
    SimRequest,
    SimResponse,
    SlidingMinuteLimit,
    VendorSimulator,
    gc_paused,
    utc_now,
)
from auditlake_local.simulators.people import Person, roster

API_PREFIX = "/api/v2"
ORGANIZATION_LOGS = re.compile(r"^/api/v2/audit-logs/organization/(?P<organization_id>[^/]+)/?$")
ORGANIZATION_FILTERS = re.compile(r"^/api/v2/audit-logs/organization/(?P<organization_id>[^/]+)/filters/?$")
TEAM_LOGS = re.compile(r"^/api/v2/audit-logs/team/(?P<team_id>[^/]+)/?$")

# The servers of the OpenAPI document: one host per zone. An organization lives in exactly one of them.
ZONES = ("eu1.make.com", "eu2.make.com", "us1.make.com", "us2.make.com", "eu1.make.celonis.com",
         "us1.make.celonis.com")

RETENTION = timedelta(days=365)  # Help Center: "Audit logs are stored for 12 months."
ENTERPRISE_REQUESTS_PER_MINUTE = 1000  # rate-limiting page: per organization, Enterprise plan

# "pg[limit]: The maximum number of entities you want to get in the response" — no maximum and no default are
# documented ("default value varies with different resources"). Validation follows Make's TypeScript SDK: 1..10,000
# with a default of 1,000, anything else a 400. What the API then serves is the `page_cap` switch (PAGE_CAPS).
DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
# Docs are silent on a maximum page; the docs' example response echoes `"limit": 100`. The switch `page_cap`:
#   "silent" (default): at most `max_limit` entries, and pg.limit echoes what was served (the cap);
#   "lying": at most `max_limit` entries, and pg.limit echoes what was asked;
#   "reject": a 400 for pg[limit] above `max_limit`;
#   "ignore": `max_limit` entries whatever was asked (more than asked, when less was asked), pg.limit echoing them;
#   "none": what was asked.
PAGE_CAPS = ("silent", "lying", "reject", "ignore", "none")
DEFAULT_PAGE_CAP = 100  # the docs' example echo; at or below what a collector asks with a boundary entry
# Docs: the spec types triggeredAt as an integer (unit unstated), the docs' example shows "2024-04-19T12:05:22Z".
# The switch `time_format`: "iso_seconds" (default: the example's whole seconds, so entries of one second tie),
# "iso_ms", "epoch_ms", "epoch_s". The API keeps and sorts by what it serves: ties are entries of one second.
TIME_FORMATS = ("iso_seconds", "iso_ms", "epoch_ms", "epoch_s")
# Docs are silent on the order of entries with equal triggeredAt. The switch `tie_order`: "unstable" (default: a
# database without a tie-breaker orders them differently for every query, deterministically from its dateFrom,
# dateTo, offset and limit) or "stable" (by uuid, on every request).
TIE_ORDERS = ("unstable", "stable")
# Docs are silent on which time dateFrom/dateTo filter (the docs' example shows createdAt 35 days after
# triggeredAt) and in which zone a day is. The switches: `date_filter` "createdAt" (default: when the entry was
# stored, which may be later than when it happened) or "triggeredAt"; `day_zone` the offset of the days (default
# UTC-10, far from UTC; timedelta(0) for UTC days).
DATE_FILTERS = ("createdAt", "triggeredAt")
DEFAULT_DAY_ZONE = timedelta(hours=-10)
SORT_BY = ("createdAt", "triggeredAt", "eventName", "organization", "team", "actor", "targetId")
SORT_DIRS = ("asc", "desc")
DEFAULT_SORT_DIR = "desc"  # "sorted by the `triggeredAt` property in descending order by default"
ADMIN_ROLES = frozenset({"owner", "admin"})

RATE_LIMIT_MESSAGE = "Requests limit for organization exceeded, please try again later."
# The one error body the docs print: a request for a resource the caller has no access to.
ACCESS_DENIED = {"detail": "Access denied.", "message": "Permission denied", "code": "SC403"}
WRONG_ZONE = "User has no organization in the zone"

DEFAULT_ORGANIZATION_ID = 4187
DEFAULT_ORGANIZATION_NAME = "Example Corp"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAY_MS = 86_400_000
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

# A stored entry's place in the log: (triggeredAt in epoch ms at the precision served, uuid). Entries with equal
# triggeredAt are stored by uuid; how a query orders them is the `tie_order` switch.
_Key = tuple[int, str]
_MAX_UUID = "\U0010ffff"



def _to_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _iso_ms(millis: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(millis // 1000)) + f".{millis % 1000:03d}Z"


def _iso_seconds(millis: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(millis // 1000))


def _triggered_ms(value: Any) -> int:
    """triggeredAt as given to `add_events`: epoch ms (integer) or an ISO 8601 string."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _to_ms(datetime.fromisoformat(value))
    raise ValueError(f"triggeredAt must be epoch milliseconds or ISO 8601, got {value!r}")


def _served_time(millis: int, time_format: str) -> tuple[int, Any]:
    """(the instant the API keeps, in epoch ms; triggeredAt as it serves it) for `time_format`."""
    if time_format in ("iso_seconds", "epoch_s"):
        kept = millis - millis % 1000
        return kept, (_iso_seconds(kept) if time_format == "iso_seconds" else kept // 1000)
    return millis, (_iso_ms(millis) if time_format == "iso_ms" else millis)


class _ApiError(Exception):
    """An error Make answers in its envelope: {"detail", "message", "code", "suberrors"?}."""

    def __init__(self, status: int, detail: str, message: str, code: str,
                 suberrors: Sequence[str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.body: dict[str, Any] = {"detail": detail, "message": message, "code": code}
        if suberrors:
            self.body["suberrors"] = [{"message": text} for text in suberrors]

    @classmethod
    def invalid(cls, *problems: str) -> _ApiError:
        # Docs are silent on the body of a validation error: SC400, with one suberror per invalid parameter.
        return cls(400, f"Validation failed for {len(problems)} parameter(s).", "Invalid request", "SC400",
                   list(problems))


class _Stored(NamedTuple):  # a tuple: a million of them must be cheap to build
    key: _Key
    event: dict[str, Any]  # as served
    event_name: str | None
    team_id: str | None
    team_name: str | None
    actor_id: str | None
    actor_name: str | None
    created: int  # createdAt, epoch ms: when Make stored it
    stored: int  # from when it can be retrieved: createdAt, and never before it happened


@dataclass(frozen=True)
class _Query:
    """The list endpoints' filters and paging, as parsed from the query string."""

    date_from: int | None  # epoch ms, inclusive
    date_to: int | None  # epoch ms, exclusive
    events: frozenset[str]
    teams: frozenset[str]  # team ids or names
    authors: frozenset[str]  # user ids or names
    offset: int
    limit: int
    sort_by: str
    sort_dir: str
    return_total_count: bool

    @property
    def filtered(self) -> bool:
        return bool(self.events or self.teams or self.authors)

    def matches(self, stored: _Stored) -> bool:
        return ((not self.events or stored.event_name in self.events)
                and (not self.teams or stored.team_id in self.teams or stored.team_name in self.teams)
                and (not self.authors or stored.actor_id in self.authors or stored.actor_name in self.authors))


def _sort_value(sort_by: str) -> Callable[[_Stored], str]:
    """The property a non-default sort orders by. Docs are silent on how objects sort: by their name."""

    def value(stored: _Stored) -> str:
        event = stored.event
        if sort_by in ("organization", "team", "actor"):
            return str((event.get(sort_by) or {}).get("name") or "")
        return str(event.get(sort_by) or "")

    return value


class MakeSimulator(VendorSimulator):
    """One Make organization (in one zone) with its audit log, served to one API token.

    Knobs for what the docs name but a test must choose: `caller_role` (the token's user's organization role),
    `enterprise` (audit logs are Enterprise-only), `retry_after_header` (whether a 429 carries Retry-After) and
    `rate_limit_per_minute`.

    Switches for what the docs leave open (vendors.md §7), each defaulting to the least friendly alternative the
    docs allow: `page_cap`/`max_limit` (PAGE_CAPS), `total_count` (pg[returnTotalCount] honoured, as documented, or
    pg.totalCount omitted), `time_format` (TIME_FORMATS), `tie_order` (TIE_ORDERS), `date_filter` and `day_zone`
    (DATE_FILTERS), `date_to_inclusive` (whether dateTo's own day is included), `no_audit_logs_status` (what a
    plan without audit logs gets: 402, as a third-party client reports, or 403 SC403).

    Test hooks: `add_events`, `publish_pending`, `expire_cursors`, `ground_truth`, `generate_events`, and the
    base class's `faults`, `requests_log`, `on_request` and `stats()`.
    """

    vendor = "make"
    stat_keys = ("pages_with_data", "empty_pages", "events_served", "rate_limited")

    def __init__(self, token: str, organization_id: int | str = DEFAULT_ORGANIZATION_ID, *,
                 zone: str = "eu1.make.com", now: Callable[[], datetime] = utc_now, caller_role: str = "admin",
                 enterprise: bool = True, date_to_inclusive: bool = False, retry_after_header: bool = False,
                 team_admin_of: Collection[int] = (), rate_limit_per_minute: int | None = None,
                 page_cap: str = "silent", max_limit: int = DEFAULT_PAGE_CAP, total_count: bool = True,
                 time_format: str = "iso_seconds", tie_order: str = "unstable", date_filter: str = "createdAt",
                 day_zone: timedelta = DEFAULT_DAY_ZONE, no_audit_logs_status: int = 402,
                 faults: FaultPlan | None = None, on_request: Callable[[RequestRecord], None] | None = None,
                 fault_retry_after: int = 1) -> None:
        super().__init__(faults=faults, on_request=on_request, fault_retry_after=fault_retry_after)
        if zone not in ZONES:
            raise ValueError(f"zone must be one of {', '.join(ZONES)}")
        for name, value, options in (("page_cap", page_cap, PAGE_CAPS), ("time_format", time_format, TIME_FORMATS),
                                     ("tie_order", tie_order, TIE_ORDERS), ("date_filter", date_filter,
                                                                            DATE_FILTERS)):
            if value not in options:
                raise ValueError(f"{name} must be one of {', '.join(options)}")
        if no_audit_logs_status not in (402, 403) or not 1 <= max_limit <= MAX_LIMIT:
            raise ValueError("no_audit_logs_status must be 402 or 403, max_limit 1..10,000")
        self._token = token
        self.organization_id = str(organization_id)
        self.zone = zone
        self.now = now
        self.caller_role = caller_role
        self.enterprise = enterprise
        # `dateTo`: "entries until the specified date or older". Docs are silent on whether that includes the day
        # itself: excluded by default (the least friendly reading); True = dateTo's day included.
        self.date_to_inclusive = date_to_inclusive
        # Docs are silent on rate-limit headers (none are documented; Make's SDK honours Retry-After "if present"):
        # a 429 carries none, unless this is set.
        self.retry_after_header = retry_after_header
        self.team_admin_of = frozenset(str(team) for team in team_admin_of)
        self.rate_limit_per_minute = rate_limit_per_minute  # Make: 1,000 per minute per organization (Enterprise)
        self.page_cap = page_cap
        self.max_limit = max_limit
        self.total_count = total_count
        self.time_format = time_format  # fixed for the simulator's life: entries are rendered when added
        self.tie_order = tie_order
        self.date_filter = date_filter
        self.day_zone = day_zone
        self.no_audit_logs_status = no_audit_logs_status
        self._entries: list[_Stored] = []  # stored (published) entries, sorted by key
        self._stored_times: list[int] = []  # their `stored` instants, sorted: how many are retrievable at an instant
        self._pending: dict[str, _Stored] = {}  # captured but not yet published (late events)
        self._uuids: set[str] = set()  # of both, to keep uuids unique
        self._delay = (0, 0)  # the least and the most createdAt - triggeredAt of a stored entry, in ms
        self._version = 0  # bumped by every insert: a query's cached matches are stale
        self._matches_cache: dict[tuple[Any, ...], list[_Stored]] = {}
        self._seconds: dict[str, int] = {}  # createdAt's second -> epoch ms
        self._recent_requests = SlidingMinuteLimit()

    # --- test hooks ---------------------------------------------------------------------------------------------

    @staticmethod
    def generate_events(count: int, start: datetime, end: datetime, seed: int, *, burst_rate: float = 0.02,
                        late_rate: float = 0.01,
                        organization_id: int = DEFAULT_ORGANIZATION_ID) -> list[dict[str, Any]]:
        """Realistic entries to `add_events()`; see the module-level `generate_events`."""
        return generate_events(count, start, end, seed, burst_rate=burst_rate, late_rate=late_rate,
                               organization_id=organization_id)

    def add_events(self, events: Iterable[dict[str, Any]], *, published: bool = True) -> None:
        """Captures audit log entries. Unpublished ones stay invisible until `publish_pending()`: a late event,
        which then lands in the middle of the order and shifts every offset after it. A published entry can be
        retrieved from its createdAt on (an entry stored after it happened is a late one too).

        `triggeredAt` may be epoch ms or ISO 8601; it is served in the simulator's `time_format`, so the entries
        served (and `ground_truth()`) are copies of those given. uuids must be unique.
        """
        new: list[_Stored] = []
        batch: set[str] = set()
        with self._lock, gc_paused():
            for event in events:
                uuid = event["uuid"]
                if not isinstance(uuid, str) or not uuid or uuid in self._uuids or uuid in batch:
                    raise ValueError(f"event uuid must be a unique string, got {uuid!r}")
                batch.add(uuid)
                new.append(self._stored(event, uuid))
            self._uuids |= batch  # only once the whole batch is valid: a refused batch leaves no trace
            if published:
                self._insert(new)
            else:
                self._pending.update((entry.key[1], entry) for entry in new)

    def publish_pending(self, uuids: Iterable[str] | None = None) -> int:
        """Makes late entries visible (all of them, or those with these uuids); returns how many. They are stored
        now: their createdAt becomes now when it was earlier."""
        with self._lock:
            chosen = list(self._pending) if uuids is None else [uuid for uuid in uuids if uuid in self._pending]
            now_ms = _to_ms(self.now())
            published = []
            for uuid in chosen:
                entry = self._pending.pop(uuid)
                if entry.created < now_ms:
                    event = {**entry.event, "createdAt": _iso_ms(now_ms)}
                    entry = entry._replace(event=event, created=now_ms, stored=max(now_ms, entry.stored))
                published.append(entry)
            self._insert(published)
            return len(chosen)

    def expire_cursors(self) -> None:
        """Nothing to expire: Make pages by `pg[offset]`, a plain number that stays valid (it may point elsewhere
        once entries are inserted before it or expire, which is the hazard offset paging has instead)."""

    def ground_truth(self) -> dict[str, dict[str, Any]]:
        """uuid -> entry (as served) for every entry a client can currently retrieve: published, stored and
        triggered not after now and not yet deleted by the 12-month retention."""
        with self._lock:
            now_ms = _to_ms(self.now())
            low, high = self._visible_range(now_ms)
            return {entry.key[1]: entry.event for entry in self._entries[low:high] if entry.stored <= now_ms}

    def _created_ms(self, created_at: str) -> int:
        """createdAt in epoch ms; the generated `YYYY-MM-DDTHH:MM:SS.mmmZ` parsed once per second (a million
        entries must be quick to add)."""
        if len(created_at) != 24 or created_at[19] != "." or created_at[23] != "Z":
            return _to_ms(datetime.fromisoformat(created_at))
        second = self._seconds.get(created_at[:19])
        if second is None:
            if len(self._seconds) > 64:
                self._seconds.clear()
            second = self._seconds[created_at[:19]] = _to_ms(datetime.fromisoformat(created_at[:19] + "+00:00"))
        return second + int(created_at[20:23])

    def _stored(self, event: dict[str, Any], uuid: str) -> _Stored:
        triggered = _triggered_ms(event["triggeredAt"])
        kept, served = _served_time(triggered, self.time_format)
        created_at = event.get("createdAt")
        created = self._created_ms(created_at) if isinstance(created_at, str) else triggered
        team, actor = event.get("team") or {}, event.get("actor") or {}
        return _Stored((kept, uuid), {**event, "triggeredAt": served}, event.get("eventName"),
                       _text(team.get("id")), team.get("name"), _text(actor.get("id")), actor.get("name"),
                       created, max(created, triggered))

    # --- the endpoints ------------------------------------------------------------------------------------------

    def route(self, request: SimRequest) -> SimResponse:
        organization_logs = ORGANIZATION_LOGS.match(request.path)
        organization_filters = ORGANIZATION_FILTERS.match(request.path)
        team_logs = TEAM_LOGS.match(request.path)
        if request.method != "GET" or not (organization_logs or organization_filters or team_logs):
            # Docs are silent on the body of a 404: SC404 in the usual envelope.
            return self._error(_ApiError(404, "The requested resource was not found.", "Not Found", "SC404"))
        if not self._authorized(request):
            # Docs are silent on the 401 body: SC401 in the usual envelope.
            return self._error(_ApiError(401, "Invalid access token.", "Access denied", "SC401"))
        if self._wrong_zone(request):
            # HTTP status codes page, 400: "User has no organization in the zone".
            return self._error(_ApiError(400, WRONG_ZONE, "Bad request", "SC400"))
        retry_after = self._throttle()
        if retry_after is not None:
            self.counters["rate_limited"] += 1
            return self.rate_limited_response(retry_after)
        try:
            if team_logs is not None:
                return self._list(request, team=self._team_access(team_logs["team_id"]))
            match = organization_logs or organization_filters
            assert match is not None
            self._organization_access(match["organization_id"])
            if organization_filters is not None:
                return self._filters()
            return self._list(request, team=None)
        except _ApiError as error:
            return self._error(error)

    def _organization_access(self, organization_id: str) -> None:
        if not organization_id.isdigit():
            raise _ApiError.invalid(f"organizationId: {organization_id!r} is not an integer")
        # "You can get the audit log entries only for organizations in which you have the "Admin" or "Owner"
        # roles. Otherwise, you get the 403 error." An organization the user is not in is no different.
        if int(organization_id) != int(self.organization_id) or self.caller_role not in ADMIN_ROLES:
            raise _ApiError(403, **ACCESS_DENIED)
        self._enterprise_only()

    def _team_access(self, team_id: str) -> str:
        if not team_id.isdigit():
            raise _ApiError.invalid(f"teamId: {team_id!r} is not an integer")
        # "You can get the audit log entries only for teams in which you have the "Team Admin" role." Docs are
        # silent on organization admins: they are treated as admins of every team of their organization.
        if self.caller_role not in ADMIN_ROLES and str(int(team_id)) not in self.team_admin_of:
            raise _ApiError(403, **ACCESS_DENIED)
        self._enterprise_only()
        return str(int(team_id))

    def _enterprise_only(self) -> None:
        # Help Center: "Audit Logs are available on the Enterprise plan only." Docs are silent on the answer to
        # another plan: `no_audit_logs_status`, 402 Payment Required (a third-party client's report) by default, or
        # 403 SC403 in the usual envelope.
        if not self.enterprise:
            if self.no_audit_logs_status == 402:
                raise _ApiError(402, "Audit logs are available on the Enterprise plan only.", "Payment Required",
                                "SC402")
            raise _ApiError(403, "Audit logs are available on the Enterprise plan only.", "Permission denied",
                            "SC403")

    def _list(self, request: SimRequest, team: str | None) -> SimResponse:
        query = self._query(request, team_endpoint=team is not None)
        if team is not None:
            query = replace(query, teams=frozenset({team}))
        asked = query.limit
        if self.page_cap == "reject" and asked > self.max_limit:
            raise _ApiError.invalid(f"pg[limit]: must be between 1 and {self.max_limit}, got {asked}")
        served = asked
        if self.page_cap in ("silent", "lying"):
            served = min(asked, self.max_limit)
        elif self.page_cap == "ignore":
            served = self.max_limit
        with self._lock:
            rows, total = self._page(query, served)
        pg: dict[str, Any] = {"sortBy": query.sort_by, "sortDir": query.sort_dir,
                              "limit": asked if self.page_cap == "lying" else served, "offset": query.offset}
        if query.return_total_count and self.total_count:
            pg["totalCount"] = total
        self.counters["pages_with_data" if rows else "empty_pages"] += 1
        self.counters["events_served"] += len(rows)
        return SimResponse.of_json(200, {"auditLogs": [entry.event for entry in rows], "pg": pg})

    def _page(self, query: _Query, limit: int) -> tuple[list[_Stored], int]:
        """`limit` entries at `pg[offset]` of the query's matches in the order asked, and how many match in all."""
        matched = self._matches(query)
        total = len(matched)
        start, stop = query.offset, min(total, query.offset + limit)
        if start >= stop:
            return [], total
        ordered: Sequence[_Stored] = matched if query.sort_dir == "asc" else _Reversed(matched)
        if query.sort_by != "triggeredAt" or self.tie_order == "stable":
            return [ordered[index] for index in range(start, stop)], total
        # Unstable ties: each group of entries with the same triggeredAt that the page touches comes in an order of
        # this query's own (its dates, offset and limit), so a group cut by a page boundary is cut differently by
        # the next query.
        low, high = start, stop
        while low > 0 and ordered[low - 1].key[0] == ordered[start].key[0]:
            low -= 1
        while high < total and ordered[high].key[0] == ordered[stop - 1].key[0]:
            high += 1
        span = [ordered[index] for index in range(low, high)]
        seed = f"{query.date_from}|{query.date_to}|{query.offset}|{query.limit}"
        first = 0
        while first < len(span):
            last = first + 1
            while last < len(span) and span[last].key[0] == span[first].key[0]:
                last += 1
            if last - first > 1:
                group = span[first:last]
                Random(f"{seed}|{span[first].key[0]}").shuffle(group)
                span[first:last] = group
            first = last
        return span[start - low: stop - low], total

    def _matches(self, query: _Query) -> list[_Stored]:
        """The entries the query matches, retrievable now, ascending by its sort; cached until that set changes."""
        now_ms = _to_ms(self.now())
        low, high = self._visible_range(now_ms)
        stored = bisect_right(self._stored_times, now_ms)
        cache_key = (query.date_from, query.date_to, query.events, query.teams, query.authors, query.sort_by, low,
                     stored, self._version)
        cached = self._matches_cache.get(cache_key)
        if cached is not None:
            return cached
        key = attrgetter("key")
        by_created = self.date_filter == "createdAt"
        least, most = self._delay if by_created else (0, 0)
        # The filtered time is triggeredAt, or createdAt within [least, most] ms of it: bound the entries to look at.
        if query.date_from is not None:
            low = max(low, bisect_left(self._entries, (query.date_from - most,), key=key))
        if query.date_to is not None:
            high = min(high, bisect_left(self._entries, (query.date_to - least,), key=key))
        date_from = query.date_from if query.date_from is not None else -(1 << 62)
        date_to = query.date_to if query.date_to is not None else 1 << 62
        matched = [entry for entry in self._entries[low:high]
                   if entry.stored <= now_ms and date_from <= (entry.created if by_created else entry.key[0]) < date_to
                   and (not query.filtered or query.matches(entry))]
        if query.sort_by != "triggeredAt":
            matched.sort(key=_sort_value(query.sort_by))  # stable: ties keep the triggeredAt order
        if len(self._matches_cache) >= 8:
            self._matches_cache.clear()
        self._matches_cache[cache_key] = matched
        return matched

    def _filters(self) -> SimResponse:
        """`/filters`: the users, teams and events the organization's entries can be filtered by."""
        with self._lock:
            now_ms = _to_ms(self.now())
            low, high = self._visible_range(now_ms)
            users: dict[int, dict[str, Any]] = {}
            teams: dict[int, dict[str, Any]] = {}
            for entry in self._entries[low:high]:
                if entry.stored > now_ms:
                    continue
                actor, team = entry.event.get("actor") or {}, entry.event.get("team")
                if "email" in actor:
                    users.setdefault(actor["id"], {key: actor[key] for key in ("id", "name", "email")})
                if team:
                    teams.setdefault(team["id"], dict(team))
        groups: dict[str, list[dict[str, str]]] = {}
        for event_name, header, _, _ in _CATALOGUE:
            label = event_name.replace("_", " ").capitalize()
            groups.setdefault(header, []).append({"label": label, "value": event_name})
        return SimResponse.of_json(200, {
            "users": sorted(users.values(), key=lambda user: user["id"]),
            "teams": sorted(teams.values(), key=lambda team: team["id"]),
            "events": [{"header": header, "items": items} for header, items in groups.items()],
        })

    # --- parameters ---------------------------------------------------------------------------------------------

    def _query(self, request: SimRequest, *, team_endpoint: bool) -> _Query:
        problems: list[str] = []

        def integer(name: str, default: int, low: int, high: int | None) -> int:
            raw = request.param(name)
            if raw is None or raw == "":
                return default
            try:
                value = int(raw)
            except ValueError:
                problems.append(f"{name}: {raw!r} is not an integer")
                return default
            if value < low or (high is not None and value > high):
                bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
                problems.append(f"{name}: must be {bounds}, got {value}")
                return default
            return value

        def choice(name: str, options: Sequence[str], default: str) -> str:
            raw = request.param(name)
            if raw is None or raw == "":
                return default
            if raw not in options:
                problems.append(f"{name}: must be one of {', '.join(options)}, got {raw!r}")
                return default
            return raw

        date_from = self._date(request.param("dateFrom"), "dateFrom", problems, upper=False)
        date_to = self._date(request.param("dateTo"), "dateTo", problems, upper=True)
        offset = integer("pg[offset]", 0, 0, None)
        limit = integer("pg[limit]", DEFAULT_LIMIT, 1, MAX_LIMIT)
        sort_by = choice("pg[sortBy]", SORT_BY, "triggeredAt")
        sort_dir = choice("pg[sortDir]", SORT_DIRS, DEFAULT_SORT_DIR)
        total = choice("pg[returnTotalCount]", ("true", "false"), "false") == "true"
        # "pg[last]: The last retrieved key." Docs are silent on what key an audit log entry has (the request
        # types it as an integer, the response as a string): last-based paging is refused rather than guessed.
        if request.param("pg[last]"):
            problems.append("pg[last]: last-based paging is not supported for audit logs; use pg[offset]")
        teams = _array(request, "team")
        if team_endpoint and teams:
            problems.append("team: not a parameter of the team endpoint")
        if problems:
            raise _ApiError.invalid(*problems)
        return _Query(date_from=date_from, date_to=date_to, events=_array(request, "event"), teams=teams,
                      authors=_array(request, "author"), offset=offset, limit=limit, sort_by=sort_by,
                      sort_dir=sort_dir, return_total_count=total)

    def _date(self, raw: str | None, name: str, problems: list[str], *, upper: bool) -> int | None:
        """A bound in epoch ms: inclusive for dateFrom, exclusive for dateTo.

        Documented: "Specify the date in the YYYY-MM-DD format." A day is taken in the `day_zone` switch's zone.
        The rendered docs' examples are date-times (`2021-09-23T00:00:00.000Z`). Docs are silent on date-times:
        accepted, as instants (dateFrom: entries at or after it; dateTo: at or before it); without an offset they
        are UTC.
        """
        if raw is None or raw == "":
            return None
        try:
            if _DATE.fullmatch(raw):
                day = _to_ms(datetime.combine(date.fromisoformat(raw), datetime.min.time(), UTC) - self.day_zone)
                if not upper:
                    return day
                return day + _DAY_MS if self.date_to_inclusive else day
            if "T" not in raw:
                raise ValueError(raw)
            moment = _to_ms(datetime.fromisoformat(raw))
        except ValueError:
            problems.append(f"{name}: {raw!r} is not a date in the YYYY-MM-DD format")
            return None
        return moment + 1 if upper else moment

    # --- auth, zone, rate limits, errors ------------------------------------------------------------------------

    def _authorized(self, request: SimRequest) -> bool:
        # "Authorization: Token your-api-token" (securitySchemes.token).
        scheme, _, credentials = (request.header("authorization") or "").partition(" ")
        return scheme.lower() == "token" and hmac.compare_digest(credentials.strip().encode(), self._token.encode())

    def _wrong_zone(self, request: SimRequest) -> bool:
        """A request to another zone's host. Hosts that are no Make zone (a test's fake base, the loopback server)
        stand for the organization's own zone."""
        host = (urlsplit(request.url).hostname or "").lower()
        return host in ZONES and host != self.zone

    def _throttle(self) -> int | None:
        """Sliding one-minute window per organization; the seconds until a request would fit again when over the
        limit. Docs are silent on whether rejected requests count: they do, so a client that does not back off
        stays throttled."""
        limit = self.rate_limit_per_minute
        return None if limit is None else self._recent_requests.over(self.now().timestamp(), limit)

    def rate_limited_response(self, retry_after: int) -> SimResponse:
        # Rate-limiting page: "Requests limit for organization exceeded, please try again later." Docs are silent
        # on the envelope's other fields: SC429 and "Too many requests".
        headers = {"Retry-After": str(retry_after)} if self.retry_after_header else {}
        return SimResponse.of_json(429, {"detail": "Too many requests.", "message": RATE_LIMIT_MESSAGE,
                                         "code": "SC429"}, headers)

    def server_error_response(self) -> SimResponse:
        # Docs are silent on the 500 body: SC500 in the usual envelope.
        return SimResponse.of_json(500, {"detail": "Internal server error.", "message": "Internal Server Error",
                                         "code": "SC500"})

    def _error(self, error: _ApiError) -> SimResponse:
        return SimResponse.of_json(error.status, error.body)

    # --- storage ------------------------------------------------------------------------------------------------

    def _visible_range(self, now_ms: int) -> tuple[int, int]:
        """Index range of entries triggered within the last 12 months and not after now (of which those stored
        after now are not retrievable yet)."""
        floor = now_ms - RETENTION // timedelta(milliseconds=1)
        key = attrgetter("key")
        return (bisect_left(self._entries, (floor,), key=key),
                bisect_right(self._entries, (now_ms, _MAX_UUID), key=key))

    def _insert(self, new: list[_Stored]) -> None:
        if not new:
            return
        new.sort(key=attrgetter("key"))
        appending = not self._entries or new[0].key > self._entries[-1].key
        self._entries.extend(new)
        if not appending:
            self._entries.sort(key=attrgetter("key"))  # two sorted runs: timsort merges them in linear time
        self._stored_times.extend(entry.stored for entry in new)
        self._stored_times.sort()
        delays = [self._delay[0], self._delay[1], *(entry.created - entry.key[0] for entry in new)]
        self._delay = (min(delays), max(delays))
        self._version += 1


class _Reversed(Sequence[_Stored]):
    """A list seen from its end, without copying it."""

    def __init__(self, items: list[_Stored]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            raise TypeError("index one entry at a time")
        return self.items[len(self.items) - 1 - index]


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _array(request: SimRequest, name: str) -> frozenset[str]:
    """A filter's values in any of the documented spellings: `event=a`, repeated `event=a&event=b`, the docs'
    `event[0]=a&event[1]=b`, and the SDK's `event[]=a`. Blank values are ignored."""
    pattern = re.compile(rf"^{re.escape(name)}(\[\d*\])?$")
    return frozenset(value for key, values in request.query.items() if pattern.match(key)
                     for value in values if value != "")


# --- realistic entries ------------------------------------------------------------------------------------------
# Event names: `key_created`, `connection_created`, `webhook_disabled`, `webhook_updated`, `webhook_deleted` are in
# Make's API reference, `webhook_created` in the SDK's fixtures; the others follow the same `<object>_<verb>`
# pattern for the objects the Help Center says are audited (scenarios, connections, keys, webhooks, data stores,
# teams, users, organization variables) and are not confirmed. Make's entries carry no IP address or user agent.
# Shapes follow the spec and the SDK: `team` is absent for organization-level events, `version` only on versioned
# objects (scenario blueprints, without `from` for the first version), and a user who was anonymized appears as
# `{"id", "anonymized": true}`.

_TEAM_NAMES = ("Operations", "Marketing", "Finance", "People Ops", "Security", "Sales Automation")


@dataclass(frozen=True, slots=True)
class _Person:
    id: int
    name: str
    email: str
    anonymized: bool

    def actor(self) -> dict[str, Any]:
        if self.anonymized:
            return {"id": self.id, "anonymized": True}
        return {"id": self.id, "name": self.name, "email": self.email}


class _Org:
    """The people, teams and objects of one generated organization, and a deterministic source of randomness."""

    def __init__(self, rng: Random, organization_id: int, size: int) -> None:
        self.rng = rng
        self.organization = {"id": organization_id, "name": DEFAULT_ORGANIZATION_NAME}
        self.teams = [{"id": 5100 + index, "name": name} for index, name in enumerate(_TEAM_NAMES)]
        # The company's shared roster: the same names, emails and addresses as in the other tools.
        self.people = [self._person(person) for person in roster(size)]
        self.admins = [person for person in self.people[: max(1, size // 20)] if not person.anonymized] \
            or [self.people[0]]
        self.scenarios: list[str] = []
        self.scenario_versions: dict[str, int] = {}
        self._next_object_id = 100_000

    def pick[T](self, options: Sequence[T]) -> T:
        """`rng.choice`, about three times faster: generation time is dominated by these picks."""
        return options[int(self.rng.random() * len(options))]

    def _person(self, person: Person) -> _Person:
        index = person.index
        # Users who have since been deleted from Make show up anonymized in every entry.
        return _Person(2_000_000 + index * 37, person.name, person.email, self.rng.random() < 0.03 and index > 0)

    def someone(self) -> _Person:
        return self.pick(self.people)

    def admin(self) -> _Person:
        return self.pick(self.admins)

    def team(self) -> dict[str, Any]:
        return dict(self.pick(self.teams))

    def new_object(self) -> str:
        self._next_object_id += 1 + int(self.rng.random() * 40)
        return str(self._next_object_id)

    def old_object(self) -> str:
        return str(100_000 + int(self.rng.random() * max(1, self._next_object_id - 100_000)))


# Each maker returns (team or None for organization-level events, actor, targetId, version or None).
_Parts = tuple[dict[str, Any] | None, dict[str, Any], str, dict[str, str] | None]


def _team_object_created(org: _Org) -> _Parts:
    return org.team(), org.someone().actor(), org.new_object(), None


def _team_object_changed(org: _Org) -> _Parts:
    return org.team(), org.someone().actor(), org.old_object(), None


def _scenario_created(org: _Org) -> _Parts:
    scenario = org.new_object()
    org.scenarios.append(scenario)
    org.scenario_versions[scenario] = 1
    return org.team(), org.someone().actor(), scenario, {"to": "1"}


def _scenario_updated(org: _Org) -> _Parts:
    # Mostly the scenarios created lately; sometimes one from before the generated span.
    recent = org.scenarios
    if recent and org.rng.random() < 0.9:
        scenario = recent[len(recent) - 1 - int(org.rng.random() * min(len(recent), 200))]
    else:
        scenario = org.old_object()
    before = org.scenario_versions.get(scenario) or 1 + int(org.rng.random() * 30)
    org.scenario_versions[scenario] = before + 1
    return org.team(), org.someone().actor(), scenario, {"from": str(before), "to": str(before + 1)}


def _user_invited(org: _Org) -> _Parts:
    return None, org.admin().actor(), str(org.someone().id), None


def _user_removed(org: _Org) -> _Parts:
    return None, org.admin().actor(), str(org.someone().id), None


def _user_role_changed(org: _Org) -> _Parts:
    return None, org.admin().actor(), str(org.someone().id), None


def _user_team_role_changed(org: _Org) -> _Parts:
    return org.team(), org.admin().actor(), str(org.someone().id), None


def _team_created(org: _Org) -> _Parts:
    team = org.team()
    return team, org.admin().actor(), str(team["id"]), None


def _organization_variable(org: _Org) -> _Parts:
    return None, org.admin().actor(), org.pick(("API_BASE_URL", "ERP_TENANT", "ALERT_EMAIL", "REGION")), None


# (eventName, the header /filters groups it under, relative frequency, maker)
_CATALOGUE: tuple[tuple[str, str, int, Callable[[_Org], _Parts]], ...] = (
    ("scenario_created", "Scenarios", 30, _scenario_created),
    ("scenario_updated", "Scenarios", 300, _scenario_updated),
    ("scenario_activated", "Scenarios", 60, _team_object_changed),
    ("scenario_deactivated", "Scenarios", 45, _team_object_changed),
    ("scenario_deleted", "Scenarios", 12, _team_object_changed),
    ("connection_created", "Connections", 40, _team_object_created),
    ("connection_updated", "Connections", 25, _team_object_changed),
    ("connection_deleted", "Connections", 10, _team_object_changed),
    ("webhook_created", "Webhooks", 25, _team_object_created),
    ("webhook_updated", "Webhooks", 20, _team_object_changed),
    ("webhook_disabled", "Webhooks", 8, _team_object_changed),
    ("webhook_deleted", "Webhooks", 6, _team_object_changed),
    ("key_created", "Keys", 6, _team_object_created),
    ("key_deleted", "Keys", 3, _team_object_changed),
    ("data_store_created", "Data stores", 8, _team_object_created),
    ("data_store_deleted", "Data stores", 3, _team_object_changed),
    ("user_invited", "Users", 10, _user_invited),
    ("user_removed", "Users", 5, _user_removed),
    ("user_role_changed", "Users", 4, _user_role_changed),
    ("user_team_role_changed", "Users", 6, _user_team_role_changed),
    ("team_created", "Teams", 1, _team_created),
    ("organization_variable_created", "Organization", 2, _organization_variable),
    ("organization_variable_updated", "Organization", 3, _organization_variable),
)
_CUM_WEIGHTS = tuple(sum(kind[2] for kind in _CATALOGUE[: index + 1]) for index in range(len(_CATALOGUE)))
# UUIDv4: version nibble 4, variant bits 10 (Make's SDK: "UUIDv4 of the audit log entry. Hyphens are optional.";
# its fixtures show 32 hex digits without hyphens).
_UUID_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID_SET = (0x4000 << 64) | (0x8000 << 48)


def generate_events(count: int, start: datetime, end: datetime, seed: int, *, burst_rate: float = 0.02,
                    late_rate: float = 0.01, organization_id: int = DEFAULT_ORGANIZATION_ID) -> list[dict[str, Any]]:
    """`count` realistic audit log entries triggered in [start, end), ascending, deterministic from `seed`.

    Bulk changes and imports come in bursts: about `burst_rate` of the entries start one, 2 to 40 entries in one
    second (some in one millisecond), so many entries share a second and pages end inside groups of equal
    triggeredAt. `createdAt` (when Make stored the entry) follows `triggeredAt` by up to 1.5 s, and for about
    `late_rate` of them (stored late) by 2 to 5 minutes: more than a collector's lag, less than its overlap. An
    entry can be retrieved from its createdAt on. Linear in `count`.
    """
    if count < 0 or end <= start:
        raise ValueError("count must be >= 0 and start < end")
    rng = Random(seed)
    org = _Org(rng, organization_id, size=max(8, min(500, count // 50 + 8)))
    start_ms, end_ms = _to_ms(start), _to_ms(end)
    span, draw, bits = max(end_ms - start_ms, 1), rng.random, rng.getrandbits
    events: list[dict[str, Any]] = []
    seconds: dict[int, str] = {}
    with gc_paused():
        times = sorted(start_ms + int(draw() * span) for _ in range(count))
        burst = 0
        for index in range(1, count):
            if burst == 0:
                if draw() < burst_rate:  # this entry starts a burst at its own time
                    burst = 1 + int(draw() * 39)
            else:
                burst -= 1
                before = times[index - 1]
                if draw() < 0.3:  # the same millisecond
                    times[index] = before
                else:  # later in the same second
                    times[index] = min(end_ms - 1, before + int(draw() * (1000 - before % 1000)))
        times.sort()
        kinds = rng.choices(_CATALOGUE, cum_weights=_CUM_WEIGHTS, k=count)
        for triggered_ms, (event_name, _, _, make) in zip(times, kinds, strict=True):
            created_ms = triggered_ms + 5 + int(draw() * 1500)
            if draw() < late_rate:
                created_ms = triggered_ms + 120_000 + int(draw() * 180_000)
            second = created_ms // 1000
            prefix = seconds.get(second)
            if prefix is None:  # formatting once per second keeps a million entries fast
                if len(seconds) > 8:
                    seconds.clear()
                prefix = seconds[second] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            team, actor, target_id, version = make(org)
            event: dict[str, Any] = {
                "uuid": f"{(bits(128) & _UUID_CLEAR) | _UUID_SET:032x}",
                "createdAt": f"{prefix}.{created_ms % 1000:03d}Z",
                "triggeredAt": triggered_ms,
                "organizationId": organization_id,
                "organization": dict(org.organization),
                "eventName": event_name,
            }
            if team is not None:
                event["team"] = team
            event["actor"] = actor
            event["targetId"] = target_id
            if version is not None:
                event["version"] = version
            events.append(event)
    return events
