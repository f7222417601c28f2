"""The monthly cost model (local/auditlake_local/cost.py): its arithmetic on a case worked by hand, and that every
line item the README's table promises is there, priced, and dated."""

from __future__ import annotations

import re

import pytest

from auditlake_local import athena, cost
from auditlake_local.template import load_template

MONTH = 365 / 12  # days

SMALL = cost.Measured(
    events_per_tick=288, duration_s=2.0, s3_puts=2, s3_gets=0, s3_lists=0, event_bytes_per_event=1000,
    digest_bytes_per_tick=500, event_objects_per_tick=1, kms_signs=1, secrets_calls=1, dynamodb_wru=3,
    dynamodb_rru=0, log_bytes=650, custom_metrics_per_vendor=10, streams_per_vendor=1)
# One vendor ticking once a day (so a month has 365/12 ticks), no hourly checks, one saved query over 10 days.
ONE_A_DAY = cost.Deployment(vendors=1, events_per_day=288, schedule_minutes=1440, retention_days=365, memory_mb=1024,
                            kms_keys=2, alarms=3, dashboards=1, reconcile_checks_per_day=0, reconcile_span_days=7,
                            query_runs_per_month=1, query_days={"q": 10})


def _by_item(lines: list[cost.Line]) -> dict[str, float]:
    return {f"{line.service}: {line.item.split(' (')[0]}": line.usd for line in lines}


def test_a_small_case_worked_by_hand() -> None:
    ticks = MONTH  # one a day; the daily reconciliations are as many
    gets = MONTH * 7  # each reconciliation reads 7 days of one object a day
    expected = {
        "Lambda: requests": ticks * 0.20 / 1e6,
        "Lambda: duration": ticks * 2.0 * 1.0 * 0.0000133334,  # 2 s at 1 GB
        "S3: PUT": ticks * 2 * 0.005 / 1000,
        "S3: GET": gets * 0.0004 / 1000,
        "S3: LIST": MONTH * 7 * 0.005 / 1000,
        "S3: storage": (288 * 1000 + 500) * 365 / 1e9 * 0.023,  # a year of events and digests
        "KMS: keys": 2 * 1.00,
        "KMS: Sign": ticks * 0.15 / 10_000,
        "KMS: symmetric": (ticks * 2 + gets) * 0.03 / 10_000,
        "DynamoDB: write request units": ticks * 3 * 0.625 / 1e6,
        "DynamoDB: read request units": 0.0,
        "DynamoDB: storage": 4096 / 1e9 * 0.25,
        "Secrets Manager: secrets": 0.40,
        "Secrets Manager: GetSecretValue": ticks * 0.05 / 10_000,
        "CloudWatch: custom metrics": 10 * 0.30,
        "CloudWatch: alarms": 3 * 0.10,
        "CloudWatch: dashboard": 3.00,
        "CloudWatch: logs ingested": ticks * 1000 / 1e9 * 0.50,  # 650 B measured + 350 B of Lambda's lines
        "CloudWatch: logs stored": ticks * 1000 / 1e9 * 12 * 0.03,  # a year's worth kept: twelve months' ingestion
        "EventBridge Scheduler: invocations": ticks * 1.00 / 1e6,
        "Athena: 'q': 10 days, 1x a month": 10e6 / 1e12 * 5.00,  # 2.88 MB scanned, billed as the 10 MB minimum
    }
    lines = cost.estimate(SMALL, ONE_A_DAY)
    assert _by_item(lines) == pytest.approx(expected, rel=1e-9)
    assert cost.total(lines) == pytest.approx(sum(expected.values()), rel=1e-9)


def test_athena_is_billed_by_the_days_a_query_reads_above_the_minimum() -> None:
    deployment = cost.Deployment(query_days={"a year": 365}, query_runs_per_month=2)
    measured = SMALL
    [athena_line] = [line for line in cost.estimate(measured, deployment) if line.service == "Athena"]
    assert athena_line.quantity == pytest.approx(2 * 20_000 * 1000 * 365 / 1e12)  # TB: 7.3 GB a run, twice


def test_every_line_item_is_present_and_priced() -> None:
    lines = cost.estimate(SMALL, cost.Deployment())
    items = {f"{line.service}: {line.item}" for line in lines}
    for wanted in ("Lambda: requests", "Lambda: duration", "S3: PUT", "S3: GET", "S3: LIST", "S3: storage",
                   "KMS: keys", "KMS: Sign", "KMS: symmetric", "DynamoDB: write request units",
                   "DynamoDB: read request units", "DynamoDB: storage", "Secrets Manager: secrets",
                   "Secrets Manager: GetSecretValue", "CloudWatch: custom metrics", "CloudWatch: alarms",
                   "CloudWatch: dashboard", "CloudWatch: logs ingested", "CloudWatch: logs stored",
                   "EventBridge Scheduler: invocations"):
        assert any(item.startswith(wanted) for item in items), wanted
    # One Athena line per saved query in the template, each with its assumed range.
    athena_items = {line.item.split("'")[1] for line in lines if line.service == "Athena"}
    assert athena_items == {query.name for query in athena.saved_queries().values()}
    assert all(line.price in cost.PRICES and line.usd >= 0 for line in lines)
    report = cost.format_report(lines)
    assert cost.PRICE_DATE in report and "total" in report


def test_the_price_list_is_dated_and_sourced() -> None:
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", cost.PRICE_DATE)
    assert all(price.usd > 0 and price.source and price.unit for price in cost.PRICES.values())
    assert "not confirmed on AWS page" in cost.format_prices()  # the unconfirmed ones say so


def test_the_typical_deployment_counts_what_the_template_declares() -> None:
    template = load_template()
    kinds = [resource["Type"] for resource in template["Resources"].values()]
    deployment = cost.Deployment()
    assert deployment.alarms == kinds.count("AWS::CloudWatch::Alarm")
    assert deployment.kms_keys == kinds.count("AWS::KMS::Key")
    assert deployment.vendors == kinds.count("AWS::SecretsManager::Secret")
    assert deployment.memory_mb == template["Globals"]["Function"]["MemorySize"]


def test_a_benchmark_report_is_read_per_tick_and_per_event() -> None:
    row = {"vendor": "v", "ticks": 4, "streams": 2, "events": 40, "mean_ms": 100.0, "log_bytes": 4000,
           "custom_metrics": 11, "aws_calls": {"s3.PutObject": 8, "kms.Sign": 4, "secretsmanager.GetSecretValue": 4},
           "units": {"dynamodb_wru": 12, "dynamodb_rru": 2, "s3_put_bytes.events": 8000,
                     "s3_put_bytes.digests": 2000, "s3_puts.events": 4}}
    measured = cost.Measured.from_report({"live": [row]})
    assert (measured.events_per_tick, measured.duration_s, measured.s3_puts, measured.kms_signs) == (10, 0.1, 2, 1)
    assert (measured.event_bytes_per_event, measured.digest_bytes_per_tick, measured.event_objects_per_tick) == \
        (200, 500, 1)
    assert (measured.dynamodb_wru, measured.dynamodb_rru, measured.log_bytes) == (3, 0.5, 1000)
    assert measured.custom_metrics_per_vendor == 14  # eleven from the run, ReconciledEvents per vendor and per stream
