"""Ashby's audit log API (beta), as Ashby documents it.

    POST https://api.ashbyhq.com/auditLog.list

"Lists an organization's audit log entries, newest first. [...] Pagination: follow the opaque cursor /
nextCursor [...] Requires the auditLogsRead permission. [...] The org must have the Audit Logs feature enabled."
(docs page `auditLog.list`)

Sources: Ashby's pages on auditLog.list, the Audit Log Vocabulary, Pagination and Incremental Synchronization,
Responses and Authentication, and the changelog, as collected in the project's vendor notes (§2). Where the docs
are silent, the choice made here is marked "Docs are silent:" and collectors must not depend on it.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import hashlib
import hmac
import json
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from random import Random
from typing import Any, NamedTuple

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

ENDPOINT = "/auditLog.list"

# "The maximum number of items to return. The maximum and default value is 100."
MAX_LIMIT = 100
# actorIds, targetIds, targetTypes, categories: "Each array may contain at most 100 ids or values; longer arrays are
# rejected with a 400."
MAX_FILTER_ITEMS = 100
# "Both startDate and endDate: Explicit span (max 18 months)". Docs are silent on how a month is counted: calendar
# months here (endDate may be at most startDate + 18 months, day clamped to the month's end), which is never less
# than 546 days.
MAX_SPAN_MONTHS = 18
# "{} (no dates): Last 24 hours ending now; endDate only: 24 hours ending at endDate; startDate only: 24 hours
# starting at startDate (ends at startDate + 24h, not until now)".
DEFAULT_SPAN = timedelta(hours=24)

# The Audit Log Vocabulary: "Each category belongs to exactly one target type." `job`, `app_user` and
# `JobStatusChanged` are the docs' own examples; the other names follow the same conventions (snake_case target
# types, PascalCase categories) for the activity the docs say is audited, and are not confirmed spellings.
VOCABULARY: dict[str, tuple[str, ...]] = {
    "app_user": ("UserLoggedIn", "UserLoginFailed", "UserLoggedOut", "UserInvited", "UserDeactivated",
                 "UserReactivated", "UserPermissionsChanged"),
    "api_key": ("ApiKeyCreated", "ApiKeyRevoked"),
    "organization": ("SsoConfigurationChanged", "OrganizationDataExported"),
    "report": ("ReportExported",),
    "job": ("JobCreated", "JobUpdated", "JobStatusChanged"),
    "candidate": ("CandidateCreated", "CandidateMerged", "CandidateDeleted"),
    "application": ("ApplicationStageChanged", "ApplicationArchived", "ApplicationHired"),
    "interview_schedule": ("InterviewScheduled", "InterviewCancelled"),
    "offer": ("OfferCreated", "OfferApproved"),
}
TARGET_TYPES = frozenset(VOCABULARY)
CATEGORIES = frozenset(category for categories in VOCABULARY.values() for category in categories)
# `actor.type`: "User | ApiUser | Automation | Support | Other" (ApiUser and Support since 2026-08-04).
ACTOR_TYPES = frozenset({"User", "ApiUser", "Automation", "Support", "Other"})

# Docs are silent on the entry's id and time fields (the reference's response schema is not published). Entries
# here carry `id` and `createdAt`; a test may add entries timed by `occurredAt` or `timestamp` instead, which the
# simulator orders by just the same, and the `time_field` switch serves every entry's time under another name.
TIME_FIELDS = ("createdAt", "occurredAt", "timestamp")

# The error envelope (`error_envelope`). The Responses page shows two: the current
#   {"success": false, "errorInfo": {"code", "message", "requestId"}}
# and, in an older revision, {"success": false, "errors": ["requested_job_not_found"]}: a list of strings and no code
# field, the one example string being the bare code. The older form is the default: it is the one a client must
# dig the code out of. Its alternatives: each string a sentence naming the code ("errors_sentence"), or a sentence
# naming none ("errors_prose", beyond what the docs show; a collector can then only treat the error as unexplained).
ERROR_ENVELOPES = ("errors", "errors_sentence", "errors_prose", "error_info")

# Docs: cursors "do expire" (changelog: next_cursor_expired), after an undocumented time. Default: shorter than a
# collector's five-minute schedule, so every cursor a run stores has expired when the next run sends it, and an
# expired cursor stays expired; longer than the seconds between two pages of one run. `cursor_ttl=None`: never.
DEFAULT_CURSOR_TTL = timedelta(minutes=3)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

# An entry's place in the log: (createdAt in µs, id). Served newest first; docs are silent on ties, so entries of
# the same instant come in descending id order.
_Key = tuple[int, str]



def _to_us(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # "All dates are ISO 8601 interpreted as UTC."
    return (moment - _EPOCH) // _MICROSECOND


def _from_us(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def _add_months(moment: datetime, months: int) -> datetime:
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    return moment.replace(year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1]))


class _ApiError(Exception):
    """An error in Ashby's envelope: {"success": false, "errorInfo": {"code", "message", "requestId"}}.

    "What would be 4xx" comes back as HTTP 200 with success false; the documented exceptions carry their status.
    """

    def __init__(self, code: str, message: str, status: int = 200, prose: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.prose = prose or message  # the message without the code's name, for `error_envelope="errors_prose"`


class _Stored(NamedTuple):  # a tuple: a million of them must be cheap to build
    key: _Key
    event: dict[str, Any]
    category: str | None
    actor_id: str | None
    target_id: str | None
    target_type: str | None


@dataclass(frozen=True)
class _Query:
    """One auditLog.list query: the window it resolves to, and what the request said (for the cursor binding)."""

    start: int  # µs, the window's bounds as asked: whether each is inclusive is the simulator's switch
    end: int  # µs
    given_start: int | None
    given_end: int | None
    actor_ids: frozenset[str] | None
    target_ids: frozenset[str] | None
    target_types: frozenset[str] | None
    categories: frozenset[str] | None

    def fingerprint(self) -> str:
        """What a cursor is bound to: "Pass nextCursor only together with the same startDate, endDate, and filters
        as the request that produced it." Dates compare as instants; filter arrays as sets; `limit` is free."""
        def canonical(values: frozenset[str] | None) -> list[str] | None:
            return sorted(values) if values is not None else None

        parts = [self.given_start, self.given_end, canonical(self.actor_ids), canonical(self.target_ids),
                 canonical(self.target_types), canonical(self.categories)]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]

    def matches(self, stored: _Stored) -> bool:
        # "actorIds, targetIds: AND with each other and with activity filters"; "targetTypes, categories: OR with
        # each other — an entry matching either list is included."
        if self.actor_ids is not None and stored.actor_id not in self.actor_ids:
            return False
        if self.target_ids is not None and stored.target_id not in self.target_ids:
            return False
        if self.target_types is None and self.categories is None:
            return True
        return ((self.target_types is not None and stored.target_type in self.target_types)
                or (self.categories is not None and stored.category in self.categories))


