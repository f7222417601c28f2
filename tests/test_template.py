"""template.yaml's security and contract rules, asserted by parsing it (heavy tools: scripts/check_template.sh).

Collector rules are checked for every `AWS::Serverless::Function` whose logical id ends with `Collector`; the vendor
is the id's prefix lowercased (AsanaCollector -> asana), so a new vendor is covered the moment it is added.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from auditlake.state import check_account
from auditlake.vendor import VendorAdapter
from auditlake_local.template import PROJECT_ROOT, load_template, resolve
from auditlake_vendors import VENDORS, adapters

TEMPLATE = load_template()
RESOURCES: dict[str, dict[str, Any]] = TEMPLATE["Resources"]
PARAMETERS: dict[str, dict[str, Any]] = TEMPLATE["Parameters"]

COLLECTORS = sorted(logical_id for logical_id, spec in RESOURCES.items()
                    if spec["Type"] == "AWS::Serverless::Function" and logical_id.endswith("Collector"))

ENV_CONTRACT = {
    "STATE_TABLE", "ARCHIVE_BUCKET", "ARCHIVE_KMS_KEY_ARN", "DIGEST_SIGNING_KEY_ARN", "SECRET_ID", "LAG_SECONDS",
    "OVERLAP_SECONDS",
    "INITIAL_LOOKBACK_DAYS", "PAGE_SIZE", "DEADLINE_MARGIN_SECONDS", "MAX_OBJECT_EVENTS", "HTTP_TIMEOUT_SECONDS",
    "HTTP_MAX_ATTEMPTS", "SECRET_MAX_AGE_SECONDS", "POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE",
    "LOG_LEVEL", "RATE_LIMIT_PER_MINUTE",
}
FIXED_ENV = {"PAGE_SIZE": "100", "DEADLINE_MARGIN_SECONDS": "60", "MAX_OBJECT_EVENTS": "10000",
             "HTTP_TIMEOUT_SECONDS": "30", "HTTP_MAX_ATTEMPTS": "5", "SECRET_MAX_AGE_SECONDS": "300",
             "RATE_LIMIT_PER_MINUTE": "",
             "POWERTOOLS_SERVICE_NAME": "auditlake", "POWERTOOLS_METRICS_NAMESPACE": "auditlake", "LOG_LEVEL": "INFO"}
PARAMETER_ENV = {"LAG_SECONDS": ("CollectionLagSeconds", 120), "OVERLAP_SECONDS": ("LateEventOverlapSeconds", 600),
                 "INITIAL_LOOKBACK_DAYS": ("InitialLookbackDays", 90)}
EVENT_COLUMNS = ["event_id", "event_time", "stream", "account", "action", "category", "actor_id", "actor_email",
                 "actor_name", "actor_type", "target_id", "target_type", "target_name", "source_ip", "user_agent",
                 "outcome", "collected_at", "raw"]
ALL_VENDORS = set(VENDORS)
ALLOWED_COLLECTOR_SERVICES = {"secretsmanager", "kms", "dynamodb", "s3", "logs", "xray"}
FORBIDDEN_S3_ACTION_PATTERNS = ["s3:delete*", "s3:putbucket*", "s3:putobjectacl", "s3:putobjectversionacl",
                                "s3:putlifecycle*", "s3:putobjectretention", "s3:putobjectlegalhold",
                                "s3:bypassgovernanceretention", "s3:putencryptionconfiguration"]

# What intrinsics resolve to in these tests: recognisable fake names and ARNs.
REGION, ACCOUNT, STACK = "eu-west-1", "123456789012", "auditlake-test"


class _Attrs(dict):
    """GetAtt values: a bucket's Arn is its S3 ARN, anything else a recognisable placeholder."""

    def __missing__(self, key: tuple[str, str]) -> str:
        logical_id, attribute = key
        if RESOURCES.get(logical_id, {}).get("Type") == "AWS::S3::Bucket" and attribute == "Arn":
            return f"arn:aws:s3:::{REFS[logical_id]}"
        return f"getatt:{logical_id}.{attribute}"

    def __bool__(self) -> bool:  # resolve() replaces a falsy mapping with {}
        return True


def _ref_value(logical_id: str, spec: dict[str, Any]) -> str:
    if spec["Type"] == "AWS::S3::Bucket":
        return f"{STACK}-{logical_id.lower()}-0a1b2c"
    if spec["Type"] == "AWS::SecretsManager::Secret":
        return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{logical_id}-AbCdEf"
    return f"ref:{logical_id}"


REFS: dict[str, Any] = {
    **{name: str(spec.get("Default", "")) for name, spec in PARAMETERS.items()},
    **{logical_id: _ref_value(logical_id, spec) for logical_id, spec in RESOURCES.items()},
    "AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::StackName": STACK, "AWS::Partition": "aws",
    "AWS::NoValue": None, "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{STACK}/0a1b2c3d",
}
ATTRS = _Attrs()
EXISTING_SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:existing-XyZ123"


def evaluate(value: Any, *, refs: dict[str, Any] | None = None, conditions: dict[str, bool] | None = None) -> Any:
    """Resolves intrinsics with the fake names above; Fn::FindInMap is looked up in the template's Mappings."""
    refs = {**REFS, **(refs or {})}
    if isinstance(value, dict) and set(value) == {"Fn::FindInMap"}:
        mapping, top, second = (evaluate(part, refs=refs, conditions=conditions) for part in value["Fn::FindInMap"])
        return TEMPLATE["Mappings"][mapping][str(top)][second]
    if isinstance(value, dict):
        return {k: evaluate(v, refs=refs, conditions=conditions) for k, v in value.items()} if len(value) != 1 \
            or not next(iter(value)).startswith(("Fn::", "Ref")) else resolve(value, refs, ATTRS, conditions)
    if isinstance(value, list):
        return [evaluate(v, refs=refs, conditions=conditions) for v in value]
    return value


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def vendor_of(logical_id: str) -> str:
    return logical_id.removesuffix("Collector").lower()


def prefix_of(logical_id: str) -> str:
    return logical_id.removesuffix("Collector")


def schedule_rates() -> list[int]:
    return [int(rate) for rate in PARAMETERS["ScheduleRateMinutes"]["AllowedValues"]]


def merged(globals_value: Any, value: Any) -> Any:
    """SAM's Globals semantics: maps merge, lists concatenate, the resource's scalars win."""
    if isinstance(globals_value, dict) and isinstance(value, dict):
        return {k: merged(globals_value[k], value[k]) if k in globals_value and k in value
                else value.get(k, globals_value.get(k)) for k in {*globals_value, *value}}
    if isinstance(globals_value, list) and isinstance(value, list):
        return globals_value + value
    return value


def function_properties(logical_id: str) -> dict[str, Any]:
    return merged(TEMPLATE.get("Globals", {}).get("Function", {}), RESOURCES[logical_id]["Properties"])


def resources_of_type(resource_type: str) -> dict[str, dict[str, Any]]:
    return {logical_id: spec for logical_id, spec in RESOURCES.items() if spec["Type"] == resource_type}


# ---------------------------------------------------------------------------------------------- collector policy


def secret_arn_for(logical_id: str, create_secret: bool) -> str:
    return REFS[f"{prefix_of(logical_id)}Secret"] if create_secret else EXISTING_SECRET


def collector_statements(logical_id: str, create_secret: bool) -> list[dict[str, Any]]:
    """The collector role's policy statements, resolved for a stack that creates (or is given) the secret."""
    prefix = prefix_of(logical_id)
    properties = RESOURCES[logical_id]["Properties"]
    assert "Policies" not in properties, "a collector's permissions belong in its own role's policy"
    assert properties["Role"] == {"Fn::GetAtt": [f"{logical_id}Role", "Arn"]}
    role = RESOURCES[f"{logical_id}Role"]
    assert role["Type"] == "AWS::IAM::Role"
    assert set(role["Properties"]) <= {"Description", "AssumeRolePolicyDocument"}, \
        "no managed or inline policies on the role itself: its permissions are exactly the RolePolicy below"
    policies = [spec["Properties"] for spec in resources_of_type("AWS::IAM::RolePolicy").values()
                if spec["Properties"]["RoleName"] == {"Ref": f"{logical_id}Role"}]
    assert len(policies) == 1 and RESOURCES[logical_id].get("DependsOn") == f"{logical_id}Policy"
    return evaluate(policies[0]["PolicyDocument"]["Statement"], refs={f"{prefix}SecretArn": EXISTING_SECRET},
                    conditions={f"Create{prefix}Secret": create_secret})


