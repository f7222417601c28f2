"""The record line and the time helpers: the hot path of every event, written for speed, checked for meaning."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from auditlake.records import COLUMNS, Normalised, record_line
from auditlake.timeutil import parse_event_time, parse_time, to_iso

EVENT = {"gid": "1", "nested": {"list": [1, 2.5, None, True, "ü"]}, "quote": 'say "hi"\\', "control": "\u0000\n",
         "separator": "\u2028", "emoji": "🙂"}


def test_a_record_line_is_the_record_encoded_as_one_json_object_in_column_order() -> None:
    normalised = Normalised(action='role "admin"\n', category=None, actor_id="42", actor_email="é@example.com",
                            target_name="\u2028", outcome="success")
    line = record_line(event_id="e-1", event_time=datetime(2026, 11, 22, 10, 15, 0, 123456, tzinfo=UTC),
                       stream="1200", normalised=normalised, collected_at="2026-11-22T10:20:00.000Z", raw=EVENT)
    record = json.loads(line)
    assert list(record) == list(COLUMNS)
    assert line.endswith(b"}\n") and line.count(b"\n") == 1  # one line, whatever the strings hold
    expected = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
    assert line == expected.encode()
    assert record["event_time"] == "2026-11-22T10:15:00.123Z"
    assert record["action"] == 'role "admin"\n' and record["category"] is None and record["actor_id"] == "42"
    assert json.loads(record["raw"]) == EVENT
    assert record["account"] == "default"  # a caller that names no account writes the vendor's default one


def test_the_account_column_follows_stream_and_holds_the_account_named() -> None:
    assert COLUMNS[COLUMNS.index("stream") + 1] == "account"
    fields = {"event_id": "e-1", "event_time": datetime(2026, 11, 22, tzinfo=UTC), "stream": "4190",
              "normalised": Normalised(action="scenario_updated"), "collected_at": "2026-11-22T10:20:00.000Z",
              "raw": EVENT}
    named = record_line(**fields, account="us-sub")
    record = json.loads(named)
    assert list(record) == list(COLUMNS) and record["account"] == "us-sub" and record["stream"] == "4190"
    # Apart from the account's value, the bytes are those of the default account's record.
    assert named.replace(b'"account":"us-sub"', b'"account":"default"') == record_line(**fields)


def test_normalised_fields_are_the_records_vendor_columns_in_order() -> None:
    assert Normalised._fields == COLUMNS[COLUMNS.index("account") + 1: -2]


@pytest.mark.parametrize(("value", "expected"), [
    ("2026-11-22T10:15:00.123Z", "2026-11-22T10:15:00.123Z"),
    ("2026-11-22T12:15:00.123456+02:00", "2026-11-22T10:15:00.123Z"),
    (1795342500123, "2026-11-22T10:15:00.123Z"),
    (1795342500, "2026-11-22T10:15:00.000Z"),
    ("1795342500123", "2026-11-22T10:15:00.123Z"),
])
def test_event_times_parse_to_utc_milliseconds(value: object, expected: str) -> None:
    assert to_iso(parse_event_time(value, "created_at")) == expected


@pytest.mark.parametrize("value", ["2026-11-22T10:15:00", "yesterday", "", None, True, [], {"t": 1}])
def test_an_event_time_without_a_zone_or_not_a_time_is_refused_naming_the_field(value: object) -> None:
    with pytest.raises(ValueError, match="created_at"):
        parse_event_time(value, "created_at")


def test_parse_time_takes_a_zoneless_time_as_utc() -> None:
    assert parse_time("2026-11-22T10:15:00") == datetime(2026, 11, 22, 10, 15, tzinfo=UTC)


def test_to_iso_converts_to_utc_and_keeps_milliseconds() -> None:
    assert to_iso(datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=-5)))) == \
        "2026-01-02T08:04:05.678Z"
    assert to_iso(datetime(2026, 1, 2, tzinfo=UTC)) == "2026-01-02T00:00:00.000Z"