@dataclass(frozen=True)
class _Position:
    """Where a cursor continues: the window of the query that issued it and the last entry it returned."""

    start: int
    end: int
    last: _Key


class AshbySimulator(VendorSimulator):
    """One Ashby organization's audit log, served to one API key.

    Knobs: `audit_logs_enabled=False` (the org lacks the Audit Logs feature: every call answers
    `audit_logs_not_enabled`, with HTTP status `not_enabled_status`), `has_permission=False` (the key lacks
    auditLogsRead: HTTP 403 `missing_endpoint_permission`), `rate_limit_per_minute`.
    Switches for what the docs leave open, each defaulting to the least friendly reading: `error_envelope`,
    `cursor_ttl`, `start_inclusive` / `end_inclusive` (how startDate and endDate bound the window), `time_field`
    (the name entries carry their time under) and `more_data_when_full` (a full last page).
    Test hooks: `add_events`, `publish_pending`, `expire_cursors`, `ground_truth`, `generate_events`, and the base
    class's `faults`, `requests_log`, `on_request` and `stats()`.
    """

    vendor = "ashby"
    stat_keys = ("pages_with_data", "empty_pages", "events_served", "rate_limited", "api_errors")

    def __init__(self, token: str, *, now: Callable[[], datetime] = utc_now, organization_id: str = "org-example",
                 audit_logs_enabled: bool = True, has_permission: bool = True,
                 cursor_ttl: timedelta | None = DEFAULT_CURSOR_TTL, error_envelope: str = "errors",
                 start_inclusive: bool = False, end_inclusive: bool = True, time_field: str | None = None,
                 not_enabled_status: int = 200, more_data_when_full: bool = True,
                 rate_limit_per_minute: int | None = None,
                 faults: FaultPlan | None = None, on_request: Callable[[RequestRecord], None] | None = None,
                 fault_retry_after: int = 1) -> None:
        super().__init__(faults=faults, on_request=on_request, fault_retry_after=fault_retry_after)
        self._token = token  # the API key
        self.organization_id = organization_id
        self.now = now
        self.audit_logs_enabled = audit_logs_enabled
        self.has_permission = has_permission
        # Cursors "do expire" (changelog: next_cursor_expired); how soon is undocumented (DEFAULT_CURSOR_TTL).
        # None = never, except through `expire_cursors()`.
        self.cursor_ttl = cursor_ttl
        if error_envelope not in ERROR_ENVELOPES:
            raise ValueError(f"error_envelope must be one of {', '.join(ERROR_ENVELOPES)}")
        self.error_envelope = error_envelope
        # Docs are silent on whether startDate and endDate are inclusive. Default: the combination that costs a
        # collector most, an exclusive start (an entry at the start is not returned) and an inclusive end (an entry
        # at the end is returned by two adjacent windows).
        self.start_inclusive = start_inclusive
        self.end_inclusive = end_inclusive
        # None: each entry as added (createdAt for generated ones); a name: every entry's time is served under it.
        self.time_field = time_field
        # auditLog.list documents `audit_logs_not_enabled` among its codes, and "what would be 4xx" comes back as
        # 200; a 403 or a 404 (the beta endpoint "may not be available for all organizations") are the alternatives.
        self.not_enabled_status = not_enabled_status
        # "Last page: moreDataAvailable: false". Docs are silent on a last page that is full: by default it says
        # moreDataAvailable: true (as a server that does not look ahead would), and the page after it is empty;
        # False: the flag is exact, a full last page says false.
        self.more_data_when_full = more_data_when_full
        # Docs are silent on rate limits. When set: a sliding one-minute window per key, answered with 429 and
        # Retry-After (the only claim found, from a non-authoritative source). None = no limiting.
        self.rate_limit_per_minute = rate_limit_per_minute
        self._entries: list[_Stored] = []  # visible entries, ascending by key (served in reverse)
        self._pending: dict[str, _Stored] = {}  # captured but not yet published (late entries)
        self._ids: set[str] = set()  # of both, to keep ids unique
        self._cursor_epoch = 0
        # Cursors are signed so that an altered or hand-made one "could not be decoded". The key depends only on the
        # organization, so a stored cursor stays usable by a new simulator of the same organization.
        self._cursor_key = hashlib.sha256(f"auditlake ashby simulator cursors {organization_id}".encode()).digest()
        self._recent_requests = SlidingMinuteLimit()
        self._request_ids = Random(organization_id)

    # --- test hooks ---------------------------------------------------------------------------------------------

    @staticmethod
    def generate_events(count: int, start: datetime, end: datetime, seed: int, *,
                        burst_rate: float = 0.05) -> list[dict[str, Any]]:
        """Realistic entries to `add_events()`; see the module-level `generate_events`."""
        return generate_events(count, start, end, seed, burst_rate=burst_rate)

    def add_events(self, events: Iterable[dict[str, Any]], *, published: bool = True) -> None:
        """Captures entries. Unpublished ones stay invisible until `publish_pending()`: a late entry.

        Entries are served as given (treat them as read-only afterwards). ids must be unique strings; the time is
        the first of createdAt / occurredAt / timestamp present.
        """
        new: list[_Stored] = []
        batch: set[str] = set()
        with self._lock, gc_paused():
            for event in events:
                entry_id = event["id"]
                if not isinstance(entry_id, str) or not entry_id or entry_id in self._ids or entry_id in batch:
                    raise ValueError(f"entry id must be a unique non-empty string, got {entry_id!r}")
                batch.add(entry_id)
                stamp = next((event[name] for name in TIME_FIELDS if event.get(name) is not None), None)
                if not isinstance(stamp, str):
                    raise ValueError(f"entry {entry_id} has no ISO time in any of {', '.join(TIME_FIELDS)}")
                actor, target = event.get("actor") or {}, event.get("target") or {}
                new.append(_Stored((_to_us(datetime.fromisoformat(stamp)), entry_id), event, event.get("category"),
                                   actor.get("id"), target.get("id"), target.get("type")))
            self._ids |= batch  # only once the whole batch is valid: a refused batch leaves no trace
            if published:
                self._insert(new)
            else:
                self._pending.update((entry.key[1], entry) for entry in new)

    def publish_pending(self, ids: Iterable[str] | None = None) -> int:
        """Makes late entries visible (all of them, or those with these ids); returns how many."""
        with self._lock:
            chosen = list(self._pending) if ids is None else [entry_id for entry_id in ids if entry_id in self._pending]
            self._insert([self._pending.pop(entry_id) for entry_id in chosen])
            return len(chosen)

    def expire_cursors(self) -> None:
        """Every cursor issued so far is answered with `next_cursor_expired` from now on."""
        with self._lock:
            self._cursor_epoch += 1

    def ground_truth(self) -> dict[str, dict[str, Any]]:
        """id -> entry for every entry a client can currently retrieve: published and not in the future.

        Docs are silent on retention (the 18-month query span suggests at least that): nothing is ever deleted.
        """
        with self._lock:
            high = bisect_left(self._entries, (_to_us(self.now()) + 1,), key=attrgetter("key"))
            return {entry.key[1]: self._served(entry.event) for entry in self._entries[:high]}

    def _served(self, event: dict[str, Any]) -> dict[str, Any]:
        """The entry as served: with `time_field` set, its time under that name (and under no other)."""
        name = self.time_field
        if name is None or name in event:
            return event
        stamp = next(event[field] for field in TIME_FIELDS if event.get(field) is not None)
        return {**{key: value for key, value in event.items() if key not in TIME_FIELDS}, name: stamp}

    # --- the endpoint -------------------------------------------------------------------------------------------

    def route(self, request: SimRequest) -> SimResponse:
        # Docs are silent on unknown endpoints and other methods ("every call is POST with a JSON body"): 404 and
        # 405, in the usual envelope.
        if request.path.rstrip("/") != ENDPOINT:
            return self._error(_ApiError("not_found", f"Unknown endpoint: {request.path}", 404))
        if request.method != "POST":
            return self._error(_ApiError("method_not_allowed", "Use POST with a JSON body.", 405))
        # "Missing key -> 401; wrong/deactivated key -> 403." Docs are silent on these bodies: the usual envelope.
        api_key = self._api_key(request)
        if api_key is None:
            return self._error(_ApiError("unauthenticated", "Missing API key. Use HTTP Basic auth with your API key "
                                                            "as the username and an empty password.", 401))
        if not hmac.compare_digest(api_key.encode(), self._token.encode()):
            return self._error(_ApiError("invalid_api_key", "The API key is invalid or has been deactivated.", 403))
        retry_after = self._throttle()
        if retry_after is not None:
            self.counters["rate_limited"] += 1
            return self.rate_limited_response(retry_after)
        try:
            # Docs are silent on which check comes first: the key's permission, then the organization's feature.
            if not self.has_permission:
                raise _ApiError("missing_endpoint_permission",
                                "The API key lacks the auditLogsRead permission required by auditLog.list.", 403)
            if not self.audit_logs_enabled:
                raise _ApiError("audit_logs_not_enabled", "Your organization does not have the Audit Logs feature.",
                                self.not_enabled_status)
            return self._list(request)
        except _ApiError as error:
            return self._error(error)

    def _list(self, request: SimRequest) -> SimResponse:
        body = self._body(request)
        limit = self._limit(body.get("limit"))
        query = self._query(body)
        raw_cursor = body.get("cursor")
        position: _Position | None = None
        if raw_cursor is not None and raw_cursor != "":  # docs are silent on "": read as no cursor
            if not isinstance(raw_cursor, str):
                raise _ApiError("invalid_input", "cursor must be a string.")
            position = self._decode_cursor(raw_cursor, query)

        page, more = self._scan(query, position, limit)
        more = more or (self.more_data_when_full and len(page) == limit)
        payload: dict[str, Any] = {"success": True, "results": [self._served(entry.event) for entry in page],
                                   "moreDataAvailable": more}
        if more:
            # A page ends only where another match follows, so a non-empty `page` is certain here.
            start, end = (position.start, position.end) if position is not None else (query.start, query.end)
            payload["nextCursor"] = self._issue_cursor(_Position(start, end, page[-1].key), query)
        # auditLog.list has no syncToken parameter, so the last page carries no syncToken either.
        self.counters["pages_with_data" if page else "empty_pages"] += 1
        self.counters["events_served"] += len(page)
        return SimResponse.of_json(200, payload)

    def _scan(self, query: _Query, position: _Position | None, limit: int) -> tuple[list[_Stored], bool]:
        """Up to `limit` matches, newest first, and whether another match follows them."""
        key = attrgetter("key")
        start, end = (position.start, position.end) if position is not None else (query.start, query.end)
        now_us = _to_us(self.now())
        # Docs are silent on whether the bounds are inclusive: the switches say. Entries dated after now are not
        # captured yet.
        low = bisect_left(self._entries, (start if self.start_inclusive else start + 1,), key=key)
        high = bisect_left(self._entries, (min(end + 1 if self.end_inclusive else end, now_us + 1),), key=key)
        if position is not None:
            # A cursor is a position (the last entry returned), not a snapshot: a late entry published below it in
            # this window is still returned; one above it only by a new query (a collector's overlap).
            high = min(high, bisect_left(self._entries, position.last, key=key))
        page: list[_Stored] = []
        for index in range(high - 1, low - 1, -1):
            entry = self._entries[index]
            if query.matches(entry):
                if len(page) == limit:
                    return page, True
                page.append(entry)
        return page, False

    # --- the request body ---------------------------------------------------------------------------------------

    @staticmethod
    def _body(request: SimRequest) -> dict[str, Any]:
        # "To begin a full sync, POST an empty JSON object". Docs are silent on an empty or non-JSON body: an empty
        # one is read as {}, anything that is not a JSON object is invalid_input.
        if not request.body.strip():
            return {}
        try:
            body = request.json()
        except ValueError:
            raise _ApiError("invalid_input", "The request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise _ApiError("invalid_input", "The request body must be a JSON object.")
        return body

    @staticmethod
    def _limit(raw: Any) -> int:
        if raw is None:
            return MAX_LIMIT
        if isinstance(raw, bool) or not isinstance(raw, int | float) \
                or (isinstance(raw, float) and not raw.is_integer()):
            raise _ApiError("invalid_input", f"limit must be an integer, got {raw!r}.")
        if not 1 <= raw <= MAX_LIMIT:
            raise _ApiError("invalid_input", f"limit must be between 1 and {MAX_LIMIT}, got {raw!r}.")
        return int(raw)

    def _query(self, body: dict[str, Any]) -> _Query:
        given_start, given_end = _date(body, "startDate"), _date(body, "endDate")
        default_span = DEFAULT_SPAN // _MICROSECOND
        if given_start is None and given_end is None:
            end = _to_us(self.now())
            start = end - default_span
        elif given_start is None:
            assert given_end is not None
            start, end = given_end - default_span, given_end
        elif given_end is None:
            start, end = given_start, given_start + default_span
        else:
            start, end = given_start, given_end
            if end < start:
                raise _ApiError("invalid_input", "endDate must not be before startDate.")
            if _from_us(end) > _add_months(_from_us(start), MAX_SPAN_MONTHS):
                raise _ApiError("invalid_input", f"The date window exceeds the maximum span of {MAX_SPAN_MONTHS} "
                                                 "months. Split the request into smaller windows.")
        return _Query(start, end, given_start, given_end,
                      actor_ids=_strings(body, "actorIds"), target_ids=_strings(body, "targetIds"),
                      target_types=_strings(body, "targetTypes", TARGET_TYPES),
                      categories=_strings(body, "categories", CATEGORIES))

    # --- cursors ------------------------------------------------------------------------------------------------
    # "follow the opaque cursor / nextCursor". These are base64url(claims).base64url(HMAC-SHA256), the claims
    #   org  the organization,  win  [start, end) µs of the window the first page resolved,
    #   pos  [createdAt µs, id] of the last entry returned,  q  the query's fingerprint,
    #   iat  issue time (ms, simulated clock),  epoch  see expire_cursors().
    # The window travels in the cursor, so a query whose window is "now"-relative ({} or one date only) keeps paging
    # the window its first page saw.
    # Docs are silent on reuse with other dates or filters (they say it "can return empty or incomplete pages"):
    # refused with cursor_invalid here, which a collector must treat like an expired cursor.

    def _issue_cursor(self, position: _Position, query: _Query) -> str:
        claims = {"org": self.organization_id, "win": [position.start, position.end],
                  "pos": [position.last[0], position.last[1]], "q": query.fingerprint(),
                  "iat": _to_us(self.now()) // 1000, "epoch": self._cursor_epoch}
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        return f"{payload}.{_b64(self._sign(payload))}"

    def _decode_cursor(self, cursor: str, query: _Query) -> _Position:
        undecodable = _ApiError("cursor_invalid", "The provided cursor could not be decoded.",
                                prose="The provided cursor could not be used.")
        try:
            payload, signature = cursor.split(".")
            if not hmac.compare_digest(_unb64(signature), self._sign(payload)):
                raise undecodable
            claims = json.loads(_unb64(payload))
            start, end = claims["win"]
            created_us, entry_id = claims["pos"]
        except (ValueError, TypeError, KeyError, binascii.Error):  # wrong shape, bad base64, bad JSON
            raise undecodable from None
        if claims.get("org") != self.organization_id or not all(isinstance(v, int) for v in (start, end, created_us)) \
                or not isinstance(entry_id, str):
            raise undecodable
        if claims.get("q") != query.fingerprint():
            raise _ApiError("cursor_invalid", "The cursor was issued for a different startDate, endDate or filters. "
                                              "Send it with the same window and filters, or start again without it.",
                            prose="The cursor could not be used with this request.")
        expired = claims.get("epoch") != self._cursor_epoch
        if self.cursor_ttl is not None:
            age_ms = _to_us(self.now()) // 1000 - int(claims.get("iat", 0))
            expired = expired or age_ms > self.cursor_ttl / timedelta(milliseconds=1)
        if expired:
            raise _ApiError("next_cursor_expired", "The cursor has expired. Restart pagination without a cursor.",
                            prose="Pagination could not continue. Restart pagination.")
        return _Position(start, end, (created_us, entry_id))

    def _sign(self, payload: str) -> bytes:
        return hmac.new(self._cursor_key, payload.encode(), hashlib.sha256).digest()

    # --- auth, rate limits, errors ------------------------------------------------------------------------------

    @staticmethod
    def _api_key(request: SimRequest) -> str | None:
        """The username of HTTP Basic auth ("API key as username, empty password"); any password is accepted, as
        some clients send the key as the password too. None when there are no Basic credentials."""
        scheme, _, credentials = (request.header("authorization") or "").partition(" ")
        if scheme.lower() != "basic" or not credentials.strip():
            return None
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        username = decoded.partition(":")[0]
        return username or None

    def _throttle(self) -> int | None:
        """Sliding one-minute window per key; the Retry-After in seconds when this request is over the limit.
        Rejected requests count too, so a client that ignores Retry-After stays throttled."""
        limit = self.rate_limit_per_minute
        return None if limit is None else self._recent_requests.over(self.now().timestamp(), limit)

    def rate_limited_response(self, retry_after: int) -> SimResponse:
        # Docs are silent: 429 with Retry-After in seconds, and the error envelope.
        return self._error(_ApiError("rate_limit_exceeded", "Too many requests. Retry after the number of seconds "
                                                            "in the Retry-After header.", 429),
                           {"Retry-After": str(retry_after)})

    def server_error_response(self) -> SimResponse:
        # Docs are silent on 5xx bodies: the error envelope.
        return self._error(_ApiError("internal_server_error", "An unexpected error occurred.", 500))

    def _error(self, error: _ApiError, headers: dict[str, str] | None = None) -> SimResponse:
        self.counters["api_errors"] += 1
        said: list[str]
        if self.error_envelope == "error_info":
            return SimResponse.of_json(error.status, {"success": False, "errorInfo": {
                "code": error.code, "message": error.message, "requestId": self._request_id()}}, headers)
        if self.error_envelope == "errors":
            said = [error.code]  # as the docs' example: ["requested_job_not_found"]
        elif self.error_envelope == "errors_sentence":
            said = [f"{error.message} ({error.code})"]
        else:
            said = [error.prose]
        return SimResponse.of_json(error.status, {"success": False, "errors": said}, headers)

    def _request_id(self) -> str:
        """A ULID (`01J...`), as Ashby's requestIds are: 48 bits of milliseconds, 80 random bits, Crockford base32."""
        value = (_to_us(self.now()) // 1000) << 80 | self._request_ids.getrandbits(80)
        return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))

    # --- storage ------------------------------------------------------------------------------------------------

    def _insert(self, new: list[_Stored]) -> None:
        if not new:
            return
        new.sort(key=attrgetter("key"))
        appending = not self._entries or new[0].key > self._entries[-1].key
        self._entries.extend(new)
        if not appending:
            self._entries.sort(key=attrgetter("key"))  # two sorted runs: timsort merges them in linear time


def _date(body: dict[str, Any], name: str) -> int | None:
    """An ISO 8601 date bound in µs; None when omitted (docs are silent on null: read as omitted)."""
    raw = body.get(name)
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise _ApiError("invalid_input", f"{name} must be an ISO 8601 date string.")
    try:
        return _to_us(datetime.fromisoformat(raw))
    except ValueError:
        raise _ApiError("invalid_input", f"{name} is not a valid ISO 8601 date: {raw!r}.") from None


def _strings(body: dict[str, Any], name: str, vocabulary: frozenset[str] | None = None) -> frozenset[str] | None:
    """A filter array; None when omitted or empty ("An empty array is ignored, same as omitting this field")."""
    raw = body.get(name)
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(value, str) for value in raw):
        raise _ApiError("invalid_input", f"{name} must be an array of strings.")
    if len(raw) > MAX_FILTER_ITEMS:
        # "longer arrays are rejected with a 400". Docs are silent on that body: the usual envelope.
        raise _ApiError("invalid_input", f"{name} may contain at most {MAX_FILTER_ITEMS} items.", 400)
    if vocabulary is not None:
        unknown = sorted(set(raw) - vocabulary)
        if unknown:
            # The docs conflict ("return 400" on the vocabulary page, invalid_input on the endpoint's): invalid_input
            # with HTTP 200, Ashby's general rule.
            raise _ApiError("invalid_input", f"{name} has values not in the audit log vocabulary: "
                                             f"{', '.join(unknown)}.")
    return frozenset(raw) or None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --- realistic entries ------------------------------------------------------------------------------------------
