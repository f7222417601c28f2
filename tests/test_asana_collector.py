"""The Asana collector's contract: the objects it writes, its records, and what bad input does to it."""

from __future__ import annotations

import gzip
import json
import re
from datetime import timedelta
from typing import Any

import boto3
import pytest
from conftest import ASANA_TOKEN, ASANA_WORKSPACE, Clock

from auditlake.errors import SecretError
from auditlake.records import COLUMNS
from auditlake.state import StateStore
from auditlake_local.simulators import AsanaSimulator, Fault, SimResponse, generate_events
from auditlake_local.stack import LocalStack
from auditlake_local.template import load_template

ISO_MS_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def seed(simulator: AsanaSimulator, clock: Clock, count: int = 400) -> None:
    now = clock.now()
    simulator.add_events(generate_events(count, now - timedelta(days=2), now - timedelta(minutes=10), seed=3))


def stored_state(stack: LocalStack) -> Any:
    return StateStore(boto3.client("dynamodb"), stack.table).read(f"asana#{ASANA_WORKSPACE}")


def test_objects_are_encrypted_checksummed_gzip_ndjson(stack: LocalStack, asana: AsanaSimulator,
                                                       clock: Clock) -> None:
    seed(asana, clock)
    summary = stack.invoke("AsanaCollector")
    assert summary["status"] == "ok"
    s3 = boto3.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=stack.bucket, Prefix="events/")["Contents"]]
    assert keys
    for key in keys:
        assert re.fullmatch(r"events/vendor=asana/dt=\d{4}-\d\d-\d\d/asana-\d+_\d{8}T\d{9}Z-\d{8}T\d{9}Z_p\d{6}"
                            r"\.json\.gz", key), key
        head = s3.head_object(Bucket=stack.bucket, Key=key, ChecksumMode="ENABLED")
        assert head["ServerSideEncryption"] == "aws:kms"
        assert head["SSEKMSKeyId"] == stack.functions_env("ARCHIVE_KMS_KEY_ARN")
        assert head.get("BucketKeyEnabled") is True
        assert "ContentEncoding" not in head
        assert head["ChecksumSHA256"]
        body = s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read()
        day = key.split("/")[2].removeprefix("dt=")
        for line in gzip.decompress(body).decode().splitlines():
            record = json.loads(line)
            assert tuple(record) == COLUMNS
            assert ISO_MS_Z.match(record["event_time"]) and ISO_MS_Z.match(record["collected_at"])
            assert record["event_time"].startswith(day), "partitioned by the event's UTC date"
            raw = json.loads(record["raw"])
            assert raw == asana.ground_truth()[record["event_id"]]
            assert record["action"] == raw["event_type"] and record["stream"] == ASANA_WORKSPACE


def test_glue_projection_produces_the_object_prefixes(stack: LocalStack, asana: AsanaSimulator,
                                                      clock: Clock) -> None:
    seed(asana, clock, count=100)
    stack.invoke("AsanaCollector")
    table = boto3.client("glue").get_table(DatabaseName=stack.refs["AuditDatabase"], Name=stack.refs["EventsTable"])
    parameters = table["Table"]["Parameters"]
    template = parameters["storage.location.template"]
    assert [c["Name"] for c in table["Table"]["StorageDescriptor"]["Columns"]] == list(COLUMNS)
    for record in stack.archived_records("asana"):
        vendor, day = record["_key"].split("/")[1:3]
        prefix = template.replace("${vendor}", vendor.removeprefix("vendor=")).replace("${dt}", day.removeprefix("dt="))
        assert f"s3://{stack.bucket}/{record['_key']}".startswith(prefix)


def test_wrong_token_is_a_clear_error_and_moves_nothing(stack: LocalStack, asana: AsanaSimulator,
                                                        clock: Clock) -> None:
    seed(asana, clock)
    stack.put_secret("AsanaCollector", {"token": "wrong-token-value", "workspace_gid": ASANA_WORKSPACE,
                                        "base_url": "https://asana.test/api/1.0"})
    with pytest.raises(Exception, match=r"asana API HTTP 401") as failure:
        stack.invoke("AsanaCollector")
    assert "wrong-token-value" not in str(failure.value)
    assert stack.archived_records("asana") == []
    state = stored_state(stack)
    assert state.done_until is None and state.status["last_outcome"] == "error"
    assert "lease_owner" not in boto3.client("dynamodb").get_item(
        TableName=stack.table, Key={"stream": {"S": f"asana#{ASANA_WORKSPACE}"}})["Item"]

    stack.put_secret("AsanaCollector", {"token": ASANA_TOKEN, "workspace_gid": ASANA_WORKSPACE,
                                        "base_url": "https://asana.test/api/1.0"})
    assert stack.invoke("AsanaCollector")["status"] == "ok"
    assert len(stack.archived_records("asana")) == len(asana.ground_truth())


