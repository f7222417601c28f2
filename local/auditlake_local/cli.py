"""`auditlake`: the operator's command line, against a deployed stack (`--stack NAME`) or the local demo.

    auditlake demo                                   simulators + in-process AWS, every collector, then queries
    auditlake status                                 per stream: cursor, freshness, last run, backlog
    auditlake backfill VENDOR --since YYYY-MM-DD     history before the first collected window, exactly once
    auditlake reconcile VENDOR --since YYYY-MM-DD    re-read what the vendor still holds, archive what is missing
    auditlake query "SQL" | --saved NAME | --list    Athena on a stack, DuckDB on the demo's archive
    auditlake secret set VENDOR                      prompts for the token and scope, checks them, stores them
    auditlake verify [--stream S] [--since T]        the digests' signatures and chains, every object's hash,
                                                     no unlisted object, no gap in the time covered
    auditlake doctor --stack NAME                    after `sam deploy`: secrets, last runs, alarm subscription,
                                                     schedules, the collectors' permissions; what to fix

Without `--stack`, every command works on the demo workspace that `auditlake demo` saved (`--workspace DIR`).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import getpass
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TextIO

import boto3
import duckdb
import sqlglot
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

from auditlake.errors import AuditlakeError
from auditlake.secrets import PLACEHOLDER, parse_secret
from auditlake.state import Kind, StateStore, StreamState, kind_of, live_key
from auditlake.timeutil import parse_time
from auditlake_local import athena, demo, doctor, workspace
from auditlake_local.vendors import VENDORS
from auditlake_local.verify import Report, Verifier, VerifyError, load_public_key
from auditlake_local.workspace import Workspace, WorkspaceError

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130
# A deployed collector may run for its whole timeout (280 s); the answer must not time out before it.
LAMBDA_READ_TIMEOUT_SECONDS = 320
BUSY_WAIT_SECONDS = 15.0  # while a scheduled run holds the function's single concurrency, or a stream's lease
MAX_BUSY_WAITS = 40
ATHENA_POLL_SECONDS = (0.25, 2.0)  # first and longest wait between polls of a running query
DEMO_QUERIES = ("events-per-vendor-per-day", "failed-logins", "everything-one-person-did")
DEMO_QUERY_ROWS = 8
DEMO_CELL_WIDTH = 36
QUERY_CELL_WIDTH = 60  # `query --full` shows whole values

sleep: Callable[[float], None] = time.sleep  # looked up at each wait, so tests can replace it
Columns = list[str]
Rows = list[list[Any]]


class CliError(Exception):
    """An expected failure: its message is one sentence for the operator."""


# -- formatting ------------------------------------------------------------------------------------------------


def duration(seconds: float | None) -> str:
    """`4m 10s`, `2h 5m`, `3d 4h`: the two largest units."""
    if seconds is None:
        return "-"
    total = int(max(0.0, seconds))
    parts = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        if total >= size or (unit == "s" and not parts):
            parts.append(f"{total // size}{unit}")
            total %= size
        if len(parts) == 2:
            break
    return " ".join(parts)


def moment(value: datetime | None, *, millis: bool = False) -> str:
    """An instant as ISO 8601 UTC, to the second (what a terminal needs) or the millisecond (what records hold).
    A naive time is UTC, as Athena's timestamps are."""
    if value is None:
        return "-"
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    fraction = f".{value.microsecond // 1000:03d}" if millis else ""
    return value.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]], *, max_width: int | None = None) -> str:
    """Aligned columns; numbers right-aligned, thousands separated; NULL for missing values; values longer than
    `max_width` shortened with an ellipsis."""
    def cell(value: Any) -> str:
        if value is None:
            return "NULL"
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, int):
            return f"{value:,}"
        if isinstance(value, float):
            return f"{value:,.2f}"
        if isinstance(value, datetime):
            return moment(value, millis=True)
        text = str(value).replace("\n", " ")
        return text if max_width is None or len(text) <= max_width else text[: max_width - 1] + "…"

    texts = [[cell(v) for v in row] for row in rows]
    numeric = [bool(rows) and all(isinstance(row[i], int | float) and not isinstance(row[i], bool)
                                  for row in rows if row[i] is not None) and any(row[i] is not None for row in rows)
               for i in range(len(columns))]
    widths = [max([len(str(c)), *(len(t[i]) for t in texts)]) for i, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if numeric[i] else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths,
                                                                                                strict=True)))

    out = [line([str(c).upper() for c in columns]).rstrip()]
    out += [line(t).rstrip() for t in texts]
    return "\n".join(out)


class Progress:
    """A plain-text progress bar: redrawn in place on a terminal, one line per update otherwise (logs, CI)."""

    WIDTH = 30

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = bool(getattr(out, "isatty", lambda: False)())
        self._drawn = 0

    def update(self, fraction: float, text: str) -> None:
        fraction = min(1.0, max(0.0, fraction))
        filled = round(fraction * self.WIDTH)
        line = f"[{'#' * filled}{'-' * (self.WIDTH - filled)}] {fraction * 100:5.1f}%  {text}"
        if self.tty:
            self.out.write("\r" + line.ljust(self._drawn))
            self._drawn = len(line)
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def close(self) -> None:
        if self.tty and self._drawn:
            self.out.write("\n")
            self.out.flush()
            self._drawn = 0


