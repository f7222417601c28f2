"""The benchmark: `make bench` (or `python -m auditlake_local.bench`). A script, not a test.

For each vendor and backlog size, three processes: the outside world (the vendor's simulator and the stack on a
moto server, bench_world.py), the collector (bench_collector.py: the function imported as Lambda would, invoked
until the backlog is archived, then once more with nothing new), and this driver, which prints one table per
measurement and writes them all as JSON. The collector's CPU time is its own process's: neither the simulator's
nor AWS's is counted.

- backfills: events per second, the collector's CPU time per event, peak memory (resident set), HTTP requests
  against the minimum (per stream: events // largest page, plus the request that finds the end), S3 objects and
  bytes, DynamoDB reads and writes, and the archive checked against the simulator's ground truth;
- the idle tick after the smallest backfill: requests, S3 writes, DynamoDB operations, wall time;
- the requests that only confirmed a window's end (an empty page, since a short page is never taken for the end);
- a reconciliation per vendor: 7 days at 10,000 events a day collected in five-minute ticks, then re-read whole:
  requests, S3 reads, DynamoDB operations, wall time (unpaced here; paced, at its share of the rate limit);
- live collection per vendor: a day of scheduled five-minute ticks at the typical deployment's rate (cost.py), with
  every AWS operation, DynamoDB request unit, uploaded and logged byte and custom metric counted; the monthly cost
  table (cost.py) is computed from it and printed last;
- a rate-limited backfill per vendor, on virtual time against a simulator enforcing the limit (bench_pacing.py);
- throughput at real latency: a backfill per vendor and limit against a simulator that answers in 0, 100 ± 40 and
  250 ± 100 ms and enforces the limit, paced in real time: requests per minute against the limit, 429s, peak memory,
  the archive checked exactly once, and the idle tick after it;
- per function, the deployment package (`sam build`) and the cold import of its handler (packages.py).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import auditlake_vendors
from auditlake.settings import Settings
from auditlake_local import cost, packages
from auditlake_local.bench_pacing import rate_limited_backfill
from auditlake_local.vendors import VENDORS

DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
LARGEST_PAGE = 100  # every vendor's documented maximum page (ClickUp's is undocumented; it is asked for 100)
BACKLOG_DAYS = 30
DEFAULT_REPORT = Path(".auditlake/bench.json")
SKIPPABLE = ("latency", "rate-limited", "packages", "reconcile", "live")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vendor", action="append", choices=list(VENDORS), help="repeatable; default: all")
    parser.add_argument("--sizes", type=lambda text: [int(n) for n in text.split(",")], default=list(DEFAULT_SIZES),
                        help="backlog sizes, comma-separated (default: %(default)s)")
    parser.add_argument("--json", type=Path, default=DEFAULT_REPORT, help="where to write the report")
    parser.add_argument("--latency-seconds", type=float, default=LATENCY_SECONDS,
                        help="how long each run of the latency table lasts at the limit (default: %(default)s)")
    parser.add_argument("--skip", action="append", default=[], metavar="|".join(SKIPPABLE),
                        help="leave out measurements (repeatable, or comma-separated)")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="profile each backfill's collector with cProfile into DIR/<vendor>-<events>.prof "
                             "(read with python -m pstats); its CPU figures are then inflated by the profiler")
    args = parser.parse_args(argv)
    args.skip = [name for value in args.skip for name in value.split(",")]
    if unknown := set(args.skip) - set(SKIPPABLE):
        parser.error(f"--skip: unknown {', '.join(sorted(unknown))} (choose from {', '.join(SKIPPABLE)})")
    vendors = args.vendor or list(VENDORS)

    backfills = [backfill(vendor, size, args.profile) for vendor in vendors for size in args.sizes]
    report: dict[str, Any] = {"backfills": [row for row, _ in backfills],
                              "idle_ticks": [idle for row, idle in backfills if row["events"] == min(args.sizes)],
                              "memory": memory_flatness([row for row, _ in backfills])}
    print_table("Backfills", report["backfills"])
    print_table("Peak memory, largest backlog against smallest", report["memory"])
    print_table("Idle tick (nothing new), after the smallest backfill", report["idle_ticks"])
    if "latency" not in args.skip:
        report["latency"] = [throughput(vendor, limit, latency, args.latency_seconds)
                             for vendor, limit in LATENCY_LIMITS if vendor in vendors for latency in LATENCIES]
        print_table(f"Throughput at real latency: backfills paced in real time against a simulator enforcing the "
                    f"limit, about {args.latency_seconds:g} s of requests each", report["latency"])
    if "reconcile" not in args.skip:
        report["reconciliations"] = [reconciliation(vendor) for vendor in vendors]
        print_table(f"Reconciliation of {RECONCILE_DAYS} days at {RECONCILE_PER_DAY:,} events a day (after live "
                    "ticks five minutes apart)", report["reconciliations"])
    if "live" not in args.skip:
        report["live"] = [live(vendor) for vendor in vendors]
        print_table(f"Live collection: {LIVE_HOURS} h of five-minute ticks at {LIVE_PER_DAY:,} events a day per vendor",
                    [{k: v for k, v in row.items() if not isinstance(v, dict | list)} for row in report["live"]])
    if "rate-limited" not in args.skip:
        report["rate_limited"] = [rate_limited_backfill(VENDORS[vendor]) for vendor in vendors]
        print_table("Rate-limited backfill (virtual time; the simulator enforces the limit)", report["rate_limited"])
    if "packages" not in args.skip:
        with tempfile.TemporaryDirectory(prefix="auditlake-build-") as scratch:
            packages.sam_build(Path(scratch) / "build")
            report["packages"] = packages.package_report(Path(scratch) / "build")
        print("\nDeployment packages (sam build) and cold imports")
        print(packages.format_table(report["packages"]))
        for problem in packages.problems(report["packages"]):
            print(f"PROBLEM: {problem}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {args.json}")
    if "live" in report:
        print()
        print(cost.format_report(cost.estimate(cost.Measured.from_report(report), cost.Deployment())))


def in_world(vendor: str, events: int, start: datetime, end: datetime, collector_args: tuple[str, ...] = (),
             world_args: tuple[str, ...] = (), **collector_input: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """A world process with `events` between `start` and `end`, a collector process run against it, and the
    archive then checked against the simulator's ground truth: (the collector's result, the check, with the
    simulator's counters under `simulator`)."""
    world = subprocess.Popen(  # noqa: S603 (this interpreter, this package's modules, our arguments)
        [sys.executable, "-m", "auditlake_local.bench_world", "--vendor", vendor, "--events", str(events),
         "--start", start.isoformat(), "--end", end.isoformat(), *world_args],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert world.stdin is not None and world.stdout is not None
    try:
        where = world.stdout.readline()
        if not where:
            raise SystemExit(f"{vendor}: the benchmark's world process did not start (see its error above)")
        collector = subprocess.run(  # noqa: S603 (as above)
            [sys.executable, "-m", "auditlake_local.bench_collector", *collector_args],
            input=json.dumps({**json.loads(where), **collector_input}) + "\n",
            capture_output=True, text=True, check=False)
        if collector.returncode != 0:
            raise SystemExit(f"{vendor}: the collector process failed:\n{collector.stderr[-3000:]}")
        run = json.loads(collector.stdout.splitlines()[-1])  # the result is the last line, after any warnings
        world.stdin.write("check\nstats\n")
        world.stdin.flush()
        archive = json.loads(world.stdout.readline())
        archive["simulator"] = json.loads(world.stdout.readline())
        world.stdin.write("quit\n")
        world.stdin.flush()
    finally:
        world.wait(timeout=60)
    return run, archive


RECONCILE_DAYS = 7
RECONCILE_PER_DAY = 10_000


def reconciliation(vendor: str) -> dict[str, Any]:
    """The cost of one scheduled reconciliation over a week the live collection archived in five-minute ticks."""
    end = datetime.now(UTC) - timedelta(minutes=15)
    start = end - timedelta(days=RECONCILE_DAYS, hours=1)
    run, archive = in_world(vendor, RECONCILE_PER_DAY * RECONCILE_DAYS, start, end, ("--reconcile",),
                            first_event=start.isoformat(), reconcile_days=RECONCILE_DAYS)
    limit = auditlake_vendors.adapter(vendor).rate_limit_per_minute
    share = Settings.reconcile_rate_percent / 100  # the template's default share
    row = {
        "vendor": vendor,
        "live_ticks": run["live"]["invocations"],
        "reread_events": archive["archived"],
        "found": run["events"],
        "invocations": run["invocations"],
        "http_requests": run["http_requests"],
        "s3_gets": run["s3_calls"].get("GetObject", 0),
        "s3_lists": run["s3_calls"].get("ListObjectsV2", 0),
        "s3_puts": run["s3_calls"].get("PutObject", 0),
        "ddb_reads": run["dynamodb_reads"],
        "ddb_writes": run["dynamodb_writes"],
        "wall_s_unpaced": round(run["wall_seconds"], 1),
        # At its share of the documented limit, the requests alone take this long.
        "paced_minutes": round(run["http_requests"] / (limit * share), 1),
        "missing": archive["missing"],
        "duplicates": archive["duplicates"],
    }
    print(f"{vendor:8} reconciliation: {row['http_requests']} requests, {row['s3_gets']} S3 GETs, "
          f"found {row['found']}, missing {row['missing']}, duplicates {row['duplicates']}", flush=True)
    return row


LIVE_HOURS = 24
LIVE_PER_DAY = 5_000  # the typical deployment's 20,000 events a day over four vendors (cost.py)


def live(vendor: str, hours: float = LIVE_HOURS) -> dict[str, Any]:
    """Scheduled five-minute ticks at the typical rate: what one tick and one event cost in AWS operations."""
    end = datetime.now(UTC) - timedelta(minutes=15)
    start = end - timedelta(hours=hours)
    run, archive = in_world(vendor, round(LIVE_PER_DAY * hours / 24), start, end, ("--live",),
                            first_event=start.isoformat(), last_tick=end.isoformat())
    durations = run["durations_s"]
    row = {
        "vendor": vendor,
        "ticks": run["invocations"],
        "streams": run["streams"],
        "events": run["events"],
        "http_requests": run["http_requests"],
        "event_bytes": run["s3_bytes"],
        "mean_ms": round(sum(durations) / len(durations) * 1000, 1),
        "p95_ms": round(durations[int(len(durations) * 0.95)] * 1000, 1),
        "log_bytes": run["log_bytes"],
        "custom_metrics": run["custom_metrics"],
        "missing": archive["missing"],
        "duplicates": archive["duplicates"],
        "aws_calls": run["aws_calls"],
        "units": run["units"],
    }
    print(f"{vendor:8} live: {row['ticks']} ticks, {row['events']} events, {row['mean_ms']} ms a tick, "
          f"{sum(row['aws_calls'].values())} AWS calls, missing {row['missing']}, duplicates {row['duplicates']}",
          flush=True)
    return row


def backfill(vendor: str, events: int, profile: Path | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """One backlog archived by a fresh collector process; the row for the table, and the idle tick after it."""
    end = datetime.now(UTC) - timedelta(minutes=5)
    profiling: tuple[str, ...] = ()
    if profile is not None:
        profile.mkdir(parents=True, exist_ok=True)
        profiling = ("--profile", str(profile / f"{vendor}-{events}.prof"))
    run, archive = in_world(vendor, events, end - timedelta(days=BACKLOG_DAYS), end, profiling)
    minimum = sum(count // LARGEST_PAGE + 1 for count in archive["per_stream"].values()) or 1
    row = {
        "vendor": vendor,
        "events": events,
        "invocations": run["invocations"],
        "wall_s": round(run["wall_seconds"], 1),
        "events_per_s": round(run["events"] / run["wall_seconds"]) if run["wall_seconds"] else 0,
        "cpu_us_per_event": round(run["cpu_seconds"] / max(run["events"], 1) * 1e6, 1),
        "peak_rss_mib": round(run["peak_rss_mib"], 1),
        "rss_after_import_mib": round(run["rss_after_import_mib"], 1),
        "http_requests": run["http_requests"],
        "http_minimum": minimum,
        "windows": run["windows"],
        "end_pages": run["end_pages"],
        "http_429s": run["http_throttles"],
        "s3_objects": run["s3_objects"],
        "s3_mib": round(run["s3_bytes"] / 2**20, 2),
        "ddb_reads": run["dynamodb_reads"],
        "ddb_writes": run["dynamodb_writes"],
        "archived": archive["archived"],
        "missing": archive["missing"],
        "duplicates": archive["duplicates"],
    }
    idle = {"vendor": vendor, "streams": run["idle"]["streams"], "http_requests": run["idle"]["http_requests"],
            "s3_writes": run["idle"]["s3_objects"], "ddb_reads": run["idle"]["dynamodb_reads"],
            "ddb_writes": run["idle"]["dynamodb_writes"], "wall_ms": round(run["idle"]["wall_seconds"] * 1000),
            "events": run["idle"]["events"]}
    print(f"{vendor:8} {events:>9,} events: {row['events_per_s']:>7,}/s, {row['cpu_us_per_event']} µs CPU/event, "
          f"peak {row['peak_rss_mib']} MiB, {row['http_requests']} requests (minimum {minimum}), "
          f"missing {row['missing']}, duplicates {row['duplicates']}", flush=True)
    return row, idle


# The latency table: each vendor at its documented limit, and ClickUp also at its Business Plus limit (audit logs need
# Enterprise's 10,000; a token on a workspace that also serves other integrations may have less to spend).
LATENCY_LIMITS = (("asana", 1500), ("make", 1000), ("clickup", 1000), ("clickup", 10_000), ("ashby", 300))
LATENCIES = ("0", "100+-40", "250+-100")
LATENCY_SECONDS = 30.0
PACE_SHARE = 0.95  # pacing.TARGET_SHARE: the pace a collector keeps at its limit


def throughput(vendor: str, limit: int, latency: str, seconds: float) -> dict[str, Any]:
    """A backfill paced in real time against a simulator that takes `latency` to answer and enforces `limit`:
    sized to take about `seconds` at the limit. Requests per minute are over the collector's own wall time."""
    events = round(limit * PACE_SHARE * seconds / 60 * LARGEST_PAGE)
    end = datetime.now(UTC) - timedelta(minutes=5)
    run, archive = in_world(vendor, events, end - timedelta(days=BACKLOG_DAYS), end,
                            world_args=("--latency", latency, "--enforce-limit", str(limit)),
                            pacing={"RATE_LIMIT_PER_MINUTE": str(limit)})
    per_minute = run["http_requests"] / run["wall_seconds"] * 60 if run["wall_seconds"] else 0.0
    row = {
        "vendor": vendor,
        "limit": limit,
        "latency_ms": latency.replace("+-", "±"),
        "events": events,
        "requests": run["http_requests"],
        "wall_s": round(run["wall_seconds"], 1),
        "req_per_min": round(per_minute),
        "of_limit_pct": round(per_minute / limit * 100, 1),
        "in_flight_max": archive["simulator"].get("peak_in_flight", 0),
        "http_429s": run["http_throttles"],
        "cpu_us_per_event": round(run["cpu_seconds"] / max(run["events"], 1) * 1e6, 1),
        "peak_rss_mib": round(run["peak_rss_mib"], 1),
        "missing": archive["missing"],
        "duplicates": archive["duplicates"],
        "idle_requests": run["idle"]["http_requests"],
        "idle_streams": run["idle"]["streams"],
    }
    print(f"{vendor:8} at {limit:,}/min, {row['latency_ms']:>9} ms: {row['req_per_min']:,} requests/min "
          f"({row['of_limit_pct']}% of the limit), {row['http_429s']} 429s, missing {row['missing']}, duplicates "
          f"{row['duplicates']}, idle tick {row['idle_requests']} requests for {row['idle_streams']} streams",
          flush=True)
    return row


def memory_flatness(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per vendor: peak memory at the largest backlog against the smallest (the target: within 15%)."""
    flatness = []
    for vendor in dict.fromkeys(row["vendor"] for row in rows):
        mine = sorted((row for row in rows if row["vendor"] == vendor), key=lambda row: row["events"])
        if len(mine) > 1:
            small, large = mine[0], mine[-1]
            flatness.append({"vendor": vendor, "small_events": small["events"], "small_mib": small["peak_rss_mib"],
                             "large_events": large["events"], "large_mib": large["peak_rss_mib"],
                             "growth_pct": round((large["peak_rss_mib"] / small["peak_rss_mib"] - 1) * 100, 1)})
    return flatness


def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n{title}")
    if not rows:
        print("  (none)")
        return
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(_cell(row[c])) for row in rows)) for c in columns}
    print("  ".join(c.rjust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(_cell(row[c]).rjust(widths[c]) for c in columns))


def _cell(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


if __name__ == "__main__":
    main()
