"""Asana's Audit Log API, as Asana documents it.

    GET https://app.asana.com/api/1.0/workspaces/{workspace_gid}/audit_log_events

"Retrieve the audit log events that have been captured in your domain. [...] sorted by creation time in ascending
order. [...] The Audit Log API captures events from October 8th, 2021 and later. [...] AuditLogEvent objects will
be permanently deleted from our systems after 90 days." (OpenAPI `getAuditLogEvents`)

Sources: Asana's OpenAPI spec (parameters, NextPage, AuditLogEvent, ErrorResponse) and the docs pages on
pagination, rate limits, errors and supported audit log events, as collected in the project's vendor notes (§4).
Where the docs are silent, the choice made here is marked "Docs are silent:" and collectors must not depend on it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from random import Random
from typing import Any, NamedTuple
from urllib.parse import urlencode

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
from auditlake_local.simulators.people import roster

API_PREFIX = "/api/1.0"
AUDIT_LOG_EVENTS = re.compile(r"^/api/1\.0/workspaces/(?P<workspace_gid>[^/]+)/audit_log_events/?$")

CAPTURE_START = datetime(2021, 10, 8, tzinfo=UTC)  # "captures events from October 8th, 2021 and later"
RETENTION = timedelta(days=90)  # "permanently deleted from our systems after 90 days"

# The shared `limit` parameter says "The value must be between 1 and 100", while this endpoint's description says
# "The default limit is 1000 events". Both are honoured: an explicit limit above `max_limit` (default 100, the
# conservative reading) is rejected with a 400, an omitted one returns up to 1000 events. `max_limit=1000` is the
# other reading. Collectors should always send limit <= 100.
MAX_LIMIT = 100
DEFAULT_LIMIT = 1000

# "Note that an offset token will expire after some time" (NextPage), for how long is undocumented here; other
# endpoints' offsets are JWTs that live 900 s. Default: shorter than a collector's five-minute schedule, so every
# offset a run stores has expired when the next run sends it (and stays expired); longer than the seconds between
# two pages of one run. An expired offset is a 400, as other endpoints answer (`expired_offset_status` switches it).
DEFAULT_OFFSET_TTL = timedelta(minutes=3)

# `next_page: null` (`null_next_page`). Documented: "If there are no events that match the provided filters in your
# domain, the endpoint will return null for the next_page field", and otherwise next_page keeps coming, even once
# caught up. The alternatives, beyond the docs: null on the page that reaches the last event matching now (Asana's
# generic paging), or null on every page of events (no offset ever, as a broken stream might).
NULL_NEXT_PAGE = ("when_nothing_matched", "on_last_page", "on_every_page")

# What a domain without audit logs answers (`no_audit_logs_status`): 402 Payment Required is among the endpoint's
# documented errors ("above your current premium level"); a 403 is the other plausible answer.
NO_AUDIT_LOGS_MESSAGES = {
    402: "Audit log API access is only available to Enterprise+ organizations. The request was valid, but the "
         "queried object is above your current premium level.",
    403: "You do not have access to the audit log of this organization.",
}

ACTOR_TYPES = frozenset({"user", "asana", "asana_support", "anonymous", "external_administrator"})

ERRORS_HELP = ("For more information on API status codes and how to handle them, read the docs on errors: "
               "https://developers.asana.com/docs/errors")
RATE_LIMIT_MESSAGE = ("You've made too many requests and hit a rate limit. "
                      "Please retry after the given amount of time.")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

# A stored event's place in the stream: (created_at in µs, len(gid), gid). Ascending by creation time as
# documented; docs are silent on ties, so events of the same instant are ordered by gid, numerically.
_Key = tuple[int, int, str]



def _to_us(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MICROSECOND


def _event_key(created_us: int, gid: str) -> _Key:
    return (created_us, len(gid), gid)


class _ApiError(Exception):
    """An error Asana answers in its envelope: {"errors": [{"message": ..., "help": ...}]}."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Stored(NamedTuple):  # a tuple: a million of them must be cheap to build
    key: _Key
    event: dict[str, Any]
    event_type: str | None
    actor_type: str | None
    actor_gid: str | None
    resource_gid: str | None


