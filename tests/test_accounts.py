"""Several accounts per vendor: each account its own secret, HTTP client, streams, cursors, leases and digest chains,
all sharing the vendor's invocation.

Every vendor's world gets a second account: a second simulator of the same vendor, with its own token and events,
at its own origin, its secret under the vendor's account prefix. The scenarios: tokens never mix; the exactly-once
matrix with one account failing part of the time; a bad secret (or plan) among good ones; the default account's keys,
objects and digests exactly as without accounts; and what each extra account costs an idle tick.
"""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import aws_calls
import boto3
import pytest
from conftest import MATRIX, MEASURED, ArchiveCheck, Clock, verify_archive
from worlds import TRAITS, VENDORS

from auditlake import aws, http, timeutil
from auditlake.archive import stream_part
from auditlake.errors import AuditlakeError, AuditLogsUnavailable, ConfigError
from auditlake.state import Kind, StateStore, StreamKey
from auditlake_local.simulators import SimRequest, SimulatorAdapter, VendorSimulator, make
from auditlake_local.stack import LocalStack
from auditlake_local.vendors import VENDORS as LOCAL_VENDORS
from auditlake_local.vendors import LocalVendor
from auditlake_vendors import adapter

SMALL_PARTS = {"MAX_OBJECT_EVENTS": "250"}  # several parts per window
EVENTS = 600


def title_of(vendor: str) -> str:
    return LOCAL_VENDORS[vendor].function_id.removesuffix("Collector")


@dataclass
class Account:
    """One account of a vendor: its simulator (its own token), where it is served, and every request it received."""

    name: str | None  # None: the default account
    local: LocalVendor
    simulator: VendorSimulator
    origin: str
    seed: int
    requests: list[SimRequest] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.name or "default"

    @property
    def token(self) -> str:
        return self.local.token

    def key(self, stream: str) -> StreamKey:
        return StreamKey(self.local.vendor, stream, account=self.name)

    def streams(self) -> list[str]:
        """The stream ids its adapter lists (from the secret's scope fields, as every adapter does)."""
        return adapter(self.local.vendor)(self.local.secret(self.origin), None, 100).streams()  # type: ignore[arg-type]

    def authorization(self, token: str | None = None) -> str:
        """The Authorization header its adapter sends with its token (or another)."""
        secret = {**self.local.secret(self.origin), "token": token or self.token}
        return adapter(self.local.vendor).auth_headers(secret)["Authorization"]

    def add_events(self, count: int, start: datetime, end: datetime) -> None:
        self.seed += 1
        self.simulator.add_events(self.local.generate_events(count, start, end, self.seed))