# -- where the commands act ------------------------------------------------------------------------------------


class Target(Protocol):
    name: str

    def states(self) -> list[StreamState]: ...

    def invoke(self, vendor: str, event: dict[str, Any]) -> dict[str, Any]: ...

    def secret(self, vendor: str) -> dict[str, Any] | None: ...

    def put_secret(self, vendor: str, value: dict[str, str]) -> str: ...

    def base_url(self, vendor: str) -> str | None: ...

    def save(self) -> None: ...

    def archive(self) -> ArchiveAccess: ...


@dataclass(frozen=True)
class ArchiveAccess:
    """What `verify` reads: the bucket, the digests' signing key, and the streams' state (the chains' heads)."""

    s3: Any
    kms: Any
    bucket: str
    signing_key: str
    states: Callable[[], list[StreamState]]


class DemoTarget:
    """The demo workspace, running: its stack on moto and its simulators on loopback."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.name = f"the demo workspace at {ws.directory}"

    def states(self) -> list[StreamState]:
        return StateStore(boto3.client("dynamodb"), self.ws.stack.table).scan()

    def invoke(self, vendor: str, event: dict[str, Any]) -> dict[str, Any]:
        return self.ws.invoke(vendor, event)

    def secret(self, vendor: str) -> dict[str, Any] | None:
        return _json_object(self.ws.secret(vendor))

    def put_secret(self, vendor: str, value: dict[str, str]) -> str:
        self.ws.put_secret(vendor, value)
        return f"the demo's {vendor} secret"

    def base_url(self, vendor: str) -> str | None:
        return self.ws.base_url(vendor)  # its simulator, wherever it is served in this run

    def save(self) -> None:
        self.ws.save()

    def archive(self) -> ArchiveAccess:
        return ArchiveAccess(boto3.client("s3"), boto3.client("kms"), self.ws.stack.bucket,
                             self.ws.stack.functions_env("DIGEST_SIGNING_KEY_ARN"), self.states)


class StackTarget:
    """A deployed stack, found by name; its resources come from the stack's outputs."""

    def __init__(self, stack: str, region: str | None) -> None:
        self.name = f"stack {stack}"
        self.stack = stack
        self.session = boto3.session.Session(region_name=region)
        if not self.session.region_name:
            raise CliError("no AWS region is configured; pass --region or set AWS_REGION")
        try:
            described = self.session.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0]
        except ClientError as exc:
            if "does not exist" in str(exc):
                raise CliError(f"there is no CloudFormation stack named {stack} in {self.session.region_name}") \
                    from None
            raise
        self.outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
        self.stack_id = str(described["StackId"])
        self.parameters = {p["ParameterKey"]: str(p.get("ResolvedValue", p.get("ParameterValue", "")))
                           for p in described.get("Parameters", [])}

    def output(self, key: str) -> str:
        if key not in self.outputs:
            raise CliError(f"{self.name} has no output {key}; is it an auditlake stack, fully deployed?")
        return self.outputs[key]

    def states(self) -> list[StreamState]:
        return StateStore(self.session.client("dynamodb"), self.output("StateTableName")).scan()

    def invoke(self, vendor: str, event: dict[str, Any]) -> dict[str, Any]:
        """Invokes the collector and waits for its summary. The function runs one at a time (reserved concurrency
        1): while a scheduled run holds it, Lambda throttles this call, so it waits and tries again."""
        function = self.output(f"{_title(vendor)}CollectorFunctionName")
        for _ in range(MAX_BUSY_WAITS):
            try:
                response = self.lambda_client.invoke(FunctionName=function, InvocationType="RequestResponse",
                                         Payload=json.dumps(event).encode())
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "TooManyRequestsException":
                    raise
                sleep(BUSY_WAIT_SECONDS)
                continue
            payload = json.loads(response["Payload"].read() or b"null")
            if response.get("FunctionError"):
                message = payload.get("errorMessage") if isinstance(payload, dict) else None
                raise CliError(f"the {vendor} collector failed: {message or response['FunctionError']}")
            if not isinstance(payload, dict):
                raise CliError(f"the {vendor} collector returned no summary")
            return payload
        raise CliError(f"the {vendor} collector stayed busy with scheduled runs; try again later")

    @functools.cached_property
    def lambda_client(self) -> Any:
        # No automatic retry: a retried invocation would run the collector again while this one may still run.
        return self.session.client("lambda", config=Config(read_timeout=LAMBDA_READ_TIMEOUT_SECONDS,
                                                            retries={"total_max_attempts": 1}))

    def _secret_id(self, vendor: str) -> str:
        return self.output(f"{_title(vendor)}TokenSecretArn")

    def secret(self, vendor: str) -> dict[str, Any] | None:
        try:
            value = self.session.client("secretsmanager").get_secret_value(SecretId=self._secret_id(vendor))
        except ClientError:
            return None  # only a source of defaults for the prompts
        return _json_object(value.get("SecretString"))

    def put_secret(self, vendor: str, value: dict[str, str]) -> str:
        secret_id = self._secret_id(vendor)
        self.session.client("secretsmanager").put_secret_value(SecretId=secret_id, SecretString=json.dumps(value))
        return secret_id

    def base_url(self, vendor: str) -> str | None:
        return None

    def save(self) -> None:
        """Nothing to do: a deployed stack keeps its own state."""

    def archive(self) -> ArchiveAccess:
        return ArchiveAccess(self.session.client("s3"), self.session.client("kms"), self.output("ArchiveBucketName"),
                             self.output("DigestSigningKeyArn"), self.states)

    def query(self, sql: str, parameters: list[str] | None = None) -> tuple[Columns, Rows]:
        """Runs the query in the stack's workgroup and database; waits for it; reads every page of results."""
        athena = self.session.client("athena")
        request: dict[str, Any] = {"QueryString": sql, "WorkGroup": self.output("AthenaWorkGroup"),
                                   "QueryExecutionContext": {"Database": self.output("GlueDatabase")}}
        if parameters:
            request["ExecutionParameters"] = parameters
        query_id = athena.start_query_execution(**request)["QueryExecutionId"]
        wait = ATHENA_POLL_SECONDS[0]
        try:
            while True:
                status = athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]["Status"]
                state = status["State"]
                if state == "SUCCEEDED":
                    break
                if state in {"FAILED", "CANCELLED"}:
                    reason = status.get("StateChangeReason") or state.lower()
                    raise CliError(f"the Athena query {state.lower()}: {reason}")
                sleep(wait)
                wait = min(wait * 2, ATHENA_POLL_SECONDS[1])
        except KeyboardInterrupt:
            athena.stop_query_execution(QueryExecutionId=query_id)  # no orphan query scanning on our bill
            raise
        columns: Columns = []
        rows: Rows = []
        for page in athena.get_paginator("get_query_results").paginate(QueryExecutionId=query_id):
            if not columns:
                columns = [c.get("Label") or c["Name"] for c in page["ResultSet"]["ResultSetMetadata"]["ColumnInfo"]]
            for row in page["ResultSet"]["Rows"]:
                values = [datum.get("VarCharValue") for datum in row["Data"]]
                if not rows and values == columns:
                    continue  # a SELECT's first row repeats the column names
                rows.append([_typed(v) for v in values])
        return columns, rows

    def saved_query(self, name: str) -> str:
        """The SQL of a saved query as deployed in the stack's workgroup."""
        athena = self.session.client("athena")
        workgroup = self.output("AthenaWorkGroup")
        for page in athena.get_paginator("list_named_queries").paginate(WorkGroup=workgroup):
            for query_id in page.get("NamedQueryIds", []):
                named = athena.get_named_query(NamedQueryId=query_id)["NamedQuery"]
                if named["Name"] == name:
                    return str(named["QueryString"])
        raise CliError(f"{self.name} has no saved query named {name}; `auditlake query --list` shows them")


