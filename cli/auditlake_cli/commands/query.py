"""`auditlake query`: Athena SQL over the archive, ad hoc or one of the stack's saved queries."""

from __future__ import annotations

import argparse
from typing import Any

from auditlake_cli.errors import CliError
from auditlake_cli.output import table
from auditlake_cli.saved_queries import bind, find
from auditlake_cli.target import target

QUERY_CELL_WIDTH = 60  # `query --full` shows whole values


def add_parser(commands: Any, where: argparse.ArgumentParser) -> None:
    # The help speaks of the stack only: an operator's installation has no demo (the local world's plugin
    # answers the same SQL with DuckDB on the demo's archive).
    query = commands.add_parser("query", parents=[where], help="Athena SQL over the archive",
                                description="Runs Athena SQL in the stack's workgroup and database.")
    query.add_argument("sql", nargs="?", metavar="SQL", help="a query over the table `events`")
    query.add_argument("--saved", metavar="NAME", help="a saved query of the stack (see --list)")
    query.add_argument("--param", action="append", metavar="NAME=VALUE", help="a saved query's parameter")
    query.add_argument("--list", action="store_true", help="list the saved queries")
    query.add_argument("--full", action="store_true",
                       help=f"show values longer than {QUERY_CELL_WIDTH} characters whole")
    query.set_defaults(handler=cmd_query, usage=query)


def cmd_query(args: argparse.Namespace) -> int:
    if sum(bool(x) for x in (args.sql, args.saved, args.list)) != 1:
        args.usage.error("give one of SQL, --saved NAME or --list")
    parameters = name_values(args.param)
    with target(args, vendors=[]) as where:
        if args.list:
            rows = [[q.key, ", ".join(q.parameters) or "-", q.summary] for q in where.saved_queries().values()]
            print(table(["saved query", "parameters", "what it answers"], rows))
            return 0
        if args.saved:
            saved = find(where.saved_queries(), args.saved)
            if saved is None:
                raise CliError(f"there is no saved query named {args.saved}; `auditlake query --list` shows them")
            columns, rows = where.query(saved.sql, bind(saved, parameters))
        else:
            columns, rows = where.query(args.sql)
    print(table(columns, rows, max_width=None if args.full else QUERY_CELL_WIDTH))
    print(f"({len(rows):,} row{'s' if len(rows) != 1 else ''})")
    return 0


def name_values(values: list[str] | None) -> dict[str, str]:
    """NAME=VALUE options (`--param`, `--field`) as a dict."""
    parameters = {}
    for value in values or []:
        name, sep, text = value.partition("=")
        if not sep or not name:
            raise CliError(f"--param and --field take NAME=VALUE, not {value!r}")
        parameters[name] = text
    return parameters
