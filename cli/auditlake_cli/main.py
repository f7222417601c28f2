"""`auditlake`: the operator's command line, against a deployed stack (`--stack NAME`).

    auditlake status                                 per stream: account, cursor, freshness, last run, backlog
    auditlake backfill VENDOR --since YYYY-MM-DD     history before the first collected window, exactly once
    auditlake reconcile VENDOR --since YYYY-MM-DD    re-read what the vendor still holds, archive what is missing
    auditlake query "SQL" | --saved NAME | --list    Athena SQL in the stack's workgroup
    auditlake secret set VENDOR                      prompts for the token and scope, checks them, stores them
    (status, backfill, reconcile and secret set take --account NAME: one of a vendor's accounts)
    auditlake verify [--stream S] [--since T]        the digests' signatures and chains, every object's hash,
                                                     no unlisted object, no gap in the time covered
    auditlake doctor --stack NAME                    after `sam deploy`: secrets, last runs, alarm subscription,
                                                     schedules, the collectors' permissions; what to fix
"""

from __future__ import annotations

import argparse
import sys

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

from auditlake.errors import AuditlakeError
from auditlake_cli import plugins
from auditlake_cli.commands import backfill, doctor, query, reconcile, secret, status, verify
from auditlake_cli.errors import EXIT_ERROR, EXIT_INTERRUPTED, CliError
from auditlake_cli.verify import VerifyError

COMMANDS = (status, backfill, reconcile, query, secret, verify, doctor)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="auditlake", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--stack", metavar="NAME", help="the deployed auditlake stack")
    where.add_argument("--region", help="the stack's AWS region (default: your AWS configuration)")
    plugins.add_arguments(where)
    plugins.add_commands(commands, where)
    for command in COMMANDS:
        command.add_parser(commands, where)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print("\ninterrupted; what was committed is kept, and the same command continues from there",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except (CliError, VerifyError, AuditlakeError) as exc:
        return fail(str(exc))
    except NoCredentialsError:
        return fail("no AWS credentials were found; configure a profile or set AWS_PROFILE")
    except NoRegionError:
        return fail("no AWS region is configured; pass --region or set AWS_REGION")
    except ClientError as exc:
        error = exc.response.get("Error", {})
        return fail(f"AWS refused {exc.operation_name}: {error.get('Code')}: {error.get('Message')}")
    except BotoCoreError as exc:
        return fail(f"AWS could not be reached: {exc}")


def fail(message: str) -> int:
    print(f"auditlake: error: {message.strip()}", file=sys.stderr)
    return EXIT_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
