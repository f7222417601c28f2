"""The stack of template.yaml, built in-process on moto, with its collector functions callable as Lambda would.

Resources are created from what the template declares (key schema, bucket settings, Glue columns,
environment variables), so the tests and the demo cannot drift from the template. moto's CloudFormation
skips secrets, Glue and bucket policies, hence the direct boto3 calls.
"""

from __future__ import annotations

import gzip
import importlib
import json
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import requests
from cryptography.hazmat.primitives import serialization
from moto import mock_aws
from moto.kms.models import kms_backends
from moto.s3.models import s3_backends
from moto.server import ThreadedMotoServer

from auditlake_local.lambda_context import LambdaContext
from auditlake_local.template import PROJECT_ROOT, load_template, resolve

__all__ = ["LambdaContext", "LocalStack"]

REGION = "us-east-1"
ACCOUNT = "123456789012"
STACK = "auditlake-local"


@dataclass
class Function:
    logical_id: str
    vendor: str
    code_dir: Path
    handler: str
    layer_dirs: list[Path]
    environment: dict[str, str]
    timeout: float


class LocalStack:
    """The template's resources on moto. Use `LocalStack.start()` as a context manager."""

    def __init__(self, parameters: dict[str, str] | None = None) -> None:
        self.template = load_template()
        self.parameters = {name: str(spec.get("Default", ""))
                           for name, spec in self.template.get("Parameters", {}).items()}
        self.parameters.update(parameters or {})
        self.refs: dict[str, Any] = {**self.parameters, "AWS::Region": REGION, "AWS::AccountId": ACCOUNT,
                                     "AWS::StackName": STACK, "AWS::Partition": "aws", "AWS::NoValue": None,
                                     "AWS::URLSuffix": "amazonaws.com"}
        self.attrs: dict[tuple[str, str], Any] = {}
        self.conditions: dict[str, bool] = {}
        self.functions: dict[str, Function] = {}
        self.endpoint: str | None = None  # a moto server's URL (`serve`); None: moto in this process (`start`)

    def client(self, service: str) -> Any:
        """One client per service and endpoint for the process's life, shared by the stacks it builds one after
        another: building a client costs more than most calls here, and moto answers any client made after it was
        imported, whichever `mock_aws` is active."""
        key = (service, os.environ.get("AWS_ENDPOINT_URL"))
        if key not in _CLIENTS:
            _CLIENTS[key] = boto3.client(service)
        return _CLIENTS[key]

    @classmethod
    @contextmanager
    def start(cls, parameters: dict[str, str] | None = None) -> Iterator[LocalStack]:
        with _aws_environment(), mock_aws():
            stack = cls(parameters)
            stack._create_resources()
            _reset_engine_clients()
            try:
                yield stack
            finally:
                _reset_engine_clients()

    @classmethod
    @contextmanager
    def serve(cls, parameters: dict[str, str] | None = None) -> Iterator[LocalStack]:
        """The same stack on a moto server in a background thread, for clients in other processes (the
        benchmark's collector, whose CPU must not include AWS's); `stack.endpoint` is the server's URL."""
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        try:
            with _aws_environment(AWS_ENDPOINT_URL=endpoint):
                stack = cls(parameters)
                stack.endpoint = endpoint
                stack._create_resources()
                _reset_engine_clients()  # a collector invoked in this process must reach this server, as in `start`
                yield stack
        finally:
            _reset_engine_clients()
            # The server keeps the resources in this process's moto backends, which outlive it: they are forgotten
            # (moto's reset API), as `mock_aws` forgets its own, so a later stack in this process starts empty.
            try:
                requests.post(f"{endpoint}/moto-api/reset", timeout=30).raise_for_status()
            finally:
                server.stop()

    # -- resources -----------------------------------------------------------------------------------------

    def resource(self, logical_id: str) -> dict[str, Any]:
        return self.template["Resources"][logical_id]

    def _resolve(self, value: Any) -> Any:
        return resolve(value, self.refs, self.attrs, self.conditions)

    def _create_resources(self) -> None:
        self.conditions = {name: self._evaluate_condition(expr)
                           for name, expr in self.template.get("Conditions", {}).items()}
        resources = self.template["Resources"]
        creators = {
            "AWS::KMS::Key": self._create_key,
            "AWS::S3::Bucket": self._create_bucket,
            "AWS::DynamoDB::Table": self._create_table,
            "AWS::SecretsManager::Secret": self._create_secret,
            "AWS::Serverless::LayerVersion": self._note_layer,
        }
        later = {"AWS::Glue::Database": self._create_glue_database, "AWS::Glue::Table": self._create_glue_table,
                 "AWS::Serverless::Function": self._note_function}
        for phase in (creators, later):
            for logical_id, spec in resources.items():
                create = phase.get(spec["Type"])
                if create and self.conditions.get(spec.get("Condition", ""), True):
                    create(logical_id, spec.get("Properties", {}))
        for function_id, function in self.functions.items():
            for account in filter(None, function.environment.get("ACCOUNTS", "").split(",")):
                self._create_account_secret(function_id, account.strip())

    def _create_account_secret(self, function_id: str, account: str) -> None:
        """A named account's secret, as an operator creates it (`auditlake secret set --account`): under the
        function's ACCOUNT_SECRET_PREFIX, encrypted with the archive key, holding the placeholders of the vendor's
        default secret until a value is put."""
        title = function_id.removesuffix("Collector")
        placeholder = self.template["Resources"].get(f"{title}Secret", {}).get("Properties", {}).get("SecretString")
        self.client("secretsmanager").create_secret(
            Name=self.account_secret_id(function_id, account), KmsKeyId=self.functions_env("ARCHIVE_KMS_KEY_ARN"),
            SecretString=str(self._resolve(placeholder)) if placeholder else "{}")

    def _evaluate_condition(self, expr: Any) -> bool:
        (op, args), = expr.items()
        if op == "Fn::Equals":
            left, right = (self._resolve(a) for a in args)
            return str(left) == str(right)
        if op == "Fn::Not":
            return not self._evaluate_condition(args[0])
        if op == "Fn::And":
            return all(self._evaluate_condition(a) for a in args)
        if op == "Fn::Or":
            return any(self._evaluate_condition(a) for a in args)
        if op == "Condition":
            return self._evaluate_condition(self.template["Conditions"][args])
        raise ValueError(f"unsupported condition {op}")

    def _create_key(self, logical_id: str, props: dict[str, Any]) -> None:
        # An asymmetric key (the digests' signing key) declares its KeySpec and KeyUsage; moto signs with them.
        shape = {name: str(self._resolve(props[name])) for name in ("KeySpec", "KeyUsage") if name in props}
        key = self.client("kms").create_key(Description=str(self._resolve(props.get("Description", logical_id))),
                                             **shape)
        self.refs[logical_id] = key["KeyMetadata"]["KeyId"]
        self.attrs[(logical_id, "Arn")] = key["KeyMetadata"]["Arn"]

    def _create_bucket(self, logical_id: str, props: dict[str, Any]) -> None:
        s3 = self.client("s3")
        name = f"{STACK}-{logical_id.lower()}-{uuid.uuid4().hex[:8]}"
        s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=bool(self._resolve(props.get("ObjectLockEnabled",
                                                                                              False))))
        if props.get("VersioningConfiguration"):
            status = self._resolve(props["VersioningConfiguration"]["Status"])
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": status})
        lock = self._resolve(props.get("ObjectLockConfiguration"))
        if lock:
            retention = lock["Rule"]["DefaultRetention"]
            s3.put_object_lock_configuration(Bucket=name, ObjectLockConfiguration={
                "ObjectLockEnabled": lock["ObjectLockEnabled"],
                "Rule": {"DefaultRetention": {"Mode": retention["Mode"], "Days": int(retention["Days"])}}})
        encryption = self._resolve(props.get("BucketEncryption"))
        if encryption:
            # CloudFormation says ServerSideEncryptionByDefault where the API says ApplyServerSideEncryptionByDefault.
            rules = [{("ApplyServerSideEncryptionByDefault" if k == "ServerSideEncryptionByDefault" else k): v
                      for k, v in rule.items()} for rule in encryption["ServerSideEncryptionConfiguration"]]
            s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules})
        self.refs[logical_id] = name
        self.attrs[(logical_id, "Arn")] = f"arn:aws:s3:::{name}"

    def _create_table(self, logical_id: str, props: dict[str, Any]) -> None:
        name = f"{STACK}-{logical_id}"
        self.client("dynamodb").create_table(
            TableName=name, KeySchema=props["KeySchema"], AttributeDefinitions=props["AttributeDefinitions"],
            BillingMode=props.get("BillingMode", "PAY_PER_REQUEST"))
        self.refs[logical_id] = name
        self.attrs[(logical_id, "Arn")] = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"

    def _create_secret(self, logical_id: str, props: dict[str, Any]) -> None:
        arn = self.client("secretsmanager").create_secret(
            Name=f"{STACK}/{logical_id}", SecretString=self._resolve(props.get("SecretString", "{}")))["ARN"]
        self.refs[logical_id] = arn

    def _create_glue_database(self, logical_id: str, props: dict[str, Any]) -> None:
        database = self._resolve(props["DatabaseInput"])
        database.setdefault("Name", f"{STACK}-{logical_id}".lower().replace("-", "_"))
        self.client("glue").create_database(DatabaseInput=database)
        self.refs[logical_id] = database["Name"]

    def _create_glue_table(self, logical_id: str, props: dict[str, Any]) -> None:
        table = self._resolve(props["TableInput"])
        self.client("glue").create_table(DatabaseName=self._resolve(props["DatabaseName"]), TableInput=table)
        self.refs[logical_id] = table["Name"]

    def _note_layer(self, logical_id: str, props: dict[str, Any]) -> None:
        content = PROJECT_ROOT / str(props["ContentUri"])
        self.refs[logical_id] = f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:{logical_id}:1"
        self.attrs[(logical_id, "path")] = content if content.name == "python" else content / "python"

    def _note_function(self, logical_id: str, props: dict[str, Any]) -> None:
        defaults = self.template.get("Globals", {}).get("Function", {})
        environment = {**defaults.get("Environment", {}).get("Variables", {}),
                       **props.get("Environment", {}).get("Variables", {})}
        layers = props.get("Layers", defaults.get("Layers", []))
        self.functions[logical_id] = Function(
            logical_id=logical_id,
            vendor=logical_id.removesuffix("Collector").lower(),
            code_dir=PROJECT_ROOT / str(props.get("CodeUri", defaults.get("CodeUri"))),
            handler=str(props.get("Handler", defaults.get("Handler"))),
            layer_dirs=[self.attrs[(layer["Ref"], "path")] for layer in layers if isinstance(layer, dict)
                        and "Ref" in layer and (layer["Ref"], "path") in self.attrs],
            environment={k: str(self._resolve(v)) for k, v in environment.items()},
            timeout=float(self._resolve(props.get("Timeout", defaults.get("Timeout", 3)))),
        )
        self.refs[logical_id] = f"{STACK}-{logical_id}"

    # -- operating the stack --------------------------------------------------------------------------------

    @property
    def bucket(self) -> str:
        return self.functions_env("ARCHIVE_BUCKET")

    @property
    def table(self) -> str:
        return self.functions_env("STATE_TABLE")

    def functions_env(self, name: str) -> str:
        return next(iter(self.functions.values())).environment[name]

    def put_secret(self, function_id: str, value: dict[str, Any] | str) -> None:
        """Puts the vendor's token (and scope fields) into the function's secret, as an operator would."""
        secret_id = self.functions[function_id].environment["SECRET_ID"]
        self.client("secretsmanager").put_secret_value(
            SecretId=secret_id, SecretString=value if isinstance(value, str) else json.dumps(value))
        _reset_engine_clients()  # a warm Lambda would keep its cached secret for SECRET_MAX_AGE_SECONDS

    def account_secret_id(self, function_id: str, account: str) -> str:
        """The name of a named account's secret (`auditlake/<stack>/<vendor>/<account>`)."""
        return self.functions[function_id].environment["ACCOUNT_SECRET_PREFIX"] + account

    def put_account_secret(self, function_id: str, account: str, value: dict[str, Any] | str) -> None:
        """Puts a named account's token (and scope fields) into its secret, creating the secret (with the archive key)
        when the stack's parameters did not name the account."""
        secrets = self.client("secretsmanager")
        secret_id = self.account_secret_id(function_id, account)
        text = value if isinstance(value, str) else json.dumps(value)
        try:
            secrets.put_secret_value(SecretId=secret_id, SecretString=text)
        except secrets.exceptions.ResourceNotFoundException:
            secrets.create_secret(Name=secret_id, KmsKeyId=self.functions_env("ARCHIVE_KMS_KEY_ARN"), SecretString=text)
        _reset_engine_clients()  # a warm Lambda would keep its cached secret for SECRET_MAX_AGE_SECONDS

    def handler(self, function_id: str) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
        """Imports the handler as Lambda does: CodeUri and the layers' python/ dirs on sys.path."""
        function = self.functions[function_id]
        for path in (function.code_dir, *function.layer_dirs):
            if str(path) not in sys.path:
                sys.path.insert(0, str(path))
        module_name, _, attribute = function.handler.rpartition(".")
        return getattr(importlib.import_module(module_name), attribute)

    def invoke(self, function_id: str, event: dict[str, Any] | None = None,
               context: LambdaContext | None = None, environment: dict[str, str] | None = None) -> dict[str, Any]:
        """Invokes a collector with its template environment (plus overrides), like one scheduled tick."""
        function = self.functions[function_id]
        context = context or LambdaContext(function_name=self.refs[function_id], timeout_seconds=function.timeout)
        saved = dict(os.environ)
        os.environ.update(function.environment)
        os.environ.update(environment or {})
        try:
            # Imported with the function's environment in place, as Lambda's init phase would.
            handler = self.handler(function_id)
            return handler(event if event is not None else {}, context)
        finally:
            os.environ.clear()
            os.environ.update(saved)

    # -- what a saved demo puts back (moto has no API to choose a version id or a key's material) -------------

    def signing_key_pem(self) -> bytes:
        """The digests' signing key, private half, as PEM: moto's stand-in for a key that never leaves KMS."""
        key = kms_backends[ACCOUNT][REGION].describe_key(self.functions_env("DIGEST_SIGNING_KEY_ARN"))
        return bytes(key.private_key.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))

    def restore_signing_key(self, pem: bytes) -> None:
        """Makes the signing key the one a saved demo signed its digests with."""
        key = kms_backends[ACCOUNT][REGION].describe_key(self.functions_env("DIGEST_SIGNING_KEY_ARN"))
        key.private_key.private_key = serialization.load_pem_private_key(pem, password=None)

    def restore_version_id(self, key: str, version_id: str) -> None:
        """Gives the archive's latest version of `key` the version id a saved demo's digests name."""
        bucket = s3_backends[ACCOUNT]["aws"].get_bucket(self.bucket)
        bucket.keys.getlist(key)[-1]._version_id = version_id

    def archived_records(self, vendor: str | None = None) -> list[dict[str, Any]]:
        """Every record in the archive (optionally one vendor's), read back from the gzip objects."""
        s3 = self.client("s3")
        prefix = f"events/vendor={vendor}/" if vendor else "events/"
        records = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                body = s3.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read()
                for line in gzip.decompress(body).decode().splitlines():
                    records.append({**json.loads(line), "_key": item["Key"]})
        return records


_CLIENTS: dict[tuple[str, str | None], Any] = {}

AWS_ENVIRONMENT = {"AWS_DEFAULT_REGION": REGION, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                   "AWS_SESSION_TOKEN": "testing", "POWERTOOLS_TRACE_DISABLED": "true",
                   "POWERTOOLS_METRICS_NAMESPACE": "auditlake", "POWERTOOLS_SERVICE_NAME": "auditlake"}


@contextmanager
def _aws_environment(**extra: str) -> Iterator[None]:
    """Fake credentials in a fake region (never a real account), restored afterwards."""
    saved = dict(os.environ)
    os.environ.update({**AWS_ENVIRONMENT, **extra})
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _reset_engine_clients() -> None:
    if "auditlake.aws" in sys.modules:
        sys.modules["auditlake.aws"].reset()
