"""A backfill measured: `python -m auditlake_local.bench --events 100000`.

Runs the Asana collector against its simulator (in-process, no network) on in-process AWS until caught up,
and prints wall time, HTTP requests, S3 objects and bytes, DynamoDB writes, peak Python heap, and the
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

from auditlake import http
from auditlake_local.simulators import AsanaSimulator, SimulatorAdapter, generate_events
from auditlake_local.stack import LocalStack

TOKEN = "bench-token"  # noqa: S105 - the simulator's own token
WORKSPACE = "1209999999999999"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args(argv)

    now = datetime.now(UTC)
    simulator = AsanaSimulator(token=TOKEN, workspace_gid=WORKSPACE)
    simulator.add_events(generate_events(args.events, now - timedelta(days=args.days), now - timedelta(minutes=5),
                                         seed=42))
    with LocalStack.start() as stack:
        http.shared_session().mount("https://asana.bench/", SimulatorAdapter(simulator))
        stack.put_secret("AsanaCollector", {"token": TOKEN, "workspace_gid": WORKSPACE,
                                            "base_url": "https://asana.bench/api/1.0"})
        tracemalloc.start()
        started = time.perf_counter()
        ticks, requests, objects, bytes_written, ddb = 0, 0, 0, 0, 0
        while True:
            ticks += 1
            summary = stack.invoke("AsanaCollector")
            requests += summary["http"]["requests"]
            objects += summary["s3"]["objects"]
            bytes_written += summary["s3"]["bytes"]
            ddb += summary["dynamodb_operations"]
            if summary["status"] == "ok":
                break
        wall = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        ids = Counter(r["event_id"] for r in stack.archived_records("asana"))
        truth = simulator.ground_truth()
        report = {
            "events": args.events,
            "ticks": ticks,
            "wall_seconds": round(wall, 2),
            "events_per_second": round(args.events / wall),
            "http_requests": requests,
            "http_requests_minimum": args.events // 100 + (1 if args.events % 100 else 0) + 1,
            "s3_objects": objects,
            "s3_bytes": bytes_written,
            "dynamodb_operations": ddb,
            "peak_python_heap_mib": round(peak / 2**20, 1),
            "missing": len(set(truth) - set(ids)),
            "duplicates": sum(n - 1 for n in ids.values() if n > 1),
        }
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
