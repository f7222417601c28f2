"""AWS's authorization of one API call, evaluated against the translated template.

No maintained Python library evaluates a request with conditions against identity and resource policies offline:
moto's IAM enforcement (moto/iam/access_control.py) checks actions only ("TODO add support for the Resource and
Condition parts"), policyuniverse parses and expands, aws-why calls the account's IAM policy simulator, and
@cloud-copilot/iam-simulate is a Node library. So this module evaluates what the template uses, and refuses
(raises `Unmodelled`) whatever it does not know: an operation it cannot map, an operator or condition key it does
not evaluate, a managed policy whose text it does not have. Nothing unknown passes.

The rules, from the IAM User Guide, "Policy evaluation logic" (same-account requests):
  * an explicit Deny in any applicable policy (identity or resource) wins;
  * else an Allow in the identity policies, or in the resource's policy naming the principal, allows;
  * except for KMS keys, whose key policy must allow: AWS KMS Developer Guide, "Key policies", "Allows access to the
    AWS account and enables IAM policies": IAM policies count only when the key policy allows the account
    (arn:aws:iam::<account>:root); a key policy statement naming the principal allows without IAM.
Calls a service makes with the caller's permissions (KMS through S3, DynamoDB, Secrets Manager) are requests of
their own, with kms:ViaService set; the API call is allowed only if they all are.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from auditlake_local.stack import ACCOUNT, REGION, STACK
from auditlake_local.template import PROJECT_ROOT, resolve

OPERATOR = "operator"
AUDITOR = "AuditorPolicy"
ANALYST = "AnalystPolicy"
# The AWS managed policy AdministratorAccess (arn:aws:iam::aws:policy/AdministratorAccess), verbatim: an operator.
ADMINISTRATOR_ACCESS = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


class Unmodelled(AssertionError):
    """A call, policy or condition the model cannot evaluate: a test that meets one fails."""


# -- the translated template, once per session ----------------------------------------------------------------------


@cache
def translated_template(path: Path = PROJECT_ROOT / "template.yaml") -> dict[str, Any]:
    """template.yaml as CloudFormation sees it after the SAM transform (the roles SAM generates, their policies),
    translated offline as scripts/template_tools.py does for checkov."""
    import importlib.util  # noqa: PLC0415

    from samtranslator.translator.transform import transform  # noqa: PLC0415
    from samtranslator.yaml_helper import yaml_parse  # noqa: PLC0415

    spec = importlib.util.spec_from_file_location("template_tools", PROJECT_ROOT / "scripts" / "template_tools.py")
    assert spec is not None and spec.loader is not None
    tools = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tools)
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    source = tools.with_remote_code(yaml_parse(path.read_text()))
    return json.loads(json.dumps(transform(source, {}, tools.OfflinePolicyLoader())))


def role_arn(logical_id: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:role/{STACK}-{logical_id}"


class _Attrs(dict[tuple[str, str], Any]):
    """GetAtt values the local stack does not create (roles, log groups): stable, recognisable ARNs."""

    def __missing__(self, key: tuple[str, str]) -> str:
        logical_id, attribute = key
        if logical_id.endswith("Role") and attribute == "Arn":
            return role_arn(logical_id)
        if logical_id.endswith("LogGroup") and attribute == "Arn":
            return f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/auditlake/{STACK}/{logical_id}:*"
        return f"arn:aws:unresolved:{REGION}:{ACCOUNT}:{logical_id}.{attribute}"


# -- a deployment: the translated template resolved with one stack's names -----------------------------------------


@dataclass
class Deployment:
    resources: dict[str, dict[str, Any]]
    names: dict[str, str]  # concrete name or ARN -> "${LogicalId}" / "${LogicalId.Arn}", to print patterns

    @classmethod
    def of(cls, refs: dict[str, Any], attrs: dict[tuple[str, str], Any], conditions: dict[str, bool],
           template: dict[str, Any] | None = None) -> Deployment:
        template = template or translated_template()
        # Resources the local stack does not create are named as CloudFormation would: "<stack>-<logical id>".
        all_refs = {**{logical_id: f"{STACK}-{logical_id}" for logical_id in template["Resources"]},
                    **{name: spec.get("Default", "") for name, spec in template.get("Parameters", {}).items()},
                    "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{STACK}/unknown-id", **refs}
        all_attrs = _Attrs(attrs)
        resources = {}
        for logical_id, spec in template["Resources"].items():
            if not conditions.get(spec.get("Condition", ""), True):
                continue
            resources[logical_id] = {"Type": spec["Type"], "Properties": resolve(
                spec.get("Properties", {}), all_refs, all_attrs, conditions)}
        names = {str(v): f"${{{k}}}" for k, v in refs.items() if isinstance(v, str) and len(v) > 12}
        names |= {str(v): f"${{{k}.{a}}}" for (k, a), v in attrs.items() if isinstance(v, str)}
        for logical_id in resources:
            if logical_id.endswith("Role"):
                names[role_arn(logical_id)] = f"${{{logical_id}.Arn}}"
        return cls(resources, names)

    @classmethod
    def of_stack(cls, stack: Any, template: dict[str, Any] | None = None) -> Deployment:
        return cls.of(stack.refs, stack.attrs, stack.conditions, template)

    def of_type(self, kind: str) -> dict[str, dict[str, Any]]:
        return {k: r["Properties"] for k, r in self.resources.items() if r["Type"] == kind}

    def pattern(self, text: str) -> str:
        for name in sorted(self.names, key=len, reverse=True):
            text = text.replace(name, self.names[name])
        return text

    # What the policies are attached to.

    def identity_policies(self, principal: str) -> list[tuple[str, dict[str, Any]]]:
        if principal == OPERATOR:
            return [("AdministratorAccess", ADMINISTRATOR_ACCESS)]
        if self.resources.get(principal, {}).get("Type") == "AWS::IAM::ManagedPolicy":
            return [(principal, self.resources[principal]["Properties"]["PolicyDocument"])]
        role = self.resources.get(principal)
        if role is None or role["Type"] != "AWS::IAM::Role":
            raise Unmodelled(f"no role or managed policy {principal} in the translated template")
        props = role["Properties"]
        if props.get("ManagedPolicyArns"):
            raise Unmodelled(f"{principal} has managed policies {props['ManagedPolicyArns']}, whose text the model "
                             "does not have")
        policies = [(f"{principal}/{p['PolicyName']}", p["PolicyDocument"]) for p in props.get("Policies", [])]
        name = self.resources_refs.get(principal)
        for logical_id, spec in self.resources.items():
            attached = spec["Properties"]
            inline = spec["Type"] == "AWS::IAM::RolePolicy" and attached.get("RoleName") == name
            attached_to = spec["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy") \
                and name in attached.get("Roles", [])
            if inline or attached_to:
                policies.append((logical_id, attached["PolicyDocument"]))
        return policies

    @property
    def resources_refs(self) -> dict[str, str]:
        # A role's Ref is its name; the resolver gave unknown resources "<stack>-<logical id>".
        return {logical_id: f"{STACK}-{logical_id}" for logical_id in self.resources}

    def principal_arn(self, principal: str) -> str:
        if principal in (OPERATOR, AUDITOR, ANALYST):
            return f"arn:aws:iam::{ACCOUNT}:role/{principal.lower()}"  # a role the policy is attached to
        return role_arn(principal)

    def bucket_policy(self, bucket: str) -> dict[str, Any] | None:
        for props in self.of_type("AWS::S3::BucketPolicy").values():
            if props["Bucket"] == bucket:
                return props["PolicyDocument"]
        return None

    def bucket_key(self, bucket: str) -> str | None:
        """The bucket's default SSE-KMS key (every object in it is encrypted with that key: the archive's bucket
        policy denies uploads with any other)."""
        for logical_id, props in self.of_type("AWS::S3::Bucket").items():
            if self.names.get(f"arn:aws:s3:::{bucket}") == f"${{{logical_id}.Arn}}":
                for rule in props.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration", []):
                    default = rule.get("ServerSideEncryptionByDefault", {})
                    if default.get("SSEAlgorithm") == "aws:kms":
                        return self.key_arn(default["KMSMasterKeyID"])
        return None

    def keys(self) -> dict[str, dict[str, Any]]:
        """Key ARN -> key policy."""
        out = {}
        for logical_id, props in self.of_type("AWS::KMS::Key").items():
            arn = next((n for n, p in self.names.items() if p == f"${{{logical_id}.Arn}}"), None)
            if arn:
                out[arn] = props["KeyPolicy"]
        return out

    def key_arn(self, key_id: str) -> str:
        for arn in self.keys():
            if key_id in (arn, arn.rsplit("/", 1)[-1]):
                return arn
        raise Unmodelled(f"{key_id} is no KMS key of the template")

    def table_key(self, table: str) -> tuple[str, str | None]:
        """(hash key attribute, CMK ARN or None) of the table named `table`."""
        for logical_id, props in self.of_type("AWS::DynamoDB::Table").items():
            if self.names.get(table) == f"${{{logical_id}}}":
                hash_key = next(k["AttributeName"] for k in props["KeySchema"] if k["KeyType"] == "HASH")
                sse = props.get("SSESpecification", {})
                cmk = self.key_arn(sse["KMSMasterKeyId"]) if sse.get("SSEEnabled") and sse.get("KMSMasterKeyId") \
                    else None
                return hash_key, cmk
        raise Unmodelled(f"{table} is no DynamoDB table of the template")

    def secret_key(self, secret_arn: str) -> str | None:
        for logical_id, props in self.of_type("AWS::SecretsManager::Secret").items():
            if self.names.get(secret_arn) == f"${{{logical_id}}}":
                return self.key_arn(props["KmsKeyId"]) if props.get("KmsKeyId") else None
        return None


# -- requests -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    action: str
    resource: str
    context: tuple[tuple[str, tuple[str, ...]], ...] = ()
    via: str | None = None  # the service calling KMS for the caller

    def values(self, key: str) -> tuple[str, ...] | None:
        for name, values in self.context:
            if name.lower() == key.lower():
                return values
        return None


def request(action: str, resource: str, via: str | None = None, **context: str | Iterable[str] | None) -> Request:
    pairs = []
    for key, value in context.items():
        if value is None:
            continue
        name = key.replace("__", ":").replace("_", "-")
        pairs.append((name, (value,) if isinstance(value, str) else tuple(value)))
    if via:
        pairs.append(("kms:ViaService", (f"{via}.{REGION}.amazonaws.com",)))
    return Request(action, resource, tuple(sorted(pairs)), via)


# Condition keys whose values `requests_for` sets whenever the request has them; a statement that applies and tests
# any other key is unmodelled (its absence would decide silently). Keys of statements for service principals
# (aws:SourceArn, kms:EncryptionContext:...) never reach this: those statements do not apply to the roles here.
MODELLED_KEYS = {k.lower() for k in (
    "aws:PrincipalArn", "aws:SecureTransport", "s3:prefix", "s3:delimiter", "s3:if-none-match",
    "s3:x-amz-server-side-encryption", "s3:x-amz-server-side-encryption-aws-kms-key-id", "dynamodb:LeadingKeys",
    "kms:ViaService", "kms:MessageType", "kms:SigningAlgorithm")}

# KMS through a service, with the caller's permissions (the service's own KMS pages, AWS KMS Developer Guide):
# S3 SSE-KMS (Amazon S3 User Guide, "Using server-side encryption with AWS KMS keys", Permissions): PutObject needs
# kms:GenerateDataKey, GetObject kms:Decrypt; Secrets Manager ("How AWS Secrets Manager uses AWS KMS"):
# GetSecretValue kms:Decrypt, PutSecretValue kms:GenerateDataKey; DynamoDB ("How Amazon DynamoDB uses AWS KMS"): the
# principals using a table under a customer managed key need kms:Encrypt, kms:Decrypt, kms:GenerateDataKey* and
# kms:DescribeKey; the model asks reads for kms:Decrypt and kms:DescribeKey, writes for all four.
_DYNAMODB_READS = {"GetItem", "Scan", "Query", "BatchGetItem"}
_DYNAMODB_WRITES = {"PutItem", "UpdateItem", "DeleteItem"}


def requests_for(service: str, operation: str, params: dict[str, Any], deployment: Deployment,
                 hints: dict[str, Any] | None = None) -> list[Request]:
    """The IAM requests one API call makes: its own, then those of services calling KMS for the caller. A call with
    nothing to authorize (sts:GetCallerIdentity) makes none."""
    hints = hints or {}
    if service == "s3":
        bucket = f"arn:aws:s3:::{params['Bucket']}"
        key = deployment.bucket_key(params["Bucket"])
        if operation in ("ListObjectsV2", "ListObjects", "ListObjectVersions"):
            action = "s3:ListBucketVersions" if operation == "ListObjectVersions" else "s3:ListBucket"
            return [request(action, bucket, s3__prefix=params.get("Prefix"), s3__delimiter=params.get("Delimiter"))]
        if operation == "GetBucketLocation":
            return [request("s3:GetBucketLocation", bucket)]
        obj = f"{bucket}/{params['Key']}"
        if operation == "PutObject":
            own = request("s3:PutObject", obj, s3__if_none_match=params.get("IfNoneMatch"),
                          s3__x_amz_server_side_encryption=params.get("ServerSideEncryption"),
                          s3__x_amz_server_side_encryption_aws_kms_key_id=params.get("SSEKMSKeyId"))
            kms = params.get("SSEKMSKeyId") or key
            return [own] + ([request("kms:GenerateDataKey", deployment.key_arn(kms), via="s3")] if kms else [])
        if operation in ("GetObject", "HeadObject"):
            # HeadObject is authorized as s3:GetObject (Amazon S3 API Reference, HeadObject); it returns metadata
            # only, so S3 decrypts nothing.
            own = request("s3:GetObjectVersion" if params.get("VersionId") else "s3:GetObject", obj)
            return [own] + ([request("kms:Decrypt", key, via="s3")] if key and operation == "GetObject" else [])
    if service == "dynamodb":
        table = params["TableName"]
        arn = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table}"
        hash_key, cmk = deployment.table_key(table)
        if operation in _DYNAMODB_READS | _DYNAMODB_WRITES:
            if operation == "Query" or operation.startswith("Batch"):
                raise Unmodelled(f"dynamodb:{operation}'s leading keys are not modelled")
            item = params.get("Key") or params.get("Item")
            leading = [next(iter(item[hash_key].values()))] if item else None
            own = request(f"dynamodb:{operation}", arn, dynamodb__LeadingKeys=leading)
            kms_actions = ["kms:Decrypt", "kms:DescribeKey"] if operation in _DYNAMODB_READS else \
                ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
            return [own] + ([request(a, cmk, via="dynamodb") for a in kms_actions] if cmk else [])
        if operation == "DescribeTable":
            return [request("dynamodb:DescribeTable", arn)]
    if service == "kms":
        arn = deployment.key_arn(params["KeyId"])
        if operation == "Sign":
            return [request("kms:Sign", arn, kms__MessageType=params.get("MessageType", "RAW"),
                            kms__SigningAlgorithm=params["SigningAlgorithm"])]
        if operation in ("GetPublicKey", "DescribeKey", "Verify"):
            return [request(f"kms:{operation}", arn)]
    if service == "secretsmanager" and operation in ("GetSecretValue", "PutSecretValue", "DescribeSecret"):
        arn = hints.get("ARN") or params["SecretId"]
        if not arn.startswith("arn:"):
            if operation == "DescribeSecret":
                raise Unmodelled(f"secret {arn} named by name: the model needs its ARN")
            # No secret by that name (its ARN came back with none: a named account's before `secret set` creates
            # it, which reads it, then tries to put a value): authorized on the ARN it would have, whose
            # six random characters are unknown (Secrets Manager User Guide, "What's in a Secrets Manager secret?";
            # the caller gets AccessDeniedException or ResourceNotFoundException depending on its permissions).
            arn = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{arn}-??????"
        # The template's secrets name their key there; another secret (a named account's) in its metadata.
        key = deployment.secret_key(arn) or (deployment.key_arn(hints["KmsKeyId"]) if hints.get("KmsKeyId") else None)
        own = request(f"secretsmanager:{operation}", arn)
        kms = {"GetSecretValue": "kms:Decrypt", "PutSecretValue": "kms:GenerateDataKey"}.get(operation)
        return [own] + ([request(kms, key, via="secretsmanager")] if key and kms else [])
    if service == "secretsmanager" and operation == "CreateSecret":
        # On the new secret's ARN; with a customer managed key, kms:GenerateDataKey and kms:Decrypt on it through
        # Secrets Manager (Secrets Manager API Reference, CreateSecret).
        arn = hints.get("ARN") or f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{params['Name']}-??????"
        own = request("secretsmanager:CreateSecret", arn)
        key = deployment.key_arn(params["KmsKeyId"]) if params.get("KmsKeyId") else None
        return [own] + ([request(a, key, via="secretsmanager") for a in ("kms:GenerateDataKey", "kms:Decrypt")]
                        if key else [])
    if service == "cloudformation" and operation == "DescribeStacks":
        stack_id = hints.get("StackId") or params.get("StackName", "")
        if not stack_id.startswith("arn:"):  # a stack that does not exist: authorized on the name's ARN pattern
            stack_id = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{stack_id}/*"
        return [request("cloudformation:DescribeStacks", stack_id)]
    if service == "lambda" and operation == "Invoke":
        name = params["FunctionName"]
        arn = name if name.startswith("arn:") else f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
        return [request("lambda:InvokeFunction", arn)]
    if service == "athena":
        workgroup = params.get("WorkGroup") or hints.get("WorkGroup")
        if workgroup and operation in ("StartQueryExecution", "GetQueryExecution", "GetQueryResults",
                                       "StopQueryExecution", "ListNamedQueries", "GetNamedQuery",
                                       "BatchGetNamedQuery", "GetWorkGroup"):
            return [request(f"athena:{operation}", f"arn:aws:athena:{REGION}:{ACCOUNT}:workgroup/{workgroup}")]
    if service == "sts" and operation == "GetCallerIdentity":
        return []  # no permission is needed (AWS STS API Reference, GetCallerIdentity)
    # `auditlake doctor`'s reads (Service Authorization Reference: the resource type each action names).
    if service == "cloudformation" and operation == "ListStackResources":
        stack = params.get("StackName", "")
        return [request("cloudformation:ListStackResources", stack if stack.startswith("arn:") else
                        f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{stack}/*")]
    if service == "cloudwatch" and operation == "GetMetricData":
        return [request("cloudwatch:GetMetricData", "*")]  # names no resource type
    if service == "iam" and operation == "GetRole":
        return [request("iam:GetRole", f"arn:aws:iam::{ACCOUNT}:role/{params['RoleName']}")]
    if service == "scheduler" and operation == "ListSchedules":
        return [request("scheduler:ListSchedules", "*")]  # names no resource type
    if service == "scheduler" and operation == "GetSchedule":
        group = params.get("GroupName", "default")
        return [request("scheduler:GetSchedule",
                        f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/{group}/{params['Name']}")]
    if service == "sns" and operation == "ListSubscriptionsByTopic":
        return [request("sns:ListSubscriptionsByTopic", params["TopicArn"])]
    raise Unmodelled(f"{service}:{operation} is not mapped to IAM actions and resources")


# -- evaluation -----------------------------------------------------------------------------------------------------


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _glob(pattern: str, value: str, *, case: bool = True) -> bool:
    """IAM's wildcards: * any run of characters, ? one character (IAM User Guide, "IAM JSON policy elements:
    Resource" and "String condition operators")."""
    return _glob_regex(pattern, case).fullmatch(value) is not None


