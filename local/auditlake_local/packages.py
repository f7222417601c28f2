"""Deployment package sizes and cold import times per function: `python -m auditlake_local.packages [--build-dir DIR]`.

Reads a `sam build` output directory (runs `sam build` into a temporary one when none is given: the SAM CLI from
$SAM, else the project's .tools/, else PATH) and reports per function: the zipped and unzipped size of its own
package and of each layer it uses, the total against Lambda's 250 MB unzipped limit, any package it bundles that
the Lambda runtime already provides (layers/engine/runtime-provided.txt; there should be none), and the cold
import time of its handler.

The cold import is a fresh python3.13 process per run that imports the handler module with Lambda's search path:
the function's directory, the layers' python/ folders, the standard library, then boto3 and its dependencies where
the runtime keeps them (the project environment's copies stand in), in a Lambda-like environment (LAMBDA_TASK_ROOT
set, so Powertools' Tracer is enabled and patches as it does on Lambda). No bytecode is written, as on Lambda's
read-only file system, so only what the packages ship is used. The layers hold arm64 builds, so compiled
distributions (wrapt, charset-normalizer) are swapped for this machine's builds of the same versions in a copy of
the layer, rather than left to fail or fall back to pure Python. As many runs again with `-X importtime` split
the import time by package (self time, median per package; the option itself slows imports, so the split gives
shares, not parts that add up to the median). Wall time on a busy machine includes waiting for a core, so the
CPU time of the import is reported beside it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import zipfile
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from email.parser import HeaderParser
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

from auditlake_local.template import PROJECT_ROOT, TEMPLATE_PATH, load_template_text

# Lambda's quota: a function's deployment package and all its layers, unzipped, at most 250 MB (262,144,000 bytes).
UNZIPPED_LIMIT_BYTES = 250 * 1024 * 1024
RUNTIME_PROVIDED_LIST = PROJECT_ROOT / "layers" / "engine" / "runtime-provided.txt"
LAYER_PRUNE_SCRIPT = PROJECT_ROOT / "layers" / "engine" / "prune_runtime_provided.py"
LAMBDA_PYTHON_VERSION = (3, 13)
DEFAULT_RUNS = 5

# How the import time is split: the top-level package a module belongs to, grouped by what it is for. Whatever is
# in none of these is the standard library (or an unexpected package, listed among the top packages).
IMPORT_GROUPS: dict[str, tuple[str, ...]] = {
    "powertools": ("aws_lambda_powertools", "typing_extensions"),
    "xray": ("aws_xray_sdk", "wrapt"),
    "requests": ("requests", "charset_normalizer", "idna", "certifi"),
    "auditlake": ("auditlake",),
}
RUNTIME_GROUP = "runtime sdk"  # boto3 and its dependencies, from the runtime-provided list
HANDLER_GROUP = "handler"
OTHER_GROUP = "stdlib/other"

# The process that times one import. Its argument is a JSON object: path_front, path_back, module, attribute.
_MEASURE = """
import json, sys, time
spec = json.loads(sys.argv[1])
sys.path[:0] = spec["path_front"]
sys.path.extend(spec["path_back"])
started, cpu_started = time.perf_counter(), time.process_time()
# __import__, not importlib.import_module: -X importtime logs only imports that go through the former.
__import__(spec["module"])
handler = getattr(sys.modules[spec["module"]], spec["attribute"])
elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
if not callable(handler):
    raise SystemExit(f"{spec['module']}.{spec['attribute']} is not callable")
