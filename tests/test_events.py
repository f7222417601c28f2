"""The sample events in events/ are what the collectors accept: a schedule tick, and a backfill request."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from auditlake.lambda_handler import backfill_since
from auditlake_local.template import PROJECT_ROOT


def sample(name: str) -> object:
    return json.loads((PROJECT_ROOT / "events" / name).read_text())


def test_the_schedule_tick_asks_for_new_events_only() -> None:
    assert backfill_since(sample("schedule.json")) is None


def test_the_backfill_sample_asks_for_history_from_its_date() -> None:
    assert backfill_since(sample("backfill.json")) == datetime(2026, 1, 1, tzinfo=UTC)
