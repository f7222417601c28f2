"""The demo's saved state, so `auditlake status`, `backfill`, `query` and `secret set` work on it in later runs.

A workspace directory holds what the in-process stack and the vendor simulators would otherwise lose when the
process ends:

- `archive/events/vendor=…/dt=…/*.json.gz`: a mirror of the archive bucket (the layout Athena and DuckDB read),
- `archive/digests/vendor=…/stream=…/*.json`: the digests, likewise,
- `state.json`: the state table's items, verbatim (DynamoDB attribute values; binary ones in base64), and the
  keys of the archive's objects at that moment, with their version ids and the digests' metadata (their
  signatures): written in one piece after the objects, so the state and the archive put back are always from the
  same moment (an object a save did not finish listing is dropped),
- `signing-key.pem`: the demo's digest signing key (moto's; in AWS the private half never leaves KMS), so the
  digests stay verifiable and later runs extend their chains,
- `secrets.json`: each account's secret (the simulators' own tokens, no real credential), by account key (`make`,
  `make@us-subsidiary`),
- `simulators/<account key>.json.gz`: the events each simulator was given (one simulator per account),
- `workspace.json`: what the demo was started with (its accounts among it); written last, so a directory without it
  is no workspace.

`open()` rebuilds the stack on moto, puts objects, items and secrets back, and serves each simulator on loopback
again (on a new port, so each secret's `base_url` is rewritten). `Workspace.save()` writes back.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import os
import shutil
import signal
import threading
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

import auditlake_vendors
from auditlake.digest import DIGESTS_PREFIX
from auditlake_cli.errors import CliError
from auditlake_local.simulators import VendorSimulator, serve
from auditlake_local.stack import LambdaContext, LocalStack
from auditlake_local.vendors import ACCOUNTS, VENDORS, LocalVendor

DEFAULT_DIRECTORY = Path(".auditlake/demo")
MANIFEST = "workspace.json"
FORMAT = 2  # 2: several accounts per vendor (simulators and secrets by account key)
# The collectors' JSON logs and metrics are for CloudWatch; the command line prints its own summaries instead,
# and reports a failed run itself.
QUIET = {"LOG_LEVEL": "CRITICAL", "POWERTOOLS_METRICS_DISABLED": "true"}


class WorkspaceError(CliError):
    """The workspace is missing or unusable; the message is one sentence for the operator."""


@dataclass
class Workspace:
    directory: Path
    stack: LocalStack
    manifest: dict[str, Any]
    events: dict[str, list[dict[str, Any]]]  # account key (`make`, `make@us-subsidiary`) -> its simulator's events
    simulators: dict[str, VendorSimulator] = field(default_factory=dict)  # by account key
    origins: dict[str, str] = field(default_factory=dict)  # account key -> http://127.0.0.1:port of its simulator

    @property
    def archive_dir(self) -> Path:
        return self.directory / "archive"

    @property
    def lookback_days(self) -> int:
        return int(self.manifest["lookback_days"])

    @property
    def accounts(self) -> dict[str, LocalVendor]:
        """Every account of the workspace, by key: each vendor's default one, then its named ones."""
        return workspace_accounts(self.manifest)

    def context(self, function_id: str) -> LambdaContext | None:
        """The Lambda context of one invocation; None gives the function's own timeout (see LocalStack.invoke)."""
        return None

    def invoke(self, vendor: str, event: dict[str, Any] | None = None) -> dict[str, Any]:
        function_id = VENDORS[vendor].function_id
        return self.stack.invoke(function_id, event, context=self.context(function_id), environment=QUIET)

    def publish_late(self, key: str, events: list[dict[str, Any]]) -> None:
        """Events an account publishes now, though they happened earlier: its simulator serves them from now on,
        and the workspace keeps them with the others."""
        self.simulators[key].add_events(events)
        self.events[key] = [*self.events[key], *events]

    def secret_id(self, vendor: str, account: str | None = None) -> str:
        """The default account's secret is the function's SECRET_ID; a named one's is its name under the vendor's
        prefix (ACCOUNT_SECRET_PREFIX), as on a deployed stack."""
        environment = self.stack.functions[VENDORS[vendor].function_id].environment
        return environment["SECRET_ID"] if account is None else environment["ACCOUNT_SECRET_PREFIX"] + account

    def secret(self, vendor: str, account: str | None = None) -> str:
        secret_id = self.secret_id(vendor, account)
        return str(boto3.client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"])

    def put_secret(self, vendor: str, value: dict[str, Any] | str, account: str | None = None) -> None:
        """Stores an account's secret (a named one's is created with the archive key the first time); a JSON
        object gets `base_url` pointing at this run's simulator of that account."""
        function_id = VENDORS[vendor].function_id
        value = self._pointed(vendor, value, account)
        if account is None:
            self.stack.put_secret(function_id, value)
        else:
            self.stack.put_account_secret(function_id, account, value)

    def has_account(self, vendor: str, account: str | None = None) -> bool:
        """Whether this run serves a simulator for the account."""
        return _key(vendor, account) in self.origins

    def base_url(self, vendor: str, account: str | None = None) -> str:
        """Where the account's collector reaches its simulator in this run."""
        local = self.accounts[_key(vendor, account)]
        return f"{self.origins[local.key]}{local.api_path}"

    def _pointed(self, vendor: str, value: dict[str, Any] | str,
                 account: str | None = None) -> dict[str, Any] | str:
        if isinstance(value, str):
            try:
                parsed = json.loads(value)
            except ValueError:
                return value  # stored as it was; the collector reports it as unusable
            if not isinstance(parsed, dict):
                return value
            value = parsed
        if _key(vendor, account) in self.origins:
            value = {**value, "base_url": self.base_url(vendor, account)}
        return value

    # -- saving --------------------------------------------------------------------------------------------

    def save(self) -> None:
        """Writes the archive (new objects only: each key is written once), the state items and the secrets.
        Ctrl-C waits until the save is complete."""
        with _deferred_interrupt():
            self.directory.mkdir(parents=True, exist_ok=True)
            self._save()

    def _save(self) -> None:
        previous = _read_json(self.directory / "state.json", {})
        versions, metadata = self._save_archive(previous.get("metadata", {}))
        items = _scan(self.stack.table)
        _write_json(self.directory / "state.json", {"items": [_encode(item) for item in items],
                                                    "objects": sorted(versions), "versions": versions,
                                                    "metadata": metadata})
        key_file = self.directory / "signing-key.pem"
        if not key_file.exists():
            _write_bytes(key_file, self.stack.signing_key_pem(), private=True)
        secrets = {key: self.secret(local.vendor, local.account) for key, local in self.accounts.items()}
        _write_json(self.directory / "secrets.json", secrets, private=True)
        simulators = self.directory / "simulators"
        simulators.mkdir(exist_ok=True)
        for key, events in self.events.items():
            path = simulators / f"{key}.json.gz"
            if not path.exists():  # a simulator's events never change after the demo creates them
                _write_bytes(path, gzip.compress(json.dumps(events, separators=(",", ":")).encode(), 6))
        _write_json(self.directory / MANIFEST, self.manifest)

    def _save_archive(self, saved_metadata: dict[str, dict[str, str]]
                      ) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
        """Mirrors the objects a plain GET serves; returns their version ids and the digests' metadata."""
        s3 = boto3.client("s3")
        versions: dict[str, str] = {}
        metadata: dict[str, dict[str, str]] = {}
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=self.stack.bucket):
            for item in page.get("Versions", []):
                if not item.get("IsLatest"):
                    continue
                key = item["Key"]
                versions[key] = item["VersionId"]
                path = self.archive_dir / key
                fresh = not (path.exists() and path.stat().st_size == item["Size"])
                if fresh:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    _write_bytes(path, s3.get_object(Bucket=self.stack.bucket, Key=key)["Body"].read())
                if key.startswith(f"{DIGESTS_PREFIX}/"):
                    metadata[key] = saved_metadata[key] if not fresh and key in saved_metadata else \
                        s3.head_object(Bucket=self.stack.bucket, Key=key)["Metadata"]
        return versions, metadata