@cache
def _glob_regex(pattern: str, case: bool) -> re.Pattern[str]:
    # Cached: every AWS call of every test is authorised against the same few hundred patterns.
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(regex, 0 if case else re.IGNORECASE)


def _action_matches(statement: dict[str, Any], action: str) -> bool:
    if "NotAction" in statement:
        return not any(_glob(a, action, case=False) for a in _list(statement["NotAction"]))
    return any(_glob(a, action, case=False) for a in _list(statement["Action"]))


def _resource_matches(statement: dict[str, Any], resource: str) -> str | None:
    """The pattern that matches, or None."""
    if "NotResource" in statement:
        return None if any(_glob(r, resource) for r in _list(statement["NotResource"])) else "NotResource"
    return next((r for r in _list(statement.get("Resource", "*")) if _glob(r, resource)), None)


def _principal_matches(statement: dict[str, Any], principal_arn: str) -> bool:
    """A resource policy's statement names the caller: "*", {"AWS": "*"} or the caller's ARN. The account's root
    ARN does not name the caller: it delegates to the account's IAM policies (see `authorize`)."""
    principal = statement.get("Principal")
    if principal == "*":
        return True
    if isinstance(principal, dict):
        return any(p in ("*", principal_arn) for p in _list(principal.get("AWS", [])))
    return False


