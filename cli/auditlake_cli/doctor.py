"""`auditlake doctor --stack NAME`: a deployed stack checked from the operator's seat, one line per check.

Each vendor's secret (filled, and accepted by the vendor with one request), each collector's last run and outcome,
the alarm topic's subscriptions, the collectors' EventBridge Scheduler schedules, and, with the IAM policy
simulator, that each collector's role may make the calls in `COLLECTOR_CALLS`. A check that finds a problem says
in one sentence what to do; any problem makes the command exit 1.

The simulator evaluates the role's identity policies (with its permissions boundary and the organization's SCPs);
it cannot evaluate the bucket and key policies for a role (its CallerArn must be an IAM user), so those are the
template tests' to prove.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

from botocore.exceptions import ClientError

from auditlake.archive import object_key, window_id
from auditlake.digest import digest_key
from auditlake.errors import AuditlakeError, AuditLogsUnavailable
from auditlake.secrets import parse_secret
from auditlake.state import Kind, StreamKey, StreamState
from auditlake.timeutil import parse_time
from auditlake_cli.errors import CliError
from auditlake_cli.probe import probe_vendor
from auditlake_vendors import VENDORS, adapter

STALE_PERIODS = 3  # a collector whose last run is older than this many schedule periods has stopped running
METRIC_WINDOW = timedelta(hours=1)  # how far back the functions' Errors and Invocations metrics are read
DEFAULT_RATE_MINUTES = "5"  # the template's ScheduleRateMinutes default, for a stack that does not list it
EXAMPLE_STREAM = "doctor"  # a stream id for the keys of the simulated calls (the policies constrain the prefixes)


class Stack(Protocol):
    """What the doctor needs of a deployed stack (target.StackTarget)."""

    stack: str
    session: Any
    stack_id: str
    parameters: dict[str, str]

    def output(self, key: str) -> str: ...

    def states(self) -> list[StreamState]: ...


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    text: str
    fix: str = ""

    def line(self) -> str:
        if self.ok:
            return f"ok       {self.name}: {self.text}"
        return f"problem  {self.name}: {self.text}. Fix: {self.fix}"


# -- what a collector calls, as IAM authorises it ------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """A kind of AWS request a collector makes: its IAM actions, on one resource, with the condition keys the
    request carries. `resource` and the context values are templates over the deployment's names (`names()`)."""

    what: str
    actions: tuple[str, ...]
    resource: str
    context: tuple[tuple[str, str, tuple[str, ...]], ...] = ()  # (key, ContextKeyType, values)


def _via(service: str) -> tuple[str, str, tuple[str, ...]]:
    return ("kms:ViaService", "string", (f"{service}.{{region}}.amazonaws.com",))