@pytest.mark.parametrize(("secret", "message"), [
    ("not json at all", r"is not JSON"),
    ('["a list"]', r"not an object"),
    ({"token": ASANA_TOKEN}, r"missing field 'workspace_gid'"),
    ({"workspace_gid": ASANA_WORKSPACE}, r"missing field 'token'"),
    ({"token": "REPLACE_ME", "workspace_gid": "REPLACE_ME"}, r"field 'token' still holds the placeholder"),
    ({"token": ASANA_TOKEN, "workspace_gid": ASANA_WORKSPACE, "base_url": "ftp://x"}, r"'base_url' must be"),
])
def test_unusable_secret_names_the_problem(secret: Any, message: str, stack: LocalStack, asana: AsanaSimulator) -> None:
    stack.put_secret("AsanaCollector", secret)
    with pytest.raises(SecretError, match=message) as failure:
        stack.invoke("AsanaCollector")
    assert ASANA_TOKEN not in str(failure.value)
    assert asana.stats()["requests"] == 0


def test_placeholder_secret_from_the_template(stack: LocalStack) -> None:
    """A fresh deploy's secret holds the template's placeholder: the error tells the operator what to do."""
    with pytest.raises(SecretError, match=r"still holds the placeholder"):
        stack.invoke("AsanaCollector")


def test_html_page_with_status_200_keeps_the_cursor(stack: LocalStack, asana: AsanaSimulator, clock: Clock,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    seed(asana, clock, count=1000)
    real_route = asana.route
    calls = {"n": 0}

    def route(request: Any) -> SimResponse:
        calls["n"] += 1
        if calls["n"] == 4:
            return SimResponse(200, {"Content-Type": "text/html"}, b"<html><body>Maintenance</body></html>")
        return real_route(request)

    monkeypatch.setattr(asana, "route", route)
    with pytest.raises(Exception, match=r"asana API HTTP 200 \[malformed_response\].*HTML page"):
        stack.invoke("AsanaCollector", environment={"MAX_OBJECT_EVENTS": "100"})
    archived = stack.archived_records("asana")
    assert len(archived) == 300  # the three pages before the bad one are kept ...
    assert stored_state(stack).window.cursor is not None  # ... and the cursor stops right after them
    clock.advance()
    assert stack.invoke("AsanaCollector")["status"] == "ok"
    assert sorted(r["event_id"] for r in stack.archived_records("asana")) == sorted(asana.ground_truth())


def test_event_without_a_time_refuses_the_page(stack: LocalStack, asana: AsanaSimulator, clock: Clock,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    seed(asana, clock, count=250)
    real_route = asana.route
    calls = {"n": 0}

    def route(request: Any) -> SimResponse:
        response = real_route(request)
        calls["n"] += 1
        if calls["n"] == 2:  # the second page carries an event with no created_at
            page = response.json()
            del page["data"][7]["created_at"]
            return SimResponse.of_json(200, page)
        return response

    monkeypatch.setattr(asana, "route", route)
    with pytest.raises(Exception, match=r"asana API .*event #7 of a page is unreadable.*created_at"):
        stack.invoke("AsanaCollector", environment={"MAX_OBJECT_EVENTS": "100"})
    assert len(stack.archived_records("asana")) == 100  # the first page only: none of the refused page
    assert stack.invoke("AsanaCollector")["status"] == "ok"
    assert sorted(r["event_id"] for r in stack.archived_records("asana")) == sorted(asana.ground_truth())


def test_retries_are_bounded(stack: LocalStack, asana: AsanaSimulator, clock: Clock) -> None:
    seed(asana, clock, count=50)
    asana.faults.next(Fault.UNAVAILABLE, times=5)
    with pytest.raises(Exception, match=r"asana API HTTP 503.*gave up after 5 attempts"):
        stack.invoke("AsanaCollector")
    assert asana.stats()["requests"] == 5
    assert stack.invoke("AsanaCollector")["status"] == "ok"


def test_template_environment_reaches_the_handler(stack: LocalStack) -> None:
    function = stack.functions["AsanaCollector"]
    declared = load_template()["Resources"]["AsanaCollector"]["Properties"]
    assert function.handler == declared["Handler"]
    for name in ("STATE_TABLE", "ARCHIVE_BUCKET", "ARCHIVE_KMS_KEY_ARN", "SECRET_ID"):
        assert function.environment[name], name