class Accounts:
    """A vendor's accounts, each simulator mounted at its origin in the collectors' HTTP session."""

    def __init__(self, stack: LocalStack, vendor: str, clock: Clock, names: list[str]) -> None:
        self.stack = stack
        self.vendor = vendor
        self.function_id = LOCAL_VENDORS[vendor].function_id
        self.clock = clock
        self.all: list[Account] = []
        for index, name in enumerate([None, *names]):
            base = LOCAL_VENDORS[vendor]
            # Another account of the same vendor: its own token; the same scope ids (two workspaces may be alike),
            # so only the account tells their streams apart.
            local = base if name is None else replace(base, token=f"{name}-{vendor}-token-{index}c4e9a71d3b")
            self.all.append(Account(name, local, local.start(clock.now), f"https://{vendor}-{index}.test",
                                    seed=100 * (index + 1)))
        self.session = http.shared_session()
        for account in self.all:
            self._mount(account)
            self.put_secret(account, account.local.secret(account.origin))

    def _mount(self, account: Account) -> None:
        handle = account.simulator.handle

        def recording(request: SimRequest) -> Any:
            account.requests.append(request)
            return handle(request)

        account.simulator.handle = recording  # type: ignore[method-assign]
        self.session.mount(f"{account.origin}/", SimulatorAdapter(account.simulator))

    def close(self) -> None:
        for account in self.all:
            self.session.adapters.pop(f"{account.origin}/", None)

    def __getitem__(self, name: str) -> Account:
        return next(a for a in self.all if a.label == name)

    def put_secret(self, account: Account, value: dict[str, Any] | str) -> None:
        if account.name is None:
            self.stack.put_secret(self.function_id, value)
        else:
            self.stack.put_account_secret(self.function_id, account.name, value)

    def seed(self, count: int = EVENTS) -> None:
        now = self.clock.now()
        for account in self.all:
            account.add_events(count, now - timedelta(days=2), now - timedelta(minutes=10))

    def invoke(self, event: dict[str, Any] | None = None, **environment: str) -> dict[str, Any]:
        return self.stack.invoke(self.function_id, event, environment={**SMALL_PARTS, **environment})

    def run_until_caught_up(self, max_ticks: int = 20, **environment: str) -> list[dict[str, Any]]:
        summaries = []
        for _ in range(max_ticks):
            summaries.append(self.invoke(**environment))
            if summaries[-1]["status"] == "ok":
                return summaries
            self.clock.advance()
        raise AssertionError(f"not caught up after {max_ticks} ticks")

    def records(self, account: Account) -> list[dict[str, Any]]:
        return records_of(self.stack, account)

    def check(self, account: Account) -> ArchiveCheck:
        """The account's archive against its simulator's ground truth, by content (`raw` verbatim)."""
        records = self.records(account)
        canonical = lambda event: json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)  # noqa: E731
        expected = Counter(canonical(e) for e in account.simulator.ground_truth().values())
        archived = Counter(canonical(json.loads(r["raw"])) for r in records)
        ids = Counter(r["event_id"] for r in records)
        unexpected = sum(n for c, n in archived.items() if c not in expected)
        # Duplicates by content (ClickUp's id-less rows may be byte-identical, and count) and by id.
        duplicates = max(sum((archived - expected).values()) - unexpected, sum(n - 1 for n in ids.values() if n > 1))
        return ArchiveCheck(events=expected.total(), archived=len(records), missing=sum((expected - archived).values()),
                            duplicates=duplicates, unexpected=unexpected)

    def states(self, account: Account) -> dict[str, Any]:
        prefix = f"{self.vendor}#" if account.name is None else f"{self.vendor}@{account.name}#"
        return {s.key: s for s in StateStore(boto3.client("dynamodb"), self.stack.table).scan()
                if s.key.startswith(prefix)}


def records_of(stack: LocalStack, account: Account) -> list[dict[str, Any]]:
    """The account's archived records: those in its streams' objects (live, backfill and reconciliation), which
    the objects' names tell apart (`<vendor>-<stream>_...`, `<vendor>-<account>-<stream>_...`)."""
    mine = {stream_part(account.key(stream).with_kind(kind)) for stream in account.streams() for kind in Kind}
    return [r for r in stack.archived_records(account.local.vendor)
            if r["_key"].rsplit("/", 1)[1].split("_", 1)[0] in mine]


def accounts_stack(vendor: str, names: list[str]) -> Any:
    return LocalStack.start({f"{title_of(vendor)}Accounts": ",".join(names)})


def serve_recording(session: Any, account: Account) -> None:
    """Serves the account's simulator at its origin on the shared session, keeping every request it answers."""
    handle = account.simulator.handle

    def recording(request: SimRequest) -> Any:
        account.requests.append(request)
        return handle(request)

    account.simulator.handle = recording  # type: ignore[method-assign]
    session.mount(f"{account.origin}/", SimulatorAdapter(account.simulator))


@pytest.fixture
def world(request: pytest.FixtureRequest, clock: Clock) -> Iterator[Accounts]:
    vendor, names = request.param
    with accounts_stack(vendor, names) as stack:
        accounts = Accounts(stack, vendor, clock, names)
        try:
            yield accounts
        finally:
            accounts.close()


def everything_sent(request: SimRequest) -> str:
    return request.url + json.dumps(dict(request.headers)) + request.body.decode("utf-8", "replace")


