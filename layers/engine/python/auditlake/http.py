"""The one HTTP client every vendor adapter uses.

Proactive pacing just under the vendor's rate limit (pacing.py), time-outs, bounded retries with full-jitter
backoff, `Retry-After` / `X-RateLimit-Reset`, and errors that carry the vendor's status, code and message. The token
never appears in an error: messages are built from the vendor's body with every secret value redacted, and redirects
are never followed (a redirect could carry the `Authorization` header to another host).
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import DecodeError, ProtocolError, ReadTimeoutError, SSLError

from auditlake import timeutil
from auditlake.deadline import Deadline
from auditlake.errors import AuditLogsUnavailable, DeadlineReached, MalformedResponse, VendorError
from auditlake.pacing import Pacer

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 30.0
MAX_ERROR_TEXT = 300
# Connections kept open per host, where the default keeps 10: slices read at once (slicing.py) have as many requests
# in flight as the pace times the vendor's latency (ClickUp's 10,000 a minute at 0.35 s: about 60).
POOL_SIZE = 64

ErrorDetails = Callable[[int, Any], tuple[str | None, str]]

_session: requests.Session | None = None
# Looked up at each wait, so tests and the benchmark can run on virtual time.
pause: Callable[[float], None] = time.sleep
monotonic: Callable[[], float] = time.monotonic


def _monotonic() -> float:
    return monotonic()  # the module's, looked up now: it may have been replaced


def _epoch() -> float:
    return timeutil.now().timestamp()  # the engine's one clock, which X-RateLimit-Reset is read against


def shared_session() -> requests.Session:
    """One connection pool per Lambda container, reused across invocations."""
    global _session
    if _session is None:
        _session = _Session()
    return _session


class _Session(requests.Session):
    """A requests.Session that does per host what requests does per request, where the answer cannot change.

    requests reads the environment at every request: the proxies for the URL (HTTPS_PROXY, NO_PROXY …, every
    variable scanned) and the CA bundle (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE). A Lambda's environment is fixed for
    the container's life, so the result is kept per scheme and host: the same settings, read once. And a body is
    read in one piece rather than in 10 KB chunks (see _WholeBodyAdapter)."""

    def __init__(self) -> None:
        super().__init__()
        self._environment: dict[tuple[str, str, Any], dict[str, Any]] = {}
        adapter = _WholeBodyAdapter(pool_maxsize=POOL_SIZE)
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
        if proxies or verify is not None or cert is not None:  # settings passed per request: as requests does
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc, stream)
        if key not in self._environment:
            self._environment[key] = super().merge_environment_settings(url, {}, stream, None, None)
        settings = self._environment[key]
        return {**settings, "proxies": dict(settings["proxies"])}  # a copy: the caller's to change


class _WholeBodyAdapter(HTTPAdapter):
    """Reads a response's body in one read. Session.send reads it through Response.content, 10 KB at a time, each
    chunk a round through urllib3's streaming and decoding. (With the environment kept per host: about 120 µs less
    CPU per request, of 1,200, measured on loopback.) Errors are translated as Response.content translates them."""

    def send(self, request: Any, stream: bool = False, **kwargs: Any) -> requests.Response:
        response = super().send(request, stream=stream, **kwargs)
        if not stream:
            try:
                body = response.raw.read(decode_content=True)
            except ProtocolError as exc:
                raise requests.exceptions.ChunkedEncodingError(exc) from exc
            except DecodeError as exc:
                raise requests.exceptions.ContentDecodingError(exc) from exc
            except ReadTimeoutError as exc:
                raise requests.ConnectionError(exc) from exc
            except SSLError as exc:
                raise requests.exceptions.SSLError(exc) from exc
            # What Response.content stores once it has read the body, so Session.send finds it read.
            response._content = body or b""
            response._content_consumed = True
        return response


@dataclass
class HttpStats:
    requests: int = 0
    retries: int = 0
    throttles: int = 0
    retry_reasons: dict[str, int] = field(default_factory=dict)
    pacing_waits: int = 0  # waits before a request, to stay under the vendor's rate limit
    pacing_seconds: float = 0.0
    retry_seconds: float = 0.0  # waits before a retry


class HttpClient:
    def __init__(self, vendor: str, base_url: str, *, headers: dict[str, str], error_details: ErrorDetails,
                 deadline: Deadline, timeout: float = 30.0, max_attempts: int = 5,
                 secrets: Iterable[str] = (), session: requests.Session | None = None,
                 rate_limit_per_minute: int | None = None, rate_limit_ceiling: int | None = None,
                 lacks_audit_logs: Callable[[int, str | None], bool] | None = None,
                 audit_log_requirement: str = "") -> None:
        """`rate_limit_per_minute`: the vendor's documented limit for this token, which pacing starts from;
        `rate_limit_ceiling`: a limit the vendor's own headers may not raise (the operator's setting);
        `lacks_audit_logs`: whether an error (status, code) says the account cannot read audit logs, which then
        raises AuditLogsUnavailable naming `audit_log_requirement`."""
        self.vendor = vendor
        self.base_url = base_url.rstrip("/")
        self.headers = {"Accept": "application/json", "User-Agent": "auditlake", **headers}
        self.error_details = error_details
        self.lacks_audit_logs = lacks_audit_logs or (lambda _status, _code: False)
        self.audit_log_requirement = audit_log_requirement
        self.deadline = deadline
        self.timeout = timeout
        self.max_attempts = max_attempts
        self._secrets = [s for s in secrets if s]
        self.session = session or shared_session()
        self.stats = HttpStats()
        self._lock = threading.Lock()  # the pacer and the statistics, shared by the threads reading slices
        self.pacer = Pacer(rate_limit_per_minute, ceiling=rate_limit_ceiling, clock=_monotonic,
                           epoch=_epoch)

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, json_body=body)

    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                json_body: Any | None = None) -> Any:
        """Sends the request and returns the parsed JSON body, retrying what is worth retrying."""
        url = self.base_url + path
        for attempt in range(1, self.max_attempts + 1):
            self._pace(method, path)
            wait: float | None = None
            try:
                response = self.session.request(method, url, params=params, json=json_body, headers=self.headers,
                                                timeout=self.timeout, allow_redirects=False)
            except (requests.Timeout, requests.ConnectionError) as exc:
                failure = VendorError(self.vendor, f"{type(exc).__name__} calling {method} {path}", retryable=True)
                self._count_retry(type(exc).__name__)
            else:
                with self._lock:
                    self.pacer.observe(response.headers)
                outcome = self._interpret(response, method, path)
                if not isinstance(outcome, VendorError):
                    return outcome
                failure = outcome
                if not failure.retryable:
                    raise failure
                wait = retry_after_seconds(response)
                if response.status_code == 429:
                    with self._lock:
                        self.stats.throttles += 1
                        self.pacer.throttled(vendor_said_when=wait is not None)
                self._count_retry(str(response.status_code) if failure.status else "unreadable_body")
            if attempt == self.max_attempts:
                raise VendorError(self.vendor, f"gave up after {attempt} attempts; last error: {failure.message}",
                                  status=failure.status, code=failure.code, retryable=True)
            delay = wait if wait is not None else random.uniform(0, min(BACKOFF_CAP_SECONDS,
                                                                          BACKOFF_BASE_SECONDS * 2 ** attempt))
            with self._lock:
                self._wait_begins(delay, f"waiting {delay:.0f}s to retry ({failure.message}) would pass the deadline")
                self.stats.retries += 1
                self.stats.retry_seconds += delay
            pause(delay)
        raise AssertionError("unreachable")

    def _pace(self, method: str, path: str) -> None:
        """Takes the next request's slot under the vendor's rate limit and waits for it; a wait that would pass the
        deadline stops the run instead, as a retry's wait does. Several threads may share the client: each takes
        its own slot under the lock, then waits outside it."""
        with self._lock:
            delay = self.pacer.delay()
            if delay > 0:
                self._wait_begins(delay, f"{method} {path} would wait {delay:.1f}s for the vendor's rate limit, past "
                                         "the deadline")
                self.stats.pacing_waits += 1
                self.stats.pacing_seconds += delay
            self.stats.requests += 1
            self.pacer.sent()
        if delay > 0:
            pause(delay)

    def _wait_begins(self, delay: float, too_long: str) -> None:
        """A wait of `delay` seconds begins, unless it would pass the deadline: then the run stops, saying
        `too_long`."""
        if delay > self.deadline.spendable():
            raise DeadlineReached(f"{self.vendor}: {too_long}")
        self.pacer.waiting(delay)

    def _interpret(self, response: requests.Response, method: str, path: str) -> Any:
        """The parsed body of a success, or the VendorError that describes the failure."""
        status = response.status_code
        if 300 <= status < 400:
            return VendorError(self.vendor, f"{method} {path} answered with a redirect, which is not followed "
                                            "(credentials stay with the configured host)", status=status)
        body = _parse_body(response)
        if status >= 400:
            code, message = self.error_details(status, body.text if isinstance(body, _Unparsed) else body)
            if self.lacks_audit_logs(status, code):
                return AuditLogsUnavailable(self.vendor, self.redact(message) or response.reason or "error",
                                            requirement=self.audit_log_requirement, status=status,
                                            code=self.redact(code) if code else None)
            return VendorError(self.vendor, self.redact(message) or response.reason or "error", status=status,
                               code=self.redact(code) if code else None, retryable=status in RETRYABLE_STATUS)
        if isinstance(body, _Unparsed):
            # A 2xx whose body is not JSON: a truncated or empty transfer is worth retrying; an HTML page is not the
            # API, and bytes that are not UTF-8 would come back the same (JSON between systems is UTF-8).
            retryable = False
            if body.invalid_utf8_at is not None:
                kind = f"invalid UTF-8 (at byte {body.invalid_utf8_at})"
            elif not body.text.strip():
                kind, retryable = "an empty body", True
            elif body.text.lstrip().startswith("<"):
                kind = "an HTML page instead of JSON"
            else:
                kind, retryable = "truncated or invalid JSON", True
            error = MalformedResponse(self.vendor, f"{method} {path} returned {kind}: "
                                                   f"{self.redact(body.text[:80])!r}", status=status)
            error.retryable = retryable
            return error
        return body

    def redact(self, text: str | None) -> str:
        text = (text or "")[:MAX_ERROR_TEXT]
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        return text

    def _count_retry(self, reason: str) -> None:
        with self._lock:
            self.stats.retry_reasons[reason] = self.stats.retry_reasons.get(reason, 0) + 1


@dataclass(frozen=True)
class _Unparsed:
    text: str
    invalid_utf8_at: int | None = None  # the offset of the first byte that is not UTF-8


def _parse_body(response: requests.Response) -> Any:
    """The JSON body, decoded as strict UTF-8: requests would decode by the declared charset with replacement
    characters, silently altering the vendor's events."""
    content = response.content
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return _Unparsed(content.decode("utf-8", errors="replace"), invalid_utf8_at=exc.start)
    try:
        return json.loads(text)
    except ValueError:
        return _Unparsed(text)


def retry_after_seconds(response: requests.Response, now: Callable[[], float] | None = None) -> float | None:
    """The wait the vendor asks for: `Retry-After` (seconds or HTTP date), or on a 429 `X-RateLimit-Reset` (epoch
    seconds). ClickUp sends X-RateLimit-Reset on every response: on a 5xx it only says when the rate-limit minute
    ends, not when the failure is over, so a 5xx without Retry-After backs off instead of waiting for it."""
    now = now or (lambda: timeutil.now().timestamp())  # the engine's one clock
    retry_after = response.headers.get("Retry-After")
    if retry_after:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            try:
                return max(0.0, parsedate_to_datetime(retry_after).timestamp() - now())
            except (TypeError, ValueError):
                pass
    reset = response.headers.get("X-RateLimit-Reset") if response.status_code == 429 else None
    if reset:
        try:
            value = float(reset)
        except ValueError:
            return None
        # ClickUp documents an epoch timestamp; a small number can only be a delta in seconds.
        return max(0.0, value - now()) if value > 1e9 else max(0.0, value)
    return None