# KMS actions each service needs on the archive key, through that service, with the caller's permissions:
# S3 SSE-KMS uploads and reads (Amazon S3 User Guide, "Using server-side encryption with AWS KMS keys": PutObject
# needs kms:GenerateDataKey, GetObject kms:Decrypt); Secrets Manager's GetSecretValue (AWS KMS Developer Guide, "How
# AWS Secrets Manager uses AWS KMS": kms:Decrypt); a DynamoDB table encrypted with a customer managed key (AWS KMS
# Developer Guide, "How Amazon DynamoDB uses AWS KMS", https://docs.aws.amazon.com/kms/latest/developerguide/
# services-dynamodb.html: the principals that use the table need kms:Encrypt, kms:Decrypt, kms:GenerateDataKey* and
# kms:DescribeKey on the key through dynamodb.<region>.amazonaws.com; kms:CreateGrant only whoever creates the table).
KMS_VIA_SERVICE = {
    "s3": {"kms:generatedatakey", "kms:decrypt"},
    "secretsmanager": {"kms:decrypt"},
    "dynamodb": {"kms:decrypt", "kms:encrypt", "kms:generatedatakey*", "kms:describekey"},
}


def kms_actions_via(statements: list[dict[str, Any]], service: str, key_arn: str) -> set[str]:
    """The KMS actions the statements allow on `key_arn` when `service` calls KMS for the caller."""
    via = f"{service}.{REGION}.amazonaws.com"
    allowed: set[str] = set()
    for statement in statements:
        if statement.get("Effect") != "Allow" or key_arn not in as_list(statement.get("Resource", [])):
            continue
        condition = statement.get("Condition", {})
        if condition and via not in as_list(condition.get("StringEquals", {}).get("kms:ViaService", [])):
            continue
        allowed |= {a.lower() for a in as_list(statement.get("Action", [])) if a.lower().startswith("kms:")}
    return allowed


def policy_problems(statements: list[dict[str, Any]], vendor: str, *, secret_arn: str, table_arn: str,
                    bucket_arn: str, key_arn: str, signing_key_arn: str = "getatt:DigestSigningKey.Arn",
                    log_group_arn: str | None = None) -> list[str]:
    """Everything in a collector's statements that grants more than its own secret, cursor items, prefixes (events
    and digests), log group, traces and signing digests."""
    problems = []
    object_prefixes = (f"{bucket_arn}/events/vendor={vendor}/", f"{bucket_arn}/digests/vendor={vendor}/")
    list_prefixes = (f"events/vendor={vendor}/", f"digests/vendor={vendor}/")
    seen_actions: set[str] = set()
    for statement in statements:
        sid = statement.get("Sid", "?")
        if statement.get("Effect") != "Allow":
            continue
        actions = [a.lower() for a in as_list(statement.get("Action", []))]
        resources = as_list(statement.get("Resource", []))
        condition = statement.get("Condition", {})
        seen_actions.update(actions)
        if "NotAction" in statement or "NotResource" in statement:
            problems.append(f"{sid}: NotAction/NotResource")
        services = {a.split(":")[0] for a in actions}
        for action in actions:
            # kms:GenerateDataKey* is what DynamoDB's documentation names; it matches data key generation only.
            if "*" in action and action != "kms:generatedatakey*":
                problems.append(f"{sid}: wildcard action {action}")
            if action.split(":")[0] not in ALLOWED_COLLECTOR_SERVICES:
                problems.append(f"{sid}: action of another service {action}")
            if any(fnmatch.fnmatchcase(action, pattern) for pattern in FORBIDDEN_S3_ACTION_PATTERNS):
                problems.append(f"{sid}: forbidden action {action}")
        if any(not isinstance(r, str) for r in resources) or ("*" in resources and services != {"xray"}):
            problems.append(f"{sid}: wildcard or unresolved resource {resources}")
        if "xray" in services and (len(services) > 1 or not set(actions) <= {"xray:puttracesegments",
                                                                              "xray:puttelemetryrecords"}):
            problems.append(f"{sid}: X-Ray actions beyond writing traces: {actions}")
        if "logs" in services:
            if not set(actions) <= {"logs:createlogstream", "logs:putlogevents"}:
                problems.append(f"{sid}: logs actions beyond writing its own streams: {actions}")
            if log_group_arn is None or resources != [log_group_arn]:
                problems.append(f"{sid}: logs resource {resources} is not its own log group {log_group_arn}")
        if "secretsmanager" in services:
            if set(actions) != {"secretsmanager:getsecretvalue"}:
                problems.append(f"{sid}: secret actions beyond GetSecretValue: {actions}")
            # Its default account's secret, and its further accounts' under its own prefix (account_secrets_arn).
            if resources != [secret_arn, account_secrets_arn(vendor)]:
                problems.append(f"{sid}: secret resource {resources} is not exactly {secret_arn} and "
                                f"{account_secrets_arn(vendor)}")
        if "dynamodb" in services:
            if not set(actions) <= {"dynamodb:getitem", "dynamodb:putitem", "dynamodb:updateitem"}:
                problems.append(f"{sid}: DynamoDB actions beyond Get/Put/UpdateItem: {actions}")
            if resources != [table_arn]:
                problems.append(f"{sid}: DynamoDB resource {resources} is not the state table")
            leading = condition.get("ForAllValues:StringLike", {}).get("dynamodb:LeadingKeys")
            if as_list(leading) != [f"{vendor}#*", f"{vendor}@*"] or set(condition) != {"ForAllValues:StringLike"}:
                problems.append(f"{sid}: LeadingKeys condition is {condition}, not [{vendor}#*, {vendor}@*]")
        if "s3" in services:
            object_actions = [a for a in actions if a != "s3:listbucket"]
            if object_actions and (set(object_actions) - {"s3:putobject", "s3:getobject"}
                                   or any(not str(r).startswith(object_prefixes) for r in resources)):
                problems.append(f"{sid}: object access {object_actions} on {resources} beyond {object_prefixes}")
            if "s3:listbucket" in actions:
                prefixes = as_list(condition.get("StringLike", {}).get("s3:prefix", []))
                if object_actions or resources != [bucket_arn] or not prefixes or set(condition) != {"StringLike"} \
                        or any(not p.startswith(list_prefixes) for p in prefixes):
                    problems.append(f"{sid}: ListBucket not limited to {list_prefixes}: {statement}")
        if actions == ["kms:sign"]:
            if resources != [signing_key_arn]:
                problems.append(f"{sid}: kms:Sign on {resources}, not the digests' signing key")
            if condition != {"StringEquals": {"kms:MessageType": "RAW", "kms:SigningAlgorithm": "ECDSA_SHA_256"}}:
                problems.append(f"{sid}: kms:Sign not limited to RAW ECDSA_SHA_256 messages: {condition}")
        elif "kms" in services:
            via = condition.get("StringEquals", {}).get("kms:ViaService")
            service = str(via).split(".")[0]
            if resources != [key_arn]:
                problems.append(f"{sid}: KMS resource {resources} is not the archive key")
            if set(condition) != {"StringEquals"} or via != f"{service}.{REGION}.amazonaws.com" \
                    or service not in KMS_VIA_SERVICE:
                problems.append(f"{sid}: KMS use not limited to S3/Secrets Manager/DynamoDB (kms:ViaService={via})")
            elif not set(actions) <= KMS_VIA_SERVICE[service]:
                problems.append(f"{sid}: KMS actions through {service} beyond {KMS_VIA_SERVICE[service]}: {actions}")
    for required in ("secretsmanager:getsecretvalue", "dynamodb:getitem", "dynamodb:putitem", "dynamodb:updateitem",
                     "s3:putobject", "s3:getobject", "s3:listbucket", "kms:generatedatakey", "kms:decrypt",
                     "kms:sign", "logs:createlogstream", "logs:putlogevents"):
        if required not in seen_actions:
            problems.append(f"missing {required}")
    for service, needed in KMS_VIA_SERVICE.items():
        missing = needed - kms_actions_via(statements, service, key_arn)
        if missing:
            problems.append(f"missing {sorted(missing)} on the archive key through {service}")
    return problems


