"""The benchmark's collector, in a process of its own: imports the function as Lambda would and invokes it until
the backlog is archived, then once more with nothing new (an idle tick), measuring its own CPU time and memory.

Reads the world's JSON line (see bench_world.py) on stdin; prints one JSON result. The engine's clock is held at
the start of the backfill, so the whole backlog is one window, as on a first run; the idle tick runs on the real
clock, later.

With `--reconcile`, it measures a reconciliation instead: the live collection runs in scheduled ticks five minutes
apart (on a stepped clock) over the backlog's whole span, so the archive holds one object per tick and day as in
production; then one reconciliation re-reads the span, and its requests, S3 reads and wall time are reported.

Given `pacing` (environment settings) on its input line, the backfill is paced at the vendor's limit, or at the one
those settings name, waiting in real time: the latency table (bench.py) measures requests per minute that way.

With `--profile <file>`, the backfill's invocations (not the idle tick) run under cProfile, whose statistics are
written to the file.

With `--live`, it runs only the scheduled ticks, as many as fit between the world's first event and `last_tick`,
and reports what the monthly cost is computed from (cost.py): every AWS operation, the DynamoDB request units, the
bytes uploaded per key prefix and logged, the distinct custom metrics of its EMF documents, and each tick's time.
"""

from __future__ import annotations

import cProfile
import importlib
import json
import os
import resource
import sys
import time
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from auditlake_local.lambda_context import LambdaContext

QUIET = {"LOG_LEVEL": "WARNING", "POWERTOOLS_METRICS_DISABLED": "true", "POWERTOOLS_TRACE_DISABLED": "true"}
# The simulators here enforce no limit, and the backfills measure the collector itself: unpaced. Pacing against an
# enforced limit is the rate-limited measurement's subject (bench_pacing.py).
UNPACED = {"RATE_LIMIT_PER_MINUTE": str(10**9)}
MAX_INVOCATIONS = 100


def main() -> None:
    if "--reconcile" in sys.argv[1:]:
        reconcile_main()
        return
    if "--live" in sys.argv[1:]:
        live_main()
        return
    world = json.loads(sys.stdin.readline())
    # Paced (the latency table): at the vendor's limit, or the one the benchmark sets, waiting in real time.
    pacing = world.get("pacing", UNPACED)
    os.environ.update({**world["environment"], **QUIET, **pacing})
    sys.path[:0] = [world["code_dir"], *world["layer_dirs"]]
    module_name, _, attribute = world["handler"].rpartition(".")
    started = time.perf_counter()
    handler = getattr(importlib.import_module(module_name), attribute)
    import_seconds = time.perf_counter() - started
    rss_after_import = _rss_mib()

    timeutil = sys.modules["auditlake.timeutil"]  # the engine's clock, as the function imported it
    real_now = timeutil.now
    frozen = real_now()
    timeutil.now = lambda: frozen
    totals: dict[str, Any] = {"invocations": 0, "http_requests": 0, "http_throttles": 0, "s3_objects": 0,
                              "s3_bytes": 0, "dynamodb_reads": 0, "dynamodb_writes": 0, "events": 0}
    profile_to = sys.argv[sys.argv.index("--profile") + 1] if "--profile" in sys.argv[1:] else None
    # Timed by CPU, not the wall clock: waiting for the simulator's answers is not the collector's cost.
    profiler = cProfile.Profile(time.process_time) if profile_to else None
    cpu_started, wall_started = time.process_time(), time.perf_counter()
    if profiler is not None:
        profiler.enable()
    while totals["invocations"] < MAX_INVOCATIONS:
        summary = handler({}, LambdaContext(function_name=world["function"]))
        _add(totals, summary)
        if summary["status"] == "ok":
            break
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile_to)
    totals["cpu_seconds"] = time.process_time() - cpu_started
    totals["wall_seconds"] = time.perf_counter() - wall_started
    totals["status"] = summary["status"]
    totals["peak_rss_mib"] = _peak_rss_mib()
    totals["rss_after_import_mib"] = rss_after_import
    totals["import_seconds"] = import_seconds

    timeutil.now = real_now
    wall_started = time.perf_counter()
    idle = handler({}, LambdaContext(function_name=world["function"]))
    totals["idle"] = {"wall_seconds": time.perf_counter() - wall_started, "http_requests": idle["http"]["requests"],
                      "s3_objects": idle["s3"]["objects"], "dynamodb_reads": idle["dynamodb"]["reads"],
                      "dynamodb_writes": idle["dynamodb"]["writes"], "streams": len(idle["streams"]),
                      "events": sum(s["events_archived"] for s in idle["streams"])}
    print(json.dumps(totals))


