"""`auditlake reconcile VENDOR --since DATE`: re-read what the vendor still holds, archive what the archive lacks."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from auditlake.timeutil import parse_time
from auditlake_cli import accounts
from auditlake_cli.output import Progress
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


def add_parser(commands: Any, where: argparse.ArgumentParser) -> None:
    reconcile = commands.add_parser("reconcile", parents=[where],
                                    help="re-read what the vendor holds, archive what the archive lacks",
                                    description="Re-reads the vendor's audit log from DATE (within its retention) "
                                                "up to what the live collection has completed, compares it by "
                                                "event id with the archive, and archives what is missing, exactly "
                                                "once. The stack also does this on its own schedule "
                                                "(ReconcileIntervalHours). Resumable: run it again after an "
                                                "interruption.")
    add_span_arguments(reconcile, first_day="the first day to re-read (UTC)",
                       account="re-read only this account's streams")
    reconcile.set_defaults(handler=cmd_reconcile)


def run_reconcile(invoke: Callable[[dict[str, Any]], dict[str, Any]], vendor: str, since: date, progress: Progress,
                  *, after_invocation: Callable[[], None] = lambda: None,
                  max_invocations: int | None = None, account: str | None = None) -> BackfillReport:
    """Invokes the collector in reconciliation mode until every stream's reconciliation from `since` is complete
    (see run_spans); `account` limits it to that account's streams (None: every account)."""
    asked_at = datetime.now(UTC)

    def was_earlier(spans: list[dict[str, Any]], _step: BackfillProgress) -> bool:
        # A reconciliation the schedule had begun is finished first.
        return any(span.get("started_at") and parse_time(span["started_at"]) < asked_at for span in spans)

    job = SpanJob("reconciliation", span_event("reconcile", since, account), was_earlier, "nothing to re-read yet",
                  "missing event(s) archived")
    return run_spans(invoke, accounts.label(vendor, account), job, progress, after_invocation=after_invocation,
                     max_invocations=max_invocations)


def cmd_reconcile(args: argparse.Namespace) -> int:
    since = past_date(args.since)
    chosen = accounts.label(args.vendor, args.account)
    with target(args, vendors=[args.vendor]) as where:
        accounts.require_collected(where, args.vendor, args.account)
        print(f"reconciling {chosen} from {since.isoformat()} on {where.name}")
        report = run_reconcile(lambda event: invoke_saving(where, args.vendor, event, "reconciliation"),
                               args.vendor, since, Progress(sys.stdout), after_invocation=where.save,
                               max_invocations=args.max_invocations, account=args.account)
    if not report.complete:
        print(f"stopped after {report.invocations} invocation(s), {report.progress * 100:.0f}% done; run the same "
              "command again to continue where it stopped")
    elif report.events:
        print(f"reconciliation complete: {report.events:,} event(s) the live collection had missed are archived "
              f"now ({report.invocations} invocation(s)); `auditlake status` shows which streams")
    else:
        print(f"reconciliation complete: the archive holds every event {chosen} still holds from "
              f"{since.isoformat()} on ({report.invocations} invocation(s))")
    return 0


