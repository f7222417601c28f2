"""Driving a collector through a span of history, invocation after invocation: a backfill or a reconciliation.

Each invocation returns when its deadline nears, with its state committed, so the loop can stop anywhere and a
later run continues where it stopped.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from auditlake.errors import AuditlakeError
from auditlake.timeutil import parse_time
from auditlake_cli import accounts, target
from auditlake_cli.errors import CliError
from auditlake_cli.output import Progress, moment
from auditlake_vendors import VENDORS


@dataclass
class BackfillReport:
    invocations: int = 0
    events: int = 0
    complete: bool = False
    since: datetime | None = None  # the earliest start any stream's span has
    progress: float = 0.0


@dataclass(frozen=True)
class BackfillProgress:
    fraction: float  # of the streams' spans, weighted by their length
    since: datetime | None  # the earliest start of any stream's span (None: no stream has anything to fetch)
    until: datetime | None
    done_until: datetime | None  # the furthest any stream has reached


def backfill_progress(summary: dict[str, Any]) -> BackfillProgress:
    """Progress of a stream: the collector's `progress` (open window included), else (done_until - since) /
    (until - since); the whole is weighted by span length."""
    total = done = 0.0
    since: datetime | None = None
    until: datetime | None = None
    reached: datetime | None = None
    for stream in summary.get("streams", []):
        span = stream.get("backfill") or {}
        if not span.get("since") or not span.get("until"):
            continue
        start, end = parse_time(span["since"]), parse_time(span["until"])
        at = parse_time(span["done_until"]) if span.get("done_until") else start
        length = max(0.0, (end - start).total_seconds())
        total += length
        if isinstance(span.get("progress"), int | float):  # the collector's own count, open window included
            done += length * min(1.0, max(0.0, float(span["progress"])))
        else:
            done += min(max(0.0, (at - start).total_seconds()), length)
        since = start if since is None else min(since, start)
        until = end if until is None else max(until, end)
        reached = at if reached is None else max(reached, at)
    return BackfillProgress(1.0 if total <= 0 else done / total, since, until, reached)


def add_span_arguments(parser: argparse.ArgumentParser, *, first_day: str, account: str) -> None:
    """The arguments a backfill and a reconciliation share: the vendor, the first day, a limit, the account."""
    parser.add_argument("vendor", choices=VENDORS, metavar="VENDOR", help=", ".join(VENDORS))
    parser.add_argument("--since", required=True, metavar="YYYY-MM-DD", help=first_day)
    parser.add_argument("--max-invocations", type=int, metavar="N",
                        help="stop after N collector invocations (run again to continue)")
    accounts.add_argument(parser, account)


def span_event(mode: str, since: date, account: str | None) -> dict[str, Any]:
    """The collector's event for a span from `since`: `{"backfill": {"since": ..., "account": ...}}`."""
    request: dict[str, Any] = {"since": since.isoformat()}
    if account is not None:
        request["account"] = account
    return {mode: request}


@dataclass(frozen=True)
class SpanJob:
    """What differs between driving a backfill and a reconciliation to the end of their spans."""

    kind: str  # the summary's key for each stream's span: "backfill" or "reconciliation"
    event: dict[str, Any]
    # Whether a completed round was an earlier, unfinished span the collector finished first, so that one more
    # round is needed for the one asked for.
    was_earlier: Callable[[list[dict[str, Any]], BackfillProgress], bool]
    nothing: str  # the label when no stream has a span
    counted: str  # what the archived events are, in the progress line


def run_spans(invoke: Callable[[dict[str, Any]], dict[str, Any]], vendor: str, job: SpanJob, progress: Progress,
              *, after_invocation: Callable[[], None] = lambda: None,
              max_invocations: int | None = None) -> BackfillReport:
    """Invokes the collector with `job.event` until it reports every stream's span complete (or
    `max_invocations`).

    Each invocation returns when its deadline nears, with its state committed, so the loop can stop anywhere and
    a later run continues. A stream held by another run reports `busy`: the loop waits for it. When an earlier
    unfinished span is finished first, one more round does the one asked for.
    """
    report = BackfillReport()
    busy_waits = rounds = 0
    while max_invocations is None or report.invocations < max_invocations:
        summary = invoke(job.event)
        report.invocations += 1
        after_invocation()
        streams = summary.get("streams")
        if streams is None or not all(job.kind in s for s in streams):
            raise CliError(f"the {vendor} collector does not support {job.kind} (its summary has no {job.kind} "
                           "span); deploy the current version")
        report.events += sum(int(s.get("events_archived") or 0) for s in streams)
        spans = [s[job.kind] for s in streams if s.get(job.kind)]
        step = backfill_progress({"streams": [{"backfill": span} for span in spans]})
        report.progress, report.since = step.fraction, step.since
        label = job.nothing if step.since is None else \
            f"{moment(step.since)} .. {moment(step.until)}, done until {moment(step.done_until)}"
        progress.update(report.progress, f"{vendor}  {label}  {report.events:,} {job.counted}, "
                                         f"{report.invocations} invocation(s)")
        busy = [s["stream"] for s in streams if s.get("status") == "busy"]
        if busy:
            busy_waits += 1
            if busy_waits > target.MAX_BUSY_WAITS:
                raise CliError(f"{', '.join(busy)} stayed busy with another run; try again later")
            target.sleep(target.BUSY_WAIT_SECONDS)
            continue
        if summary.get("status") != "ok":
            continue
        if rounds == 0 and job.was_earlier(spans, step):
            rounds += 1
            continue
        report.complete = True
        break
    progress.close()
    return report




def invoke_saving(where: target.Target, vendor: str, event: dict[str, Any], what: str = "backfill") -> dict[str, Any]:
    """One invocation; a demo workspace is saved after it even when it failed, since a failed run commits what
    is safe (so the archive and the state saved together stay consistent)."""
    try:
        return where.invoke(vendor, event)
    except AuditlakeError as exc:
        where.save()
        raise CliError(f"the {vendor} {what} failed: {exc}") from None


def past_date(text: str) -> date:
    try:
        value = date.fromisoformat(text)
    except ValueError:
        raise CliError(f"--since takes a date as YYYY-MM-DD, not {text!r}") from None
    if value >= datetime.now(UTC).date():
        raise CliError(f"--since {text} is not in the past")
    return value


