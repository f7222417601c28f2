"""Athena's tables, views and saved queries from template.yaml, answered locally by DuckDB.

The archive's key layout (`events/vendor=<vendor>/dt=<day>/*.json.gz`, gzip NDJSON) is read by DuckDB exactly as
Athena reads it through the Glue table: the same columns, `raw` kept as a JSON string, the partitions that
projection allows. The views and saved queries are taken from the template as Athena SQL and transpiled to
DuckDB's dialect with sqlglot, so a local answer comes from the very SQL an analyst runs in Athena.

    connection = connect(archive_dir)             # a directory holding events/vendor=*/dt=*/...
    columns, rows = run_saved(connection, "failed-logins", {"first_day": "2026-11-01", "last_day": "2026-11-07"})
    columns, rows = run_sql(connection, "SELECT vendor, count(*) FROM events GROUP BY 1")
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import duckdb
import sqlglot
from sqlglot import exp

from auditlake_cli.saved_queries import SavedQuery, find
from auditlake_local.template import load_template, resolve

if TYPE_CHECKING:
    from auditlake_local.stack import LocalStack

EVENTS_TABLE = "EventsTable"  # the logical id of the Glue table over the archive
VIEW_PREFIX, VIEW_SUFFIX = "/* Presto View: ", " */"
PLACEHOLDER_BUCKET = "archive-bucket"  # stands for the stack's bucket where only the key layout matters
_HIVE_TO_DUCKDB = {"string": "VARCHAR", "int": "INTEGER", "bigint": "BIGINT", "boolean": "BOOLEAN",
                   "timestamp": "TIMESTAMP", "double": "DOUBLE", "date": "DATE"}


class UnknownQuery(KeyError):
    """No saved query has this name."""


class ParameterError(ValueError):
    """The parameters given do not fit the saved query."""


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # Hive type for tables and Glue columns, Presto type in a view's definition
    comment: str | None = None


@dataclass(frozen=True)
class EventsTable:
    """The Glue table over the archive, as the template declares it."""

    database: str
    name: str
    description: str
    columns: tuple[Column, ...]
    partition_keys: tuple[Column, ...]
    location: str  # s3://<bucket>/<prefix>
    serde: str
    input_format: str
    output_format: str
    parameters: Mapping[str, str]

    @property
    def prefix(self) -> str:
        """The archive's key prefix: the location's path, e.g. `events/`."""
        return self.location.removeprefix("s3://").partition("/")[2]


@dataclass(frozen=True)
class View:
    """A view as Athena stores it: a Glue VIRTUAL_VIEW table holding a Presto view definition."""

    logical_id: str
    name: str
    description: str
    sql: str  # Athena SQL, the definition's originalSql
    columns: tuple[Column, ...]  # the definition's columns, in Presto types
    glue_columns: tuple[Column, ...]  # the StorageDescriptor's columns, in Hive types
    definition: Mapping[str, Any]  # the whole decoded definition (catalog, schema, ...)
    table_input: Mapping[str, Any]  # the resolved TableInput


@dataclass(frozen=True)
class TemplateQuery(SavedQuery):
    """An AWS::Athena::NamedQuery of the template: the saved query the stack deploys, with where it runs."""

    logical_id: str
    database: Any  # as the template states it (a Ref)
    workgroup: Any


# --- the template ----------------------------------------------------------------------------------------------


def template_refs(bucket: str = PLACEHOLDER_BUCKET) -> dict[str, Any]:
    """Names the query resources refer to, with the template's parameter defaults."""
    template = load_template()
    refs: dict[str, Any] = {name: str(spec.get("Default", "")) for name, spec in template["Parameters"].items()}
    refs.update({"AWS::AccountId": "123456789012", "AWS::Region": "us-east-1", "AWS::Partition": "aws",
                 "AWS::StackName": "auditlake", "AWS::URLSuffix": "amazonaws.com", "AWS::NoValue": None})
    refs["AuditDatabase"] = refs["GlueDatabaseName"]
    refs["ArchiveBucket"] = bucket
    refs["AnalystWorkGroup"] = f"{refs['AWS::StackName']}-analysts"
    return refs


def _resources(kind: str) -> dict[str, dict[str, Any]]:
    return {logical_id: spec.get("Properties", {}) for logical_id, spec in load_template()["Resources"].items()
            if spec["Type"] == kind}


def _columns(specs: Sequence[Mapping[str, Any]]) -> tuple[Column, ...]:
    return tuple(Column(str(spec["Name"]), str(spec["Type"]), spec.get("Comment")) for spec in specs)


