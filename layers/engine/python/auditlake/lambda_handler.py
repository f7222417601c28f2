"""Wires a vendor adapter to Lambda: settings, secret, HTTP, state, archive, Powertools logging/metrics/tracing."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NoReturn

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from auditlake import aws, timeutil
from auditlake.archive import Archive
from auditlake.deadline import Deadline
from auditlake.digest import DigestWriter
from auditlake.engine import Collector, StreamResult
from auditlake.errors import AuditlakeError, AuditLogsUnavailable, ConfigError
from auditlake.http import HttpClient
from auditlake.reconcile import Reconciliation
from auditlake.secrets import load_secret
from auditlake.settings import Settings
from auditlake.state import DEFAULT_ACCOUNT, StateStore, StreamKey, check_account
from auditlake.vendor import VendorAdapter

logger = Logger(service="auditlake", logger_name="auditlake")
METRICS_NAMESPACE = "auditlake"
metrics = Metrics(namespace=METRICS_NAMESPACE, service="auditlake")
# The dimension sets the metrics are published with: each run's under its vendor (Powertools adds `service`), and
# ReconciledEvents also under each stream.
RUN_DIMENSIONS = ("service", "vendor")
STREAM_DIMENSIONS = ("service", "vendor", "stream")


@dataclass(frozen=True)
class PublishedMetric:
    unit: MetricUnit
    dimension_sets: tuple[tuple[str, ...], ...] = (RUN_DIMENSIONS,)


# Every metric the collectors publish in METRICS_NAMESPACE, in one place: `_publish_metrics` publishes only these,
# with their unit from here, and the template's dashboard and alarms are tested against it
# (tests/test_template_dashboard.py).
PUBLISHED_METRICS: dict[str, PublishedMetric] = {
    "EventsArchived": PublishedMetric(MetricUnit.Count),
    "PagesFetched": PublishedMetric(MetricUnit.Count),
    "ObjectsWritten": PublishedMetric(MetricUnit.Count),
    "DuplicatesSkipped": PublishedMetric(MetricUnit.Count),
    "HttpRetries": PublishedMetric(MetricUnit.Count),
    "Throttles": PublishedMetric(MetricUnit.Count),
    "PacingWaits": PublishedMetric(MetricUnit.Count),
    "StreamErrors": PublishedMetric(MetricUnit.Count),
    "DigestsWritten": PublishedMetric(MetricUnit.Count),
    "ReconciledEvents": PublishedMetric(MetricUnit.Count, (RUN_DIMENSIONS, STREAM_DIMENSIONS)),
    "FreshnessLagSeconds": PublishedMetric(MetricUnit.Seconds),
    "WatermarkLagSeconds": PublishedMetric(MetricUnit.Seconds, (RUN_DIMENSIONS, STREAM_DIMENSIONS)),
    "BacklogSeconds": PublishedMetric(MetricUnit.Seconds),
}
# Only what the engine calls through: AWS (botocore) and the vendors (requests). Patching everything X-Ray knows
# would also import and patch sqlite3 and probe for a dozen absent libraries at every cold start.
tracer = Tracer(service="auditlake", patch_modules=("botocore", "requests"))

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


class CollectionFailed(AuditlakeError):
    """Raised after committing what was safe, so Lambda's Errors metric, the alarm and the DLQ engage."""


def make_handler(adapter_class: type[VendorAdapter]) -> Handler:
    """The Lambda entry point for one vendor: `handler = make_handler(Asana)`."""

    @logger.inject_lambda_context(clear_state=True)
    @tracer.capture_lambda_handler(capture_response=False)
    @metrics.log_metrics
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        metrics.clear_metrics()  # nothing carried over, even where publishing is disabled and flush keeps the set
        metrics.add_dimension(name="vendor", value=adapter_class.vendor)
        logger.append_keys(vendor=adapter_class.vendor)
        settings = Settings.from_env()
        return collect(adapter_class, settings, context, backfill_since=backfill_since(event),
                       reconcile=reconcile_request(event, settings), account=account_request(event))

    return handler


