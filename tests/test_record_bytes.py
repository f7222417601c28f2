"""The archive's bytes, pinned: per vendor, a response body of awkward JSON goes through the HTTP client's parsing,
the adapter's `fetch_page`, `event_id`, `event_time` and `normalise`, and `record_line`, as the engine calls them;
the lines must equal, byte for byte, those the collector wrote before its per-event code was optimised
(tests/record_lines/<vendor>.ndjson). A faster path that changes one byte of a record fails here.

The expected files were generated once from the code before the optimisation, and are not regenerated from the
code under test: `python tests/test_record_bytes.py` rewrites them, to be run only for a deliberate format change.
"""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

import auditlake_vendors
from auditlake.archive import PartBuilder
from auditlake.deadline import Deadline
from auditlake.http import HttpClient
from auditlake.records import Normalised, parsed_json_encoder, record_line
from auditlake.state import StreamKey
from auditlake.timeutil import to_iso
from auditlake.vendor import Window

EXPECTED = Path(__file__).parent / "record_lines"
COLLECTED_AT = to_iso(datetime(2026, 11, 22, 12, 0, 0, 987654, tzinfo=UTC))
WINDOW = Window(datetime(2026, 11, 22, 9, 0, tzinfo=UTC), datetime(2026, 11, 22, 11, 0, tzinfo=UTC))

# Strings every vendor's events carry somewhere: escapes of every kind JSON has, characters outside ASCII (raw and
# escaped, a surrogate pair among them), separators JavaScript treats as line ends, and controls.
TRICKY = (rb'"escapes": "esc\"aped \\ back\/slash \b\f\n\r\t \u0000\u001f\u007f", "non_ascii": '
          + '"Gr\u00fc\u00dfe \u65e5\u672c Zo\u00eb \u05e9\u05dc\u05d5\u05dd \U0001f642 caf\u00e9"'.encode()
          + rb', "escaped_non_ascii": "\u00e9\u4e2d\ud83d\ude00\u2028\u2029"')
NUMBERS = (rb'"numbers": [0, -0, -0.0, 1.0, 1.50, 1e5, 1E-7, 2.5e+3, 3.141592653589793, 0.1, 1e400, -1e400, '
           rb'123456789012345678901234567890, -9223372036854775809, 1.7976931348623157e308, 5e-324]')

