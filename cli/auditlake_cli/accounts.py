"""`--account NAME`: which of a vendor's accounts a command means. A vendor's first secret is its `default`
account; further accounts are named in the stack's `<Title>Accounts` parameter, each with its own secret."""

from __future__ import annotations

import argparse
import re

from auditlake_cli.errors import CliError
from auditlake_cli.target import Target
from auditlake_vendors import adapter

DEFAULT = "default"
# The template's AllowedPattern for one name of `<Title>Accounts`.
NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,30}")


def name(text: str) -> str:
    """argparse's type for `--account`: `default`, or a name the template accepts."""
    if text == DEFAULT or NAME.fullmatch(text):
        return text
    raise argparse.ArgumentTypeError(f"an account is `{DEFAULT}` or 1 to 31 of a-z, 0-9 and '-', starting with a "
                                     f"letter or digit, not {text!r}")


def add_argument(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--account", type=name, metavar="NAME",
                        help=f"{what} (`{DEFAULT}`: the vendor's first secret; default: every account)")


def named(account: str | None) -> str | None:
    """The named account, or None for the default one."""
    return None if account in (None, DEFAULT) else account


def label(vendor: str, account: str | None) -> str:
    """`make`, or `make@us-sub` for a named account: how stream keys spell it."""
    return vendor if named(account) is None else f"{vendor}@{account}"


def require_collected(where: Target, vendor: str, account: str | None) -> None:
    """Refuses, in one sentence, a named account the target's collector does not read."""
    chosen = named(account)
    known = where.accounts(vendor)
    if chosen is None or known is None or chosen in known:
        return
    parameter = f"{adapter(vendor).title}Accounts"
    listed = ", ".join((DEFAULT, *known))
    raise CliError(f"{vendor} has no account {chosen} on {where.name} (its accounts: {listed}); to add one, "
                   f"`auditlake secret set {vendor} --account {chosen}`, then deploy with {parameter} naming it")
