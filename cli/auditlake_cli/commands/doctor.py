"""`auditlake doctor --stack NAME`: after `sam deploy`, checks the deployment and says what to fix."""

from __future__ import annotations

import argparse
from typing import Any

from auditlake_cli.doctor import Doctor
from auditlake_cli.errors import EXIT_ERROR
from auditlake_cli.target import StackTarget


def add_parser(commands: Any, where: argparse.ArgumentParser) -> None:
    check = commands.add_parser(
        "doctor", help="check a deployed stack and say what to fix",
        description="After `sam deploy`: each vendor's secret (filled, and accepted by the vendor with one request), "
                    "each collector's last run and outcome, a confirmed subscription to the alarm topic, the "
                    "schedules enabled, and (IAM policy simulator) that each collector's role may make every call "
                    "the collector makes. One line per check; exits 1 on any problem.")
    check.add_argument("--stack", metavar="NAME", required=True, help="the deployed auditlake stack")
    check.add_argument("--region", help="the stack's AWS region (default: your AWS configuration)")
    check.set_defaults(handler=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    stack = StackTarget(args.stack, args.region)
    print(f"checking {stack.name} in {stack.session.region_name}")
    problems = 0
    for check in Doctor(stack).run():
        print(check.line(), flush=True)  # each line as it is known: the vendors' requests take a moment
        problems += not check.ok
    print(f"{problems} problem(s)" if problems else "no problems: the deployment is ready")
    return EXIT_ERROR if problems else 0
