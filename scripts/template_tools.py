"""Helpers for scripts/check_template.sh.

  python scripts/template_tools.py translate TEMPLATE OUT.json
      Translates the SAM template to plain CloudFormation offline, so checkov sees the generated IAM roles, and
      fails if any role has a managed policy (SAM attaches AWSLambdaBasicExecutionRole, logs to every log group, to
      each function role it generates: the collectors have their own roles).
  python scripts/template_tools.py checkov-summary REPORT.json LABEL
      Prints checkov's counts, every skip with its reason and every failure; fails on any failure, any skip
      without a reason, any parsing error, or a scan that checked nothing.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

_CODE_PROPERTIES = ("CodeUri", "ContentUri", "DefinitionUri")

# Managed policies SAM knows by name; none may end up on a role: each role's permissions are its own statements.
_MANAGED_POLICIES = {
    "AWSLambdaBasicExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "AWSXrayWriteOnlyAccess": "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
}
_ALLOWED_MANAGED_POLICY_ARNS: set[str] = set()


class OfflinePolicyLoader:
    """Stands in for samtranslator's ManagedPolicyLoader, which would call iam:ListPolicies."""

    def load(self) -> dict[str, str]:
        return dict(_MANAGED_POLICIES)


def with_remote_code(template: dict[str, Any]) -> dict[str, Any]:
    """A copy of the template whose local code paths are placeholder s3:// URIs (samtranslator rejects local ones)."""
    resources = {}
    for logical_id, resource in template.get("Resources", {}).items():
        properties = dict(resource.get("Properties") or {})
        for name in _CODE_PROPERTIES:
            value = properties.get(name)
            if isinstance(value, str) and not value.startswith("s3://"):
                properties[name] = f"s3://offline-translation/{logical_id}.zip"
        resources[logical_id] = {**resource, "Properties": properties} if "Properties" in resource else resource
    return {**template, "Resources": resources}


def translate(source: Path, target: Path) -> int:
    from samtranslator.translator.transform import transform  # noqa: PLC0415 - only this command needs it
    from samtranslator.yaml_helper import yaml_parse  # noqa: PLC0415

    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    translated = transform(with_remote_code(yaml_parse(source.read_text())), {}, OfflinePolicyLoader())
    target.write_text(json.dumps(translated, indent=2, sort_keys=True) + "\n")
    resources = translated.get("Resources", {})
    print(f"translated {source} -> {target}: {len(resources)} resources")
    status = 0
    for logical_id, resource in sorted(resources.items()):
        if resource["Type"] != "AWS::IAM::Role":
            continue
        managed = resource.get("Properties", {}).get("ManagedPolicyArns", [])
        print(f"  role {logical_id}: managed policies {[str(m).rsplit('/', 1)[-1] for m in managed] or 'none'}")
        unexpected = [m for m in managed if m not in _ALLOWED_MANAGED_POLICY_ARNS]
        if unexpected:
            print(f"  ERROR: {logical_id} has managed policies: {unexpected}")
            status = 1
    return status


def _reports(data: Any) -> list[dict[str, Any]]:
    return data if isinstance(data, list) else [data]


def checkov_summary(report: Path, label: str) -> int:
    text = report.read_text().strip()
    if not text:
        print(f"ERROR: checkov wrote no report for {label}")
        return 1
    passed, failed, skipped, parsing_errors = [], [], [], []
    for part in _reports(json.loads(text)):
        results = part.get("results", {})
        passed += results.get("passed_checks", [])
        failed += results.get("failed_checks", [])
        skipped += results.get("skipped_checks", [])
        parsing_errors += results.get("parsing_errors", []) or part.get("summary", {}).get("parsing_errors", []) or []
    print(f"{label}: passed {len(passed)}, failed {len(failed)}, skipped {len(skipped)}")
    status = 0
    for check in skipped:
        reason = (check.get("check_result") or {}).get("suppress_comment", "").strip()
        print(f"  skipped {check['check_id']} on {check['resource']}: {reason or 'NO REASON GIVEN'}")
        if not reason or reason.lower().startswith("no comment"):
            status = 1
    for check in failed:
        print(f"  FAILED {check['check_id']} on {check['resource']}: {check.get('check_name', '')}")
        status = 1
    if parsing_errors:
        print(f"  ERROR: checkov could not parse {parsing_errors}")
        status = 1
    if not passed:
        print(f"  ERROR: checkov checked nothing in {label}")
        status = 1
    return status


def main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[1] == "translate":
        return translate(Path(argv[2]), Path(argv[3]))
    if len(argv) == 4 and argv[1] == "checkov-summary":
        return checkov_summary(Path(argv[2]), argv[3])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
