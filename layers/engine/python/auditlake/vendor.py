"""What a vendor adapter states: its API's specifics, nothing the engine already does.

An adapter fetches one page of one window, says how to read an event's id and time, maps the event to the
normalised columns, and explains the vendor's error bodies. Windows, dedup, state, archive, retries, deadlines
and metrics are the engine's.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar

from auditlake.http import HttpClient
from auditlake.records import Normalised


class Order(enum.Enum):
    """The order a vendor returns a window's events in."""

    OLDEST_FIRST = "oldest_first"
    NEWEST_FIRST = "newest_first"


@dataclass(frozen=True)
class Window:
    """A closed time window: `start` inclusive, `end` exclusive, both UTC.

    `hint` is what the stream's previous window ended with (`Page.hint`), None when it ended without one, after a
    cursor expiry, or in a state written before hints existed. `next_start` is the earliest instant the window
    after this one can start (this window's end less the overlap), where an adapter aims the hint it returns.
    """

    start: datetime
    end: datetime
    hint: Any | None = None
    next_start: datetime | None = None


class End(enum.Enum):
    """Why a page is the window's last: only what the vendor states, never a page shorter than asked.

    A vendor may serve fewer rows than asked (a page cap it does not document), so a short page says nothing about
    what is left; the engine accepts a window as complete only for one of these reasons, and checks the two it can.
    """

    EMPTY = "an empty page"  # checked: the page holds no event
    LAST_PAGE = "the vendor's own last-page marker"  # e.g. Ashby's moreDataAvailable: false
    COUNT = "the vendor's count of the query's results"  # e.g. Make's pg.totalCount, reached
    # checked: in the vendor's documented order, the page holds an event past the window's far edge, so every event
    # of the window came before it
    PAST_WINDOW = "an event past the window, in the vendor's documented order"


@dataclass(frozen=True)
class Page:
    """One page of a window: the vendor's events verbatim, and either the cursor to the next page or, on the
    window's last page, why it is the last (`end`).

    A window's final page may carry a `hint`: anything JSON-serialisable that lets the next window of the stream
    start reading closer to its start (Make: where in a day's entries that start falls). The engine stores it
    with the completed window and hands it back as `Window.hint`, never interpreting it. A hint is advice: the
    adapter checks it still applies and raises CursorExpired when the vendor contradicts it, which drops it.
    """

    events: list[dict[str, Any]]
    cursor: Any | None = None
    end: End | None = None
    hint: Any | None = None


class VendorAdapter(ABC):
    vendor: ClassVar[str]  # the stream keys' and the records' vendor: lower case, stable forever
    title: ClassVar[str]  # as the vendor writes its name; the template's `<title>Collector`, `<title>Secret`, ...
    default_base_url: ClassVar[str]
    secret_fields: ClassVar[tuple[str, ...]]
    order: ClassVar[Order]
    retention: ClassVar[timedelta | None] = None  # events older than this are gone at the vendor
    # A first window starts this far inside the retention, for vendors whose paging shifts when old events expire.
    retention_margin: ClassVar[timedelta] = timedelta(0)
    earliest: ClassVar[datetime | None] = None  # the vendor has no events before this
    max_window: ClassVar[timedelta | None] = None  # the longest span one query may cover
    # Requests per minute the vendor documents for this adapter's token (or organization) on the plan audit logs
    # need; None: undocumented. Pacing starts from it; RATE_LIMIT_PER_MINUTE overrides it.
    rate_limit_per_minute: ClassVar[int | None] = None
    # Requests the vendor allows in flight at once for one token; None: undocumented. Caps the slices read at once.
    max_concurrent_requests: ClassVar[int | None] = None
    # The finest time bound the vendor's query takes (None: the millisecond): a window's slices end on multiples of
    # it, from the Unix epoch, so each slice's query covers its span exactly.
    query_granularity: ClassVar[timedelta | None] = None
    # How far before its start a window's query may read (Make: from the UTC day before its start's, since its days
    # may be in any zone): each slice after a window's first re-reads that much, so slices are made several times
    # as long (slicing.py).
    query_reread: ClassVar[timedelta] = timedelta(0)
    # What the vendor requires for its audit-log API (plan, feature, role), said when an error shows it is missing.
    audit_log_requirement: ClassVar[str]

    @classmethod
    def function_id(cls) -> str:
        """The collector function's logical id in template.yaml, which the stack's outputs are named after."""
        return f"{cls.title}Collector"

    def __init__(self, secret: Mapping[str, str], http: HttpClient, page_size: int) -> None:
        self.secret = secret
        self.http = http
        self.page_size = page_size

    @classmethod
    def base_url(cls, secret: Mapping[str, str]) -> str:
        """Where the vendor's API is: the secret's `base_url` when set (a proxy, a simulator), else the vendor's
        own host. Vendors with regional hosts derive it from the secret's scope fields."""
        return secret.get("base_url") or cls.default_base_url

    @classmethod
    @abstractmethod
    def auth_headers(cls, secret: Mapping[str, str]) -> dict[str, str]:
        """The headers that authenticate a request."""

    @classmethod
    @abstractmethod
    def error_details(cls, status: int, body: Any) -> tuple[str | None, str]:
        """(code, message) from the vendor's error body (parsed JSON, or text when it is not JSON)."""

    @classmethod
    def lacks_audit_logs(cls, status: int, code: str | None) -> bool:
        """Whether an error (HTTP status, the vendor's code) says the account cannot read audit logs at all: a plan
        without them, the feature off. Such an error becomes AuditLogsUnavailable, whatever status the vendor uses."""
        return False

    @abstractmethod
    def streams(self) -> list[str]:
        """The stream ids this secret gives access to (e.g. one per workspace or log class)."""

    @abstractmethod
    def fetch_page(self, stream: str, window: Window, cursor: Any | None) -> Page:
        """One page of `window`; raises CursorExpired when the vendor rejects `cursor`."""

    @abstractmethod
    def event_id(self, event: dict[str, Any]) -> str:
        """The vendor's unique id of the event, as a string."""

    @abstractmethod
    def event_time(self, event: dict[str, Any]) -> datetime:
        """When the event happened, UTC."""

    @abstractmethod
    def normalise(self, event: dict[str, Any], stream: str) -> Normalised:
        """The cross-vendor columns of the event, fetched from `stream`."""
