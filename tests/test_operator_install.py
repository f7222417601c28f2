"""The operator's tool as someone outside the project installs it: the wheel built from this checkout, installed into
a new virtual environment with only the `cli` extra, and run as the `auditlake` command in processes of its own:
every command's help, then `status`, `query` and `verify` against a deployed stack that a moto server holds.

Nothing of the local world (moto, PyYAML, DuckDB, sqlglot, Powertools, the simulators, the demo) is installed there,
so a command that imports any of it fails here, and the imports are also checked by name. The build and the install
are real: they need the package index (or pip's cache) for the build backend and for boto3, requests and
cryptography.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatch
from pathlib import Path

import boto3
import pytest
import requests
from conftest import MEASURED
from worlds import deploy, world_of

import auditlake_vendors
from auditlake_cli.saved_queries import key_of
from auditlake_local import athena, workspace
from auditlake_local.simulators import serve
from auditlake_local.stack import ACCOUNT, REGION, LocalStack
from auditlake_local.template import load_template
from auditlake_local.vendors import VENDORS as LOCAL_VENDORS

ROOT = Path(__file__).resolve().parents[1]
# What only the local world needs; none of it may reach an operator's installation.
LOCAL_DISTRIBUTIONS = {"moto", "pyyaml", "duckdb", "sqlglot", "aws-lambda-powertools", "auditlake-local"}
LOCAL_MODULES = ("yaml", "moto", "duckdb", "sqlglot", "aws_lambda_powertools", "auditlake_local")
HELP = ([], ["status"], ["backfill"], ["reconcile"], ["query"], ["secret"], ["secret", "set"], ["verify"], ["doctor"])
STACK = "auditlake-prod"
WORKGROUP = "auditlake-analysts"  # as tests/worlds.py's deploy() names it in the stack's outputs
EVENTS = 250
TIMEOUT_SECONDS = 300  # for one pip run: a cold cache downloads cryptography and botocore

# Imports every module the wheel installed for the command line and the adapters (as installed: the adapters'
# directories are namespace packages, which pkgutil does not walk), then reports what else got loaded, and which
# of the local world's modules could be found at all. __main__ runs the command when imported: `python -m` runs it.
IMPORT_EVERY_MODULE = """
import importlib, importlib.metadata, importlib.util, json, sys
import auditlake_vendors
LOCAL = {local!r}
installed = importlib.metadata.files("auditlake")
modules = sorted(".".join(f.with_suffix("").parts).removesuffix(".__init__") for f in installed
                 if f.suffix == ".py" and f.parts[0] in ("auditlake_cli", "auditlake_vendors") and f.stem != "__main__")
for name in modules:
    importlib.import_module(name)
print(json.dumps({{
    "imported": modules,
    "titles": {{vendor: cls.title for vendor, cls in auditlake_vendors.adapters().items()}},
    "loaded": sorted(m for m in sys.modules if m.partition(".")[0] in LOCAL),
    "findable": sorted(m for m in LOCAL if importlib.util.find_spec(m) is not None),
}}))
"""


@dataclass(frozen=True)
class Installation:
    wheel: Path
    venv: Path
    home: Path  # an empty HOME: no AWS configuration of whoever runs the tests
    build_seconds: float
    install_seconds: float
    distributions: dict[str, str]  # normalised name: version, as pip lists them

    def environment(self, aws_endpoint: str) -> dict[str, str]:
        """Only what an operator's shell would give the command: the venv on PATH, and AWS credentials and region
        (fake), with every AWS call going to `aws_endpoint`. No PYTHONPATH: nothing of the checkout is reachable."""
        return {"PATH": f"{self.venv / 'bin'}{os.pathsep}{os.defpath}", "HOME": str(self.home), "LANG": "C.UTF-8",
                "AWS_ENDPOINT_URL": aws_endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": REGION, "AWS_CONFIG_FILE": str(self.home / "no-aws-config"),
                "AWS_SHARED_CREDENTIALS_FILE": str(self.home / "no-aws-credentials"),
                "AWS_EC2_METADATA_DISABLED": "true"}

    def run(self, *argv: str, aws_endpoint: str = "http://127.0.0.1:9", program: str = "auditlake",
            stdin: str = "") -> subprocess.CompletedProcess[str]:
        """The installed program in a process of its own, started outside the checkout. By default AWS is a closed
        port on loopback, so a command that should not need AWS cannot reach it either."""
        return subprocess.run([str(self.venv / "bin" / program), *argv], input=stdin, capture_output=True, text=True,
                              cwd=self.home, env=self.environment(aws_endpoint), timeout=120, check=False)


def normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def checked(argv: list[str | Path], what: str) -> subprocess.CompletedProcess[str]:
    """A build step with the caller's pip configuration (the index, the cache), minus anything that would point
    Python at the checkout or at an AWS account."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "AWS_", "VIRTUAL_ENV"))}
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True, env=env,
                            timeout=TIMEOUT_SECONDS, check=False)
    if result.returncode != 0:
        pytest.fail(f"{what} failed ({result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}",
                    pytrace=False)
    return result