def _typed(value: str | None) -> Any:
    """Athena returns every value as text; whole numbers print better as numbers."""
    if value is not None and value.lstrip("-").isdigit() and len(value) < 19:
        return int(value)
    return value


def _title(vendor: str) -> str:
    return VENDORS[vendor].function_id.removesuffix("Collector")


def _json_object(raw: Any) -> dict[str, Any] | None:
    try:
        value = json.loads(raw) if isinstance(raw, str | bytes) else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


@contextlib.contextmanager
def target(args: argparse.Namespace, *, vendors: Sequence[str] = ()) -> Iterator[Target]:
    """The deployed stack named by `--stack`, else the demo workspace (with the simulators of `vendors` served),
    running for the command's duration."""
    if args.stack:
        yield StackTarget(args.stack, args.region)
        return
    with workspace.open(args.workspace, vendors=vendors) as ws:
        yield DemoTarget(ws)


# -- status ----------------------------------------------------------------------------------------------------


def status_table(states: list[StreamState], now: datetime | None = None) -> str:
    """The streams' table, then (if any) the backfills' table, then the last errors."""
    now = now or datetime.now(UTC)
    if not states:
        return "no stream has been collected yet"
    streams, backfills, reconciliations, notes = [], [], [], []
    for state in states:
        run = state.status or {}
        last_run = parse_time(run["last_run_at"]) if run.get("last_run_at") else None
        last = "-" if last_run is None else f"{moment(last_run)} ({duration((now - last_run).total_seconds())} ago)"
        outcome = run.get("last_outcome", "-")
        if kind_of(state.key) is Kind.RECONCILE:
            reconciliations.append(reconciliation_row(state, now, outcome))
        elif state.backfill is not None or kind_of(state.key) is Kind.BACKFILL:
            span = state.backfill
            if span is None:
                backfills.append([state.key.removesuffix("#backfill"), "-", "-", "-", "-", last, outcome,
                                  state.events_archived])
            else:
                done = state.done_until or span.since
                total = (span.until - span.since).total_seconds()
                fraction = run.get("backfill_progress")
                if not isinstance(fraction, int | float):
                    fraction = 1.0 if total <= 0 else min(1.0, (done - span.since).total_seconds() / total)
                backfills.append([state.key.removesuffix("#backfill"), moment(span.since), moment(span.until),
                                  moment(done), f"{fraction * 100:.0f}%", last, outcome, state.events_archived])
        else:
            position = moment(state.done_until)
            if state.window is not None:
                position += f" (window to {moment(state.window.end)} open)"
            freshness = "-" if state.newest_event_time is None else \
                duration((now - state.newest_event_time).total_seconds())
            backlog = duration(run.get("backlog_seconds")) if run else "-"
            streams.append([state.key, position, freshness, last, outcome, backlog, state.events_archived])
        if run.get("last_error"):
            notes.append(f"{state.key}: {run['last_error']}")
    parts = []
    if streams:
        parts.append(table(["stream", "done until", "freshness", "last run", "outcome", "backlog", "archived"],
                           streams))
    if backfills:
        parts.append("backfills:\n" + table(["stream", "since", "until", "done until", "progress", "last run",
                                             "outcome", "archived"], backfills))
    if reconciliations:
        parts.append("reconciliations (events found are ones the live collection missed):\n" + table(
            ["stream", "since", "until", "progress", "began", "completed", "found", "outcome"], reconciliations))
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
    return [live_key(state.key), last.get("since", "-")[:10] if last else "-",
            last.get("until", "-")[:16].replace("T", " ") if last else "-", progress,
            "-" if began is None else f"{moment(began)} ({duration((now - began).total_seconds())} ago)",
            "-" if completed is None else moment(completed), last.get("found", 0), outcome]