print(json.dumps({"seconds": elapsed, "cpu_seconds": cpu, "modules": len(sys.modules)}))
"""


class PackageReportError(Exception):
    """The build directory cannot be reported on (missing template, a handler that does not import, ...)."""


@dataclass
class BuiltLayer:
    logical_id: str
    directory: Path

    @property
    def import_dirs(self) -> list[Path]:
        """Where Lambda looks in a layer, in its order: python/lib/python3.13/site-packages, then python/."""
        python = self.directory / "python"
        site = python / "lib" / f"python{LAMBDA_PYTHON_VERSION[0]}.{LAMBDA_PYTHON_VERSION[1]}" / "site-packages"
        return [path for path in (site, python) if path.is_dir()]


@dataclass
class BuiltFunction:
    logical_id: str
    directory: Path
    handler: str
    layers: list[BuiltLayer] = field(default_factory=list)
    remote_layers: list[str] = field(default_factory=list)  # layers given as ARNs: not in the build, not measured
    environment: dict[str, str] = field(default_factory=dict)


# -- the runtime-provided list ------------------------------------------------------------------------------------


def _layer_build_helper() -> ModuleType:
    """The layer build's own reader of the list (a standalone script, so `sam build` needs nothing installed)."""
    spec = importlib.util.spec_from_file_location("prune_runtime_provided", LAYER_PRUNE_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_prune = _layer_build_helper()
canonical_name = _prune.canonical_name


def read_runtime_provided(path: Path = RUNTIME_PROVIDED_LIST) -> dict[str, tuple[str, ...]]:
    """{canonical distribution name: the names it is imported by}, read as the layer build reads it."""
    try:
        return _prune.read_runtime_provided(path)
    except ValueError as exc:
        raise PackageReportError(str(exc)) from None


def runtime_provided_found(directory: Path, provided: Mapping[str, tuple[str, ...]]) -> list[str]:
    """The runtime-provided distributions a package directory bundles: by import name (a package folder or a
    module file) or by an installed distribution's metadata."""
    if not directory.is_dir():
        return []
    found = {name for name, modules in provided.items()
             if any((directory / module).is_dir() or (directory / f"{module}.py").is_file() for module in modules)}
    for info in directory.glob("*.dist-info"):
        name = _distribution_name(info)
        if name in provided:
            found.add(name)
    return sorted(found)


def _distribution_name(info: Path) -> str:
    metadata_file = info / "METADATA"
    name = None
    if metadata_file.is_file():
        name = HeaderParser().parsestr(metadata_file.read_text(encoding="utf-8", errors="replace")).get("Name")
    return canonical_name(name or info.name.split("-", 1)[0])


# -- the build ----------------------------------------------------------------------------------------------------


def built_functions(build_dir: Path) -> list[BuiltFunction]:
    """The functions in a `sam build` output, with their built code directory, handler and layers."""
    template_path = build_dir / "template.yaml"
    if not template_path.is_file():
        raise PackageReportError(f"{build_dir} has no template.yaml: is it a `sam build` output directory?")
    template = load_template_text(template_path.read_text())
    resources: dict[str, Any] = template.get("Resources") or {}
    defaults: dict[str, Any] = (template.get("Globals") or {}).get("Function") or {}
    layers = {logical_id: BuiltLayer(logical_id, build_dir / str(resource["Properties"]["ContentUri"]))
              for logical_id, resource in resources.items()
              if resource.get("Type") == "AWS::Serverless::LayerVersion"
              and isinstance(resource.get("Properties", {}).get("ContentUri"), str)}
    functions = []
    for logical_id, resource in sorted(resources.items()):
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = resource.get("Properties") or {}
        code_uri, handler = props.get("CodeUri", defaults.get("CodeUri")), props.get("Handler", defaults.get("Handler"))
        if not isinstance(code_uri, str) or not isinstance(handler, str):
            raise PackageReportError(f"{logical_id} has no local CodeUri and Handler in {template_path}")
        function = BuiltFunction(logical_id, build_dir / code_uri, handler)
        for layer in props.get("Layers", defaults.get("Layers", [])):
            if isinstance(layer, dict) and layer.get("Ref") in layers:
                function.layers.append(layers[layer["Ref"]])
            else:
                function.remote_layers.append(json.dumps(layer))
        variables = {**(defaults.get("Environment") or {}).get("Variables", {}),
                     **(props.get("Environment") or {}).get("Variables", {})}
        # Intrinsics (table names, ARNs) resolve only at deploy time; importing a handler reads none of them.
        function.environment = {k: str(v) for k, v in variables.items() if isinstance(v, str | int | float)}
        functions.append(function)
    if not functions:
        raise PackageReportError(f"{template_path} has no AWS::Serverless::Function")
    return functions


def _files(directory: Path) -> Iterator[Path]:
    for root, _, names in os.walk(directory, followlinks=True):
        for name in sorted(names):
            yield Path(root) / name


def unzipped_size(directory: Path) -> int:
    """What Lambda counts against the unzipped limit: the bytes of every file."""
    return sum(path.stat().st_size for path in _files(directory))


def zip_directory(directory: Path, target: Path) -> None:
    """Zips a directory as `sam package`/`sam deploy` do: deflated, every entry 0755 and dated 1980-01-01."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in _files(directory):
            info = zipfile.ZipInfo(path.relative_to(directory).as_posix())
            info.create_system = 3
            info.external_attr = 0o100755 << 16
            archive.writestr(info, path.read_bytes(), compress_type=zipfile.ZIP_DEFLATED)


def zipped_size(directory: Path) -> int:
    with tempfile.TemporaryDirectory() as scratch:
        target = Path(scratch) / "package.zip"
        zip_directory(directory, target)
        return target.stat().st_size


# -- the cold import ----------------------------------------------------------------------------------------------


def lambda_python() -> str:
    """A python3.13 to import handlers with: this interpreter's base (outside any venv, so nothing of the venv is
    importable), else python3.13 on PATH."""
    candidates = [getattr(sys, "_base_executable", ""), shutil.which("python3.13") or ""]
    for candidate in candidates:
        if candidate and _python_version(candidate) == LAMBDA_PYTHON_VERSION:
            return candidate
    raise PackageReportError("no python3.13 found (Lambda's runtime); install it or put it on PATH")


def _run(command: list[str], **options: Any) -> subprocess.CompletedProcess[str]:
    # Argument lists of known tools (python, pip, sam) and this build's paths; no shell.
    return subprocess.run(command, text=True, check=False, **options)  # noqa: S603


def _python_version(executable: str) -> tuple[int, int] | None:
    try:
        result = _run([executable, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    out = result.stdout.split()
    return (int(out[0]), int(out[1])) if result.returncode == 0 and len(out) == 2 else None


def platform_specific_distributions(directory: Path) -> list[tuple[str, str, Path]]:
    """(name, version, .dist-info) of each distribution in directory installed from a platform wheel: a WHEEL
    file whose tags are not all `*-none-any`."""
    specific = []
    for info in sorted(directory.glob("*.dist-info")):
        wheel = info / "WHEEL"
        if not wheel.is_file():
            continue
        headers = HeaderParser().parsestr(wheel.read_text(encoding="utf-8", errors="replace"))
        tags = headers.get_all("Tag") or []
        if any(not tag.strip().endswith("-none-any") for tag in tags):
            meta = HeaderParser().parsestr((info / "METADATA").read_text(encoding="utf-8", errors="replace"))
            specific.append((meta["Name"], meta["Version"], info))
    return specific


def _remove_recorded(directory: Path, info: Path) -> None:
    """Deletes a distribution's files (its RECORD) from directory, and its metadata folder."""
    root = directory.resolve()
    record = info / "RECORD"
    for line in record.read_text(encoding="utf-8").splitlines() if record.is_file() else []:
        path = (directory / line.split(",", 1)[0]).resolve()
        if path.is_relative_to(root) and path != root and path.is_file():
            path.unlink()
    shutil.rmtree(info, ignore_errors=True)


