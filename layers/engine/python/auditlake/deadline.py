"""The Lambda deadline, seen as 'how many seconds may I still spend before I must flush and commit'."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta


class Deadline:
    def __init__(self, remaining_ms: Callable[[], int], margin: timedelta) -> None:
        self._remaining_ms = remaining_ms
        self.margin = margin.total_seconds()

    def remaining(self) -> float:
        """Seconds left of the invocation."""
        return self._remaining_ms() / 1000

    def spendable(self) -> float:
        """Seconds that may still go to fetching: what is left minus the margin kept for flush and commit."""
        return self.remaining() - self.margin

    def near(self) -> bool:
        return self.spendable() <= 0

    def share(self, parts: int) -> Deadline:
        """The deadline of one of `parts` tasks that share what is left: it is near once this task has spent its
        even share. A task that needs less leaves the rest to the ones after it."""
        budget = max(0.0, self.spendable()) / max(1, parts)
        # The parent's spendable seconds when this share is used up; never below zero, so a share never reports
        # more time left than the invocation has (the lease is sized from it).
        ends_at = max(0.0, self.spendable() - budget)
        return Deadline(lambda: int((self.remaining() - ends_at) * 1000), timedelta(seconds=self.margin))