def cmd_status(args: argparse.Namespace) -> int:
    with target(args) as where:
        print(f"{where.name}, at {moment(datetime.now(UTC))}:\n")
        print(status_table(where.states()))
    return 0


# -- backfill --------------------------------------------------------------------------------------------------


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
            if busy_waits > MAX_BUSY_WAITS:
                raise CliError(f"{', '.join(busy)} stayed busy with another run; try again later")
            sleep(BUSY_WAIT_SECONDS)
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


def run_backfill(invoke: Callable[[dict[str, Any]], dict[str, Any]], vendor: str, since: date, progress: Progress,
                 *, after_invocation: Callable[[], None] = lambda: None, max_invocations: int | None = None,
                 oldest_available: datetime | None = None) -> BackfillReport:
    """Invokes the collector in backfill mode until the history from `since` is archived (see run_spans)."""
    asked = datetime(since.year, since.month, since.day, tzinfo=UTC)
    target_since = max(asked, oldest_available) if oldest_available else asked

    def was_earlier(_spans: list[dict[str, Any]], step: BackfillProgress) -> bool:
        # An unfinished earlier backfill (from a later date) is finished first. An hour of tolerance absorbs the
        # retention bound moving while this runs.
        return step.since is not None and step.since - target_since > timedelta(hours=1)

    job = SpanJob("backfill", {"backfill": {"since": since.isoformat()}}, was_earlier,
                  "nothing to fetch before the first collected window", "events")
    return run_spans(invoke, vendor, job, progress, after_invocation=after_invocation,
                     max_invocations=max_invocations)


def cmd_backfill(args: argparse.Namespace) -> int:
    since = _past_date(args.since)
    cls = workspace.adapter_class(args.vendor)
    now = datetime.now(UTC)
    oldest = [b for b in ((now - cls.retention + cls.retention_margin) if cls.retention else None, cls.earliest)
              if b is not None]
    oldest_available = max(oldest) if oldest else None
    asked = datetime(since.year, since.month, since.day, tzinfo=UTC)
    if oldest_available is not None and asked < oldest_available:
        print(f"{args.vendor} keeps its audit log back to {moment(oldest_available)}; the backfill starts there")
    with target(args, vendors=[args.vendor]) as where:
        print(f"backfilling {args.vendor} from {since.isoformat()} on {where.name}")
        report = run_backfill(lambda event: _invoke_saving(where, args.vendor, event), args.vendor, since,
                              Progress(sys.stdout), after_invocation=where.save, max_invocations=args.max_invocations,
                              oldest_available=oldest_available)
    if report.complete:
        print(f"backfill complete: {report.events:,} events archived in {report.invocations} invocation(s)")
    else:
        print(f"stopped after {report.invocations} invocation(s), {report.progress * 100:.0f}% done; run the same "
              "command again to continue where it stopped")
    return 0


# -- reconcile -------------------------------------------------------------------------------------------------


def run_reconcile(invoke: Callable[[dict[str, Any]], dict[str, Any]], vendor: str, since: date, progress: Progress,
                  *, after_invocation: Callable[[], None] = lambda: None,
                  max_invocations: int | None = None) -> BackfillReport:
    """Invokes the collector in reconciliation mode until every stream's reconciliation from `since` is complete
    (see run_spans)."""
    asked_at = datetime.now(UTC)

    def was_earlier(spans: list[dict[str, Any]], _step: BackfillProgress) -> bool:
        # A reconciliation the schedule had begun is finished first.
        return any(span.get("started_at") and parse_time(span["started_at"]) < asked_at for span in spans)

    job = SpanJob("reconciliation", {"reconcile": {"since": since.isoformat()}}, was_earlier,
                  "nothing to re-read yet", "missing event(s) archived")
    return run_spans(invoke, vendor, job, progress, after_invocation=after_invocation,
                     max_invocations=max_invocations)