@contextlib.contextmanager
def create(directory: Path, events: dict[str, list[dict[str, Any]]], manifest: dict[str, Any]
           ) -> Iterator[Workspace]:
    """A new workspace: a fresh stack, each simulator serving `events` (by account key: `make`,
    `make@us-subsidiary`), each secret in place. Replaces an older workspace in `directory`, and refuses to touch a
    directory that holds anything else."""
    if directory.exists() and any(directory.iterdir()):
        if not (directory / MANIFEST).exists():
            raise WorkspaceError(f"{directory} exists and is not a demo workspace; choose another --workspace")
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    named: dict[str, list[str]] = {}
    for key in events:
        vendor, _, account = key.partition("@")
        if account:
            named.setdefault(vendor, []).append(account)
    manifest = {"format": FORMAT, **manifest, "accounts": named}
    with LocalStack.start(_parameters(manifest)) as stack, _serving(manifest, events) as (simulators, origins):
        workspace = Workspace(directory, stack, manifest, events, simulators, origins)
        for key, local in workspace.accounts.items():
            workspace.put_secret(local.vendor, local.secret(origins[key]), local.account)
        yield workspace


@contextlib.contextmanager
def open(directory: Path, *, vendors: Collection[str] | None = None) -> Iterator[Workspace]:
    """The saved workspace, running again: its stack on moto and the simulators of every account of `vendors`
    (default: all)."""
    manifest = read_manifest(directory)
    events = {key: _read_events(directory, key) for key, local in workspace_accounts(manifest).items()
              if vendors is None or local.vendor in vendors}
    with LocalStack.start(_parameters(manifest)) as stack, _serving(manifest, events) as (running, origins):
        workspace = Workspace(directory, stack, manifest, events, running, origins)
        key_file = directory / "signing-key.pem"
        if key_file.is_file():
            stack.restore_signing_key(key_file.read_bytes())
        saved = _read_json(directory / "state.json", {"items": [], "objects": []})
        _restore_archive(workspace, set(saved["objects"]), saved.get("versions", {}), saved.get("metadata", {}))
        _restore_items(stack.table, saved["items"])
        accounts = workspace.accounts
        for key, value in _read_json(directory / "secrets.json", {}).items():
            if key in accounts:
                workspace.put_secret(accounts[key].vendor, value, accounts[key].account)
        yield workspace