# Categories and target types from the vocabulary above, actors of every documented actor.type, and the request's
# address and client where a person or an API key acted. Docs are silent on where an entry carries those: here in
# `details` (`ipAddress`, `userAgent`), beside the category's own details. Addresses are documentation ranges.

_BROWSERS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 "
    "Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 "
    "Safari/537.36 Edg/123.0.0.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.4; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 "
    "Mobile/15E148 Safari/604.1",
)
_API_AGENTS = ("python-requests/2.32.3", "axios/1.7.2", "Go-http-client/2.0")
_OCTETS = tuple(range(1, 255))
_FIRST = ("Ada", "Grace", "Alan", "Linus", "Margaret", "Ken", "Barbara", "Dennis", "Frances", "Edsger", "Radia",
          "Guido", "Katherine", "Tim", "Hedy", "Donald", "Annie", "John", "Sophie", "Niklaus")
_LAST = ("Lovelace", "Hopper", "Turing", "Torvalds", "Hamilton", "Thompson", "Liskov", "Ritchie", "Allen",
         "Dijkstra", "Perlman", "van Rossum", "Johnson", "Berners-Lee", "Lamarr", "Knuth", "Easley", "Backus",
         "Wilson", "Wirth")
_ROLES = ("Organization Admin", "Elevated Access", "Hiring Manager", "Interviewer", "Limited Access")
_LOGIN_METHODS = ("google", "saml", "microsoft", "password", "magic_link")
_JOB_TITLES = ("Senior Backend Engineer", "Product Designer", "Account Executive", "Data Scientist",
               "Recruiting Coordinator", "Security Engineer", "Customer Success Manager")
