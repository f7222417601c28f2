"""`make demo`: every collector against its local vendor simulator on in-process AWS, then queries over the archive.

Each simulator serves real HTTP on 127.0.0.1; its collector reaches it through the secret's `base_url`, exactly
as it would reach the vendor. AWS is moto, built from template.yaml.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from auditlake_local.simulators import VendorSimulator, serve
from auditlake_local.stack import LocalStack
from auditlake_local.vendors import VENDORS, LocalVendor

# The collectors' JSON logs and metrics are for CloudWatch; the demo prints its own summary instead.
QUIET = {"LOG_LEVEL": "WARNING", "POWERTOOLS_METRICS_DISABLED": "true"}
MAX_TICKS = 20


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=2500, help="events each simulated vendor account holds")
    parser.add_argument("--days", type=int, default=7, help="how many days back the events reach")
    args = parser.parse_args(argv)

    now = datetime.now(UTC)
    simulators: dict[str, VendorSimulator] = {}
    with LocalStack.start() as stack, contextlib.ExitStack() as servers:
        for seed, local in enumerate(VENDORS.values(), start=7):
            simulator = local.start()
            simulator.add_events(local.generate_events(args.events, now - timedelta(days=args.days),
                                                       now - timedelta(minutes=5), seed))
            origin = servers.enter_context(serve(simulator))
            stack.put_secret(local.function_id, local.secret(origin))
            simulators[local.vendor] = simulator
        print(f"{len(VENDORS)} vendor simulators on 127.0.0.1, {args.events} events each over {args.days} days\n")
        for local in VENDORS.values():
            _collect(stack, local)
        _report(stack, simulators)


def _collect(stack: LocalStack, local: LocalVendor) -> None:
    for tick in range(1, MAX_TICKS + 1):
        summary = stack.invoke(local.function_id, environment=QUIET)
        archived = sum(stream["events_archived"] for stream in summary["streams"])
        print(f"{local.vendor:<8} tick {tick}: {summary['status']:<8} archived {archived:>6} events in "
              f"{summary['s3']['objects']:>3} objects, {summary['http']['requests']:>4} HTTP requests, "
              f"{len(summary['streams'])} stream(s)")
        if summary["status"] == "ok":
            break
    idle = stack.invoke(local.function_id, environment=QUIET)
    print(f"{local.vendor:<8} idle tick: {idle['http']['requests']} HTTP requests, {idle['s3']['objects']} S3 "
          f"writes, {idle['dynamodb_operations']} DynamoDB operations\n")


def _canonical(event: Any) -> str:
    return json.dumps(event, sort_keys=True, separators=(",", ":"))


def _report(stack: LocalStack, simulators: dict[str, VendorSimulator]) -> None:
    records = stack.archived_records()
    print("archive against each simulator's ground truth (compared by the events' content):")
    for vendor, simulator in simulators.items():
        truth = Counter(_canonical(event) for event in simulator.ground_truth().values())
        archived = Counter(_canonical(json.loads(r["raw"])) for r in records if r["_key"].split("/")[1] ==
                           f"vendor={vendor}")
        objects = len({r["_key"] for r in records if r["_key"].split("/")[1] == f"vendor={vendor}"})
        print(f"  {vendor:<8} {sum(archived.values()):>6} records in {objects:>3} objects; missing "
              f"{sum((truth - archived).values())}, duplicates {sum((archived - truth).values())}")

    print("\nSELECT vendor, count(*), min(event_time), max(event_time) FROM events GROUP BY 1")
    per_vendor: dict[str, list[str]] = {}
    for r in records:
        per_vendor.setdefault(r["_key"].split("/")[1].removeprefix("vendor="), []).append(r["event_time"])
    for vendor, times in sorted(per_vendor.items()):
        print(f"  {vendor:<8} {len(times):>6}  {min(times)}  {max(times)}")

    print("\nSELECT vendor, action, count(*) FROM events WHERE outcome = 'failure' GROUP BY 1, 2 ORDER BY 3 DESC "
          "LIMIT 5")
    failures = Counter((r["_key"].split("/")[1].removeprefix("vendor="), r["action"]) for r in records
                       if r["outcome"] == "failure")
    for (vendor, action), count in failures.most_common(5):
        print(f"  {vendor:<8} {action:<32} {count:>5}")

    print("\nSELECT actor_email, count(DISTINCT vendor), count(*) FROM events GROUP BY 1 ORDER BY 2 DESC, 3 DESC "
          "LIMIT 3  -- who is active across tools")
    vendors_of: dict[str, set[str]] = {}
    counts: Counter[str] = Counter()
    for r in records:
        if r["actor_email"]:
            vendors_of.setdefault(r["actor_email"], set()).add(r["_key"].split("/")[1])
            counts[r["actor_email"]] += 1
    for email in sorted(vendors_of, key=lambda e: (-len(vendors_of[e]), -counts[e]))[:3]:
        print(f"  {email:<36} {len(vendors_of[email])} vendor(s) {counts[email]:>5} events")


if __name__ == "__main__":
    main()