def backfill_since(event: Any) -> datetime | None:
    """`{"backfill": {"since": "YYYY-MM-DD"}}` asks for history before the first collected window; a schedule
    tick's event (`{}`) asks for nothing but the new events."""
    request = event.get("backfill") if isinstance(event, dict) else None
    if request is None:
        return None
    try:
        return timeutil.parse_time(request["since"])
    except (KeyError, TypeError, ValueError):
        raise ConfigError('a backfill event is {"backfill": {"since": "YYYY-MM-DD"}}; got '
                          f"{json.dumps(request)[:80]}") from None


def reconcile_request(event: Any, settings: Settings) -> Reconciliation | None:
    """`{"reconcile": {}}` (the reconciliation schedule) re-reads the last RECONCILE_SPAN_DAYS when the last
    reconciliation began RECONCILE_INTERVAL_HOURS ago or more; `{"reconcile": {"since": "YYYY-MM-DD"}}` (by hand)
    re-reads from that date on, now."""
    request = event.get("reconcile") if isinstance(event, dict) else None
    if request is None:
        return None
    since = request.get("since") if isinstance(request, dict) else None
    try:
        parsed = timeutil.parse_time(since) if since is not None else None
    except (TypeError, ValueError):
        raise ConfigError('a reconciliation event is {"reconcile": {}} or {"reconcile": {"since": "YYYY-MM-DD"}}; '
                          f"got {json.dumps(request)[:80]}") from None
    return Reconciliation(span=settings.reconcile_span, every=settings.reconcile_every, since=parsed)


def account_request(event: Any) -> str | None:
    """The account a backfill or reconciliation event names (`"account": "us-sub"`, or "default" for the vendor's
    first one); None: every account (and every schedule tick)."""
    if not isinstance(event, dict):
        return None
    for mode in ("backfill", "reconcile"):
        request = event.get(mode)
        if isinstance(request, dict) and request.get("account") is not None:
            name = request["account"]
            if name == DEFAULT_ACCOUNT:
                return name
            try:
                return check_account(name)
            except ValueError as exc:
                raise ConfigError(f"a {mode} event's account: {exc}") from None
    return None


@dataclass
class _Account:
    """One account of the vendor in this run: its secret's HTTP client and adapter, and its streams' keys; or why
    it could not be set up."""

    name: str | None  # None: the default account
    http: HttpClient | None = None
    adapter: VendorAdapter | None = None
    keys: list[StreamKey] = field(default_factory=list)
    failed: bool = False

    @property
    def label(self) -> str:
        return self.name or DEFAULT_ACCOUNT