# --- tokens never mix -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("world", [(v, ["second"]) for v in VENDORS], ids=VENDORS, indirect=True)
def test_each_request_carries_only_its_own_accounts_token(world: Accounts, clock: Clock) -> None:
    world.seed()
    summaries = world.run_until_caught_up()
    for account in world.all:
        assert account.requests, f"{account.label} was asked nothing"
        others = [value for other in world.all if other is not account
                  for value in (other.token, other.authorization())]
        for request in account.requests:
            assert request.headers["authorization"] == account.authorization()
            sent = everything_sent(request)
            assert not any(value in sent for value in others), f"another account's token reached {account.label}"
        assert world.check(account).missing == 0 and world.check(account).duplicates == 0
    streams = summaries[0]["streams"]
    assert {s["account"] for s in streams} == {"default", "second"}
    assert all(s["stream"].startswith(f"{world.vendor}@second#") == (s["account"] == "second") for s in streams)
    report = verify_archive(world.stack)
    assert report.clean, "\n".join(f.line() for f in report.findings)


@pytest.fixture
def make_zones(clock: Clock) -> Iterator[tuple[LocalStack, list[Account]]]:
    """Two Make organizations in different zones, at the zones' own hosts (the secrets name the zone, no base URL)."""
    with LocalStack.start({"MakeAccounts": "us-subsidiary"}) as stack:
        base = LOCAL_VENDORS["make"]
        eu = Account(None, base, make.MakeSimulator(base.token, 4187, zone="eu1.make.com", now=clock.now),
                     "https://eu1.make.com", seed=1)
        us_local = replace(base, token="us-subsidiary-token-7a3c9e1f0b2d",
                           scope={"organization_id": "4190", "zone": "us1.make.com"})
        us = Account("us-subsidiary", us_local, make.MakeSimulator(us_local.token, 4190, zone="us1.make.com",
                                                                   now=clock.now), "https://us1.make.com", seed=2)
        session = http.shared_session()
        for account in (eu, us):
            serve_recording(session, account)
        stack.put_secret("MakeCollector", {"token": eu.token, "organization_id": "4187", "zone": "eu1"})
        stack.put_account_secret("MakeCollector", "us-subsidiary",
                                 {"token": us.token, "organization_id": "4190", "zone": "us1"})
        try:
            yield stack, [eu, us]
        finally:
            for account in (eu, us):
                session.adapters.pop(f"{account.origin}/", None)


def test_two_make_organizations_in_two_zones(make_zones: tuple[LocalStack, list[Account]], clock: Clock) -> None:
    stack, (eu, us) = make_zones
    now = clock.now()
    eu.simulator.add_events(make.generate_events(300, now - timedelta(days=1), now - timedelta(minutes=10), 1,
                                                 organization_id=4187))
    us.simulator.add_events(make.generate_events(200, now - timedelta(days=1), now - timedelta(minutes=10), 2,
                                                 organization_id=4190))
    summary = stack.invoke("MakeCollector")
    assert summary["status"] == "ok", summary
    assert {(s["stream"], s["account"]) for s in summary["streams"]} == {
        ("make#4187", "default"), ("make@us-subsidiary#4190", "us-subsidiary")}
    assert {r.url.split("/")[2] for r in eu.requests} == {"eu1.make.com"}
    assert {r.url.split("/")[2] for r in us.requests} == {"us1.make.com"}
    assert {r.headers["authorization"] for r in eu.requests} == {f"Token {eu.token}"}
    assert {r.headers["authorization"] for r in us.requests} == {f"Token {us.token}"}
    keys = {r["_key"].rsplit("/", 1)[1].split("_", 1)[0] for r in stack.archived_records("make")}
    assert keys == {"make-4187", "make-us-subsidiary-4190"}
    assert len(stack.archived_records("make")) == 500
    states = {s.key for s in StateStore(boto3.client("dynamodb"), stack.table).scan()}
    assert states == {"make#4187", "make@us-subsidiary#4190"}
    report = verify_archive(stack)
    assert report.clean and set(report.chains) >= {"make#4187", "make@us-subsidiary#4190"}, report


# --- the exactly-once matrix: one account failing part of the time ----------------------------------------------

WRONG_TOKEN = "wrong-token-5d0e8c2b71f4"