@cache
def events_table(bucket: str = PLACEHOLDER_BUCKET) -> EventsTable:
    props = resolve(_resources("AWS::Glue::Table")[EVENTS_TABLE], template_refs(bucket))
    table, storage = props["TableInput"], props["TableInput"]["StorageDescriptor"]
    return EventsTable(
        database=props["DatabaseName"], name=table["Name"], description=table.get("Description", ""),
        columns=_columns(storage["Columns"]), partition_keys=_columns(table["PartitionKeys"]),
        location=storage["Location"], serde=storage["SerdeInfo"]["SerializationLibrary"],
        input_format=storage["InputFormat"], output_format=storage["OutputFormat"],
        parameters={key: str(value) for key, value in table.get("Parameters", {}).items()})


@cache
def views() -> dict[str, View]:
    """Every view of the template, by view name."""
    found: dict[str, View] = {}
    refs = template_refs()
    for logical_id, props in _resources("AWS::Glue::Table").items():
        table = resolve(props["TableInput"], refs)
        if table.get("TableType") != "VIRTUAL_VIEW":
            continue
        definition = decode_view_text(table["ViewOriginalText"])
        found[table["Name"]] = View(
            logical_id=logical_id, name=table["Name"], description=table.get("Description", ""),
            sql=definition["originalSql"],
            columns=tuple(Column(c["name"], c["type"]) for c in definition["columns"]),
            glue_columns=_columns(table["StorageDescriptor"]["Columns"]), definition=definition, table_input=table)
    return found


def decode_view_text(text: str) -> dict[str, Any]:
    """The Presto view definition inside a ViewOriginalText."""
    if not (text.startswith(VIEW_PREFIX) and text.endswith(VIEW_SUFFIX)):
        raise ValueError(f"not a Presto view text: {text[:40]!r}")
    return json.loads(base64.b64decode(text[len(VIEW_PREFIX): -len(VIEW_SUFFIX)]))


@cache
def saved_queries() -> dict[str, TemplateQuery]:
    """Every saved query of the template, by key."""
    found: dict[str, TemplateQuery] = {}
    for logical_id, props in _resources("AWS::Athena::NamedQuery").items():
        query = SavedQuery.of(str(props["Name"]), str(props.get("Description", "")), str(props["QueryString"]))
        found[query.key] = TemplateQuery(**vars(query), logical_id=logical_id, database=props.get("Database"),
                                         workgroup=props.get("WorkGroup"))
    return found


def saved_query(name: str) -> TemplateQuery:
    """A saved query by key (failed-logins), name as in the console (Failed logins) or logical id."""
    queries = saved_queries()
    found = find(queries, name) or next((q for q in queries.values() if q.logical_id == name), None)
    if found is None:
        raise UnknownQuery(f"no saved query {name!r}; there are: {', '.join(queries)}")
    return found


def events_table_ddl(bucket: str = PLACEHOLDER_BUCKET) -> str:
    """The CREATE EXTERNAL TABLE statement equivalent to the template's Glue table, in Athena's (Hive) DDL."""
    table = events_table(bucket)

    def column(c: Column) -> str:
        return f"`{c.name}` {c.type}" + (f" COMMENT {_hive_string(c.comment)}" if c.comment else "")

    properties = ",\n  ".join(f"{_hive_string(k)}={_hive_string(v)}" for k, v in table.parameters.items())
    return (f"CREATE EXTERNAL TABLE `{table.database}`.`{table.name}` (\n  "
            + ",\n  ".join(column(c) for c in table.columns)
            + f"\n)\nCOMMENT {_hive_string(table.description)}\n"
            f"PARTITIONED BY ({', '.join(column(c) for c in table.partition_keys)})\n"
            f"ROW FORMAT SERDE {_hive_string(table.serde)}\n"
            f"STORED AS INPUTFORMAT {_hive_string(table.input_format)}\n"
            f"OUTPUTFORMAT {_hive_string(table.output_format)}\n"
            f"LOCATION {_hive_string(table.location)}\n"
            f"TBLPROPERTIES (\n  {properties}\n)")


def view_ddl(view: View) -> str:
    """The CREATE VIEW statement that makes the same view in Athena."""
    return f"CREATE OR REPLACE VIEW {view.name} AS\n{view.sql}"


def _hive_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


# --- DuckDB ----------------------------------------------------------------------------------------------------


def to_duckdb(sql: str) -> str:
    """Athena SQL (Trino) in DuckDB's dialect."""
    statements = sqlglot.transpile(sql, read="athena", write="duckdb")
    if len(statements) != 1:
        raise ValueError(f"expected one statement, got {len(statements)}")
    return statements[0]


def placeholders(sql: str) -> int:
    """How many `?` execution parameters an Athena statement takes."""
    return sum(1 for _ in sqlglot.parse_one(sql, read="athena").find_all(exp.Placeholder))


