"""ClickUp's Workspace audit logs (Public API v3), as ClickUp documents them.

    POST https://api.clickup.com/api/v3/workspaces/{workspace_id}/auditlogs      (operationId `queryAuditLog`)

"Create Workspace-level audit logs. Only the Workspace owner can create audit logs. [...] This endpoint is only
available to Workspaces on our Enterprise Plan." Despite its title the operation is a query: the JSON body names
one `applicability` (log class), optional `filter` (startTime/endTime in epoch ms, eventType, eventStatus, userId,
userEmail) and optional `pagination` (pageRows, pageTimestamp, pageDirection "before" | "after").

Sources: the official v3 OpenAPI document (the operation and its 4 request schemas), the help page "Workspace audit
logs" (log classes, event names, the event-log fields of one row) and the rate-limit and authentication pages, as
collected in the project's vendor notes (§1). The v2 path `/api/v2/team/{id}/audit` found in a third-party article
does not exist, nor does the hyphenated `/audit-logs`: both 404 here.

ClickUp publishes no response schema (`200: application/json: {}`), no row id, no paging semantics beyond the
field descriptions and no retention. Every such choice below is marked "Docs are silent:" and is a constructor knob,
so a collector can be tested against each alternative; collectors must not depend on any of them.
"""

from __future__ import annotations

import hmac
import math
import re
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from random import Random
from typing import Any, Literal, NamedTuple

from auditlake_local.simulators.base import (
    FaultPlan,
    RequestRecord,
    SimRequest,
    SimResponse,
    VendorSimulator,
    gc_paused,
    utc_now,
)
from auditlake_local.simulators.people import Person, roster

AUDIT_LOGS = re.compile(r"^/api/v3/workspaces/(?P<workspace_id>[^/]+)/auditlogs/?$")

# The `applicability` enum of the current spec (an older revision had only the four middle values).
APPLICABILITIES = ("agent-settings-activity", "auth-and-security", "custom-fields", "hierarchy-activity",
                   "user-activity", "other-activity")
OLDER_APPLICABILITIES = ("auth-and-security", "custom-fields", "hierarchy-activity", "user-activity")
EVENT_STATUSES = frozenset({"success", "failed", "warn", "skipped", "started", "completed", "error",
                            "system_error"})
PAGE_DIRECTIONS = frozenset({"before", "after"})
# filter.eventType's enum in the spec. It is incomplete: the help page lists Hierarchy and Agents events that have no
# value in it. Those are accepted too (EXTRA_EVENT_TYPES), under the names this simulator gives them.
SPEC_EVENT_TYPES = frozenset({
    "USER_LOGIN", "USER_LOGOUT", "CHANGE_2FA", "CHANGE_EMAIL", "CHANGE_PASSWORD", "JOIN_WORKSPACE",
    "LEAVE_WORKSPACE", "RESET_PASSWORD", "ROLE_CHANGE", "SCIM_DEPROVISION", "SCIM_PROVISION", "SCIM_UPDATE",
    "SECURE_LOGIN_EMAIL_SENT", "ADVANCED_SETTINGS_UPDATED", "CHANGE_2FA_POLICY", "CHANGE_ROLE_PERMISSIONS",
    "CHANGE_SSO_POLICY", "CHANGE_USER_ROLE", "CUSTOM_ROLE_CREATED", "CUSTOM_ROLE_DELETED", "CUSTOM_ROLE_UPDATED",
    "TEAM_CREATED", "TEAM_DELETED", "TEAM_EDITED", "TEAM_MEMBER_ADDED", "TEAM_MEMBER_REMOVED",
    "INVITE_TO_WORKSPACE", "REMOVE_FROM_WORKSPACE", "SCIM_GROUP_CREATED", "SCIM_GROUP_DELETED",
    "SCIM_GROUP_UPDATED", "SSO_CONFIG_UPDATED", "TASK_ARCHIVED", "TASK_ASSIGNEES_CHANGED", "TASK_CREATED",
    "TASK_CUSTOM_FIELD_VALUES_CHANGED", "TASK_DELETED", "TASK_PRIORITY_CHANGED", "TASK_RESTORED",
    "TASK_STATUS_CHANGED", "TASK_UNARCHIVED", "FIELD_CONVERTED", "FIELD_CREATED", "FIELD_DROPDOWN_OPTIONS_CREATED",
    "FIELD_DROPDOWN_OPTIONS_REMOVED", "FIELD_DROPDOWN_OPTIONS_UPDATED", "FIELD_DUPLICATED",
    "FIELD_GROUP_MEMBER_PERMISSION_REMOVED", "FIELD_GROUP_MEMBER_PERMISSION_SET", "FIELD_LABEL_OPTIONS_CREATED",
    "FIELD_LABEL_OPTIONS_REMOVED", "FIELD_LABEL_OPTIONS_UPDATED", "FIELD_LOCATION_ADDED", "FIELD_LOCATION_REMOVED",
    "FIELD_LOCATION_UPDATED", "FIELD_MEMBER_PERMISSION_REMOVED", "FIELD_MEMBER_PERMISSION_SET", "FIELD_MERGED",
    "FIELD_PERMANENTLY_REMOVED", "FIELD_REMOVED", "FIELD_RESTORED", "FIELD_UPDATED",
})

ENTERPRISE_RATE_LIMIT = 10_000  # requests per minute per token on the Enterprise plan (the only one with audit logs)
# Docs are silent: the largest pageRows. Default, the least friendly: a silent cap at 50 rows, half the collectors'
# page (knobs `max_page_rows`, None for no cap; `page_rows_over_max="reject"` answers 400 above it instead).
DEFAULT_MAX_PAGE_ROWS = 50
# Docs are silent: the number of rows when pageRows is omitted. 100, what third-party clients send.
DEFAULT_PAGE_ROWS = 100

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)
_MINUTE_SECONDS = 60.0