# Every AWS call the engine (layers/engine/python/auditlake) makes for a collector, the one list of them: a change
# to what the engine calls belongs here too, or `doctor` stops proving the roles sufficient.
COLLECTOR_CALLS: tuple[Call, ...] = (
    Call("read its secret (secrets.load_secret)", ("secretsmanager:GetSecretValue",), "{secret_arn}"),
    # Its further accounts' secrets, by name under its own prefix (<Title>AccountSecretPrefix).
    Call("read its further accounts' secrets", ("secretsmanager:GetSecretValue",), "{account_secret_arn}"),
    Call("decrypt its secret through Secrets Manager", ("kms:Decrypt",), "{archive_key_arn}",
         (_via("secretsmanager"),)),
    # StateStore: leases and cursors, each item keyed `<vendor>#...` (dynamodb:LeadingKeys).
    Call("read and write its streams' state items", ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"),
         "{table_arn}", (("dynamodb:LeadingKeys", "stringList", ("{stream_key}",)),)),
    # A further account's items are keyed `<vendor>@<account>#...`.
    Call("read and write its further accounts' state items",
         ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"),
         "{table_arn}", (("dynamodb:LeadingKeys", "stringList", ("{account_stream_key}",)),)),
    # The table is encrypted with the archive key, used with the caller's permissions (AWS KMS Developer Guide,
    # "How Amazon DynamoDB uses AWS KMS").
    Call("use the state table's key through DynamoDB", ("kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"),
         "{archive_key_arn}", (_via("dynamodb"),)),
    # Archive.put (If-None-Match: *, SSE-KMS with the archive key) and Archive.read_events.
    Call("write and read its archived objects", ("s3:PutObject", "s3:GetObject"), "{bucket_arn}/{events_key}",
         (("s3:if-none-match", "string", ("*",)), ("s3:x-amz-server-side-encryption", "string", ("aws:kms",)),
          ("s3:x-amz-server-side-encryption-aws-kms-key-id", "string", ("{archive_key_arn}",)))),
    Call("list its archive prefix (Archive.exists, stream_objects)", ("s3:ListBucket",), "{bucket_arn}",
         (("s3:prefix", "string", ("{events_key}",)),)),
    # DigestWriter: writes each digest once, reads one back to adopt it.
    Call("write and read its digests", ("s3:PutObject", "s3:GetObject"), "{bucket_arn}/{digest_key}",
         (("s3:if-none-match", "string", ("*",)), ("s3:x-amz-server-side-encryption", "string", ("aws:kms",)),
          ("s3:x-amz-server-side-encryption-aws-kms-key-id", "string", ("{archive_key_arn}",)))),
    Call("list its digests' prefix (a missing digest reads as 404)", ("s3:ListBucket",), "{bucket_arn}",
         (("s3:prefix", "string", ("{digest_key}",)),)),
    Call("encrypt and decrypt objects with the archive key through S3", ("kms:GenerateDataKey", "kms:Decrypt"),
         "{archive_key_arn}", (_via("s3"),)),
    Call("sign its digests", ("kms:Sign",), "{signing_key_arn}",
         (("kms:MessageType", "string", ("RAW",)), ("kms:SigningAlgorithm", "string", ("ECDSA_SHA_256",)))),
    Call("write its logs", ("logs:CreateLogStream", "logs:PutLogEvents"), "{log_stream_arn}"),
    Call("send its traces (Tracing: Active)", ("xray:PutTraceSegments", "xray:PutTelemetryRecords"), "*"),
)


def _fill(text: str, names: dict[str, str]) -> str:
    return text.format(**names)


# -- the stack's parts ----------------------------------------------------------------------------------------------


def _title(vendor: str) -> str:
    return adapter(vendor).title


@dataclass(frozen=True)
class Arn:
    partition: str
    region: str
    account: str

    @classmethod
    def of(cls, arn: str) -> Arn:
        parts = arn.split(":")
        return cls(parts[1], parts[3], parts[4])


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code"))


# -- the checks -----------------------------------------------------------------------------------------------------