@pytest.mark.slow
@pytest.mark.parametrize("world", [(v, ["second"]) for v in VENDORS], ids=VENDORS, indirect=True)
def test_exactly_once_with_one_account_failing_part_of_the_time(world: Accounts, clock: Clock) -> None:
    """The second account's token is wrong for two ticks, then revoked in the middle of a run, then fixed. Every
    failing tick raises naming it; the default account is collected in every tick all the same; in the end both are
    archived exactly once and every chain verifies."""
    default, second = world.all
    world.seed()
    world.put_secret(second, {**second.local.secret(second.origin), "token": WRONG_TOKEN})
    for _ in range(2):
        with pytest.raises(AuditlakeError) as failure:
            world.invoke()
        message = str(failure.value)
        assert re.search(rf"\b{world.vendor} account second\b", message), message
        assert "account default" not in message, message
        assert not any(token in message for token in (default.token, second.token, WRONG_TOKEN)), message
        assert world.check(default).missing == 0, "the healthy account was held back"
        assert world.check(second).archived == 0
        now = clock.now()
        default.add_events(20, now - timedelta(minutes=4), now - timedelta(minutes=3))
        clock.advance()

    # The right token, revoked at the vendor after a few requests of this run: what was fetched is committed.
    world.put_secret(second, second.local.secret(second.origin))
    handle, served = second.simulator.handle, {"n": 0}

    def revoked_midway(request: SimRequest) -> Any:
        served["n"] += 1
        if 3 <= served["n"] <= 6:  # the vendor sees the token as no longer valid
            request = replace(request, headers={**request.headers,
                                                "authorization": second.authorization(WRONG_TOKEN)})
        return handle(request)

    second.simulator.handle = revoked_midway  # type: ignore[method-assign]
    with pytest.raises(AuditlakeError) as failure:
        world.invoke(PAGE_SIZE="50")
    assert re.search(rf"\b{world.vendor} account second\b", str(failure.value)), failure.value
    assert world.check(default).missing == 0
    second.simulator.handle = handle  # type: ignore[method-assign]
    clock.advance()
    world.run_until_caught_up()

    for account in world.all:
        result = world.check(account)
        name = f"{world.vendor} accounts: {account.label}" + (" failing" if account.name else "")  # fits the table
        MATRIX[name] = result
        assert (result.missing, result.duplicates, result.unexpected) == (0, 0, 0), (account.label, result)
        assert result.archived == result.events > 0
    report = verify_archive(world.stack)
    assert report.clean, "\n".join(f.line() for f in report.findings)
    live = {str(a.key(stream)) for a in world.all for stream in a.streams()}
    assert live <= set(report.chains)


# --- a bad secret (or plan) among good ones ---------------------------------------------------------------------

BAD: dict[str, tuple[str, str]] = {
    # name: (what is wrong, the error it must name)
    "missing_field": ("secret lacks its scope field", r"secret auditlake/\S+/make/us-sub is missing field "
                                                      r"'organization_id'"),
    "not_json": ("secret is not JSON", r"secret auditlake/\S+/make/us-sub is not JSON"),
    "placeholder": ("secret never filled", r"field 'token' still holds the placeholder"),
    "absent": ("secret deleted", r"secret auditlake/\S+/make/us-sub could not be read \(ResourceNotFoundException\)"),
    "wrong_token": ("token refused", r"HTTP 401"),
    "plan_without_audit_logs": ("organization without Enterprise", "audit logs are not available to this account"),
}


@pytest.fixture
def three_orgs(clock: Clock) -> Iterator[tuple[LocalStack, dict[str, Account]]]:
    """Make: the default organization and two further ones, `us-sub` and `eu-two`, each its own simulator."""
    with LocalStack.start({"MakeAccounts": "us-sub,eu-two"}) as stack:
        base = LOCAL_VENDORS["make"]
        accounts: dict[str, Account] = {}
        session = http.shared_session()
        for index, (name, org, zone) in enumerate([(None, 4187, "eu1.make.com"), ("us-sub", 4190, "us1.make.com"),
                                                   ("eu-two", 4191, "eu2.make.com")]):
            local = base if name is None else replace(base, token=f"{name}-make-token-{index}c4e9a71d3b",
                                                      scope={"organization_id": str(org), "zone": zone})
            account = Account(name, local, make.MakeSimulator(local.token, org, zone=zone, now=clock.now),
                              f"https://make-{index}.test", seed=index + 1)
            serve_recording(session, account)
            secret = local.secret(account.origin)
            if name is None:
                stack.put_secret("MakeCollector", secret)
            else:
                stack.put_account_secret("MakeCollector", name, secret)
            now = clock.now()
            account.simulator.add_events(make.generate_events(
                150, now - timedelta(hours=6), now - timedelta(minutes=10), index + 1, organization_id=org))
            accounts[account.label] = account
        try:
            yield stack, accounts
        finally:
            for account in accounts.values():
                session.adapters.pop(f"{account.origin}/", None)


