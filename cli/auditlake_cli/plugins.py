"""What other installed packages add to the command line, through the entry point group `auditlake.plugins`.

A plugin is a module with any of:
- `add_arguments(where)`: options for the parser every command that acts somewhere shares (`--workspace`);
- `add_commands(commands, where)`: commands of its own (`demo`);
- `open_target(args, vendors)`: a context manager yielding a Target for these arguments, or None if they are not
  its to handle.
The local world (simulators, the demo workspace) is such a plugin; an operator's installation has none, and every
command then acts on a deployed stack.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator, Sequence
from functools import cache
from importlib.metadata import entry_points
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from auditlake_cli.target import Target

GROUP = "auditlake.plugins"


@cache
def installed() -> tuple[ModuleType, ...]:
    return tuple(entry.load() for entry in sorted(entry_points(group=GROUP), key=lambda e: e.name))


def add_arguments(where: argparse.ArgumentParser) -> None:
    for plugin in installed():
        if hasattr(plugin, "add_arguments"):
            plugin.add_arguments(where)


def add_commands(commands: Any, where: argparse.ArgumentParser) -> None:
    for plugin in installed():
        if hasattr(plugin, "add_commands"):
            plugin.add_commands(commands, where)


@contextlib.contextmanager
def open_target(args: argparse.Namespace, vendors: Sequence[str]) -> Iterator[Target | None]:
    for plugin in installed():
        if hasattr(plugin, "open_target"):
            with plugin.open_target(args, vendors) as found:
                if found is not None:
                    yield found
                    return
    yield None
