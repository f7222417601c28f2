"""The engine layer leaves out what the Lambda runtime provides, and package_report measures a build correctly.

No `sam build` here: the layer Makefile's own steps run on a staged pip target, and package_report on a small
build directory written by the tests (scripts/check_template.sh reports on the real build).
"""

from __future__ import annotations

import importlib.util
import json
import os
import struct
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement

from auditlake_local import packages
from auditlake_local.template import PROJECT_ROOT

LAYER_SOURCE = PROJECT_ROOT / "layers" / "engine"


def _load_prune_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("prune_runtime_provided", LAYER_SOURCE / "prune_runtime_provided.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PRUNE = _load_prune_script()


# ------------------------------------------------------------------------------------ the runtime-provided list


def _dependency_closure(name: str) -> set[str]:
    """name and everything it requires, transitively, on this interpreter with no extras."""
    seen: set[str] = set()
    pending = [name]
    while pending:
        current = packages.canonical_name(pending.pop())
        if current in seen:
            continue
        seen.add(current)
        for line in metadata.requires(current) or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    return seen


def test_runtime_provided_list_is_boto3_and_its_dependencies() -> None:
    # The runtime provides "the AWS SDK for Python (Boto3) and its dependencies": exactly boto3's closure.
    provided = packages.read_runtime_provided()
    assert set(provided) == _dependency_closure("boto3")
    assert provided["python-dateutil"] == ("dateutil",) and provided["six"] == ("six",)


def test_build_script_and_report_read_the_same_list() -> None:
    assert PRUNE.read_runtime_provided(packages.RUNTIME_PROVIDED_LIST) == packages.read_runtime_provided()


def test_requirements_pull_in_runtime_provided_packages_only_through_dependencies() -> None:
    # What the layer asks for itself must not be runtime-provided (pruning would silently remove it).
    provided = packages.read_runtime_provided()
    for line in (LAYER_SOURCE / "requirements.txt").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            assert packages.canonical_name(Requirement(line).name) not in provided, line


# ------------------------------------------------------------------------------------ the layer Makefile


def _fake_distribution(target: Path, name: str, version: str, files: dict[str, str],
                       tag: str = "py3-none-any", scripts: tuple[str, ...] = ()) -> None:
    """What `pip install --target` leaves for one distribution: its files, .dist-info with METADATA, WHEEL and a
    RECORD listing every file (scripts recorded outside the package directory, as pip does)."""
    info = target / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "WHEEL").write_text(f"Wheel-Version: 1.0\nRoot-Is-Purelib: {tag.endswith('none-any')}\nTag: {tag}\n")
    rows = []
    for relative, text in files.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        rows.append(f"{relative},sha256=x,{len(text)}")
    for script in scripts:
        (target / "bin").mkdir(exist_ok=True)
        (target / "bin" / script).write_text("#!python\n")
        rows.append(f"../../bin/{script},sha256=x,9")
    rows += [f"{info.name}/METADATA,,", f"{info.name}/WHEEL,,", f"{info.name}/RECORD,,"]
    (info / "RECORD").write_text("\n".join(rows) + "\n")


def _staged_pip_target(layer: Path) -> None:
    """A layer's python/ as pip leaves it before pruning: runtime-provided packages among the wanted ones."""
    _fake_distribution(layer, "botocore", "1.0", {"botocore/__init__.py": "", "botocore/data/s3.json": "{}"})
    _fake_distribution(layer, "python-dateutil", "2.9", {"dateutil/__init__.py": "", "dateutil/tz/__init__.py": ""})
    _fake_distribution(layer, "six", "1.17", {"six.py": "X = 1\n"})
    _fake_distribution(layer, "jmespath", "1.1", {"jmespath/__init__.py": ""}, scripts=("jp.py",))
    _fake_distribution(layer, "urllib3", "2.0", {"urllib3/__init__.py": ""})
    _fake_distribution(layer, "requests", "2.32", {"requests/__init__.py": "VALUE = 1\n"})
    _fake_distribution(layer, "wrapt", "2.0", {"wrapt/__init__.py": "", "wrapt/_wrappers.so": "binary"},
                       tag="cp313-cp313-manylinux_2_17_aarch64")
    (layer / "jmespath-1.1.data" / "scripts").mkdir(parents=True)


