"""One vendor's world for the scenarios every collector must pass: its simulator wired into the stack's HTTP
session, its secret in place, and what that vendor's paging costs at best.

The scenarios (test_exactly_once.py) are written once and run against every world; what differs between vendors
is stated here, next to the vendor's name, and nowhere in the scenarios.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import boto3

from auditlake import http
from auditlake.timeutil import parse_event_time, to_millis
from auditlake_local.simulators import SimulatorAdapter, VendorSimulator, clickup, make
from auditlake_local.stack import LocalStack
from auditlake_local.template import resolve
from auditlake_local.vendors import VENDORS as LOCAL_VENDORS
from auditlake_local.vendors import LocalVendor

PAGE = 100  # the collectors' default page size


@dataclass(frozen=True)
class Traits:
    """What the scenarios need to know of a vendor's API."""

    streams: int  # streams per invocation
    cursors_expire: bool  # whether the vendor's paging cursors can expire at all
    says_when_to_retry: bool  # whether its 429 carries Retry-After or a reset time
    # HTTP requests a clean backfill of the simulator's current events takes, exactly: the fewest the vendor's
    # paging allows.
    backfill_requests: Callable[[VendorSimulator], int]
    # HTTP requests of a tick that finds nothing new (and nothing in its overlap): one per stream.
    idle_requests: int


def pages_then_end(events: int) -> int:
    """Full pages, then the short (or empty) page that ends the window."""
    return events // PAGE + 1


