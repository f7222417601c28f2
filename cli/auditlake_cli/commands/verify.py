"""`auditlake verify`: proves the archive whole from its signed digests (see auditlake_cli.verify)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from auditlake.state import StreamKey, StreamState
from auditlake.timeutil import parse_time
from auditlake_cli.errors import EXIT_ERROR, CliError
from auditlake_cli.output import moment
from auditlake_cli.target import ArchiveAccess, Target, target
from auditlake_cli.verify import Report, Verifier, load_public_key
from auditlake_vendors import VENDORS


def add_parser(commands: Any, where: argparse.ArgumentParser) -> None:
    verify = commands.add_parser(
        "verify", parents=[where], help="prove the archive whole from its signed digests",
        description="Walks each stream's digest chain: every signature (with the signing key's public key), every "
                    "link, every listed object's version, SHA-256 and record count, no object that no digest lists, "
                    "no gap in the time the digests cover. One line per finding; exits 1 on any.")
    verify.add_argument("--stream", action="append", metavar="STREAM",
                        help="a vendor (make: every account's streams), a stream key with its backfill and "
                             "reconciliation (make#<org id>, or make@<account>#<org id> for a named account) or one "
                             "of these alone (make#<org id>#backfill); repeatable (default: every stream of every "
                             "account)")
    verify.add_argument("--since", metavar="TIME", help="check objects and coverage from this day or ISO time (UTC)")
    verify.add_argument("--until", metavar="TIME", help="... up to this day or time (default: now; the chains' "
                                                       "last digests must then be recent)")
    verify.add_argument("--public-key", type=Path, metavar="FILE",
                        help="the signing key's public key (PEM or DER): signatures are checked without KMS")
    verify.set_defaults(handler=cmd_verify)

def cmd_verify(args: argparse.Namespace) -> int:
    since = _instant(args.since, "--since")
    until = _instant(args.until, "--until")
    if since is not None and until is not None and since >= until:
        raise CliError(f"--since {args.since} is not before --until {args.until}")
    streams = args.stream or None
    for stream in streams or []:
        if _vendor_of(stream) not in VENDORS:
            raise CliError(f"--stream takes a vendor ({', '.join(VENDORS)}) or a stream key such as "
                           f"asana#<workspace gid> or make@<account>#<org id>, not {stream!r}")
    public_key = None
    if args.public_key is not None:
        try:
            public_key = load_public_key(args.public_key.read_bytes(), str(args.public_key))
        except OSError as exc:
            raise CliError(f"cannot read --public-key {args.public_key}: {exc.strerror}") from None
    with target(args, vendors=[]) as where:
        access = where.archive()
        if public_key is None:
            public = access.kms.get_public_key(KeyId=access.signing_key)["PublicKey"]
            public_key = load_public_key(public, f"the public key of {access.signing_key}")
        print(f"verifying {where.name}: {', '.join(streams) if streams else 'every stream'}, "
              f"{moment(since) if since else 'from the first digest'} to {moment(until) if until else 'now'}")
        verifier = Verifier(access.s3, access.bucket, public_key, states=readable_states(access),
                            now=lambda: datetime.now(UTC), collected=collected_accounts(where))
        report = verifier.run(streams, since, until)
    print_report(report)
    return EXIT_ERROR if report.findings else 0


def print_report(report: Report) -> None:
    for finding in report.findings:
        print(finding.line())
    print(report.summary())


def readable_states(access: ArchiveAccess) -> Callable[[], list[StreamState]] | None:
    """The streams' state when it is readable; without it the chains' heads and the objects waiting for their
    stream's next digest are unknown (objects written since a stream's last digest then count as unlisted)."""
    try:
        access.states()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in {"AccessDeniedException", "AccessDenied"}:
            raise
        print("note: the state table is not readable with these credentials; the chains' ends are judged by their "
              "age only", file=sys.stderr)
        return None
    return access.states


def collected_accounts(where: Target) -> Callable[[StreamKey], bool]:
    """Whether a stream's account is one the stack collects now: every vendor's default account, and the names of
    its `<Title>Accounts` (any account, when the stack predates them)."""
    named = {vendor: where.accounts(vendor) for vendor in VENDORS}

    def collected(key: StreamKey) -> bool:
        accounts = named.get(key.vendor)
        return key.account is None or accounts is None or key.account in accounts

    return collected


def _vendor_of(stream: str) -> str | None:
    if "#" not in stream:
        return stream
    try:
        return StreamKey.parse(stream).vendor
    except ValueError:
        return None


def _instant(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_time(text)
    except ValueError:
        raise CliError(f"{option} takes a day (YYYY-MM-DD) or an ISO 8601 time, not {text!r}") from None