def _make(*targets: str, artifacts: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "--no-print-directory", "-C", str(LAYER_SOURCE), *targets,
                           f"ARTIFACTS_DIR={artifacts}", f"LAYER_PYTHON={sys.executable}"],
                          capture_output=True, text=True, check=False)


def test_makefile_leaves_out_what_the_runtime_provides(tmp_path: Path) -> None:
    layer = tmp_path / "python"
    _staged_pip_target(layer)
    result = _make("prune", "engine", "bytecode", artifacts=tmp_path)
    assert result.returncode == 0, result.stderr
    provided = packages.read_runtime_provided()
    assert packages.runtime_provided_found(layer, provided) == []
    for modules in provided.values():
        for module in modules:
            assert not (layer / module).exists() and not (layer / f"{module}.py").exists(), module
    assert not (layer / "bin").exists() and not list(layer.glob("*.data"))
    # What the runtime does not provide stays, with its metadata.
    assert (layer / "requests" / "__init__.py").read_text() == "VALUE = 1\n"
    assert (layer / "wrapt" / "_wrappers.so").is_file()
    assert sorted(p.name for p in layer.glob("*.dist-info")) == ["requests-2.32.dist-info", "wrapt-2.0.dist-info"]
    # The engine package, without any bytecode of the source tree.
    source_modules = sorted(p.name for p in (LAYER_SOURCE / "python" / "auditlake").glob("*.py"))
    assert sorted(p.name for p in (layer / "auditlake").glob("*.py")) == source_modules


def test_makefile_ships_bytecode_that_needs_no_source_check(tmp_path: Path) -> None:
    layer = tmp_path / "python"
    _staged_pip_target(layer)
    assert _make("prune", "engine", "bytecode", artifacts=tmp_path).returncode == 0
    cache_tag = sys.implementation.cache_tag
    for source in [*(layer / "auditlake").glob("*.py"), layer / "requests" / "__init__.py"]:
        compiled = source.parent / "__pycache__" / f"{source.stem}.{cache_tag}.pyc"
        assert compiled.is_file(), compiled
        magic, flags = struct.unpack("<4sI", compiled.read_bytes()[:8])
        assert magic == importlib.util.MAGIC_NUMBER
        # PEP 552: bit 0 = hash-based, bit 1 = check the source. sam zips every file dated 1980, so a
        # timestamp-based .pyc would be stale on Lambda and compiled again at each cold start.
        assert flags == 0b01, f"{compiled} flags {flags:#04b}"


@pytest.mark.slow
def test_makefile_layer_is_the_same_whatever_the_build_directory(tmp_path: Path) -> None:
    # sam deploy publishes a new layer version when the zip's hash changes: an unchanged layer must zip the same.
    zips = []
    for build in ("one", "elsewhere/two"):
        artifacts = tmp_path / build
        _staged_pip_target(artifacts / "python")
        assert _make("prune", "engine", "bytecode", artifacts=artifacts).returncode == 0
        zips.append(tmp_path / f"{build.replace('/', '-')}.zip")
        packages.zip_directory(artifacts, zips[-1])
    assert zips[0].read_bytes() == zips[1].read_bytes()
    # The paths in the bytecode are the layer's on Lambda, as tracebacks will show them.
    compiled = (tmp_path / "one" / "python" / "auditlake" / "__pycache__").glob("engine.*.pyc")
    assert b"/opt/python/auditlake/engine.py" in next(compiled).read_bytes()


def test_makefile_build_runs_install_prune_engine_bytecode_in_order(tmp_path: Path) -> None:
    result = subprocess.run(["make", "--no-print-directory", "-n", "-C", str(LAYER_SOURCE), "build-EngineLayer",
                             f"ARTIFACTS_DIR={tmp_path}"], capture_output=True, text=True, check=True)
    commands = result.stdout
    steps = ["-m pip install", "prune_runtime_provided.py", "cp -R python/auditlake", "-m compileall"]
    positions = [commands.find(step) for step in steps]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), commands
    install = commands[positions[0]:positions[1]]
    assert "--only-binary=:all:" in install and "--python-version 3.13" in install
    assert "--platform manylinux2014_aarch64" in install and "--platform manylinux_2_34_aarch64" in install
    assert "x86_64" not in install
    assert "runtime-provided.txt" in commands[positions[1]:positions[2]]


