"""AWS clients, one per Lambda container (creating them costs more than a whole idle tick)."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools.utilities.parameters import SecretsProvider


@cache
def client(service: str) -> Any:
    return boto3.client(service)


@cache
def secrets_provider() -> SecretsProvider:
    return SecretsProvider(boto3_client=client("secretsmanager"))


def reset() -> None:
    """Forgets the clients and cached secrets (for tests that build a fresh in-process AWS)."""
    client.cache_clear()
    secrets_provider.cache_clear()
