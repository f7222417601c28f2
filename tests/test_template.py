"""template.yaml's security and contract rules, asserted by parsing it (heavy tools: scripts/check_template.sh).

Collector rules are checked for every `AWS::Serverless::Function` whose logical id ends with `Collector`; the vendor
is the id's prefix lowercased (AsanaCollector -> asana), so a new vendor is covered the moment it is added.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from auditlake.vendor import VendorAdapter
from auditlake_local.template import PROJECT_ROOT, load_template, resolve

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
EVENT_COLUMNS = ["event_id", "event_time", "stream", "action", "category", "actor_id", "actor_email", "actor_name",
                 "actor_type", "target_id", "target_type", "target_name", "source_ip", "user_agent", "outcome",
                 "collected_at", "raw"]
ALL_VENDORS = {"asana", "ashby", "clickup", "make"}
ALLOWED_COLLECTOR_SERVICES = {"secretsmanager", "kms", "dynamodb", "s3"}
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
    """The collector's inline policy statements, resolved for a stack that creates (or is given) the secret."""
    properties = RESOURCES[logical_id]["Properties"]
    assert "Role" not in properties, "a collector's permissions belong in its own Policies"
    statements = []
    for policy in properties["Policies"]:
        assert isinstance(policy, dict) and "Statement" in policy, \
            f"{logical_id}: only inline policy documents, no managed policies or SAM policy templates: {policy!r}"
        statements.extend(policy["Statement"])
    return evaluate(statements, refs={f"{prefix_of(logical_id)}SecretArn": EXISTING_SECRET},
                    conditions={f"Create{prefix_of(logical_id)}Secret": create_secret})


def policy_problems(statements: list[dict[str, Any]], vendor: str, *, secret_arn: str, table_arn: str,
                    bucket_arn: str, key_arn: str, signing_key_arn: str = "getatt:DigestSigningKey.Arn") -> list[str]:
    """Everything in a collector's statements that grants more than its own secret, cursor items, prefixes (events
    and digests) and signing digests."""
    problems = []
    object_prefixes = (f"{bucket_arn}/events/vendor={vendor}/", f"{bucket_arn}/digests/vendor={vendor}/")
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
        for action in actions:
            if "*" in action:
                problems.append(f"{sid}: wildcard action {action}")
            if action.split(":")[0] not in ALLOWED_COLLECTOR_SERVICES:
                problems.append(f"{sid}: action of another service {action}")
            if any(fnmatch.fnmatchcase(action, pattern) for pattern in FORBIDDEN_S3_ACTION_PATTERNS):
                problems.append(f"{sid}: forbidden action {action}")
        if any(not isinstance(r, str) or r == "*" for r in resources):
            problems.append(f"{sid}: wildcard or unresolved resource {resources}")
        services = {a.split(":")[0] for a in actions}
        if "secretsmanager" in services:
            if set(actions) != {"secretsmanager:getsecretvalue"}:
                problems.append(f"{sid}: secret actions beyond GetSecretValue: {actions}")
            if resources != [secret_arn]:
                problems.append(f"{sid}: secret resource {resources} is not exactly {secret_arn}")
        if "dynamodb" in services:
            if not set(actions) <= {"dynamodb:getitem", "dynamodb:putitem", "dynamodb:updateitem"}:
                problems.append(f"{sid}: DynamoDB actions beyond Get/Put/UpdateItem: {actions}")
            if resources != [table_arn]:
                problems.append(f"{sid}: DynamoDB resource {resources} is not the state table")
            leading = condition.get("ForAllValues:StringLike", {}).get("dynamodb:LeadingKeys")
            if as_list(leading) != [f"{vendor}#*"] or set(condition) != {"ForAllValues:StringLike"}:
                problems.append(f"{sid}: LeadingKeys condition is {condition}, not [{vendor}#*]")
        if "s3" in services:
            object_actions = [a for a in actions if a != "s3:listbucket"]
            if object_actions and (set(object_actions) - {"s3:putobject", "s3:getobject"}
                                   or any(not str(r).startswith(object_prefixes) for r in resources)):
                problems.append(f"{sid}: object access {object_actions} on {resources} beyond {object_prefixes}")
            if "s3:listbucket" in actions:
                prefixes = as_list(condition.get("StringLike", {}).get("s3:prefix", []))
                if object_actions or resources != [bucket_arn] or not prefixes \
                        or any(not p.startswith(f"events/vendor={vendor}/") for p in prefixes):
                    problems.append(f"{sid}: ListBucket not limited to events/vendor={vendor}/: {statement}")
        if actions == ["kms:sign"]:
            if resources != [signing_key_arn]:
                problems.append(f"{sid}: kms:Sign on {resources}, not the digests' signing key")
            if condition != {"StringEquals": {"kms:MessageType": "RAW", "kms:SigningAlgorithm": "ECDSA_SHA_256"}}:
                problems.append(f"{sid}: kms:Sign not limited to RAW ECDSA_SHA_256 messages: {condition}")
        elif "kms" in services:
            via = condition.get("StringEquals", {}).get("kms:ViaService")
            if resources != [key_arn]:
                problems.append(f"{sid}: KMS resource {resources} is not the archive key")
            if via not in {f"s3.{REGION}.amazonaws.com", f"secretsmanager.{REGION}.amazonaws.com"}:
                problems.append(f"{sid}: KMS use not limited to S3/Secrets Manager (kms:ViaService={via})")
            if not set(actions) <= {"kms:decrypt", "kms:generatedatakey"}:
                problems.append(f"{sid}: KMS actions beyond Decrypt/GenerateDataKey: {actions}")
    for required in ("secretsmanager:getsecretvalue", "dynamodb:getitem", "dynamodb:putitem", "dynamodb:updateitem",
                     "s3:putobject", "s3:getobject", "s3:listbucket", "kms:generatedatakey", "kms:decrypt",
                     "kms:sign"):
        if required not in seen_actions:
            problems.append(f"missing {required}")
    return problems


