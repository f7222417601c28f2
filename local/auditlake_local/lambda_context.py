"""What a handler reads from Lambda's context, without importing anything else (the benchmark's collector process
imports only this and the function itself, as Lambda would)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class LambdaContext:
    """The remaining time is wall-clock by default; tests pass a `remaining_ms` function to make the deadline
    arrive exactly where they want it."""

    function_name: str
    timeout_seconds: float = 280.0
    remaining_ms: Callable[[], int] | None = None
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = ""
    _started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        if self.remaining_ms is not None:
            return self.remaining_ms()
        return int((self.timeout_seconds - (time.monotonic() - self._started)) * 1000)