_JOB_STATUSES = ("Draft", "Open", "Closed", "Archived")
_STAGES = ("Application Review", "Recruiter Screen", "Hiring Manager Screen", "Technical Interview", "Onsite",
           "Reference Check", "Offer")
_ARCHIVE_REASONS = ("Not a fit", "Withdrew", "Position filled", "Unresponsive", "Too junior")
_REPORTS = ("Pipeline by source", "Time to hire", "Offer acceptance rate", "Interviewer load", "EEO summary")
_API_KEY_NAMES = ("Data warehouse sync", "HRIS integration", "Career site", "Security SIEM export", "Zapier")
_API_PERMISSIONS = ("candidatesRead", "candidatesWrite", "jobsRead", "interviewsRead", "offersRead", "reportsRead",
                    "auditLogsRead")
_AUTOMATIONS = ("Auto-archive stale applications", "Advance on scorecard submit", "Send rejection after 5 days",
                "HRIS sync")


def _uuid(rng: Random) -> str:
    """A random (version 4) UUID, as Ashby's ids are; built from one draw, so a million are cheap."""
    digits = f"{rng.getrandbits(128):032x}"
    return (f"{digits[:8]}-{digits[8:12]}-4{digits[13:16]}-{'89ab'[int(digits[16], 16) & 3]}{digits[17:20]}-"
            f"{digits[20:]}")


