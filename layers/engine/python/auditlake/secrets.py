"""Vendor secrets: a JSON object in Secrets Manager, loaded through Powertools with caching."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from auditlake import aws
from auditlake.errors import SecretError

PLACEHOLDER = "REPLACE_ME"


def load_secret(vendor: str, secret_id: str, required: tuple[str, ...], max_age: int) -> dict[str, str]:
    """The secret's fields; a clear SecretError (naming the field, never a value) for anything unusable."""
    try:
        raw = aws.secrets_provider().get(secret_id, max_age=max_age)
    except Exception as exc:
        # Powertools raises GetParameterError inside its handler: the service's error is the context, not the cause.
        cause = next((e for e in (exc.__cause__, exc.__context__) if isinstance(e, ClientError)), exc)
        code = cause.response["Error"]["Code"] if isinstance(cause, ClientError) else type(cause).__name__
        raise SecretError(f"{vendor} secret {secret_id} could not be read ({code})") from None
    return parse_secret(vendor, secret_id, raw, required)


def parse_secret(vendor: str, secret_id: str, raw: Any, required: tuple[str, ...]) -> dict[str, str]:
    where = f"{vendor} secret {secret_id}"
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        raise SecretError(f"{where} is not JSON; expected an object with fields {', '.join(required)}") from None
    if not isinstance(value, dict):
        raise SecretError(f"{where} is JSON but not an object; expected fields {', '.join(required)}")
    for name in (*required, "base_url"):
        present = name in value and value[name] not in (None, "")
        if not present:
            if name == "base_url":
                continue
            raise SecretError(f"{where} is missing field '{name}'")
        if not isinstance(value[name], str | int) or isinstance(value[name], bool):
            raise SecretError(f"{where} field '{name}' must be a string")
        if str(value[name]).strip() == PLACEHOLDER:
            raise SecretError(f"{where} field '{name}' still holds the placeholder; put the real value in place")
    base_url = str(value.get("base_url") or "")
    if base_url and not base_url.startswith(("https://", "http://")):
        raise SecretError(f"{where} field 'base_url' must be an http(s) URL")
    return {k: str(v).strip() for k, v in value.items() if k in (*required, "base_url") and v not in (None, "")}