TICK = timedelta(minutes=5)


def reconcile_main() -> None:
    world = json.loads(sys.stdin.readline())
    span = timedelta(days=float(world["reconcile_days"]))
    first_tick = datetime.fromisoformat(world["first_event"]) + TICK
    os.environ.update({**world["environment"], **QUIET, **UNPACED,
                       # the first tick reaches back to the backlog's start, and no further
                       "INITIAL_LOOKBACK_DAYS": str(TICK / timedelta(days=1)),
                       "RECONCILE_SPAN_DAYS": str(span / timedelta(days=1))})
    sys.path[:0] = [world["code_dir"], *world["layer_dirs"]]
    module_name, _, attribute = world["handler"].rpartition(".")
    handler = getattr(importlib.import_module(module_name), attribute)
    timeutil = sys.modules["auditlake.timeutil"]
    real_now = timeutil.now
    # Unpaced, as the backfills are: ClickUp's X-RateLimit headers would otherwise pace two thousand ticks of real
    # requests at its limit in real time. The reconciliation's paced duration is computed from its requests.
    sys.modules["auditlake.http"].pause = lambda _seconds: None
    s3_calls: Counter[str] = Counter()
    sys.modules["auditlake.aws"].client("s3").meta.events.register(
        "before-call.s3", lambda model, **_: s3_calls.update([model.name]))

    live: dict[str, Any] = {"invocations": 0, "http_requests": 0, "http_throttles": 0, "s3_objects": 0,
                            "s3_bytes": 0, "dynamodb_reads": 0, "dynamodb_writes": 0, "events": 0}
    moment = first_tick
    while moment <= real_now():
        timeutil.now = lambda moment=moment: moment
        _add(live, handler({}, LambdaContext(function_name=world["function"])))
        moment += TICK
    timeutil.now = real_now
    _add(live, handler({}, LambdaContext(function_name=world["function"])))

    s3_calls.clear()
    totals: dict[str, Any] = {"invocations": 0, "http_requests": 0, "http_throttles": 0, "s3_objects": 0,
                              "s3_bytes": 0, "dynamodb_reads": 0, "dynamodb_writes": 0, "events": 0}
    wall_started = time.perf_counter()
    while totals["invocations"] < MAX_INVOCATIONS:
        summary = handler({"reconcile": {}}, LambdaContext(function_name=world["function"]))
        _add(totals, summary)
        if summary["status"] == "ok":
            break
    totals["wall_seconds"] = time.perf_counter() - wall_started
    totals["s3_calls"] = dict(s3_calls)
    totals["live"] = live
    totals["reconciled_span"] = [s["reconciliation"] for s in summary["streams"]]
    print(json.dumps(totals))


class _CountingStdout:
    """Stands in for the function's stdout: counts the bytes it would log (its log lines and EMF metric documents)
    and keeps the metric documents, whose distinct metric and dimension sets are what CloudWatch bills."""

    def __init__(self) -> None:
        self.bytes = 0
        self.metrics: set[tuple[str, tuple[tuple[str, str], ...]]] = set()

    def write(self, text: str) -> int:
        self.bytes += len(text.encode())
        for line in text.splitlines():
            if line.startswith("{") and '"_aws"' in line:
                document = json.loads(line)
                for directive in document["_aws"]["CloudWatchMetrics"]:
                    for dimensions in directive["Dimensions"]:
                        key = tuple((name, str(document[name])) for name in dimensions)
                        self.metrics.update((metric["Name"], key) for metric in directive["Metrics"])
        return len(text)

    def flush(self) -> None:
        pass


