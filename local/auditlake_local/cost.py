"""What a deployment costs a month, computed from what the benchmark measured (bench.py's live collection: every
AWS operation of a day of five-minute ticks, the DynamoDB request units, the bytes uploaded and logged, the custom
metrics published and each tick's duration) and a dated price list (PRICES).

`python -m auditlake_local.cost` prints the table for the typical deployment from the last benchmark's report
(.auditlake/bench.json), or, without one, from a quick measurement (two hours of ticks per vendor). `make bench`
prints it last.

Free tiers are not subtracted: the table is what the stack itself adds to a bill. Prices are us-east-1's.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# ---------------------------------------------------------------------------------------------------------- prices
# us-east-1, on-demand, in USD. Read on PRICE_DATE from the pages named; "confirmed" is False where the number was
# seen only in a third party's copy of AWS's table (or not at all), not on AWS's own page: check it there.
PRICE_DATE = "2026-12-02"


@dataclass(frozen=True)
class Price:
    usd: float
    unit: str
    source: str
    confirmed: bool


PRICES: dict[str, Price] = {
    "lambda_gb_s": Price(0.0000133334, "GB-second, arm64 (first 7.5 billion a month)",
                         "aws.amazon.com/lambda/pricing (Arm price tab; number as copied by cloudchipr.com/blog/"
                         "aws-lambda-pricing)", False),
    "lambda_request": Price(0.20 / 1e6, "request", "aws.amazon.com/lambda/pricing ($0.20 per 1M requests)", False),
    "s3_gb_month": Price(0.023, "GB-month, S3 Standard, first 50 TB", "aws.amazon.com/s3/pricing", False),
    "s3_put": Price(0.005 / 1000, "PUT, COPY, POST or LIST request, S3 Standard",
                    "aws.amazon.com/s3/pricing ($0.005 per 1,000; cloudkaramchari.com quotes the same)", False),
    "s3_get": Price(0.0004 / 1000, "GET request, S3 Standard", "aws.amazon.com/s3/pricing ($0.0004 per 1,000)",
                    False),
    "kms_key_month": Price(1.00, "customer managed key-month",
                           "aws.amazon.com/kms/pricing (\"Each AWS KMS key that you create in KMS costs $1/month\")",
                           True),
    "kms_symmetric": Price(0.03 / 10_000, "symmetric request",
                           "aws.amazon.com/kms/pricing ($0.03 per 10,000; wring.co/blog/aws-kms-pricing-guide)", False),
    "kms_sign": Price(0.15 / 10_000, "asymmetric request other than RSA 2048 (Sign with ECC_NIST_P256)",
                      "aws.amazon.com/kms/pricing ($0.15 per 10,000); factualminds.com: asymmetric at 5x the "
                      "symmetric rate", False),
    "dynamodb_wru": Price(0.625 / 1e6, "write request unit, on-demand",
                          "aws.amazon.com/dynamodb/pricing/on-demand (after the November 2024 cut; AWS News Blog "
                          "\"Amazon DynamoDB On-Demand\", updated 2025-01-31; airbyte.com quotes $0.625 per million)",
                          False),
    "dynamodb_rru": Price(0.125 / 1e6, "read request unit, on-demand", "as dynamodb_wru ($0.125 per million)",
                          False),
    "dynamodb_gb_month": Price(0.25, "GB-month, Standard table class", "aws.amazon.com/dynamodb/pricing/on-demand",
                               False),
    "secret_month": Price(0.40, "secret-month", "aws.amazon.com/secrets-manager/pricing ($0.40 per secret per "
                          "month; hivebook.wiki quotes the same)", False),
    "secrets_call": Price(0.05 / 10_000, "API call", "aws.amazon.com/secrets-manager/pricing ($0.05 per 10,000)",
                          False),
    "cw_metric_month": Price(0.30, "custom metric-month, first 10,000",
                             "aws.amazon.com/cloudwatch/pricing (signoz.io/guides/cloudwatch-pricing, 2026-02)", False),
    "cw_alarm_month": Price(0.10, "standard-resolution alarm metric-month", "aws.amazon.com/cloudwatch/pricing",
                            False),
    "cw_dashboard_month": Price(3.00, "dashboard-month (the first 3 in an account are free)",
                                "aws.amazon.com/cloudwatch/pricing (free tier: 3 dashboards; factualminds.com: "
                                "$3 each)", False),
    "logs_ingest_gb": Price(0.50, "GB of logs ingested, Standard class",
                            "aws.amazon.com/cloudwatch/pricing (factualminds.com: $0.50/GB)", False),
    "logs_gb_month": Price(0.03, "GB-month of logs stored", "aws.amazon.com/cloudwatch/pricing", False),
    "scheduler_invocation": Price(1.00 / 1e6, "EventBridge Scheduler invocation (14M a month free)",
                                  "aws.amazon.com/eventbridge/pricing (cloudburn.io/blog/amazon-eventbridge-pricing, "
                                  "2026-03: $1.00 per million, 14M free)", False),
    "athena_tb": Price(5.00, "TB scanned (10 MB minimum per query)",
                       "aws.amazon.com/athena/pricing ($5 per TB; the 10 MB minimum as restated in "
                       "github.com/KensioSoftware/rainlytics/issues/21)", False),
}
ATHENA_MINIMUM_BYTES = 10 * 10**6  # Athena bills at least 10 MB per query
PLATFORM_LOG_BYTES = 350  # Lambda's own START, END and REPORT lines per invocation (not measured: outside the code)
DAYS_PER_MONTH = 365 / 12
GB = 10**9  # AWS bills decimal gigabytes


# -------------------------------------------------------------------------------------------------------- deployment
@dataclass(frozen=True)
class Deployment:
    """What is priced: the typical deployment unless told otherwise. Each saved query's day range and monthly runs
    are assumptions (every saved query filters on `dt`, so its scan is the archive's bytes for the days asked)."""

    vendors: int = 4
    events_per_day: int = 20_000  # all vendors together
    schedule_minutes: int = 5
    retention_days: int = 365  # events, digests and (LogRetentionDays) logs
    memory_mb: int = 512  # the template's MemorySize
    kms_keys: int = 2  # ArchiveKey (symmetric) and the digest signing key (ECC_NIST_P256)
    alarms: int = 13  # the template's AWS::CloudWatch::Alarm resources
    dashboards: int = 1  # the stack's dashboard (issue 16)
    reconcile_checks_per_day: int = 24  # the hourly Reconcile schedule
    reconcile_span_days: int = 7  # each daily reconciliation re-reads this many days (Settings.reconcile_span)
    query_runs_per_month: int = 4
    query_days: dict[str, int] = field(default_factory=lambda: {
        "Failed logins": 30, "Admin, role and permission changes": 30,
        "API keys and tokens created or revoked": 30, "Users invited, deprovisioned or removed": 30,
        "Everything one person did": 365,  # an investigation reaches over the whole year kept
        "Events per vendor per day": 30,  # the completeness check over the last month
    })

    @property
    def ticks_per_month(self) -> float:
        return DAYS_PER_MONTH * 24 * 60 / self.schedule_minutes


# -------------------------------------------------------------------------------------------------------- measurement
@dataclass(frozen=True)
class Measured:
    """Per tick (one vendor's scheduled invocation) and per event, averaged over the vendors measured."""

    events_per_tick: float
    duration_s: float  # mean wall time of a tick (against loopback services: real AWS latency adds to it)
    s3_puts: float  # per tick, events and digests
    s3_gets: float
    s3_lists: float
    event_bytes_per_event: float  # gzip NDJSON as archived
    digest_bytes_per_tick: float
    event_objects_per_tick: float
    kms_signs: float
    secrets_calls: float
    dynamodb_wru: float
    dynamodb_rru: float
    log_bytes: float  # the function's own lines and EMF documents
    custom_metrics_per_vendor: float
    streams_per_vendor: float
    reconcile_gets_per_object: float = 1.0  # a reconciliation reads each object of its span once (see from_report)

    @classmethod
    def from_report(cls, report: dict[str, Any]) -> Measured:
        rows = report["live"]
        ticks = sum(row["ticks"] for row in rows)
        events = sum(row["events"] for row in rows)

        def calls(name: str) -> float:
            return sum(row["aws_calls"].get(name, 0) for row in rows) / ticks

        def units(name: str) -> float:
            return sum(row["units"].get(name, 0) for row in rows)

        mean_s = sum(row["mean_ms"] * row["ticks"] for row in rows) / ticks / 1000
        return cls(
            events_per_tick=events / ticks, duration_s=mean_s,
            s3_puts=calls("s3.PutObject"), s3_gets=calls("s3.GetObject"), s3_lists=calls("s3.ListObjectsV2"),
            event_bytes_per_event=units("s3_put_bytes.events") / max(events, 1),
            digest_bytes_per_tick=units("s3_put_bytes.digests") / ticks,
            event_objects_per_tick=units("s3_puts.events") / ticks,
            kms_signs=calls("kms.Sign"), secrets_calls=calls("secretsmanager.GetSecretValue"),
            dynamodb_wru=units("dynamodb_wru") / ticks, dynamodb_rru=units("dynamodb_rru") / ticks,
            log_bytes=sum(row["log_bytes"] for row in rows) / ticks,
            # The live run's metric and dimension sets, plus what only a reconciliation publishes: ReconciledEvents
            # per vendor and per stream.
            custom_metrics_per_vendor=sum(row["custom_metrics"] + 1 + row["streams"] for row in rows) / len(rows),
            streams_per_vendor=sum(row["streams"] for row in rows) / len(rows),
        )


# ------------------------------------------------------------------------------------------------------------- costs
@dataclass(frozen=True)
class Line:
    service: str
    item: str
    quantity: float
    price: str  # a key of PRICES
    note: str = ""

    @property
    def usd(self) -> float:
        return self.quantity * PRICES[self.price].usd


def estimate(m: Measured, d: Deployment) -> list[Line]:
    """The monthly line items. A collector tick costs what the measured ticks cost on average (they ran at the
    typical deployment's events a tick: bench.LIVE_PER_DAY); storage and Athena follow the events a day through the
    bytes an event takes. An hourly Reconcile check is a Lambda invocation as long as a tick (an upper bound) that
    reads one item a stream; each daily reconciliation reads its span's objects back once."""
    ticks = d.vendors * d.ticks_per_month
    checks = d.vendors * d.reconcile_checks_per_day * DAYS_PER_MONTH
    reconciliations = d.vendors * DAYS_PER_MONTH
    invocations = ticks + checks
    event_bytes_day = d.events_per_day * m.event_bytes_per_event
    digest_bytes_day = d.vendors * 24 * 60 / d.schedule_minutes * m.digest_bytes_per_tick
    stored = (event_bytes_day + digest_bytes_day) * d.retention_days  # at the steady state, after a year
    objects_per_reconciliation = m.event_objects_per_tick * 24 * 60 / d.schedule_minutes * d.reconcile_span_days
    reconcile_gets = reconciliations * objects_per_reconciliation * m.reconcile_gets_per_object
    log_gb_month = invocations * (m.log_bytes + PLATFORM_LOG_BYTES) / GB
    lines = [
        Line("Lambda", "requests (ticks + hourly Reconcile checks)", invocations, "lambda_request"),
        Line("Lambda", f"duration ({m.duration_s * 1000:.0f} ms a tick measured, {d.memory_mb} MB)",
             invocations * m.duration_s * d.memory_mb / 1024, "lambda_gb_s",
             "loopback latency: real AWS calls take longer"),
        Line("S3", "PUT (event objects and digests)", ticks * m.s3_puts, "s3_put"),
        Line("S3", "GET (ticks, and each daily reconciliation's re-read)", ticks * m.s3_gets + reconcile_gets,
             "s3_get", f"{objects_per_reconciliation:.0f} objects a reconciliation"),
        Line("S3", "LIST (priced as PUT)", ticks * m.s3_lists + reconciliations * d.reconcile_span_days, "s3_put",
             "one LIST a day of the span reconciled (assumed)"),
        Line("S3", f"storage ({d.retention_days} days of events and digests)", stored / GB, "s3_gb_month",
             f"{m.event_bytes_per_event:.0f} B an event gzipped"),
        Line("KMS", "keys (archive, signing)", d.kms_keys, "kms_key_month"),
        Line("KMS", "Sign (one per digest)", ticks * m.kms_signs, "kms_sign"),
        Line("KMS", "symmetric (SSE-KMS, at most one per S3 PUT or GET)",
             ticks * (m.s3_puts + m.s3_gets) + reconcile_gets, "kms_symmetric",
             "an upper bound: S3 Bucket Keys make it far fewer"),
        Line("DynamoDB", "write request units", ticks * m.dynamodb_wru, "dynamodb_wru"),
        Line("DynamoDB", "read request units", ticks * m.dynamodb_rru + checks * m.streams_per_vendor,
             "dynamodb_rru", "hourly checks: one strongly consistent read a stream"),
        Line("DynamoDB", "storage", d.vendors * m.streams_per_vendor * 4096 / GB, "dynamodb_gb_month",
             "one item of at most 4 KB a stream"),
        Line("Secrets Manager", "secrets (one a vendor)", d.vendors, "secret_month"),
        Line("Secrets Manager", "GetSecretValue", invocations * m.secrets_calls, "secrets_call"),
        Line("CloudWatch", "custom metrics (EMF: metric x dimension sets)", d.vendors * m.custom_metrics_per_vendor,
             "cw_metric_month"),
        Line("CloudWatch", "alarms", d.alarms, "cw_alarm_month"),
        Line("CloudWatch", "dashboard", d.dashboards, "cw_dashboard_month", "free if among an account's first 3"),
        Line("CloudWatch", "logs ingested", log_gb_month, "logs_ingest_gb",
             f"{m.log_bytes:.0f} B a tick measured + {PLATFORM_LOG_BYTES} B of Lambda's own lines"),
        Line("CloudWatch", f"logs stored ({d.retention_days} days)", log_gb_month * d.retention_days / DAYS_PER_MONTH,
             "logs_gb_month", "steady state, uncompressed (an upper bound)"),
        Line("EventBridge Scheduler", "invocations", invocations, "scheduler_invocation",
             "within the 14M free a month"),
    ]
    for name, days in d.query_days.items():
        scanned = max(event_bytes_day * days, ATHENA_MINIMUM_BYTES)
        lines.append(Line("Athena", f"{name!r}: {days} days, {d.query_runs_per_month}x a month",
                          d.query_runs_per_month * scanned / 10**12, "athena_tb",
                          f"{scanned / 1e6:.1f} MB a run"))
    return lines


def total(lines: list[Line]) -> float:
    return sum(line.usd for line in lines)


def format_report(lines: list[Line], d: Deployment | None = None) -> str:
    d = d or Deployment()
    head = (f"Monthly cost: {d.vendors} vendors, {d.events_per_day:,} events a day, every {d.schedule_minutes} "
            f"minutes, {d.retention_days} days kept, us-east-1 (prices of {PRICE_DATE}, no free tier subtracted)")
    width = max(len(f"{line.service}: {line.item}") for line in lines)
    rows = [head, ""]
    for line in lines:
        label = f"{line.service}: {line.item}"
        rows.append(f"{label:<{width}}  {_quantity(line.quantity):>12}  ${line.usd:>9.4f}  {line.note}".rstrip())
    rows.append(f"{'total':<{width}}  {'':>12}  ${total(lines):>9.2f}")
    by_service: dict[str, float] = {}
    for line in lines:
        by_service[line.service] = by_service.get(line.service, 0) + line.usd
    rows.append("")
    rows.append("by service: " + ", ".join(f"{service} ${usd:.2f}" for service, usd in
                                            sorted(by_service.items(), key=lambda item: -item[1])))
    return "\n".join(rows)


def format_prices() -> str:
    return "\n".join(f"{name:<22} ${price.usd:.10g} per {price.unit} ({price.source}"
                     f"{'' if price.confirmed else '; not confirmed on AWS page'})" for name, price in PRICES.items())


def _quantity(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.4g}" if value else "0"


QUICK_HOURS = 2.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, default=Path(".auditlake/bench.json"),
                        help="the benchmark's report (default: %(default)s)")
    parser.add_argument("--measure", action="store_true",
                        help=f"measure now ({QUICK_HOURS:g} h of ticks per vendor) instead of reading the report")
    parser.add_argument("--prices", action="store_true", help="print the price list too")
    args = parser.parse_args(argv)
    report = json.loads(args.json.read_text()) if args.json.exists() and not args.measure else {}
    if "live" not in report:
        from auditlake_local import bench  # noqa: PLC0415 (the measurement starts processes; only when needed)
        from auditlake_local.vendors import VENDORS  # noqa: PLC0415

        print(f"no live measurement in {args.json}: measuring {QUICK_HOURS:g} h of ticks per vendor", flush=True)
        report = {"live": [bench.live(vendor, hours=QUICK_HOURS) for vendor in VENDORS]}
    print(format_report(estimate(Measured.from_report(report), Deployment())))
    if args.prices:
        print()
        print(format_prices())


if __name__ == "__main__":
    main()
