"""`auditlake status`: per stream, where its cursor is, how fresh the archive is, its last run and backlog; then the
backfills, the reconciliations and the last errors. Each row names the stream's account (`--account` shows one). Of
a deployed stack, it ends with the console URL of the stack's CloudWatch dashboard (its DashboardUrl output)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from auditlake.state import Kind, StreamState
from auditlake.timeutil import parse_time
from auditlake_cli import accounts
from auditlake_cli.errors import CliError
from auditlake_cli.output import duration, moment, table
from auditlake_cli.target import StackTarget, target


def add_parser(commands: Any, where: argparse.ArgumentParser) -> None:
    status = commands.add_parser("status", parents=[where], help="per stream: cursor, freshness, last run, backlog",
                                 description="Per stream: where its cursor is (done until), how old its newest "
                                             "archived event is, its last run and outcome, and the backlog left; "
                                             "each stream's account (a vendor's first secret is `default`).")
    status.add_argument("--account", type=accounts.name, metavar="NAME",
                        help="only the streams of this account, of any vendor (`default`: each vendor's first)")
    status.set_defaults(handler=cmd_status)


def status_table(states: list[StreamState], now: datetime | None = None) -> str:
    """The streams' table, then (if any) the backfills' table, then the last errors. The account is each table's
    second column; the states come sorted by key, so a vendor's default account comes first, then its named ones."""
    now = now or datetime.now(UTC)
    if not states:
        return "no stream has been collected yet"
    streams, backfills, reconciliations, notes = [], [], [], []
    for state in states:
        run = state.status or {}
        last_run = parse_time(run["last_run_at"]) if run.get("last_run_at") else None
        last = "-" if last_run is None else f"{moment(last_run)} ({duration((now - last_run).total_seconds())} ago)"
        outcome = run.get("last_outcome", "-")
        key = state.stream_key
        account = key.account_name
        if key.kind is Kind.RECONCILE:
            reconciliations.append(reconciliation_row(state, now, outcome))
        elif state.backfill is not None or key.kind is Kind.BACKFILL:
            span = state.backfill
            if span is None:
                backfills.append([str(key.live), account, "-", "-", "-", "-", last, outcome,
                                  state.events_archived])
            else:
                done = state.done_until or span.since
                total = (span.until - span.since).total_seconds()
                fraction = run.get("backfill_progress")
                if not isinstance(fraction, int | float):
                    fraction = 1.0 if total <= 0 else min(1.0, (done - span.since).total_seconds() / total)
                backfills.append([str(key.live), account, moment(span.since), moment(span.until),
                                  moment(done), f"{fraction * 100:.0f}%", last, outcome, state.events_archived])
        else:
            position = moment(state.done_until)
            if state.window is not None:
                position += f" (window to {moment(state.window.planned_end)} open)"
            freshness = "-" if state.newest_event_time is None else \
                duration((now - state.newest_event_time).total_seconds())
            backlog = duration(run.get("backlog_seconds")) if run else "-"
            streams.append([state.key, account, position, freshness, last, outcome, backlog, state.events_archived])
        if run.get("last_error"):
            notes.append(f"{state.key}: {run['last_error']}")
    parts = []
    if streams:
        parts.append(table(["stream", "account", "done until", "freshness", "last run", "outcome", "backlog",
                            "archived"], streams))
    if backfills:
        parts.append("backfills:\n" + table(["stream", "account", "since", "until", "done until", "progress",
                                             "last run", "outcome", "archived"], backfills))
    if reconciliations:
        parts.append("reconciliations (events found are ones the live collection missed):\n" + table(
            ["stream", "account", "since", "until", "progress", "began", "completed", "found", "outcome"],
            reconciliations))
    if notes:
        parts.append("last errors:\n" + "\n".join(f"  {note}" for note in notes))
    return "\n\n".join(parts)


def reconciliation_row(state: StreamState, now: datetime, outcome: str) -> list[Any]:
    """A reconciliation stream's last (or current) reconciliation: its span, how far it is, what it found."""
    last = state.reconciliation or {}
    began = parse_time(last["started_at"]) if last.get("started_at") else None
    completed = parse_time(last["completed_at"]) if last.get("completed_at") else None
    fraction = (state.status or {}).get("backfill_progress")
    progress = "done" if completed else f"{fraction * 100:.0f}%" if isinstance(fraction, int | float) else "-"
    return [str(state.stream_key.live), state.stream_key.account_name, last.get("since", "-")[:10] if last else "-",
            last.get("until", "-")[:16].replace("T", " ") if last else "-", progress,
            "-" if began is None else f"{moment(began)} ({duration((now - began).total_seconds())} ago)",
            "-" if completed is None else moment(completed), last.get("found", 0), outcome]


def cmd_status(args: argparse.Namespace) -> int:
    with target(args) as where:
        states = where.states()
        if args.account is not None:
            states = of_account(states, args.account)
        shown = "" if args.account is None else f", account {args.account}"
        print(f"{where.name}, at {moment(datetime.now(UTC))}{shown}:\n")
        print(status_table(states))
        # A stack deployed before the dashboard existed has no such output: nothing to link then.
        if isinstance(where, StackTarget) and where.outputs.get("DashboardUrl"):
            print(f"\ndashboard: {where.outputs['DashboardUrl']}")
    return 0


def of_account(states: list[StreamState], account: str) -> list[StreamState]:
    """The states of one account's streams; a name no stream has is refused, naming those that exist."""
    chosen = [state for state in states if state.stream_key.account_name == account]
    if not chosen and states:
        known = sorted({state.stream_key.account_name for state in states})
        raise CliError(f"no stream of account {account} has been collected yet; the streams' accounts are "
                       f"{', '.join(known)}")
    return chosen