def _make_records(stack: LocalStack, account: Account) -> list[dict[str, Any]]:
    return records_of(stack, account)


@pytest.mark.parametrize("bad", list(BAD))
def test_a_bad_account_among_good_ones(bad: str, three_orgs: tuple[LocalStack, dict[str, Account]],
                                       clock: Clock) -> None:
    stack, accounts = three_orgs
    victim = accounts["us-sub"]
    good = secret = victim.local.secret(victim.origin)
    secrets = boto3.client("secretsmanager")
    secret_id = stack.account_secret_id("MakeCollector", "us-sub")
    if bad == "missing_field":
        stack.put_account_secret("MakeCollector", "us-sub", {k: v for k, v in secret.items() if k != "organization_id"})
    elif bad == "not_json":
        stack.put_account_secret("MakeCollector", "us-sub", "token=" + victim.token)
    elif bad == "placeholder":
        stack.put_account_secret("MakeCollector", "us-sub", {**secret, "token": "REPLACE_ME"})
    elif bad == "absent":
        secrets.delete_secret(SecretId=secret_id, ForceDeleteWithoutRecovery=True)
    elif bad == "wrong_token":
        stack.put_account_secret("MakeCollector", "us-sub", {**secret, "token": WRONG_TOKEN})
    else:
        victim.simulator.enterprise = False  # type: ignore[attr-defined]
    with pytest.raises(AuditlakeError) as failure:
        stack.invoke("MakeCollector")
    message = str(failure.value)
    assert re.search(r"\bmake account us-sub\b", message), message
    assert re.search(BAD[bad][1], message), message
    assert "account default" not in message and "account eu-two" not in message, message
    assert not any(a.token in message for a in accounts.values()) and WRONG_TOKEN not in message, message
    if bad == "plan_without_audit_logs":
        assert isinstance(failure.value.__cause__, AuditLogsUnavailable)
        assert message.count("audit logs are not available to this account") == 1
    # The others are collected in the same run, whole.
    for name in ("default", "eu-two"):
        truth = accounts[name].simulator.ground_truth()
        assert len(_make_records(stack, accounts[name])) == len(truth) == 150, name
    assert _make_records(stack, victim) == []
    secret_problem = bad in ("missing_field", "not_json", "placeholder", "absent")
    assert len(victim.requests) == (0 if secret_problem else 1), "no request without a usable secret; else one"
    items = {s.key for s in StateStore(boto3.client("dynamodb"), stack.table).scan()}
    assert ("make@us-sub#4190" in items) != secret_problem

    # Fixed, the next tick collects it, exactly once.
    if bad == "absent":
        secrets.create_secret(Name=secret_id, KmsKeyId=stack.functions_env("ARCHIVE_KMS_KEY_ARN"),
                              SecretString=json.dumps(good))
    else:
        stack.put_account_secret("MakeCollector", "us-sub", good)
    victim.simulator.enterprise = True  # type: ignore[attr-defined]
    clock.advance()
    assert stack.invoke("MakeCollector")["status"] == "ok"
    records = _make_records(stack, victim)
    assert len(records) == len({r["event_id"] for r in records}) == 150