def _ships_bytecode(directory: Path) -> bool:
    return next(directory.rglob("__pycache__/*.pyc"), None) is not None


def host_native_copy(layer_python: Path, target: Path, python: str) -> list[str]:
    """Copies a layer's python/ folder to target with its platform-specific distributions replaced by this
    machine's wheels of the same versions (compiled as the layer's own modules are); returns what was replaced."""
    shutil.copytree(layer_python, target, symlinks=True)
    specific = platform_specific_distributions(target)
    if not specific:
        return []
    for _, _, info in specific:
        _remove_recorded(target, info)
    staging = target.with_name(target.name + "-host")
    pins = [f"{name}=={version}" for name, version, _ in specific]
    environment = {**os.environ, "PIP_ROOT_USER_ACTION": "ignore", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    installed = _run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile", "--only-binary=:all:",
                      "--target", str(staging), *pins], capture_output=True, env=environment)
    if installed.returncode != 0:
        raise PackageReportError(f"could not install this machine's builds of {', '.join(pins)} to time the "
                                 f"import honestly: {installed.stderr.strip()[-400:]}")
    shutil.rmtree(staging / "bin", ignore_errors=True)
    if _ships_bytecode(layer_python):
        compiled = _run([python, "-m", "compileall", "-q", "-f", "--invalidation-mode", "unchecked-hash",
                         str(staging)], capture_output=True)
        if compiled.returncode != 0:
            raise PackageReportError(f"could not compile {', '.join(pins)}: {compiled.stdout.strip()[-400:]}")
    shutil.copytree(staging, target, symlinks=True, dirs_exist_ok=True)
    return pins


