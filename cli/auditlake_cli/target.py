"""Where the commands act: a deployed stack, found by name (`--stack`), or what a plugin offers (the demo
workspace of the local world)."""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from auditlake.state import StateStore, StreamState
from auditlake_cli import plugins
from auditlake_cli.errors import CliError
from auditlake_cli.saved_queries import SavedQuery
from auditlake_vendors import adapter

# A deployed collector may run for its whole timeout (280 s); the answer must not time out before it.
LAMBDA_READ_TIMEOUT_SECONDS = 320
BUSY_WAIT_SECONDS = 15.0  # while Lambda throttles the invocation, or a scheduled run holds a stream's lease
MAX_BUSY_WAITS = 40
ATHENA_POLL_SECONDS = (0.25, 2.0)  # first and longest wait between polls of a running query

sleep: Callable[[float], None] = time.sleep  # looked up at each wait, so tests can replace it
Columns = list[str]
Rows = list[list[Any]]


class Target(Protocol):
    name: str

    def states(self) -> list[StreamState]: ...

    def invoke(self, vendor: str, event: dict[str, Any]) -> dict[str, Any]: ...

    def secret(self, vendor: str, account: str | None = None) -> dict[str, Any] | None: ...

    def put_secret(self, vendor: str, value: dict[str, str], account: str | None = None) -> str: ...

    def base_url(self, vendor: str, account: str | None = None) -> str | None: ...

    def accounts(self, vendor: str) -> tuple[str, ...] | None:
        """The vendor's named accounts the collector reads (not `default`); None when the target does not say."""
        ...

    def save(self) -> None: ...

    def archive(self) -> ArchiveAccess: ...

    def saved_queries(self) -> dict[str, SavedQuery]: ...

    def query(self, sql: str, parameters: list[str] | None = None) -> tuple[Columns, Rows]:
        """Runs Athena SQL; `parameters` are the `?` placeholders' values as SQL literals."""
        ...


@dataclass(frozen=True)
class ArchiveAccess:
    """What `verify` reads: the bucket, the digests' signing key, and the streams' state (the chains' heads)."""

    s3: Any
    kms: Any
    bucket: str
    signing_key: str
    states: Callable[[], list[StreamState]]


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
        """Invokes the collector and waits for its summary. When Lambda throttles the call (the account's
        concurrency is shared), it waits and tries again; a stream that a scheduled run holds reports itself busy
        in the summary, which the caller waits out (spans.run_spans)."""
        function = self.output(f"{adapter(vendor).title}CollectorFunctionName")
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

    def _secret_id(self, vendor: str, account: str | None = None) -> str:
        """The default account's secret is the stack's `<Title>TokenSecretArn`; a named account's is that name under
        the vendor's prefix (`<Title>AccountSecretPrefix`, `auditlake/<stack>/<vendor>/`)."""
        title = adapter(vendor).title
        if account is None:
            return self.output(f"{title}TokenSecretArn")
        return self.output(f"{title}AccountSecretPrefix") + account

    def secret(self, vendor: str, account: str | None = None) -> dict[str, Any] | None:
        try:
            value = self.session.client("secretsmanager").get_secret_value(SecretId=self._secret_id(vendor, account))
        except ClientError:
            return None  # only a source of defaults for the prompts (a new account has no secret yet)
        return json_object(value.get("SecretString"))

    def put_secret(self, vendor: str, value: dict[str, str], account: str | None = None) -> str:
        """Stores the value; a named account's secret is created on first use, encrypted with the stack's archive
        key, which the collector may decrypt through Secrets Manager. Returns the secret's ARN."""
        secret_id = self._secret_id(vendor, account)
        secrets = self.session.client("secretsmanager")
        try:
            return str(secrets.put_secret_value(SecretId=secret_id, SecretString=json.dumps(value))["ARN"])
        except ClientError as exc:
            if account is None or exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
        # With a customer managed key, CreateSecret needs kms:GenerateDataKey and kms:Decrypt on it (Secrets
        # Manager API Reference, CreateSecret); the operator's credentials have them through the key's policy.
        created = secrets.create_secret(
            Name=secret_id, KmsKeyId=self.output("ArchiveKeyArn"), SecretString=json.dumps(value),
            Description=f"auditlake {self.stack}: the {adapter(vendor).title} account {account}")
        return str(created["ARN"])

    def base_url(self, vendor: str, account: str | None = None) -> str | None:
        return None

    def accounts(self, vendor: str) -> tuple[str, ...] | None:
        """The stack's `<Title>Accounts` parameter; None for a stack deployed before accounts existed."""
        names = self.parameters.get(f"{adapter(vendor).title}Accounts")
        return None if names is None else tuple(n.strip() for n in names.split(",") if n.strip())

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

    def saved_queries(self) -> dict[str, SavedQuery]:
        """The saved queries as deployed in the stack's workgroup."""
        athena = self.session.client("athena")
        found: dict[str, SavedQuery] = {}
        for page in athena.get_paginator("list_named_queries").paginate(WorkGroup=self.output("AthenaWorkGroup")):
            for query_id in page.get("NamedQueryIds", []):
                named = athena.get_named_query(NamedQueryId=query_id)["NamedQuery"]
                query = SavedQuery.of(named["Name"], named.get("Description", ""), named["QueryString"])
                found[query.key] = query
        return found


def _typed(value: str | None) -> Any:
    """Athena returns every value as text; whole numbers print better as numbers."""
    if value is not None and value.lstrip("-").isdigit() and len(value) < 19:
        return int(value)
    return value


def json_object(raw: Any) -> dict[str, Any] | None:
    try:
        value = json.loads(raw) if isinstance(raw, str | bytes) else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


@contextlib.contextmanager
def target(args: argparse.Namespace, *, vendors: Sequence[str] = ()) -> Iterator[Target]:
    """The deployed stack named by `--stack`, else what an installed plugin offers for these arguments (the demo
    workspace, with the simulators of `vendors` served), for the command's duration."""
    if args.stack:
        yield StackTarget(args.stack, args.region)
        return
    with plugins.open_target(args, vendors) as found:
        if found is None:
            raise CliError("say which deployed stack: --stack NAME (and --region, unless your AWS configuration "
                           "sets one)")
        yield found