# A stored row's place in its log: (time in epoch ms, sequence of capture). Docs are silent on rows that share a
# millisecond: here they keep the order they were captured in, so "after" serves them in capture order and
# "before" in reverse: the same total order read from either end. Docs are silent on which time that is (knob
# `time_key`): the row's startTime (default), its endTime, or an internal time (when ClickUp stored the row, up to
# INTERNAL_DELAY_MS after its startTime).
_Key = tuple[int, int]
INTERNAL_DELAY_MS = 3000



def _to_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MILLISECOND


def _iso(epoch_ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_ms // 1000)) + f".{epoch_ms % 1000:03d}Z"


class _Times:
    """Reads the times of rows given to `add_events`: ISO 8601 or epoch milliseconds.

    The canonical form (`2024-07-31T17:59:04.238Z`) is read by slicing, with one parse per day: a million rows
    must load in seconds.
    """

    def __init__(self) -> None:
        self._days: dict[str, int] = {}

    def ms(self, value: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            if len(value) == 24 and value[10] == "T" and value[19] == "." and value[23] == "Z":
                day = self._days.get(value[:10])
                if day is None:
                    day = self._days[value[:10]] = _to_ms(datetime.fromisoformat(f"{value[:10]}T00:00:00+00:00"))
                return (day + int(value[11:13]) * 3_600_000 + int(value[14:16]) * 60_000 + int(value[17:19]) * 1000
                        + int(value[20:23]))
            return _to_ms(datetime.fromisoformat(value))
        raise ValueError(f"a row time must be ISO 8601 or epoch milliseconds, got {value!r}")

    def served(self, value: Any, *, epoch_ms: bool) -> int | str:
        """The time as served: epoch ms, or the canonical ISO form (kept as given when it already is)."""
        if epoch_ms:
            return self.ms(value)
        if isinstance(value, str) and len(value) == 24 and value[19] == "." and value[23] == "Z":
            return value
        return _iso(self.ms(value))


# --- which log a row belongs to -----------------------------------------------------------------------------------
# "One query returns one applicability class." Which eventType lands in which class is not documented; the help page
# only groups events into its User, Task, Fields, Hierarchy and Agents logs. Docs are silent, so this simulator maps:
#   User log                                  -> auth-and-security ("Most use cases will use auth-and-security")
#   Task log (TASK_*, "task activity by user") -> user-activity
#   Fields log (FIELD_*)                       -> custom-fields
#   Hierarchy log (FOLDER_*, LIST_*, SPACE_*)  -> hierarchy-activity
#   Agents log (AGENT_*)                       -> agent-settings-activity
#   everything else (access requests, Chat retention, unknown types) -> other-activity

_PREFIX_CLASSES = (("TASK_", "user-activity"), ("FIELD_", "custom-fields"), ("FOLDER_", "hierarchy-activity"),
                   ("LIST_", "hierarchy-activity"), ("SPACE_", "hierarchy-activity"),
                   ("AGENT_", "agent-settings-activity"))
_USER_LOG_TYPES = SPEC_EVENT_TYPES - {t for t in SPEC_EVENT_TYPES if t.startswith(("TASK_", "FIELD_"))}


def applicability_of(event_type: Any) -> str:
    """The log class a row of this eventType is served under (a documented assumption, see above)."""
    if isinstance(event_type, str):
        for prefix, applicability in _PREFIX_CLASSES:
            if event_type.startswith(prefix):
                return applicability
        if event_type in _USER_LOG_TYPES:
            return "auth-and-security"
    return "other-activity"


class _ApiError(Exception):
    """An error in the v3 envelope: {"status", "message", "trace_id", "timestamp"}."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Stored(NamedTuple):  # a tuple: a million of them must be cheap to build
    key: _Key
    row: dict[str, Any]  # exactly as served
    truth_key: str  # the row's id, or a simulator-internal key when it has none
    applicability: str
    event_type: str | None
    event_status: str | None
    user_id: str | None
    user_email: str | None


@dataclass(frozen=True)
class _Query:
    applicability: str
    start_time: int | None  # filter.startTime, epoch ms
    end_time: int | None  # filter.endTime, epoch ms
    event_types: frozenset[str] | None
    event_status: str | None
    user_ids: frozenset[str] | None
    user_emails: frozenset[str] | None
    page_rows: int
    page_timestamp: int | None
    direction: str

    def matches(self, stored: _Stored) -> bool:
        return ((self.event_types is None or stored.event_type in self.event_types)
                and (self.event_status is None or stored.event_status == self.event_status)
                and (self.user_ids is None or stored.user_id in self.user_ids)
                and (self.user_emails is None or stored.user_email in self.user_emails))


class ClickUpSimulator(VendorSimulator):
    """One Enterprise Workspace and its audit logs, served to its owner's token.

    Knobs for what ClickUp does not document (each default is a "Docs are silent:" choice):
    - `envelope`: the key that wraps the rows (`{"data": [...]}`), or None for a bare JSON list;
    - `row_ids`: whether rows carry an `id` (default: no, as the help page's only example row; a collector must
      derive its own key, and byte-identical rows in one millisecond are then indistinguishable);
    - `time_format`: rows' startTime/endTime as ISO strings (`"iso"`) or epoch milliseconds (`"epoch_ms"`);
    - `page_timestamp_inclusive`: whether a row AT pageTimestamp is served (default: exclusive, strictly
      before/after it: a client that follows the docs literally then loses the rest of a page's last millisecond
      silently, where an inclusive one would loop);
    - `start_time_inclusive` / `end_time_inclusive`: whether filter.startTime / filter.endTime admit a row at
      that very millisecond (default: startTime exclusive, endTime inclusive: a client sending its window's
      bounds loses the rows at its start and gets the rows at its end twice);
    - `max_page_rows` and `page_rows_over_max`: the largest page (None: no cap), and whether a larger pageRows is
      silently capped (default, at 50) or rejected (400);
    - `time_key`: the time the filter and pageTimestamp compare and rows are ordered by: `"startTime"` (default),
      `"endTime"` or `"internal"`. A collector that walks by startTime cannot be exact under the other two; it must
      notice and fail, so a default of either would fail every default run by design;
    - `applicabilities`: the classes this Workspace accepts (default: the six of the current spec;
      OLDER_APPLICABILITIES for the older revision's four); another class is a 400;
    - `retention`: how long rows stay queryable (None: forever).
    Plan and role: `enterprise=False` is a non-Enterprise Workspace, answered with `no_audit_logs_status` (404
    INSUFFICIENT_WORKSPACE_ACCESS as a third party reports, or 402, or 403); `owner=False` a token of a non-owner.

    Test hooks: `add_events`, `publish_pending`, `expire_cursors` (a no-op: keyset paging has no cursor to expire),
    `ground_truth`, `generate_events`, and the base class's `faults`, `requests_log`, `on_request` and `stats()`.
    """

    vendor = "clickup"
    stat_keys = ("pages_with_data", "empty_pages", "events_served", "rate_limited")

    def __init__(self, token: str, workspace_id: str, *, now: Callable[[], datetime] = utc_now,
                 oauth_token: str | None = None, enterprise: bool = True, owner: bool = True,
                 envelope: str | None = "data", row_ids: bool = False,
                 time_format: Literal["iso", "epoch_ms"] = "iso", page_timestamp_inclusive: bool = False,
                 start_time_inclusive: bool = False, end_time_inclusive: bool = True,
                 max_page_rows: int | None = DEFAULT_MAX_PAGE_ROWS,
                 page_rows_over_max: Literal["reject", "cap"] = "cap",
                 time_key: Literal["startTime", "endTime", "internal"] = "startTime",
                 applicabilities: Iterable[str] = APPLICABILITIES, no_audit_logs_status: Literal[402, 403, 404] = 404,
                 retention: timedelta | None = None, rate_limit_per_minute: int | None = None,
                 faults: FaultPlan | None = None, on_request: Callable[[RequestRecord], None] | None = None,
                 fault_retry_after: int = 1) -> None:
        super().__init__(faults=faults, on_request=on_request, fault_retry_after=fault_retry_after)
        if time_format not in {"iso", "epoch_ms"} or page_rows_over_max not in {"reject", "cap"} \
                or time_key not in {"startTime", "endTime", "internal"} or no_audit_logs_status not in {402, 403, 404}:
            raise ValueError("time_format is 'iso' or 'epoch_ms'; page_rows_over_max is 'reject' or 'cap'; time_key "
                             "is 'startTime', 'endTime' or 'internal'; no_audit_logs_status is 402, 403 or 404")
        self.applicabilities = tuple(applicabilities)
        if not set(self.applicabilities) <= set(APPLICABILITIES):
            raise ValueError(f"applicabilities are some of {', '.join(APPLICABILITIES)}")
        self._token = token
        self._oauth_token = oauth_token  # OAuth apps send `Authorization: Bearer <token>`
        self.workspace_id = workspace_id
        # The path's workspace_id is a number in the spec; rows name their Workspace the same way.
        self._workspace_value: int | str = int(workspace_id) if workspace_id.isdigit() else workspace_id
        self.now = now
        self.enterprise = enterprise
        self.owner = owner
        self.envelope = envelope
        self.row_ids = row_ids
        self.time_format = time_format
        self.page_timestamp_inclusive = page_timestamp_inclusive
        self.start_time_inclusive = start_time_inclusive
        self.end_time_inclusive = end_time_inclusive
        self.max_page_rows = max_page_rows
        self.page_rows_over_max = page_rows_over_max
        self.time_key = time_key  # read when rows are captured: set it before add_events
        self.no_audit_logs_status = no_audit_logs_status
        # Docs are silent on retention ("Feature availability and limits vary by plan"): none by default.
        self.retention = retention
        # Enforced only when set; the X-RateLimit-* headers are sent on every response either way.
        self.rate_limit_per_minute = rate_limit_per_minute
        self._logs: dict[str, list[_Stored]] = {applicability: [] for applicability in APPLICABILITIES}
        self._pending: dict[str, _Stored] = {}  # captured but not yet published (late events)
        self._truth_keys: set[str] = set()
        self._sequence = 0
        self._window_started: float | None = None  # the current rate-limit minute
        self._window_count = 0
        self._trace_ids = Random(workspace_id)

    # --- test hooks ---------------------------------------------------------------------------------------------

    @staticmethod
    def generate_events(count: int, start: datetime, end: datetime, seed: int, *,
                        burst_rate: float = 0.05, repeat_rate: float = 0.4) -> list[dict[str, Any]]:
        """Realistic rows to `add_events()`; see the module-level `generate_events`."""
        return generate_events(count, start, end, seed, burst_rate=burst_rate, repeat_rate=repeat_rate)

    def add_events(self, events: Iterable[dict[str, Any]], *, published: bool = True) -> None:
        """Captures rows in this Workspace. Unpublished ones stay invisible until `publish_pending()`.

        A row needs `startTime` (ISO 8601 or epoch ms) and may carry an `id` (unique); its `eventType` decides its
        log class. What is served is a copy: stamped with this Workspace's `workspaceId`, and shaped by the
        `row_ids` and `time_format` knobs.
        """
        new: list[_Stored] = []
        batch: set[str] = set()
        times = _Times()
        with self._lock, gc_paused():
            sequence = self._sequence
            for event in events:
                sequence += 1
                has_id = event.get("id") is not None
                truth_key = str(event["id"]) if has_id else f"row-{sequence}"
                if truth_key in self._truth_keys or truth_key in batch:
                    raise ValueError(f"row id must be unique, got {event.get('id')!r}")
                batch.add(truth_key)
                row, key_ms = self._served(event, times, sequence)
                user_id = event.get("userId")
                new.append(_Stored((key_ms, sequence), row, truth_key,
                                   applicability_of(event.get("eventType")), event.get("eventType"),
                                   event.get("eventStatus"), None if user_id is None else str(user_id),
                                   event.get("userEmail")))
            # Only once the whole batch is valid: a refused batch leaves no trace.
            self._sequence = sequence
            self._truth_keys |= batch
            if published:
                self._insert(new)
            else:
                self._pending.update((entry.truth_key, entry) for entry in new)

    def publish_pending(self, keys: Iterable[str] | None = None) -> int:
        """Makes late rows visible (all of them, or those with these ground-truth keys); returns how many."""
        with self._lock:
            chosen = list(self._pending) if keys is None else [key for key in keys if key in self._pending]
            self._insert([self._pending.pop(key) for key in chosen])
            return len(chosen)

    def expire_cursors(self) -> None:
        """Does nothing: ClickUp pages by timestamp (pageTimestamp), which never expires; there is no cursor."""

    def ground_truth(self) -> dict[str, dict[str, Any]]:
        """Every row a client can retrieve now, exactly as served, keyed by the row's `id` (or, for rows captured
        without one, a simulator-internal key): published, not in the future, within the retention."""
        with self._lock:
            now_ms = self._now_ms()
            truth: dict[str, dict[str, Any]] = {}
            for entries in self._logs.values():
                low, high = self._visible_range(entries, now_ms)
                truth.update((entry.truth_key, entry.row) for entry in entries[low:high])
            return truth

    # --- the endpoint -------------------------------------------------------------------------------------------

    def route(self, request: SimRequest) -> SimResponse:
        match = AUDIT_LOGS.match(request.path)
        if match is None or request.method != "POST":
            return self._error(404, "Route not found")
        # Docs are silent on which error envelope this v3 operation uses: the v3 one every other v3 operation
        # references, {status, message, trace_id, timestamp}. A v2-style {err, ECODE} is equally possible.
        if not self._authorized(request):
            return self._error(401, "Token invalid")
        headers = self._count_request()
        if self.rate_limit_per_minute is not None and self._window_count > self.rate_limit_per_minute:
            self.counters["rate_limited"] += 1
            return self._error(429, "Rate limit reached", headers)
        # Docs are silent on a Workspace the token does not belong to: 401, as v2 answers "Team not authorized".
        if match["workspace_id"] != self.workspace_id:
            return self._error(401, "Team not authorized", headers)
        # Non-Enterprise Workspaces: a third party reports 404 with INSUFFICIENT_WORKSPACE_ACCESS. Docs are silent
        # on the body (here the code is the message) and on the status (knob: 402 or 403, as other APIs answer).
        if not self.enterprise:
            message = {404: "INSUFFICIENT_WORKSPACE_ACCESS", 402: "Audit logs require the Enterprise plan",
                       403: "Audit logs are not available on this Workspace's plan"}[self.no_audit_logs_status]
            return self._error(self.no_audit_logs_status, message, headers)
        # "Only the Workspace owner can create audit logs." Docs are silent on the answer: 403.
        if not self.owner:
            return self._error(403, "Only the Workspace owner can query audit logs", headers)
        try:
            query = self._query(request)
            page = self._scan(query)
        except _ApiError as error:
            return self._error(error.status, error.message, headers)
        rows = [entry.row for entry in page]
        self.counters["pages_with_data" if rows else "empty_pages"] += 1
        self.counters["events_served"] += len(rows)
        # Docs are silent on the response ("200: application/json: {}"): the rows in a `data` envelope (knob:
        # another key, or a bare list). No "has more" field.
        return SimResponse.of_json(200, rows if self.envelope is None else {self.envelope: rows}, headers)

    def _scan(self, query: _Query) -> list[_Stored]:
        """The page: up to pageRows matching rows of one log, from pageTimestamp on in the page's direction."""
        entries = self._logs[query.applicability]
        low, high = self._visible_range(entries, self._now_ms())
        key = attrgetter("key")
        # Docs are silent on whether filter.startTime and filter.endTime are inclusive (knobs; default: startTime
        # exclusive, endTime inclusive).
        if query.start_time is not None:
            first = query.start_time if self.start_time_inclusive else query.start_time + 1
            low = max(low, bisect_left(entries, (first,), key=key))
        if query.end_time is not None:
            last = query.end_time if self.end_time_inclusive else query.end_time - 1
            high = min(high, bisect_left(entries, (last + 1,), key=key))
        # Docs are silent on whether a row AT pageTimestamp is served (knob; default: it is not). pageTimestamp is
        # a bare millisecond, so rows sharing the boundary millisecond cannot be told apart by the next request.
        stamp, inclusive = query.page_timestamp, self.page_timestamp_inclusive
        page: list[_Stored] = []
        if query.direction == "before":
            # "If you are requesting the first page, this should be the current timestamp."
            if stamp is not None:
                high = min(high, bisect_left(entries, (stamp + 1 if inclusive else stamp,), key=key))
            indexes: Iterable[int] = range(high - 1, low - 1, -1)  # newest first
        else:
            # Docs are silent on "after": oldest first, from pageTimestamp (or from the oldest row) upwards.
            if stamp is not None:
                low = max(low, bisect_left(entries, (stamp if inclusive else stamp + 1,), key=key))
            indexes = range(low, high)
        for index in indexes:
            entry = entries[index]
            if query.matches(entry):
                page.append(entry)
                if len(page) == query.page_rows:
                    break
        return page

    # --- the request body (AuditLogQueryRequest) ----------------------------------------------------------------

    def _query(self, request: SimRequest) -> _Query:
        try:
            body = request.json()
        except ValueError:
            raise _ApiError(400, "Request body must be valid JSON") from None
        if not isinstance(body, dict):
            raise _ApiError(400, "Request body must be an object")
        applicability = body.get("applicability")
        if applicability is None:
            raise _ApiError(400, "applicability is required")
        if applicability not in self.applicabilities:
            raise _ApiError(400, "applicability must be one of the following values: "
                                 + ", ".join(self.applicabilities))
        filters = _object(body, "filter")
        pagination = _object(body, "pagination")

        workspace = filters.get("workspaceId")
        if workspace is not None and str(workspace) != self.workspace_id:
            raise _ApiError(400, "filter.workspaceId does not match the Workspace in the path")
        # filter.eventType is typed `string` but the official example sends an array: both are accepted. The
        # enum in the spec misses the Hierarchy and Agents events, which are accepted too.
        event_types = _strings(filters, "eventType", allow_single=True)
        if event_types is not None:
            unknown = sorted(event_types - SPEC_EVENT_TYPES - EXTRA_EVENT_TYPES)
            if unknown:
                raise _ApiError(400, f"filter.eventType has unknown values: {', '.join(unknown)}")
        event_status = filters.get("eventStatus")
        if event_status is not None and event_status not in EVENT_STATUSES:
            raise _ApiError(400, "filter.eventStatus must be one of the following values: "
                                 + ", ".join(sorted(EVENT_STATUSES)))
        direction = pagination.get("pageDirection", "before")
        if direction not in PAGE_DIRECTIONS:
            raise _ApiError(400, "pagination.pageDirection must be one of the following values: before, after")
        page_rows = _number(pagination, "pageRows")
        if page_rows is None:
            page_rows = DEFAULT_PAGE_ROWS
        elif page_rows < 1:
            raise _ApiError(400, "pagination.pageRows must be a positive number")
        elif self.max_page_rows is not None and page_rows > self.max_page_rows:
            if self.page_rows_over_max == "reject":
                raise _ApiError(400, f"pagination.pageRows must not be greater than {self.max_page_rows}")
            page_rows = self.max_page_rows
        return _Query(applicability=applicability, start_time=_number(filters, "startTime"),
                      end_time=_number(filters, "endTime"), event_types=event_types, event_status=event_status,
                      user_ids=_strings(filters, "userId"), user_emails=_strings(filters, "userEmail"),
                      page_rows=page_rows, page_timestamp=_number(pagination, "pageTimestamp"), direction=direction)

    # --- auth, rate limits, errors ------------------------------------------------------------------------------

    def _authorized(self, request: SimRequest) -> bool:
        # "include the token in the Authorization header": a personal token as is, no scheme (`pk_...`).
        given = (request.header("authorization") or "").strip().encode()
        if hmac.compare_digest(given, self._token.encode()):
            return True
        return self._oauth_token is not None and hmac.compare_digest(given, f"Bearer {self._oauth_token}".encode())

    def _count_request(self) -> dict[str, str]:
        """Counts the request in the current minute; the X-RateLimit-* headers ClickUp sends with the answer:
        Limit, Remaining and Reset (Unix time in seconds).

        Docs are silent on the window: a fixed minute from its first request, whose end X-RateLimit-Reset announces.
        Rejected requests count too. The limit is enforced only when `rate_limit_per_minute` is set; the headers
        are sent either way (with the Enterprise limit).
        """
        now = self.now().timestamp()
        if self._window_started is None or now >= self._window_started + _MINUTE_SECONDS:
            self._window_started, self._window_count = now, 0
        self._window_count += 1
        limit = self.rate_limit_per_minute or ENTERPRISE_RATE_LIMIT
        return {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(max(0, limit - self._window_count)),
                "X-RateLimit-Reset": str(math.ceil(self._window_started + _MINUTE_SECONDS))}

    def rate_limited_response(self, retry_after: int) -> SimResponse:
        # 429 with the X-RateLimit-* headers; no Retry-After is documented: the reset time is the instruction.
        limit = self.rate_limit_per_minute or ENTERPRISE_RATE_LIMIT
        reset = math.ceil(self.now().timestamp() + retry_after)
        return self._error(429, "Rate limit reached", {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": "0",
                                                       "X-RateLimit-Reset": str(reset)})

    def server_error_response(self) -> SimResponse:
        # "X-RateLimit-* on every response": a 5xx too, whose Reset (the end of the rate-limit minute, up to a minute
        # away) says nothing about when the failure is over.
        headers = self._count_request()
        return self._error(500, "Internal Server Error", headers)

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> SimResponse:
        return SimResponse.of_json(status, {"status": status, "message": message,
                                            "trace_id": self._trace_ids.randint(10**8, 10**9 - 1),
                                            "timestamp": self._now_ms()}, headers)

    # --- storage ------------------------------------------------------------------------------------------------

    def _served(self, event: dict[str, Any], times: _Times, sequence: int) -> tuple[dict[str, Any], int]:
        """The row as this Workspace serves it (id kept or dropped, times as ISO or epoch ms, the Workspace
        stamped), and the time it is filtered and paged by (`time_key`), in epoch ms."""
        row: dict[str, Any] = {}
        if self.row_ids and event.get("id") is not None:
            row["id"] = event["id"]
        row["workspaceId"] = self._workspace_value
        for name, value in event.items():
            if name in {"startTime", "endTime"} and value is not None:
                # Docs are silent on the time format of a row: ISO with milliseconds, as the UI's event log shows
                # ("2024-07-31T17:59:04.238Z"); knob: epoch milliseconds, as the request's filter uses.
                row[name] = times.served(value, epoch_ms=self.time_format == "epoch_ms")
            elif name not in {"id", "workspaceId"}:
                row[name] = value
        start_ms = times.ms(event["startTime"])
        if self.time_key == "endTime" and event.get("endTime") is not None:
            return row, times.ms(event["endTime"])
        if self.time_key == "internal":  # when the row was stored: a little after it happened
            return row, start_ms + (sequence * 7919) % INTERNAL_DELAY_MS
        return row, start_ms

    def _now_ms(self) -> int:
        return _to_ms(self.now())

    def _visible_range(self, entries: Sequence[_Stored], now_ms: int) -> tuple[int, int]:
        """Rows a client can see now: not after now, and within the retention when one is set."""
        key = attrgetter("key")
        floor = 0 if self.retention is None else now_ms - self.retention // _MILLISECOND
        return bisect_left(entries, (floor,), key=key), bisect_left(entries, (now_ms + 1,), key=key)

    def _insert(self, new: list[_Stored]) -> None:
        by_class: dict[str, list[_Stored]] = {}
        for entry in new:
            by_class.setdefault(entry.applicability, []).append(entry)
        key = attrgetter("key")
        for applicability, added in by_class.items():
            entries = self._logs[applicability]
            added.sort(key=key)
            appending = not entries or added[0].key > entries[-1].key
            entries.extend(added)
            if not appending:
                entries.sort(key=key)  # two sorted runs: timsort merges them in linear time


def _object(body: dict[str, Any], name: str) -> dict[str, Any]:
    value = body.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _ApiError(400, f"{name} must be an object")
    return value


def _number(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value != int(value):
        raise _ApiError(400, f"{name} must be a number")
    return int(value)


def _strings(body: dict[str, Any], name: str, *, allow_single: bool = False) -> frozenset[str] | None:
    value = body.get(name)
    if value is None:
        return None
    if allow_single and isinstance(value, str):
        return frozenset({value})
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _ApiError(400, f"filter.{name} must be an array of strings")
    return frozenset(value)


# --- realistic rows ---------------------------------------------------------------------------------------------
# A row has the fields of the UI's event log (help page "Workspace audit logs"): startTime/endTime, userId, clientIp,
# userName, userEmail, userRole (a number: 1 owner, 2 admin, 3 member, 4 guest, as in ClickUp's v2 API), title,
# eventType, eventStatus; plus an `id` (docs are silent: a UUID). The event names are the help page's, their
# eventType the spec's value, or (for events the spec's enum lacks) the help page's name in the spec's style.
# Addresses are documentation ranges.

_OCTETS = tuple(range(1, 255))
_FIRST = ("Ada", "Grace", "Alan", "Linus", "Margaret", "Ken", "Barbara", "Dennis", "Frances", "Edsger", "Radia",
          "Guido", "Katherine", "Tim", "Hedy", "Donald", "Annie", "John", "Sophie", "Niklaus")
OWNER, ADMIN, MEMBER, GUEST = 1, 2, 3, 4


@dataclass(frozen=True, slots=True)
class _Person:
    """Who a row names. Someone not signed in (a failed login, a recovery request) has only an address."""

    user_id: int | None
    name: str | None
    email: str
    role: int | None
    ip: str


class _Workspace:
    """The people of one generated Workspace, and a deterministic source of randomness."""

    def __init__(self, rng: Random, size: int) -> None:
        self.rng = rng
        # The company's shared roster: the same names, emails and addresses as in the other tools.
        self.people = [self._person(person, size) for person in roster(size)]
        self.admins = [person for person in self.people if person.role in {OWNER, ADMIN}]

    def pick[T](self, options: Sequence[T]) -> T:
        """`rng.choice`, about three times faster: generation time is dominated by these picks."""
        return options[int(self.rng.random() * len(options))]

    def _person(self, person: Person, size: int) -> _Person:
        index = person.index
        role = OWNER if index == 0 else ADMIN if index <= max(1, size // 20) else GUEST if index % 9 == 0 else MEMBER
        return _Person(81_000_000 + index * 7 + int(self.rng.random() * 7), person.name, person.email, role,
                       person.ip)

    def someone(self) -> _Person:
        return self.pick(self.people)

    def admin(self) -> _Person:
        return self.pick(self.admins)

    def uuid(self) -> str:
        """A version-4-shaped UUID (docs are silent on the id's form)."""
        digits = f"{self.rng.getrandbits(128):032x}"
        return f"{digits[:8]}-{digits[8:12]}-4{digits[13:16]}-{digits[16:20]}-{digits[20:]}"


# Each maker returns (actor, title, eventStatus) for its event type.
_Made = tuple[_Person, str, str]


def _login(ws: _Workspace) -> _Made:
    person = ws.someone()
    title = ws.pick(("User Login", "User Login", "User Login (2FA)", "User Login (SSO)", "Token Login"))
    roll = ws.rng.random()
    if roll < 0.03:  # a password spray: an address that is no member's
        stranger = _Person(None, None, f"{ws.pick(_FIRST).lower()}@{ws.pick(('example.net', 'example.org'))}",
                           None, f"203.0.113.{ws.pick(_OCTETS)}")
        return stranger, "User Login", "failed"
    return person, title, "failed" if roll < 0.12 else "success"


def _self(title: str) -> Callable[[_Workspace], _Made]:
    def make(ws: _Workspace) -> _Made:
        return ws.someone(), title, "success"
    return make


def _by_admin(title: str, error_rate: float = 0.0) -> Callable[[_Workspace], _Made]:
    def make(ws: _Workspace) -> _Made:
        return ws.admin(), title, "error" if ws.rng.random() < error_rate else "success"
    return make


def _recovery(ws: _Workspace) -> _Made:
    # Nobody is signed in when a recovery link is requested: the row names the address it was sent to.
    person = ws.someone()
    anonymous = _Person(None, None, person.email, None, f"203.0.113.{ws.pick(_OCTETS)}")
    return anonymous, "User Requested Password Recovery", "success"


# (eventType, relative frequency, maker)
_CATALOGUE: tuple[tuple[str, int, Callable[[_Workspace], _Made]], ...] = (
    # auth-and-security: the User log
    ("USER_LOGIN", 260, _login),
    ("USER_LOGOUT", 80, _self("User Logout")),
    ("SECURE_LOGIN_EMAIL_SENT", 8, _self("Secure Login Email Sent")),
    ("CHANGE_2FA", 4, _self("User Changed 2FA")),
    ("CHANGE_PASSWORD", 5, _self("User Changed Password")),
    ("CHANGE_EMAIL", 2, _self("User Changed Email")),
    ("RESET_PASSWORD", 4, _recovery),
    ("INVITE_TO_WORKSPACE", 6, _by_admin("User Invited to Workspace")),
    ("JOIN_WORKSPACE", 5, _self("User Joined Workspace")),
    ("LEAVE_WORKSPACE", 1, _self("User Left Workspace")),
    ("REMOVE_FROM_WORKSPACE", 2, _by_admin("User Removed from Workspace")),
    ("CHANGE_USER_ROLE", 2, _by_admin("User Role Changed")),
    ("CHANGE_ROLE_PERMISSIONS", 1, _by_admin("Role Permission Changed")),
    ("CUSTOM_ROLE_CREATED", 1, _by_admin("Custom Role Created")),
    ("CUSTOM_ROLE_UPDATED", 1, _by_admin("Custom Role Updated")),
    ("CUSTOM_ROLE_DELETED", 1, _by_admin("Custom Role Deleted")),
    ("CHANGE_2FA_POLICY", 1, _by_admin("2FA Policy Changed")),
    ("CHANGE_SSO_POLICY", 1, _by_admin("SSO Policy Changed")),
    ("SSO_CONFIG_UPDATED", 1, _by_admin("SSO Configuration Updated")),
    ("ADVANCED_SETTINGS_UPDATED", 1, _by_admin("Advanced Settings Update")),
    ("SCIM_PROVISION", 3, _by_admin("User Provisioned Via SCIM", error_rate=0.05)),
    ("SCIM_DEPROVISION", 2, _by_admin("User Deprovisioned Via SCIM", error_rate=0.05)),
    ("SCIM_UPDATE", 3, _by_admin("Update User Via SCIM", error_rate=0.05)),
    ("SCIM_GROUP_CREATED", 1, _by_admin("Created Group")),
    ("TEAM_MEMBER_ADDED", 3, _by_admin("Team Member Added")),
    ("TEAM_MEMBER_REMOVED", 1, _by_admin("User Removed from Team")),
    # user-activity: the Task log
    ("TASK_CREATED", 90, _self("Task Created")),
    ("TASK_STATUS_CHANGED", 110, _self("Task Status Changed")),
    ("TASK_ASSIGNEES_CHANGED", 45, _self("Task Assignees Changed")),
    ("TASK_PRIORITY_CHANGED", 20, _self("Task Priority Changed")),
    ("TASK_CUSTOM_FIELD_VALUES_CHANGED", 30, _self("Task Custom Field Values Changed")),
    ("TASK_ARCHIVED", 8, _self("Task Archived")),
    ("TASK_UNARCHIVED", 1, _self("Task Unarchived")),
    ("TASK_DELETED", 12, _self("Task Deleted")),
    ("TASK_RESTORED", 1, _self("Task Restored")),
    # custom-fields: the Fields log
    ("FIELD_CREATED", 10, _self("Custom Field Created")),
    ("FIELD_UPDATED", 12, _self("Custom Field Updated")),
    ("FIELD_REMOVED", 3, _self("Custom Field Removed")),
    ("FIELD_PERMANENTLY_REMOVED", 2, _by_admin("Custom Field Permanently Removed")),
    ("FIELD_RESTORED", 1, _self("Custom Field Restored")),
    ("FIELD_DUPLICATED", 2, _self("Custom Field Duplicated")),
    ("FIELD_MERGED", 1, _by_admin("Custom Field Merged")),
    ("FIELD_LOCATION_ADDED", 4, _self("Custom Field Location Added")),
    ("FIELD_MEMBER_PERMISSION_SET", 2, _by_admin("Custom Field Member Permission Set")),
    ("FIELD_MEMBER_PERMISSION_REMOVED", 1, _by_admin("Custom Field Member Permission Removed")),
    # hierarchy-activity: the Hierarchy log (no eventType values in the spec's enum)
    ("SPACE_CREATED", 3, _by_admin("Space Created")),
    ("SPACE_ACCESS_UPDATED", 4, _by_admin("Space Access Updated")),
    ("SPACE_PUBLIC_PRIVATE_SETTING_UPDATED", 2, _by_admin("Space Public/Private Setting Updated")),
    ("SPACE_DELETED", 1, _by_admin("Space Deleted")),
    ("FOLDER_CREATED", 8, _self("Folder Created")),
    ("FOLDER_RENAMED", 4, _self("Folder Renamed")),
    ("FOLDER_ACCESS_UPDATED", 4, _self("Folder Access Updated")),
    ("FOLDER_DELETED", 2, _self("Folder Deleted")),
    ("LIST_CREATED", 16, _self("List Created")),
    ("LIST_ARCHIVED", 4, _self("List Archived")),
    ("LIST_ACCESS_UPDATED", 5, _self("List Access Updated")),
    ("LIST_PUBLIC_PRIVATE_SETTING_UPDATED", 3, _self("List Public/Private Setting Updated")),
    ("LIST_DELETED", 4, _self("List Deleted")),
    # agent-settings-activity: the Agents log (Super Agents; no eventType values in the spec's enum)
    ("AGENT_CREATED", 6, _by_admin("Agent Created")),
    ("AGENT_PROMPT_SETTING_UPDATED", 10, _by_admin("Agent Prompt Setting Updated")),
    ("AGENT_TOOLS_SETTING_UPDATED", 6, _by_admin("Agent Tools Setting Updated")),
    ("AGENT_KNOWLEDGE_SETTING_UPDATED", 5, _by_admin("Agent Knowledge Setting Updated")),
    ("AGENT_TRIGGERS_SETTING_UPDATED", 4, _by_admin("Agent Triggers Setting Updated")),
    ("AGENT_ACTIVE_SETTING_UPDATED", 3, _by_admin("Agent Active Setting Updated")),
    ("AGENT_DELETED", 2, _by_admin("Agent Deleted")),
    # other-activity: help-page User-log events the spec's enum lacks (docs are silent on this class's content)
    ("ACCESS_REQUEST_CREATED", 14, _self("Access Request Created")),
    ("ACCESS_REQUEST_RESOLVED", 12, _by_admin("Access Request Resolved")),
    ("BYPASS_SSO_ENABLED", 1, _by_admin("Bypass SSO Enabled")),
    ("CHAT_RETENTION_SETTING_UPDATED", 2, _by_admin("Chat Retention Setting Updated")),
    ("CHAT_RETENTION_SETTING_DELETED", 1, _by_admin("Chat Retention Setting Deleted")),
)
_CUM_WEIGHTS = tuple(sum(kind[1] for kind in _CATALOGUE[: index + 1]) for index in range(len(_CATALOGUE)))
EXTRA_EVENT_TYPES = frozenset(kind[0] for kind in _CATALOGUE) - SPEC_EVENT_TYPES


def generate_events(count: int, start: datetime, end: datetime, seed: int, *,
                    burst_rate: float = 0.05, repeat_rate: float = 0.4) -> list[dict[str, Any]]:
    """`count` realistic audit-log rows in [start, end), oldest first, deterministic from `seed`, over all six
    log classes.

    About `burst_rate` of them share the millisecond of the row before (login storms, bulk SCIM), so pages end
    inside groups of identical timestamps. A failed login is followed, with `repeat_rate`, by another one by the
    same person from the same address in the same millisecond (a password-guessing script): apart from their `id`,
    such rows are byte-identical, so a collector that must key id-less rows by their content has to count them,
    not merge them. Other rows of one millisecond differ. SCIM calls take a moment: their endTime is up to two
    seconds after their startTime (docs are silent; the UI shows both). Linear in `count`.
    """
    if count < 0 or end <= start:
        raise ValueError("count must be >= 0 and start < end")
    rng = Random(seed)
    ws = _Workspace(rng, size=max(8, min(500, count // 50 + 8)))
    start_ms, end_ms = _to_ms(start), _to_ms(end)
    span, draw = max(end_ms - start_ms, 1), rng.random
    events: list[dict[str, Any]] = []
    with gc_paused():
        times = sorted(start_ms + int(draw() * span) for _ in range(count))
        for index in range(1, count):
            if draw() < burst_rate:
                times[index] = times[index - 1]
        kinds = rng.choices(_CATALOGUE, cum_weights=_CUM_WEIGHTS, k=count)
        last_second, prefix = -1, ""
        last_ms, contents = -1, set[tuple[Any, ...]]()
        previous: dict[str, Any] | None = None
        for index, kind in enumerate(kinds):
            if previous is not None and previous["eventType"] == "USER_LOGIN" \
                    and previous["eventStatus"] == "failed" and draw() < repeat_rate:
                times[index] = last_ms  # the script tries again within the millisecond: an identical row
                previous = {**previous, "id": ws.uuid()}
                events.append(previous)
                continue
            epoch_ms = times[index]
            second = epoch_ms // 1000
            if second != last_second:  # formatting once per second keeps a million rows fast
                last_second, prefix = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            if epoch_ms != last_ms:
                last_ms, contents = epoch_ms, set()
            event_type, _, make = kind
            actor, title, status = make(ws)
            while (event_type, actor, title, status) in contents:  # same millisecond, same content: draw again
                event_type, _, make = rng.choices(_CATALOGUE, cum_weights=_CUM_WEIGHTS)[0]
                actor, title, status = make(ws)
            contents.add((event_type, actor, title, status))
            stamp = f"{prefix}.{epoch_ms % 1000:03d}Z"
            finished = stamp
            if event_type.startswith("SCIM_"):
                finished = _iso(epoch_ms + 20 + int(draw() * 2000))
            previous = {"id": ws.uuid(), "eventType": event_type, "eventStatus": status, "title": title,
                        "userId": actor.user_id, "userName": actor.name, "userEmail": actor.email,
                        "userRole": actor.role, "clientIp": actor.ip, "startTime": stamp, "endTime": finished}
            events.append(previous)
    return events