def read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    if not path.is_file():
        raise WorkspaceError(f"no demo workspace at {directory}; run `auditlake demo` first")
    try:
        manifest = json.loads(path.read_text())
    except ValueError:
        raise WorkspaceError(f"the demo workspace at {directory} is damaged ({MANIFEST} is not JSON); "
                             "run `auditlake demo` again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise WorkspaceError(f"the demo workspace at {directory} has an unknown format; run `auditlake demo` again")
    return manifest


def workspace_accounts(manifest: dict[str, Any]) -> dict[str, LocalVendor]:
    """The accounts a workspace's manifest names: every vendor's default one and the named ones it lists."""
    found = {local.key: local for local in VENDORS.values()}
    for vendor, names in manifest.get("accounts", {}).items():
        for name in names:
            local = ACCOUNTS.get(vendor, {}).get(name)
            if local is None:
                raise WorkspaceError(f"the demo workspace names a {vendor} account {name} this version does not "
                                     "simulate; run `auditlake demo` again")
            found[local.key] = local
    return found


def _parameters(manifest: dict[str, Any]) -> dict[str, str]:
    """The stack's parameters: the demo's lookback, and the named accounts each collector reads
    (`<Title>Accounts`)."""
    parameters = {"InitialLookbackDays": str(manifest["lookback_days"])}
    for vendor, names in manifest.get("accounts", {}).items():
        if names:
            parameters[f"{auditlake_vendors.adapter(vendor).title}Accounts"] = ",".join(names)
    return parameters


def _key(vendor: str, account: str | None) -> str:
    return vendor if account is None else f"{vendor}@{account}"


@contextlib.contextmanager
def _serving(manifest: dict[str, Any], events: dict[str, list[dict[str, Any]]]
             ) -> Iterator[tuple[dict[str, VendorSimulator], dict[str, str]]]:
    accounts = workspace_accounts(manifest)
    simulators: dict[str, VendorSimulator] = {}
    origins: dict[str, str] = {}
    with contextlib.ExitStack() as servers:
        for key, account_events in events.items():
            simulator = accounts[key].start()
            simulator.add_events(account_events)
            origins[key] = servers.enter_context(serve(simulator))
            simulators[key] = simulator
        yield simulators, origins


def _restore_archive(workspace: Workspace, keys: set[str], versions: dict[str, str],
                     metadata: dict[str, dict[str, str]]) -> None:
    """Puts the saved objects back, with the version ids and metadata the digests rely on. A file the state does
    not list is from a save that did not finish: the run that wrote it is not in the saved state either, so it is
    removed (and written again when that run is)."""
    s3 = boto3.client("s3")
    root = workspace.archive_dir
    if not root.is_dir():
        return
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        key = path.relative_to(root).as_posix()
        if key not in keys:
            path.unlink()
            continue
        s3.put_object(Bucket=workspace.stack.bucket, Key=key, Body=path.read_bytes(), Metadata=metadata.get(key, {}))
        if key in versions:
            workspace.stack.restore_version_id(key, versions[key])


@contextlib.contextmanager
def _deferred_interrupt() -> Iterator[None]:
    """Holds Ctrl-C until the block is done (then raises it), so a save is never left half-written by it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[Any] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


def _scan(table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for page in boto3.client("dynamodb").get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        items.extend(page.get("Items", []))
    return items


def _restore_items(table: str, items: list[dict[str, Any]]) -> None:
    dynamodb = boto3.client("dynamodb")
    for item in items:
        dynamodb.put_item(TableName=table, Item=_decode(item))


def _encode(value: Any) -> Any:
    """DynamoDB attribute values as JSON: binary ones (`B`, `BS`) in base64."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {k: [_encode(v) for v in item] if k == "BS" else _encode(item) for k, item in value.items()}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        decoded: dict[str, Any] = {}
        for k, item in value.items():
            if k == "B":
                decoded[k] = base64.b64decode(item)
            elif k == "BS":
                decoded[k] = [base64.b64decode(v) for v in item]
            else:
                decoded[k] = _decode(item)
        return decoded
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _read_events(directory: Path, key: str) -> list[dict[str, Any]]:
    path = directory / "simulators" / f"{key}.json.gz"
    if not path.is_file():
        raise WorkspaceError(f"the demo workspace at {directory} lacks the {key} simulator's events; "
                             "run `auditlake demo` again")
    return list(json.loads(gzip.decompress(path.read_bytes())))


def _read_json(path: Path, default: Any) -> Any:
    return json.loads(path.read_text()) if path.is_file() else default


def _write_json(path: Path, value: Any, *, private: bool = False) -> None:
    _write_bytes(path, json.dumps(value, indent=1, sort_keys=True).encode(), private=private)


def _write_bytes(path: Path, data: bytes, *, private: bool = False) -> None:
    """Replaces the file whole, so an interrupted save never leaves half a file behind."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    if private:
        partial.chmod(0o600)
    os.replace(partial, path)
