"""`auditlake secret set VENDOR [--account NAME]`: prompts for the token (never shown) and the scope fields, checks
them with one request to the vendor, then stores them in the collector's secret (a named account's is created, with
the stack's archive key, the first time)."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any

from auditlake.errors import AuditlakeError
from auditlake.secrets import PLACEHOLDER, parse_secret
from auditlake_cli import accounts
from auditlake_cli.commands.query import name_values
from auditlake_cli.errors import CliError
from auditlake_cli.probe import probe_vendor
from auditlake_cli.target import target
from auditlake_vendors import VENDORS, adapter


def add_parser(commands: Any, where: argparse.ArgumentParser) -> None:
    secret = commands.add_parser("secret", help="manage the vendors' secrets")
    secret_commands = secret.add_subparsers(dest="secret_command", required=True, metavar="ACTION")
    put = secret_commands.add_parser("set", parents=[where], help="prompt for, check and store a vendor's secret",
                                     description="Prompts for the token (not shown) and the scope fields, checks "
                                                 "them with one request to the vendor, then stores them.")
    put.add_argument("vendor", choices=VENDORS, metavar="VENDOR", help=", ".join(VENDORS))
    put.add_argument("--field", action="append", metavar="NAME=VALUE", help="a scope field, instead of its prompt")
    put.add_argument("--token-stdin", action="store_true", help="read the token from stdin (for scripts)")
    put.add_argument("--account", type=accounts.name, metavar="NAME",
                     help="a further account of the vendor: its own secret, created on first use (default: the "
                          "vendor's first secret, the `default` account)")
    put.set_defaults(handler=cmd_secret_set)


def cmd_secret_set(args: argparse.Namespace) -> int:
    vendor = args.vendor
    cls = adapter(vendor)
    given = name_values(args.field)
    if "token" in given:
        raise CliError("the token is never passed as --field (it would stay in your shell history); enter it at "
                       "the prompt or pipe it with --token-stdin")
    unknown = sorted(set(given) - {*cls.secret_fields, "base_url"})
    if unknown:
        raise CliError(f"{vendor} secrets have no field {unknown[0]}; they hold {', '.join(cls.secret_fields)} "
                       "and optionally base_url")
    account = accounts.named(args.account)
    with target(args, vendors=[vendor]) as where:
        current = where.secret(vendor, account) or {}
        secret: dict[str, str] = {}
        for name in cls.secret_fields:
            if name == "token":
                secret[name] = _read_token(vendor, args.token_stdin)
            elif name in given:
                secret[name] = given[name]
            else:
                secret[name] = _prompt(name, current.get(name))
        base_url = given.get("base_url", current.get("base_url"))
        if where.base_url(vendor, account):
            base_url = where.base_url(vendor, account)
        if base_url:
            secret["base_url"] = base_url
        check_secret(vendor, secret, account)
        stored_in = where.put_secret(vendor, secret, account)
        where.save()
        collected = where.accounts(vendor)
    scope = ", ".join(f"{name} {secret[name]}" for name in cls.secret_fields if name != "token")
    print(f"{cls.title} accepted the token{' for ' + scope if scope else ''}; stored in {stored_in}")
    if account is not None and collected is not None and account not in collected:
        names = ",".join((*collected, account))
        # `sam deploy` keeps the deployed value of every parameter an override does not name (UsePreviousValue).
        print(f"the collector does not read account {account} yet: `sam deploy --parameter-overrides "
              f"{cls.title}Accounts={names}` adds it")
    return 0


def _read_token(vendor: str, from_stdin: bool) -> str:
    token = sys.stdin.readline() if from_stdin else getpass.getpass(f"{vendor} token (not shown): ")
    token = token.strip()
    if not token:
        raise CliError(f"no {vendor} token was given")
    return token


def _prompt(name: str, default: Any) -> str:
    if default in (None, "") or str(default).strip() == PLACEHOLDER:
        default = None
    shown = f" [{default}]" if default is not None else ""
    try:
        value = input(f"{name}{shown}: ").strip()
    except EOFError:
        value = ""
    if not value and default is not None:
        return str(default)
    if not value:
        raise CliError(f"no {name} was given")
    return value


def check_secret(vendor: str, secret: dict[str, str], account: str | None = None) -> None:
    """One cheap request with these values: one page of a one-minute window of the first stream."""
    cls = adapter(vendor)
    whose = "" if account is None else f" for account {account}"
    try:
        probe_vendor(vendor, parse_secret(vendor, "(new value)", json.dumps(secret), cls.secret_fields))
    except AuditlakeError as exc:
        raise CliError(f"{cls.title} did not accept these values{whose} ({exc}); nothing was stored") from None