def runtime_sdk_standin(target: Path, provided: Mapping[str, tuple[str, ...]]) -> list[str]:
    """Links this environment's boto3 and its dependencies (only those) into target, standing in for the
    runtime's site-packages; returns `name==version` of each."""
    target.mkdir(parents=True, exist_ok=True)
    versions = []
    for name in provided:
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise PackageReportError(f"{name} is not installed here; it stands in for the runtime's copy") from None
        tops = {file.parts[0] for file in distribution.files or []
                if file.parts and file.parts[0] not in ("..", "__pycache__") and not file.parts[0].endswith(".data")}
        for top in sorted(tops):
            source, link = Path(str(distribution.locate_file(top))), target / top
            if source.exists() and not link.exists():
                link.symlink_to(source, target_is_directory=source.is_dir())
        versions.append(f"{distribution.metadata['Name']}=={distribution.version}")
    return versions


def lambda_environment(function: BuiltFunction) -> dict[str, str]:
    """What Lambda sets for the init phase (no credentials: importing a handler calls no AWS API)."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "LAMBDA_TASK_ROOT": str(function.directory),
        "LAMBDA_RUNTIME_DIR": str(function.directory),
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "AWS_LAMBDA_FUNCTION_NAME": function.logical_id,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "_HANDLER": function.handler,
        **function.environment,
    }


def _run_import(python: str, spec: dict[str, Any], environment: dict[str, str], *,
                importtime: bool) -> subprocess.CompletedProcess[str]:
    # -I: no user site, no PYTHON* variables, no script dir; -S: no site-packages (the search path is set
    # explicitly); -B: no bytecode written, as on Lambda's read-only file system.
    command = [python, "-I", "-S", "-B", *(["-X", "importtime"] if importtime else []), "-c", _MEASURE,
               json.dumps(spec)]
    return _run(command, capture_output=True, env=environment, timeout=120)


def _import_failure(function: BuiltFunction, result: subprocess.CompletedProcess[str]) -> PackageReportError:
    lines = [line for line in result.stderr.splitlines() if not line.startswith("import time:")]
    return PackageReportError(f"{function.logical_id}: importing {function.handler} failed: "
                              f"{' | '.join(lines[-3:]) or f'exit status {result.returncode}'}")


def parse_importtime(stderr: str) -> dict[str, float]:
    """Self time in ms per top-level package from `-X importtime` output."""
    by_package: dict[str, float] = defaultdict(float)
    for line in stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        columns = line.removeprefix("import time:").split("|")
        if len(columns) != 3 or not columns[0].strip().isdigit():
            continue  # the header line
        by_package[columns[2].strip().split(".", 1)[0]] += int(columns[0]) / 1000
    return dict(by_package)


def group_import_times(by_package: Mapping[str, float], handler_module: str,
                       provided: Mapping[str, tuple[str, ...]]) -> dict[str, float]:
    groups = {**IMPORT_GROUPS, RUNTIME_GROUP: tuple(m for modules in provided.values() for m in modules),
              HANDLER_GROUP: (handler_module.split(".", 1)[0],)}
    owner = {package: group for group, packages in groups.items() for package in packages}
    totals: dict[str, float] = {group: 0.0 for group in [*groups, OTHER_GROUP]}
    for package, ms in by_package.items():
        totals[owner.get(package, OTHER_GROUP)] += ms
    return {group: round(ms, 1) for group, ms in totals.items()}


@dataclass
class _ImportSetup:
    python: str
    runtime_dir: Path
    runtime_versions: list[str]
    layer_copies: dict[Path, tuple[Path, list[str]]]  # layer python/ -> (host-native copy, what was replaced)


def measure_import(function: BuiltFunction, setup: _ImportSetup, provided: Mapping[str, tuple[str, ...]],
                   runs: int) -> dict[str, Any]:
    """Median cold import of the function's handler over `runs` fresh processes, and its split by package."""
    module, _, attribute = function.handler.rpartition(".")
    layer_dirs: list[Path] = []
    replaced: list[str] = []
    for layer in function.layers:
        for directory in layer.import_dirs:
            copy, swapped = setup.layer_copies[directory]
            layer_dirs.append(copy)
            replaced += swapped
    spec = {"path_front": [str(function.directory), *map(str, layer_dirs)], "path_back": [str(setup.runtime_dir)],
            "module": module, "attribute": attribute}
    environment = lambda_environment(function)
    seconds, cpu_seconds, modules = [], [], 0
    for _ in range(runs):
        result = _run_import(setup.python, spec, environment, importtime=False)
        if result.returncode != 0:
            raise _import_failure(function, result)
        measured = json.loads(result.stdout.strip().splitlines()[-1])
        seconds.append(measured["seconds"])
        cpu_seconds.append(measured["cpu_seconds"])
        modules = measured["modules"]
    profiles = []
    for _ in range(runs):
        profiled = _run_import(setup.python, spec, environment, importtime=True)
        if profiled.returncode != 0:
            raise _import_failure(function, profiled)
        profiles.append(parse_importtime(profiled.stderr))
    # Per package, the median over the profiled runs: one run's split is as noisy as one run's total.
    by_package = {package: statistics.median(profile.get(package, 0.0) for profile in profiles)
                  for package in {package for profile in profiles for package in profile}}
    top = dict(sorted(((k, round(v, 1)) for k, v in by_package.items()), key=lambda kv: -kv[1])[:8])
    layers = ", ".join(layer.logical_id for layer in function.layers) or "none"
    swapped_note = f"; this machine's builds of {', '.join(replaced)} in place of the layer's arm64 ones" \
        if replaced else ""
    return {
        "cold_import_ms": round(statistics.median(seconds) * 1000, 1),
        "cold_import_runs_ms": [round(s * 1000, 1) for s in seconds],
        # CPU time leaves out waiting for a core, which wall time on a busy machine does not.
        "cold_import_cpu_ms": round(statistics.median(cpu_seconds) * 1000, 1),
        "modules_loaded": modules,
        "import_self_ms_by_group": group_import_times(by_package, module, provided),
        "import_self_ms_top_packages": top,
        "import_measured": (
            f"fresh python{LAMBDA_PYTHON_VERSION[0]}.{LAMBDA_PYTHON_VERSION[1]} -I -S -B on this machine "
            f"({os.uname().machine}) importing the handler's module: function dir, layers ({layers}){swapped_note}, "
            "stdlib, "
            f"then {', '.join(setup.runtime_versions)} for the runtime's SDK; LAMBDA_TASK_ROOT set (Tracer on); "
            f"no bytecode written; median of {runs}; split: self time per package, median of {runs} importtime runs"),
    }


