"""The demo: every collector against its local vendor simulator on in-process AWS, checked against the vendors.

Each simulator serves real HTTP on 127.0.0.1; its collector reaches it through the secret's `base_url`, exactly
as it would reach the vendor. AWS is moto, built from template.yaml, with `InitialLookbackDays` small so that
older history is left for `auditlake backfill`. Then each vendor publishes a few events a day late, and a
reconciliation finds them. Make runs two organizations in different zones, as after an acquisition: the default
one (eu1) and the account `us-subsidiary` (us1), each with its own token and simulator, collected by the one Make
collector and checked apart. Everything ends up in a workspace (see workspace.py) that the
other `auditlake` commands use. `auditlake demo` runs this and then answers saved queries and shows the status.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from auditlake_cli.main import main as cli
from auditlake_cli.probe import build_adapter
from auditlake_local import workspace
from auditlake_local.vendors import VENDORS, every_account
from auditlake_local.workspace import Workspace

MAX_TICKS = 20


@dataclass(frozen=True)
class Check:
    """One account's archive against its simulator's ground truth, over the span the collector was asked for."""

    vendor: str
    account: str  # `default`, or the named account (`us-subsidiary`)
    since: datetime  # the first window started at or after this instant (and not much later)
    expected: int  # ground-truth events certainly inside the collected span
    archived: int
    objects: int
    missing: int
    duplicates: int
    unexpected: int  # archived records that are no ground-truth event of the span
    older: int  # ground-truth events before the span: what `auditlake backfill` can still collect

    @property
    def key(self) -> str:
        return self.vendor if self.account == "default" else f"{self.vendor}@{self.account}"


def run(directory: Path, *, events: int, days: int, lookback_days: int,
        then: Callable[[Workspace], None] | None = None) -> list[Check]:
    """Creates the workspace: each account's simulator seeded with `events` over `days`, the collectors run until
    caught up, everything saved, and each account's archive checked against its simulator; `then` runs on the
    workspace last."""
    now = datetime.now(UTC)
    seeded = {key: local.generate_events(events, now - timedelta(days=days), now - timedelta(minutes=5), seed)
              for seed, (key, local) in enumerate(every_account().items(), start=7)}
    manifest = {"created_at": now.isoformat(timespec="seconds"), "events": events, "days": days,
                "lookback_days": lookback_days}
    with workspace.create(directory, seeded, manifest) as ws:
        named = [key for key, local in ws.accounts.items() if local.account is not None]
        print(f"{len(ws.accounts)} vendor simulators on 127.0.0.1 ({len(VENDORS)} vendors; further accounts: "
              f"{', '.join(named) or 'none'}), {events} events each over {days} days; the collectors reach back "
              f"{lookback_days} days (InitialLookbackDays), the rest is left for `auditlake backfill`\n")
        spans = {vendor: _collect(ws, vendor) for vendor in VENDORS}
        for seed, vendor in enumerate(VENDORS, start=70):
            _reconcile(ws, vendor, late_events=late_events(events), seed=seed)
        ws.save()
        checks = [_check(ws, key, *spans[local.vendor]) for key, local in ws.accounts.items()]
        _print_checks(checks)
        if then is not None:
            then(ws)
    return checks


def _collect(ws: Workspace, vendor: str) -> tuple[datetime, datetime]:
    """Ticks until caught up; returns the bounds between which the first window's start must lie."""
    lookback = timedelta(days=ws.lookback_days)
    first_from = datetime.now(UTC) - lookback
    first_to = first_from
    for tick in range(1, MAX_TICKS + 1):
        summary = ws.invoke(vendor)
        if tick == 1:
            first_to = datetime.now(UTC) - lookback
        archived = sum(stream["events_archived"] for stream in summary["streams"])
        accounts = len({stream.get("account", "default") for stream in summary["streams"]})
        print(f"{vendor:<8} tick {tick}: {summary['status']:<8} archived {archived:>6} events in "
              f"{summary['s3']['objects']:>3} objects, {summary['http']['requests']:>4} HTTP requests, "
              f"{len(summary['streams'])} stream(s){f' of {accounts} accounts' if accounts > 1 else ''}")
        if summary["status"] == "ok":
            break
    idle = ws.invoke(vendor)
    print(f"{vendor:<8} idle tick: {idle['http']['requests']} HTTP requests, {idle['s3']['objects']} S3 "
          f"writes, {idle['dynamodb_operations']} DynamoDB operations\n")
    return first_from, first_to