def collect(adapter_class: type[VendorAdapter], settings: Settings, context: Any, *,
            backfill_since: datetime | None = None, reconcile: Reconciliation | None = None,
            account: str | None = None) -> dict[str, Any]:
    """One run over the vendor's accounts (`account`: only that one, "default" naming the first): each account in
    turn, its first stream alone, then its other streams at once (one at a time with FETCH_CONCURRENCY=1), each
    account with an even share of what is left of the invocation. An account that fails is
    reported by name and the others are still collected; the run then raises CollectionFailed, listing every
    failure."""
    vendor = adapter_class.vendor
    mode = "backfill" if backfill_since is not None else "reconcile" if reconcile is not None else "collect"
    if reconcile is not None and reconcile.since is None and not reconcile.every:
        # RECONCILE_INTERVAL_HOURS=0: scheduled reconciliations are off (by hand they still run).
        return {"vendor": vendor, "mode": mode, "status": "ok", "streams": [], "reconciliation": "off"}
    names = _accounts(vendor, settings, account)
    deadline = Deadline(context.get_remaining_time_in_millis, settings.deadline_margin)
    store = StateStore(aws.client("dynamodb"), settings.state_table)
    archive = Archive(aws.client("s3"), settings.archive_bucket, settings.kms_key_arn)
    digests = DigestWriter(aws.client("s3"), aws.client("kms"), settings.archive_bucket, settings.kms_key_arn,
                           settings.digest_signing_key_arn)
    owner = f"{getattr(context, 'aws_request_id', None) or 'local'}/{uuid.uuid4().hex[:8]}"

    results: list[StreamResult] = []
    failures: list[_Failure] = []
    accounts = [_Account(name) for name in names]
    for entry in accounts:
        try:
            _open_account(entry, adapter_class, settings, deadline, reconciling=reconcile is not None)
        except Exception as exc:  # this account only: the others are still collected
            entry.failed = True
            logger.exception("account could not be set up", extra={"account": entry.label})
            # No stream key: without its secret the account's streams are unknown.
            results.append(StreamResult(stream=f"{vendor} account {entry.label}", account=entry.label,
                                        status="error", error=str(exc)))
            failures.append(_Failure(f"{vendor} account {entry.label}: {exc}", exc, account=True))

    pairs = [(entry, key) for entry in accounts for key in entry.keys]

    def run(entry: _Account, key: StreamKey, share: Deadline) -> StreamResult:
        assert entry.adapter is not None
        collector = Collector(entry.adapter, settings, store, archive, digests, share, owner, account=entry.name)
        with tracer.provider.in_subsegment(f"## {vendor} stream") as subsegment:
            subsegment.put_annotation("stream", key.stream)
            subsegment.put_annotation("account", entry.label)
            try:
                result = collector.run_stream(key.stream, backfill_since, reconcile)
            except AuditLogsUnavailable as exc:
                # The account, not the stream: every other stream of it would fail the same way. One error says so.
                logger.exception("audit logs are not available to this account",
                                 extra={"stream": str(key), "account": entry.label})
                entry.failed = True
                result = StreamResult(stream=str(key), account=entry.label, status="error", error=str(exc))
                failures.append(_Failure(f"{vendor} account {entry.label}: {exc}", exc, account=True))
            except Exception as exc:  # the other streams still run; the failure is raised at the end
                logger.exception("stream failed", extra={"stream": str(key), "account": entry.label})
                result = StreamResult(stream=str(key), account=entry.label, status="error", error=str(exc))
                failures.append(_Failure(f"{vendor} account {entry.label}, stream {key}: {exc}", exc))
        logger.info("stream collected", extra=result.as_dict())
        return result

    for number, entry in enumerate(accounts):
        # Every account shares the invocation: each may spend an even share of what is left (its streams counted
        # one by one when they run one after another), so one backlog never starves the others.
        later = sum(len(other.keys) for other in accounts[number + 1:] if not other.failed)
        results += _run_account(entry, later, deadline, settings, run)

    clients = [entry.http for entry in accounts if entry.http is not None]
    _publish_metrics(vendor, results, clients, digests, mode=mode)
    summary = _summary(vendor, mode, results, accounts, clients, store, archive, digests, failed=bool(failures))
    if failures:
        _raise(vendor, failures, nothing_ran=len(accounts) == 1 and not pairs)
    return summary


def _run_account(entry: _Account, later: int, deadline: Deadline, settings: Settings,
                 run: Callable[[_Account, StreamKey, Deadline], StreamResult]) -> list[StreamResult]:
    """The account's streams: its first alone, so an account whose plan has no audit logs fails once, not once per
    stream; then the others at once (ClickUp's classes), sharing the token's pacer, so that each is read at the
    vendor's pace without waiting for another's first and last requests. One at a time with
    FETCH_CONCURRENCY=1. `later`: the streams of the accounts after this one, which share what is left."""
    results: list[StreamResult] = []
    keys = list(entry.keys)
    while keys and not entry.failed:
        if settings.fetch_concurrency == 1 or len(keys) == 1 or not results:
            key = keys.pop(0)
            results.append(run(entry, key, deadline.share(len(keys) + 1 + later)))
            continue
        share = deadline.share(1 + later)
        with ThreadPoolExecutor(len(keys), thread_name_prefix=f"{entry.label}-stream") as pool:
            futures = [pool.submit(run, entry, key, share) for key in keys]
        results += [future.result() for future in futures]
        keys = []
    return results


