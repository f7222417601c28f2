"""Fixtures: the stack of template.yaml on moto, a controllable clock, and vendor simulators wired in."""

from __future__ import annotations

import json
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aws_calls
import boto3
import botocore.session
import iam_model
import pytest
from moto.kms import models as kms_models

from auditlake import http, secrets, timeutil
from auditlake.state import StateStore
from auditlake_cli import main as cli
from auditlake_cli.verify import Report, Verifier, load_public_key
from auditlake_local.simulators import AsanaSimulator, SimulatorAdapter
from auditlake_local.stack import LambdaContext, LocalStack

ASANA_TOKEN = "asana-sa-token-4f1d0c9e7b2a"
ASANA_WORKSPACE = "1200000000000001"
ASANA_BASE = "https://asana.test/api/1.0"
TICK = timedelta(minutes=5)


@dataclass
class Clock:
    """The engine's clock, movable: ticks are minutes apart and leases expire without waiting."""

    offset: timedelta = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, delta: timedelta = TICK) -> None:
        self.offset += delta


@dataclass
class Pauses:
    seconds: list[float] = field(default_factory=list)

    def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(timeutil, "now", clock.now)
    return clock


@pytest.fixture(autouse=True)
def pauses(monkeypatch: pytest.MonkeyPatch) -> Pauses:
    """Waits (retries and pacing) are recorded, never slept, in every test: a collector paced at a vendor's limit
    would otherwise sleep in real time, also against the demo's loopback simulators."""
    recorded = Pauses()
    monkeypatch.setattr(http, "pause", recorded)
    return recorded


# --- no token in anything the collectors emit -------------------------------------------------------------------
# Every token a collector loads passes through `secrets.parse_secret`; every test's captured stdout, stderr and log
# records (the collectors' JSON logs and metrics go there) and every failure's report are searched for them.

TOKENS_SEEN: set[str] = set()
TOKEN_LEAKS: list[str] = []


@pytest.fixture(autouse=True, scope="session")
def _record_tokens() -> Iterator[None]:
    parse = secrets.parse_secret

    def recording(vendor: str, secret_id: str, raw: Any, required: tuple[str, ...]) -> dict[str, str]:
        value = parse(vendor, secret_id, raw, required)
        if len(value.get("token", "")) >= 8:  # shorter strings would match by accident
            TOKENS_SEEN.add(value["token"])
        return value

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(secrets, "parse_secret", recording)
        yield


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if _XDIST_CONTROLLER:
        return  # the workers search their own tests' reports: only they know the tokens they loaded
    emitted = [content for _, content in report.sections]
    if report.longrepr is not None:
        emitted.append(str(report.longrepr))
    for text in emitted:
        for token in TOKENS_SEEN:
            if token in text:
                TOKEN_LEAKS.append(f"{report.nodeid} ({report.when}): a token appears in its output")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: what the summary prints goes to the controller
        workeroutput["auditlake"] = json.dumps({
            "tokens": sorted(TOKENS_SEEN), "leaks": TOKEN_LEAKS,
            "measured": list(zip(_MEASURED_AT, MEASURED, strict=True)),
            "matrix": [[_FIRST_SEEN_BY[name], name, asdict(check)] for name, check in MATRIX.items()]})
    if TOKEN_LEAKS:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# --- parallel workers (pytest-xdist) ----------------------------------------------------------------------------
# Each worker runs its share of the tests with its own TOKENS_SEEN, MATRIX and MEASURED; when it finishes, the
# controller gathers them (pytest_testnodedown) so that its terminal summary prints them whole, the matrix in the
# tests' collection order, as one process would.

_XDIST_CONTROLLER = False
_FIRST_SEEN_BY: dict[str, int] = {}  # matrix line -> the collection index of the test that measured it
_MEASURED_AT: list[int] = []  # the collection index of the test that measured each line of MEASURED
_MATRIX_FROM_WORKERS: list[tuple[int, str, ArchiveCheck]] = []
_MEASURED_FROM_WORKERS: list[tuple[int, str]] = []