def _names_account(statement: dict[str, Any]) -> bool:
    principal = statement.get("Principal")
    if not isinstance(principal, dict):
        return False
    return any(p in (f"arn:aws:iam::{ACCOUNT}:root", ACCOUNT) for p in _list(principal.get("AWS", [])))


# IAM User Guide, "IAM JSON policy elements: Condition operators": a missing key makes a condition false, except for
# the negated operators (StringNotEquals, ArnNotLike, ...), for which it is true; "...IfExists" is true when the key
# is missing. "Multivalued context keys": ForAllValues is true when the key is missing or empty, ForAnyValue false.
def _string_equals(policy: str, value: str) -> bool:
    return policy == value


def _arn_like(policy: str, value: str) -> bool:
    # ArnLike compares each of the six colon-separated parts with wildcards (IAM User Guide, "ARN condition
    # operators"); the ARNs here have their parts in place, so a whole-string match is the same.
    return policy.count(":") <= value.count(":") and _glob(policy, value)


_OPERATORS = {
    "StringEquals": (_string_equals, False),
    "StringNotEquals": (_string_equals, True),
    "StringLike": (_glob, False),
    "StringNotLike": (_glob, True),
    "ArnEquals": (_string_equals, False),
    "ArnNotEquals": (_string_equals, True),
    "ArnLike": (_arn_like, False),
    "ArnNotLike": (_arn_like, True),
    "Bool": (lambda p, v: p.lower() == v.lower(), False),
}