def copy_of_checkout(to: Path) -> Path:
    """The working tree without .git and what .gitignore names. Building in the checkout itself would leave
    setuptools' build/ there, and a later build puts build/lib's stale modules in the wheel (a module deleted from
    cli/ would still ship)."""
    ignored = [line.strip().rstrip("/") for line in (ROOT / ".gitignore").read_text().splitlines()
               if line.strip() and not line.startswith(("#", "!"))]
    shutil.copytree(ROOT, to, ignore=shutil.ignore_patterns(".git", *ignored))
    return to


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installation:
    work = tmp_path_factory.mktemp("operator-install")
    source = copy_of_checkout(work / "source")
    started = time.monotonic()
    checked([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", work / "wheels", source],
            "building the wheel")
    build_seconds = time.monotonic() - started
    (wheel,) = (work / "wheels").glob("auditlake-*.whl")

    venv = work / "venv"  # `python -m venv` from a venv's Python: the base interpreter, no system site packages
    checked([sys.executable, "-m", "venv", venv], "creating the virtual environment")
    python = venv / "bin" / "python"
    started = time.monotonic()
    checked([python, "-m", "pip", "install", "--quiet", f"{wheel}[cli]"], "installing the wheel with [cli]")
    install_seconds = time.monotonic() - started
    listed = json.loads(checked([python, "-m", "pip", "list", "--format=json"], "listing the venv").stdout)
    distributions = {normalised(d["name"]): d["version"] for d in listed}

    home = work / "home"
    home.mkdir()
    MEASURED.append(f"operator wheel {wheel.name}: {wheel.stat().st_size / 1024:.0f} KiB, built in "
                    f"{build_seconds:.1f} s; `pip install '<wheel>[cli]'` into a new venv: {install_seconds:.1f} s")
    MEASURED.append("installed: " + ", ".join(f"{name} {version}" for name, version in sorted(distributions.items())))
    return Installation(wheel, venv, home, build_seconds, install_seconds, distributions)


# -- what is shipped and installed ----------------------------------------------------------------------------


def test_the_wheel_holds_the_engine_the_adapters_and_the_command_only(installed: Installation) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = wheel.namelist()
        info = next(n for n in names if n.endswith(".dist-info/METADATA")).removesuffix("METADATA")
        metadata = wheel.read(f"{info}METADATA").decode()
        entry_points = wheel.read(f"{info}entry_points.txt").decode()
    shipped = [n for n in names if not n.startswith(info)]
    assert {n.split("/")[0] for n in shipped} == {"auditlake", "auditlake_cli", "auditlake_vendors"}, shipped
    assert [n for n in shipped if "auditlake_local" in n or "simulator" in n or fnmatch(n, "*_lambda.py")] == []
    # The four adapters and the registry, nothing else of functions/ (the Lambda entry modules stay out).
    assert sorted(n for n in shipped if n.startswith("auditlake_vendors/")) == sorted(
        ["auditlake_vendors/__init__.py",
         *(f"auditlake_vendors/{vendor}/{vendor}_collector.py" for vendor in auditlake_vendors.VENDORS)])
    assert len(auditlake_vendors.VENDORS) == 4
    # It needs boto3 and requests; the operator's extra adds cryptography alone.
    requires = [line.removeprefix("Requires-Dist: ") for line in metadata.splitlines()
                if line.startswith("Requires-Dist: ")]

    def names_of(extra: str | None) -> set[str]:
        marker = f'extra == "{extra}"'
        return {normalised(re.split(r"[\s<>=!~;\[(]", r, maxsplit=1)[0]) for r in requires
                if (marker in r if extra else "extra ==" not in r)}

    assert names_of(None) == {"boto3", "requests"}
    assert names_of("cli") == {"cryptography"}
    assert re.search(r"^\[console_scripts\]\nauditlake = auditlake_cli\.main:main$", entry_points, re.M), entry_points


def test_the_operator_extra_installs_nothing_of_the_local_world(installed: Installation) -> None:
    assert "include-system-site-packages = false" in (installed.venv / "pyvenv.cfg").read_text()
    assert {"auditlake", "boto3", "requests", "cryptography"} <= set(installed.distributions)
    assert set(installed.distributions) & LOCAL_DISTRIBUTIONS == set()


def test_every_module_of_the_command_and_the_adapters_imports_without_the_local_world(
        installed: Installation) -> None:
    result = installed.run("-c", IMPORT_EVERY_MODULE.format(local=LOCAL_MODULES), program="python")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["loaded"] == [] and report["findable"] == []
    assert {f"auditlake_vendors.{v}.{v}_collector" for v in auditlake_vendors.VENDORS} <= set(report["imported"])
    commands = {f"auditlake_cli.commands.{path.stem}" for path in (ROOT / "cli" / "auditlake_cli" / "commands")
                .glob("[!_]*.py")}
    assert commands <= set(report["imported"]) and len(commands) == 7
    assert report["titles"] == {vendor: cls.title for vendor, cls in auditlake_vendors.adapters().items()}


# -- the command, installed ------------------------------------------------------------------------------------


def test_every_commands_help_and_no_plugin(installed: Installation) -> None:
    for argv in HELP:
        result = installed.run(*argv, "--help")
        assert result.returncode == 0 and result.stderr == "", (argv, result.stderr)
        assert result.stdout.startswith(f"usage: auditlake {' '.join([*argv, '[-h]'])}"), (argv, result.stdout)
        # No plugin is installed: no demo command, no demo workspace, nothing said of them.
        assert "demo" not in result.stdout.lower() and "--workspace" not in result.stdout, (argv, result.stdout)
    top = installed.run("--help").stdout
    assert all(f"\n    {command} " in top for command in ("status", "backfill", "reconcile", "query", "secret",
                                                        "verify", "doctor")), top
    as_module = installed.run("-m", "auditlake_cli", "--help", program="python")
    assert as_module.returncode == 0 and as_module.stdout == top
    demo = installed.run("demo")
    assert demo.returncode == 2 and "invalid choice: 'demo'" in demo.stderr


def test_a_command_without_a_stack_asks_for_one_in_one_sentence(installed: Installation) -> None:
    result = installed.run("status")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines() == ["auditlake: error: say which deployed stack: --stack NAME (and --region, "
                                          "unless your AWS configuration sets one)"]


@pytest.fixture
def served() -> Iterator[LocalStack]:
    """The template's stack on a moto server (a thread of this process): one vendor collected into it by its
    collector run here, the CloudFormation stack with its outputs, and the template's saved queries in the
    workgroup."""
    with LocalStack.serve() as stack:
        athena_client = boto3.client("athena")
        athena_client.create_work_group(Name=WORKGROUP)
        stack.refs["AWS::StackId"] = deploy(stack, STACK)
        for props in (r["Properties"] for r in load_template()["Resources"].values()
                      if r["Type"] == "AWS::Athena::NamedQuery"):
            athena_client.create_named_query(Name=props["Name"], Description=props["Description"],
                                             QueryString=props["QueryString"], Database="auditlake",
                                             WorkGroup=WORKGROUP)
        now = lambda: datetime.now(UTC)  # noqa: E731
        with world_of("make", stack, now) as world:
            world.seed(EVENTS, now() - timedelta(days=2), now() - timedelta(minutes=5), seed=3)
            assert stack.invoke(world.function_id, environment=workspace.QUIET)["status"] == "ok"
        yield stack


def test_the_installed_command_reads_a_deployed_stack_from_another_process(installed: Installation,
                                                                          served: LocalStack) -> None:
    assert served.endpoint is not None
    endpoint = served.endpoint

    status = installed.run("status", "--stack", STACK, aws_endpoint=endpoint)
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith(f"stack {STACK}, at ")
    (row,) = [line for line in status.stdout.splitlines() if line.startswith("make#")]
    assert " ok " in row and row.split()[-1] == f"{EVENTS}", status.stdout

    # What `--list` shows is what the stack deployed in its workgroup (an installation has no template).
    listed = installed.run("query", "--list", "--stack", STACK, aws_endpoint=endpoint)
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split()[:2] == ["SAVED", "QUERY"]
    assert {row.split()[0] for row in rows} == set(athena.saved_queries()) == {
        key_of(r["Properties"]["Name"]) for r in load_template()["Resources"].values()
        if r["Type"] == "AWS::Athena::NamedQuery"}
    (failed_logins,) = [row for row in rows if row.startswith("failed-logins ")]
    assert failed_logins.split()[1:3] == ["first_day,", "last_day"], rows  # parameters, from the description

    # moto's Athena runs no SQL: the rows it answers with are queued through the server's moto API.
    answer = [["vendor", "events"], ["make", f"{EVENTS}"]]
    queued = requests.post(f"{endpoint}/moto-api/static/athena/query-results", timeout=10, json={
        "account_id": ACCOUNT, "region": REGION, "results": [{
            "rows": [{"Data": [{"VarCharValue": v} for v in row]} for row in answer],
            "column_info": [{"Name": name, "Type": kind, "CatalogName": "", "SchemaName": "", "TableName": "",
                             "Label": name} for name, kind in (("vendor", "varchar"), ("events", "bigint"))]}]})
    assert queued.ok, queued.text
    sql = "SELECT vendor, count(*) AS events FROM events GROUP BY 1"
    queried = installed.run("query", sql, "--stack", STACK, aws_endpoint=endpoint)
    assert queried.returncode == 0, queried.stderr
    assert queried.stdout.splitlines() == ["VENDOR  EVENTS", "make       250", "(1 row)"]
    athena_client = boto3.client("athena")
    (execution,) = [athena_client.get_query_execution(QueryExecutionId=i)["QueryExecution"]
                    for i in athena_client.list_query_executions(WorkGroup=WORKGROUP)["QueryExecutionIds"]]
    assert execution["Query"] == sql and execution["WorkGroup"] == WORKGROUP
    assert execution["QueryExecutionContext"] == {"Database": "auditlake"}

    verified = installed.run("verify", "--stack", STACK, aws_endpoint=endpoint)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith(f"verifying stack {STACK}: every stream")
    summary = verified.stdout.strip().splitlines()[-1]
    assert summary.startswith("1 chain(s), ") and summary.endswith("no findings"), verified.stdout  # make: one stream
    assert f"with {EVENTS} records checked" in summary, summary


def test_the_installed_secret_set_checks_the_token_with_the_vendor_then_stores_it(installed: Installation,
                                                                                 served: LocalStack) -> None:
    """The token from stdin, checked with one request to the vendor (its simulator, over HTTP on loopback) by the
    installed adapter, then stored in the secret the stack's outputs name."""
    assert served.endpoint is not None
    local = LOCAL_VENDORS["make"]
    secret_id = served.functions[local.function_id].environment["SECRET_ID"]
    with serve(local.start()) as origin:
        value = {"token": local.token, **local.scope, "base_url": f"{origin}{local.api_path}"}
        fields = [f"--field={name}={text}" for name, text in value.items() if name != "token"]
        stored = installed.run("secret", "set", "make", "--token-stdin", *fields, "--stack", STACK,
                               aws_endpoint=served.endpoint, stdin=f"{local.token}\n")
    assert stored.returncode == 0, stored.stderr
    assert stored.stdout.startswith("Make accepted the token for organization_id") and secret_id in stored.stdout
    assert local.token not in stored.stdout + stored.stderr
    assert json.loads(boto3.client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"]) == value