def test_makefile_refuses_to_run_without_artifacts_dir() -> None:
    result = subprocess.run(["make", "--no-print-directory", "-C", str(LAYER_SOURCE), "prune", "ARTIFACTS_DIR="],
                            capture_output=True, text=True, check=False)
    assert result.returncode != 0 and "ARTIFACTS_DIR is not set" in result.stderr


def test_prune_fails_on_a_runtime_package_no_record_accounts_for(tmp_path: Path) -> None:
    # A copy of urllib3 vendored in by hand (no .dist-info) would shadow the runtime's: the build must stop.
    (tmp_path / "urllib3").mkdir()
    (tmp_path / "urllib3" / "__init__.py").write_text("")
    result = subprocess.run([sys.executable, str(LAYER_SOURCE / "prune_runtime_provided.py"), str(tmp_path),
                             str(packages.RUNTIME_PROVIDED_LIST)], capture_output=True, text=True, check=False)
    assert result.returncode != 0 and "urllib3" in result.stderr


def test_list_file_errors_name_the_line(tmp_path: Path) -> None:
    broken = tmp_path / "list.txt"
    broken.write_text("# comment\nboto3 boto3\nbotocore\n")
    with pytest.raises(packages.PackageReportError, match=r"list.txt:3: 'botocore' names no import name"):
        packages.read_runtime_provided(broken)
    with pytest.raises(ValueError, match=r"list.txt:3"):
        PRUNE.read_runtime_provided(broken)


# ------------------------------------------------------------------------------------ package_report


BUILT_TEMPLATE = """\
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Runtime: python3.13
    Layers: [!Ref DepsLayer]
    Environment:
      Variables:
        TABLE: !Ref Table
        MODE: lambda
Resources:
  Table:
    Type: AWS::DynamoDB::Table
  DepsLayer:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: DepsLayer
  FastFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: FastFunction
      Handler: fast.handler
  SlowFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: SlowFunction
      Handler: slow.handler
      Environment:
        Variables:
          MODE: slow
"""

FAST_HANDLER = """\
import os
import boto3  # from the runtime (the stand-in), not from the layer or the function
import shadowed  # in the function and in the layer: the function's copy comes first, as on Lambda
assert shadowed.ORIGIN == "function", shadowed.ORIGIN
assert os.environ["LAMBDA_TASK_ROOT"] == os.path.dirname(os.path.abspath(__file__))
assert os.environ["MODE"] == "lambda" and os.environ["_HANDLER"] == "fast.handler"
assert "TABLE" not in os.environ  # an intrinsic, resolved only at deploy time


def handler(event, context):
    return {}
"""

SLOW_HANDLER = """\
import os
import slowdependency
assert os.environ["MODE"] == "slow"


def handler(event, context):
    return {}
"""


def _write(path: Path, text: str) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return len(text.encode())


@pytest.fixture
def build_dir(tmp_path: Path) -> Path:
    build = tmp_path / "build"
    _write(build / "template.yaml", BUILT_TEMPLATE)
    _write(build / "FastFunction" / "fast.py", FAST_HANDLER)
    _write(build / "FastFunction" / "shadowed.py", 'ORIGIN = "function"\n')
    _write(build / "SlowFunction" / "slow.py", SLOW_HANDLER)
    _write(build / "DepsLayer" / "python" / "shadowed.py", 'ORIGIN = "layer"\n')
    _write(build / "DepsLayer" / "python" / "slowdependency.py", "import time\n\ntime.sleep(0.3)\n")
    return build