def _condition_holds(operator: str, key: str, policy_values: list[Any], request: Request) -> bool:
    if key.lower() not in MODELLED_KEYS:
        raise Unmodelled(f"condition key {key} is not modelled")
    values = request.values(key)
    policy = [str(v).lower() if isinstance(v, bool) else str(v) for v in policy_values]
    if operator == "Null":
        # "true": the key must be absent; "false": present (IAM User Guide, "Condition operator to check existence
        # of condition keys").
        return all((values is None) == (p.lower() == "true") for p in policy)
    qualifier, _, base = operator.rpartition(":")
    if_exists = base.endswith("IfExists")
    base = base.removesuffix("IfExists")
    if base not in _OPERATORS:
        raise Unmodelled(f"condition operator {operator} is not modelled")
    match, negated = _OPERATORS[base]
    if qualifier == "ForAllValues":
        return all(any(match(p, v) for p in policy) != negated for v in values or ())
    if qualifier == "ForAnyValue":
        return any(any(match(p, v) for p in policy) != negated for v in values or ())
    if qualifier:
        raise Unmodelled(f"condition operator {operator} is not modelled")
    if values is None:
        return if_exists or negated
    if len(values) != 1:
        raise Unmodelled(f"{key} has several values; a single-valued operator {operator} cannot test it")
    # A negated operator holds when the value matches none of the policy's values.
    return any(match(p, values[0]) for p in policy) != negated


