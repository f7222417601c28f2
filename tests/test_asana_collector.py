"""The Asana collector's contract: the objects it writes, its records, and what bad input does to it."""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import boto3
import pytest
from conftest import ASANA_BASE, ASANA_TOKEN, ASANA_WORKSPACE, Clock, Pauses, check_archive, context

from auditlake import http
from auditlake.errors import SecretError
from auditlake.records import COLUMNS
from auditlake.state import StateStore, StreamKey
from auditlake.timeutil import to_iso
from auditlake_local.simulators import (
    AsanaSimulator,
    Fault,
    SimRequest,
    SimResponse,
    SimulatorAdapter,
    generate_events,
)
from auditlake_local.simulators.asana import NULL_NEXT_PAGE
from auditlake_local.stack import LocalStack
from auditlake_local.template import load_template

# Quirks placed at the Nth request, and request counts: read with one query at a time (test_slicing.py reads them
# in slices).
pytestmark = pytest.mark.usefixtures("sequential_reading")

ISO_MS_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def seed(simulator: AsanaSimulator, clock: Clock, count: int = 400) -> None:
    now = clock.now()
    simulator.add_events(generate_events(count, now - timedelta(days=2), now - timedelta(minutes=10), seed=3))


def stored_state(stack: LocalStack) -> Any:
    return StateStore(boto3.client("dynamodb"), stack.table).read(StreamKey("asana", ASANA_WORKSPACE))


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
    assert stored_state(stack).window.slices[0].cursor is not None  # ... and the cursor stops right after them
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


# --- what Asana leaves open -------------------------------------------------------------------------------------


def assert_exactly_once(stack: LocalStack, simulator: AsanaSimulator) -> None:
    result = check_archive(stack, "asana", simulator.ground_truth())
    assert result.events > 0
    assert (result.missing, result.duplicates, result.unexpected) == (0, 0, 0), result
    assert result.archived == result.events


@contextmanager
def mounted(stack: LocalStack, simulator: AsanaSimulator) -> Iterator[AsanaSimulator]:
    session = http.shared_session()
    session.mount("https://asana.test/", SimulatorAdapter(simulator))
    stack.put_secret("AsanaCollector", {"token": ASANA_TOKEN, "workspace_gid": ASANA_WORKSPACE,
                                        "base_url": ASANA_BASE})
    try:
        yield simulator
    finally:
        session.adapters.pop("https://asana.test/", None)


def recording(simulator: AsanaSimulator, monkeypatch: pytest.MonkeyPatch) -> list[SimRequest]:
    """Every request that reaches the simulator's endpoint, in order."""
    seen: list[SimRequest] = []
    real_route = simulator.route

    def route(request: SimRequest) -> SimResponse:
        seen.append(request)
        return real_route(request)

    monkeypatch.setattr(simulator, "route", route)
    return seen


@pytest.mark.parametrize("max_limit", [100, 1000])
def test_limit_is_never_above_100_whatever_page_size_says(max_limit: int, stack: LocalStack, clock: Clock,
                                                          pauses: Pauses, monkeypatch: pytest.MonkeyPatch) -> None:
    """`limit` is 1..100 by the parameter's definition, "default 1000" by the prose: the collector sends at most
    100, which both readings accept (the simulator rejects more by default)."""
    simulator = AsanaSimulator(ASANA_TOKEN, ASANA_WORKSPACE, now=clock.now, max_limit=max_limit)
    with mounted(stack, simulator):
        seed(simulator, clock, count=450)
        sent = recording(simulator, monkeypatch)
        summary = stack.invoke("AsanaCollector", environment={"PAGE_SIZE": "500"})
        assert summary["status"] == "ok"
        assert [request.param("limit") for request in sent] == ["100"] * 6  # 4 full pages, 50, the empty page
        assert_exactly_once(stack, simulator)


@pytest.mark.parametrize("status", [400, 410, 404])
def test_offsets_that_expired_between_ticks_are_restarted(status: int, stack: LocalStack, clock: Clock,
                                                          pauses: Pauses) -> None:
    """By default an offset lives shorter than a tick, so every offset a run stores is refused, for good, by the
    next one: a 400 (what other endpoints answer) or a 410 is read as an expired offset; any other status on a
    request with an offset restarts the window once per run (the engine's rule). Each run gets further."""
    simulator = AsanaSimulator(ASANA_TOKEN, ASANA_WORKSPACE, now=clock.now, expired_offset_status=status)
    with mounted(stack, simulator):
        seed(simulator, clock, count=1500)
        budget = {"ms": 0}
        simulator.on_request = lambda _record: budget.__setitem__("ms", budget["ms"] - 4_000)  # 4 s a page
        outcomes = []
        for _ in range(12):
            budget["ms"] = 80_000  # 20 s above the 60 s margin: five pages a tick
            summary = stack.invoke("AsanaCollector", environment={"MAX_OBJECT_EVENTS": "100"},
                                   context=context(stack, "AsanaCollector", lambda: budget["ms"]))
            outcomes.append(summary)
            if summary["status"] == "ok":
                break
            clock.advance()  # 5 minutes: every stored offset is past its life
        assert outcomes[-1]["status"] == "ok" and len(outcomes) >= 3
        expired = [o["streams"][0]["cursors_expired"] for o in outcomes]
        assert sum(expired) >= 2 and max(expired) == 1, expired  # stored offsets were sent, refused, restarted
        assert_exactly_once(stack, simulator)