def cmd_reconcile(args: argparse.Namespace) -> int:
    since = _past_date(args.since)
    with target(args, vendors=[args.vendor]) as where:
        print(f"reconciling {args.vendor} from {since.isoformat()} on {where.name}")
        report = run_reconcile(lambda event: _invoke_saving(where, args.vendor, event, "reconciliation"),
                               args.vendor, since, Progress(sys.stdout), after_invocation=where.save,
                               max_invocations=args.max_invocations)
    if not report.complete:
        print(f"stopped after {report.invocations} invocation(s), {report.progress * 100:.0f}% done; run the same "
              "command again to continue where it stopped")
    elif report.events:
        print(f"reconciliation complete: {report.events:,} event(s) the live collection had missed are archived "
              f"now ({report.invocations} invocation(s)); `auditlake status` shows which streams")
    else:
        print(f"reconciliation complete: the archive holds every event {args.vendor} still holds from "
              f"{since.isoformat()} on ({report.invocations} invocation(s))")
    return 0


def _invoke_saving(where: Target, vendor: str, event: dict[str, Any], what: str = "backfill") -> dict[str, Any]:
    """One invocation; a demo workspace is saved after it even when it failed, since a failed run commits what
    is safe (so the archive and the state saved together stay consistent)."""
    try:
        return where.invoke(vendor, event)
    except AuditlakeError as exc:
        where.save()
        raise CliError(f"the {vendor} {what} failed: {exc}") from None


def _past_date(text: str) -> date:
    try:
        value = date.fromisoformat(text)
    except ValueError:
        raise CliError(f"--since takes a date as YYYY-MM-DD, not {text!r}") from None
    if value >= datetime.now(UTC).date():
        raise CliError(f"--since {text} is not in the past")
    return value


# -- query -----------------------------------------------------------------------------------------------------


def cmd_query(args: argparse.Namespace) -> int:
    parameters = _parameters(args.param)
    if args.list:
        rows = [[q.key, ", ".join(q.parameters) or "-", _summary(q.description)]
                for q in athena.saved_queries().values()]
        print(table(["saved query", "parameters", "what it answers"], rows))
        return 0
    saved = _saved_query(args.saved, parameters) if args.saved else None
    if args.stack:
        stack = StackTarget(args.stack, args.region)
        if saved is not None:
            sql = stack.saved_query(saved.name)
            columns, rows = stack.query(sql, [_literal(parameters[p]) for p in saved.parameters])
        else:
            columns, rows = stack.query(args.sql)
    else:
        workspace.read_manifest(args.workspace)
        connection = athena.connect(args.workspace / "archive")
        try:
            if saved is not None:
                columns, raw = athena.run_saved(connection, saved.key, parameters)
            else:
                columns, raw = athena.run_sql(connection, args.sql)
        except duckdb.Error as exc:
            raise CliError(f"the query failed: {_first_line(exc)}") from None
        except sqlglot.errors.SqlglotError as exc:
            raise CliError(f"the query is not valid Athena SQL: {_first_line(exc)}") from None
        rows = [list(row) for row in raw]
    print(table(columns, rows, max_width=None if args.full else QUERY_CELL_WIDTH))
    print(f"({len(rows):,} row{'s' if len(rows) != 1 else ''})")
    return 0


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _summary(description: str) -> str:
    """A saved query's description without its parameter notes, which the parameters column shows."""
    return description.partition(" Parameters (in order):")[0]


def _parameters(values: list[str] | None) -> dict[str, str]:
    parameters = {}
    for value in values or []:
        name, sep, text = value.partition("=")
        if not sep or not name:
            raise CliError(f"--param and --field take NAME=VALUE, not {value!r}")
        parameters[name] = text
    return parameters


def _saved_query(name: str, parameters: dict[str, str]) -> athena.SavedQuery:
    try:
        query = athena.saved_query(name)
    except athena.UnknownQuery:
        raise CliError(f"there is no saved query named {name}; `auditlake query --list` shows them") from None
    missing = [p for p in query.parameters if p not in parameters]
    if missing:
        raise CliError(f"the saved query {query.key} needs {' '.join(f'--param {p}=…' for p in missing)}")
    unknown = sorted(set(parameters) - set(query.parameters))
    if unknown:
        raise CliError(f"the saved query {query.key} has no parameter {unknown[0]}; it takes "
                       f"{', '.join(query.parameters) or 'none'}")
    return query


def _literal(value: str) -> str:
    """Athena's execution parameters are SQL literals: a string is quoted (unless it already is)."""
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value
    return "'" + value.replace("'", "''") + "'"


