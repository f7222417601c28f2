"""A backfill measured: `python -m auditlake_local.bench --events 10000 [--vendor asana ...]`.

Runs each collector against its simulator (in-process, no network) on in-process AWS until caught up, and
prints ticks, wall time, HTTP requests, S3 objects and bytes, DynamoDB operations, peak Python heap, and the
exactly-once check against the simulator's ground truth. The simulator and moto share the process, so the
wall time is an upper bound for the collector's own work.
"""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from auditlake import http
from auditlake_local.simulators import SimulatorAdapter
from auditlake_local.stack import LocalStack
from auditlake_local.vendors import VENDORS, LocalVendor

QUIET = {"LOG_LEVEL": "WARNING", "POWERTOOLS_METRICS_DISABLED": "true"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--vendor", action="append", choices=list(VENDORS), help="repeatable; default: all")
    args = parser.parse_args(argv)
    reports = [backfill(VENDORS[name], args.events, args.days) for name in args.vendor or VENDORS]
    columns = list(reports[0])
    print(" ".join(f"{c:>14}" for c in columns))
    for report in reports:
        print(" ".join(f"{report[c]!s:>14}" for c in columns))
    print(json.dumps(reports, indent=2))


def backfill(local: LocalVendor, events: int, days: int) -> dict[str, Any]:
    now = datetime.now(UTC)
    simulator = local.start()
    simulator.add_events(local.generate_events(events, now - timedelta(days=days), now - timedelta(minutes=5), 42))
    origin = f"https://{local.vendor}.bench"
    with LocalStack.start() as stack:
        http.shared_session().mount(f"{origin}/", SimulatorAdapter(simulator))
        stack.put_secret(local.function_id, local.secret(origin))
        tracemalloc.start()
        started = time.perf_counter()
        ticks, requests, objects, bytes_written, ddb = 0, 0, 0, 0, 0
        while True:
            ticks += 1
            summary = stack.invoke(local.function_id, environment=QUIET)
            requests += summary["http"]["requests"]
            objects += summary["s3"]["objects"]
            bytes_written += summary["s3"]["bytes"]
            ddb += summary["dynamodb_operations"]
            if summary["status"] == "ok":
                break
        wall = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        http.shared_session().adapters.pop(f"{origin}/", None)
        archived = Counter(_canonical(json.loads(r["raw"])) for r in stack.archived_records(local.vendor))
    truth = Counter(_canonical(event) for event in simulator.ground_truth().values())
    return {
        "vendor": local.vendor,
        "events": events,
        "ticks": ticks,
        "wall_seconds": round(wall, 2),
        "events_per_s": round(events / wall),
        "http_requests": requests,
        "s3_objects": objects,
        "s3_bytes": bytes_written,
        "dynamodb_ops": ddb,
        "peak_heap_mib": round(peak / 2**20, 1),
        "missing": sum((truth - archived).values()),
        "duplicates": sum((archived - truth).values()),
    }


def _canonical(event: Any) -> str:
    return json.dumps(event, sort_keys=True, separators=(",", ":"))


if __name__ == "__main__":
    main()
