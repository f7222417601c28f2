"""The archive's record: one JSON line per event, the same columns for every vendor.

`raw` keeps the vendor's event verbatim; the other columns are what a cross-vendor query needs. The Glue table
in template.yaml declares exactly these columns, in this order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from auditlake.timeutil import to_iso

COLUMNS = (
    "event_id", "event_time", "stream", "action", "category", "actor_id", "actor_email", "actor_name", "actor_type",
    "target_id", "target_type", "target_name", "source_ip", "user_agent", "outcome", "collected_at", "raw",
)


@dataclass(frozen=True, slots=True)
class Normalised:
    """What an adapter reads out of one vendor event; None where the vendor has no such field."""

    action: str | None = None
    category: str | None = None
    actor_id: str | None = None
    actor_email: str | None = None
    actor_name: str | None = None
    actor_type: str | None = None
    target_id: str | None = None
    target_type: str | None = None
    target_name: str | None = None
    source_ip: str | None = None
    user_agent: str | None = None
    outcome: str | None = None  # "success" | "failure" | None when the vendor does not say


def text(value: Any) -> str | None:
    """A column value as text: ids may arrive as numbers; empty strings mean absent."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def record_line(*, event_id: str, event_time: datetime, stream: str, normalised: Normalised,
                collected_at: str, raw: Any) -> bytes:
    """One NDJSON line (with its newline), UTF-8."""
    record = {
        "event_id": event_id,
        "event_time": to_iso(event_time),
        "stream": stream,
        "action": normalised.action,
        "category": normalised.category,
        "actor_id": normalised.actor_id,
        "actor_email": normalised.actor_email,
        "actor_name": normalised.actor_name,
        "actor_type": normalised.actor_type,
        "target_id": normalised.target_id,
        "target_type": normalised.target_type,
        "target_name": normalised.target_name,
        "source_ip": normalised.source_ip,
        "user_agent": normalised.user_agent,
        "outcome": normalised.outcome,
        "collected_at": collected_at,
        "raw": _encode(raw),
    }
    return (_encode(record) + "\n").encode()