def pytest_configure(config: pytest.Config) -> None:
    global _XDIST_CONTROLLER
    _XDIST_CONTROLLER = getattr(config.option, "numprocesses", None) not in (None, 0) \
        and not hasattr(config, "workerinput")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    try:
        return (yield)
    finally:
        if MATRIX.keys() - _FIRST_SEEN_BY.keys() or len(MEASURED) > len(_MEASURED_AT):
            index = item.session.items.index(item)
            for name in MATRIX.keys() - _FIRST_SEEN_BY.keys():
                _FIRST_SEEN_BY[name] = index
            _MEASURED_AT.extend([index] * (len(MEASURED) - len(_MEASURED_AT)))


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    output = getattr(node, "workeroutput", {}).get("auditlake")
    if output is None:
        return  # a worker that died: its tests are reported failed (or rerun) by xdist
    gathered = json.loads(output)
    TOKENS_SEEN.update(gathered["tokens"])
    TOKEN_LEAKS.extend(gathered["leaks"])
    _MEASURED_FROM_WORKERS.extend((index, line) for index, line in gathered["measured"])
    MEASURED[:] = [line for _, line in sorted(_MEASURED_FROM_WORKERS, key=lambda entry: entry[0])]
    _MATRIX_FROM_WORKERS.extend((index, name, ArchiveCheck(**check)) for index, name, check in gathered["matrix"])
    MATRIX.clear()
    MATRIX.update((name, check) for _, name, check in sorted(_MATRIX_FROM_WORKERS, key=lambda entry: entry[0]))


# --- `make test-fast`: what is marked slow ---------------------------------------------------------------------
# Besides the tests marked `slow` where they are written: of every parametrized test that runs on a stack (most of
# them are matrices over the vendors, the faults or the crash points), all cases but one, chosen by the test's name
# so that different tests keep different vendors; and every test on the demo workspace or the installed wheel,
# whose module fixtures alone take longer than the fast run may.

ON_A_STACK = {"stack", "world"}
SLOW_FIXTURES = {"pristine", "installed"}


@pytest.hookimpl(tryfirst=True)  # before `-m` selects by the marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    cases: dict[tuple[str, str], list[pytest.Item]] = {}
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if SLOW_FIXTURES & fixtures:
            item.add_marker(pytest.mark.slow)
        elif getattr(item, "callspec", None) is not None and ON_A_STACK & fixtures and item.parent is not None:
            cases.setdefault((item.parent.nodeid, getattr(item, "originalname", item.name)), []).append(item)
    for (_, name), group in cases.items():
        kept = group[zlib.crc32(name.encode()) % len(group)]
        for item in group:
            if item is not kept:
                item.add_marker(pytest.mark.slow)


# Modules whose module-scoped fixture takes seconds to build (the demo workspace, the installed wheel, an archive
# collected once): each runs whole on one worker, which builds it once. Every other test is scheduled on its own
# (a class's tests together), so that the long modules spread over the workers.
WHOLE_MODULES = {"tests/test_cli.py", "tests/test_operator_install.py", "tests/test_athena.py", "tests/test_ocsf.py"}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") != "load":
        return None  # a --dist the caller chose
    from xdist.scheduler import LoadScopeScheduling  # noqa: PLC0415 - xdist is present when it calls this hook

    class Scheduling(LoadScopeScheduling):
        # (xdist's own grouping, --dist loadgroup, renames node ids, which pytest 9 no longer lets it do.)
        def _split_scope(self, nodeid: str) -> str:
            module, _, rest = nodeid.partition("::")
            if module in WHOLE_MODULES:
                return module
            path = rest.split("[", 1)[0].split("::")
            return "::".join([module, *path[:-1]]) if len(path) > 1 else nodeid

    return Scheduling(config, log)


# --- every AWS call, authorised against the translated template ---------------------------------------------------
# Each call the code makes through botocore is recorded with the principal that makes it in AWS (tests/aws_calls.py)
# and, after each test, authorised as AWS would (tests/iam_model.py): a call AWS would refuse, or one the model cannot
# decide, fails the test that made it.