# -- the report ---------------------------------------------------------------------------------------------------


def package_report(build_dir: Path, *, runs: int = DEFAULT_RUNS, measure_imports: bool = True,
                   runtime_provided_list: Path = RUNTIME_PROVIDED_LIST) -> list[dict[str, Any]]:
    """One plain dict per function of a `sam build` output: sizes in bytes, runtime-provided packages bundled,
    and (with measure_imports) the cold import of its handler."""
    if runs < 1:
        raise PackageReportError(f"runs must be at least 1, got {runs}")
    provided = read_runtime_provided(runtime_provided_list)
    functions = built_functions(build_dir)
    sizes: dict[Path, tuple[int, int]] = {}

    def size(directory: Path) -> tuple[int, int]:
        if directory not in sizes:
            sizes[directory] = (zipped_size(directory), unzipped_size(directory))
        return sizes[directory]

    reports = []
    with ExitStack() as stack:
        setup = None
        if measure_imports:
            scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="auditlake-imports-")))
            python = lambda_python()
            copies = {}
            for layer_dir in {d for f in functions for layer in f.layers for d in layer.import_dirs}:
                copy = scratch / f"layer-{len(copies)}"
                copies[layer_dir] = (copy, host_native_copy(layer_dir, copy, python))
            setup = _ImportSetup(python, scratch / "runtime", runtime_sdk_standin(scratch / "runtime", provided),
                                 copies)
        for function in functions:
            if not function.directory.is_dir():
                raise PackageReportError(f"{function.logical_id}: {function.directory} does not exist")
            function_zipped, function_unzipped = size(function.directory)
            layer_sizes = {layer.logical_id: dict(zip(("zipped_bytes", "unzipped_bytes"), size(layer.directory),
                                                      strict=True)) for layer in function.layers}
            layers_zipped = sum(s["zipped_bytes"] for s in layer_sizes.values())
            layers_unzipped = sum(s["unzipped_bytes"] for s in layer_sizes.values())
            bundled = runtime_provided_found(function.directory, provided)
            for layer in function.layers:
                bundled += [f"{name} (in {layer.logical_id})" for directory in layer.import_dirs
                            for name in runtime_provided_found(directory, provided)]
            total_unzipped = function_unzipped + layers_unzipped
            report: dict[str, Any] = {
                "function": function.logical_id,
                "handler": function.handler,
                "function_zipped_bytes": function_zipped,
                "function_unzipped_bytes": function_unzipped,
                "layers": layer_sizes,
                "layers_not_measured": function.remote_layers,
                "layers_zipped_bytes": layers_zipped,
                "layers_unzipped_bytes": layers_unzipped,
                "total_zipped_bytes": function_zipped + layers_zipped,
                "total_unzipped_bytes": total_unzipped,
                "unzipped_limit_bytes": UNZIPPED_LIMIT_BYTES,
                "unzipped_limit_used_percent": round(100 * total_unzipped / UNZIPPED_LIMIT_BYTES, 2),
                "runtime_provided_bundled": bundled,
            }
            if setup is not None:
                report |= measure_import(function, setup, provided, runs)
            reports.append(report)
    return reports