def connect(archive_dir: Path | str) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with `events` over the archive under `archive_dir` (the bucket's root: objects at
    `<archive_dir>/events/vendor=…/dt=…/…`) and the template's views."""
    connection = duckdb.connect()
    # Athena evaluates timestamps in UTC; DuckDB would convert TIMESTAMPTZ to the machine's zone.
    connection.execute("SET TimeZone = 'UTC'")
    table = events_table()
    connection.execute(f"CREATE VIEW {table.name} AS {_events_select(table, Path(archive_dir))}")
    for view in views().values():
        connection.execute(f"CREATE VIEW {view.name} AS {to_duckdb(view.sql)}")
    return connection


def _events_select(table: EventsTable, archive_dir: Path) -> str:
    columns = [*table.columns, *table.partition_keys]
    names = ", ".join(c.name for c in columns)
    pattern = "/".join([table.prefix.rstrip("/"), *(f"{key.name}=*" for key in table.partition_keys), "*"])
    files = archive_dir / pattern
    if not any(archive_dir.glob(pattern)):  # read_json refuses a glob that matches nothing
        typed = ", ".join(f"CAST(NULL AS {_duckdb_type(c.type)}) AS {c.name}" for c in columns)
        return f"SELECT {typed} WHERE false"
    schema = "{" + ", ".join(f"'{c.name}': '{_duckdb_type(c.type)}'" for c in table.columns) + "}"
    hive_types = "{" + ", ".join(f"'{k.name}': '{_duckdb_type(k.type)}'" for k in table.partition_keys) + "}"
    source = (f"read_json({_sql_string(str(files))}, format = 'newline_delimited', compression = 'gzip', "
              f"columns = {schema}, hive_partitioning = true, hive_types = {hive_types})")
    conditions = _projection_conditions(table)
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    return f"SELECT {names} FROM {source}{where}"  # noqa: S608 - names and values come from the template


def _projection_conditions(table: EventsTable) -> list[str]:
    """Athena reads only the partitions projection allows: the enum's values and the date range."""
    parameters, conditions = table.parameters, []
    for key in table.partition_keys:
        kind = parameters.get(f"projection.{key.name}.type")
        if kind == "enum":
            values = ", ".join(_sql_string(v) for v in parameters[f"projection.{key.name}.values"].split(","))
            conditions.append(f"{key.name} IN ({values})")
        elif kind == "date" and parameters.get(f"projection.{key.name}.format") == "yyyy-MM-dd":
            low, high = (_projected_day(bound) for bound in parameters[f"projection.{key.name}.range"].split(","))
            conditions.append(f"{key.name} BETWEEN {_sql_string(low)} AND {_sql_string(high)}")
    return conditions


def _projected_day(bound: str) -> str:
    bound = bound.strip()
    if bound.upper() == "NOW":
        return datetime.now(UTC).date().isoformat()
    return date.fromisoformat(bound).isoformat()


def _duckdb_type(hive_type: str) -> str:
    return _HIVE_TO_DUCKDB[hive_type.lower()]


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def run_sql(connection: duckdb.DuckDBPyConnection, sql: str,
            parameters: Sequence[Any] = ()) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Runs Athena SQL on the local archive: its column names and rows."""
    cursor = connection.execute(to_duckdb(sql), [_unquote(value) for value in parameters])
    return [column[0] for column in cursor.description or []], cursor.fetchall()


def run_saved(connection: duckdb.DuckDBPyConnection, name: str,
              parameters: Sequence[Any] | Mapping[str, Any] = ()) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Runs a saved query by name (see `saved_query`) with its parameters, by position or by name. Values may be
    given as Athena's execution parameters are (string literals quoted: '2026-11-01') or plain."""
    query = saved_query(name)
    if isinstance(parameters, Mapping):
        unknown = set(parameters) - set(query.parameters)
        missing = [p for p in query.parameters if p not in parameters]
        if unknown or missing:
            raise ParameterError(f"{query.key} takes {', '.join(query.parameters) or 'no parameters'}; "
                                 f"missing {missing}, unknown {sorted(unknown)}")
        values = [parameters[p] for p in query.parameters]
    else:
        values = list(parameters)
    if len(values) != len(query.parameters):
        raise ParameterError(f"{query.key} takes {len(query.parameters)} parameters "
                             f"({', '.join(query.parameters)}), got {len(values)}")
    return run_sql(connection, query.sql, values)


def _unquote(value: Any) -> Any:
    """An Athena execution parameter is a SQL literal: a quoted string becomes the string."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1].replace("''", "'")
    return value


# --- the archive of a local stack ------------------------------------------------------------------------------


def mirror_archive(stack: LocalStack, directory: Path | str) -> int:
    """Copies every archived object of a `LocalStack` (moto S3) to `directory`, keeping the keys as paths, so
    `connect(directory)` reads what Athena would. Returns how many objects were copied."""
    root = Path(directory)
    s3 = boto3.client("s3")
    prefix = events_table().prefix
    copied = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=stack.bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            target = root / item["Key"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(s3.get_object(Bucket=stack.bucket, Key=item["Key"])["Body"].read())
            copied += 1
    return copied
