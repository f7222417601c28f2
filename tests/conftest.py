"""Fixtures: the stack of template.yaml on moto, a controllable clock, and vendor simulators wired in."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from auditlake import http, timeutil
from auditlake_local.simulators import AsanaSimulator, SimulatorAdapter
from auditlake_local.stack import LambdaContext, LocalStack

ASANA_TOKEN = "asana-sa-token-4f1d0c9e7b2a"
ASANA_WORKSPACE = "1200000000000001"
ASANA_BASE = "https://asana.test/api/1.0"
TICK = timedelta(minutes=5)


@dataclass
class Clock:
    """The engine's clock, movable: ticks are minutes apart and leases expire without waiting."""

    offset: timedelta = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, delta: timedelta = TICK) -> None:
        self.offset += delta


@dataclass
class Pauses:
    seconds: list[float] = field(default_factory=list)

    def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(timeutil, "now", clock.now)
    return clock


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> Pauses:
    """Retry waits are recorded, not slept."""
    recorded = Pauses()
    monkeypatch.setattr(http, "pause", recorded)
    return recorded


@pytest.fixture
def stack() -> Iterator[LocalStack]:
    with LocalStack.start() as local:
        yield local


@pytest.fixture
def asana(stack: LocalStack, clock: Clock, pauses: Pauses) -> Iterator[AsanaSimulator]:
    simulator = AsanaSimulator(token=ASANA_TOKEN, workspace_gid=ASANA_WORKSPACE, now=clock.now)
    session = http.shared_session()
    session.mount("https://asana.test/", SimulatorAdapter(simulator))
    stack.put_secret("AsanaCollector", {"token": ASANA_TOKEN, "workspace_gid": ASANA_WORKSPACE,
                                        "base_url": ASANA_BASE})
    yield simulator
    session.adapters.pop("https://asana.test/", None)


def context(stack: LocalStack, function_id: str, remaining_ms: Any = None) -> LambdaContext:
    return LambdaContext(function_name=function_id, timeout_seconds=stack.functions[function_id].timeout,
                         remaining_ms=remaining_ms)


@dataclass
class ArchiveCheck:
    events: int
    archived: int
    missing: int
    duplicates: int
    unexpected: int
    mismatched: int


def check_archive(stack: LocalStack, vendor: str, truth: dict[str, dict[str, Any]]) -> ArchiveCheck:
    """The whole archive of one vendor against the simulator's ground truth."""
    records = stack.archived_records(vendor)
    counts = Counter(r["event_id"] for r in records)
    mismatched = sum(1 for r in records if r["event_id"] in truth and json.loads(r["raw"]) != truth[r["event_id"]])
    return ArchiveCheck(
        events=len(truth),
        archived=len(records),
        missing=len(set(truth) - set(counts)),
        duplicates=sum(n - 1 for n in counts.values() if n > 1),
        unexpected=len(set(counts) - set(truth)),
        mismatched=mismatched,
    )


MATRIX: dict[str, ArchiveCheck] = {}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The exactly-once matrix, one line per scenario, after the test results."""
    if MATRIX:
        terminalreporter.section("exactly-once matrix (events / missing / duplicates)")
        for name, r in MATRIX.items():
            terminalreporter.write_line(f"{name:<34} {r.events:>6} {r.missing:>4} {r.duplicates:>4}")
