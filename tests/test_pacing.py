"""Proactive pacing: the pacer's arithmetic on virtual time, the HTTP client's waits and deadline, the setting, and
backfills against simulators that enforce each vendor's limit."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from datetime import timedelta
from itertools import pairwise
from typing import Any

import boto3
import pytest
import requests
from requests.adapters import BaseAdapter
from worlds import world_of

from auditlake import http
from auditlake.deadline import Deadline
from auditlake.errors import ConfigError, DeadlineReached
from auditlake.pacing import RECOVERY_SECONDS, TARGET_SHARE, Pacer
from auditlake.settings import Settings
from auditlake_local.bench_pacing import rate_limited_backfill
from auditlake_local.simulators.base import SlidingMinuteLimit
from auditlake_local.stack import LocalStack
from auditlake_local.vendors import VENDORS

EPOCH_AT_START = 1_800_000_000.0


class Clocks:
    """A monotonic clock and the epoch clock, moved together by the test."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def monotonic(self) -> float:
        return self.seconds

    def epoch(self) -> float:
        return EPOCH_AT_START + self.seconds

    def pacer(self, limit: int | None, ceiling: int | None = None) -> Pacer:
        return Pacer(limit, ceiling=ceiling, clock=self.monotonic, epoch=self.epoch)


def send(pacer: Pacer, clocks: Clocks) -> float:
    """Waits as the pacer asks (moving the clocks), then sends; returns the wait."""
    wait = pacer.delay()
    clocks.seconds += wait
    pacer.sent()
    return wait


# --- the pacer's arithmetic ---------------------------------------------------------------------------------------


def test_requests_are_spaced_evenly_just_under_the_limit() -> None:
    clocks = Clocks()
    pacer = clocks.pacer(600)
    sent_at: list[float] = []
    for _ in range(1000):
        send(pacer, clocks)
        sent_at.append(clocks.seconds)
    gaps = [later - earlier for earlier, later in pairwise(sent_at)]
    assert sent_at[0] == 0 and all(gap == pytest.approx(60 / (600 * TARGET_SHARE)) for gap in gaps)
    busiest_minute = max(bisect_left(sent_at, start + 60) - index for index, start in enumerate(sent_at))
    assert busiest_minute == 570


def test_time_spent_elsewhere_counts_towards_the_interval() -> None:
    clocks = Clocks()
    pacer = clocks.pacer(600)
    send(pacer, clocks)
    clocks.seconds += 0.1  # slower than the interval (0.105 s) by itself: only the rest is waited
    assert pacer.delay() == pytest.approx(60 / 570 - 0.1)
    clocks.seconds += 1
    assert pacer.delay() == 0


def test_a_wait_lasts_what_was_asked_even_on_a_clock_that_did_not_move() -> None:
    clocks = Clocks()
    pacer = clocks.pacer(600)
    send(pacer, clocks)
    pacer.waiting(pacer.delay())  # a replaced pause that does not move the clock
    assert pacer.delay() == 0
    pacer.sent()
    assert pacer.delay() == pytest.approx(60 / 570), "waits do not pile up"


def test_the_announced_limit_replaces_the_documented_one_but_not_a_configured_ceiling() -> None:
    clocks = Clocks()
    lower = clocks.pacer(10_000)
    lower.observe({"X-RateLimit-Limit": "1000"})
    assert (lower.limit, lower.per_minute) == (1000, 1000 * TARGET_SHARE)
    higher = clocks.pacer(1000)
    higher.observe({"X-RateLimit-Limit": "10000"})
    assert higher.limit == 10_000
    capped = clocks.pacer(2000, ceiling=2000)  # the token is shared: this collector may use 2,000 of 10,000
    capped.observe({"X-RateLimit-Limit": "10000"})
    assert capped.limit == 2000
    capped.observe({"X-RateLimit-Limit": "1000"})
    assert capped.limit == 1000
    for unreadable in ("", "many", "-5", "0"):
        capped.observe({"X-RateLimit-Limit": unreadable})
        assert capped.limit == 1000


def test_what_remains_is_spread_until_the_reset_and_none_left_waits_for_it() -> None:
    clocks = Clocks()
    pacer = clocks.pacer(10_000)
    pacer.sent()
    pacer.observe({"X-RateLimit-Limit": "10000", "X-RateLimit-Remaining": "10",
                   "X-RateLimit-Reset": str(int(EPOCH_AT_START) + 30)})
    assert pacer.delay() == pytest.approx(3.0), "10 requests left for 30 s: one every 3 s, not every 6 ms"
    clocks.seconds += 3
    pacer.sent()
    pacer.observe({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(EPOCH_AT_START) + 30)})
    assert pacer.delay() == pytest.approx(27.0)
    clocks.seconds += 27
    pacer.sent()
    pacer.observe({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(EPOCH_AT_START) + 20)})
    assert pacer.delay() == pytest.approx(1.0), "a reset announced as past still waits a second"
    pacer.observe({"X-RateLimit-Remaining": "5", "X-RateLimit-Reset": "12"})  # a delta, not an epoch
    assert pacer.delay() == pytest.approx(12 / 5)


