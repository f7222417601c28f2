"""Translates the SAM template into plain CloudFormation JSON, offline, so checkov can see the generated IAM roles.

Usage: python scripts/translate_template.py template.yaml out.json

samtranslator refuses local code paths and looks managed policies up in IAM; neither is needed to see the
resources it generates, so local CodeUri/ContentUri become placeholder s3:// URIs and managed policy names
resolve from a small fixed map.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

_CODE_PROPERTIES = ("CodeUri", "ContentUri", "DefinitionUri")

# The AWS managed policies SAM may attach by name; a name outside this map fails the translation loudly.
_MANAGED_POLICIES = {
    name: f"arn:aws:iam::aws:policy/{path}{name}"
    for name, path in {
        "AWSLambdaBasicExecutionRole": "service-role/",
        "AWSXrayWriteOnlyAccess": "",
        "AWSLambdaVPCAccessExecutionRole": "service-role/",
    }.items()
}


class OfflinePolicyLoader:
    """Stands in for samtranslator's ManagedPolicyLoader, which would call iam:ListPolicies."""

    def load(self) -> dict[str, str]:
        return dict(_MANAGED_POLICIES)


def with_remote_code(template: dict[str, Any]) -> dict[str, Any]:
    """A copy of the template whose local code paths are placeholder s3:// URIs."""
    resources = {}
    for logical_id, resource in template.get("Resources", {}).items():
        properties = dict(resource.get("Properties") or {})
        for name in _CODE_PROPERTIES:
            value = properties.get(name)
            if isinstance(value, str) and not value.startswith("s3://"):
                properties[name] = f"s3://auditlake-offline-translation/{logical_id}.zip"
        resources[logical_id] = {**resource, "Properties": properties} if "Properties" in resource else resource
    return {**template, "Resources": resources}


def translate(sam_template: dict[str, Any]) -> dict[str, Any]:
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return transform(with_remote_code(sam_template), {}, OfflinePolicyLoader())  # type: ignore[arg-type]


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    source, target = Path(argv[1]), Path(argv[2])
    translated = translate(yaml_parse(source.read_text()))
    target.write_text(json.dumps(translated, indent=2, sort_keys=True) + "\n")
    print(f"translated {source} -> {target}: {len(translated.get('Resources', {}))} resources")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