def problems_for(logical_id: str, create_secret: bool, extra: list[dict[str, Any]] | None = None) -> list[str]:
    return policy_problems(
        collector_statements(logical_id, create_secret) + (extra or []), vendor_of(logical_id),
        secret_arn=secret_arn_for(logical_id, create_secret), table_arn="getatt:StateTable.Arn",
        bucket_arn=ATTRS["ArchiveBucket", "Arn"], key_arn="getatt:ArchiveKey.Arn")


def test_collectors_exist() -> None:
    assert "AsanaCollector" in COLLECTORS
    assert vendor_of("AsanaCollector") == "asana"
    assert vendor_of("ClickUpCollector") == "clickup"


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
], ids=["delete", "put-bucket", "acl", "s3-star", "dynamodb-query", "other-service", "other-secret",
        "sign-with-another-key", "sign-anything", "others-digests"])
def test_policy_check_rejects_excess(bad: dict[str, Any]) -> None:
    assert problems_for("AsanaCollector", True, extra=[bad])


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
    assert props["ReservedConcurrentExecutions"] == 1
    assert props["Tracing"] == "Active"
    assert props["MemorySize"] == 512
    assert props["CodeUri"].rstrip("/") == f"functions/{vendor}"
    assert props["Handler"] == f"{vendor}_collector.handler"
    assert (PROJECT_ROOT / props["CodeUri"] / f"{vendor}_collector.py").is_file()
    assert {"Ref": "EngineLayer"} in props["Layers"]
    assert props["Timeout"] < min(schedule_rates()) * 60, "a run must end before the next tick"


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
    assert set(RESOURCES[logical_id]["Properties"]["Environment"]["Variables"]) == {"SECRET_ID"}, \
        "shared variables belong in Globals; a collector sets only its SECRET_ID"
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


def test_asana_secret_placeholder_is_exact() -> None:
    expected = '{"token": "REPLACE_ME", "workspace_gid": "REPLACE_ME"}'
    assert RESOURCES["AsanaSecret"]["Properties"]["SecretString"] == expected


@pytest.mark.parametrize("logical_id", COLLECTORS)
def test_secret_placeholder_holds_exactly_the_fields_the_collector_reads(logical_id: str) -> None:
    vendor = vendor_of(logical_id)
    path = PROJECT_ROOT / "functions" / vendor / f"{vendor}_collector.py"
    spec = importlib.util.spec_from_file_location(f"{vendor}_collector", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
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
        resolved = evaluate(props, conditions={"UseObjectLock": enabled}, refs={"ObjectLockMode": "COMPLIANCE"})
        if enabled:
            assert resolved["ObjectLockEnabled"] is True
            assert resolved["ObjectLockConfiguration"] == {
                "ObjectLockEnabled": "Enabled",
                "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": "365"}}}
        else:
            assert resolved["ObjectLockEnabled"] is None and resolved["ObjectLockConfiguration"] is None


# ---------------------------------------------------------------------------------------------- digests

SIGNER_TAG = "auditlake:digest-signer"


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
    assert deny["Condition"] == {"StringNotEquals": {f"aws:PrincipalTag/{SIGNER_TAG}": STACK}}
    # The collectors' roles carry that tag: SAM puts a function's tags on the role it generates.
    assert evaluate(TEMPLATE["Globals"]["Function"]["Tags"]) == {SIGNER_TAG: STACK}
    for logical_id in COLLECTORS:
        assert "Tags" not in RESOURCES[logical_id]["Properties"], "a collector's own Tags would drop the signer tag"


def test_sam_puts_the_signer_tag_on_the_collectors_roles_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                               ) -> None:
    """The key and bucket policies recognise the collectors by this tag on their roles; SAM generates the roles,
    so the translated template must show it there (and on no other role, such as the schedules')."""
    spec = importlib.util.spec_from_file_location("template_tools", PROJECT_ROOT / "scripts" / "template_tools.py")
    assert spec is not None and spec.loader is not None
    tools = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tools)
    assert tools.translate(PROJECT_ROOT / "template.yaml", tmp_path / "translated.json") == 0
    roles = {logical_id: resource["Properties"] for logical_id, resource in
             json.loads((tmp_path / "translated.json").read_text())["Resources"].items()
             if resource["Type"] == "AWS::IAM::Role"}
    signers = {logical_id for logical_id, properties in roles.items()
               if {"Key": SIGNER_TAG, "Value": {"Ref": "AWS::StackName"}} in properties.get("Tags", [])}
    assert signers == {f"{logical_id}Role" for logical_id in COLLECTORS}


def test_only_the_collectors_write_digests() -> None:
    digests = f"{ATTRS['ArchiveBucket', 'Arn']}/digests/*"
    assert any(s["Effect"] == "Deny" and s["Principal"] == "*" and as_list(s["Action"]) == ["s3:PutObject"]
               and as_list(s["Resource"]) == [digests]
               and s["Condition"] == {"StringNotEquals": {f"aws:PrincipalTag/{SIGNER_TAG}": STACK}}
               for s in bucket_policy_statements("ArchiveBucket"))


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
                       "s3:getobjectversion", "kms:decrypt", "kms:getpublickey", "dynamodb:scan"}
    outputs = {name: output["Value"] for name, output in TEMPLATE["Outputs"].items()}
    assert outputs["AuditorPolicyArn"] == {"Ref": "AuditorPolicy"}
    assert outputs["DigestSigningKeyArn"] == {"Fn::GetAtt": ["DigestSigningKey", "Arn"]}


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