def _conditions_hold(statement: dict[str, Any], request: Request) -> bool:
    return all(_condition_holds(operator, key, _list(values), request)
               for operator, block in statement.get("Condition", {}).items() for key, values in block.items())


@dataclass
class Decision:
    request: Request
    allowed: bool
    reason: str
    allowed_by: list[str] = field(default_factory=list)  # "Policy/Sid" of the statements that allow
    patterns: list[str] = field(default_factory=list)  # their matching Resource patterns


def _statements(policy: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from _list(policy.get("Statement", []))


def _applies(statement: dict[str, Any], req: Request) -> str | None:
    if not _action_matches(statement, req.action):
        return None
    pattern = _resource_matches(statement, req.resource)
    if pattern is None or not _conditions_hold(statement, req):
        return None
    return pattern


def authorize(deployment: Deployment, principal: str, req: Request, *, secure_transport: bool = True) -> Decision:
    principal_arn = deployment.principal_arn(principal)
    req = Request(req.action, req.resource, tuple(sorted(
        (*req.context, ("aws:PrincipalArn", (principal_arn,)),
         ("aws:SecureTransport", ("true" if secure_transport else "false",))))), req.via)
    identity = deployment.identity_policies(principal)
    resource_policies: list[tuple[str, dict[str, Any]]] = []
    key_policy = None
    if req.action.lower().startswith("kms:"):
        key_policy = deployment.keys().get(req.resource)
        if key_policy is None:
            raise Unmodelled(f"{req.resource} is no KMS key of the template: its key policy is unknown")
        resource_policies.append(("key policy", key_policy))
    elif req.resource.startswith("arn:aws:s3:::"):
        bucket = req.resource.removeprefix("arn:aws:s3:::").split("/", 1)[0]
        policy = deployment.bucket_policy(bucket)
        if policy:
            resource_policies.append((f"bucket policy of {deployment.pattern(bucket)}", policy))

    allows: list[tuple[str, str]] = []
    for name, policy in identity:
        for statement in _statements(policy):
            pattern = _applies(statement, req)
            if pattern is None:
                continue
            sid = f"{name}/{statement.get('Sid', '?')}"
            if statement["Effect"] == "Deny":
                return Decision(req, False, f"explicitly denied by {sid}")
            allows.append((sid, pattern))
    direct: list[tuple[str, str]] = []
    account_enabled = False
    for name, policy in resource_policies:
        for statement in _statements(policy):
            names_caller = _principal_matches(statement, principal_arn)
            if not names_caller and not (statement["Effect"] == "Allow" and _names_account(statement)):
                continue
            pattern = _applies(statement, req)
            if pattern is None:
                continue
            sid = f"{name}/{statement.get('Sid', '?')}"
            if statement["Effect"] == "Deny":
                return Decision(req, False, f"explicitly denied by {sid}")
            if names_caller:
                direct.append((sid, pattern))
            else:
                account_enabled = True
                if key_policy is not None:
                    allows = [(f"{s} + {sid}", p) for s, p in allows]
    if key_policy is not None and not account_enabled:
        allows = []  # the key policy does not enable IAM policies: only its own statements can allow
    granted = allows + direct
    if not granted:
        why = "the key policy allows neither the caller nor (with an IAM allow) the account" \
            if key_policy is not None and not direct and not account_enabled else "no statement allows it"
        return Decision(req, False, f"implicitly denied: {why}")
    return Decision(req, True, "allowed", [s for s, _ in granted], [p for _, p in granted])