def show_saved_queries(archive_dir: Path, first_day: date, last_day: date) -> None:
    """A few saved queries answered locally over the demo's days, as an analyst would run them in Athena."""
    connection = athena.connect(archive_dir)
    days = {"first_day": first_day.isoformat(), "last_day": last_day.isoformat()}
    _, busiest = athena.run_sql(connection, "SELECT actor_email FROM events WHERE actor_email IS NOT NULL "
                                            "GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1")
    for key in DEMO_QUERIES:
        query = athena.saved_query(key)
        parameters = {**days, **({"email": busiest[0][0]} if busiest else {})}
        parameters = {name: parameters[name] for name in query.parameters}
        columns, rows = athena.run_saved(connection, key, parameters)
        shown = " ".join(f"--param {name}={value}" for name, value in parameters.items())
        print(f"$ auditlake query --saved {key} {shown}\n-- {_summary(query.description)}")
        print(table(columns, [list(row) for row in rows[:DEMO_QUERY_ROWS]], max_width=DEMO_CELL_WIDTH))
        more = len(rows) - DEMO_QUERY_ROWS
        print(f"... and {more:,} more rows\n" if more > 0 else f"({len(rows):,} rows)\n")


# -- secret ----------------------------------------------------------------------------------------------------


def cmd_secret_set(args: argparse.Namespace) -> int:
    vendor = args.vendor
    cls = workspace.adapter_class(vendor)
    given = _parameters(args.field)
    if "token" in given:
        raise CliError("the token is never passed as --field (it would stay in your shell history); enter it at "
                       "the prompt or pipe it with --token-stdin")
    unknown = sorted(set(given) - {*cls.secret_fields, "base_url"})
    if unknown:
        raise CliError(f"{vendor} secrets have no field {unknown[0]}; they hold {', '.join(cls.secret_fields)} "
                       "and optionally base_url")
    with target(args, vendors=[vendor]) as where:
        current = where.secret(vendor) or {}
        secret: dict[str, str] = {}
        for name in cls.secret_fields:
            if name == "token":
                secret[name] = _read_token(vendor, args.token_stdin)
            elif name in given:
                secret[name] = given[name]
            else:
                secret[name] = _prompt(name, current.get(name))
        base_url = given.get("base_url", current.get("base_url"))
        if where.base_url(vendor):
            base_url = where.base_url(vendor)
        if base_url:
            secret["base_url"] = base_url
        check_secret(vendor, secret)
        stored_in = where.put_secret(vendor, secret)
        where.save()
    scope = ", ".join(f"{name} {secret[name]}" for name in cls.secret_fields if name != "token")
    print(f"{_title(vendor)} accepted the token{' for ' + scope if scope else ''}; stored in {stored_in}")
    return 0


def _read_token(vendor: str, from_stdin: bool) -> str:
    token = sys.stdin.readline() if from_stdin else getpass.getpass(f"{vendor} token (not shown): ")
    token = token.strip()
    if not token:
        raise CliError(f"no {vendor} token was given")
    return token


def _prompt(name: str, default: Any) -> str:
    if default in (None, "") or str(default).strip() == PLACEHOLDER:
        default = None
    shown = f" [{default}]" if default is not None else ""
    try:
        value = input(f"{name}{shown}: ").strip()
    except EOFError:
        value = ""
    if not value and default is not None:
        return str(default)
    if not value:
        raise CliError(f"no {name} was given")
    return value


def check_secret(vendor: str, secret: dict[str, str]) -> None:
    """One cheap request with these values: one page of a one-minute window of the first stream."""
    cls = workspace.adapter_class(vendor)
    try:
        workspace.probe_vendor(vendor, parse_secret(vendor, "(new value)", json.dumps(secret), cls.secret_fields))
    except AuditlakeError as exc:
        raise CliError(f"{_title(vendor)} did not accept these values ({exc}); nothing was stored") from None


# -- verify ----------------------------------------------------------------------------------------------------


def cmd_verify(args: argparse.Namespace) -> int:
    since = _instant(args.since, "--since")
    until = _instant(args.until, "--until")
    if since is not None and until is not None and since >= until:
        raise CliError(f"--since {args.since} is not before --until {args.until}")
    streams = args.stream or None
    for stream in streams or []:
        if stream.partition("#")[0] not in VENDORS:
            raise CliError(f"--stream takes a vendor ({', '.join(VENDORS)}) or a stream key such as "
                           f"asana#<workspace gid>, not {stream!r}")
    public_key = None
    if args.public_key is not None:
        try:
            public_key = load_public_key(args.public_key.read_bytes(), str(args.public_key))
        except OSError as exc:
            raise CliError(f"cannot read --public-key {args.public_key}: {exc.strerror}") from None
    with target(args, vendors=[]) as where:
        access = where.archive()
        if public_key is None:
            public = access.kms.get_public_key(KeyId=access.signing_key)["PublicKey"]
            public_key = load_public_key(public, f"the public key of {access.signing_key}")
        print(f"verifying {where.name}: {', '.join(streams) if streams else 'every stream'}, "
              f"{moment(since) if since else 'from the first digest'} to {moment(until) if until else 'now'}")
        verifier = Verifier(access.s3, access.bucket, public_key, states=_readable_states(access),
                            now=lambda: datetime.now(UTC))
        report = verifier.run(streams, since, until)
    print_report(report)
    return EXIT_ERROR if report.findings else 0


