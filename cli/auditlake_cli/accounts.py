"""`--account NAME`: which of a vendor's accounts a command means. A vendor's first secret is its `default`
account; further accounts are named in the stack's `<Title>Accounts` parameter, each with its own secret."""

from __future__ import annotations

import argparse

from auditlake.state import DEFAULT_ACCOUNT, check_account
from auditlake_cli.errors import CliError
from auditlake_cli.target import Target
from auditlake_vendors import adapter

DEFAULT = DEFAULT_ACCOUNT


def name(text: str) -> str:
    """argparse's type for `--account`: `default`, or a name the engine (and the template's pattern) accepts."""
    if text == DEFAULT:
        return text
    try:
        return check_account(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc}; or `{DEFAULT}`, the vendor's first secret") from None


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