def problems(reports: list[dict[str, Any]]) -> list[str]:
    """What makes a build unfit to deploy as this stack wants it."""
    found = []
    for report in reports:
        if report["runtime_provided_bundled"]:
            found.append(f"{report['function']} bundles what the Lambda runtime provides: "
                         f"{', '.join(report['runtime_provided_bundled'])}")
        if report["total_unzipped_bytes"] > report["unzipped_limit_bytes"]:
            found.append(f"{report['function']} is {_mb(report['total_unzipped_bytes'])} unzipped with its layers, "
                         f"over Lambda's {_mb(report['unzipped_limit_bytes'])}")
    return found


def _mb(size: int) -> str:
    # Lambda's "250 MB" is 250 MiB (262,144,000 bytes), so sizes are shown in binary units too.
    return f"{size / 1024:.1f} KiB" if size < 1024 * 1024 else f"{size / (1024 * 1024):.2f} MiB"


def format_table(reports: list[dict[str, Any]]) -> str:
    header = ["function", "own zip", "own unzipped", "layers zip", "layers unzipped", "total unzipped",
              "of 250 MiB limit"]
    timed = "cold_import_ms" in reports[0] if reports else False
    if timed:
        groups = list(reports[0]["import_self_ms_by_group"])
        header += ["cold import (median)", "of which CPU", *(f"{g} (ms)" for g in groups)]
    rows = [header]
    for r in reports:
        row = [r["function"], _mb(r["function_zipped_bytes"]), _mb(r["function_unzipped_bytes"]),
               _mb(r["layers_zipped_bytes"]), _mb(r["layers_unzipped_bytes"]), _mb(r["total_unzipped_bytes"]),
               f"{r['unzipped_limit_used_percent']:.1f}%"]
        if timed:
            row += [f"{r['cold_import_ms']:.0f} ms", f"{r['cold_import_cpu_ms']:.0f} ms",
                    *(f"{r['import_self_ms_by_group'][g]:.0f}" for g in groups)]
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    layers = {name: sizes for r in reports for name, sizes in r["layers"].items()}
    lines += [f"layer {name}: {_mb(s['zipped_bytes'])} zipped, {_mb(s['unzipped_bytes'])} unzipped"
              for name, s in layers.items()]
    if timed:
        lines.append(f"measured: {reports[0]['import_measured']}")
    return "\n".join(lines)