def _file_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def test_sizes_of_each_function_and_its_layers(build_dir: Path) -> None:
    reports = {r["function"]: r for r in packages.package_report(build_dir, measure_imports=False)}
    assert sorted(reports) == ["FastFunction", "SlowFunction"]
    fast = reports["FastFunction"]
    assert fast["handler"] == "fast.handler"
    assert fast["function_unzipped_bytes"] == len(FAST_HANDLER) + len('ORIGIN = "function"\n')
    layer_bytes = _file_bytes(build_dir / "DepsLayer")
    assert fast["layers"] == {"DepsLayer": {"zipped_bytes": packages.zipped_size(build_dir / "DepsLayer"),
                                            "unzipped_bytes": layer_bytes}}
    assert fast["layers_unzipped_bytes"] == layer_bytes
    assert fast["total_unzipped_bytes"] == fast["function_unzipped_bytes"] + layer_bytes
    assert fast["total_zipped_bytes"] == fast["function_zipped_bytes"] + fast["layers_zipped_bytes"]
    assert fast["unzipped_limit_bytes"] == 262_144_000
    assert fast["unzipped_limit_used_percent"] == round(100 * fast["total_unzipped_bytes"] / 262_144_000, 2)
    assert fast["runtime_provided_bundled"] == [] and fast["layers_not_measured"] == []
    assert "cold_import_ms" not in fast
    assert packages.problems(list(reports.values())) == []
    json.dumps(list(reports.values()))  # plain data


def test_zip_is_what_sam_uploads(tmp_path: Path, build_dir: Path) -> None:
    target = tmp_path / "layer.zip"
    packages.zip_directory(build_dir / "DepsLayer", target)
    assert packages.zipped_size(build_dir / "DepsLayer") == target.stat().st_size
    with zipfile.ZipFile(target) as archive:
        infos = {info.filename: info for info in archive.infolist()}
        assert sorted(infos) == ["python/shadowed.py", "python/slowdependency.py"]
        assert archive.read("python/shadowed.py") == b'ORIGIN = "layer"\n'
        assert all(i.compress_type == zipfile.ZIP_DEFLATED and i.date_time == (1980, 1, 1, 0, 0, 0)
                   and i.external_attr >> 16 == 0o100755 for i in infos.values())


def test_bundled_runtime_packages_are_reported_as_problems(build_dir: Path) -> None:
    _write(build_dir / "FastFunction" / "six.py", "")
    _write(build_dir / "DepsLayer" / "python" / "botocore" / "__init__.py", "")
    _write(build_dir / "DepsLayer" / "python" / "python_dateutil-2.9.dist-info" / "METADATA",
           "Name: python-dateutil\nVersion: 2.9\n")
    reports = {r["function"]: r for r in packages.package_report(build_dir, measure_imports=False)}
    assert reports["FastFunction"]["runtime_provided_bundled"] == [
        "six", "botocore (in DepsLayer)", "python-dateutil (in DepsLayer)"]
    assert reports["SlowFunction"]["runtime_provided_bundled"] == [
        "botocore (in DepsLayer)", "python-dateutil (in DepsLayer)"]
    found = packages.problems(list(reports.values()))
    assert len(found) == 2 and "FastFunction bundles what the Lambda runtime provides: six" in found[0]


@pytest.mark.slow
def test_cold_import_uses_lambdas_search_path_and_times_the_handler(build_dir: Path) -> None:
    reports = {r["function"]: r for r in packages.package_report(build_dir, runs=2)}
    fast, slow = reports["FastFunction"], reports["SlowFunction"]
    # The layer module sleeps 0.3 s at import: the slow handler's import includes it, and the split names it.
    assert slow["cold_import_ms"] >= 300 and len(slow["cold_import_runs_ms"]) == 2
    assert slow["import_self_ms_top_packages"]["slowdependency"] >= 300
    assert slow["import_self_ms_by_group"][packages.OTHER_GROUP] >= 300
    assert slow["cold_import_cpu_ms"] < slow["cold_import_ms"]  # sleeping is not CPU
    # boto3 came from the runtime stand-in and is counted as such.
    assert fast["import_self_ms_by_group"][packages.RUNTIME_GROUP] > 0
    assert "boto3" in fast["import_self_ms_top_packages"] or "botocore" in fast["import_self_ms_top_packages"]
    assert fast["cold_import_ms"] > 0 and fast["modules_loaded"] > slow["modules_loaded"]
    assert fast["import_self_ms_by_group"][packages.HANDLER_GROUP] > 0  # the handler module itself is counted
    assert "layers (DepsLayer)" in fast["import_measured"] and "boto3==" in fast["import_measured"]