def test_a_429_lowers_the_pace_to_what_the_vendor_accepted_in_the_last_minute() -> None:
    clocks = Clocks()
    pacer = clocks.pacer(1500)
    while clocks.seconds < 70:
        send(pacer, clocks)
    sent_in_last_minute = 60 / (60 / (1500 * TARGET_SHARE))  # 1,425
    pacer.throttled(vendor_said_when=True)  # the last request was refused
    assert pacer.allowance == pytest.approx(sent_in_last_minute - 1, abs=1)


def test_a_lower_limit_than_believed_is_found_with_few_429s() -> None:
    """A vendor refusing beyond 600 in any sliding minute (rejected requests count too, as Asana's do) while the
    pacer believes 1,500; the client waits the vendor's Retry-After after each 429."""
    clocks = Clocks()
    pacer = clocks.pacer(1500)
    vendor = SlidingMinuteLimit()
    accepted_at: list[float] = []
    refused_at: list[float] = []
    allowances: list[int | None] = []
    while clocks.seconds < 600:
        send(pacer, clocks)
        retry_after = vendor.over(clocks.epoch(), 600)
        if retry_after is None:
            accepted_at.append(clocks.seconds)
            continue
        refused_at.append(clocks.seconds)
        pacer.throttled(vendor_said_when=True)
        allowances.append(pacer.allowance)
        pacer.waiting(retry_after)
        clocks.seconds += retry_after
    # Two 429s find the limit: half of 1,500 first (the vendor's minute was not seen whole), then the count.
    assert allowances[:2] == [750, 600] and refused_at[1] < 120
    # Later ones are the recovery's probes, one per calm period, each finding 600 again.
    assert set(allowances[2:]) == {600}
    assert all(later - earlier > RECOVERY_SECONDS for earlier, later in pairwise(refused_at[1:]))
    last_eight_minutes = len(accepted_at) - bisect_left(accepted_at, clocks.seconds - 480)
    assert last_eight_minutes / 8 >= 0.95 * 600


def test_a_vendor_that_does_not_say_when_is_waited_for_until_the_runs_requests_age_out() -> None:
    """Make: no Retry-After, refusals count (Docs are silent; the simulator's choice), 240 a minute (Teams plan)
    while the pacer believes 1,000. The client's backoff is left out: the pacer's waits alone must do."""
    clocks = Clocks()
    pacer = clocks.pacer(1000)
    vendor = SlidingMinuteLimit()
    accepted_at: list[float] = []
    refusals = 0
    while clocks.seconds < 300:
        send(pacer, clocks)
        if vendor.over(clocks.epoch(), 240) is None:
            accepted_at.append(clocks.seconds)
        else:
            refusals += 1
            pacer.throttled(vendor_said_when=False)
    assert refusals <= 3
    last_three_minutes = len(accepted_at) - bisect_left(accepted_at, clocks.seconds - 180)
    assert last_three_minutes / 3 >= 0.9 * 240


def test_a_429_after_a_handful_of_requests_does_not_wait_for_the_minute() -> None:
    clocks = Clocks()
    pacer = clocks.pacer(1000)
    for _ in range(3):
        send(pacer, clocks)
    pacer.throttled(vendor_said_when=False)  # not this run's excess: the backoff decides
    assert pacer.delay() == pytest.approx(60 / (500 * TARGET_SHARE))


def test_a_429_cuts_by_half_at_most_and_once_a_minute_at_most() -> None:
    clocks = Clocks()
    pacer = clocks.pacer(1500)
    for _ in range(20):
        send(pacer, clocks)
    # A previous run's requests may have filled the vendor's minute: 19 accepted says little.
    pacer.throttled(vendor_said_when=True)
    assert pacer.allowance == 750
    clocks.seconds += 59
    pacer.throttled(vendor_said_when=True)  # the same minute's excess
    assert pacer.allowance == 750
    clocks.seconds += 1
    pacer.throttled(vendor_said_when=True)
    assert pacer.allowance == 375
    assert pacer.delay() == pytest.approx(60 / (375 * TARGET_SHARE)), "the next request waits one interval"

    unknown = clocks.pacer(None)
    unknown.sent()
    unknown.throttled(vendor_said_when=True)
    assert unknown.allowance is None and unknown.delay() == 0, "Retry-After or the backoff decides"
    clocks.seconds += 61
    for _ in range(30):
        unknown.sent()
    unknown.throttled(vendor_said_when=True)
    assert unknown.allowance == 29, "after a whole minute the count is all there is"