def sam_build(build_dir: Path) -> None:
    """`sam build` of the project's template into build_dir, with python3.13 on PATH as sam build needs."""
    sam = os.environ.get("SAM") or next(
        (str(p) for p in [PROJECT_ROOT / ".tools" / "sam" / "bin" / "sam"] if p.is_file()), "sam")
    python_dir = str(Path(lambda_python()).parent)
    environment = {**os.environ, "SAM_CLI_TELEMETRY": "0",
                   "PATH": f"{python_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    command = [sam, "build", "--template-file", str(TEMPLATE_PATH), "--build-dir", str(build_dir),
               "--base-dir", str(PROJECT_ROOT)]
    try:
        # sam's progress goes to stderr, so stdout stays the report alone.
        built = _run(command, cwd=PROJECT_ROOT, env=environment, stdout=sys.stderr)
    except FileNotFoundError:
        raise PackageReportError(f"SAM CLI not found ({sam}); run `make tools` or set SAM") from None
    if built.returncode != 0:
        raise PackageReportError(f"sam build failed (exit status {built.returncode})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build-dir", type=Path, help="a `sam build` output; default: build into a temp dir")
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="cold imports per function (median)")
    parser.add_argument("--sizes-only", action="store_true", help="no import timing")
    parser.add_argument("--json", action="store_true", help="print the reports as JSON")
    args = parser.parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(prefix="auditlake-build-") as scratch:
            build_dir = args.build_dir
            if build_dir is None:
                build_dir = Path(scratch) / "build"
                sam_build(build_dir)
            reports = package_report(build_dir, runs=args.runs, measure_imports=not args.sizes_only)
    except PackageReportError as exc:
        print(f"packages: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(reports, indent=2) if args.json else format_table(reports))
    found = problems(reports)
    for problem in found:
        print(f"FAILED: {problem}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
