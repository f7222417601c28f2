"""The sample events in events/ are what the collectors accept: a schedule tick, a backfill request, and the
reconciliation schedule's tick."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from auditlake.errors import ConfigError
from auditlake.lambda_handler import backfill_since, reconcile_request
from auditlake.reconcile import Reconciliation
from auditlake.settings import Settings
from auditlake_local.template import PROJECT_ROOT


def sample(name: str) -> object:
    return json.loads((PROJECT_ROOT / "events" / name).read_text())


def test_the_schedule_tick_asks_for_new_events_only() -> None:
    assert backfill_since(sample("schedule.json")) is None


def test_the_backfill_sample_asks_for_history_from_its_date() -> None:
    assert backfill_since(sample("backfill.json")) == datetime(2026, 1, 1, tzinfo=UTC)


def test_the_reconcile_sample_is_the_schedules_own_tick() -> None:
    settings = Settings(state_table="t", archive_bucket="b", kms_key_arn="k", secret_id="s",
                        digest_signing_key_arn="d")
    request = reconcile_request(sample("reconcile.json"), settings)
    assert request == Reconciliation(span=timedelta(days=7), every=timedelta(hours=24), since=None)
    assert backfill_since(sample("reconcile.json")) is None
    assert reconcile_request(sample("schedule.json"), settings) is None
    by_hand = reconcile_request({"reconcile": {"since": "2026-11-20"}}, settings)
    assert by_hand is not None and by_hand.since == datetime(2026, 11, 20, tzinfo=UTC)
    with pytest.raises(ConfigError, match="YYYY-MM-DD"):
        reconcile_request({"reconcile": {"since": "last week"}}, settings)
