"""The vendor registry (functions/__init__.py) is the one list of vendors: every function directory is in it, every
entry has its directory, adapter and Lambda entry point, and everything per vendor is derived from it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import auditlake_vendors
from auditlake.vendor import VendorAdapter
from auditlake_cli.main import parser
from auditlake_local.template import load_template

FUNCTIONS = Path(__file__).resolve().parents[1] / "functions"


def test_every_function_directory_is_registered_and_every_entry_has_one() -> None:
    directories = {d.name for d in FUNCTIONS.iterdir() if (d / f"{d.name}_collector.py").is_file()}
    assert set(auditlake_vendors.VENDORS) == directories
    assert len(set(auditlake_vendors.VENDORS)) == len(auditlake_vendors.VENDORS)


@pytest.mark.parametrize("vendor", auditlake_vendors.VENDORS)
def test_each_adapter_names_itself_and_its_function(vendor: str) -> None:
    adapter = auditlake_vendors.adapter(vendor)
    assert issubclass(adapter, VendorAdapter) and adapter.vendor == vendor
    # The title names CloudFormation resources, whose logical ids "must be alphanumeric (A-Za-z0-9)" (CloudFormation
    # User Guide, "Resources" section of a template).
    assert adapter.title.isascii() and adapter.title.isalnum() and adapter.function_id() == f"{adapter.title}Collector"
    # The template's function for it runs its one-line entry point, which is the adapter's handler.
    function = load_template()["Resources"][adapter.function_id()]["Properties"]
    assert function["CodeUri"].rstrip("/") == f"functions/{vendor}"
    assert function["Handler"] == f"{vendor}_lambda.handler"
    entry = ast.parse((FUNCTIONS / vendor / f"{vendor}_lambda.py").read_text())
    assigned = [node for node in entry.body if isinstance(node, ast.Assign)]
    assert len(assigned) == 1 and ast.unparse(assigned[0]) == f"handler = make_handler({adapter.__name__})"


def test_importing_an_adapter_builds_no_powertools_objects() -> None:
    for vendor in auditlake_vendors.VENDORS:
        source = (FUNCTIONS / vendor / f"{vendor}_collector.py").read_text()
        imported = {alias.name if isinstance(node, ast.Import) else node.module
                    for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Import | ast.ImportFrom)
                    for alias in node.names}
        assert "auditlake.lambda_handler" not in imported and not any(
            str(name).startswith("aws_lambda_powertools") for name in imported), vendor


def test_the_command_line_offers_every_registered_vendor() -> None:
    commands = parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for command in ("backfill", "reconcile"):
        vendor = next(a for a in commands[command]._actions if a.dest == "vendor")
        assert list(vendor.choices) == list(auditlake_vendors.VENDORS)