@dataclass(frozen=True, slots=True)
class _Person:
    id: str
    name: str
    email: str
    ip: str
    user_agent: str

    def actor(self) -> dict[str, Any]:
        return {"type": "User", "id": self.id, "name": self.name, "email": self.email}

    def target(self) -> dict[str, Any]:
        return {"type": "app_user", "id": self.id, "name": self.name}

    def request(self) -> dict[str, Any]:
        return {"ipAddress": self.ip, "userAgent": self.user_agent}


class _Org:
    """The people, keys and objects of one generated organization, and a deterministic source of randomness."""

    def __init__(self, rng: Random, size: int) -> None:
        self.rng = rng
        # The company's shared roster: the same names, emails and addresses as in the other tools.
        self.people = [self._person(person) for person in roster(size)]
        self.admins = self.people[: max(1, size // 20)]
        self.api_keys = [{"type": "ApiUser", "id": self.uuid(), "name": name} for name in _API_KEY_NAMES]
        self.organization = {"type": "organization", "id": self.uuid(), "name": "Example Corp"}

    def pick[T](self, options: Sequence[T]) -> T:
        """`rng.choice`, about three times faster: generation time is dominated by these picks."""
        return options[int(self.rng.random() * len(options))]

    def uuid(self) -> str:
        return _uuid(self.rng)

    def _person(self, person: Person) -> _Person:
        return _Person(self.uuid(), person.name, person.email, person.ip, self.pick(_BROWSERS))

    def someone(self) -> _Person:
        return self.pick(self.people)

    def admin(self) -> _Person:
        return self.pick(self.admins)

    def api_key(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """An API key as the actor, and where its request came from."""
        key = dict(self.pick(self.api_keys))
        return key, {"ipAddress": f"198.51.100.{self.pick(_OCTETS)}", "userAgent": self.pick(_API_AGENTS)}

    def automation(self) -> dict[str, Any]:
        # "actor.id may be null or a non-user identifier"
        return {"type": "Automation", "id": None, "name": self.pick(_AUTOMATIONS)}

    def candidate_name(self) -> str:
        return f"{self.pick(_FIRST)} {self.pick(_LAST)}"


# Each maker returns (actor, target, details) for its category.
_Parts = tuple[dict[str, Any], dict[str, Any], dict[str, Any]]


def _logged_in(org: _Org) -> _Parts:
    user = org.someone()
    return user.actor(), user.target(), {"authenticationMethod": org.pick(_LOGIN_METHODS), **user.request()}


def _login_failed(org: _Org) -> _Parts:
    reason = org.pick(("invalid_password", "invalid_password", "sso_assertion_rejected", "user_deactivated",
                       "unknown_user"))
    details = {"authenticationMethod": org.pick(_LOGIN_METHODS), "reason": reason}
    if reason == "unknown_user":  # nobody to name: the address that was tried, from somewhere unfamiliar
        # Another domain than the staff's, so the address tried is never a member's.
        attempted = f"{org.pick(_FIRST)}.{org.pick(_LAST)}@example.net".lower().replace(" ", "")
        return ({"type": "Other", "id": None}, {"type": "app_user", "id": None, "name": attempted},
                {**details, "attemptedEmail": attempted, "ipAddress": f"203.0.113.{org.pick(_OCTETS)}",
                 "userAgent": org.pick(_API_AGENTS)})
    user = org.someone()
    return user.actor(), user.target(), {**details, **user.request()}


def _logged_out(org: _Org) -> _Parts:
    user = org.someone()
    return user.actor(), user.target(), user.request()


def _invited(org: _Org) -> _Parts:
    admin, invitee = org.admin(), org.someone()
    return admin.actor(), invitee.target(), {"email": invitee.email, "role": org.pick(_ROLES[1:]), **admin.request()}


def _deactivated(org: _Org) -> _Parts:
    user = org.someone()
    if org.rng.random() < 0.4:  # deprovisioned by the identity provider's sync
        return {"type": "Automation", "id": None, "name": "SCIM provisioning"}, user.target(), {}
    admin = org.admin()
    return admin.actor(), user.target(), admin.request()


def _reactivated(org: _Org) -> _Parts:
    admin, user = org.admin(), org.someone()
    return admin.actor(), user.target(), admin.request()


def _permissions_changed(org: _Org) -> _Parts:
    user = org.someone()
    old, new = org.pick(((_ROLES[3], _ROLES[2]), (_ROLES[2], _ROLES[1]), (_ROLES[1], _ROLES[0]), (_ROLES[0], _ROLES[1]),
                         (_ROLES[4], _ROLES[3])))
    details = {"field": "role", "oldValue": old, "newValue": new}
    if org.rng.random() < 0.1:  # done by Ashby support at the customer's request
        return {"type": "Support", "id": None, "name": "Ashby Support"}, user.target(), details
    admin = org.admin()
    return admin.actor(), user.target(), {**details, **admin.request()}


def _api_key_created(org: _Org) -> _Parts:
    admin = org.admin()
    key = {"type": "api_key", "id": org.uuid(), "name": org.pick(_API_KEY_NAMES)}
    permissions = sorted({org.pick(_API_PERMISSIONS) for _ in range(3)})
    details = {"permissions": permissions, "allowsConfidentialAccess": org.rng.random() < 0.2}
    return admin.actor(), key, {**details, **admin.request()}


def _api_key_revoked(org: _Org) -> _Parts:
    admin = org.admin()
    key = org.pick(org.api_keys)
    return admin.actor(), {"type": "api_key", "id": key["id"], "name": key["name"]}, admin.request()


def _sso_changed(org: _Org) -> _Parts:
    admin = org.admin()
    field, old, new = org.pick((("samlEnforced", False, True), ("samlEnforced", True, False),
                                ("identityProvider", "Google Workspace", "Okta")))
    return admin.actor(), dict(org.organization), {"field": field, "oldValue": old, "newValue": new,
                                                   **admin.request()}


def _data_exported(org: _Org) -> _Parts:
    admin = org.admin()
    return admin.actor(), dict(org.organization), {"format": "csv", "scope": "all_candidates", **admin.request()}


def _report_exported(org: _Org) -> _Parts:
    user = org.someone()
    report = {"type": "report", "id": org.uuid(), "name": org.pick(_REPORTS)}
    return user.actor(), report, {"format": org.pick(("csv", "xlsx")), **user.request()}


def _job(org: _Org) -> dict[str, Any]:
    return {"type": "job", "id": org.uuid(), "name": org.pick(_JOB_TITLES)}


def _job_created(org: _Org) -> _Parts:
    user = org.someone()
    return user.actor(), _job(org), {"confidential": org.rng.random() < 0.1, **user.request()}


def _job_updated(org: _Org) -> _Parts:
    user = org.someone()
    field = org.pick(("title", "location", "compensation", "hiringTeam"))
    return user.actor(), _job(org), {"field": field, **user.request()}


def _job_status_changed(org: _Org) -> _Parts:
    user = org.someone()
    old, new = org.pick(((_JOB_STATUSES[0], _JOB_STATUSES[1]), (_JOB_STATUSES[1], _JOB_STATUSES[2]),
                         (_JOB_STATUSES[2], _JOB_STATUSES[3]), (_JOB_STATUSES[2], _JOB_STATUSES[1])))
    return user.actor(), _job(org), {"field": "status", "oldValue": old, "newValue": new, **user.request()}


def _candidate(org: _Org) -> dict[str, Any]:
    return {"type": "candidate", "id": org.uuid(), "name": org.candidate_name()}


def _candidate_created(org: _Org) -> _Parts:
    source = org.pick(("Applied", "Applied", "Referral", "Sourced", "API"))
    if source == "API":  # imported through an integration's key
        key, request = org.api_key()
        return key, _candidate(org), {"source": source, **request}
    user = org.someone()
    return user.actor(), _candidate(org), {"source": source, **user.request()}


def _candidate_merged(org: _Org) -> _Parts:
    user = org.someone()
    return user.actor(), _candidate(org), {"mergedCandidateId": org.uuid(), **user.request()}


def _candidate_deleted(org: _Org) -> _Parts:
    admin = org.admin()
    return admin.actor(), _candidate(org), {"reason": org.pick(("gdpr_request", "duplicate", "test_data")),
                                            **admin.request()}


def _application(org: _Org) -> dict[str, Any]:
    return {"type": "application", "id": org.uuid(), "name": f"{org.candidate_name()} - {org.pick(_JOB_TITLES)}"}


def _stage_changed(org: _Org) -> _Parts:
    index = int(org.rng.random() * (len(_STAGES) - 1))
    details = {"field": "stage", "oldValue": _STAGES[index], "newValue": _STAGES[index + 1]}
    if org.rng.random() < 0.15:
        return org.automation(), _application(org), details
    user = org.someone()
    return user.actor(), _application(org), {**details, **user.request()}


def _application_archived(org: _Org) -> _Parts:
    details = {"archiveReason": org.pick(_ARCHIVE_REASONS)}
    if org.rng.random() < 0.3:
        return org.automation(), _application(org), details
    user = org.someone()
    return user.actor(), _application(org), {**details, **user.request()}


def _hired(org: _Org) -> _Parts:
    user = org.someone()
    return user.actor(), _application(org), user.request()


def _interview(org: _Org) -> dict[str, Any]:
    return {"type": "interview_schedule", "id": org.uuid(), "name": f"{org.pick(_STAGES[1:5])} with "
                                                                    f"{org.candidate_name()}"}


def _interview_scheduled(org: _Org) -> _Parts:
    user = org.someone()
    return user.actor(), _interview(org), {"interviewerCount": 1 + int(org.rng.random() * 4), **user.request()}


def _interview_cancelled(org: _Org) -> _Parts:
    user = org.someone()
    return user.actor(), _interview(org), user.request()


def _offer(org: _Org) -> dict[str, Any]:
    return {"type": "offer", "id": org.uuid(), "name": f"{org.candidate_name()} - {org.pick(_JOB_TITLES)}"}


def _offer_created(org: _Org) -> _Parts:
    user = org.someone()
    return user.actor(), _offer(org), user.request()


def _offer_approved(org: _Org) -> _Parts:
    approver = org.admin()
    return approver.actor(), _offer(org), {"approvalStep": 1 + int(org.rng.random() * 3), **approver.request()}


# (category, relative frequency, maker); each category's target type is the one VOCABULARY files it under.
_CATALOGUE: tuple[tuple[str, int, Callable[[_Org], _Parts]], ...] = (
    ("UserLoggedIn", 300, _logged_in),
    ("UserLoginFailed", 40, _login_failed),
    ("UserLoggedOut", 60, _logged_out),
    ("UserInvited", 8, _invited),
    ("UserDeactivated", 5, _deactivated),
    ("UserReactivated", 1, _reactivated),
    ("UserPermissionsChanged", 4, _permissions_changed),
    ("ApiKeyCreated", 1, _api_key_created),
    ("ApiKeyRevoked", 1, _api_key_revoked),
    ("SsoConfigurationChanged", 1, _sso_changed),
    ("OrganizationDataExported", 1, _data_exported),
    ("ReportExported", 6, _report_exported),
    ("JobCreated", 8, _job_created),
    ("JobUpdated", 12, _job_updated),
    ("JobStatusChanged", 15, _job_status_changed),
    ("CandidateCreated", 80, _candidate_created),
    ("CandidateMerged", 5, _candidate_merged),
    ("CandidateDeleted", 3, _candidate_deleted),
    ("ApplicationStageChanged", 180, _stage_changed),
    ("ApplicationArchived", 50, _application_archived),
    ("ApplicationHired", 4, _hired),
    ("InterviewScheduled", 60, _interview_scheduled),
    ("InterviewCancelled", 8, _interview_cancelled),
    ("OfferCreated", 5, _offer_created),
    ("OfferApproved", 4, _offer_approved),
)
_CUM_WEIGHTS = tuple(sum(kind[1] for kind in _CATALOGUE[: index + 1]) for index in range(len(_CATALOGUE)))


def generate_events(count: int, start: datetime, end: datetime, seed: int, *,
                    burst_rate: float = 0.05) -> list[dict[str, Any]]:
    """`count` realistic audit log entries created in [start, end), ascending, deterministic from `seed`.

    About `burst_rate` of them share the millisecond of the entry before (bulk archiving, login storms), so pages
    end inside groups of identical createdAt and tie-breaking is exercised. Linear in `count`.
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
        for created_ms, (category, _, make) in zip(times, kinds, strict=True):
            second = created_ms // 1000
            if second != last_second:  # formatting once per second keeps a million entries fast
                last_second, prefix = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            actor, target, details = make(org)
            events.append({"id": _uuid(rng), "createdAt": f"{prefix}.{created_ms % 1000:03d}Z", "category": category,
                           "actor": actor, "target": target, "details": details})
    return events