def _raise(vendor: str, failures: list[_Failure], *, nothing_ran: bool) -> NoReturn:
    if nothing_ran and len(failures) == 1:
        # The vendor's only account could not even be set up (its secret, most often): the error is raised as it
        # is, as it was before accounts.
        raise failures[0].error
    counts = [f"{n} {what}(s)" for n, what in ((sum(f.account for f in failures), "account"),
                                                (sum(not f.account for f in failures), "stream")) if n]
    raise CollectionFailed(f"{vendor}: {' and '.join(counts)} failed after committing what was safe: "
                           + "; ".join(f.text for f in failures)) from failures[0].error


@dataclass(frozen=True)
class _Failure:
    text: str  # names the vendor and the account (and the stream), never a token
    error: BaseException
    account: bool = False  # the whole account failed (its secret, or a plan without audit logs), not one stream


def _summary(vendor: str, mode: str, results: list[StreamResult], accounts: list[_Account],
             clients: list[HttpClient], store: StateStore, archive: Archive, digests: DigestWriter, *,
             failed: bool) -> dict[str, Any]:
    return {
        "vendor": vendor,
        "mode": mode,
        "status": "error" if failed else ("backlog" if any(r.status == "backlog" for r in results) else "ok"),
        "streams": [r.as_dict() for r in results],
        "accounts": [{"account": entry.label, "status": "error" if entry.failed else "ok",
                      "streams": len(entry.keys), "requests": entry.http.stats.requests if entry.http else 0}
                     for entry in accounts],
        "http": _http_summary(clients),
        "s3": {"objects": archive.objects_written, "bytes": archive.bytes_written},
        "digests": {"written": digests.written, "adopted": digests.adopted, "signatures": digests.signatures},
        "dynamodb_operations": store.operations,
        "dynamodb": {"reads": store.reads, "writes": store.writes},
    }


def _accounts(vendor: str, settings: Settings, asked: str | None) -> list[str | None]:
    """The accounts this run collects: the default one (None), then the named ones; or only the one asked for."""
    every: list[str | None] = [None, *settings.accounts]
    if asked is None:
        return every
    if asked == DEFAULT_ACCOUNT:
        return [None]
    if asked not in settings.accounts:
        known = ", ".join([DEFAULT_ACCOUNT, *settings.accounts])
        raise ConfigError(f"{vendor} has no account {asked!r} (ACCOUNTS); its accounts are {known}")
    return [asked]


def _open_account(entry: _Account, adapter_class: type[VendorAdapter], settings: Settings, deadline: Deadline, *,
                  reconciling: bool) -> None:
    """Loads the account's secret and builds its own HTTP client (its headers, its pacer, its secret's values to
    redact) and adapter, then lists its streams. A request never carries another account's token."""
    vendor = adapter_class.vendor
    secret_id = settings.secret_id if entry.name is None else settings.account_secret_prefix + entry.name
    secret = load_secret(vendor, secret_id, adapter_class.secret_fields, settings.secret_max_age)
    # The operator's setting replaces the documented limit, and no rate header may raise it. A reconciliation
    # paces at its share of that, so it never starves the live collection, which may run at the same time. Each
    # account paces on its own: vendors limit per token or per organization.
    rate_limit = settings.rate_limit_per_minute or adapter_class.rate_limit_per_minute
    ceiling = settings.rate_limit_per_minute
    if reconciling and rate_limit:
        rate_limit = ceiling = max(1, int(rate_limit * settings.reconcile_rate_percent / 100))
    entry.http = HttpClient(
        vendor, adapter_class.base_url(secret),
        headers=adapter_class.auth_headers(secret), error_details=adapter_class.error_details, deadline=deadline,
        timeout=settings.http_timeout, max_attempts=settings.http_max_attempts, secrets=secret.values(),
        rate_limit_per_minute=rate_limit,
        rate_limit_ceiling=ceiling,
        lacks_audit_logs=adapter_class.lacks_audit_logs, audit_log_requirement=adapter_class.audit_log_requirement,
    )
    entry.adapter = adapter_class(secret, entry.http, settings.page_size)
    # A stream id that cannot be a key fails here.
    entry.keys = [StreamKey(vendor, stream, account=entry.name) for stream in entry.adapter.streams()]


