"""Every AWS API call the code makes, recorded at botocore with the principal that would make it in AWS.

Inside `LocalStack.invoke(function_id)` a collector runs as its own role (`<function_id>Role`); `auditlake verify`
and `verify_archive` run as an auditor with the AuditorPolicy; the CLI's other `--stack` commands as an operator
(AdministratorAccess). Calls outside these (the tests' own set-up and checks) belong to no principal and are not
recorded. `check` authorises what was recorded against the translated template (tests/iam_model.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import iam_model
from botocore.client import BaseClient
from iam_model import Decision, Deployment, Unmodelled


@dataclass
class Call:
    principal: str
    stack: Any  # the LocalStack whose names the call uses
    service: str
    operation: str
    params: dict[str, Any]
    secure_transport: bool
    hints: dict[str, Any] = field(default_factory=dict)  # names AWS returns that IAM authorizes on (a stack's id)

    def line(self) -> str:
        return f"{self.principal} {self.service}:{self.operation}"


# A plain stack, not a ContextVar: verify reads objects in worker threads, which a ContextVar would not reach.
_PRINCIPAL: list[tuple[str, Any]] = []
CALLS: list[Call] = []
_WORKGROUP: dict[str, str] = {}


@contextmanager
def as_principal(principal: str, stack: Any) -> Iterator[None]:
    _PRINCIPAL.append((principal, stack))
    try:
        yield
    finally:
        _PRINCIPAL.pop()


_HINTS = {("cloudformation", "DescribeStacks"): lambda r: {"StackId": r["Stacks"][0]["StackId"]},
          ("secretsmanager", "GetSecretValue"): lambda r: {"ARN": r["ARN"]},
          ("secretsmanager", "PutSecretValue"): lambda r: {"ARN": r["ARN"]},
          ("secretsmanager", "CreateSecret"): lambda r: {"ARN": r["ARN"]},
          ("athena", "GetQueryExecution"): lambda r: {"WorkGroup": r["QueryExecution"].get("WorkGroup")}}


@contextmanager
def recording() -> Iterator[None]:
    real = BaseClient._make_api_call

    def record(client: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        if not _PRINCIPAL:
            return real(client, operation, params)
        who = _PRINCIPAL[-1]
        service = client.meta.service_model.service_name
        endpoint = str(client.meta.endpoint_url)
        # A stack on a moto server (LocalStack.serve) stands in for AWS's HTTPS endpoints: its plain HTTP on
        # loopback is the test's, not the code's.
        secure = endpoint.startswith("https://") or endpoint == getattr(who[1], "endpoint", None)
        call = Call(who[0], who[1], service, operation, dict(params), secure_transport=secure)
        if service == "athena":
            # Athena authorizes a call on a query execution or a named query on the workgroup it belongs to, which
            # the call does not name: the workgroup this principal last named.
            if params.get("WorkGroup"):
                _WORKGROUP[who[0]] = params["WorkGroup"]
            elif who[0] in _WORKGROUP:
                call.hints = {"WorkGroup": _WORKGROUP[who[0]]}
        CALLS.append(call)
        response = real(client, operation, params)
        hint = _HINTS.get((service, operation))
        if hint and not call.hints:
            with suppress(KeyError, IndexError, TypeError):
                call.hints = hint(response)
        if service == "secretsmanager" and operation in ("GetSecretValue", "PutSecretValue") and "ARN" in call.hints:
            # The key Secrets Manager uses for the caller: a secret the template does not declare (a named
            # account's, which the operator creates) names it only in its metadata. Read unrecorded, as AWS reads it.
            described = real(client, "DescribeSecret", {"SecretId": call.hints["ARN"]})
            if described.get("KmsKeyId"):
                call.hints = {**call.hints, "KmsKeyId": described["KmsKeyId"]}
        return response

    BaseClient._make_api_call = record  # type: ignore[method-assign]
    try:
        yield
    finally:
        BaseClient._make_api_call = real  # type: ignore[method-assign]


@dataclass
class Checked:
    call: Call
    decisions: list[Decision]
    deployment: Deployment
    error: str | None = None  # unmodelled

    @property
    def denied(self) -> list[Decision]:
        return [d for d in self.decisions if not d.allowed]


def check(calls: list[Call], template: dict[str, Any] | None = None) -> list[Checked]:
    """Each call's requests, authorised; a template other than the translated one (a planted defect) may be given."""
    deployments: dict[int, Deployment] = {}
    out = []
    for call in calls:
        key = id(call.stack)
        if key not in deployments:
            deployments[key] = Deployment.of_stack(call.stack, template)
        deployment = deployments[key]
        try:
            requests = iam_model.requests_for(call.service, call.operation, call.params, deployment, call.hints)
            decisions = [iam_model.authorize(deployment, call.principal, r, secure_transport=call.secure_transport)
                         for r in requests]
        except Unmodelled as exc:
            out.append(Checked(call, [], deployment, str(exc)))
            continue
        out.append(Checked(call, decisions, deployment))
    return out


def problems(checked: list[Checked]) -> list[str]:
    """One line per call AWS would refuse, or that the model cannot decide, naming the call and the request."""
    lines = []
    for item in checked:
        if item.error:
            lines.append(f"{item.call.line()}: cannot be authorised: {item.error}")
        for decision in item.denied:
            lines.append(f"{item.call.line()}: {decision.request.action} on {decision.request.resource}"
                         f"{' via ' + decision.request.via if decision.request.via else ''}: {decision.reason}")
    return lines


def table(checked: list[Checked]) -> list[tuple[str, str, str, str]]:
    """Distinct (principal, action [via service], resource pattern, allowing statements)."""
    rows = set()
    for item in checked:
        for decision in item.decisions:
            if decision.allowed:
                via = f" via {decision.request.via}" if decision.request.via else ""
                patterns = "; ".join(sorted({item.deployment.pattern(p) for p in decision.patterns}))
                rows.add((item.call.principal, decision.request.action + via, patterns,
                          ", ".join(sorted(set(decision.allowed_by)))))
    return sorted(rows)