# Whitespace JSON allows anywhere between tokens: tabs, CR LF, runs of spaces; keys repeated (the last one wins).
BODIES: dict[str, bytes] = {
    "asana": b'\xef\xbb\xbf  {\r\n\t"data" :\t[\r\n'  # a byte order mark first, which the client strips
             b'  {"gid": "1200000000000001", "created_at": "2026-11-22T10:15:00.123456Z", "event_type": '
             b'"user_login_succeeded", "event_category": "logins", "actor": {"gid": 1200000000000002, "email": '
             b'"J\xc3\xbcrgen@example.com", "name": "J\\u00fcrgen \\"JJ\\" M\\u00fcller", "actor_type": "user"}, '
             b'"resource": {"gid": "", "resource_type": "user", "name": "", "email": "x@example.com"}, "context": '
             b'{"client_ip_address": "2001:db8::1", "user_agent": "Mozilla/5.0 (X11; \\u00e9)\\t\\n"}, "details": '
             b'{' + TRICKY + b', ' + NUMBERS + b'}},\n'
             b'  {"gid": 1200000000000003, "created_at": "2026-11-22T12:15:00.5+02:00", "event_type": '
             b'"task_deleted_failed", "event_category": null, "actor": {"gid": 7, "actor_type": "asana"}, '
             b'"resource": {"gid": 42.5, "resource_type": "task", "name": {"nested": ["\xc3\xa9", 1, true]}}, '
             b'"context": {}, "dup": 1, "dup": 2, "empty": {}, "list": [], "deep": {"a": {"b": {"c": {"d": '
             b'[[[null]]]}}}}},\n'
             b'  {"gid": 123456789012345678901234567890, "created_at": 1795342500123, "event_type": "", '
             b'"actor": null, "resource": null, "context": null, "flag": false, "t": 1795342500999.0}\n'
             b'\t]  , "next_page": {"offset": "eyJvZmZzZXQiOjF9", "path": "/x", "uri": "https://x"} }\r\n',
    "ashby": b'{"success":true,"results":[\n'
             b'{"id":"a1b2c3","createdAt":"2026-11-22T10:59:59.999Z","category":"UserLoginFailed","actor":{"id":'
             b'"u-1","email":"\\u00e9ve@example.com","name":"\xc3\x88ve \\/ Admin","type":"User"},"target":{"id":'
             b'99,"type":"User","name":"\\u0000null byte"},"ipAddress":"10.0.0.1","details":{' + TRICKY + b','
             + NUMBERS + b'}},\n'
             b'{"id":77,"occurredAt":"2026-11-22T09:00:00+00:00","category":"JobStatusChanged","actor":"system",'
             b'"target":{"id":"j-1","type":"Job","name":"Senior \\"Rust\\" Engineer \xe2\x80\xa8"},"details":{'
             b'"ipAddress":"192.0.2.7","userAgent":"curl/8.0"},"dup":"a","dup":"b"},\n'
             b'{"id":"z","timestamp":1795337700000,"category":null,"actor":{"id":12345678901234567890},'
             b'"target":{"id":true,"type":"","name":1.5},"details":"not an object","unicode_key_\xc3\xa9":1}\n'
             b'],"moreDataAvailable":false,"nextCursor":null,"warnings":[]}',
    # Newest first, inside the window: rows with an id (text, number) and without one (keyed by their content).
    "clickup": b'{ "data" : [\n'
               b' {"id":"cu-1","startTime":1795345199999,"endTime":1795345200000,"eventType":"LOGIN","eventStatus":'
               b'"success","userId":81000001,"userEmail":"\xc3\xa1ngel@example.com","userName":"\\u00c1ngel",'
               b'"clientIp":"203.0.113.9","payload":{' + TRICKY + b',' + NUMBERS + b'}},\n'
               b' {"startTime":"2026-11-22T10:15:00.123Z","eventType":"FIELD_UPDATED","eventStatus":"system_error",'
               b'"userEmail":"","workspaceId":9015000001,"before":{"v":"\xe6\x97\xa5"},"after":{"v":"\\u65e5"}},\n'
               b' {"startTime":"2026-11-22T10:15:00.123Z","eventType":"FIELD_UPDATED","eventStatus":"system_error",'
               b'"userEmail":"","workspaceId":9015000001,"before":{"v":"\xe6\x97\xa5"},"after":{"v":"\\u65e5"}},\n'
               b' {"id":4242,"startTime":"1795338000000","eventType":null,"eventStatus":"skipped","userId":"",'
               b'"extra":[1,2.0,-3e2,"\\ud83d\\ude00"]},\n'
               b' {"id":"cu-5","startTime":1795338000000,"eventStatus":"unknown","userId":"u5"}\n'
               b']}\n',
    # Oldest first, by triggeredAt; the count says this page holds the whole query.
    "make": b'{"auditLogs":[\r\n'
            b'{"uuid":"0b3c2d1e-0000-4000-8000-000000000001","eventName":"scenario_updated","triggeredAt":'
            b'"2026-11-22T09:00:00.000Z","organizationId":4190,"teamId":null,"actor":{"id":1,"name":"Ren\xc3\xa9e",'
            b'"email":"renee@example.com"},"targetId":3005,"data":{' + TRICKY + b',' + NUMBERS + b'}},\r\n'
            b'{"uuid":"0b3c2d1e-0000-4000-8000-000000000002","eventName":"user_role_changed","triggeredAt":'
            b'"2026-11-22T10:30:00.000001+01:00","createdAt":"2026-11-22T09:30:01Z","actor":{},"targetId":"",'
            b'"data":{"role":"admin","dup":1,"dup":2}},\r\n'
            b'{"uuid":"0b3c2d1e-0000-4000-8000-000000000003","eventName":"organization_variable_created_failed",'
            b'"triggeredAt":null,"createdAt":1795341600000,"actor":{"id":2.0,"name":"\\u05e9\\u05dc\\u05d5\\u05dd",'
            b'"email":null},"targetId":12345678901234567890123},\r\n'
            b'{"uuid":"0b3c2d1e-0000-4000-8000-000000000004","eventName":"","triggeredAt":"2026-11-22T10:59:59.999Z",'
            b'"actor":null,"targetId":{"id":5}}\r\n'
            b'],"pg":{"sortBy":"triggeredAt","sortDir":"asc","offset":0,"limit":100,"totalCount":4}}',
}
STREAMS = {"asana": "1200000000000000", "ashby": "organization", "clickup": "9015000001:auth-and-security",
           "make": "4190"}
