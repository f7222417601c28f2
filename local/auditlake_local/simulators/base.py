"""Vendor-independent plumbing for the vendor simulators.

A simulator is a plain object: `handle(SimRequest) -> SimResponse`. Two transports put it in front of a client:

- `SimulatorAdapter`, mounted on a `requests.Session`, for tests: in-process, no sockets, and network faults
  surface as the exact `requests` exceptions a real client would see.
- `serve()`, a `ThreadingHTTPServer` on loopback, for the demo: real HTTP, so any client works unchanged.

A `FaultPlan` decides, per request and deterministically, whether the request meets a fault instead of (or, for a
truncated body, on top of) the vendor's behaviour. Vendor subclasses produce the vendor-shaped error bodies.
"""

from __future__ import annotations

import contextlib
import enum
import gc
import io
import json
import math
import socket
import struct
import sys
import threading
import time
import traceback
from abc import ABC, abstractmethod
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from random import Random
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers
from urllib3 import HTTPResponse

JSON_CONTENT_TYPE = "application/json; charset=UTF-8"


def utc_now() -> datetime:
    """A simulator's default clock; tests pass their own."""
    return datetime.now(UTC)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Building a million small dicts makes the cyclic GC rescan them over and over; nothing a generator builds
    forms a cycle, so collection can wait until the end."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass(frozen=True)
class Latency:
    """How long the vendor takes to answer a request: `fixed` seconds, give or take up to `jitter` (uniformly), as
    a real API across the internet does (100 to 500 ms) where loopback answers in microseconds."""

    fixed: float = 0.0
    jitter: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Latency:
        """`250` or `250+-100` (milliseconds)."""
        fixed, _, jitter = text.replace("±", "+-").partition("+-")
        try:
            latency = cls(float(fixed) / 1000, float(jitter or 0) / 1000)
        except ValueError:
            raise ValueError(f"a latency is milliseconds, with an optional jitter: 250 or 250+-100, not {text!r}") \
                from None
        if latency.fixed < 0 or latency.jitter < 0 or latency.jitter > latency.fixed:
            raise ValueError(f"a latency and its jitter are at least 0, the jitter at most the latency: {text!r}")
        return latency

    def draw(self, rng: Random) -> float:
        return self.fixed + rng.uniform(-self.jitter, self.jitter) if self.jitter else self.fixed

    def __str__(self) -> str:
        return f"{self.fixed * 1000:g} ms" + (f" ± {self.jitter * 1000:g}" if self.jitter else "")


class SlidingMinuteLimit:
    """A per-minute request limit over a sliding window. Rejected requests count too (Asana says so; the others
    are silent), so a client that ignores the wait stays throttled."""

    def __init__(self) -> None:
        self._times: deque[float] = deque()

    def over(self, now: float, per_minute: int) -> int | None:
        """Counts a request at `now` (epoch seconds); None when it fits, else the seconds until one would."""
        while self._times and self._times[0] <= now - 60.0:
            self._times.popleft()
        self._times.append(now)
        if len(self._times) <= per_minute:
            return None
        # Wait until enough requests have aged out of the window for one more to fit.
        frees_up_at = self._times[len(self._times) - per_minute] + 60.0
        return max(1, math.ceil(frees_up_at - now))


class Fault(enum.Enum):
    """What can go wrong between a collector and a vendor, as the collector experiences it."""

    RATE_LIMITED = "rate_limited"  # the vendor's own 429, with its headers and body
    SERVER_ERROR = "server_error"  # 500 in the vendor's error envelope
    UNAVAILABLE = "unavailable"  # 503 from the edge in front of the API (not necessarily JSON)
    TIMEOUT = "timeout"  # no answer in time: requests raises ReadTimeout
    CONNECTION_RESET = "connection_reset"  # the connection dies: requests raises ConnectionError
    TRUNCATED_BODY = "truncated_body"  # the request WAS served, but only half the body arrives


NETWORK_FAULTS = frozenset({Fault.TIMEOUT, Fault.CONNECTION_RESET})