def print_report(report: Report) -> None:
    for finding in report.findings:
        print(finding.line())
    print(report.summary())


def _readable_states(access: ArchiveAccess) -> Callable[[], list[StreamState]] | None:
    """The streams' state when it is readable; without it the chains' heads and the objects waiting for their
    stream's next digest are unknown (objects written since a stream's last digest then count as unlisted)."""
    try:
        access.states()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in {"AccessDeniedException", "AccessDenied"}:
            raise
        print("note: the state table is not readable with these credentials; the chains' ends are judged by their "
              "age only", file=sys.stderr)
        return None
    return access.states


def _instant(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_time(text)
    except ValueError:
        raise CliError(f"{option} takes a day (YYYY-MM-DD) or an ISO 8601 time, not {text!r}") from None


# -- doctor ----------------------------------------------------------------------------------------------------


def cmd_doctor(args: argparse.Namespace) -> int:
    stack = StackTarget(args.stack, args.region)
    print(f"checking {stack.name} in {stack.session.region_name}")
    problems = 0
    for check in doctor.Doctor(stack).run():
        print(check.line(), flush=True)  # each line as it is known: the vendors' requests take a moment
        problems += not check.ok
    print(f"{problems} problem(s)" if problems else "no problems: the deployment is ready")
    return EXIT_ERROR if problems else 0


# -- the command line ------------------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    if args.events < 1 or args.days < 1 or args.lookback_days < 1:
        raise CliError("--events, --days and --lookback-days must be at least 1")

    def then(ws: Workspace) -> None:
        print(f"saved in {ws.directory}; `auditlake status`, `backfill`, `query` and `secret set` work on it\n")
        today = datetime.now(UTC).date()
        show_saved_queries(ws.archive_dir, today - timedelta(days=ws.lookback_days), today)
        print("$ auditlake status")
        print(status_table(DemoTarget(ws).states()))

    def then_verify(ws: Workspace) -> None:
        then(ws)
        print("\n$ auditlake verify")
        access = DemoTarget(ws).archive()
        public = load_public_key(access.kms.get_public_key(KeyId=access.signing_key)["PublicKey"], "the demo's key")
        print_report(Verifier(access.s3, access.bucket, public, states=access.states,
                              now=lambda: datetime.now(UTC)).run())

    checks = demo.run(args.workspace, events=args.events, days=args.days, lookback_days=args.lookback_days,
                      then=then_verify)
    bad = [c.vendor for c in checks if c.missing or c.duplicates or c.unexpected]
    if bad:
        print(f"\nthe archive of {', '.join(bad)} does not match the vendor's events", file=sys.stderr)
        return EXIT_ERROR
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="auditlake", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--stack", metavar="NAME", help="a deployed auditlake stack (default: the demo workspace)")
    where.add_argument("--region", help="the stack's AWS region (default: your AWS configuration)")
    where.add_argument("--workspace", type=Path, default=workspace.DEFAULT_DIRECTORY, metavar="DIR",
                       help=f"the demo workspace (default: {workspace.DEFAULT_DIRECTORY})")

    run = commands.add_parser("demo", help="run every collector against local simulators on in-process AWS",
                              description=demo.__doc__)
    run.add_argument("--events", type=int, default=2500, help="events each simulated vendor holds (default 2500)")
    run.add_argument("--days", type=int, default=14, help="how many days back the events reach (default 14)")
    run.add_argument("--lookback-days", type=int, default=3,
                     help="how far back the first collection reaches; older events are left for backfill (default 3)")
    run.add_argument("--workspace", type=Path, default=workspace.DEFAULT_DIRECTORY, metavar="DIR",
                     help=f"where the demo's state is saved (default: {workspace.DEFAULT_DIRECTORY})")
    run.set_defaults(handler=cmd_demo)

    status = commands.add_parser("status", parents=[where], help="per stream: cursor, freshness, last run, backlog",
                                 description="Per stream: where its cursor is (done until), how old its newest "
                                             "archived event is, its last run and outcome, and the backlog left.")
    status.set_defaults(handler=cmd_status)

    backfill = commands.add_parser("backfill", parents=[where], help="collect history before the first window",
                                   description="Extends the archive backwards, from DATE to where collection "
                                               "began, within the vendor's retention, exactly once. Resumable: "
                                               "run it again after an interruption.")
    backfill.add_argument("vendor", choices=list(VENDORS), metavar="VENDOR", help=", ".join(VENDORS))
    backfill.add_argument("--since", required=True, metavar="YYYY-MM-DD", help="the first day to collect (UTC)")
    backfill.add_argument("--max-invocations", type=int, metavar="N",
                          help="stop after N collector invocations (run again to continue)")
    backfill.set_defaults(handler=cmd_backfill)

    reconcile = commands.add_parser("reconcile", parents=[where],
                                    help="re-read what the vendor holds, archive what the archive lacks",
                                    description="Re-reads the vendor's audit log from DATE (within its retention) "
                                                "up to what the live collection has completed, compares it by "
                                                "event id with the archive, and archives what is missing, exactly "
                                                "once. The stack also does this on its own schedule "
                                                "(ReconcileIntervalHours). Resumable: run it again after an "
                                                "interruption.")
    reconcile.add_argument("vendor", choices=list(VENDORS), metavar="VENDOR", help=", ".join(VENDORS))
    reconcile.add_argument("--since", required=True, metavar="YYYY-MM-DD", help="the first day to re-read (UTC)")
    reconcile.add_argument("--max-invocations", type=int, metavar="N",
                           help="stop after N collector invocations (run again to continue)")
    reconcile.set_defaults(handler=cmd_reconcile)

    query = commands.add_parser("query", parents=[where], help="SQL over the archive (Athena, or DuckDB locally)",
                                description="Runs Athena SQL: in the stack's workgroup, or on the demo's archive "
                                            "with DuckDB.")
    query.add_argument("sql", nargs="?", metavar="SQL", help="a query over the table `events`")
    query.add_argument("--saved", metavar="NAME", help="a saved query of the stack (see --list)")
    query.add_argument("--param", action="append", metavar="NAME=VALUE", help="a saved query's parameter")
    query.add_argument("--list", action="store_true", help="list the saved queries")
    query.add_argument("--full", action="store_true",
                       help=f"show values longer than {QUERY_CELL_WIDTH} characters whole")
    query.set_defaults(handler=cmd_query, usage=query)

    secret = commands.add_parser("secret", help="manage the vendors' secrets")
    secret_commands = secret.add_subparsers(dest="secret_command", required=True, metavar="ACTION")
    put = secret_commands.add_parser("set", parents=[where], help="prompt for, check and store a vendor's secret",
                                     description="Prompts for the token (not shown) and the scope fields, checks "
                                                 "them with one request to the vendor, then stores them.")
    put.add_argument("vendor", choices=list(VENDORS), metavar="VENDOR", help=", ".join(VENDORS))
    put.add_argument("--field", action="append", metavar="NAME=VALUE", help="a scope field, instead of its prompt")
    put.add_argument("--token-stdin", action="store_true", help="read the token from stdin (for scripts)")
    put.set_defaults(handler=cmd_secret_set)

    verify = commands.add_parser(
        "verify", parents=[where], help="prove the archive whole from its signed digests",
        description="Walks each stream's digest chain: every signature (with the signing key's public key), every "
                    "link, every listed object's version, SHA-256 and record count, no object that no digest lists, "
                    "no gap in the time the digests cover. One line per finding; exits 1 on any.")
    verify.add_argument("--stream", action="append", metavar="STREAM",
                        help="a vendor (asana), a stream key with its backfill (asana#<gid>) or a backfill alone "
                             "(asana#<gid>#backfill); repeatable (default: every stream)")
    verify.add_argument("--since", metavar="TIME", help="check objects and coverage from this day or ISO time (UTC)")
    verify.add_argument("--until", metavar="TIME", help="... up to this day or time (default: now; the chains' "
                                                       "last digests must then be recent)")
    verify.add_argument("--public-key", type=Path, metavar="FILE",
                        help="the signing key's public key (PEM or DER): signatures are checked without KMS")
    verify.set_defaults(handler=cmd_verify)

    check = commands.add_parser(
        "doctor", help="check a deployed stack and say what to fix",
        description="After `sam deploy`: each vendor's secret (filled, and accepted by the vendor with one request), "
                    "each collector's last run and outcome, a confirmed subscription to the alarm topic, the "
                    "schedules enabled, and (IAM policy simulator) that each collector's role may make every call "
                    "the collector makes. One line per check; exits 1 on any problem.")
    check.add_argument("--stack", metavar="NAME", required=True, help="the deployed auditlake stack")
    check.add_argument("--region", help="the stack's AWS region (default: your AWS configuration)")
    check.set_defaults(handler=cmd_doctor)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "query" and sum(bool(x) for x in (args.sql, args.saved, args.list)) != 1:
        args.usage.error("give one of SQL, --saved NAME or --list")
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print("\ninterrupted; what was committed is kept, and the same command continues from there",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except (CliError, WorkspaceError, VerifyError) as exc:
        return _fail(str(exc))
    except AuditlakeError as exc:
        return _fail(str(exc))
    except NoCredentialsError:
        return _fail("no AWS credentials were found; configure a profile or set AWS_PROFILE")
    except NoRegionError:
        return _fail("no AWS region is configured; pass --region or set AWS_REGION")
    except ClientError as exc:
        error = exc.response.get("Error", {})
        return _fail(f"AWS refused {exc.operation_name}: {error.get('Code')}: {error.get('Message')}")
    except BotoCoreError as exc:
        return _fail(f"AWS could not be reached: {exc}")


def _fail(message: str) -> int:
    message = message.strip()
    print(f"auditlake: error: {message}", file=sys.stderr)
    return EXIT_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