def test_cold_import_sees_nothing_of_the_project_environment(build_dir: Path) -> None:
    # requests is installed where the tests run, but not in this build: the handler must not find it.
    _write(build_dir / "FastFunction" / "fast.py", "import requests\n\n\ndef handler(event, context):\n    pass\n")
    with pytest.raises(packages.PackageReportError, match=r"FastFunction: importing fast.handler failed: .*requests"):
        packages.package_report(build_dir, runs=1)


def test_a_handler_that_is_not_callable_fails_the_report(build_dir: Path) -> None:
    _write(build_dir / "FastFunction" / "fast.py", "handler = None\n")
    with pytest.raises(packages.PackageReportError, match=r"fast.handler is not callable"):
        packages.package_report(build_dir, runs=1)


def test_a_directory_that_is_no_build_is_named(tmp_path: Path) -> None:
    with pytest.raises(packages.PackageReportError, match=r"has no template\.yaml"):
        packages.package_report(tmp_path, measure_imports=False)


def test_platform_wheels_are_found_for_a_host_native_copy(tmp_path: Path) -> None:
    _staged_pip_target(tmp_path)
    specific = packages.platform_specific_distributions(tmp_path)
    assert [(name, version) for name, version, _ in specific] == [("wrapt", "2.0")]


def test_importtime_is_split_by_top_level_package() -> None:
    stderr = "\n".join([
        "import time: self [us] | cumulative | imported package",
        "import time:      1500 |       1500 |     botocore.compat",
        "import time:       500 |       2000 |   botocore",
        "import time:      2000 |       4000 | boto3",
        "import time:       250 |        250 | aws_lambda_powertools.logging",
        "import time:       100 |        100 | asana_collector",
        "unrelated line",
    ])
    by_package = packages.parse_importtime(stderr)
    assert by_package == {"botocore": 2.0, "boto3": 2.0, "aws_lambda_powertools": 0.25, "asana_collector": 0.1}
    groups = packages.group_import_times(by_package, "asana_collector", packages.read_runtime_provided())
    assert groups[packages.RUNTIME_GROUP] == 4.0 and groups["powertools"] == 0.2  # 0.25 rounds half to even
    assert groups[packages.HANDLER_GROUP] == 0.1 and groups[packages.OTHER_GROUP] == 0.0


@pytest.mark.skipif(os.name != "posix", reason="symlinks")
def test_runtime_standin_holds_only_boto3_and_its_dependencies(tmp_path: Path) -> None:
    provided = packages.read_runtime_provided()
    versions = packages.runtime_sdk_standin(tmp_path, provided)
    assert [v.split("==")[0].lower() for v in versions] == [name for name in provided]
    top_level = {p.name for p in tmp_path.iterdir() if not p.name.endswith(".dist-info")}
    assert top_level == {"boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six.py", "urllib3"}


# ------------------------------------------------------------------------------------ cold start of the engine


def test_engine_tracer_patches_only_what_the_engine_calls_through(tmp_path: Path) -> None:
    # On Lambda (LAMBDA_TASK_ROOT set) Powertools' Tracer patches at import; the engine's AWS calls (botocore) and
    # vendor calls (requests) are traced, and nothing else is imported for it.
    probe = ("import sys\nimport auditlake.lambda_handler\nfrom aws_xray_sdk.core import patcher\n"
             "print(sorted(patcher._PATCHED_MODULES), 'sqlite3' in sys.modules)")
    environment = {"PATH": os.environ.get("PATH", ""), "LAMBDA_TASK_ROOT": str(tmp_path),
                   "AWS_LAMBDA_FUNCTION_NAME": "probe", "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1"}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=environment,
                            check=False, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[0] == "['botocore', 'requests'] False"