def pages_then_empty_page(events: int) -> int:
    """Every page that holds events, then the empty page that says the stream is caught up."""
    return -(-events // PAGE) + 1


def keyset_pages(times_newest_first: list[int], cap: int | None, *, floor: int = 10) -> int:
    """Requests of ClickUp's walk by timestamp over one class (newest first, PAGE rows asked, ClickUp serving at most
    `cap`, pageTimestamp exclusive: the simulator's defaults), with nothing learnt before (a first window).

    Each page after the first starts at the millisecond the page before ended in (a cap may have cut it), so it
    repeats that millisecond's rows. A page shorter than asked and than the largest page served so far (at least
    `floor`, the spec example's pageRows) holds all that is left, and one more request below it must come back
    empty: that empty page is the price of certainty. For c rows served a page and n rows spread over distinct
    milliseconds: 1 + ceil((n - c) / (c - 1)) pages, then that empty page (a class of fewer than `floor` rows: 2).
    """
    served, pages, bound, below = floor, 0, None, False
    per_page = PAGE if cap is None else min(PAGE, cap)
    while True:
        pages += 1
        page = [t for t in times_newest_first if bound is None or t < bound][:per_page]
        if below or not page:
            assert not page, "only an empty page may follow the page that held everything"
            return pages
        complete = len(page) < PAGE and len(page) < served
        served = max(served, len(page))
        if complete:
            below, bound = True, page[-1] - 1
            continue
        if bound is not None and page[-1] >= bound - 1:
            raise ValueError("a millisecond holds a whole page: not modelled")
        bound = page[-1] + 1


def clickup_backfill_requests(simulator: VendorSimulator) -> int:
    """ClickUp: six classes, each walked newest first by timestamp (`keyset_pages`)."""
    assert isinstance(simulator, clickup.ClickUpSimulator) and not simulator.page_timestamp_inclusive
    per_class: dict[str, list[int]] = {name: [] for name in clickup.APPLICABILITIES}
    for row in simulator.ground_truth().values():
        start = row["startTime"]  # ISO 8601, or epoch ms with the simulator's `time_format="epoch_ms"`
        millis = start if isinstance(start, int) else round(datetime.fromisoformat(start).timestamp() * 1000)
        per_class[clickup.applicability_of(row.get("eventType"))].append(millis)
    cap = simulator.max_page_rows if simulator.page_rows_over_max == "cap" else None
    return sum(keyset_pages(sorted(times, reverse=True), cap) for times in per_class.values())


def make_backfill_requests(simulator: VendorSimulator) -> int:
    """Make: offset pages over one query, ascending by triggeredAt, until offset + rows reaches pg.totalCount. The
    first page asks for PAGE entries; each next one starts one entry before the first entry of the previous page's
    last instant (that entry proves the offset whatever order ties come in, and the instant is read whole again)
    and asks for PAGE + 1, which the default cap serves as 100 and echoes, so from then on it asks for 100: a page
    brings 99 - (entries of its last instant) new ones. With the default `page_cap`/`total_count` (or no cap)."""
    assert isinstance(simulator, make.MakeSimulator)
    if simulator.page_cap not in ("silent", "none") or not simulator.total_count:
        raise ValueError("counted for a silent cap or none, with pg.totalCount")
    times = sorted(to_millis(parse_event_time(event["triggeredAt"], "triggeredAt"))
                   for event in simulator.ground_truth().values())
    cap = simulator.max_limit if simulator.page_cap == "silent" else None
    requests, at, served = 0, 0, None
    while True:
        requests += 1
        sentinel = 1 if at else 0
        ask = PAGE + sentinel if served is None else min(PAGE + sentinel, served)
        rows = ask if cap is None else min(ask, cap)
        if rows < ask:
            served = rows  # echoed: never asked for more again
        fresh = times[at: at - sentinel + rows]
        if at + len(fresh) >= len(times):
            return requests
        older = fresh.index(fresh[-1])
        if older == 0:
            raise ValueError("one instant fills a page; the collector then asks for larger pages")
        at += older


TRAITS: dict[str, Traits] = {
    # Asana's stream never ends by itself: the window ends on an empty page (a short page is not documented as the
    # end), so ceil(N / 100) pages of events and the empty page: ceil(N / 100) + 1, as before the engine's End.
    "asana": Traits(streams=1, cursors_expire=True, says_when_to_retry=True,
                    backfill_requests=lambda sim: pages_then_empty_page(len(sim.ground_truth())), idle_requests=1),
    # Ashby's last page says it is the last (moreDataAvailable: false), but by the simulator's default a full last
    # page still says true (docs are silent) and an empty page follows: N // 100 + 1 (was ceil(N / 100), at least
    # 1); one request more only when N is a multiple of 100.
    "ashby": Traits(streams=1, cursors_expire=True, says_when_to_retry=True,
                    backfill_requests=lambda sim: pages_then_end(len(sim.ground_truth())), idle_requests=1),
    # ClickUp: per class, pages of at most 50 rows (the simulator's default silent cap), each after the first
    # re-reading the millisecond the page before ended in, then the empty page that proves the end
    # (`keyset_pages`). Before the exact walk: events // 100 + 1 per class, pages of 100 ended by a short page.
    "clickup": Traits(streams=len(clickup.APPLICABILITIES), cursors_expire=False, says_when_to_retry=True,
                      backfill_requests=clickup_backfill_requests, idle_requests=len(clickup.APPLICABILITIES)),
    # Make pages by offset (no cursor to expire) and documents no rate-limit header. Pages overlap by the last
    # instant and one entry (`make_backfill_requests`); the window ends on the page that reaches pg.totalCount, and
    # a window starts where the last one left a hint.
    "make": Traits(streams=1, cursors_expire=False, says_when_to_retry=False,
                   backfill_requests=make_backfill_requests, idle_requests=1),
}
# Every simulated vendor must state its traits here (a new vendor's matrix rows follow from them).
assert set(TRAITS) == set(LOCAL_VENDORS), f"tests/worlds.py: TRAITS lacks {sorted(set(LOCAL_VENDORS) - set(TRAITS))}"
VENDORS = list(TRAITS)


@dataclass
class World:
    local: LocalVendor
    simulator: VendorSimulator
    traits: Traits

    @property
    def vendor(self) -> str:
        return self.local.vendor

    @property
    def function_id(self) -> str:
        return self.local.function_id

    @property
    def token(self) -> str:
        return self.local.token

    @property
    def streams(self) -> int:
        return self.traits.streams

    def seed(self, count: int, start: datetime, end: datetime, seed: int, *, published: bool = True) -> None:
        self.simulator.add_events(self.local.generate_events(count, start, end, seed), published=published)

    def backfill_requests(self) -> int:
        return self.traits.backfill_requests(self.simulator)

    def idle_requests(self) -> int:
        return self.traits.idle_requests


@contextmanager
def world_of(vendor: str, stack: LocalStack, now: Callable[[], datetime], **switches: Any) -> Iterator[World]:
    """The vendor's simulator (with its quirks `switches`) mounted at `https://<vendor>.test/`, and its collector's
    secret pointing there."""
    local = LOCAL_VENDORS[vendor]
    world = World(local, local.start(now, **switches), TRAITS[vendor])
    origin = f"https://{vendor}.test"
    session = http.shared_session()
    session.mount(f"{origin}/", SimulatorAdapter(world.simulator))
    stack.put_secret(local.function_id, local.secret(origin))
    try:
        yield world
    finally:
        session.adapters.pop(f"{origin}/", None)


def deploy(stack: LocalStack, name: str, parameters: dict[str, str] | None = None) -> str:
    """A CloudFormation stack whose outputs name the template's resources on moto, as `sam deploy` would leave it
    (moto's CloudFormation skips most of the real resources, so the outputs are literal; it does create the
    collectors' roles and the alarm topic). Returns the stack's id."""
    outputs: dict[str, Any] = {
        "StateTableName": stack.table, "ArchiveBucketName": stack.bucket, "GlueDatabase": "auditlake",
        "GlueEventsTable": "events", "AthenaWorkGroup": "auditlake-analysts",
        "ArchiveKeyArn": stack.functions_env("ARCHIVE_KMS_KEY_ARN"),
        "DigestSigningKeyArn": stack.functions_env("DIGEST_SIGNING_KEY_ARN")}
    region = boto3.session.Session().region_name
    outputs["DashboardUrl"] = (f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
                               f"#dashboards/dashboard/{name}-{region}")
    resources: dict[str, Any] = {"AlarmTopic": {"Type": "AWS::SNS::Topic"}}
    declared = ["ScheduleRateMinutes", "ReconcileIntervalHours"]
    for local in LOCAL_VENDORS.values():
        title = local.function_id.removesuffix("Collector")
        environment = stack.functions[local.function_id].environment
        outputs[f"{title}TokenSecretArn"] = environment["SECRET_ID"]
        # Where `secret set --account` puts a named account's secret: the prefix the collector reads it under.
        outputs[f"{title}AccountSecretPrefix"] = environment["ACCOUNT_SECRET_PREFIX"]
        declared.append(f"{title}Accounts")
        outputs[f"{title}CollectorFunctionName"] = stack.refs[local.function_id]
        resources[f"{local.function_id}Role"] = {"Type": "AWS::IAM::Role", "Properties": {
            "AssumeRolePolicyDocument": stack.resource(f"{local.function_id}Role")["Properties"][
                "AssumeRolePolicyDocument"]}}
        group = stack.resource(f"{local.function_id}LogGroup")["Properties"]["LogGroupName"]
        resources[f"{local.function_id}LogGroup"] = {"Type": "AWS::Logs::LogGroup", "Properties": {
            "LogGroupName": resolve(group, {"AWS::StackName": name})}}
    template = {"Parameters": {key: {"Type": "String", "Default": stack.parameters[key]} for key in declared},
                "Resources": resources,
                "Outputs": {**{key: {"Value": value} for key, value in outputs.items()},
                            "AlarmTopicArn": {"Value": {"Ref": "AlarmTopic"}}}}
    created = boto3.client("cloudformation").create_stack(
        StackName=name, TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in (parameters or {}).items()])
    return str(created["StackId"])
