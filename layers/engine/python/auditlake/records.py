"""The archive's record: one JSON line per event, the same columns for every vendor.

`raw` keeps the vendor's event verbatim; the other columns are what a cross-vendor query needs. The Glue table
in template.yaml declares exactly these columns, in this order. `account` names the vendor account the event was
collected from ("default" for the vendor's first secret); objects written before it existed lack it, and the views
read that as "default".
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, NamedTuple

from auditlake.timeutil import to_iso

COLUMNS = (
    "event_id", "event_time", "stream", "account", "action", "category", "actor_id", "actor_email", "actor_name",
    "actor_type", "target_id", "target_type", "target_name", "source_ip", "user_agent", "outcome", "collected_at",
    "raw",
)


class Normalised(NamedTuple):
    """What an adapter reads out of one vendor event; None where the vendor has no such field. (A named tuple: built
    once per event, it costs a fifth of a frozen dataclass.)"""

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
_quote = json.encoder.encode_basestring  # a str as a JSON string literal, exactly as _encode writes strings
# The record as a template with one slot per column. Filling it value by value is a third of the cost of encoding
# a dict, and `raw` is the vendor's event encoded once, then quoted.
_LINE = "{" + ",".join(f'"{column}":%s' for column in COLUMNS) + "}\n"


def _json(value: str | None) -> str:
    # Columns are text or None (see `text`); anything else fails here, and the engine refuses the page.
    return "null" if value is None else _quote(value)


def record_line(*, event_id: str, event_time: datetime, stream: str, normalised: Normalised,
                collected_at: str, raw: Any, account: str = "default") -> bytes:
    """One NDJSON line (with its newline), UTF-8, the columns in order."""
    return (_LINE % (_quote(event_id), _quote(to_iso(event_time)), _quote(stream), _quote(account),
                     *map(_json, normalised), _quote(collected_at), _quote(_encode(raw)))).encode()
