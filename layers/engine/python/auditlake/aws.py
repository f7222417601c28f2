"""AWS clients, one per Lambda container (creating them costs more than a whole idle tick)."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

import boto3
import botocore

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

# The first release whose S3 model has PutObject's IfNoneMatch (botocore 1.35.1 has none; boto3 1.35.2 requires
# botocore 1.35.2). Every archived object and digest is written with it, and the bucket policy denies uploads
# without it, so an older runtime SDK would fail every write: the engine says why at cold start instead. The SDK is
# the runtime's (layers/engine/runtime-provided.txt), so a runtime update can change it.
MINIMUM_BOTOCORE = "1.35.2"


class SdkTooOld(RuntimeError):
    """The runtime's boto3/botocore lacks a parameter the engine sends."""


def check_s3_client(s3: Any) -> None:
    members = s3.meta.service_model.operation_model("PutObject").input_shape.members
    if "IfNoneMatch" not in members:
        raise SdkTooOld(f"botocore {botocore.__version__} cannot send If-None-Match on PutObject, which every archive "
                        f"write needs: the function needs botocore >= {MINIMUM_BOTOCORE} (boto3 >= "
                        f"{MINIMUM_BOTOCORE}); package that SDK version with the function or use a newer runtime")


@cache
def client(service: str) -> Any:
    made = boto3.client(service)
    if service == "s3":
        check_s3_client(made)
    return made


@cache
def secrets_provider() -> SecretsProvider:
    # Imported here: the operator's command line parses secrets (auditlake.secrets) without Powertools installed.
    from aws_lambda_powertools.utilities.parameters import SecretsProvider  # noqa: PLC0415

    return SecretsProvider(boto3_client=client("secretsmanager"))


def reset() -> None:
    """Forgets the clients and cached secrets (for tests that build a fresh in-process AWS)."""
    client.cache_clear()
    secrets_provider.cache_clear()