def test_a_bad_default_account_among_good_ones(three_orgs: tuple[LocalStack, dict[str, Account]]) -> None:
    stack, accounts = three_orgs
    default = accounts["default"]
    stack.put_secret("MakeCollector", {k: v for k, v in default.local.secret(default.origin).items() if k != "zone"
                                       and k != "organization_id"})
    with pytest.raises(AuditlakeError, match=r"make account default: make secret \S+ is missing field "
                                             r"'organization_id'") as failure:
        stack.invoke("MakeCollector")
    assert "us-sub" not in str(failure.value) and "eu-two" not in str(failure.value)
    assert default.requests == []
    for name in ("us-sub", "eu-two"):
        assert len(_make_records(stack, accounts[name])) == 150, name


@pytest.mark.parametrize(("value", "error"), [
    ("us-sub,US", "account name 'US' is not one"), ("default", "not 'default'"),
    ("us-sub,us-sub", "names us-sub more than once"), ("a_b", "account name 'a_b'"),
])
def test_accounts_setting_is_checked(value: str, error: str, three_orgs: tuple[LocalStack, dict[str, Account]]
                                     ) -> None:
    stack, accounts = three_orgs
    with pytest.raises(ConfigError, match=f"ACCOUNTS: .*{error}|ACCOUNTS names .*{error}|{error}"):
        stack.invoke("MakeCollector", environment={"ACCOUNTS": value})
    assert all(a.requests == [] for a in accounts.values())


def test_a_backfill_or_reconciliation_names_its_account(three_orgs: tuple[LocalStack, dict[str, Account]],
                                                        clock: Clock) -> None:
    stack, accounts = three_orgs
    assert stack.invoke("MakeCollector")["status"] == "ok"
    before = {name: len(a.requests) for name, a in accounts.items()}
    since = timeutil.to_iso(clock.now() - timedelta(days=20))[:10]
    summary = stack.invoke("MakeCollector", {"backfill": {"since": since, "account": "eu-two"}})
    assert {(s["stream"], s["account"]) for s in summary["streams"]} == {("make@eu-two#4191#backfill", "eu-two")}
    assert {name: len(a.requests) - before[name] for name, a in accounts.items() if name != "eu-two"} == {
        "default": 0, "us-sub": 0}
    summary = stack.invoke("MakeCollector", {"reconcile": {"since": since, "account": "default"}})
    assert [s["stream"] for s in summary["streams"]] == ["make#4187#reconcile"]
    with pytest.raises(ConfigError, match="make has no account 'nope'"):
        stack.invoke("MakeCollector", {"backfill": {"since": since, "account": "nope"}})
    with pytest.raises(ConfigError, match="a backfill event's account"):
        stack.invoke("MakeCollector", {"backfill": {"since": since, "account": "Not A Name"}})


# --- nothing already stored changes ------------------------------------------------------------------------------


class FrozenClock:
    def __init__(self, start: datetime) -> None:
        self.at = start

    def now(self) -> datetime:
        return self.at