@pytest.mark.parametrize("mode", NULL_NEXT_PAGE)
def test_exact_whenever_next_page_is_null(mode: str, stack: LocalStack, clock: Clock, pauses: Pauses,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Asana documents `next_page: null` only for a query that never matched. Where it comes on a page of events
    (on the last one, or on every one) the window goes on from the page's newest millisecond and ends when nothing
    new follows: every event once, bursts at page edges included, new and late ones too."""
    simulator = AsanaSimulator(ASANA_TOKEN, ASANA_WORKSPACE, now=clock.now, null_next_page=mode)
    with mounted(stack, simulator):
        now = clock.now()
        simulator.add_events(generate_events(1200, now - timedelta(days=2), now - timedelta(minutes=10), seed=3,
                                             burst_rate=0.3))
        sent = recording(simulator, monkeypatch)
        assert stack.invoke("AsanaCollector", environment={"MAX_OBJECT_EVENTS": "100"})["status"] == "ok"
        restarts = sum(1 for request in sent if request.param("offset") is None)
        assert restarts == {"when_nothing_matched": 1, "on_last_page": 2}.get(mode, restarts)
        if mode == "on_every_page":
            assert restarts == len(sent) >= 13  # no offset ever: each page is a new query
        assert_exactly_once(stack, simulator)

        for tick in range(3):  # new events, and events published late inside the overlap
            clock.advance()
            now = clock.now()
            simulator.add_events(generate_events(150, now - timedelta(minutes=4), now - timedelta(minutes=3),
                                                 seed=10 + tick, burst_rate=0.3))
            simulator.add_events([{**event, "gid": f"9{tick}{event['gid'][2:]}"} for event in generate_events(
                20, now - timedelta(minutes=9), now - timedelta(minutes=8), seed=20 + tick)], published=False)
            simulator.publish_pending()
            assert stack.invoke("AsanaCollector", environment={"MAX_OBJECT_EVENTS": "100"})["status"] == "ok"
        assert_exactly_once(stack, simulator)


def test_next_page_null_on_one_millisecond_reached_by_an_offset_fails_loudly(
        stack: LocalStack, asana: AsanaSimulator, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    """Earlier pages may have served part of that millisecond, and a new query from it would serve them again as
    if new: the page is refused, what came before it is kept, and nothing is archived twice."""
    instant = clock.now() - timedelta(hours=1)
    burst = [{**event, "created_at": to_iso(instant), "gid": f"5{index:015d}"}
             for index, event in enumerate(generate_events(250, instant, instant + timedelta(seconds=1), seed=8))]
    asana.add_events(burst)
    real_route = asana.route

    def null_on_the_second_page(request: SimRequest) -> SimResponse:
        response = real_route(request)
        if request.param("offset") is not None and response.json()["data"]:
            return SimResponse.of_json(200, {**response.json(), "next_page": None})
        return response

    monkeypatch.setattr(asana, "route", null_on_the_second_page)
    with pytest.raises(Exception, match=r"asana API \[malformed_response\]: next_page is null on a page of one "
                                        r"millisecond .* reached by an offset: it cannot be paged past"):
        stack.invoke("AsanaCollector", environment={"MAX_OBJECT_EVENTS": "100"})
    assert len(stack.archived_records("asana")) == 100  # the first page, before the refused one
    monkeypatch.setattr(asana, "route", real_route)
    clock.advance()
    assert stack.invoke("AsanaCollector", environment={"MAX_OBJECT_EVENTS": "100"})["status"] == "ok"
    assert_exactly_once(stack, asana)


@pytest.mark.parametrize("status", [402, 403])
def test_a_domain_without_audit_logs_is_one_clear_error(status: int, stack: LocalStack, asana: AsanaSimulator,
                                                        clock: Clock) -> None:
    seed(asana, clock)
    assert stack.invoke("AsanaCollector")["status"] == "ok"
    before = stored_state(stack).done_until
    asana.audit_logs_available, asana.no_audit_logs_status = False, status
    clock.advance()
    now = clock.now()
    asana.add_events(generate_events(50, now - timedelta(minutes=4), now - timedelta(minutes=3), seed=4))
    with pytest.raises(Exception, match=rf"asana API HTTP {status}: audit logs are not available to this account: "
                                        r".*\(Asana's audit log API needs an Enterprise\+") as failure:
        stack.invoke("AsanaCollector")
    assert ASANA_TOKEN not in str(failure.value)
    state = stored_state(stack)
    assert state.done_until == before and (state.window is None or state.window.slices[0].cursor is None)
    assert len(stack.archived_records("asana")) == 400
    asana.audit_logs_available = True
    assert stack.invoke("AsanaCollector")["status"] == "ok"
    assert_exactly_once(stack, asana)


def test_events_published_late_within_the_overlap_are_collected(stack: LocalStack, clock: Clock,
                                                                pauses: Pauses) -> None:
    """Capture latency: each event visible up to 7 minutes after its created_at, inside the 10-minute overlap (plus
    the 2-minute lag). What is published later than that is the reconciliation's to find."""
    simulator = AsanaSimulator(ASANA_TOKEN, ASANA_WORKSPACE, now=clock.now, publication_delay=timedelta(minutes=7))
    with mounted(stack, simulator):
        seed(simulator, clock, count=300)
        for tick in range(6):
            now = clock.now()
            simulator.add_events(generate_events(100, now - timedelta(minutes=5), now, seed=30 + tick))
            assert stack.invoke("AsanaCollector")["status"] == "ok"
            clock.advance()
        for _ in range(3):  # nothing new: the last events get published and collected
            assert stack.invoke("AsanaCollector")["status"] == "ok"
            clock.advance()
        assert len(simulator.ground_truth()) == 900
        assert_exactly_once(stack, simulator)