@dataclass(frozen=True)
class _Filters:
    """The query's filters: "Any combination of query parameters is valid. When no filters are provided, all of
    the events that have been captured in your domain will match."""

    start_at: int | None  # µs, inclusive: "events created after this time (inclusive)"
    end_at: int | None  # µs, exclusive: "events created before this time (exclusive)"
    event_type: str | None
    actor_type: str | None
    actor_gid: str | None
    resource_gid: str | None

    def fingerprint(self) -> str:
        """Identifies the filters an offset was issued for. Times are compared as instants, so `Z` and `+00:00`
        spellings of the same moment are the same query."""
        canonical = json.dumps([self.start_at, self.end_at, self.event_type, self.actor_type, self.actor_gid,
                                self.resource_gid])
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def matches(self, stored: _Stored) -> bool:
        return ((self.event_type is None or stored.event_type == self.event_type)
                and (self.actor_type is None or stored.actor_type == self.actor_type)
                and (self.actor_gid is None or stored.actor_gid == self.actor_gid)
                and (self.resource_gid is None or stored.resource_gid == self.resource_gid))


class AsanaSimulator(VendorSimulator):
    """One Asana organization (domain) with its audit log, served to one service-account token.

    Knobs: `audit_logs_available=False` (the domain's plan lacks audit logs: every call answers
    `no_audit_logs_status`, 402 by default), `rate_limit_per_minute`.
    Switches for what the docs leave open, each defaulting to the least friendly reading: `offset_ttl` and
    `expired_offset_status` (offsets expire), `max_limit` (the 1..100 vs "default 1000" conflict),
    `null_next_page`, and `publication_delay` (capture latency: an event becomes visible up to this long after its
    created_at, each one at its own, deterministic moment; None, the default, publishes at created_at, since the
    exactly-once matrix runs against the defaults and only the reconciliation can catch what is published later
    than the collectors' overlap).
    Test hooks: `add_events`, `publish_pending`, `expire_offsets`, `ground_truth`, `generate_events`, and the
    base class's `faults`, `requests_log`, `on_request` and `stats()`.
    """

    vendor = "asana"
    stat_keys = ("pages_with_data", "empty_pages", "events_served", "rate_limited")

    def __init__(self, token: str, workspace_gid: str, *, now: Callable[[], datetime] = utc_now,
                 offset_ttl: timedelta | None = DEFAULT_OFFSET_TTL, expired_offset_status: int = 400,
                 max_limit: int = MAX_LIMIT, null_next_page: str = "when_nothing_matched",
                 publication_delay: timedelta | None = None, audit_logs_available: bool = True,
                 no_audit_logs_status: int = 402, rate_limit_per_minute: int | None = None,
                 faults: FaultPlan | None = None, on_request: Callable[[RequestRecord], None] | None = None,
                 fault_retry_after: int = 1) -> None:
        super().__init__(faults=faults, on_request=on_request, fault_retry_after=fault_retry_after)
        self._token = token
        self.workspace_gid = workspace_gid
        self.now = now
        # DEFAULT_OFFSET_TTL; None = offsets never expire, except through `expire_offsets()`.
        self.offset_ttl = offset_ttl
        self.expired_offset_status = expired_offset_status
        self.max_limit = max_limit
        if null_next_page not in NULL_NEXT_PAGE:
            raise ValueError(f"null_next_page must be one of {', '.join(NULL_NEXT_PAGE)}")
        self.null_next_page = null_next_page
        self.publication_delay = publication_delay
        if no_audit_logs_status not in NO_AUDIT_LOGS_MESSAGES:
            raise ValueError(f"no_audit_logs_status must be one of {sorted(NO_AUDIT_LOGS_MESSAGES)}")
        self.audit_logs_available = audit_logs_available
        self.no_audit_logs_status = no_audit_logs_status
        # Asana: 150 (free) / 1,500 (paid) requests per minute per token. None = no limiting.
        self.rate_limit_per_minute = rate_limit_per_minute
        self.max_concurrent_requests = 50  # "at most 50 GET requests in flight" per token (rate-limits page)
        self._entries: list[_Stored] = []  # visible events, sorted by key
        self._pending: dict[str, _Stored] = {}  # captured but not yet published (late events)
        self._gids: set[str] = set()  # of both, to keep gids unique
        self._offset_epoch = 0
        # Offsets are signed so that a hand-made or altered token is rejected, as Asana rejects any offset it did
        # not issue. The key depends only on the workspace, so offsets survive a new simulator instance of the
        # same workspace (a collector's stored cursor stays usable across test phases).
        self._offset_key = hashlib.sha256(f"auditlake asana simulator offsets {workspace_gid}".encode()).digest()
        self._recent_requests = SlidingMinuteLimit()
        self._phrases = Random(workspace_gid)

    # --- test hooks ---------------------------------------------------------------------------------------------

    @staticmethod
    def generate_events(count: int, start: datetime, end: datetime, seed: int, *,
                        burst_rate: float = 0.05) -> list[dict[str, Any]]:
        """Realistic events to `add_events()`; see the module-level `generate_events`."""
        return generate_events(count, start, end, seed, burst_rate=burst_rate)

    def add_events(self, events: Iterable[dict[str, Any]], *, published: bool = True) -> None:
        """Captures events. Unpublished ones stay invisible until `publish_pending()`: a late event.

        Events are served as given (treat them as read-only afterwards). gids must be unique.
        """
        new: list[_Stored] = []
        batch: set[str] = set()
        with self._lock, gc_paused():
            for event in events:
                gid = event["gid"]
                if not isinstance(gid, str) or gid in self._gids or gid in batch:
                    raise ValueError(f"event gid must be a unique string, got {gid!r}")
                batch.add(gid)
                actor, resource = event.get("actor") or {}, event.get("resource") or {}
                created = datetime.fromisoformat(event["created_at"])
                new.append(_Stored(_event_key(_to_us(created), gid), event, event.get("event_type"),
                                   actor.get("actor_type"), actor.get("gid"), resource.get("gid")))
            self._gids |= batch  # only once the whole batch is valid: a refused batch leaves no trace
            if published:
                self._insert(new)
            else:
                self._pending.update((entry.key[2], entry) for entry in new)

    def publish_pending(self, gids: Iterable[str] | None = None) -> int:
        """Makes late events visible (all of them, or those with these gids); returns how many."""
        with self._lock:
            chosen = list(self._pending) if gids is None else [gid for gid in gids if gid in self._pending]
            self._insert([self._pending.pop(gid) for gid in chosen])
            return len(chosen)

    def expire_offsets(self) -> None:
        """Every offset issued so far becomes invalid (400), as when Asana's tokens expire."""
        with self._lock:
            self._offset_epoch += 1

    def expire_cursors(self) -> None:
        self.expire_offsets()

    def ground_truth(self) -> dict[str, dict[str, Any]]:
        """gid -> event for every event a client can currently retrieve: published, captured (created_at not in
        the future), on or after 2021-10-08 and not yet deleted by the 90-day retention."""
        with self._lock:
            now_us = self._now_us()
            low, high = self._visible_range(now_us)
            return {entry.key[2]: entry.event for entry in self._entries[low:high] if self._published(entry, now_us)}

    # --- the endpoint -------------------------------------------------------------------------------------------

    def route(self, request: SimRequest) -> SimResponse:
        # 404: "Either the request method and path supplied do not specify a known action in the API, or the object
        # specified by the request does not exist."
        match = AUDIT_LOG_EVENTS.match(request.path)
        if match is None or request.method != "GET":
            return self._error(404, "No matching route for request")
        # 401: "A valid authentication token was not provided with the request". Example body: "Not Authorized".
        if not self._authorized(request):
            return self._error(401, "Not Authorized")
        retry_after = self._throttle()
        if retry_after is not None:
            self.counters["rate_limited"] += 1
            return self.rate_limited_response(retry_after)
        # Docs are silent on a workspace the token cannot see: 404 ("the object specified by the request does not
        # exist"), since a service account only sees its own organization. Some Asana endpoints answer 403 instead;
        # collectors should treat both as a configuration error, never as "no events".
        if match["workspace_gid"] != self.workspace_gid:
            return self._error(404, f"workspace: Not a recognized ID: {match['workspace_gid']}")
        if not self.audit_logs_available:
            return self._error(self.no_audit_logs_status, NO_AUDIT_LOGS_MESSAGES[self.no_audit_logs_status])
        try:
            return self._get_audit_log_events(request)
        except _ApiError as error:
            return self._error(error.status, error.message)

    def _get_audit_log_events(self, request: SimRequest) -> SimResponse:
        filters = self._filters(request)
        limit = self._limit(request)
        raw_offset = request.param("offset")
        position = self._decode_offset(raw_offset, filters) if raw_offset is not None else None

        # "When no offset is provided, the response will begin with the oldest events that match the provided
        # filters." With an offset, the stream continues strictly after the last event already returned.
        page, more = self._scan(filters, position, limit)
        data = [entry.event for entry in page]

        # Streaming: "If the filters you provided match events in your domain and next_page is present in the
        # response, we will continue to send next_page on subsequent requests even when there are no more events
        # [...]" and "If there are no events that match the provided filters in your domain, the endpoint will
        # return null for the next_page field." Without an offset the page starts at the oldest match, so an empty
        # page means nothing matches; with an offset something matched before, so next_page always comes back.
        next_page: dict[str, str] | None = None
        if page or position is not None:
            last = page[-1].key if page else position
            assert last is not None
            offset = self._issue_offset(last, filters)
            params = [(name, value) for name, values in request.query.items() if name != "offset"
                      for value in values]
            path = f"/workspaces/{self.workspace_gid}/audit_log_events?{urlencode([*params, ('offset', offset)])}"
            next_page = {"offset": offset, "path": path, "uri": f"{request.origin}{API_PREFIX}{path}"}
        if page and (self.null_next_page == "on_every_page" or (self.null_next_page == "on_last_page" and not more)):
            next_page = None  # the switched alternatives to the documented streaming

        self.counters["pages_with_data" if data else "empty_pages"] += 1
        self.counters["events_served"] += len(data)
        return SimResponse.of_json(200, {"data": data, "next_page": next_page})

    def _scan(self, filters: _Filters, position: _Key | None, limit: int) -> tuple[list[_Stored], bool]:
        """Up to `limit` matching events after `position`, and whether another one follows them now."""
        with self._lock:
            now_us = self._now_us()
            low, high = self._visible_range(now_us)
            if filters.start_at is not None:
                low = max(low, bisect_left(self._entries, (filters.start_at,), key=attrgetter("key")))
            if filters.end_at is not None:
                high = min(high, bisect_left(self._entries, (filters.end_at,), key=attrgetter("key")))
            if position is not None:
                # An offset is a position, not a snapshot: events published later that sort after it are returned
                # on the next poll, but a late event whose created_at sorts BEFORE it is never returned by this
                # stream. That is how a position-based stream behaves, and why collectors need an overlap window
                # (re-query from an earlier start_at, dedup by gid) to catch late events.
                low = max(low, bisect_right(self._entries, position, key=attrgetter("key")))
            page: list[_Stored] = []
            for index in range(low, high):
                entry = self._entries[index]
                if filters.matches(entry) and self._published(entry, now_us):
                    if len(page) == limit:
                        return page, True
                    page.append(entry)
            return page, False

    # --- parameters ---------------------------------------------------------------------------------------------

    def _filters(self, request: SimRequest) -> _Filters:
        # Docs are silent on blank values (`event_type=`): they are treated as absent.
        def text(name: str) -> str | None:
            return request.param(name) or None

        actor_type = text("actor_type")
        if actor_type is not None and actor_type not in ACTOR_TYPES:
            raise _ApiError(400, f"actor_type: Not a valid enum value: {actor_type}. "
                                 f"Valid values: {', '.join(sorted(ACTOR_TYPES))}")
        # "If actor_gid is included, [actor_type] should be excluded": sending both is accepted and both apply.
        return _Filters(start_at=self._date_time(request, "start_at"), end_at=self._date_time(request, "end_at"),
                        event_type=text("event_type"), actor_type=actor_type, actor_gid=text("actor_gid"),
                        resource_gid=text("resource_gid"))

    @staticmethod
    def _date_time(request: SimRequest, name: str) -> int | None:
        raw = request.param(name)
        if not raw:
            return None
        # ISO 8601 date-time: `Z` or a numeric offset. An unencoded `+` in a query string decodes to a space and is
        # rejected here, as it would be by any server. Docs are silent on naive times and bare dates: both are read
        # as UTC.
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            raise _ApiError(400, f"{name}: Invalid date-time: {raw}. Use ISO 8601, "
                                 "e.g. 2024-01-01T00:00:00.000Z") from None
        return _to_us(moment)

    def _limit(self, request: SimRequest) -> int:
        raw = request.param("limit")
        if raw is None:
            return DEFAULT_LIMIT
        try:
            limit = int(raw)
        except ValueError:
            raise _ApiError(400, f"limit: Not a valid integer: {raw}") from None
        if not 1 <= limit <= self.max_limit:
            raise _ApiError(400, f"limit: The value must be between 1 and {self.max_limit}.")
        return limit

    # --- offsets ------------------------------------------------------------------------------------------------
    # "An offset to the next page returned by the API. [...] You can only pass in an offset that was returned to
    # you via a previously paginated request." Asana's offsets look like JWTs (`eyJ0eXAi...`); these are too:
    # base64url(header).base64url(claims).base64url(HMAC-SHA256), with the claims
    #   ws    the workspace,  pos  [created_at µs, gid] of the last event returned,
    #   flt   the filters' fingerprint,  iat  issue time (ms, simulated clock),  epoch  see expire_offsets().
    # Docs are silent on reusing an offset with other filters: rejected with 400, since the position only means
    # something within the query it came from.

    _OFFSET_HEADER = base64.urlsafe_b64encode(b'{"typ":"JWT","alg":"HS256"}').rstrip(b"=").decode()

    def _issue_offset(self, position: _Key, filters: _Filters) -> str:
        claims = {"ws": self.workspace_gid, "pos": [position[0], position[2]], "flt": filters.fingerprint(),
                  "iat": _to_us(self.now()) // 1000, "epoch": self._offset_epoch}
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        signing_input = f"{self._OFFSET_HEADER}.{payload}"
        return f"{signing_input}.{_b64(self._sign(signing_input))}"

    def _decode_offset(self, token: str, filters: _Filters) -> _Key:
        invalid = _ApiError(400, "offset: Invalid offset. You can only pass in an offset that was returned to you "
                                 "via a previously paginated request.")
        try:
            header, payload, signature = token.split(".")
            if not hmac.compare_digest(_unb64(signature), self._sign(f"{header}.{payload}")):
                raise invalid
            claims = json.loads(_unb64(payload))
            created_us, gid = claims["pos"]
        except (ValueError, TypeError, KeyError):  # wrong shape, bad base64, bad JSON
            raise invalid from None
        if claims.get("ws") != self.workspace_gid or not isinstance(created_us, int) or not isinstance(gid, str):
            raise invalid
        if claims.get("flt") != filters.fingerprint():
            raise _ApiError(400, "offset: This offset was issued for a different query. Send it with the same "
                                 "filters (start_at, end_at, event_type, actor_type, actor_gid, resource_gid).")
        expired = claims.get("epoch") != self._offset_epoch
        if self.offset_ttl is not None:
            age_ms = _to_us(self.now()) // 1000 - int(claims.get("iat", 0))
            expired = expired or age_ms > self.offset_ttl / timedelta(milliseconds=1)
        if expired:
            raise _ApiError(self.expired_offset_status, "offset: Your pagination token has expired. Start a new "
                                                        "query without offset.")
        return _event_key(created_us, gid)

    def _sign(self, signing_input: str) -> bytes:
        return hmac.new(self._offset_key, signing_input.encode(), hashlib.sha256).digest()

    # --- auth, rate limits, errors ------------------------------------------------------------------------------

    def _authorized(self, request: SimRequest) -> bool:
        scheme, _, credentials = (request.header("authorization") or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(credentials.strip().encode(), self._token.encode())

    def _throttle(self) -> int | None:
        """Sliding one-minute window per token; the Retry-After in seconds when this request is over the limit.

        "Rejected requests still count against the quota", so a client that ignores Retry-After stays throttled.
        """
        limit = self.rate_limit_per_minute
        return None if limit is None else self._recent_requests.over(self.now().timestamp(), limit)

    def rate_limited_response(self, retry_after: int) -> SimResponse:
        # "the standard Retry-After header" with the seconds to wait, and this body (rate-limits page).
        return SimResponse.of_json(429, {"errors": [{"message": RATE_LIMIT_MESSAGE}]},
                                   {"Retry-After": str(retry_after)})

    def server_error_response(self) -> SimResponse:
        # "In the event of a server error the response body will contain an error phrase" (node-asana-phrase).
        return SimResponse.of_json(500, {"errors": [{"message": "Server Error", "phrase": self._phrase(),
                                                      "help": ERRORS_HELP}]})

    def _error(self, status: int, message: str) -> SimResponse:
        return SimResponse.of_json(status, {"errors": [{"message": message, "help": ERRORS_HELP}]})

    def _phrase(self) -> str:
        pick = self._phrases.choice
        return (f"{self._phrases.randint(2, 32)} {pick(_ADJECTIVES)} {pick(_NOUNS)} {pick(_VERBS)} "
                f"{pick(_ADVERBS)}")

    # --- storage ------------------------------------------------------------------------------------------------

    def _now_us(self) -> int:
        return _to_us(self.now())

    def _published(self, entry: _Stored, now_us: int) -> bool:
        """Whether the event is published by now: at once, or with `publication_delay` a deterministic share of it
        after its created_at (drawn from its gid, so every query agrees)."""
        delay = self.publication_delay
        if delay is None or entry.key[0] <= now_us - delay // _MICROSECOND:
            return True
        share = int.from_bytes(hashlib.sha256(entry.key[2].encode()).digest()[:8], "big") / 2**64
        return entry.key[0] + int(share * (delay // _MICROSECOND)) <= now_us

    def _visible_range(self, now_us: int) -> tuple[int, int]:
        """Index range of events a client can see now: created on or after max(2021-10-08, now - 90 days)
        (retention) and not after now (an event cannot be captured before it happens)."""
        floor = max(_to_us(CAPTURE_START), now_us - RETENTION // _MICROSECOND)
        key = attrgetter("key")
        return (bisect_left(self._entries, (floor,), key=key),
                bisect_right(self._entries, (now_us, math.inf), key=key))

    def _insert(self, new: list[_Stored]) -> None:
        if not new:
            return
        new.sort(key=attrgetter("key"))
        appending = not self._entries or new[0].key > self._entries[-1].key
        self._entries.extend(new)
        if not appending:
            self._entries.sort(key=attrgetter("key"))  # two sorted runs: timsort merges them in linear time


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_OCTETS = tuple(range(1, 255))
_ADJECTIVES = ("sad", "happy", "brave", "sleepy", "clever", "gentle", "quiet", "lucky", "tiny", "jolly")
_NOUNS = ("squid", "otters", "llamas", "pandas", "herons", "badgers", "koalas", "walruses", "moths", "geckos")
_VERBS = ("snuggle", "wander", "juggle", "giggle", "tumble", "whistle", "paddle", "ponder", "scurry", "dance")
_ADVERBS = ("softly", "quickly", "gladly", "boldly", "calmly", "wildly", "neatly", "loudly", "rarely", "warmly")


# --- realistic events -------------------------------------------------------------------------------------------
# Event types and categories from Asana's "Supported audit log events" page; the category strings are those seen
# in real events (logins, admin_settings, content_export, access_control, roles, apps; `deletion` from the spec);
# `user_updates` follows the docs' "User updates" heading and is not confirmed. Shapes of details follow real
# events (login `method`, role changes with `group`, old_value/new_value). Addresses are documentation ranges.

_BROWSERS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 "
    "Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 "
    "Safari/537.36 Edg/123.0.0.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.4; rv:125.0) Gecko/20100101 Firefox/125.0",
)
_DESKTOP_AGENT = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Asana/2.3.0 " \
                 "Chrome/122.0.6261.156 Electron/29.4.0 Safari/537.36"
_MOBILE_AGENTS = ("Asana/8.41.2 (iPhone; iOS 17.4.1; Scale/3.00)", "Asana/8.40.0 (Android 14; Pixel 8)")
_API_AGENTS = ("python-requests/2.31.0", "node-asana/3.0.5", "Go-http-client/2.0")
_OAUTH_APPS = ("Slack", "Zapier", "Microsoft Teams", "Tableau")
_TASK_NAMES = ("Quarterly review", "Fix login bug", "Draft launch plan", "Update onboarding doc", "Vendor contract",
               "Budget 2025", "Customer interview notes", "Security questionnaire")
_PROJECT_NAMES = ("Website redesign", "Q3 roadmap", "Hiring pipeline", "SOC 2 audit", "Mobile app v5")
_TEAM_NAMES = ("Engineering", "Marketing", "Finance", "People Ops", "Security")


@dataclass(frozen=True, slots=True)
class _Person:
    gid: str
    name: str
    email: str
    ip: str

    def actor(self) -> dict[str, Any]:
        return {"actor_type": "user", "gid": self.gid, "name": self.name, "email": self.email}

    def resource(self) -> dict[str, Any]:
        return {"resource_type": "user", "gid": self.gid, "name": self.name, "email": self.email}


class _Org:
    """The people and objects of one generated organization, and a deterministic source of randomness."""

    def __init__(self, rng: Random, size: int) -> None:
        self.rng = rng
        self.used_gids: set[str] = set()
        self.workspace = {"resource_type": "workspace", "gid": self.gid(), "name": "Example Corp"}
        # The company's shared roster: the same names, emails and addresses as in the other tools.
        self.people = [_Person(self.gid(), person.name, person.email, person.ip) for person in roster(size)]
        self.admins = self.people[: max(1, size // 20)]

    def pick[T](self, options: Sequence[T]) -> T:
        """`rng.choice`, about three times faster: generation time is dominated by these picks."""
        return options[int(self.rng.random() * len(options))]

    def gid(self) -> str:
        """A fresh 16-digit numeric gid, like Asana's (9e15 < 2**53: a float draw reaches every value)."""
        while True:
            gid = str(10**15 + int(self.rng.random() * 9 * 10**15))
            if gid not in self.used_gids:
                self.used_gids.add(gid)
                return gid

    def someone(self) -> _Person:
        return self.pick(self.people)

    def admin(self) -> _Person:
        return self.pick(self.admins)

    def context(self, person: _Person | None) -> dict[str, Any]:
        """Where a person acted from: mostly the web app, sometimes desktop, mobile or the API."""
        roll = self.rng.random()
        ip = person.ip if person is not None else f"203.0.113.{self.pick(_OCTETS)}"
        if roll < 0.72:
            return {"context_type": "web", "client_ip_address": ip, "user_agent": self.pick(_BROWSERS)}
        if roll < 0.86:
            return {"context_type": "desktop", "client_ip_address": ip, "user_agent": _DESKTOP_AGENT}
        if roll < 0.95:
            return {"context_type": "mobile", "client_ip_address": ip, "user_agent": self.pick(_MOBILE_AGENTS)}
        return self.api_context(ip, self.pick(("oauth", "personal_access_token", "service_account")))

    def api_context(self, ip: str, method: str) -> dict[str, Any]:
        context = {"context_type": "api", "api_authentication_method": method, "client_ip_address": ip,
                   "user_agent": self.pick(_API_AGENTS)}
        if method == "oauth":
            context["oauth_app_name"] = self.pick(_OAUTH_APPS)
        return context


# Each maker returns (actor, resource, details, context) for its event type.
_Parts = tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]


def _login(org: _Org) -> _Parts:
    user = org.someone()
    return user.actor(), user.resource(), {"method": [org.pick(("SAML", "ONE_TIME_KEY"))]}, org.context(user)


def _logout(org: _Org) -> _Parts:
    user = org.someone()
    return user.actor(), user.resource(), {}, org.context(user)


def _self_service(org: _Org) -> _Parts:
    user = org.someone()
    return user.actor(), user.resource(), {}, org.context(user)


def _forgot_password(org: _Org) -> _Parts:
    # Nobody is signed in yet when a reset link is requested.
    return {"actor_type": "anonymous"}, org.someone().resource(), {}, org.context(None)


def _password_reset(org: _Org) -> _Parts:
    user = org.someone()
    if org.rng.random() < 0.3:  # done by Asana support at an admin's request
        admin = org.admin()
        return ({"actor_type": "asana_support"}, user.resource(), {},
                {"context_type": "asana_support", "on_behalf_of_user_id": int(admin.gid)})
    return user.actor(), user.resource(), {}, org.context(user)


def _provisioning(org: _Org) -> _Parts:
    user = org.someone()
    if org.rng.random() < 0.5:  # SCIM from the identity provider
        return ({"actor_type": "external_administrator"}, user.resource(), {},
                org.api_context(f"198.51.100.{org.pick(_OCTETS)}", "service_account"))
    admin = org.admin()
    return admin.actor(), user.resource(), {}, org.context(admin)


def _admin_role_changed(org: _Org) -> _Parts:
    admin, user = org.admin(), org.someone()
    old, new = org.pick((("member", "domain_admin"), ("domain_admin", "member"), ("member", "super_admin")))
    details = {"group": dict(org.workspace), "old_value": old, "new_value": new}
    return admin.actor(), user.resource(), details, org.context(admin)


def _email_domain_added(org: _Org) -> _Parts:
    admin = org.admin()
    details = {"new_value": f"{org.pick(('corp', 'eu', 'labs', 'acquired'))}.example.com"}
    return admin.actor(), dict(org.workspace), details, org.context(admin)


def _app_approvals_changed(org: _Org) -> _Parts:
    admin = org.admin()
    old, new = org.pick((("off", "all_apps"), ("all_apps", "off")))
    return admin.actor(), dict(org.workspace), {"old_value": old, "new_value": new}, org.context(admin)


def _team_privacy_changed(org: _Org) -> _Parts:
    user = org.someone()
    team = {"resource_type": "team", "gid": org.gid(), "name": org.pick(_TEAM_NAMES)}
    old, new = org.pick((("members_only", "public"), ("public", "members_only"), ("public", "secret")))
    return user.actor(), team, {"old_value": old, "new_value": new}, org.context(user)


def _export_started(org: _Org) -> _Parts:
    admin = org.admin()
    return admin.actor(), dict(org.workspace), {}, org.context(admin)


def _service_account_created(org: _Org) -> _Parts:
    admin = org.admin()
    account = {"resource_type": "user", "gid": org.gid(),
               "name": f"{org.pick(('Splunk', 'Datadog', 'Okta', 'Slack'))} Service Account"}
    return admin.actor(), account, {}, org.context(admin)


def _task_deleted(org: _Org) -> _Parts:
    task = {"resource_type": "task", "resource_subtype": org.pick(("default_task", "default_task", "milestone")),
            "gid": org.gid(), "name": org.pick(_TASK_NAMES)}
    if org.rng.random() < 0.1:  # deleted by an automation rule
        return ({"actor_type": "asana"}, task, {},
                {"context_type": "asana", "rule_name": "When task is moved to Done, delete it"})
    user = org.someone()
    return user.actor(), task, {}, org.context(user)


def _project_deleted(org: _Org) -> _Parts:
    user = org.someone()
    project = {"resource_type": "project", "gid": org.gid(), "name": org.pick(_PROJECT_NAMES)}
    return user.actor(), project, {}, org.context(user)


# (event_type, event_category, relative frequency, maker)
_CATALOGUE: tuple[tuple[str, str, int, Callable[[_Org], _Parts]], ...] = (
    ("user_login_succeeded", "logins", 400, _login),
    ("user_login_failed", "logins", 40, _login),
    ("user_logged_out", "logins", 120, _logout),
    ("user_invited", "user_updates", 12, _provisioning),
    ("user_deprovisioned", "user_updates", 8, _provisioning),
    ("user_reprovisioned", "user_updates", 2, _provisioning),
    ("user_forgot_password_started", "user_updates", 6, _forgot_password),
    ("user_password_reset", "user_updates", 4, _password_reset),
    ("user_password_changed", "user_updates", 8, _self_service),
    ("user_two_factor_auth_enabled", "user_updates", 4, _self_service),
    ("user_two_factor_auth_disabled", "user_updates", 1, _self_service),
    ("user_workspace_admin_role_changed", "roles", 2, _admin_role_changed),
    ("workspace_associated_email_domain_added", "admin_settings", 1, _email_domain_added),
    ("workspace_require_app_approvals_of_type_changed", "admin_settings", 1, _app_approvals_changed),
    ("team_privacy_settings_changed", "access_control", 3, _team_privacy_changed),
    ("workspace_export_started", "content_export", 1, _export_started),
    ("service_account_created", "apps", 1, _service_account_created),
    ("task_deleted", "deletion", 120, _task_deleted),
    ("project_deleted", "deletion", 10, _project_deleted),
)
_CUM_WEIGHTS = tuple(sum(kind[2] for kind in _CATALOGUE[: index + 1]) for index in range(len(_CATALOGUE)))


def generate_events(count: int, start: datetime, end: datetime, seed: int, *,
                    burst_rate: float = 0.05) -> list[dict[str, Any]]:
    """`count` realistic AuditLogEvent objects created in [start, end), ascending, deterministic from `seed`.

    About `burst_rate` of them share the millisecond of the event before (bulk deprovisioning, login storms), so
    pages end inside groups of identical created_at and tie-breaking is exercised. Linear in `count`.
    """
    if count < 0 or end <= start:
        raise ValueError("count must be >= 0 and start < end")
    rng = Random(seed)
    org = _Org(rng, size=max(8, min(500, count // 50 + 8)))
    start_ms, end_ms = _to_us(start) // 1000, _to_us(end) // 1000
    span, draw = max(end_ms - start_ms, 1), rng.random
    events: list[dict[str, Any]] = []
    with gc_paused():
        times = sorted(start_ms + int(draw() * span) for _ in range(count))
        for index in range(1, count):
            if draw() < burst_rate:
                times[index] = times[index - 1]
        kinds = rng.choices(_CATALOGUE, cum_weights=_CUM_WEIGHTS, k=count)
        last_second, prefix = -1, ""
        for created_ms, (event_type, category, _, make) in zip(times, kinds, strict=True):
            second = created_ms // 1000
            if second != last_second:  # formatting once per second keeps a million events fast
                last_second, prefix = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            actor, resource, details, context = make(org)
            events.append({"gid": org.gid(), "created_at": f"{prefix}.{created_ms % 1000:03d}Z",
                           "event_type": event_type, "event_category": category, "actor": actor,
                           "resource": resource, "details": details, "context": context})
    return events