CURRENT_STACK: list[LocalStack] = []


@pytest.fixture(autouse=True, scope="session")
def _record_aws_calls() -> Iterator[None]:
    create, invoke, main = LocalStack._create_resources, LocalStack.invoke, cli.main

    def creating(self: LocalStack) -> None:
        CURRENT_STACK[:] = [self]
        create(self)

    def invoking(self: LocalStack, function_id: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        with aws_calls.as_principal(f"{function_id}Role", self):
            return invoke(self, function_id, *args, **kwargs)

    def operating(argv: list[str] | None = None) -> int:
        if argv and "--stack" in argv and CURRENT_STACK:
            principal = iam_model.AUDITOR if argv[0] == "verify" else iam_model.OPERATOR
            with aws_calls.as_principal(principal, CURRENT_STACK[0]):
                return main(argv)
        return main(argv)

    with pytest.MonkeyPatch.context() as patch, aws_calls.recording():
        patch.setattr(LocalStack, "_create_resources", creating)
        patch.setattr(LocalStack, "invoke", invoking)
        patch.setattr(cli, "main", operating)
        yield


@pytest.fixture(autouse=True)
def _authorise_aws_calls() -> Iterator[list[aws_calls.Call]]:
    """The calls this test made, each authorised after the test."""
    start = len(aws_calls.CALLS)
    recorded: list[aws_calls.Call] = []
    yield recorded
    recorded += aws_calls.CALLS[start:]
    del aws_calls.CALLS[start:]
    problems = aws_calls.problems(aws_calls.check(recorded))
    if problems:
        pytest.fail("AWS would refuse (or the permission model cannot decide) these calls:\n  "
                    + "\n  ".join(sorted(set(problems))), pytrace=False)


# --- moto, without the work it repeats for every stack ----------------------------------------------------------
# Each test builds its own stack in a fresh `mock_aws` (nothing is shared between tests), and each `mock_aws` starts
# a new boto3 default session: without these two, most of a small test's time went to botocore re-reading its JSON
# service models for every client, and to moto generating a 2048-bit RSA key for every symmetric KMS key.


@pytest.fixture(autouse=True, scope="session")
def _shared_botocore_models() -> Iterator[None]:
    """One botocore loader for every session: the service models are read once, not once per client."""
    create = botocore.session.create_loader
    loaders: dict[str | None, Any] = {}

    def shared(search_path_string: str | None = None) -> Any:
        if search_path_string not in loaders:
            loaders[search_path_string] = create(search_path_string)
        return loaders[search_path_string]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(botocore.session, "create_loader", shared)
        yield


@pytest.fixture(autouse=True, scope="session")
def _one_rsa_key_for_symmetric_kms_keys() -> Iterator[None]:
    """moto gives every symmetric key an RSA private key that only Sign would use, and Sign refuses a symmetric key:
    one serves them all. Every other key spec (the digests' signing key) still gets its own."""
    generate = kms_models.generate_private_key
    spare = generate("SYMMETRIC_DEFAULT")

    def generating(key_spec: str) -> Any:
        return spare if key_spec == "SYMMETRIC_DEFAULT" else generate(key_spec)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kms_models, "generate_private_key", generating)
        yield


@pytest.fixture
def stack() -> Iterator[LocalStack]:
    with LocalStack.start() as local:
        yield local


