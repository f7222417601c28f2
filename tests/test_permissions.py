"""Every AWS call of the collectors' and the auditor's representative flows, authorised against the translated
template as AWS would (tests/iam_model.py); a permission taken out of the template is then missed, by name."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import aws_calls
import iam_model
import pytest
from conftest import Clock, verify_archive
from iam_model import ADMINISTRATOR_ACCESS, AUDITOR, OPERATOR, Deployment, Request, Unmodelled, authorize, request
from worlds import VENDORS, world_of

from auditlake.archive import Archive
from auditlake.engine import Collector
from auditlake_local.stack import ACCOUNT, REGION, LocalStack
from auditlake_local.workspace import QUIET


class SimulatedCrash(BaseException):
    """The process dies (not an exception the engine could catch)."""


def _flows(stack: LocalStack, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> list[aws_calls.Call]:
    """A collection (with its digests) for every vendor, a backfill, a reconciliation, a run that dies after
    writing an object and the run that reads it back, and `verify` as an auditor: the calls they made."""
    start = len(aws_calls.CALLS)
    for vendor in VENDORS:
        with world_of(vendor, stack, clock.now) as world:
            world.seed(120, clock.now() - timedelta(days=3), clock.now() - timedelta(minutes=10), seed=7)
            stack.invoke(world.function_id, environment={**QUIET, "INITIAL_LOOKBACK_DAYS": "2"})
            clock.advance()
            since = (clock.now() - timedelta(days=3)).date().isoformat()
            stack.invoke(world.function_id, {"backfill": {"since": since}}, environment=QUIET)
            clock.advance(timedelta(hours=2))
            stack.invoke(world.function_id, {"reconcile": {}}, environment=QUIET)
    # A run that dies after its first object, before committing; the next run reads back what it wrote.
    real_put, real_finish = Archive.put, Collector._finish
    crashes = {"left": 1}

    def put(self: Archive, obj: Any) -> str | None:
        version = real_put(self, obj)
        if crashes["left"]:
            crashes["left"] -= 1
            raise SimulatedCrash("after the first put")
        return version

    def finish(self: Collector, state: Any, result: Any, failure: BaseException | None) -> None:
        if not isinstance(failure, SimulatedCrash):
            real_finish(self, state, result, failure)

    with world_of("asana", stack, clock.now) as world:
        clock.advance()
        world.seed(400, clock.now() - timedelta(minutes=30), clock.now() - timedelta(minutes=4), seed=9)
        monkeypatch.setattr(Archive, "put", put)
        monkeypatch.setattr(Collector, "_finish", finish)
        with pytest.raises(SimulatedCrash):
            stack.invoke(world.function_id, environment={**QUIET, "MAX_OBJECT_EVENTS": "100"})
        monkeypatch.undo()
        clock.advance(timedelta(minutes=20))  # the dead run's lease expires
        stack.invoke(world.function_id, environment={**QUIET, "MAX_OBJECT_EVENTS": "100"})
    # Its findings (the other vendors' chains have aged past an hour on this clock) are not what is tested here.
    assert verify_archive(stack, clock).chains
    calls = aws_calls.CALLS[start:]
    assert {c.principal for c in calls} == {f"{v.title()}CollectorRole".replace("Clickup", "ClickUp")
                                            for v in VENDORS} | {AUDITOR}
    return calls


@pytest.mark.slow
def test_every_call_of_the_collectors_and_the_auditor_is_allowed(
        stack: LocalStack, clock: Clock, pauses: Any, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    calls = _flows(stack, clock, monkeypatch)
    checked = aws_calls.check(calls)
    assert aws_calls.problems(checked) == []
    rows = aws_calls.table(checked)
    operations = {(c.service, c.operation) for c in calls}
    # The flows reach every kind of call the collectors and the auditor make.
    assert operations >= {("s3", "PutObject"), ("s3", "GetObject"), ("s3", "ListObjectsV2"),
                          ("s3", "ListObjectVersions"), ("dynamodb", "GetItem"), ("dynamodb", "PutItem"),
                          ("dynamodb", "UpdateItem"), ("dynamodb", "Scan"), ("kms", "Sign"), ("kms", "GetPublicKey"),
                          ("secretsmanager", "GetSecretValue")}, operations
    actions = {(principal, action) for principal, action, _, _ in rows}
    assert ("AsanaCollectorRole", "kms:Decrypt via dynamodb") in actions
    assert ("AsanaCollectorRole", "kms:GenerateDataKey via s3") in actions
    assert ("AsanaCollectorRole", "kms:Decrypt via secretsmanager") in actions
    with capsys.disabled():
        print(f"\n{len(calls)} AWS calls; (principal, action, resource, allowed by):")
        for row in rows:
            print("  " + " | ".join(row))


def _without(sid: str) -> dict[str, Any]:
    """The translated template with every statement `sid` taken out."""
    template = copy.deepcopy(iam_model.translated_template())
    removed = 0
    for spec in template["Resources"].values():
        props = spec.get("Properties", {})
        for document in (props.get("PolicyDocument"), props.get("KeyPolicy")):
            if document:
                kept = [s for s in document["Statement"] if s.get("Sid") != sid]
                removed += len(document["Statement"]) - len(kept)
                document["Statement"] = kept
    assert removed, sid
    return template


@pytest.mark.slow
@pytest.mark.parametrize(("sid", "denied"), [
    ("ArchiveKeyForDynamoDB", "AsanaCollectorRole dynamodb:GetItem: kms:Decrypt on "),
    ("ListOwnArchivePrefix", "AsanaCollectorRole s3:ListObjectsV2: s3:ListBucket on "),
    ("SignDigests", "AsanaCollectorRole kms:Sign: kms:Sign on "),
    ("DecryptViaS3AndDynamoDB", "AuditorPolicy dynamodb:Scan: kms:Decrypt on "),
    ("AccountAdministration", "AsanaCollectorRole kms:Sign: kms:Sign on "),  # the key policy no longer enables IAM
])
def test_a_missing_permission_is_found_by_name(sid: str, denied: str, stack: LocalStack, clock: Clock, pauses: Any,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _flows(stack, clock, monkeypatch)
    assert aws_calls.problems(aws_calls.check(calls)) == []
    problems = aws_calls.problems(aws_calls.check(calls, _without(sid)))
    assert any(p.startswith(denied) for p in problems), problems


# -- the evaluator itself ---------------------------------------------------------------------------------------

KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
BUCKET = "arn:aws:s3:::archive"
TABLE = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/state"
ROLE = "CollectorRole"
ROOT_ENABLES_IAM = {"Sid": "AccountAdministration", "Effect": "Allow", "Action": "kms:*", "Resource": "*",
                    "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}}


def deployment(statements: list[dict[str, Any]], *, key_policy: list[dict[str, Any]] | None = None,
               bucket_policy: list[dict[str, Any]] | None = None) -> Deployment:
    """A role with these statements; a key and a bucket with these policies."""
    resources: dict[str, dict[str, Any]] = {
        ROLE: {"Type": "AWS::IAM::Role", "Properties": {}},
        "Policy": {"Type": "AWS::IAM::RolePolicy", "Properties": {
            "RoleName": f"auditlake-local-{ROLE}", "PolicyDocument": {"Statement": statements}}},
        "Key": {"Type": "AWS::KMS::Key", "Properties": {
            "KeyPolicy": {"Statement": [ROOT_ENABLES_IAM] if key_policy is None else key_policy}}},
    }
    if bucket_policy is not None:
        resources["BucketPolicy"] = {"Type": "AWS::S3::BucketPolicy", "Properties": {
            "Bucket": "archive", "PolicyDocument": {"Statement": bucket_policy}}}
    return Deployment(resources, {KEY: "${Key.Arn}"})


def allows(statement: dict[str, Any], req: Request, **kwargs: Any) -> bool:
    return authorize(deployment([{"Effect": "Allow", **statement}], **kwargs), ROLE, req).allowed


def test_action_and_resource_wildcards() -> None:
    statement = {"Action": "s3:Get*", "Resource": f"{BUCKET}/events/*"}
    assert allows(statement, request("s3:GetObject", f"{BUCKET}/events/a/b"))
    assert allows(statement, request("S3:getobject", f"{BUCKET}/events/x"))  # actions are case-insensitive
    assert not allows(statement, request("s3:PutObject", f"{BUCKET}/events/x"))
    assert not allows(statement, request("s3:GetObject", f"{BUCKET}/digests/x"))
    assert allows({"NotAction": "s3:Put*", "Resource": "*"}, request("s3:GetObject", f"{BUCKET}/x"))
    assert not allows({"NotAction": "s3:Put*", "Resource": "*"}, request("s3:PutObject", f"{BUCKET}/x"))


@pytest.mark.parametrize(("operator", "policy", "value", "expected"), [
    ("StringEquals", "a#1", "a#1", True), ("StringEquals", "a#1", "a#2", False), ("StringEquals", "a#1", None, False),
    ("StringNotEquals", "a#1", "a#2", True), ("StringNotEquals", "a#1", "a#1", False),
    ("StringNotEquals", "a#1", None, True),  # a negated operator holds when the key is missing
    ("StringLike", "a#*", "a#1", True), ("StringLike", "a#*", "b#1", False), ("StringLike", "a?1", "a#1", True),
    ("StringNotLike", "a#*", "b#1", True), ("StringNotLike", "a#*", "a#1", False),
    ("StringEqualsIfExists", "a#1", None, True), ("StringEqualsIfExists", "a#1", "a#2", False),
])
def test_string_operators(operator: str, policy: str, value: str | None, expected: bool) -> None:
    statement = {"Action": "s3:ListBucket", "Resource": BUCKET, "Condition": {operator: {"s3:prefix": policy}}}
    assert allows(statement, request("s3:ListBucket", BUCKET, s3__prefix=value)) is expected


@pytest.mark.parametrize(("operator", "policy", "expected"), [
    ("ArnEquals", f"arn:aws:iam::{ACCOUNT}:role/auditlake-local-{ROLE}", True),
    ("ArnEquals", f"arn:aws:iam::{ACCOUNT}:role/other", False),
    ("ArnLike", f"arn:aws:iam::{ACCOUNT}:role/auditlake-*", True),
    ("ArnLike", "arn:aws:iam::999999999999:role/*", False),
    ("ArnNotEquals", f"arn:aws:iam::{ACCOUNT}:role/other", True),
    ("ArnNotEquals", f"arn:aws:iam::{ACCOUNT}:role/auditlake-local-{ROLE}", False),
    ("ArnNotLike", f"arn:aws:iam::{ACCOUNT}:role/auditlake-*", False),
    ("ArnNotLike", f"arn:aws:iam::{ACCOUNT}:role/x-*", True),
])
def test_arn_operators_on_the_principal(operator: str, policy: str, expected: bool) -> None:
    statement = {"Action": "s3:GetObject", "Resource": "*", "Condition": {operator: {"aws:PrincipalArn": policy}}}
    assert allows(statement, request("s3:GetObject", f"{BUCKET}/k")) is expected


@pytest.mark.parametrize(("operator", "keys", "expected"), [
    ("ForAllValues:StringLike", ["asana#1"], True),
    ("ForAllValues:StringLike", ["asana#1", "make#1"], False),
    ("ForAllValues:StringLike", None, True),  # no key at all: ForAllValues holds (IAM User Guide, "Multivalued ...")
    ("ForAnyValue:StringLike", ["make#1", "asana#1"], True),
    ("ForAnyValue:StringLike", ["make#1"], False),
    ("ForAnyValue:StringLike", None, False),
])
def test_set_operators_on_leading_keys(operator: str, keys: list[str] | None, expected: bool) -> None:
    statement = {"Action": "dynamodb:GetItem", "Resource": TABLE,
                 "Condition": {operator: {"dynamodb:LeadingKeys": ["asana#*"]}}}
    assert allows(statement, request("dynamodb:GetItem", TABLE, dynamodb__LeadingKeys=keys)) is expected


def test_bool_and_null_in_a_bucket_policy() -> None:
    """The archive's TLS-only and no-overwrite denies: an explicit deny in the bucket policy wins over the role's
    allow (IAM User Guide, "Policy evaluation logic")."""
    allow = [{"Effect": "Allow", "Action": "s3:PutObject", "Resource": f"{BUCKET}/*"}]
    bucket = [{"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": f"{BUCKET}/*",
               "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
              {"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": f"{BUCKET}/*",
               "Condition": {"Null": {"s3:if-none-match": "true"}}}]
    stack = deployment(allow, bucket_policy=bucket)
    put = request("s3:PutObject", f"{BUCKET}/k", s3__if_none_match="*")
    assert authorize(stack, ROLE, put).allowed
    refused = authorize(stack, ROLE, put, secure_transport=False)
    assert not refused.allowed and "explicitly denied" in refused.reason
    refused = authorize(stack, ROLE, request("s3:PutObject", f"{BUCKET}/k"))
    assert not refused.allowed and "explicitly denied" in refused.reason


def test_kms_conditions_via_service_message_type_and_algorithm() -> None:
    via_s3 = {"Action": "kms:Decrypt", "Resource": KEY,
              "Condition": {"StringEquals": {"kms:ViaService": f"s3.{REGION}.amazonaws.com"}}}
    assert allows(via_s3, request("kms:Decrypt", KEY, via="s3"))
    assert not allows(via_s3, request("kms:Decrypt", KEY, via="dynamodb"))
    assert not allows(via_s3, request("kms:Decrypt", KEY))  # directly: no kms:ViaService
    sign = {"Action": "kms:Sign", "Resource": KEY,
            "Condition": {"StringEquals": {"kms:MessageType": "RAW", "kms:SigningAlgorithm": "ECDSA_SHA_256"}}}
    assert allows(sign, request("kms:Sign", KEY, kms__MessageType="RAW", kms__SigningAlgorithm="ECDSA_SHA_256"))
    assert not allows(sign, request("kms:Sign", KEY, kms__MessageType="DIGEST",
                                    kms__SigningAlgorithm="ECDSA_SHA_256"))
    assert not allows(sign, request("kms:Sign", KEY, kms__MessageType="RAW", kms__SigningAlgorithm="ECDSA_SHA_384"))


def test_a_key_policy_must_allow() -> None:
    """AWS KMS Developer Guide, "Key policies", "Allows access to the AWS account and enables IAM policies": without
    the key policy's statement for the account, an IAM allow does nothing; a key policy statement naming the role
    allows without any IAM policy; a deny in the key policy wins."""
    sign = request("kms:Sign", KEY, kms__MessageType="RAW", kms__SigningAlgorithm="ECDSA_SHA_256")
    iam_allows = [{"Effect": "Allow", "Action": "kms:Sign", "Resource": KEY}]
    assert authorize(deployment(iam_allows), ROLE, sign).allowed
    refused = authorize(deployment(iam_allows, key_policy=[]), ROLE, sign)
    assert not refused.allowed and "key policy" in refused.reason
    role = f"arn:aws:iam::{ACCOUNT}:role/auditlake-local-{ROLE}"
    names_role = [{"Sid": "Direct", "Effect": "Allow", "Action": "kms:Sign", "Resource": "*",
                   "Principal": {"AWS": role}}]
    assert authorize(deployment([], key_policy=names_role), ROLE, sign).allowed
    assert not authorize(deployment([]), ROLE, sign).allowed  # the account enabled, but no IAM allow
    deny = {"Effect": "Deny", "Principal": "*", "Action": "kms:Sign", "Resource": "*",
            "Condition": {"ArnNotEquals": {"aws:PrincipalArn": "arn:aws:iam::123456789012:role/signer"}}}
    refused = authorize(deployment(iam_allows, key_policy=[ROOT_ENABLES_IAM, deny]), ROLE, sign)
    assert not refused.allowed and "explicitly denied" in refused.reason


def test_an_explicit_deny_in_the_identity_policy_wins() -> None:
    statements = [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
                  {"Sid": "NoDigests", "Effect": "Deny", "Action": "s3:PutObject", "Resource": f"{BUCKET}/digests/*"}]
    assert authorize(deployment(statements), ROLE, request("s3:PutObject", f"{BUCKET}/events/k")).allowed
    refused = authorize(deployment(statements), ROLE, request("s3:PutObject", f"{BUCKET}/digests/k"))
    assert not refused.allowed and refused.reason == "explicitly denied by Policy/NoDigests"


def test_what_the_model_cannot_decide_fails() -> None:
    unknown_key = {"Action": "s3:GetObject", "Resource": "*", "Condition": {"StringEquals": {"aws:SourceIp": "1"}}}
    with pytest.raises(Unmodelled, match="aws:SourceIp"):
        allows(unknown_key, request("s3:GetObject", f"{BUCKET}/k"))
    unknown_operator = {"Action": "s3:GetObject", "Resource": "*",
                        "Condition": {"IpAddress": {"s3:prefix": "10.0.0.0/8"}}}
    with pytest.raises(Unmodelled, match="IpAddress"):
        allows(unknown_operator, request("s3:GetObject", f"{BUCKET}/k"))
    with pytest.raises(Unmodelled, match="s3:DeleteObject"):
        iam_model.requests_for("s3", "DeleteObject", {"Bucket": "archive", "Key": "k"}, deployment([]))


def test_the_operator_is_an_administrator_whom_the_resource_policies_still_bind(stack: LocalStack) -> None:
    """AdministratorAccess allows everything, yet the archive's digests are the collectors' to write and the
    signing key the collectors' to use."""
    assert ADMINISTRATOR_ACCESS["Statement"][0]["Action"] == "*"
    deployed = Deployment.of_stack(stack)
    key = stack.functions_env("DIGEST_SIGNING_KEY_ARN")
    sign = request("kms:Sign", key, kms__MessageType="RAW", kms__SigningAlgorithm="ECDSA_SHA_256")
    assert not authorize(deployed, OPERATOR, sign).allowed
    assert authorize(deployed, "AsanaCollectorRole", sign).allowed
    digest = request("s3:PutObject", f"arn:aws:s3:::{stack.bucket}/digests/vendor=asana/stream=s/1.json",
                     s3__if_none_match="*", s3__x_amz_server_side_encryption="aws:kms",
                     s3__x_amz_server_side_encryption_aws_kms_key_id=stack.functions_env("ARCHIVE_KMS_KEY_ARN"))
    assert not authorize(deployed, OPERATOR, digest).allowed
    assert authorize(deployed, "AsanaCollectorRole", digest).allowed
    assert not authorize(deployed, "AshbyCollectorRole", digest).allowed  # not its prefix