def test_the_allowance_recovers_gradually_after_a_calm_period() -> None:
    clocks = Clocks()
    pacer = clocks.pacer(1000)
    for _ in range(10):
        send(pacer, clocks)
    pacer.throttled(vendor_said_when=True)
    assert pacer.allowance == 500
    clocks.seconds += RECOVERY_SECONDS - 1
    pacer.delay()
    assert pacer.allowance == 500
    clocks.seconds += 1
    pacer.delay()
    assert pacer.allowance == 550
    for _ in range(20):
        clocks.seconds += RECOVERY_SECONDS
        pacer.delay()
    assert pacer.allowance == 1000, "never above the limit"


# --- the HTTP client -------------------------------------------------------------------------------------------


class Answers(BaseAdapter):
    def __init__(self, headers: dict[str, str]) -> None:
        super().__init__()
        self.headers = headers
        self.sent = 0

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.sent += 1
        response = requests.Response()
        response.status_code, response._content, response.url = 200, b"{}", request.url or ""
        response.headers.update(self.headers)
        return response

    def close(self) -> None:
        pass


@pytest.fixture
def virtual(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The HTTP client's clock and waits on virtual time; returns the waits."""
    waits: list[float] = []
    now = {"seconds": 0.0}

    def pause(seconds: float) -> None:
        waits.append(seconds)
        now["seconds"] += seconds

    monkeypatch.setattr(http, "pause", pause)
    monkeypatch.setattr(http, "monotonic", lambda: now["seconds"])
    return waits


def client(adapter: Answers, remaining_s: float, limit: int | None) -> http.HttpClient:
    session = requests.Session()
    session.mount("https://vendor.test/", adapter)
    return http.HttpClient("acme", "https://vendor.test", headers={}, error_details=lambda s, b: (None, ""),
                           deadline=Deadline(lambda: int(remaining_s * 1000), timedelta(seconds=60)),
                           session=session, rate_limit_per_minute=limit)


def test_the_client_paces_and_counts_its_waits(virtual: list[float]) -> None:
    c = client(Answers({}), remaining_s=300, limit=60)
    for _ in range(4):
        c.get("/x")
    assert virtual == pytest.approx([60 / 57] * 3)
    assert (c.stats.requests, c.stats.pacing_waits, c.stats.retries) == (4, 3, 0)
    assert c.stats.pacing_seconds == pytest.approx(3 * 60 / 57)


def test_a_pacing_wait_past_the_deadline_stops_instead(virtual: list[float]) -> None:
    adapter = Answers({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "120"})
    c = client(adapter, remaining_s=150, limit=None)  # 90 s may still be spent, the reset is 120 s away
    c.get("/x")
    with pytest.raises(DeadlineReached, match=r"GET /x would wait 120\.0s for the vendor's rate limit, past the"):
        c.get("/x")
    assert adapter.sent == 1 and virtual == []


# --- the setting ----------------------------------------------------------------------------------------------------


BASE_ENV = {"STATE_TABLE": "t", "ARCHIVE_BUCKET": "b", "ARCHIVE_KMS_KEY_ARN": "k", "SECRET_ID": "s",
            "DIGEST_SIGNING_KEY_ARN": "d"}


def test_rate_limit_setting() -> None:
    assert Settings.from_env(BASE_ENV).rate_limit_per_minute is None
    assert Settings.from_env({**BASE_ENV, "RATE_LIMIT_PER_MINUTE": ""}).rate_limit_per_minute is None
    assert Settings.from_env({**BASE_ENV, "RATE_LIMIT_PER_MINUTE": "600"}).rate_limit_per_minute == 600
    for bad in ("0", "lots", "-1"):
        with pytest.raises(ConfigError, match="RATE_LIMIT_PER_MINUTE"):
            Settings.from_env({**BASE_ENV, "RATE_LIMIT_PER_MINUTE": bad})


def test_reconciliation_settings() -> None:
    default = Settings.from_env(BASE_ENV)
    assert (default.reconcile_span, default.reconcile_every, default.reconcile_rate_percent) == \
        (timedelta(days=7), timedelta(hours=24), 20.0)
    chosen = Settings.from_env({**BASE_ENV, "RECONCILE_SPAN_DAYS": "30", "RECONCILE_INTERVAL_HOURS": "0",
                                "RECONCILE_RATE_PERCENT": "50"})
    assert (chosen.reconcile_span, chosen.reconcile_every, chosen.reconcile_rate_percent) == \
        (timedelta(days=30), timedelta(0), 50.0)
    for name, bad in (("RECONCILE_RATE_PERCENT", "150"), ("RECONCILE_RATE_PERCENT", "0"),
                      ("RECONCILE_SPAN_DAYS", "0"), ("RECONCILE_INTERVAL_HOURS", "-1")):
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({**BASE_ENV, name: bad})


def test_a_reconciliation_paces_at_its_share_of_the_limit(stack: Any, clock: Any) -> None:
    """At RECONCILE_RATE_PERCENT of the documented limit (Asana: 20% of 1,500 = 300 a minute), and the vendor's
    headers cannot raise it; the live collection keeps the whole limit."""
    with world_of("asana", stack, clock.now) as world:
        world.seed(300, clock.now() - timedelta(days=1), clock.now() - timedelta(minutes=30), seed=5)
        live = stack.invoke(world.function_id, {}, environment={"RECONCILE_RATE_PERCENT": "20"})
        assert live["http"]["paced_per_minute"] == round(1500 * 0.95)
        clock.advance(timedelta(hours=1))
        stack.invoke(world.function_id, {})
        reconciliation = stack.invoke(world.function_id, {"reconcile": {}})
        assert reconciliation["mode"] == "reconcile"
        assert reconciliation["http"]["paced_per_minute"] == round(300 * 0.95)


# --- backfills against simulators that enforce the limit ---------------------------------------------------------
# Each lasts over a minute of requests, so a sliding-minute limiter bites: an unpaced collector sends a minute's
# worth at once and is then refused. The arithmetic does not depend on the limit's size, the CPU cost does: these
# run at 300 a minute with pages of 4 events (the benchmark, bench_pacing, runs the vendors' documented limits).

PAGE = 4
LIMIT = 300
# How each collector comes to know the limit: the setting (a lower plan or a shared token: Asana, Make), ClickUp's
# X-RateLimit-Limit (the adapter believes Enterprise's 10,000), Ashby's assumed limit (Ashby documents none).
KNOWN_BY = {"asana": {"RATE_LIMIT_PER_MINUTE": str(LIMIT)}, "make": {"RATE_LIMIT_PER_MINUTE": str(LIMIT)},
            "clickup": {}, "ashby": {}}


@pytest.fixture(scope="module")
def shared_stack() -> Iterator[LocalStack]:
    with LocalStack.start() as stack:
        yield stack


@pytest.fixture
def stack(shared_stack: LocalStack) -> Iterator[LocalStack]:
    """The module's stack, emptied after each test: the archive and the state start clean for the next."""
    yield shared_stack
    s3 = boto3.client("s3")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=shared_stack.bucket):
        for item in page.get("Contents", []):
            s3.delete_object(Bucket=shared_stack.bucket, Key=item["Key"])
    dynamodb = boto3.client("dynamodb")
    for item in dynamodb.scan(TableName=shared_stack.table, ProjectionExpression="#s",
                              ExpressionAttributeNames={"#s": "stream"})["Items"]:
        dynamodb.delete_item(TableName=shared_stack.table, Key={"stream": item["stream"]})


@pytest.mark.parametrize("vendor", list(VENDORS))
def test_a_backfill_runs_at_90_percent_of_the_limit_without_429s(vendor: str, stack: LocalStack) -> None:
    report = rate_limited_backfill(VENDORS[vendor], minutes=1.3, enforced_per_minute=LIMIT, page_size=PAGE,
                                   environment=KNOWN_BY[vendor], stack=stack)
    assert report["share_of_limit"] >= 0.9, report
    assert report["throttled_429s"] == 0, report
    assert report["events"] > 0 and (report["missing"], report["duplicates"]) == (0, 0), report


@pytest.mark.slow
def test_a_lower_undocumented_limit_converges_with_few_429s(stack: LocalStack) -> None:
    """Asana refuses beyond 600 a minute while the collector believes the documented 1,500."""
    report = rate_limited_backfill(VENDORS["asana"], minutes=2, enforced_per_minute=600, page_size=PAGE,
                                   stack=stack)
    assert report["throttled_429s"] <= 2, report
    assert report["share_of_limit"] >= 0.9, report
    assert report["events"] > 0 and (report["missing"], report["duplicates"]) == (0, 0), report