def account_secrets_arn(vendor: str) -> str:
    """Where a vendor's further accounts' secrets are: `auditlake/<stack>/<vendor>/<account>`, then the six random
    characters Secrets Manager adds to every secret's ARN (Secrets Manager User Guide, "What's in a Secrets Manager
    secret?")."""
    return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:auditlake/{STACK}/{vendor}/*"


def problems_for(logical_id: str, create_secret: bool, extra: list[dict[str, Any]] | None = None) -> list[str]:
    return policy_problems(
        collector_statements(logical_id, create_secret) + (extra or []), vendor_of(logical_id),
        secret_arn=secret_arn_for(logical_id, create_secret), table_arn="getatt:StateTable.Arn",
        bucket_arn=ATTRS["ArchiveBucket", "Arn"], key_arn="getatt:ArchiveKey.Arn",
        log_group_arn=f"getatt:{logical_id}LogGroup.Arn")


def test_collectors_exist() -> None:
    assert "AsanaCollector" in COLLECTORS
    assert vendor_of("AsanaCollector") == "asana"
    assert vendor_of("ClickUpCollector") == "clickup"


def test_the_collectors_are_the_registrys() -> None:
    """One collector per registered vendor, named by its adapter (template.yaml is rendered from the registry)."""
    assert sorted(adapter.function_id() for adapter in adapters().values()) == COLLECTORS
    assert {vendor_of(logical_id) for logical_id in COLLECTORS} == ALL_VENDORS


@pytest.mark.parametrize("create_secret", [True, False], ids=["created-secret", "existing-secret"])
@pytest.mark.parametrize("logical_id", COLLECTORS)
def test_collector_policy_is_least_privilege(logical_id: str, create_secret: bool) -> None:
    assert problems_for(logical_id, create_secret) == []


@pytest.mark.parametrize("bad", [
    {"Effect": "Allow", "Action": "s3:DeleteObject", "Resource": "arn:aws:s3:::b/events/vendor=asana/x"},
    {"Effect": "Allow", "Action": "s3:PutBucketPolicy", "Resource": "arn:aws:s3:::b"},
    {"Effect": "Allow", "Action": "s3:PutObjectAcl", "Resource": "arn:aws:s3:::b/events/vendor=asana/x"},
    {"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::b"},
    {"Effect": "Allow", "Action": "dynamodb:Query", "Resource": "arn:aws:dynamodb:::table/t"},
    {"Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*"},
    {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "arn:aws:secretsmanager:::secret:x"},
    {"Effect": "Allow", "Action": "kms:Sign", "Resource": "getatt:ArchiveKey.Arn"},
    {"Effect": "Allow", "Action": "kms:Sign", "Resource": "getatt:DigestSigningKey.Arn"},
    {"Effect": "Allow", "Action": "s3:PutObject",
     "Resource": "arn:aws:s3:::auditlake-test-archivebucket-0a1b2c/digests/vendor=ashby/*"},
    # AWSLambdaBasicExecutionRole's statement (AWS Managed Policy Reference): every log group in the account.
    {"Effect": "Allow", "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
     "Resource": "*"},
    {"Effect": "Allow", "Action": "logs:PutLogEvents",
     "Resource": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/auditlake/{STACK}/ashby-collector:*"},
    {"Effect": "Allow", "Action": "xray:*", "Resource": "*"},
    {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "getatt:ArchiveKey.Arn",
     "Condition": {"StringEquals": {"kms:ViaService": f"sqs.{REGION}.amazonaws.com"}}},
], ids=["delete", "put-bucket", "acl", "s3-star", "dynamodb-query", "other-service", "other-secret",
        "sign-with-another-key", "sign-anything", "others-digests", "basic-execution-role", "others-log-group",
        "xray-star", "kms-via-another-service"])
def test_policy_check_rejects_excess(bad: dict[str, Any]) -> None:
    assert problems_for("AsanaCollector", True, extra=[bad])


@pytest.mark.parametrize("sid", ["ArchiveKeyForDynamoDB", "ArchiveKeyForS3", "DecryptSecretWithArchiveKey",
                                 "OwnLogGroup"])
def test_policy_check_rejects_a_missing_documented_permission(sid: str) -> None:
    """Without KMS through DynamoDB every GetItem on the CMK-encrypted state table fails (the defect this check
    once asserted as correct); the others are each needed likewise."""
    statements = [s for s in collector_statements("AsanaCollector", True) if s["Sid"] != sid]
    assert len(statements) == len(collector_statements("AsanaCollector", True)) - 1
    problems = policy_problems(statements, "asana", secret_arn=secret_arn_for("AsanaCollector", True),
                               table_arn="getatt:StateTable.Arn", bucket_arn=ATTRS["ArchiveBucket", "Arn"],
                               key_arn="getatt:ArchiveKey.Arn", log_group_arn="getatt:AsanaCollectorLogGroup.Arn")
    assert any(p.startswith("missing") for p in problems), problems


@pytest.mark.parametrize("logical_id", COLLECTORS)
def test_collector_may_use_the_state_tables_key_through_dynamodb(logical_id: str) -> None:
    """AWS KMS Developer Guide, "How Amazon DynamoDB uses AWS KMS" (https://docs.aws.amazon.com/kms/latest/
    developerguide/services-dynamodb.html): for a table encrypted with a customer managed key, the principals that
    read and write it need kms:Encrypt, kms:Decrypt, kms:GenerateDataKey* and kms:DescribeKey on that key, which
    DynamoDB calls on their behalf (kms:ViaService dynamodb.<region>.amazonaws.com)."""
    table_key = RESOURCES["StateTable"]["Properties"]["SSESpecification"]["KMSMasterKeyId"]
    assert table_key == {"Fn::GetAtt": ["ArchiveKey", "Arn"]}
    allowed = kms_actions_via(collector_statements(logical_id, True), "dynamodb", "getatt:ArchiveKey.Arn")
    for action in ("kms:encrypt", "kms:decrypt", "kms:generatedatakey", "kms:describekey"):
        assert any(fnmatch.fnmatchcase(action, granted) for granted in allowed), action
    # Only through DynamoDB: the same key is not usable directly.
    assert not kms_actions_via(collector_statements(logical_id, True), "sqs", "getatt:ArchiveKey.Arn")


def test_policy_check_rejects_other_vendor_scope() -> None:
    statements = collector_statements("AsanaCollector", True)
    as_clickup = policy_problems(statements, "clickup", secret_arn=secret_arn_for("AsanaCollector", True),
                                 table_arn="getatt:StateTable.Arn", bucket_arn=ATTRS["ArchiveBucket", "Arn"],
                                 key_arn="getatt:ArchiveKey.Arn")
    assert any("LeadingKeys" in p for p in as_clickup)
    assert any("object access" in p for p in as_clickup)
    assert any("ListBucket" in p for p in as_clickup)


@pytest.mark.parametrize("logical_id", COLLECTORS)
def test_collector_can_write_and_read_its_own_keys_only(logical_id: str) -> None:
    vendor = vendor_of(logical_id)
    object_resources = [r for s in collector_statements(logical_id, True) if "s3:PutObject" in as_list(s["Action"])
                        for r in as_list(s["Resource"])]
    bucket_arn = ATTRS["ArchiveBucket", "Arn"]
    own = f"{bucket_arn}/events/vendor={vendor}/dt=2026-11-22/{vendor}#1_w_p0.json.gz"
    other = f"{bucket_arn}/events/vendor=zz{vendor}/dt=2026-11-22/x.json.gz"
    own_digest = f"{bucket_arn}/digests/vendor={vendor}/stream={vendor}-1/0000000001.json"
    assert any(fnmatch.fnmatchcase(own, pattern) for pattern in object_resources)
    assert any(fnmatch.fnmatchcase(own_digest, pattern) for pattern in object_resources)
    assert not any(fnmatch.fnmatchcase(other, pattern) for pattern in object_resources)
    for elsewhere in (f"{bucket_arn}/digests/x", f"{bucket_arn}/digests/vendor=zz{vendor}/stream=s/0000000001.json"):
        assert not any(fnmatch.fnmatchcase(elsewhere, pattern) for pattern in object_resources)


# ---------------------------------------------------------------------------------------------- collector function


@pytest.mark.parametrize("logical_id", COLLECTORS)
def test_collector_function_settings(logical_id: str) -> None:
    props = function_properties(logical_id)
    vendor = vendor_of(logical_id)
    assert props["Runtime"] == "python3.13"
    assert props["Architectures"] == ["arm64"]
    assert props["Tracing"] == "Active"
    assert props["MemorySize"] == 512
    assert props["CodeUri"].rstrip("/") == f"functions/{vendor}"
    assert props["Handler"] == f"{vendor}_lambda.handler"
    assert (PROJECT_ROOT / props["CodeUri"] / f"{vendor}_collector.py").is_file()
    assert {"Ref": "EngineLayer"} in props["Layers"]
    assert props["Timeout"] < min(schedule_rates()) * 60, "a run must end before the next tick"


def test_no_function_reserves_concurrency() -> None:
    """AWS Lambda Developer Guide, "Configuring reserved concurrency" (https://docs.aws.amazon.com/lambda/latest/dg/
    configuration-concurrency.html): a function can reserve up to the account's unreserved concurrency minus 100, so
    any reservation fails the deploy in an account whose concurrency quota is 100 or less (new accounts' often is:
    "decreases account's UnreservedConcurrentExecution below its minimum value"). The state table's lease serialises
    the runs of each stream without it."""
    functions = resources_of_type("AWS::Serverless::Function") | resources_of_type("AWS::Lambda::Function")
    assert functions
    for logical_id in functions:
        properties = merged(TEMPLATE.get("Globals", {}).get("Function", {}), RESOURCES[logical_id]["Properties"])
        assert "ReservedConcurrentExecutions" not in properties, logical_id


@pytest.mark.parametrize("logical_id", COLLECTORS)
def test_collector_writes_logs_to_its_own_log_group_only(logical_id: str) -> None:
    """AWS Lambda Developer Guide, "Sending Lambda function logs to CloudWatch Logs": the execution role needs
    logs:CreateLogStream and logs:PutLogEvents (and logs:CreateLogGroup, only for a group Lambda creates itself; the
    stack creates this one). AWSLambdaBasicExecutionRole grants them on "*" (AWS Managed Policy Reference), which SAM
    attaches to every role it generates, so the collectors have their own roles. The log group's GetAtt Arn is
    `arn:...:log-group:<name>:*` (CloudFormation, AWS::Logs::LogGroup return values), which covers its streams."""
    group = function_properties(logical_id)["LoggingConfig"]["LogGroup"]
    assert group == {"Ref": f"{logical_id}LogGroup"}
    logs = [s for s in collector_statements(logical_id, True)
            if any(a.lower().startswith("logs:") for a in as_list(s["Action"]))]
    assert {a.lower() for s in logs for a in as_list(s["Action"])} == {"logs:createlogstream", "logs:putlogevents"}
    assert all(as_list(s["Resource"]) == [f"getatt:{logical_id}LogGroup.Arn"] for s in logs)


@pytest.mark.parametrize("logical_id", COLLECTORS)
def test_collector_log_group_is_explicit_encrypted_and_retained(logical_id: str) -> None:
    group_ref = function_properties(logical_id)["LoggingConfig"]["LogGroup"]
    group = RESOURCES[group_ref["Ref"]]
    assert group["Type"] == "AWS::Logs::LogGroup"
    assert group["Properties"]["RetentionInDays"]
    assert group["Properties"]["KmsKeyId"] == {"Fn::GetAtt": ["ArchiveKey", "Arn"]}


@pytest.mark.parametrize("rate", schedule_rates())
@pytest.mark.parametrize("logical_id", COLLECTORS)
def test_async_invocation_is_not_retried_and_expires_within_the_period(logical_id: str, rate: int) -> None:
    config = function_properties(logical_id)["EventInvokeConfig"]
    refs = {"ScheduleRateMinutes": str(rate)}
    assert config["MaximumRetryAttempts"] == 0
    assert 60 <= evaluate(config["MaximumEventAgeInSeconds"], refs=refs) < rate * 60
    on_failure = config["DestinationConfig"]["OnFailure"]
    assert on_failure["Type"] == "SQS"
    assert on_failure["Destination"] == {"Fn::GetAtt": ["CollectorDeadLetterQueue", "Arn"]}


@pytest.mark.parametrize("rate", schedule_rates())
@pytest.mark.parametrize("logical_id", COLLECTORS)
def test_schedule_is_v2_from_the_rate_parameter(logical_id: str, rate: int) -> None:
    events = function_properties(logical_id)["Events"]
    assert set(events) == {"Schedule", "Reconcile"} and all(e["Type"] == "ScheduleV2" for e in events.values())
    schedule, refs = events["Schedule"]["Properties"], {"ScheduleRateMinutes": str(rate)}
    assert schedule["OmitName"] is True
    assert evaluate(schedule["ScheduleExpression"], refs=refs) == f"rate({rate} minutes)"
    assert schedule["RetryPolicy"]["MaximumRetryAttempts"] == 0
    assert 60 <= evaluate(schedule["RetryPolicy"]["MaximumEventAgeInSeconds"], refs=refs) < rate * 60
    assert schedule["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["CollectorDeadLetterQueue", "Arn"]}}
    assert json.loads(schedule["Input"]) == {}


@pytest.mark.parametrize("interval", [0, 1, 24])
@pytest.mark.parametrize("logical_id", COLLECTORS)
def test_reconciliation_schedule(logical_id: str, interval: int) -> None:
    """Hourly, so a due reconciliation begins within the hour and an unfinished one goes on; off (DISABLED, its
    alarm absent) when ReconcileIntervalHours is 0. EventBridge Scheduler accepts a retry policy's
    MaximumEventAgeInSeconds of 60 to 86,400 (Scheduler API reference, RetryPolicy)."""
    schedule = function_properties(logical_id)["Events"]["Reconcile"]["Properties"]
    refs = {"ReconcileIntervalHours": str(interval)}
    conditions = {"ReconcileOn": interval != 0}
    assert evaluate(schedule["ScheduleExpression"], refs=refs) == "rate(1 hour)"
    assert evaluate(schedule["State"], refs=refs, conditions=conditions) == ("ENABLED" if interval else "DISABLED")
    assert json.loads(schedule["Input"]) == {"reconcile": {}}
    assert 60 <= schedule["RetryPolicy"]["MaximumEventAgeInSeconds"] <= 86_400
    assert schedule["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["CollectorDeadLetterQueue", "Arn"]}}
    vendor = vendor_of(logical_id)
    alarm = RESOURCES[f"{logical_id.removesuffix('Collector')}ReconciledAlarm"]
    assert alarm["Condition"] == "ReconcileOn"
    properties = alarm["Properties"]
    assert (properties["Namespace"], properties["MetricName"]) == ("auditlake", "ReconciledEvents")
    assert {d["Name"]: d["Value"] for d in properties["Dimensions"]} == {"service": "auditlake", "vendor": vendor}
    assert (properties["Threshold"], properties["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    assert properties["TreatMissingData"] == "notBreaching"


def test_schedule_rate_parameter() -> None:
    rate = PARAMETERS["ScheduleRateMinutes"]
    assert rate["AllowedValues"] == ["5", "10", "15", "30", "60"]
    assert rate["Default"] == "5"


@pytest.mark.parametrize("logical_id", COLLECTORS)
def test_environment_contract(logical_id: str) -> None:
    environment = function_properties(logical_id)["Environment"]["Variables"]
    assert set(environment) >= ENV_CONTRACT
    assert set(RESOURCES[logical_id]["Properties"]["Environment"]["Variables"]) == {
        "SECRET_ID", "ACCOUNTS", "ACCOUNT_SECRET_PREFIX"}, \
        "shared variables belong in Globals; a collector sets only its secrets' (SECRET_ID, ACCOUNTS and their prefix)"
    assert environment["ACCOUNTS"] == {"Ref": f"{prefix_of(logical_id)}Accounts"}
    assert evaluate(environment["ACCOUNT_SECRET_PREFIX"]) == f"auditlake/{STACK}/{vendor_of(logical_id)}/"
    for name in ("STATE_TABLE", "ARCHIVE_BUCKET", "ARCHIVE_KMS_KEY_ARN", "DIGEST_SIGNING_KEY_ARN", "SECRET_ID"):
        assert isinstance(environment[name], dict), f"{name} must be an intrinsic, not a hard-coded name"
    assert environment["STATE_TABLE"] == {"Ref": "StateTable"}
    assert environment["ARCHIVE_BUCKET"] == {"Ref": "ArchiveBucket"}
    assert environment["ARCHIVE_KMS_KEY_ARN"] == {"Fn::GetAtt": ["ArchiveKey", "Arn"]}
    assert environment["DIGEST_SIGNING_KEY_ARN"] == {"Fn::GetAtt": ["DigestSigningKey", "Arn"]}
    for create in (True, False):
        secret_id = evaluate(environment["SECRET_ID"], refs={f"{prefix_of(logical_id)}SecretArn": EXISTING_SECRET},
                             conditions={f"Create{prefix_of(logical_id)}Secret": create})
        assert secret_id == secret_arn_for(logical_id, create)
    for name, (parameter, default) in PARAMETER_ENV.items():
        assert environment[name] == {"Ref": parameter}
        assert PARAMETERS[parameter]["Default"] == default
    for name, value in FIXED_ENV.items():
        assert environment[name] == value, name
    for name, value in environment.items():
        assert not (isinstance(value, str) and ("arn:" in value or "s3://" in value)), f"{name} is hard-coded"


@pytest.mark.parametrize("logical_id", COLLECTORS)
def test_vendor_secret(logical_id: str) -> None:
    prefix = prefix_of(logical_id)
    secret = RESOURCES[f"{prefix}Secret"]
    assert secret["Type"] == "AWS::SecretsManager::Secret"
    assert secret["Condition"] == f"Create{prefix}Secret"
    assert TEMPLATE["Conditions"][f"Create{prefix}Secret"] == {"Fn::Equals": [{"Ref": f"{prefix}SecretArn"}, ""]}
    assert PARAMETERS[f"{prefix}SecretArn"]["Default"] == ""
    assert secret["Properties"]["KmsKeyId"] in ({"Ref": "ArchiveKey"}, {"Fn::GetAtt": ["ArchiveKey", "Arn"]})
    placeholder = json.loads(secret["Properties"]["SecretString"])
    assert "token" in placeholder
    assert set(placeholder.values()) == {"REPLACE_ME"}
    assert "REPLACE_ME" in secret["Properties"]["Description"]


@pytest.mark.parametrize("logical_id", COLLECTORS)
def test_vendor_accounts(logical_id: str) -> None:
    """Further accounts: a list of names, each account's secret under the vendor's own prefix, which the function's
    environment and an output name, the parameter shown with the vendor secrets."""
    prefix, vendor = prefix_of(logical_id), vendor_of(logical_id)
    parameter = PARAMETERS[f"{prefix}Accounts"]
    assert (parameter["Type"], parameter["Default"]) == ("String", "")
    pattern = re.compile(parameter["AllowedPattern"])
    for good in ("", "us-sub", "us-sub,eu2,acq-2024", "a", "a" * 31, "0-org"):
        assert pattern.fullmatch(good), good
    for bad in ("us_sub", "US", "-us", "us sub", "us-sub,", ",us", "a" * 32, "us/sub", "us,,eu", "us@sub", "us#1"):
        assert not pattern.fullmatch(bad), bad
    groups = TEMPLATE["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    assert sum(f"{prefix}Accounts" in group["Parameters"] for group in groups) == 1
    assert evaluate(TEMPLATE["Outputs"][f"{prefix}AccountSecretPrefix"]["Value"]) == f"auditlake/{STACK}/{vendor}/"
    read = next(s for s in collector_statements(logical_id, True) if s["Sid"] == "ReadOwnSecret")
    assert read["Resource"][1] == account_secrets_arn(vendor)


def test_account_names_are_the_engines() -> None:
    """The parameter's pattern and the engine's check (state.check_account) accept the same names, "default" aside
    (the default account is the vendor's secret, never named in the list)."""
    pattern = re.compile(PARAMETERS["MakeAccounts"]["AllowedPattern"])
    for name in ("us-sub", "a", "a" * 31, "0-org", "a" * 32, "US", "-x", "x_y", "x.y", ""):
        try:
            check_account(name)
            engine_accepts = True
        except ValueError:
            engine_accepts = False
        assert engine_accepts == bool(name and pattern.fullmatch(name)), name
    assert pattern.fullmatch("default")  # CloudFormation lets it through; the engine's ConfigError names it
    with pytest.raises(ValueError, match="not 'default'"):
        check_account("default")


@pytest.mark.parametrize("resource", [
    f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:auditlake/{STACK}/*",
    f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:auditlake/{STACK}/clickup/*",
    f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:auditlake/*",
    "*",
], ids=["every-vendor", "another-vendor", "every-stack", "any"])
def test_policy_check_rejects_reading_other_secrets(resource: str) -> None:
    statements = collector_statements("AsanaCollector", True)
    for statement in statements:
        if statement["Sid"] == "ReadOwnSecret":
            statement["Resource"] = [statement["Resource"][0], resource]
    problems = policy_problems(statements, "asana", secret_arn=secret_arn_for("AsanaCollector", True),
                               table_arn="getatt:StateTable.Arn", bucket_arn=ATTRS["ArchiveBucket", "Arn"],
                               key_arn="getatt:ArchiveKey.Arn", log_group_arn="getatt:AsanaCollectorLogGroup.Arn")
    assert any("secret resource" in p for p in problems), problems


def test_asana_secret_placeholder_is_exact() -> None:
    expected = '{"token": "REPLACE_ME", "workspace_gid": "REPLACE_ME"}'
    assert RESOURCES["AsanaSecret"]["Properties"]["SecretString"] == expected


@pytest.mark.parametrize("logical_id", COLLECTORS)
def test_secret_placeholder_holds_exactly_the_fields_the_collector_reads(logical_id: str,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    vendor = vendor_of(logical_id)
    path = PROJECT_ROOT / "functions" / vendor / f"{vendor}_collector.py"
    spec = importlib.util.spec_from_file_location(f"{vendor}_collector", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the class body runs.
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    adapter = next(value for value in vars(module).values()
                   if isinstance(value, type) and issubclass(value, VendorAdapter) and value is not VendorAdapter)
    assert adapter.vendor == vendor
    placeholder = json.loads(RESOURCES[f"{prefix_of(logical_id)}Secret"]["Properties"]["SecretString"])
    assert tuple(placeholder) == adapter.secret_fields
    for field in adapter.secret_fields:
        assert field in RESOURCES[f"{prefix_of(logical_id)}Secret"]["Properties"]["Description"]


@pytest.mark.parametrize("logical_id", COLLECTORS)
def test_collector_alarms(logical_id: str) -> None:
    prefix, vendor = prefix_of(logical_id), vendor_of(logical_id)
    errors = RESOURCES[f"{prefix}ErrorsAlarm"]["Properties"]
    assert (errors["Namespace"], errors["MetricName"]) == ("AWS/Lambda", "Errors")
    assert errors["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": logical_id}}]
    assert (errors["Threshold"], errors["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
    assert errors["EvaluationPeriods"] == 1
    stale = RESOURCES[f"{prefix}StalenessAlarm"]["Properties"]
    assert (stale["Namespace"], stale["MetricName"], stale["Statistic"]) == \
        ("auditlake", "WatermarkLagSeconds", "Maximum")
    assert {d["Name"]: d["Value"] for d in stale["Dimensions"]} == {"service": "auditlake", "vendor": vendor}
    assert stale["Threshold"] == {"Ref": "StalenessThresholdSeconds"}
    assert PARAMETERS["StalenessThresholdSeconds"]["Default"] == 3600
    assert stale["ComparisonOperator"] == "GreaterThanThreshold"
    assert stale["TreatMissingData"] == "breaching"
    for alarm in (errors, stale):
        assert {"Ref": "AlarmTopic"} in alarm["AlarmActions"]


def test_dead_letter_queue_is_encrypted_and_alarmed() -> None:
    assert RESOURCES["CollectorDeadLetterQueue"]["Properties"].get("KmsMasterKeyId")
    depth = [spec["Properties"] for spec in resources_of_type("AWS::CloudWatch::Alarm").values()
             if spec["Properties"]["Namespace"] == "AWS/SQS"]
    assert any(d["Dimensions"] == [{"Name": "QueueName",
                                    "Value": {"Fn::GetAtt": ["CollectorDeadLetterQueue", "QueueName"]}}]
               and {"Ref": "AlarmTopic"} in d["AlarmActions"] for d in depth)


def test_alarm_topic_is_encrypted_and_cloudwatch_may_use_the_key() -> None:
    topic = RESOURCES["AlarmTopic"]["Properties"]
    assert topic["KmsMasterKeyId"] in ({"Ref": "ArchiveKey"}, {"Fn::GetAtt": ["ArchiveKey", "Arn"]})
    statements = RESOURCES["ArchiveKey"]["Properties"]["KeyPolicy"]["Statement"]
    assert any(s["Principal"].get("Service") == "cloudwatch.amazonaws.com"
               and "kms:Decrypt" in as_list(s["Action"]) for s in statements)
    subscription = RESOURCES["AlarmEmailSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail"
    assert PARAMETERS["AlarmEmail"]["Default"] == ""


# ---------------------------------------------------------------------------------------------- storage


def test_key_rotates_is_retained_and_its_policy_is_tight() -> None:
    key = RESOURCES["ArchiveKey"]
    assert key["Properties"]["EnableKeyRotation"] is True
    assert key["DeletionPolicy"] == key["UpdateReplacePolicy"] == "Retain"
    root = f"arn:aws:iam::{ACCOUNT}:root"
    for statement in evaluate(key["Properties"]["KeyPolicy"]["Statement"]):
        assert statement["Effect"] == "Allow"
        principal = statement["Principal"]
        assert principal != "*" and set(principal) <= {"AWS", "Service"}
        if "AWS" in principal:
            assert as_list(principal["AWS"]) == [root], "only the account itself administers the key"
        else:
            assert set(as_list(principal["Service"])) <= {f"logs.{REGION}.amazonaws.com", "cloudwatch.amazonaws.com"}
            assert "kms:*" not in as_list(statement["Action"])
            assert statement.get("Condition"), "service principals are scoped to this stack's resources"
    assert RESOURCES["ArchiveKeyAlias"]["Properties"]["TargetKeyId"] == {"Ref": "ArchiveKey"}


@pytest.mark.parametrize("logical_id", sorted(resources_of_type("AWS::S3::Bucket")))
def test_every_bucket_is_private_owner_enforced_kms_encrypted_and_retained(logical_id: str) -> None:
    bucket = RESOURCES[logical_id]
    props = bucket["Properties"]
    assert props["PublicAccessBlockConfiguration"] == {"BlockPublicAcls": True, "BlockPublicPolicy": True,
                                                       "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
    assert props["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["BucketKeyEnabled"] is True
    assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms",
                                                     "KMSMasterKeyID": {"Fn::GetAtt": ["ArchiveKey", "Arn"]}}
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert bucket["DeletionPolicy"] == bucket["UpdateReplacePolicy"] == "Retain"
    assert tls_deny_statement(logical_id), f"{logical_id} has no TLS-only bucket policy"


def bucket_policy_statements(bucket_id: str) -> list[dict[str, Any]]:
    policies = [spec for spec in resources_of_type("AWS::S3::BucketPolicy").values()
                if spec["Properties"]["Bucket"] == {"Ref": bucket_id}]
    assert len(policies) == 1
    return evaluate(policies[0]["Properties"]["PolicyDocument"]["Statement"])


def tls_deny_statement(bucket_id: str) -> bool:
    bucket_arn = ATTRS[bucket_id, "Arn"]
    return any(s["Effect"] == "Deny" and s["Principal"] == "*" and as_list(s["Action"]) == ["s3:*"]
               and set(as_list(s["Resource"])) == {bucket_arn, f"{bucket_arn}/*"}
               and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
               for s in bucket_policy_statements(bucket_id))


def test_archive_bucket_policy_denies_uploads_without_the_archive_key() -> None:
    objects = f"{ATTRS['ArchiveBucket', 'Arn']}/*"
    denies = [(s["Condition"]["StringNotEquals"]) for s in bucket_policy_statements("ArchiveBucket")
              if s["Effect"] == "Deny" and s["Principal"] == "*" and as_list(s["Action"]) == ["s3:PutObject"]
              and as_list(s["Resource"]) == [objects] and set(s["Condition"]) == {"StringNotEquals"}]
    assert {"s3:x-amz-server-side-encryption": "aws:kms"} in denies
    assert {"s3:x-amz-server-side-encryption-aws-kms-key-id": "getatt:ArchiveKey.Arn"} in denies


def test_archive_bucket_policy_denies_overwrites() -> None:
    """Every upload must carry If-None-Match, so an archived object can never be replaced, whoever writes."""
    objects = f"{ATTRS['ArchiveBucket', 'Arn']}/*"
    assert any(s["Effect"] == "Deny" and s["Principal"] == "*" and as_list(s["Action"]) == ["s3:PutObject"]
               and as_list(s["Resource"]) == [objects] and s["Condition"] == {"Null": {"s3:if-none-match": "true"}}
               for s in bucket_policy_statements("ArchiveBucket"))


def test_archive_object_lock_is_optional() -> None:
    mode = PARAMETERS["ObjectLockMode"]
    assert mode["AllowedValues"] == ["NONE", "GOVERNANCE", "COMPLIANCE"] and mode["Default"] == "NONE"
    assert PARAMETERS["ObjectLockRetentionDays"]["Default"] == 365
    assert TEMPLATE["Conditions"]["UseObjectLock"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "ObjectLockMode"},
                                                                                   "NONE"]}]}
    props = RESOURCES["ArchiveBucket"]["Properties"]
    for enabled in (True, False):
        # The storage-ageing conditions off (the defaults); tests/test_storage_tiering.py renders them on.
        ageing = dict.fromkeys(("TierArchive", "ExpireArchive", "AgeArchive", "TierNoncurrentVersions"), False)
        resolved = evaluate(props, conditions={"UseObjectLock": enabled, **ageing},
                            refs={"ObjectLockMode": "COMPLIANCE"})
        if enabled:
            assert resolved["ObjectLockEnabled"] is True
            assert resolved["ObjectLockConfiguration"] == {
                "ObjectLockEnabled": "Enabled",
                "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": "365"}}}
        else:
            assert resolved["ObjectLockEnabled"] is None and resolved["ObjectLockConfiguration"] is None


# ---------------------------------------------------------------------------------------------- digests

# The collectors' roles, as aws:PrincipalArn holds them (IAM User Guide, "AWS global condition context keys",
# aws:PrincipalArn: for a role session, the ARN of the role, not of the session), so only they pass the denies below.
# A principal tag would not do: anyone who may tag a role, or pass session tags, could claim it.
COLLECTOR_ROLE_ARNS = [f"getatt:{logical_id}Role.Arn" for logical_id in COLLECTORS]
ONLY_THE_COLLECTORS = {"ArnNotEquals": {"aws:PrincipalArn": COLLECTOR_ROLE_ARNS}}


def test_digest_signing_key_is_asymmetric_retained_and_signs_for_the_collectors_only() -> None:
    key = RESOURCES["DigestSigningKey"]
    props = key["Properties"]
    assert (props["KeySpec"], props["KeyUsage"]) == ("ECC_NIST_P256", "SIGN_VERIFY")
    assert key["DeletionPolicy"] == key["UpdateReplacePolicy"] == "Retain"
    statements = evaluate(props["KeyPolicy"]["Statement"])
    allows = [s for s in statements if s["Effect"] == "Allow"]
    assert all(s["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"} for s in allows)
    (deny,) = [s for s in statements if s["Effect"] == "Deny"]
    assert deny["Principal"] == "*" and as_list(deny["Action"]) == ["kms:Sign"]
    assert {k: {n: sorted(v) for n, v in c.items()} for k, c in deny["Condition"].items()} == ONLY_THE_COLLECTORS


def test_no_principal_tag_decides_anything() -> None:
    """No policy in the template trusts a principal's tags, and no function carries the tag they once trusted."""
    text = (PROJECT_ROOT / "template.yaml").read_text()
    assert "aws:PrincipalTag" not in text and "digest-signer" not in text
    assert "Tags" not in TEMPLATE.get("Globals", {}).get("Function", {})


def test_collector_roles_are_their_own_and_have_no_managed_policy(tmp_path: Path) -> None:
    """In the translated template each collector runs as the role the key and bucket policies name, and no role has
    a managed policy (SAM attaches AWSLambdaBasicExecutionRole, logs:* writes on "*", to each role it generates)."""
    spec = importlib.util.spec_from_file_location("template_tools", PROJECT_ROOT / "scripts" / "template_tools.py")
    assert spec is not None and spec.loader is not None
    tools = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tools)
    assert tools.translate(PROJECT_ROOT / "template.yaml", tmp_path / "translated.json") == 0
    resources = json.loads((tmp_path / "translated.json").read_text())["Resources"]
    for logical_id in COLLECTORS:
        assert resources[logical_id]["Type"] == "AWS::Lambda::Function"
        assert resources[logical_id]["Properties"]["Role"] == {"Fn::GetAtt": [f"{logical_id}Role", "Arn"]}
        assert "ReservedConcurrentExecutions" not in resources[logical_id]["Properties"]
    roles = {logical_id: resource["Properties"] for logical_id, resource in resources.items()
             if resource["Type"] == "AWS::IAM::Role"}
    assert {f"{logical_id}Role" for logical_id in COLLECTORS} <= set(roles)
    assert all(not properties.get("ManagedPolicyArns") for properties in roles.values())


def test_only_the_collectors_write_digests() -> None:
    digests = f"{ATTRS['ArchiveBucket', 'Arn']}/digests/*"
    (deny,) = [s for s in bucket_policy_statements("ArchiveBucket")
               if s["Effect"] == "Deny" and as_list(s["Resource"]) == [digests]]
    assert deny["Principal"] == "*" and as_list(deny["Action"]) == ["s3:PutObject"]
    assert {k: {n: sorted(v) for n, v in c.items()} for k, c in deny["Condition"].items()} == ONLY_THE_COLLECTORS


@pytest.mark.parametrize("logical_id", COLLECTORS)
def test_collector_may_list_its_own_digests(logical_id: str) -> None:
    """Amazon S3 API Reference, GetObject (https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html):
    for a key that does not exist, S3 returns 404 (NoSuchKey) to a caller with s3:ListBucket and 403 (AccessDenied)
    to one without. Adopting a digest tells "not written yet" from "refused" by that, so the collector may list its
    own digests (and events) prefix: ListObjectsV2 with the key as Prefix is allowed by s3:prefix."""
    from auditlake.digest import digest_key  # noqa: PLC0415 - the engine names the keys
    from auditlake.state import StreamKey  # noqa: PLC0415

    vendor = vendor_of(logical_id)
    listing = [s for s in collector_statements(logical_id, True) if "s3:ListBucket" in as_list(s["Action"])]
    prefixes = [p for s in listing for p in as_list(s["Condition"]["StringLike"]["s3:prefix"])]
    assert all(as_list(s["Resource"]) == [ATTRS["ArchiveBucket", "Arn"]] for s in listing)
    own = digest_key(StreamKey(vendor, "workspace-1"), 7)
    assert own.startswith(f"digests/vendor={vendor}/")
    assert any(fnmatch.fnmatchcase(own, p) for p in prefixes)
    assert any(fnmatch.fnmatchcase(f"events/vendor={vendor}/dt=2026-11-22/x.json.gz", p) for p in prefixes)
    assert not any(fnmatch.fnmatchcase(f"digests/vendor=zz{vendor}/stream=s/0000000001.json", p) for p in prefixes)


def test_auditor_policy_reads_and_verifies_but_writes_nothing() -> None:
    policy = RESOURCES["AuditorPolicy"]
    assert policy["Type"] == "AWS::IAM::ManagedPolicy"
    statements = evaluate(policy["Properties"]["PolicyDocument"]["Statement"])
    bucket = ATTRS["ArchiveBucket", "Arn"]
    granted = set()
    for statement in statements:
        assert statement["Effect"] == "Allow" and "NotAction" not in statement and "NotResource" not in statement
        actions = {a.lower() for a in as_list(statement["Action"])}
        granted |= actions
        assert not any("*" in a for a in actions) and all(r != "*" for r in as_list(statement["Resource"]))
        assert all(a.split(":")[1].startswith(("get", "list", "describe", "scan", "decrypt")) for a in actions), \
            f"{statement['Sid']} grants more than reading: {actions}"
        for resource in as_list(statement["Resource"]):
            assert not resource.startswith(f"{bucket}/") or resource in (f"{bucket}/events/*", f"{bucket}/digests/*")
        if "kms:decrypt" in actions:
            assert as_list(statement["Resource"]) == ["getatt:ArchiveKey.Arn"]
            assert set(statement["Condition"]["StringEquals"]["kms:ViaService"]) == {
                f"s3.{REGION}.amazonaws.com", f"dynamodb.{REGION}.amazonaws.com"}
        if "kms:getpublickey" in actions:
            assert as_list(statement["Resource"]) == ["getatt:DigestSigningKey.Arn"]
    assert granted == {"cloudformation:describestacks", "s3:listbucket", "s3:listbucketversions", "s3:getobject",
                       "s3:getobjectversion", "kms:decrypt", "kms:describekey", "kms:getpublickey",
                       "dynamodb:scan"}
    outputs = {name: output["Value"] for name, output in TEMPLATE["Outputs"].items()}
    assert outputs["AuditorPolicyArn"] == {"Ref": "AuditorPolicy"}
    assert outputs["DigestSigningKeyArn"] == {"Fn::GetAtt": ["DigestSigningKey", "Arn"]}


def test_analyst_policy_queries_in_the_workgroup_and_writes_only_results() -> None:
    """What an Athena query needs, with the caller's own permissions (Athena User Guide, "Identity and access
    management in Athena" and "Fine-grained access to databases and tables in the AWS Glue Data Catalog"; AWS
    Knowledge Center, "athena-access-iam"): the athena: actions on the workgroup, glue:GetDatabase/GetTable(s)/
    GetPartition(s) on the catalog, the database and its tables, s3:GetBucketLocation/ListBucket/GetObject on the
    table's location, s3:GetBucketLocation/ListBucket/ListBucketMultipartUploads/GetObject/PutObject/
    AbortMultipartUpload/ListMultipartUploadParts on the results location, and, for SSE-KMS data and results,
    kms:Decrypt and kms:GenerateDataKey on the key (through S3, which calls KMS for the caller)."""
    policy = RESOURCES["AnalystPolicy"]
    assert policy["Type"] == "AWS::IAM::ManagedPolicy"
    statements = evaluate(policy["Properties"]["PolicyDocument"]["Statement"])
    archive, results = ATTRS["ArchiveBucket", "Arn"], ATTRS["AthenaResultsBucket", "Arn"]
    workgroup = f"arn:aws:athena:{REGION}:{ACCOUNT}:workgroup/ref:AnalystWorkGroup"
    glue = f"arn:aws:glue:{REGION}:{ACCOUNT}"
    granted: dict[str, set[str]] = {}
    for statement in statements:
        assert statement["Effect"] == "Allow" and "NotAction" not in statement and "NotResource" not in statement
        actions = {a.lower() for a in as_list(statement["Action"])}
        resources = as_list(statement["Resource"])
        assert not any("*" in a for a in actions) and "*" not in resources
        for action in actions:
            granted.setdefault(action, set()).update(resources)
        service = {a.split(":")[0] for a in actions}
        assert len(service) == 1
        if service == {"athena"}:
            assert resources == [workgroup]
        if service == {"glue"}:
            assert actions <= {"glue:getdatabase", "glue:gettable", "glue:gettables", "glue:getpartition",
                               "glue:getpartitions"}
            assert set(resources) == {f"{glue}:catalog", f"{glue}:database/ref:AuditDatabase",
                                      f"{glue}:table/ref:AuditDatabase/*"}
        if actions & {"s3:putobject", "s3:abortmultipartupload"}:
            assert resources == [f"{results}/results/*"], "analysts write query results only"
        if service == {"kms"}:
            assert resources == ["getatt:ArchiveKey.Arn"]
            assert statement["Condition"] == {"StringEquals": {"kms:ViaService": f"s3.{REGION}.amazonaws.com"}}
        if "s3:listbucket" in actions:
            prefixes = statement["Condition"]["StringLike"]["s3:prefix"]
            assert prefixes == (["events/*"] if resources == [archive] else ["results/*"])
    assert {"athena:startqueryexecution", "athena:getqueryexecution", "athena:getqueryresults",
            "athena:getnamedquery", "athena:listnamedqueries"} <= set(granted)
    assert {"glue:getdatabase", "glue:gettable", "glue:getpartitions"} <= set(granted)
    assert {archive, results} <= granted["s3:getbucketlocation"] and {archive, results} == granted["s3:listbucket"]
    assert granted["s3:getobject"] == {f"{archive}/events/*", f"{results}/results/*"}
    for action in ("s3:putobject", "s3:abortmultipartupload", "s3:listmultipartuploadparts"):
        assert granted[action] == {f"{results}/results/*"}
    assert {"kms:decrypt", "kms:generatedatakey"} <= set(granted)
    # The workgroup's results go where this policy lets analysts write, encrypted with the key it lets them use.
    configuration = RESOURCES["AnalystWorkGroup"]["Properties"]["WorkGroupConfiguration"]["ResultConfiguration"]
    assert evaluate(configuration["OutputLocation"]) == f"s3://{REFS['AthenaResultsBucket']}/results/"
    outputs = {name: output["Value"] for name, output in TEMPLATE["Outputs"].items()}
    assert outputs["AnalystPolicyArn"] == {"Ref": "AnalystPolicy"}


def test_state_table() -> None:
    table = RESOURCES["StateTable"]
    props = table["Properties"]
    assert props["KeySchema"] == [{"AttributeName": "stream", "KeyType": "HASH"}]
    assert props["AttributeDefinitions"] == [{"AttributeName": "stream", "AttributeType": "S"}]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["DeletionProtectionEnabled"] is True
    assert props["SSESpecification"]["SSEEnabled"] is True and props["SSESpecification"]["SSEType"] == "KMS"
    assert props["SSESpecification"]["KMSMasterKeyId"] in ({"Ref": "ArchiveKey"},
                                                           {"Fn::GetAtt": ["ArchiveKey", "Arn"]})
    assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain"


def test_engine_layer() -> None:
    layer = RESOURCES["EngineLayer"]
    props = layer["Properties"]
    # Built by layers/engine/Makefile, which leaves out what the runtime provides (tests/test_packages.py).
    assert layer["Metadata"] == {"BuildMethod": "makefile", "BuildArchitecture": "arm64"}
    assert props["CompatibleRuntimes"] == ["python3.13"] and props["CompatibleArchitectures"] == ["arm64"]
    assert props["RetentionPolicy"] in ("Retain", "Delete")
    # sam build runs `make build-EngineLayer` from ContentUri's Makefile; the engine package is python/auditlake
    # there, which the local stack puts on sys.path as Lambda does /opt/python.
    content = PROJECT_ROOT / props["ContentUri"]
    assert (content / "Makefile").is_file()
    assert "build-EngineLayer:" in (content / "Makefile").read_text()
    assert (content / "python" / "auditlake" / "__init__.py").is_file()


def test_engine_layer_requirements_are_where_the_layer_build_reads_them() -> None:
    content = PROJECT_ROOT / RESOURCES["EngineLayer"]["Properties"]["ContentUri"]
    requirements = content / "requirements.txt"
    assert requirements.is_file(), f"the layer build installs the layer's dependencies from {requirements} only"
    assert "--requirement requirements.txt" in (content / "Makefile").read_text()
    names = {line.split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower()
             for line in requirements.read_text().splitlines() if line.strip() and not line.startswith("#")}
    assert {"aws-lambda-powertools", "requests"} <= names
    assert not names & {"boto3", "botocore"}, "the runtime provides boto3"


# ---------------------------------------------------------------------------------------------- query


def test_events_table_storage_and_serde() -> None:
    table = RESOURCES["EventsTable"]["Properties"]
    assert table["DatabaseName"] == {"Ref": "AuditDatabase"}
    table_input = table["TableInput"]
    assert table_input["TableType"] == "EXTERNAL_TABLE"
    storage = table_input["StorageDescriptor"]
    assert storage["SerdeInfo"]["SerializationLibrary"] == "org.apache.hive.hcatalog.data.JsonSerDe"
    assert storage["InputFormat"] == "org.apache.hadoop.mapred.TextInputFormat"
    assert storage["OutputFormat"] == "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat"
    assert evaluate(storage["Location"]) == f"s3://{REFS['ArchiveBucket']}/events/"


def test_events_table_columns() -> None:
    table_input = RESOURCES["EventsTable"]["Properties"]["TableInput"]
    columns = table_input["StorageDescriptor"]["Columns"]
    assert [c["Name"] for c in columns] == EVENT_COLUMNS
    assert all(c["Type"] == "string" and c.get("Comment") for c in columns)
    assert [(k["Name"], k["Type"]) for k in table_input["PartitionKeys"]] == [("vendor", "string"), ("dt", "string")]


def test_events_table_partition_projection() -> None:
    parameters = RESOURCES["EventsTable"]["Properties"]["TableInput"]["Parameters"]
    expected = {"projection.enabled": "true", "projection.vendor.type": "enum", "projection.dt.type": "date",
                "projection.dt.format": "yyyy-MM-dd", "projection.dt.range": "2021-10-01,NOW",
                "projection.dt.interval": "1", "projection.dt.interval.unit": "DAYS"}
    assert {k: str(parameters[k]) for k in expected} == expected
    vendors = parameters["projection.vendor.values"].split(",")
    assert set(vendors) == ALL_VENDORS
    assert {vendor_of(c) for c in COLLECTORS} <= set(vendors)
    template = evaluate(parameters["storage.location.template"])
    location = template.replace("${vendor}", "asana").replace("${dt}", "2026-11-22")
    assert location == f"s3://{REFS['ArchiveBucket']}/events/vendor=asana/dt=2026-11-22/"


def test_athena_results_and_workgroup() -> None:
    results = RESOURCES["AthenaResultsBucket"]["Properties"]
    assert any(rule.get("ExpirationInDays") == 30 and rule["Status"] == "Enabled"
               for rule in results["LifecycleConfiguration"]["Rules"])
    workgroup = RESOURCES["AnalystWorkGroup"]["Properties"]["WorkGroupConfiguration"]
    assert workgroup["EnforceWorkGroupConfiguration"] is True
    assert workgroup["EngineVersion"]["SelectedEngineVersion"] == "AUTO"
    assert workgroup["ResultConfiguration"]["EncryptionConfiguration"] == {
        "EncryptionOption": "SSE_KMS", "KmsKey": {"Fn::GetAtt": ["ArchiveKey", "Arn"]}}
    assert evaluate(workgroup["ResultConfiguration"]["OutputLocation"]).startswith(
        f"s3://{REFS['AthenaResultsBucket']}/")


def test_outputs() -> None:
    values = [output["Value"] for output in TEMPLATE["Outputs"].values()]
    for expected in ({"Ref": "ArchiveBucket"}, {"Ref": "StateTable"}, {"Ref": "AuditDatabase"},
                     {"Ref": "EventsTable"}, {"Ref": "AnalystWorkGroup"}, {"Ref": "AlarmTopic"}):
        assert expected in values
    for logical_id in COLLECTORS:
        assert {"Ref": logical_id} in values
        assert RESOURCES[logical_id]["Properties"]["Environment"]["Variables"]["SECRET_ID"] in values


def test_template_is_sam() -> None:
    assert TEMPLATE["Transform"] == "AWS::Serverless-2016-10-31"
    assert Path(PROJECT_ROOT / "template.yaml").is_file()