@pytest.fixture
def sequential_reading(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every window read with one query at a time (FETCH_CONCURRENCY=1), as before slices: for tests that place a
    vendor's quirk at the Nth request or count a run's requests, which slices read at once would reorder. The same
    quirks are read in slices, at real concurrency, in test_slicing.py. (Tests without a stack are left alone.)"""
    if "stack" not in request.fixturenames:
        return
    stack: LocalStack = request.getfixturevalue("stack")
    for function in stack.functions.values():
        monkeypatch.setitem(function.environment, "FETCH_CONCURRENCY", "1")


@pytest.fixture
def asana(stack: LocalStack, clock: Clock, pauses: Pauses) -> Iterator[AsanaSimulator]:
    simulator = AsanaSimulator(token=ASANA_TOKEN, workspace_gid=ASANA_WORKSPACE, now=clock.now)
    session = http.shared_session()
    session.mount("https://asana.test/", SimulatorAdapter(simulator))
    stack.put_secret("AsanaCollector", {"token": ASANA_TOKEN, "workspace_gid": ASANA_WORKSPACE,
                                        "base_url": ASANA_BASE})
    yield simulator
    session.adapters.pop("https://asana.test/", None)


def context(stack: LocalStack, function_id: str, remaining_ms: Any = None) -> LambdaContext:
    return LambdaContext(function_name=function_id, timeout_seconds=stack.functions[function_id].timeout,
                         remaining_ms=remaining_ms)


@dataclass
class ArchiveCheck:
    events: int  # in the vendor's ground truth
    archived: int  # records in the archive
    missing: int  # ground-truth events not archived
    duplicates: int  # archived more than once (by content, and by event_id)
    unexpected: int  # archived records that are no ground-truth event (e.g. a raw that was altered)


def _canonical(event: Any) -> str:
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def check_archive(stack: LocalStack, vendor: str, truth: dict[str, dict[str, Any]]) -> ArchiveCheck:
    """The whole archive of one vendor against the simulator's ground truth, compared by the events' content
    (`raw` verbatim), so the check does not depend on how the collector derives its event ids."""
    records = stack.archived_records(vendor)
    expected = Counter(_canonical(event) for event in truth.values())
    archived = Counter(_canonical(json.loads(r["raw"])) for r in records)
    ids = Counter(r["event_id"] for r in records)
    return ArchiveCheck(
        events=len(truth),
        archived=len(records),
        missing=sum((expected - archived).values()),
        duplicates=max(sum((archived - expected).values()) - sum(n for c, n in archived.items() if c not in expected),
                       sum(n - 1 for n in ids.values() if n > 1)),
        unexpected=sum(n for c, n in archived.items() if c not in expected),
    )


def verify_archive(stack: LocalStack, clock: Clock | None = None, **selection: Any) -> Report:
    """`auditlake verify` over the stack's whole archive (or `streams`, `since`, `until`), with the signing key's
    public key from KMS and the streams' state, as an auditor with the AuditorPolicy runs it; the chains' age is
    judged by `clock`, else by the engine's clock."""
    with aws_calls.as_principal(iam_model.AUDITOR, stack):
        public = boto3.client("kms").get_public_key(KeyId=stack.functions_env("DIGEST_SIGNING_KEY_ARN"))["PublicKey"]
        verifier = Verifier(boto3.client("s3"), stack.bucket, load_public_key(public, "the signing key"),
                            states=StateStore(boto3.client("dynamodb"), stack.table).scan,
                            now=clock.now if clock else timeutil.now)  # the engine's clock: the test's, if it set one
        return verifier.run(**selection)


MATRIX: dict[str, ArchiveCheck] = {}
# What a test measured for the record (the operator wheel's size, build and install times), after the results.
MEASURED: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The exactly-once matrix, one line per scenario, after the test results; then the token check."""
    terminalreporter.section("tokens in what the collectors emitted")
    terminalreporter.write_line(f"{len(TOKENS_SEEN)} tokens loaded by collectors; searched every test's captured "
                                f"output, logs and failure reports: {len(TOKEN_LEAKS)} leaks")
    for leak in TOKEN_LEAKS:
        terminalreporter.write_line(f"LEAK {leak}", red=True)
    if MATRIX:
        terminalreporter.section("exactly-once matrix (events / missing / duplicates)")
        for name, r in MATRIX.items():
            terminalreporter.write_line(f"{name:<34} {r.events:>6} {r.missing:>4} {r.duplicates:>4}")
    if MEASURED:
        terminalreporter.section("measured")
        for line in MEASURED:
            terminalreporter.write_line(line)
