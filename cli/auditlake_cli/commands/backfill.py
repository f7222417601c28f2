"""`auditlake backfill VENDOR --since DATE`: history before the first collected window, exactly once."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from auditlake import planning
from auditlake_cli import accounts
from auditlake_cli.output import Progress, moment
from auditlake_cli.spans import (
    BackfillProgress,
    BackfillReport,
    SpanJob,
    add_span_arguments,
    invoke_saving,
    past_date,
    run_spans,
    span_event,
)
from auditlake_cli.target import target
from auditlake_vendors import adapter


def add_parser(commands: Any, where: argparse.ArgumentParser) -> None:
    backfill = commands.add_parser("backfill", parents=[where], help="collect history before the first window",
                                   description="Extends the archive backwards, from DATE to where collection "
                                               "began, within the vendor's retention, exactly once. Resumable: "
                                               "run it again after an interruption.")
    add_span_arguments(backfill, first_day="the first day to collect (UTC)",
                       account="backfill only this account's streams")
    backfill.set_defaults(handler=cmd_backfill)


def run_backfill(invoke: Callable[[dict[str, Any]], dict[str, Any]], vendor: str, since: date, progress: Progress,
                 *, after_invocation: Callable[[], None] = lambda: None, max_invocations: int | None = None,
                 starts_at: datetime | None = None, account: str | None = None) -> BackfillReport:
    """Invokes the collector in backfill mode until the history from `since` is archived (see run_spans);
    `starts_at` is where the vendor's retention lets that history start, if later than `since`; `account` limits
    it to that account's streams (None: every account)."""
    target_since = starts_at or datetime(since.year, since.month, since.day, tzinfo=UTC)

    def was_earlier(_spans: list[dict[str, Any]], step: BackfillProgress) -> bool:
        # An unfinished earlier backfill (from a later date) is finished first. An hour of tolerance absorbs the
        # retention bound moving while this runs.
        return step.since is not None and step.since - target_since > timedelta(hours=1)

    job = SpanJob("backfill", span_event("backfill", since, account), was_earlier,
                  "nothing to fetch before the first collected window", "events")
    return run_spans(invoke, accounts.label(vendor, account), job, progress, after_invocation=after_invocation,
                     max_invocations=max_invocations)


def cmd_backfill(args: argparse.Namespace) -> int:
    since = past_date(args.since)
    asked = datetime(since.year, since.month, since.day, tzinfo=UTC)
    starts_at = planning.reachable(adapter(args.vendor), asked, datetime.now(UTC))
    if starts_at > asked:
        print(f"{args.vendor} keeps its audit log back to {moment(starts_at)}; the backfill starts there")
    with target(args, vendors=[args.vendor]) as where:
        accounts.require_collected(where, args.vendor, args.account)
        print(f"backfilling {accounts.label(args.vendor, args.account)} from {since.isoformat()} on {where.name}")
        report = run_backfill(lambda event: invoke_saving(where, args.vendor, event), args.vendor, since,
                              Progress(sys.stdout), after_invocation=where.save, max_invocations=args.max_invocations,
                              starts_at=starts_at, account=args.account)
    if report.complete:
        print(f"backfill complete: {report.events:,} events archived in {report.invocations} invocation(s)")
    else:
        print(f"stopped after {report.invocations} invocation(s), {report.progress * 100:.0f}% done; run the same "
              "command again to continue where it stopped")
    return 0


