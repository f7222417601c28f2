"""The archive's record: one JSON line per event, the same columns for every vendor.

`raw` keeps the vendor's event verbatim; the other columns are what a cross-vendor query needs. The Glue table
in template.yaml declares exactly these columns, in this order. `account` names the vendor account the event was
collected from ("default" for the vendor's first secret); objects written before it existed lack it, and the views
read that as "default".
"""

from __future__ import annotations

import json
from collections.abc import Callable
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


def parsed_json_encoder(encoder: json.JSONEncoder) -> Callable[[Any], str]:
    """`encoder.encode`, faster, for values parsed from JSON: the C encoder behind it made once (encode builds one
    per call), without tracking every container for cycles (parsed JSON has none): a third less per event. The
    same text; plain `encoder.encode` where CPython's _json accelerator is missing."""
    make = json.encoder.c_make_encoder
    if make is None or encoder.indent is not None:
        return encoder.encode
    string = json.encoder.encode_basestring_ascii if encoder.ensure_ascii else json.encoder.encode_basestring
    # The arguments JSONEncoder.iterencode passes, but markers None: no cycle check.
    c_encode = make(None, encoder.default, string, encoder.indent, encoder.key_separator, encoder.item_separator,
                    encoder.sort_keys, encoder.skipkeys, encoder.allow_nan)
    return lambda value: "".join(c_encode(value, 0))


_encode = parsed_json_encoder(json.JSONEncoder(ensure_ascii=False, separators=(",", ":")))
_quote = json.encoder.encode_basestring  # a str as a JSON string literal, exactly as _encode writes strings
# The record as a template with one slot per column. Filling it value by value is a third of the cost of encoding
# a dict, and `raw` is the vendor's event encoded once, then quoted. Two slots hold their own quotes, saving a copy
# each: event_time (to_iso's text has nothing to escape) and raw.
_QUOTED_SLOTS = frozenset({"event_time", "raw"})
_LINE = "{" + ",".join(f'"{column}":"%s"' if column in _QUOTED_SLOTS else f'"{column}":%s' for column in COLUMNS) \
    + "}\n"


def _escape_json(encoded: str) -> str:
    """_quote of a compact JSON text, without the quotes, faster: such a text holds no control character (its
    strings escape them), so only backslashes and quotes are escaped."""
    return encoded.replace("\\", "\\\\").replace('"', '\\"')


def record_line(*, event_id: str, event_time: datetime, stream: str, normalised: Normalised,
                collected_at: str, raw: Any, account: str = "default") -> bytes:
    """One NDJSON line (with its newline), UTF-8, the columns in order."""
    # Columns are text or None (see `text`); anything else fails in _quote, and the engine refuses the page.
    return (_LINE % (_quote(event_id), to_iso(event_time), _quote(stream), _quote(account),
                     *["null" if value is None else _quote(value) for value in normalised], _quote(collected_at),
                     _escape_json(_encode(raw)))).encode()