def _count_aws_calls(calls: Counter[str], units: Counter[str]) -> None:
    """Counts every AWS operation the function makes, and what it is billed by: DynamoDB request units (items
    under 1 KB written, 4 KB read: one unit each, half for an eventually consistent read, two in a transaction),
    and the bytes of each S3 upload by top-level prefix (events/, digests/)."""

    def before(params: dict[str, Any], model: Any, **_: Any) -> None:
        service = model.service_model.service_name
        calls[f"{service}.{model.name}"] += 1
        if service == "dynamodb":
            if model.name in ("GetItem", "Query", "Scan", "BatchGetItem"):
                units["dynamodb_rru"] += 1 if params.get("ConsistentRead") else 0.5
            elif model.name == "TransactGetItems":
                units["dynamodb_rru"] += 2 * len(params["TransactItems"])
            elif model.name == "TransactWriteItems":
                units["dynamodb_wru"] += 2 * len(params["TransactItems"])
            elif model.name == "BatchWriteItem":
                units["dynamodb_wru"] += sum(len(items) for items in params["RequestItems"].values())
            else:
                units["dynamodb_wru"] += 1
        elif service == "s3" and model.name == "PutObject":
            body = params.get("Body", b"")  # bytes, or the stream botocore has already made of them
            size = body.getbuffer().nbytes if hasattr(body, "getbuffer") else len(body)
            prefix = params["Key"].split("/", 1)[0]
            units[f"s3_put_bytes.{prefix}"] += size
            units[f"s3_puts.{prefix}"] += 1

    for service in ("s3", "dynamodb", "kms", "secretsmanager"):
        sys.modules["auditlake.aws"].client(service).meta.events.register("before-parameter-build", before)


def live_main() -> None:
    """Scheduled ticks over the backlog's span on a stepped clock, as in production: each tick's AWS operations,
    request units, uploaded bytes, logged bytes and wall time (the Lambda duration's stand-in)."""
    world = json.loads(sys.stdin.readline())
    counting = _CountingStdout()
    real_stdout, sys.stdout = sys.stdout, counting  # before the import: the function's logger binds stdout then
    os.environ.update({**world["environment"], **UNPACED, "LOG_LEVEL": "INFO", "POWERTOOLS_TRACE_DISABLED": "true",
                       "INITIAL_LOOKBACK_DAYS": str(TICK / timedelta(days=1))})
    sys.path[:0] = [world["code_dir"], *world["layer_dirs"]]
    module_name, _, attribute = world["handler"].rpartition(".")
    handler = getattr(importlib.import_module(module_name), attribute)
    timeutil = sys.modules["auditlake.timeutil"]
    sys.modules["auditlake.http"].pause = lambda _seconds: None
    calls: Counter[str] = Counter()
    units: Counter[str] = Counter()
    _count_aws_calls(calls, units)
    totals: dict[str, Any] = {"invocations": 0, "http_requests": 0, "http_throttles": 0, "s3_objects": 0,
                              "s3_bytes": 0, "dynamodb_reads": 0, "dynamodb_writes": 0, "events": 0}
    moment = datetime.fromisoformat(world["first_event"]) + TICK
    end = datetime.fromisoformat(world["last_tick"])
    durations = []
    # The secret's cache ages on the real clock, which hardly moves here; in production the ticks are TICK apart, so
    # a cache younger than that is empty at every tick (a warm container's included).
    settings = sys.modules["auditlake.settings"].Settings
    secret_max_age = float(os.environ.get("SECRET_MAX_AGE_SECONDS", settings.secret_max_age))
    while moment <= end:
        timeutil.now = lambda moment=moment: moment
        if secret_max_age <= TICK.total_seconds():
            sys.modules["auditlake.aws"].secrets_provider().clear_cache()
        started = time.perf_counter()
        summary = handler({}, LambdaContext(function_name=world["function"]))
        durations.append(time.perf_counter() - started)
        _add(totals, summary)
        moment += TICK
    totals["streams"] = len(summary["streams"])
    totals.update(aws_calls=dict(calls), units=dict(units), log_bytes=counting.bytes,
                  custom_metrics=len(counting.metrics), durations_s=sorted(durations))
    sys.stdout = real_stdout
    print(json.dumps(totals))


def _add(totals: dict[str, Any], summary: dict[str, Any]) -> None:
    totals["invocations"] += 1
    totals["http_requests"] += summary["http"]["requests"]
    totals["http_throttles"] += summary["http"]["throttles"]
    totals["s3_objects"] += summary["s3"]["objects"]
    totals["s3_bytes"] += summary["s3"]["bytes"]
    totals["dynamodb_reads"] += summary["dynamodb"]["reads"]
    totals["dynamodb_writes"] += summary["dynamodb"]["writes"]
    totals["events"] += sum(stream["events_archived"] for stream in summary["streams"])
    # The requests that only confirmed a window's end (an empty page): the price of never trusting a short page.
    totals["windows"] = totals.get("windows", 0) + sum(s["windows_completed"] for s in summary["streams"])
    totals["end_pages"] = totals.get("end_pages", 0) + sum(s["empty_pages"] for s in summary["streams"])


def _rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


if __name__ == "__main__":
    main()