SECRETS = {
    "asana": {"token": "t", "workspace_gid": STREAMS["asana"]},
    "ashby": {"token": "t"},
    "clickup": {"token": "pk_1", "workspace_id": "9015000001"},
    "make": {"token": "t", "organization_id": "4190", "zone": "eu1"},
}


class _Session:
    """Answers every request with the vendor's body, as a requests.Session would (status 200, JSON)."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def request(self, method: str, url: str, **_: Any) -> requests.Response:
        response = requests.Response()
        response.status_code = 200
        response._content = self.body  # the body exactly as the vendor sent it
        response.headers["Content-Type"] = "application/json; charset=ISO-8859-1"  # the client ignores it
        response.url = url
        return response


def record_lines(vendor: str) -> bytes:
    """The vendor's records for its body, built as the engine builds them (engine.py `_StreamRun._add_page`)."""
    cls = auditlake_vendors.adapter(vendor)
    secret = SECRETS[vendor]
    http = HttpClient(vendor, cls.base_url(secret), headers=cls.auth_headers(secret),
                      error_details=cls.error_details, deadline=Deadline(lambda: 900_000, timedelta(seconds=30)),
                      session=_Session(BODIES[vendor]))  # type: ignore[arg-type]
    adapter = cls(secret, http, 100)
    stream = STREAMS[vendor]
    page = adapter.fetch_page(stream, WINDOW, None)
    assert len(page.events) >= 3
    return b"".join(record_line(event_id=adapter.event_id(event), event_time=adapter.event_time(event),
                                stream=stream, account="us-sub" if vendor == "make" else "default",
                                normalised=adapter.normalise(event, stream), collected_at=COLLECTED_AT, raw=event)
                    for event in page.events)


@pytest.mark.parametrize("vendor", sorted(BODIES))
def test_records_are_byte_identical_to_those_written_before(vendor: str) -> None:
    expected = (EXPECTED / f"{vendor}.ndjson").read_bytes()
    actual = record_lines(vendor)
    assert actual.splitlines() == expected.splitlines()  # the first line that differs, when one does
    assert actual == expected
    builder = PartBuilder(StreamKey(vendor, STREAMS[vendor]), "w", 0)
    for line in actual.splitlines(keepends=True):
        builder.add(WINDOW.start, line)
    (archived,) = builder.seal()
    assert gzip.decompress(archived.body) == expected


def test_an_event_holding_a_lone_surrogate_is_refused_not_archived_altered() -> None:
    # JSON may escape half a surrogate pair; UTF-8 cannot hold it: the engine refuses the page (a ValueError).
    raw = json.loads('{"gid": "1", "name": "\\udc00"}')
    with pytest.raises(UnicodeEncodeError):
        record_line(event_id="1", event_time=WINDOW.start, stream="s", normalised=Normalised(),
                    collected_at=COLLECTED_AT, raw=raw)


def test_every_vendor_is_pinned() -> None:
    assert sorted(BODIES) == sorted(auditlake_vendors.VENDORS)


if __name__ == "__main__":
    # Rewrites the expected lines from the code as it is: only for a deliberate change of the record format.
    EXPECTED.mkdir(exist_ok=True)
    for name in sorted(BODIES):
        (EXPECTED / f"{name}.ndjson").write_bytes(record_lines(name))


@pytest.mark.parametrize("options", [{"ensure_ascii": False, "separators": (",", ":")},
                                     {"sort_keys": True, "separators": (",", ":")}, {}])
def test_the_fast_encoder_writes_what_json_writes(options: dict[str, Any]) -> None:
    encoder = json.JSONEncoder(**options)
    fast = parsed_json_encoder(encoder)
    for body in BODIES.values():
        value = json.loads(body.decode("utf-8-sig"))
        assert fast(value) == encoder.encode(value) == json.dumps(value, **options)
    assert fast("\u2028 \"é\"") == encoder.encode("\u2028 \"é\"")
