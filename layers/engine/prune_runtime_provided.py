"""Removes from a `pip install --target` directory every distribution the Lambda runtime already provides.

Usage: python prune_runtime_provided.py TARGET_DIR LIST_FILE

pip has no way to leave a dependency out of a resolution, so the layer build installs everything its requirements
pull in (aws-xray-sdk brings botocore, requests brings urllib3) and this removes what LIST_FILE names, file by file
from each distribution's RECORD. Run at build time with the build's interpreter: standard library only.
"""

from __future__ import annotations

import csv
import re
import shutil
import sys
from email.parser import HeaderParser
from pathlib import Path


def canonical_name(name: str) -> str:
    """PEP 503 normalisation: `python_dateutil`, `Python-Dateutil` and `python-dateutil` are one distribution."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_runtime_provided(list_file: Path) -> dict[str, tuple[str, ...]]:
    """{canonical distribution name: import names} from the list (`name import-name...` a line, # comments)."""
    provided: dict[str, tuple[str, ...]] = {}
    for number, raw in enumerate(list_file.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        distribution, *import_names = line.split()
        if not import_names:
            raise ValueError(f"{list_file}:{number}: {distribution!r} names no import name")
        provided[canonical_name(distribution)] = tuple(import_names)
    if not provided:
        raise ValueError(f"{list_file} names no distribution")
    return provided


def installed_distributions(target: Path) -> dict[str, Path]:
    """{canonical name: its .dist-info directory} for what pip installed into target."""
    found: dict[str, Path] = {}
    for info in sorted(target.glob("*.dist-info")):
        metadata = info / "METADATA"
        name = HeaderParser().parsestr(metadata.read_text(encoding="utf-8")).get("Name") if metadata.is_file() else None
        found[canonical_name(name or info.name.split("-", 1)[0])] = info
    return found


def remove_distribution(target: Path, info: Path) -> None:
    """Deletes the files the distribution's RECORD lists inside target, then the directories it leaves empty."""
    root = target.resolve()
    directories: set[Path] = set()
    record = info / "RECORD"
    rows = list(csv.reader(record.open(encoding="utf-8", newline=""))) if record.is_file() else []
    for row in rows:
        if not row or not row[0]:
            continue
        path = (target / row[0]).resolve()
        # Scripts are recorded outside the package directory (../../bin/...); the build drops bin/ as a whole.
        if not path.is_relative_to(root) or path == root:
            continue
        if path.is_file() or path.is_symlink():
            path.unlink()
        directories.update(parent for parent in path.parents if parent.is_relative_to(root) and parent != root)
    for directory in sorted(directories, key=lambda p: len(p.parts), reverse=True):
        if directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()
    data = info.with_name(info.name.removesuffix(".dist-info") + ".data")
    for leftover in (info, data):
        if leftover.exists():
            shutil.rmtree(leftover)


def prune(target: Path, provided: dict[str, tuple[str, ...]]) -> list[str]:
    """Removes the runtime-provided distributions installed in target; returns their names. Fails if one of their
    import names is still there afterwards (a copy that no RECORD accounts for)."""
    removed = []
    for name, info in installed_distributions(target).items():
        if name in provided:
            remove_distribution(target, info)
            removed.append(name)
    leftovers = [f"{module}" for modules in provided.values() for module in modules
                 if (target / module).exists() or (target / f"{module}.py").exists()]
    if leftovers:
        raise SystemExit(f"{target} still holds runtime-provided module(s) {', '.join(leftovers)} after pruning")
    return removed


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    target, list_file = Path(argv[0]), Path(argv[1])
    if not target.is_dir():
        print(f"prune_runtime_provided: {target} is not a directory", file=sys.stderr)
        return 2
    removed = prune(target, read_runtime_provided(list_file))
    print(f"left out (the Lambda runtime provides them): {', '.join(removed) or 'nothing was installed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
