"""The local world on the `auditlake` command line (entry point `auditlake.plugins`, see local/pyproject.toml): the
`demo` command, and the demo workspace as the place the other commands act on when no `--stack` is given."""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import duckdb
import sqlglot
from botocore.exceptions import ClientError

from auditlake.state import StateStore, StreamState
from auditlake_cli.commands.status import status_table
from auditlake_cli.commands.verify import print_report
from auditlake_cli.errors import EXIT_ERROR, CliError
from auditlake_cli.output import table
from auditlake_cli.saved_queries import SavedQuery
from auditlake_cli.target import ArchiveAccess, Columns, Rows, json_object
from auditlake_cli.verify import Verifier, load_public_key
from auditlake_local import athena, demo, workspace
from auditlake_local.workspace import Workspace

DEMO_QUERIES = ("events-per-vendor-per-day", "failed-logins", "everything-one-person-did")
DEMO_QUERY_ROWS = 8
DEMO_CELL_WIDTH = 36


def add_arguments(where: argparse.ArgumentParser) -> None:
    where.add_argument("--workspace", type=Path, default=workspace.DEFAULT_DIRECTORY, metavar="DIR",
                       help=f"without --stack: the demo workspace (default: {workspace.DEFAULT_DIRECTORY})")


def add_commands(commands: Any, where: argparse.ArgumentParser) -> None:
    run = commands.add_parser("demo", help="run every collector against local simulators on in-process AWS",
                              description=demo.__doc__)
    run.add_argument("--events", type=int, default=2500, help="events each simulated vendor holds (default 2500)")
    run.add_argument("--days", type=int, default=14, help="how many days back the events reach (default 14)")
    run.add_argument("--lookback-days", type=int, default=3,
                     help="how far back the first collection reaches; older events are left for backfill (default 3)")
    run.add_argument("--workspace", type=Path, default=workspace.DEFAULT_DIRECTORY, metavar="DIR",
                     help=f"where the demo's state is saved (default: {workspace.DEFAULT_DIRECTORY})")
    run.set_defaults(handler=cmd_demo)


@contextlib.contextmanager
def open_target(args: argparse.Namespace, vendors: Sequence[str]) -> Iterator[DemoTarget]:
    """The demo workspace of `--workspace`; it is opened (its stack rebuilt, `vendors`' simulators served) only
    when a command needs more than its archive."""
    with contextlib.ExitStack() as running:
        yield DemoTarget(args.workspace, vendors, running)


class DemoTarget:
    """The demo workspace: its stack on moto and its simulators on loopback, or, for queries, only its archive."""

    def __init__(self, directory: Path, vendors: Sequence[str], running: contextlib.ExitStack) -> None:
        self.directory = directory
        self.vendors = vendors
        self.running = running
        self.name = f"the demo workspace at {directory}"

    @functools.cached_property
    def ws(self) -> Workspace:
        return self.running.enter_context(workspace.open(self.directory, vendors=self.vendors))

    def states(self) -> list[StreamState]:
        table = self.ws.stack.table  # opens the workspace, and with it the in-process AWS, first
        return StateStore(boto3.client("dynamodb"), table).scan()

    def invoke(self, vendor: str, event: dict[str, Any]) -> dict[str, Any]:
        return self.ws.invoke(vendor, event)

    def secret(self, vendor: str, account: str | None = None) -> dict[str, Any] | None:
        if not self.ws.has_account(vendor, account):
            # Its token would go to the real vendor: the demo only speaks to its simulators.
            simulated = ", ".join(["default", *(self.accounts(vendor) or ())])
            raise CliError(f"the demo simulates no {vendor} account {account}; its {vendor} accounts: {simulated}")
        try:
            return json_object(self.ws.secret(vendor, account))
        except ClientError:
            return None  # no secret stored yet

    def put_secret(self, vendor: str, value: dict[str, str], account: str | None = None) -> str:
        self.ws.put_secret(vendor, value, account)
        return f"the demo's {vendor} secret" + ("" if account is None else f" of account {account}")

    def base_url(self, vendor: str, account: str | None = None) -> str | None:
        return self.ws.base_url(vendor, account)  # its simulator, wherever it is served in this run

    def accounts(self, vendor: str) -> tuple[str, ...] | None:
        return tuple(local.account for local in self.ws.accounts.values()
                     if local.vendor == vendor and local.account is not None)

    def save(self) -> None:
        self.ws.save()

    def archive(self) -> ArchiveAccess:
        stack = self.ws.stack
        return ArchiveAccess(boto3.client("s3"), boto3.client("kms"), stack.bucket,
                             stack.functions_env("DIGEST_SIGNING_KEY_ARN"), self.states)

    def saved_queries(self) -> dict[str, SavedQuery]:
        return dict(athena.saved_queries())  # the template's: what the stack would deploy

    def query(self, sql: str, parameters: list[str] | None = None) -> tuple[Columns, Rows]:
        """DuckDB over the workspace's mirror of the archive, with the Athena SQL transpiled."""
        workspace.read_manifest(self.directory)
        try:
            columns, rows = athena.run_sql(athena.connect(self.directory / "archive"), sql, parameters or [])
        except duckdb.Error as exc:
            raise CliError(f"the query failed: {_first_line(exc)}") from None
        except sqlglot.errors.SqlglotError as exc:
            raise CliError(f"the query is not valid Athena SQL: {_first_line(exc)}") from None
        return columns, [list(row) for row in rows]


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


# -- demo --------------------------------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    if args.events < 1 or args.days < 1 or args.lookback_days < 1:
        raise CliError("--events, --days and --lookback-days must be at least 1")

    def then(ws: Workspace) -> None:
        print(f"saved in {ws.directory}; `auditlake status`, `backfill`, `query` and `secret set` work on it\n")
        today = datetime.now(UTC).date()
        show_saved_queries(ws.archive_dir, today - timedelta(days=ws.lookback_days), today)
        print("$ auditlake status")
        print(status_table(StateStore(boto3.client("dynamodb"), ws.stack.table).scan()))
        print("\n$ auditlake verify")
        s3, kms = boto3.client("s3"), boto3.client("kms")
        key = ws.stack.functions_env("DIGEST_SIGNING_KEY_ARN")
        public = load_public_key(kms.get_public_key(KeyId=key)["PublicKey"], "the demo's key")
        print_report(Verifier(s3, ws.stack.bucket, public,
                              states=lambda: StateStore(boto3.client("dynamodb"), ws.stack.table).scan(),
                              now=lambda: datetime.now(UTC)).run())

    checks = demo.run(args.workspace, events=args.events, days=args.days, lookback_days=args.lookback_days,
                      then=then)
    bad = [c.key for c in checks if c.missing or c.duplicates or c.unexpected]
    if bad:
        print(f"\nthe archive of {', '.join(bad)} does not match the vendor's events", file=sys.stderr)
        return EXIT_ERROR
    return 0


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
        print(f"$ auditlake query --saved {key} {shown}\n-- {query.summary}")
        print(table(columns, [list(row) for row in rows[:DEMO_QUERY_ROWS]], max_width=DEMO_CELL_WIDTH))
        more = len(rows) - DEMO_QUERY_ROWS
        print(f"... and {more:,} more rows\n" if more > 0 else f"({len(rows):,} rows)\n")