def _http_summary(clients: list[HttpClient]) -> dict[str, Any]:
    """The run's HTTP counts over every account's client."""
    paced = [client.pacer.per_minute for client in clients if client.pacer.per_minute]
    return {"requests": sum(c.stats.requests for c in clients), "retries": sum(c.stats.retries for c in clients),
            "throttles": sum(c.stats.throttles for c in clients),
            "retry_seconds": round(sum(c.stats.retry_seconds for c in clients), 1),
            "pacing_waits": sum(c.stats.pacing_waits for c in clients),
            "pacing_seconds": round(sum(c.stats.pacing_seconds for c in clients), 1),
            # Each account's pacer on its own; the lowest, as one client reported it before accounts.
            "paced_per_minute": round(min(paced)) if paced else None}


def _publish_metrics(vendor: str, results: list[StreamResult], clients: list[HttpClient], digests: DigestWriter,
                     *, mode: str) -> None:
    _add(metrics, "EventsArchived", sum(r.events_archived for r in results))
    _add(metrics, "PagesFetched", sum(r.pages_fetched for r in results))
    _add(metrics, "ObjectsWritten", sum(r.objects_written for r in results))
    _add(metrics, "DuplicatesSkipped", sum(r.duplicates_skipped for r in results))
    _add(metrics, "HttpRetries", sum(c.stats.retries for c in clients))
    _add(metrics, "Throttles", sum(c.stats.throttles for c in clients))
    _add(metrics, "PacingWaits", sum(c.stats.pacing_waits for c in clients))
    _add(metrics, "StreamErrors", sum(r.status == "error" for r in results))
    _add(metrics, "DigestsWritten", digests.written)
    if mode == "reconcile":
        # Each event a reconciliation archives is one the live collection missed: alarmed on per vendor, and
        # published per stream so an operator sees which.
        _add(metrics, "ReconciledEvents", sum(r.events_archived for r in results))
        for result in results:
            _publish_per_stream(vendor, result.stream, "ReconciledEvents", result.events_archived)
    if mode != "collect":
        return  # history: its times say nothing about how fresh the archive is
    now = timeutil.now()
    newest = [timeutil.parse_time(r.newest_event_time) for r in results if r.newest_event_time]
    if newest:
        # Freshness: how old the newest archived event is (grows in quiet periods too; see WatermarkLag).
        _add(metrics, "FreshnessLagSeconds", (now - min(newest)).total_seconds())
    watermarks = {r.stream: timeutil.parse_time(r.done_until) for r in results if r.done_until}
    if watermarks:
        # Staleness: how far behind now the collected span ends; this is what the staleness alarm watches (the
        # vendor's stalest stream), and the dashboard draws per stream.
        _add(metrics, "WatermarkLagSeconds", (now - min(watermarks.values())).total_seconds())
        for stream, done_until in watermarks.items():
            _publish_per_stream(vendor, stream, "WatermarkLagSeconds", (now - done_until).total_seconds())
    _add(metrics, "BacklogSeconds", max((r.backlog_seconds for r in results), default=0.0))


def _publish_per_stream(vendor: str, stream: str, name: str, value: float) -> None:
    """One EMF document for one stream, apart from the run's (whose dimensions are the vendor's only). Ephemeral
    metrics, unlike `single_metric`, honour POWERTOOLS_METRICS_DISABLED, as the run's metrics do; one per document,
    since a disabled flush keeps what was added."""
    per_stream = EphemeralMetrics(namespace=METRICS_NAMESPACE, service="auditlake")
    per_stream.add_dimension(name="vendor", value=vendor)
    per_stream.add_dimension(name="stream", value=stream)
    _add(per_stream, name, value)
    per_stream.flush_metrics()


def _add(published: Metrics | EphemeralMetrics, name: str, value: float) -> None:
    """Adds one of PUBLISHED_METRICS, with its unit; a name not in the table is a KeyError, not a metric that no
    dashboard or alarm knows of."""
    published.add_metric(name=name, unit=PUBLISHED_METRICS[name].unit, value=value)