@dataclass(frozen=True)
class SimRequest:
    """One HTTP request as a simulator sees it. Header names are lower-case."""

    method: str
    url: str
    path: str
    query: dict[str, list[str]]
    headers: Mapping[str, str]
    body: bytes = b""

    @classmethod
    def build(cls, method: str, url: str, headers: Mapping[str, str] | None = None, body: bytes = b"") -> SimRequest:
        parts = urlsplit(url)
        return cls(method=method.upper(), url=url, path=parts.path or "/",
                   query=parse_qs(parts.query, keep_blank_values=True),
                   headers={name.lower(): value for name, value in (headers or {}).items()}, body=body)

    @property
    def origin(self) -> str:
        """`scheme://host[:port]` the client used, so links a simulator returns lead back to it."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    def param(self, name: str) -> str | None:
        """The first value of a query parameter, as most APIs read repeated parameters."""
        values = self.query.get(name)
        return values[0] if values else None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class SimResponse:
    """One HTTP response. Content-Length is always computed by the transport from `body`."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @classmethod
    def of_json(cls, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> SimResponse:
        return cls(status, {"Content-Type": JSON_CONTENT_TYPE, **(headers or {})},
                   json.dumps(payload, separators=(",", ":")).encode())

    @property
    def reason(self) -> str:
        try:
            return HTTPStatus(self.status).phrase
        except ValueError:
            return ""

    def json(self) -> Any:
        return json.loads(self.body)

    def truncated(self) -> SimResponse:
        """The same response with only the first half of its body, consistently framed (Content-Length = what is
        sent), so the client reads a complete HTTP message whose body does not parse."""
        return SimResponse(self.status, dict(self.headers), self.body[: len(self.body) // 2])


@dataclass(frozen=True)
class RequestRecord:
    """What the simulator logs per request. Headers are never logged: they carry the token."""

    number: int  # 1-based, counts every request the simulator received
    method: str
    path: str
    params: dict[str, list[str]]
    status: int | None  # None when the client got no HTTP response (timeout, reset)
    fault: Fault | None


class SimulatedNetworkError(Exception):
    """Raised by `VendorSimulator.handle` when the request gets no HTTP response; transports translate it."""

    def __init__(self, fault: Fault) -> None:
        super().__init__(fault.value)
        self.fault = fault


class FaultPlan:
    """Which requests meet which fault. Deterministic: request numbers and seeds fully decide it.

    Request numbers are 1-based and count every request the plan's simulator received, faulted or not.
    A scheduled fault (`at`, `next`) wins over a random one.
    """

    def __init__(self) -> None:
        self.requests_seen = 0
        self.injected: Counter[Fault] = Counter()
        self.history: list[tuple[int, Fault]] = []
        self._scheduled: dict[int, Fault] = {}
        self._random: tuple[float, tuple[Fault, ...], Random] | None = None
        self._random_budget: int | None = None
        self._lock = threading.Lock()

    def at(self, request_number: int, fault: Fault) -> FaultPlan:
        """Fault the request with this number."""
        with self._lock:
            if request_number <= self.requests_seen:
                raise ValueError(f"request {request_number} was already received ({self.requests_seen} so far)")
            if request_number in self._scheduled:
                raise ValueError(f"request {request_number} already has {self._scheduled[request_number]}")
            self._scheduled[request_number] = fault
        return self

    def next(self, fault: Fault, times: int = 1) -> FaultPlan:
        """Fault the next `times` requests that have no fault scheduled yet."""
        with self._lock:
            number = self.requests_seen
            for _ in range(times):
                number += 1
                while number in self._scheduled:
                    number += 1
                self._scheduled[number] = fault
        return self

    def random(self, rate: float, faults: Sequence[Fault], seed: int, *, max_faults: int | None = None) -> FaultPlan:
        """Chaos: each request without a scheduled fault meets one of `faults` with probability `rate`.

        `max_faults` bounds the total, so a chaos run still ends in a finite number of retries.
        """
        if not 0.0 <= rate <= 1.0 or not faults:
            raise ValueError("rate must be within [0, 1] and faults non-empty")
        with self._lock:
            self._random = (rate, tuple(faults), Random(seed))
            self._random_budget = max_faults
        return self

    def clear(self) -> FaultPlan:
        """Drop every fault not yet injected (the record of injected ones stays)."""
        with self._lock:
            self._scheduled.clear()
            self._random = None
        return self

    @property
    def pending(self) -> dict[int, Fault]:
        with self._lock:
            return dict(self._scheduled)

    def draw(self) -> tuple[int, Fault | None]:
        """Called once per received request: its number and its fault, if any."""
        with self._lock:
            self.requests_seen += 1
            number = self.requests_seen
            fault = self._scheduled.pop(number, None)
            if fault is None and self._random is not None and self._random_budget != 0:
                rate, faults, rng = self._random
                if rng.random() < rate:
                    fault = rng.choice(faults)
                    if self._random_budget is not None:
                        self._random_budget -= 1
            if fault is not None:
                self.injected[fault] += 1
                self.history.append((number, fault))
            return number, fault


class VendorSimulator(ABC):
    """A vendor's API: `handle()` applies the fault plan, then the vendor's own `route()`.

    Faults replace the vendor's logic (the request never reaches it), except TRUNCATED_BODY, which runs the
    logic and cuts the body: the request was served, whatever state that implies is already changed.
    Thread-safe: the loopback server calls `handle()` from several threads.
    """

    vendor: ClassVar[str] = "vendor"
    # Vendor counters that `stats()` reports even while still zero, so dashboards and asserts see every key.
    stat_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, faults: FaultPlan | None = None,
                 on_request: Callable[[RequestRecord], None] | None = None, fault_retry_after: int = 1) -> None:
        self.faults = faults if faults is not None else FaultPlan()
        # Called after every request (outside the lock), e.g. to advance a fake Lambda clock per request.
        self.on_request = on_request
        self.fault_retry_after = fault_retry_after  # the Retry-After an injected RATE_LIMITED asks for
        self.requests_log: list[RequestRecord] = []
        self.counters: Counter[str] = Counter()
        self._lock = threading.RLock()
        # Requests the vendor serves at once for one token (None: no such limit); the loopback server counts them
        # from arrival to answer, the vendor's latency included.
        self.max_concurrent_requests: int | None = None
        self._in_flight = 0

    @abstractmethod
    def route(self, request: SimRequest) -> SimResponse:
        """The vendor's behaviour for one request."""

    # --- the test hooks every vendor simulator offers, so scenarios run the same against each vendor ---------------

    @abstractmethod
    def add_events(self, events: Iterable[dict[str, Any]], *, published: bool = True) -> None:
        """Captures events, as the vendor would serve them. Unpublished ones stay invisible until
        `publish_pending()`: an event the vendor makes visible only after its own timestamp (a late event)."""

    @abstractmethod
    def publish_pending(self) -> int:
        """Makes every late event visible; returns how many."""

    @abstractmethod
    def expire_cursors(self) -> None:
        """Every paging cursor issued so far is rejected from now on, the way the vendor rejects expired ones.
        A vendor whose paging has no expiring cursor (timestamps, offsets) documents that this does nothing."""

    @abstractmethod
    def ground_truth(self) -> dict[str, dict[str, Any]]:
        """Every event a client can retrieve right now, each exactly as served, keyed by a simulator-unique id."""

    @abstractmethod
    def rate_limited_response(self, retry_after: int) -> SimResponse:
        """The vendor's 429, headers and body as the vendor sends them."""

    @abstractmethod
    def server_error_response(self) -> SimResponse:
        """The vendor's 500, in its error envelope."""

    def unavailable_response(self) -> SimResponse:
        """A 503 from the load balancer in front of the API: plain text, so collectors must not assume JSON."""
        return SimResponse(503, {"Content-Type": "text/plain; charset=utf-8"}, b"503 Service Unavailable")

    def handle(self, request: SimRequest) -> SimResponse:
        """Serves one request; raises SimulatedNetworkError when the client must get no HTTP response."""
        with self._lock:
            number, fault = self.faults.draw()
            response: SimResponse | None = None
            if fault is Fault.RATE_LIMITED:
                response = self.rate_limited_response(self.fault_retry_after)
            elif fault is Fault.SERVER_ERROR:
                response = self.server_error_response()
            elif fault is Fault.UNAVAILABLE:
                response = self.unavailable_response()
            elif fault not in NETWORK_FAULTS:
                response = self.route(request)
                if fault is Fault.TRUNCATED_BODY:
                    response = response.truncated()
            record = RequestRecord(number, request.method, request.path,
                                   {name: list(values) for name, values in request.query.items()},
                                   response.status if response is not None else None, fault)
            self.requests_log.append(record)
            self.counters["requests"] += 1
            if response is None:
                self.counters["network_errors"] += 1
            else:
                self.counters[f"responses_{response.status // 100}xx"] += 1
        if self.on_request is not None:
            self.on_request(record)
        if response is None:
            assert fault is not None
            raise SimulatedNetworkError(fault)
        return response

    @contextlib.contextmanager
    def in_flight(self) -> Iterator[bool]:
        """A request is in flight for the block; yields whether it is one more than the vendor serves at once."""
        with self._lock:
            self._in_flight += 1
            over = self.max_concurrent_requests is not None and self._in_flight > self.max_concurrent_requests
            self.counters["peak_in_flight"] = max(self.counters["peak_in_flight"], self._in_flight)
            if over:
                self.counters["over_concurrency"] += 1
        try:
            yield over
        finally:
            with self._lock:
                self._in_flight -= 1

    def stats(self) -> dict[str, int]:
        """Requests served, responses per status class, network errors, faults injected (total and per kind),
        and the vendor's own counters."""
        with self._lock:
            keys = ("requests", "responses_2xx", "responses_3xx", "responses_4xx", "responses_5xx",
                    "network_errors", *self.stat_keys)
            stats = {key: 0 for key in keys}
            stats.update(self.counters)
            stats["faults_injected"] = sum(self.faults.injected.values())
            for fault in Fault:
                stats[f"faults_{fault.value}"] = self.faults.injected[fault]
            return stats


# --- transport 1: a requests adapter ---------------------------------------------------------------------------


class SimulatorAdapter(BaseAdapter):
    """Serves a `requests.Session` from a simulator: `session.mount(base_url, SimulatorAdapter(sim))`.

    Mount it on the vendor's real base URL (e.g. `https://app.asana.com/`) and the collector runs unchanged.
    Redirects behave as in requests: the adapter returns the 3xx as is and the Session follows it or not,
    per `allow_redirects`.
    """

    def __init__(self, simulator: VendorSimulator) -> None:
        super().__init__()
        self.simulator = simulator

    def send(self, request: requests.PreparedRequest, stream: bool = False,
             timeout: float | tuple[float | None, float | None] | None = None, verify: bool | str = True,
             cert: str | tuple[str, str] | None = None, proxies: Mapping[str, str] | None = None) -> requests.Response:
        sim_request = SimRequest.build(request.method or "GET", request.url or "", dict(request.headers),
                                       _body_bytes(request.body))
        try:
            sim_response = self.simulator.handle(sim_request)
        except SimulatedNetworkError as exc:
            raise _network_exception(exc.fault, request, timeout) from None
        return self._build_response(request, sim_response, stream)

    def close(self) -> None:
        """Nothing to release: no sockets."""

    def _build_response(self, request: requests.PreparedRequest, sim: SimResponse, stream: bool) -> requests.Response:
        headers = {**sim.headers, "Content-Length": str(len(sim.body))}
        # A urllib3 response as `raw`, so streaming, `iter_content` and redirect handling work as with HTTPAdapter.
        raw = HTTPResponse(body=io.BytesIO(sim.body), headers=headers, status=sim.status, reason=sim.reason,
                           preload_content=False, decode_content=False)
        response = requests.Response()
        response.status_code = sim.status
        response.headers = CaseInsensitiveDict(headers)
        response.encoding = get_encoding_from_headers(response.headers)
        response.raw = raw
        response.reason = sim.reason
        response.url = request.url or ""
        response.request = request
        response.connection = self
        if not stream:
            _ = response.content  # read now, as requests does when not streaming
        return response


def _body_bytes(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    if hasattr(body, "read"):
        data = body.read()
        return data.encode() if isinstance(data, str) else data
    return b"".join(chunk.encode() if isinstance(chunk, str) else chunk for chunk in body)


def _network_exception(fault: Fault, request: requests.PreparedRequest,
                       timeout: float | tuple[float | None, float | None] | None) -> requests.RequestException:
    host = urlsplit(request.url or "").netloc
    if fault is Fault.TIMEOUT:
        read_timeout = timeout[1] if isinstance(timeout, tuple) else timeout
        return requests.exceptions.ReadTimeout(
            f"{host}: Read timed out. (read timeout={read_timeout}) [simulated]", request=request)
    reset = ConnectionResetError(104, "Connection reset by peer [simulated]")
    return requests.exceptions.ConnectionError(f"('Connection aborted.', {reset!r})", request=request)


# --- transport 2: a loopback HTTP server -----------------------------------------------------------------------


class _SimulatorHandler(BaseHTTPRequestHandler):
    """Bridges http.server to a simulator. Network faults on a real socket:

    - TIMEOUT: the connection is closed without any response. Clients see a ConnectionError
      ("Remote end closed connection without response"), not a ReadTimeout: producing a real read timeout would
      mean sleeping past the client's timeout, which would make the demo slow for no gain in fidelity.
    - CONNECTION_RESET: the socket is closed with SO_LINGER 0, so the kernel sends RST: "Connection reset by peer".
    """

    simulator: ClassVar[VendorSimulator]
    latency: ClassVar[Latency | None] = None
    jitter: ClassVar[Random] = Random(0)
    protocol_version = "HTTP/1.1"  # keep-alive, as real APIs; every response carries Content-Length
    # Headers and body go out in two writes: with Nagle's algorithm the body waits for the client's delayed ACK
    # (40 ms a response on Linux), which would make the simulator, not the collector, the bottleneck.
    disable_nagle_algorithm = True
    server_version = "auditlake-simulator"

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def log_message(self, fmt: str, *args: Any) -> None:
        """Silent: the simulator keeps its own request log."""

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        host = self.headers.get("Host") or f"{self.server.server_address[0]}:{self.server.server_address[1]}"
        request = SimRequest.build(self.command, f"http://{host}{self.path}", dict(self.headers.items()), body)
        try:
            with self.simulator.in_flight() as over:
                # Over the vendor's concurrency limit, the vendor's own 429 (Asana documents one for it).
                response = self.simulator.rate_limited_response(1) if over else self.simulator.handle(request)
                if self.latency is not None:
                    time.sleep(self.latency.draw(self.jitter))  # the answer takes the vendor's time to arrive
        except SimulatedNetworkError as exc:
            self.close_connection = True
            if exc.fault is Fault.CONNECTION_RESET:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
            return
        except Exception:  # a simulator bug must be visible, not a hung client
            traceback.print_exc(file=sys.stderr)
            response = SimResponse(500, {"Content-Type": "text/plain"}, b"simulator error (see its stderr)")
        self.send_response(response.status, response.reason)
        for name, value in response.headers.items():
            if name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        self.wfile.write(response.body)


@contextlib.contextmanager
def serve(simulator: VendorSimulator, host: str = "127.0.0.1", latency: Latency | None = None) -> Iterator[str]:
    """Runs the simulator on loopback (a free port) in a daemon thread; yields its base URL `http://host:port`. With
    `latency`, every answer takes that long, each request on a thread of its own as a real API serves them."""
    handler = type(f"{type(simulator).__name__}Handler", (_SimulatorHandler,),
                   {"simulator": simulator, "latency": latency, "jitter": Random(0)})
    server = ThreadingHTTPServer((host, 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name=f"{simulator.vendor}-simulator", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

