"""`make demo`: the collectors against local vendor simulators on in-process AWS, then a query over the archive.

The simulator serves real HTTP on 127.0.0.1; the collector reaches it through the secret's `base_url`, exactly
as it would reach the vendor. AWS is moto, built from template.yaml.
"""

from __future__ import annotations

import argparse
from collections import Counter
from datetime import UTC, datetime, timedelta

from auditlake_local.simulators import AsanaSimulator, generate_events, serve
from auditlake_local.stack import LocalStack

DEMO_TOKEN = "demo-service-account-token"  # noqa: S105 - the simulator's own token, not a credential
WORKSPACE_GID = "1201234567890123"
# The collectors' JSON logs and metrics are for CloudWatch; the demo prints its own summary instead.
QUIET = {"LOG_LEVEL": "WARNING", "POWERTOOLS_METRICS_DISABLED": "true"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=2500, help="events the simulated workspace holds")
    parser.add_argument("--days", type=int, default=7, help="how many days back the events reach")
    args = parser.parse_args(argv)

    now = datetime.now(UTC)
    simulator = AsanaSimulator(token=DEMO_TOKEN, workspace_gid=WORKSPACE_GID)
    simulator.add_events(generate_events(args.events, now - timedelta(days=args.days), now - timedelta(minutes=5),
                                         seed=7))
    with LocalStack.start() as stack, serve(simulator) as base_url:
        stack.put_secret("AsanaCollector", {"token": DEMO_TOKEN, "workspace_gid": WORKSPACE_GID,
                                            "base_url": f"{base_url}/api/1.0"})
        print(f"Asana simulator on {base_url}: {args.events} events over {args.days} days\n")
        tick = 0
        while True:
            tick += 1
            summary = stack.invoke("AsanaCollector", environment=QUIET)
            stream = summary["streams"][0]
            print(f"tick {tick}: {summary['status']:<8} archived {stream['events_archived']:>6} events in "
                  f"{stream['objects_written']} objects, {summary['http']['requests']} HTTP requests, "
                  f"done until {stream['done_until']}")
            if summary["status"] == "ok":
                break
        print(f"\nidle tick: {_idle_tick(stack)}")
        _report(stack, simulator)


def _idle_tick(stack: LocalStack) -> str:
    summary = stack.invoke("AsanaCollector", environment=QUIET)
    return (f"{summary['http']['requests']} HTTP request, {summary['s3']['objects']} S3 writes, "
            f"{summary['dynamodb_operations']} DynamoDB operations")


def _report(stack: LocalStack, simulator: AsanaSimulator) -> None:
    records = stack.archived_records()
    truth = simulator.ground_truth()
    ids = Counter(r["event_id"] for r in records)
    missing = len(set(truth) - set(ids))
    duplicates = sum(n - 1 for n in ids.values() if n > 1)
    objects = len({r["_key"] for r in records})
    print(f"\narchive: {len(records)} records in {objects} objects; against the simulator's ground truth: "
          f"missing {missing}, duplicates {duplicates}\n")

    print("SELECT vendor, dt, count(*) FROM events GROUP BY 1, 2 ORDER BY 2 DESC  -- last 5 days")
    per_day = Counter((r["_key"].split("/")[1].removeprefix("vendor="), r["_key"].split("/")[2].removeprefix("dt="))
                      for r in records)
    for (vendor, day), count in sorted(per_day.items(), key=lambda item: item[0][1], reverse=True)[:5]:
        print(f"  {vendor:<8} {day}  {count:>6}")

    print("\nSELECT action, outcome, count(*) FROM events GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 5")
    for (action, outcome), count in Counter((r["action"], r["outcome"]) for r in records).most_common(5):
        print(f"  {action:<28} {outcome:<8} {count:>6}")

    print("\nfailed logins (action = 'user_login_failed'), newest 3:")
    failed = sorted((r for r in records if r["action"] == "user_login_failed"), key=lambda r: r["event_time"])
    for r in failed[-3:]:
        print(f"  {r['event_time']}  {r['actor_email'] or r['target_name']}  from {r['source_ip']}")


if __name__ == "__main__":
    main()