def _default_account_run(monkeypatch: pytest.MonkeyPatch, parameters: dict[str, str]) -> dict[str, Any]:
    """Two ticks of Make's default account, at fixed instants, on a stack with these parameters: its state items,
    and its objects' and digests' keys and bytes (a digest's signature aside: ECDSA signs with a fresh nonce)."""
    frozen = FrozenClock(datetime(2026, 11, 20, 12, 0, tzinfo=UTC))
    monkeypatch.setattr(timeutil, "now", frozen.now)
    base = LOCAL_VENDORS["make"]
    with LocalStack.start(parameters) as stack:
        simulator = base.start(frozen.now)
        session = http.shared_session()
        session.mount("https://make-default.test/", SimulatorAdapter(simulator))
        others = []
        try:
            stack.put_secret("MakeCollector", base.secret("https://make-default.test"))
            for name in filter(None, parameters.get("MakeAccounts", "").split(",")):
                other = replace(base, token=f"{name}-make-token-5e0b2d8f16")
                other_simulator = other.start(frozen.now)
                other_simulator.add_events(other.generate_events(120, frozen.at - timedelta(days=1),
                                                                 frozen.at - timedelta(minutes=10), 9))
                session.mount(f"https://make-{name}.test/", SimulatorAdapter(other_simulator))
                others.append(f"https://make-{name}.test/")
                stack.put_account_secret("MakeCollector", name, other.secret(f"https://make-{name}.test"))
            simulator.add_events(base.generate_events(400, frozen.at - timedelta(days=2),
                                                      frozen.at - timedelta(minutes=10), 7))
            # One query at a time: slices end where the density seen by then says, which thread timing decides,
            # and the two runs are compared key by key.
            one_query = {**SMALL_PARTS, "FETCH_CONCURRENCY": "1"}
            stack.invoke("MakeCollector", environment=one_query)
            frozen.at += timedelta(hours=2)  # a digest is due
            simulator.add_events(base.generate_events(50, frozen.at - timedelta(minutes=30),
                                                      frozen.at - timedelta(minutes=10), 8))
            stack.invoke("MakeCollector", environment=one_query)
            s3 = boto3.client("s3")
            stored: dict[str, Any] = {}
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=stack.bucket):
                for item in page.get("Contents", []):
                    name = item["Key"].rsplit("/", 1)[1]
                    if "make-4187" not in item["Key"] or not (name.startswith("make-4187") or "stream=make-4187/"
                                                              in item["Key"]):
                        continue
                    body = s3.get_object(Bucket=stack.bucket, Key=item["Key"])["Body"].read()
                    stored[item["Key"]] = _comparable_digest(body) if item["Key"].startswith("digests/") else body
            states = {}
            for state in StateStore(boto3.client("dynamodb"), stack.table).scan():
                if state.key.startswith("make#"):
                    state.status = {}  # the last run's outcome: its backlog is measured against the clock
                    states[state.key] = (state.done_until, state.origin, state.seen, state.hint,
                                         state.events_archived, state.digest.sequence, state.digest.previous_key)
            return {"objects": stored, "states": states}
        finally:
            session.adapters.pop("https://make-default.test/", None)
            for origin in others:
                session.adapters.pop(origin, None)


def _comparable_digest(body: bytes) -> Any:
    """A digest with what differs between any two runs masked: the S3 version ids it lists (S3 chooses them) and
    the hash of the digest before it (which lists those). Its signature is in its metadata, not compared."""
    digest = json.loads(body)
    for entry in digest.get("objects", []):
        entry["version_id"] = "*"
    if digest.get("previous"):
        digest["previous"]["sha256"] = "*"
    return digest


def test_the_default_accounts_keys_objects_and_digests_are_as_without_accounts(
        monkeypatch: pytest.MonkeyPatch) -> None:
    without = _default_account_run(monkeypatch, {})
    with_accounts = _default_account_run(monkeypatch, {"MakeAccounts": "us-sub,eu-two"})
    assert without["states"] and set(without["states"]) == {"make#4187"}
    assert any(k.startswith("digests/vendor=make/stream=make-4187/") for k in without["objects"])
    assert any(k.startswith("events/vendor=make/") for k in without["objects"])
    assert with_accounts == without


# --- what an extra account costs an idle tick ---------------------------------------------------------------------


@pytest.mark.parametrize("world", [(v, ["second", "third"]) for v in VENDORS], ids=VENDORS, indirect=True)
def test_idle_tick_cost_per_extra_account(world: Accounts, clock: Clock) -> None:
    """An idle tick (nothing new) with one, two and three accounts: each extra account adds its streams' idle
    requests (one per stream) and two DynamoDB operations per stream (the lease taken and released), plus one read
    of its secret when the cached one is older than SECRET_MAX_AGE_SECONDS (Powertools' cache)."""
    world.seed(50)
    costs = []
    for accounts in ("", "second", "second,third"):
        world.run_until_caught_up(ACCOUNTS=accounts)
        clock.advance()
        aws.secrets_provider.cache_clear()  # the secrets as a tick reads them once its cached copies are old
        start = len(aws_calls.CALLS)
        summary = world.invoke(ACCOUNTS=accounts)
        calls = Counter(f"{c.service}:{c.operation}" for c in aws_calls.CALLS[start:])
        assert summary["status"] == "ok" and summary["s3"]["objects"] == 0, summary
        costs.append((summary["http"]["requests"], summary["dynamodb_operations"], calls))
    streams = TRAITS[world.vendor].streams
    for fewer, more in itertools.pairwise(costs):
        assert more[0] - fewer[0] == TRAITS[world.vendor].idle_requests
        assert more[1] - fewer[1] == 2 * streams
        assert more[2]["secretsmanager:GetSecretValue"] - fewer[2]["secretsmanager:GetSecretValue"] == 1
    extra = {name: costs[2][2][name] - costs[1][2][name] for name in costs[2][2]}
    MEASURED.append(f"idle tick, {world.vendor}: 1 account {costs[0][0]} requests / {costs[0][1]} DynamoDB ops; "
                    f"each extra account +{costs[2][0] - costs[1][0]} requests, +{costs[2][1] - costs[1][1]} DynamoDB "
                    f"ops; AWS calls per extra account (its secret's cached copy expired): "
                    + ", ".join(f"{k} +{v}" for k, v in sorted(extra.items()) if v))