class Doctor:
    def __init__(self, stack: Stack, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.stack = stack
        self.now = now
        self.where = Arn.of(stack.stack_id)
        self.client = stack.session.client

    def run(self) -> Iterator[Check]:
        """The checks in the order an operator fixes them: secrets, runs, alarms, schedules, permissions."""
        for vendor in VENDORS:
            yield self._guarded(f"secret {vendor}", lambda v=vendor: self.secret(v))
            for account in self.stack.accounts(vendor) or ():
                yield self._guarded(f"secret {vendor}@{account}", lambda v=vendor, a=account: self.secret(v, a))
        states: list[StreamState] | None = None
        try:
            states = self.stack.states()
        except ClientError as exc:
            yield self._refused("state table", exc)
        metrics = self._lambda_metrics()
        for vendor in VENDORS:
            if states is not None:
                yield self._guarded(f"runs {vendor}", lambda v=vendor: self.runs(v, states, metrics))
        yield self._guarded("alarm topic", self.alarm_topic)
        try:
            yield from self.schedules()
        except ClientError as exc:
            yield self._refused("schedules", exc)
        for vendor in VENDORS:
            yield self._guarded(f"permissions {vendor}", lambda v=vendor: self.permissions(v))

    def _guarded(self, name: str, check: Callable[[], Check]) -> Check:
        try:
            return check()
        except ClientError as exc:
            return self._refused(name, exc)

    @staticmethod
    def _refused(name: str, exc: ClientError) -> Check:
        error = exc.response.get("Error", {})
        return Check(name, False, f"AWS refused {exc.operation_name}: {error.get('Code')}: {error.get('Message')}",
                     f"run doctor with credentials that may call {exc.operation_name} on this stack's resources")

    def _fix_secret(self, vendor: str, account: str | None = None) -> str:
        chosen = "" if account is None else f" --account {account}"
        return f"run `auditlake secret set {vendor}{chosen} --stack {self.stack.stack}`"

    # -- secrets --------------------------------------------------------------------------------------------------

    def secret(self, vendor: str, account: str | None = None) -> Check:
        """The default account's secret, or a named account's (`<Title>Accounts`), which the operator creates."""
        name, title = f"secret {vendor}" + ("" if account is None else f"@{account}"), _title(vendor)
        cls = adapter(vendor)
        secret_id = self.stack.output(f"{title}TokenSecretArn") if account is None else \
            self.stack.output(f"{title}AccountSecretPrefix") + account
        try:
            raw = self.client("secretsmanager").get_secret_value(SecretId=secret_id).get("SecretString")
        except ClientError as exc:
            if _code(exc) != "ResourceNotFoundException":
                raise
            if account is not None:
                return Check(name, False, f"{secret_id} does not exist, though {title}Accounts names {account}",
                             self._fix_secret(vendor, account))
            return Check(name, False, f"{secret_id} does not exist",
                         f"deploy again with {title}SecretArn empty (the stack then creates it) or naming an "
                         "existing secret")
        try:
            value = parse_secret(vendor, secret_id, raw, cls.secret_fields)
        except AuditlakeError as exc:  # its message names the field, never a value
            return Check(name, False, str(exc), self._fix_secret(vendor, account))
        try:
            probe_vendor(vendor, value)
        except AuditLogsUnavailable as exc:
            return Check(name, False, f"{title} answered that this account cannot read audit logs: {exc}",
                         f"have an administrator of the {title} account give it what the message names, then run "
                         "doctor again")
        except AuditlakeError as exc:
            return Check(name, False, f"{title} refused it: {exc}", self._fix_secret(vendor, account))
        scope = ", ".join(f"{field} {value[field]}" for field in cls.secret_fields if field != "token")
        return Check(name, True, f"filled, and {title} accepted the token{' for ' + scope if scope else ''}")

    # -- runs -----------------------------------------------------------------------------------------------------

    @property
    def rate_minutes(self) -> int:
        return int(self.stack.parameters.get("ScheduleRateMinutes") or DEFAULT_RATE_MINUTES)

    def _lambda_metrics(self) -> dict[str, tuple[int, int]] | None:
        """Per vendor, (invocations, errors) of its function in the last METRIC_WINDOW: a run that fails before
        it reaches the state table (an unreadable secret, a denied call) shows only here. None if unreadable."""
        queries = []
        for index, vendor in enumerate(VENDORS):
            function = self.stack.output(f"{_title(vendor)}CollectorFunctionName")
            for metric in ("Invocations", "Errors"):
                queries.append({"Id": f"{metric.lower()}{index}", "ReturnData": True, "MetricStat": {
                    "Metric": {"Namespace": "AWS/Lambda", "MetricName": metric,
                               "Dimensions": [{"Name": "FunctionName", "Value": function}]},
                    "Period": int(METRIC_WINDOW.total_seconds()), "Stat": "Sum"}})
        end = self.now() + timedelta(minutes=1)  # EndTime is exclusive: the current minute's datapoints count
        sums: dict[str, float] = {}
        try:
            pages = self.client("cloudwatch").get_paginator("get_metric_data").paginate(
                MetricDataQueries=queries, StartTime=end - METRIC_WINDOW, EndTime=end)
            for page in pages:
                for result in page.get("MetricDataResults", []):
                    sums[result["Id"]] = sums.get(result["Id"], 0.0) + sum(result.get("Values", []))
        except ClientError:
            return None  # the state table still tells the runs' outcomes
        return {vendor: (int(sums.get(f"invocations{i}", 0)), int(sums.get(f"errors{i}", 0)))
                for i, vendor in enumerate(VENDORS)}

    def runs(self, vendor: str, states: list[StreamState], metrics: dict[str, tuple[int, int]] | None) -> Check:
        name = f"runs {vendor}"
        group = self.resources.get(f"{adapter(vendor).function_id()}LogGroup", "of the collector")
        live = [s for s in states if s.stream_key.vendor == vendor and s.stream_key.kind is Kind.LIVE]
        failed = [s for s in live if (s.status or {}).get("last_outcome") == "error"]
        if failed:
            error = (failed[0].status or {}).get("last_error") or "no error recorded"
            return Check(name, False, f"{len(failed)} of {len(live)} stream(s) failed their last run "
                                      f"({failed[0].key}: {error})",
                         "fix what the error names (`auditlake status --stack` shows every stream; the log group "
                         f"{group} has the details); the next scheduled run resumes where the last one committed")
        invocations, errors = metrics.get(vendor, (0, 0)) if metrics else (0, 0)
        if errors:
            return Check(name, False, f"{errors} of {invocations} invocation(s) in the last hour failed",
                         f"read the function's log group {group} for why (a failure before any stream ran, such "
                         "as an unreadable secret or a denied AWS call, is recorded only there)")
        period = timedelta(minutes=self.rate_minutes)
        runs = [parse_time(s.status["last_run_at"]) for s in live if (s.status or {}).get("last_run_at")]
        if not runs:
            return Check(name, False, "no run is recorded in the state table yet",
                         f"the schedule runs the collector every {self.rate_minutes} minutes once its secret is "
                         f"filled; run doctor again after the next run, and read {group} if still none")
        last = max(runs)
        age = self.now() - last
        if age > STALE_PERIODS * period:
            return Check(name, False, f"the last run was {_ago(age)} ago, though the schedule runs every "
                                      f"{self.rate_minutes} minutes",
                         f"check the schedules below and the log group {group}")
        backlog = [s for s in live if (s.status or {}).get("last_outcome") == "backlog"]
        note = f", {len(backlog)} still catching up" if backlog else ""
        return Check(name, True, f"last run {_ago(age)} ago, {len(live)} stream(s) ok{note}")

    # -- alarms ---------------------------------------------------------------------------------------------------

    def alarm_topic(self) -> Check:
        topic = self.stack.output("AlarmTopicArn")
        subscriptions: list[dict[str, Any]] = []
        for page in self.client("sns").get_paginator("list_subscriptions_by_topic").paginate(TopicArn=topic):
            subscriptions += page.get("Subscriptions", [])
        # SNS lists an unconfirmed subscription with the ARN "PendingConfirmation" (and a deleted one as "Deleted").
        confirmed = [s for s in subscriptions if str(s.get("SubscriptionArn", "")).startswith("arn:")]
        pending = [s for s in subscriptions if s.get("SubscriptionArn") == "PendingConfirmation"]
        if confirmed:
            who = ", ".join(f"{s.get('Protocol')} {s.get('Endpoint')}" for s in confirmed)
            more = f"; {len(pending)} more pending confirmation" if pending else ""
            return Check("alarm topic", True, f"{len(confirmed)} confirmed subscription(s): {who}{more}")
        if pending:
            who = ", ".join(str(s.get("Endpoint")) for s in pending)
            return Check("alarm topic", False, f"the subscription of {who} is pending confirmation, so no alarm "
                                               "reaches anyone",
                         "open the mail from AWS Notifications and confirm the subscription (the link expires "
                         f"after 3 days; then deploy again with AlarmEmail, or `aws sns subscribe --topic-arn "
                         f"{topic}`)")
        return Check("alarm topic", False, "nobody is subscribed, so no alarm reaches anyone",
                     "deploy again with the parameter AlarmEmail=<your address> and confirm the mail, or subscribe "
                     f"another endpoint with `aws sns subscribe --topic-arn {topic}`")

    # -- schedules ------------------------------------------------------------------------------------------------

    def schedules(self) -> Iterator[Check]:
        """The EventBridge Scheduler schedules whose target is a collector: its live one, enabled, and its
        reconciliation's, enabled unless ReconcileIntervalHours is 0. Found by their target, so a schedule deleted
        by hand is named missing."""
        scheduler = self.client("scheduler")
        functions = {self.stack.output(f"{_title(v)}CollectorFunctionName"): v for v in VENDORS}
        found: dict[tuple[str, str], list[dict[str, Any]]] = {}
        request: dict[str, Any] = {}
        while True:
            page = scheduler.list_schedules(**request)
            for summary in page.get("Schedules", []):
                target = str(summary.get("Target", {}).get("Arn", ""))
                vendor = functions.get(_function_name(target))
                if vendor is None or Arn.of(target).account != self.where.account:
                    continue
                schedule = scheduler.get_schedule(Name=summary["Name"], GroupName=summary.get("GroupName")
                                                  or "default")
                found.setdefault((vendor, _purpose(schedule)), []).append(schedule)
            if not page.get("NextToken"):
                break
            request = {"NextToken": page["NextToken"]}
        reconcile_on = str(self.stack.parameters.get("ReconcileIntervalHours", "24")).strip() not in {"0", "0.0"}
        for vendor in VENDORS:
            for purpose in ("collect", "reconcile"):
                yield self._schedule_check(vendor, purpose, found.get((vendor, purpose), []), reconcile_on)

    def _schedule_check(self, vendor: str, purpose: str, schedules: list[dict[str, Any]],
                        reconcile_on: bool) -> Check:
        name = f"schedule {vendor} {purpose}"
        if not schedules:
            return Check(name, False, f"no EventBridge Scheduler schedule invokes the {vendor} collector to "
                                      f"{purpose}",
                         "deploy the stack again with `sam deploy` (CloudFormation recreates only what it sees "
                         "changed: if it reports no changes, change the schedule's Description in "
                         "template/source.yaml and run `make template` for one deploy)")
        disabled = [s for s in schedules if s.get("State") != "ENABLED"]
        shown = ", ".join(f"{s['Name']} {s.get('ScheduleExpression', '')}".strip() for s in schedules)
        if purpose == "reconcile" and not reconcile_on:
            return Check(name, True, f"{shown}: {'disabled' if disabled else 'enabled'}, and "
                                     "ReconcileIntervalHours=0 turns scheduled reconciliations off")
        if disabled:
            return Check(name, False, f"{', '.join(s['Name'] for s in disabled)} is {disabled[0].get('State')}",
                         "enable it (EventBridge Scheduler console: select the schedule, Enable), as the template "
                         "declares it")
        return Check(name, True, f"{shown}: enabled")

    # -- permissions ----------------------------------------------------------------------------------------------

    def names(self, vendor: str) -> dict[str, str]:
        """The deployment's names the calls of `COLLECTOR_CALLS` are made on, for one collector."""
        p, r, a = self.where.partition, self.where.region, self.where.account
        stream = StreamKey(vendor, EXAMPLE_STREAM)
        start = datetime(2026, 1, 1, tzinfo=UTC)
        try:
            prefix = self.stack.output(f"{_title(vendor)}AccountSecretPrefix")
        except CliError:  # a stack deployed before accounts: the prefix its template would have
            prefix = f"auditlake/{self.stack.stack}/{vendor}/"
        return {
            "vendor": vendor, "region": r, "stream_key": str(stream),
            "account_stream_key": str(StreamKey(vendor, EXAMPLE_STREAM, account=EXAMPLE_STREAM)),
            "secret_arn": self.stack.output(f"{_title(vendor)}TokenSecretArn"),
            # Any account's: the six characters Secrets Manager adds to a secret's name in its ARN are its own.
            "account_secret_arn": f"arn:{p}:secretsmanager:{r}:{a}:secret:{prefix}{EXAMPLE_STREAM}-AbCdEf",
            "archive_key_arn": self.stack.output("ArchiveKeyArn"),
            "signing_key_arn": self.stack.output("DigestSigningKeyArn"),
            "table_arn": f"arn:{p}:dynamodb:{r}:{a}:table/{self.stack.output('StateTableName')}",
            "bucket_arn": f"arn:{p}:s3:::{self.stack.output('ArchiveBucketName')}",
            "events_key": object_key(vendor, date(2026, 1, 1), EXAMPLE_STREAM,
                                     window_id(start, start + timedelta(minutes=5)), 0),
            "digest_key": digest_key(stream, 1),
            "log_stream_arn": f"arn:{p}:logs:{r}:{a}:log-group:{self.log_group(vendor)}"
                              ":log-stream:2026/01/01/[$LATEST]0",
        }

    @functools.cached_property
    def resources(self) -> dict[str, str]:
        """The stack's resources: logical id -> physical id (a role's name, a log group's name)."""
        cloudformation = self.client("cloudformation")
        return {resource["LogicalResourceId"]: resource["PhysicalResourceId"]
                for page in cloudformation.get_paginator("list_stack_resources").paginate(StackName=self.stack.stack_id)
                for resource in page.get("StackResourceSummaries", [])}

    def log_group(self, vendor: str) -> str:
        """The collector's log group, the stack's `<Title>CollectorLogGroup`."""
        logical = f"{adapter(vendor).function_id()}LogGroup"
        if logical not in self.resources:
            raise LookupError(logical)
        return self.resources[logical]

    def role_arn(self, vendor: str) -> str:
        """The collector's role, the stack's `<Title>CollectorRole`."""
        logical = f"{adapter(vendor).function_id()}Role"
        if logical not in self.resources:
            raise LookupError(logical)
        return str(self.client("iam").get_role(RoleName=self.resources[logical])["Role"]["Arn"])

    def permissions(self, vendor: str) -> Check:
        name = f"permissions {vendor}"
        try:
            role = self.role_arn(vendor)
            names = self.names(vendor)
        except LookupError as missing:
            return Check(name, False, f"the stack has no resource {missing}; is it deployed from the current "
                                      "template?", "deploy the current template with `sam deploy`")
        iam = self.client("iam")
        denied: list[str] = []
        blocked_by: set[str] = set()
        for call in COLLECTOR_CALLS:
            resource = _fill(call.resource, names)
            context = [{"ContextKeyName": key, "ContextKeyType": kind, "ContextKeyValues": [_fill(v, names)
                                                                                              for v in values]}
                       for key, kind, values in call.context]
            request: dict[str, Any] = {"PolicySourceArn": role, "ActionNames": list(call.actions),
                                       "ResourceArns": [resource]}
            if context:
                request["ContextEntries"] = context
            for result in iam.simulate_principal_policy(**request).get("EvaluationResults", []):
                if result.get("EvalDecision") == "allowed":
                    continue
                denied.append(f"{result['EvalActionName']} on {resource} (to {call.what})")
                if result.get("OrganizationsDecisionDetail", {}).get("AllowedByOrganizations") is False:
                    blocked_by.add("an SCP of the organization")
                if result.get("PermissionsBoundaryDecisionDetail", {}).get("AllowedByPermissionsBoundary") is False:
                    blocked_by.add("the role's permissions boundary")
        role_name = role.rpartition("/")[2]
        if not denied:
            return Check(name, True, f"the IAM policy simulator allows role {role_name} every call the collector "
                                     f"makes ({sum(len(c.actions) for c in COLLECTOR_CALLS)} actions)")
        if blocked_by:
            fix = (f"ask your AWS administrator to exempt role {role_name} from {' and '.join(sorted(blocked_by))} "
                   "for these actions")
        else:
            fix = ("deploy the current template (`sam deploy`), whose collector policy grants them; if it is "
                   "deployed, restore the role's policy that was changed by hand")
        return Check(name, False, f"role {role_name} may not call {'; '.join(denied)}", fix)


def _function_name(arn: str) -> str:
    """`arn:aws:lambda:region:account:function:NAME[:qualifier]` -> NAME."""
    parts = arn.split(":")
    return parts[6] if len(parts) > 6 and parts[2] == "lambda" and parts[5] == "function" else ""


def _purpose(schedule: dict[str, Any]) -> str:
    """A reconciliation's schedule sends `{"reconcile": {}}`; the live collection's sends `{}`."""
    try:
        sent = json.loads(schedule.get("Target", {}).get("Input") or "{}")
    except ValueError:
        sent = {}
    return "reconcile" if isinstance(sent, dict) and "reconcile" in sent else "collect"


def _ago(age: timedelta) -> str:
    seconds = int(max(0.0, age.total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"