def late_events(events: int) -> int:
    """How many events each simulated vendor publishes a day late, beside the `events` it holds."""
    return max(1, events // 100)


def _reconcile(ws: Workspace, vendor: str, *, late_events: int, seed: int) -> None:
    """Each account of the vendor publishes events from a day ago only now, long after the live collection read
    that time; the reconciliation (what the stack's hourly `reconcile` schedule does once a day) finds and archives
    them."""
    now = datetime.now(UTC)
    published = 0
    for offset, (key, local) in enumerate((k, a) for k, a in ws.accounts.items() if a.vendor == vendor):
        ws.publish_late(key, local.generate_events(late_events, now - timedelta(days=1, hours=1),
                                                   now - timedelta(days=1), seed + 100 * offset))
        published += late_events
    found = requests = 0
    for _ in range(MAX_TICKS):
        summary = ws.invoke(vendor, {"reconcile": {}})
        found += sum(stream["events_archived"] for stream in summary["streams"])
        requests += summary["http"]["requests"]
        if summary["status"] == "ok":
            break
    spans = [s["reconciliation"] for s in summary["streams"] if s.get("reconciliation")]
    days = max(((datetime.fromisoformat(r["until"]) - datetime.fromisoformat(r["since"])).total_seconds() / 86400
                for r in spans), default=0)
    print(f"{vendor:<8} reconciliation: {published} events published a day late; re-read {days:.1f} days in "
          f"{requests} HTTP requests, found and archived {found} the live collection had missed")


def _canonical(event: Any) -> str:
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _check(ws: Workspace, key: str, first_from: datetime, first_to: datetime) -> Check:
    """Compares one account's records (by their `account` column) with its simulator, by the events' content
    (`raw` verbatim). The first window starts at `now - lookback` as the collector saw it, somewhere in
    [first_from, first_to]: events in that gap of a few milliseconds may or may not be collected, so they count
    neither as missing nor as unexpected."""
    local = ws.accounts[key]
    vendor = local.vendor
    secret = json.loads(ws.secret(vendor, local.account))
    adapter = build_adapter(vendor, secret)
    truth_inside: Counter[str] = Counter()
    maybe: set[str] = set()
    older = 0
    for event in ws.simulators[key].ground_truth().values():
        moment = adapter.event_time(event)
        if moment >= first_to:
            truth_inside[_canonical(event)] += 1
        elif moment >= first_from:
            maybe.add(_canonical(event))
        else:
            older += 1
    records = [r for r in ws.stack.archived_records(vendor) if r.get("account") == local.account_name]
    archived = Counter(_canonical(json.loads(r["raw"])) for r in records)
    # Compared as multisets: ClickUp rows without an id can be byte-identical (a burst of failed logins in one
    # millisecond), and are then as many events as copies.
    extra = archived - truth_inside
    return Check(
        vendor=vendor, account=local.account_name, since=first_from, expected=sum(truth_inside.values()),
        archived=len(records),
        objects=len({r["_key"] for r in records}), missing=sum((truth_inside - archived).values()),
        duplicates=sum(n for c, n in extra.items() if c in truth_inside) + sum(n - 1 for c, n in extra.items()
                                                                                if c in maybe and n > 1),
        unexpected=sum(n for c, n in extra.items() if c not in truth_inside and c not in maybe),
        older=older,
    )


def _print_checks(checks: list[Check]) -> None:
    print("archive against each simulator's ground truth since the first window (compared by the events' content):")
    width = max(len(c.key) for c in checks)
    for c in checks:
        print(f"  {c.key:<{width}} {c.archived:>6} records in {c.objects:>3} objects; missing {c.missing}, duplicates "
              f"{c.duplicates}, unexpected {c.unexpected}; {c.older} older events left for backfill")
    print()


def main(argv: list[str] | None = None) -> None:
    """`python -m auditlake_local.demo`: the same as `auditlake demo`."""
    raise SystemExit(cli(["demo", *(sys.argv[1:] if argv is None else argv)]))


if __name__ == "__main__":
    main()