def test_the_local_stack_creates_the_named_accounts_secrets() -> None:
    """As an operator would before deploying with `MakeAccounts`: each under the vendor's prefix, encrypted with the
    archive key, holding the default secret's placeholders until filled."""
    with LocalStack.start({"MakeAccounts": "us-sub,eu-two"}) as stack:
        secrets = boto3.client("secretsmanager")
        assert stack.functions["MakeCollector"].environment["ACCOUNTS"] == "us-sub,eu-two"
        for name in ("us-sub", "eu-two"):
            secret_id = f"auditlake/auditlake-local/make/{name}"
            assert stack.account_secret_id("MakeCollector", name) == secret_id
            assert secrets.describe_secret(SecretId=secret_id)["KmsKeyId"] == stack.functions_env("ARCHIVE_KMS_KEY_ARN")
            assert set(json.loads(secrets.get_secret_value(SecretId=secret_id)["SecretString"]).values()) == {
                "REPLACE_ME"}
        assert [s["Name"] for s in secrets.list_secrets()["SecretList"] if s["Name"].startswith("auditlake/")] \
            == ["auditlake/auditlake-local/make/us-sub", "auditlake/auditlake-local/make/eu-two"]


GENERIC_BAD = ["missing_field", "not_json", "placeholder", "wrong_token"]


@pytest.mark.parametrize("bad", GENERIC_BAD)
@pytest.mark.parametrize("world", [(v, ["second", "third"]) for v in VENDORS], ids=VENDORS, indirect=True)
def test_a_bad_secret_among_good_ones_for_every_vendor(world: Accounts, bad: str, clock: Clock) -> None:
    """The catalogue's secret entries, on the second of three accounts of each vendor: the error names the vendor
    and the account, never a token; the first and third accounts are collected in the same run, whole."""
    world.seed(120)
    first, second, third = world.all
    good = second.local.secret(second.origin)
    scope = next(iter(second.local.scope), "token")  # Ashby's secret has no field but its token
    bad_value: dict[str, Any] | str = {
        "missing_field": {k: v for k, v in good.items() if k != scope},
        "not_json": f"token={second.token}",
        "placeholder": {**good, "token": "REPLACE_ME"},
        "wrong_token": {**good, "token": WRONG_TOKEN},
    }[bad]
    expected = {"missing_field": rf"is missing field '{scope}'", "not_json": "is not JSON",
                "placeholder": "still holds the placeholder", "wrong_token": r"HTTP 40[13]"}[bad]
    world.put_secret(second, bad_value)
    with pytest.raises(AuditlakeError) as failure:
        world.invoke()
    message = str(failure.value)
    assert re.search(rf"\b{world.vendor} account second\b", message) and re.search(expected, message), message
    assert "account default" not in message and "account third" not in message, message
    assert not any(value in message for a in world.all for value in (a.token, a.authorization())), message
    assert WRONG_TOKEN not in message
    for account in (first, third):
        result = world.check(account)
        assert (result.missing, result.duplicates, result.unexpected) == (0, 0, 0), (account.label, result)
    assert world.records(second) == []
    assert len(second.requests) == (0 if bad != "wrong_token" else TRAITS[world.vendor].streams)

    world.put_secret(second, good)
    clock.advance()
    world.run_until_caught_up()
    for account in world.all:
        result = world.check(account)
        assert (result.missing, result.duplicates, result.unexpected) == (0, 0, 0), (account.label, result)
