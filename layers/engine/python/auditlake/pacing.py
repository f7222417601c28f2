"""Proactive pacing of one token's requests: a long backfill runs just under the vendor's limit instead of bouncing
off it.

- Requests are spaced evenly at `TARGET_SHARE` of the limit per minute. Even spacing satisfies a limit however
  the vendor evaluates it (a sliding minute, a fixed minute, or finer, as Asana says it does), where bursts would
  not. The 5% margin absorbs what the collector cannot see: network latency that bunches evenly sent requests
  on arrival, the first request of an invocation following the previous invocation's last, clocks that disagree
  on when a vendor's minute starts, and requests that a vendor counts and the collector does not (a rejected one).
- `X-RateLimit-Limit` replaces the believed limit (never above a configured ceiling: the token may be shared).
  `X-RateLimit-Remaining` and `X-RateLimit-Reset` spread what remains evenly until the reset, and at 0 the next
  request waits for the reset.
- A 429 lowers the allowance to what the vendor accepted in the trailing minute: the count of this run's requests
  in that minute is the vendor's limit as this token experiences it. It falls by half at most, since requests the
  pacer never saw (a previous invocation's, another integration's) may have filled the vendor's window, and once
  a minute at most, since until the vendor's window has rolled over more 429s are echoes of the same excess.
  With no limit known at all, a 429 before a whole minute of requests has been seen teaches nothing. A vendor
  that does not say when to retry (Make) is waited for until this run's own requests age out of its minute.
  After each `RECOVERY_SECONDS` without a 429 the allowance climbs back by `RECOVERY_STEP` of the limit, so a limit
  that was lowered for a while is used again.

Pure arithmetic on two clocks that the caller passes: a monotonic one for spacing and the epoch one that
`X-RateLimit-Reset` is read against. The caller does the waiting, so the deadline and the statistics stay its own.
Several threads may share a pacer (the slices of a window are read at once); the caller serialises the calls, and
each thread's clock runs from the end of its own last wait.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Mapping

TARGET_SHARE = 0.95
WINDOW_SECONDS = 60.0
DEEPEST_CUT = 0.5  # a 429 lowers the allowance to no less than this share of it
RECOVERY_SECONDS = 120.0
RECOVERY_STEP = 0.05
MIN_RESET_WAIT = 1.0  # a reset announced as past (clocks disagree) still waits this long when nothing remains
# A 429 after at least this share of the allowance in the trailing minute is this run's own excess; after fewer
# requests, the vendor's minute holds requests this run never saw (or the 429 is not about the rate at all).
OWN_EXCESS_SHARE = 0.1
CLOCK_MARGIN = 1.0  # seconds added to a moment computed on this clock and applied on the vendor's


class Pacer:
    def __init__(self, limit_per_minute: int | None, *, ceiling: int | None = None,
                 clock: Callable[[], float], epoch: Callable[[], float]) -> None:
        """`limit_per_minute`: the vendor's documented limit (None: unknown until a header or a 429 says);
        `ceiling`: a limit no header may raise (an operator's setting for a shared token or a lower plan);
        `clock`: monotonic seconds; `epoch`: Unix seconds, for `X-RateLimit-Reset`."""
        self._clock = clock
        self._epoch = epoch
        self.ceiling = ceiling
        self.limit = _capped(limit_per_minute, ceiling)  # what the vendor documents or announces
        self.allowance = self.limit  # what this run may use: the limit, or less after a 429
        self._next_at = float("-inf")  # the earliest moment of the next request
        self._waits = threading.local()  # the end of this thread's last wait
        self._sent: deque[float] = deque()  # this run's requests in the trailing minute
        self._first_sent_at: float | None = None
        self._calm_since: float | None = None  # the last 429 or recovery step, while below the limit
        self._cut_at: float | None = None  # the last 429 that lowered the allowance

    def now(self) -> float:
        """The monotonic clock, never earlier than the end of the last wait: a wait lasts at least what was asked,
        also under a replaced pause that does not move the clock."""
        return max(self._clock(), getattr(self._waits, "until", float("-inf")))

    @property
    def per_minute(self) -> float | None:
        """The pace requests are spaced at, per minute; None while no limit is known."""
        return None if self.allowance is None else self.allowance * TARGET_SHARE

    def delay(self) -> float:
        """Seconds to wait before the next request may go (0: now)."""
        now = self.now()
        self._recover(now)
        return max(0.0, self._next_at - now)

    def waiting(self, seconds: float) -> None:
        """A wait of `seconds` (for pacing or a retry) begins now."""
        self._waits.until = self.now() + seconds

    def sent(self) -> None:
        """A request goes now: the next one is due one interval later."""
        now = self.now()
        self._sent.append(now)
        while self._sent[0] <= now - WINDOW_SECONDS:
            self._sent.popleft()
        if self._first_sent_at is None:
            self._first_sent_at = now
        pace = self.per_minute
        self._next_at = now + WINDOW_SECONDS / pace if pace else now

    def observe(self, headers: Mapping[str, str]) -> None:
        """Learns from a response's `X-RateLimit-*` headers, if it has any."""
        announced = _positive_int(headers.get("X-RateLimit-Limit"))
        if announced is not None:
            limit = _capped(announced, self.ceiling)
            if self.allowance is None or self.limit is None or self.allowance >= self.limit:
                self.allowance = limit  # not lowered by a 429: follow the announced limit, up or down
            else:
                self.allowance = min(self.allowance, limit)
            self.limit = limit
        remaining = _non_negative_int(headers.get("X-RateLimit-Remaining"))
        reset_in = self._reset_in(headers.get("X-RateLimit-Reset"))
        if remaining is None or reset_in is None:
            return
        now = self.now()
        if remaining == 0:
            self._next_at = max(self._next_at, now + max(reset_in, MIN_RESET_WAIT))
        elif reset_in > 0:
            self._next_at = max(self._next_at, now + reset_in / remaining)

    def throttled(self, *, vendor_said_when: bool) -> None:
        """The vendor answered 429: lower the allowance to what it accepted in the trailing minute. When it did not
        say when to retry (no Retry-After, no reset), the next request waits for the vendor's minute to make room."""
        now = self.now()
        self._calm_since = now
        before = self.allowance
        if self._cut_at is None or now - self._cut_at >= WINDOW_SECONDS:
            self._cut(now)
        pace = self.per_minute
        if pace:
            self._next_at = max(self._next_at, now + WINDOW_SECONDS / pace)
        in_window = len(self._sent)
        if not vendor_said_when and before is not None and in_window >= max(2, OWN_EXCESS_SHARE * before):
            # This run's own requests filled the vendor's minute: room comes as they age out of it. Two must,
            # since the refused one may count too.
            self._next_at = max(self._next_at, self._sent[1] + WINDOW_SECONDS + CLOCK_MARGIN)

    def _cut(self, now: float) -> None:
        accepted = max(1, len(self._sent) - 1)  # this run's requests in the minute, the refused one aside
        if self.allowance is None:
            whole_minute_seen = self._first_sent_at is not None and now - self._first_sent_at >= WINDOW_SECONDS
            if whole_minute_seen:
                self.allowance = accepted
                self._cut_at = now
            return  # before that, nothing is known: the vendor's Retry-After or the backoff decides the wait
        self.allowance = min(self.allowance, max(accepted, round(self.allowance * DEEPEST_CUT)))
        self._cut_at = now

    def _recover(self, now: float) -> None:
        if self._calm_since is None or self.allowance is None or now - self._calm_since < RECOVERY_SECONDS:
            return
        if self.limit is None:
            # No limit was documented or announced: climb from what was learnt, until a 429 says otherwise.
            self.allowance = max(self.allowance + 1, round(self.allowance * (1 + RECOVERY_STEP)))
            self._calm_since = now
            return
        self.allowance = min(self.limit, self.allowance + max(1, round(self.limit * RECOVERY_STEP)))
        self._calm_since = None if self.allowance >= self.limit else now

    def _reset_in(self, value: str | None) -> float | None:
        """Seconds until `X-RateLimit-Reset`: epoch seconds (ClickUp documents that); a small number can only be
        a delta in seconds."""
        try:
            reset = float(value) if value is not None else None
        except ValueError:
            return None
        if reset is None:
            return None
        return reset - self._epoch() if reset > 1e9 else reset


def _capped(limit: int | None, ceiling: int | None) -> int | None:
    if limit is None:
        return ceiling
    return limit if ceiling is None else min(limit, ceiling)


def _positive_int(value: str | None) -> int | None:
    number = _non_negative_int(value)
    return number if number else None


def _non_negative_int(value: str | None) -> int | None:
    try:
        number = int(str(value).strip()) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and number >= 0 else None
