"""The ClickUp simulator behaves as ClickUp documents its v3 audit-log query (vendors.md §1), seen through `requests`,
and each undocumented behaviour is a knob with a documented default."""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from auditlake_local.simulators import Fault, SimulatorAdapter
from auditlake_local.simulators.clickup import (
    APPLICABILITIES,
    OLDER_APPLICABILITIES,
    ClickUpSimulator,
    applicability_of,
    generate_events,
)

TOKEN = "pk_81000001_0123456789ABCDEFGHIJKLMNOPQRSTUV"
WORKSPACE = "9015000001"
API = "https://api.clickup.com"
AUDIT_URL = f"{API}/api/v3/workspaces/{WORKSPACE}/auditlogs"
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
ISO_MS_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


class Clock:
    def __init__(self, now: datetime) -> None:
        self.value = now

    def __call__(self) -> datetime:
        return self.value

    def advance(self, **delta: float) -> None:
        self.value += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


def simulator(clock: Clock, **knobs: Any) -> ClickUpSimulator:
    """A Workspace whose rows carry their ids and whose pages hold up to 1000 rows (400 above), so tests of other
    behaviours can name rows and read a class in one page; the defaults are tested on their own."""
    return ClickUpSimulator(TOKEN, WORKSPACE, now=clock, **{"row_ids": True, "max_page_rows": 1000,
                                                             "page_rows_over_max": "reject", **knobs})


@pytest.fixture
def sim(clock: Clock) -> ClickUpSimulator:
    return simulator(clock)


def session_for(simulator: ClickUpSimulator, authorization: str | None = TOKEN) -> requests.Session:
    session = requests.Session()
    session.mount(f"{API}/", SimulatorAdapter(simulator))
    if authorization is not None:
        session.headers["Authorization"] = authorization
    return session


@pytest.fixture
def session(sim: ClickUpSimulator) -> Iterator[requests.Session]:
    with session_for(sim) as session:
        yield session


def query(session: requests.Session, applicability: str | None = "auth-and-security", *,
          url: str = AUDIT_URL, **sections: Any) -> requests.Response:
    body: dict[str, Any] = {key: value for key, value in sections.items() if value is not None}
    if applicability is not None:
        body["applicability"] = applicability
    return session.post(url, json=body, timeout=10)


def rows_of(response: requests.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    return response.json()["data"]


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def row(row_id: str, at: datetime, event_type: str = "USER_LOGIN", **fields: Any) -> dict[str, Any]:
    return {"id": row_id, "eventType": event_type, "eventStatus": "success", "title": "User Login",
            "userId": 81000007, "userName": "Ada Lovelace", "userEmail": "ada@example.com", "userRole": 2,
            "clientIp": "192.0.2.7", "startTime": iso(at), "endTime": iso(at), **fields}


def assert_error(response: requests.Response, status: int, fragment: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"status", "message", "trace_id", "timestamp"}
    assert body["status"] == status and isinstance(body["trace_id"], int) and isinstance(body["timestamp"], int)
    assert fragment.lower() in body["message"].lower(), body


def naive_walk(session: requests.Session, applicability: str, page_rows: int,
               max_pages: int = 50) -> tuple[list[str], bool]:
    """A client that follows the docs literally: next pageTimestamp = the last row's timestamp. Returns the ids it
    saw and whether it stopped by itself (a page shorter than pageRows)."""
    seen: list[str] = []
    stamp: int | None = None
    for _ in range(max_pages):
        pagination: dict[str, Any] = {"pageRows": page_rows, "pageDirection": "before"}
        if stamp is not None:
            pagination["pageTimestamp"] = stamp
        page = rows_of(query(session, applicability, pagination=pagination))
        seen.extend(item["id"] for item in page)
        if len(page) < page_rows:
            return seen, True
        stamp = ms(datetime.fromisoformat(page[-1]["startTime"]))
    return seen, False


# --- paging -------------------------------------------------------------------------------------------------------


def test_before_walks_newest_first_and_a_literal_client_reads_every_row_when_nothing_shares_a_millisecond(
        sim: ClickUpSimulator, session: requests.Session) -> None:
    events = [row(f"r{index:03d}", NOW - timedelta(minutes=index)) for index in range(1, 251)]
    sim.add_events(events)

    first = rows_of(query(session, pagination={"pageRows": 100, "pageDirection": "before"}))
    assert [item["id"] for item in first] == [f"r{index:03d}" for index in range(1, 101)]  # newest first
    seen, finished = naive_walk(session, "auth-and-security", 100)
    assert finished and sorted(seen) == sorted(item["id"] for item in events) and len(seen) == 250


def test_after_walks_oldest_first_from_page_timestamp(sim: ClickUpSimulator, session: requests.Session) -> None:
    sim.add_events([row(f"r{index}", NOW - timedelta(minutes=10 - index)) for index in range(10)])
    after = rows_of(query(session, pagination={"pageRows": 3, "pageDirection": "after",
                                               "pageTimestamp": ms(NOW - timedelta(minutes=8))}))
    assert [item["id"] for item in after] == ["r3", "r4", "r5"]  # strictly after r2's millisecond
    oldest = rows_of(query(session, pagination={"pageRows": 2, "pageDirection": "after"}))
    assert [item["id"] for item in oldest] == ["r0", "r1"]


def test_page_timestamp_is_exclusive_by_default_and_inclusive_by_knob(clock: Clock) -> None:
    at = NOW - timedelta(hours=1)
    one_ms = timedelta(milliseconds=1)
    events = [row("before", at - one_ms), row("at", at), row("after", at + one_ms)]
    for inclusive, expected_before, expected_after in ((False, ["before"], ["after"]),
                                                       (True, ["at", "before"], ["at", "after"])):
        sim = simulator(clock, page_timestamp_inclusive=inclusive)
        sim.add_events(events)
        with session_for(sim) as session:
            before = rows_of(query(session, pagination={"pageTimestamp": ms(at), "pageDirection": "before"}))
            after = rows_of(query(session, pagination={"pageTimestamp": ms(at), "pageDirection": "after"}))
        assert [item["id"] for item in before] == expected_before
        assert [item["id"] for item in after] == expected_after


def test_a_burst_larger_than_a_page_defeats_a_literal_client_either_way(clock: Clock) -> None:
    """The documented pitfall: 150 rows in one millisecond, pages of 100. Exclusive: the walk skips the rest of the
    millisecond; inclusive: it gets the same page forever."""
    instant = NOW - timedelta(hours=1)
    events = [row(f"b{index:03d}", instant) for index in range(150)]
    events += [row("older", instant - timedelta(seconds=1)), row("newer", instant + timedelta(seconds=1))]

    exclusive = simulator(clock)
    exclusive.add_events(events)
    with session_for(exclusive) as session:
        seen, finished = naive_walk(session, "auth-and-security", 100)
    assert finished and len(seen) == len(set(seen)) < 152 and "older" in seen  # rows lost, silently

    inclusive = simulator(clock, page_timestamp_inclusive=True)
    inclusive.add_events(events)
    with session_for(inclusive) as session:
        seen, finished = naive_walk(session, "auth-and-security", 100, max_pages=5)
    assert not finished and "older" not in seen  # stuck on the burst

    with session_for(exclusive) as session:  # ties keep one order: the same request returns the same page
        pagination = {"pageRows": 100, "pageTimestamp": ms(instant) + 1, "pageDirection": "before"}
        assert rows_of(query(session, pagination=pagination)) == rows_of(query(session, pagination=pagination))
        reverse = rows_of(query(session, pagination={"pageRows": 150, "pageTimestamp": ms(instant) - 1,
                                                      "pageDirection": "after"}))
        forward = rows_of(query(session, pagination={**pagination, "pageRows": 150}))
        assert [item["id"] for item in reverse] == [item["id"] for item in reversed(forward)]


@pytest.mark.parametrize(("start_inclusive", "end_inclusive"), [(False, True), (True, False), (True, True)],
                         ids=["default-start-excl-end-incl", "start-incl-end-excl", "both-incl"])
def test_filter_times_are_epoch_ms_and_their_inclusivity_is_a_knob(start_inclusive: bool, end_inclusive: bool,
                                                                   clock: Clock) -> None:
    t0 = NOW - timedelta(hours=3)
    sim = simulator(clock, **({} if (start_inclusive, end_inclusive) == (False, True) else {
        "start_time_inclusive": start_inclusive, "end_time_inclusive": end_inclusive}))
    assert (sim.start_time_inclusive, sim.end_time_inclusive) == (start_inclusive, end_inclusive)
    sim.add_events([row("1", t0 - timedelta(milliseconds=1)), row("2", t0), row("3", t0 + timedelta(hours=1)),
                    row("4", t0 + timedelta(hours=2)), row("5", t0 + timedelta(hours=2, milliseconds=1))])
    with session_for(sim) as session:
        page = rows_of(query(session, filter={"startTime": ms(t0), "endTime": ms(t0 + timedelta(hours=2))}))
        assert [item["id"] for item in page] == ["4"] * end_inclusive + ["3"] + ["2"] * start_inclusive
        assert_error(query(session, filter={"startTime": iso(t0)}), 400, "startTime")


def test_page_rows_default_maximum_and_the_cap_knob(clock: Clock) -> None:
    events = generate_events(6000, NOW - timedelta(days=1), NOW, seed=1, burst_rate=0)
    login_rows = [item for item in events if item["eventType"] == "USER_LOGIN"][:1100]
    assert len(login_rows) == 1100
    rejecting = simulator(clock)
    rejecting.add_events(login_rows)
    with session_for(rejecting) as session:
        assert len(rows_of(query(session))) == 100  # docs are silent on the default
        assert len(rows_of(query(session, pagination={"pageRows": 1000}))) == 1000
        assert_error(query(session, pagination={"pageRows": 1001}), 400, "pageRows")
        for bad in (0, -5, 2.5, "10", True):
            assert_error(query(session, pagination={"pageRows": bad}), 400, "pageRows")

    capping = simulator(clock, max_page_rows=100, page_rows_over_max="cap")
    capping.add_events(login_rows)
    with session_for(capping) as session:
        assert len(rows_of(query(session, pagination={"pageRows": 500}))) == 100  # silently

    uncapped = simulator(clock, max_page_rows=None)
    uncapped.add_events(login_rows)
    with session_for(uncapped) as session:
        assert len(rows_of(query(session, pagination={"pageRows": 5000}))) == 1100

    default = ClickUpSimulator(TOKEN, WORKSPACE, now=clock)  # the least friendly: half the collectors' page
    default.add_events(login_rows)
    with session_for(default) as session:
        assert len(rows_of(query(session, pagination={"pageRows": 100}))) == 50
        assert len(rows_of(query(session, pagination={"pageRows": 20}))) == 20


def test_defaults_are_the_least_friendly_readings(clock: Clock) -> None:
    sim = ClickUpSimulator(TOKEN, WORKSPACE, now=clock)
    assert (sim.row_ids, sim.max_page_rows, sim.page_rows_over_max, sim.page_timestamp_inclusive,
            sim.start_time_inclusive, sim.end_time_inclusive, sim.time_key, sim.applicabilities,
            sim.no_audit_logs_status) == (False, 50, "cap", False, False, True, "startTime", APPLICABILITIES, 404)
    # Two failed logins by one person from one address in one millisecond: two rows, served byte-identical.
    failed = {**row("a", NOW - timedelta(minutes=1)), "eventStatus": "failed"}
    sim.add_events([failed, {**failed, "id": "b"}])
    with session_for(sim) as session:
        served = rows_of(query(session))
    assert len(served) == 2 and served[0] == served[1] and "id" not in served[0]
    assert sorted(sim.ground_truth()) == ["a", "b"]


@pytest.mark.parametrize("time_key", ["endTime", "internal"])
def test_the_paging_key_knob_filters_and_orders_by_another_time(time_key: str, clock: Clock) -> None:
    t0 = NOW - timedelta(hours=1)
    # "late" started first but ended last (a SCIM call that took 5 s): by endTime it is the newest row.
    events = [row("early", t0), {**row("late", t0 - timedelta(seconds=2)), "endTime": iso(t0 + timedelta(seconds=3))},
              row("mid", t0 + timedelta(seconds=1))]
    by_start = simulator(clock)
    by_start.add_events(events)
    other = simulator(clock, time_key=time_key)
    other.add_events(events)
    with session_for(by_start) as session:
        assert [item["id"] for item in rows_of(query(session))] == ["mid", "early", "late"]
        assert [item["id"] for item in rows_of(query(session, filter={"startTime": ms(t0) - 1}))] == ["mid", "early"]
    with session_for(other) as session:
        ids = [item["id"] for item in rows_of(query(session))]
        window = [item["id"] for item in rows_of(query(session, filter={"startTime": ms(t0) - 1}))]
    if time_key == "endTime":
        assert ids == ["late", "mid", "early"] and window == ["late", "mid", "early"]
    else:  # stored up to INTERNAL_DELAY_MS after it happened: the same rows, perhaps in another order
        assert sorted(ids) == ["early", "late", "mid"]
    internal = simulator(clock, time_key="internal")
    internal.add_events(generate_events(300, NOW - timedelta(hours=1), NOW, seed=9))
    with session_for(internal) as session:
        times = [item["startTime"] for item in rows_of(query(session, pagination={"pageRows": 300}))]
    assert times != sorted(times, reverse=True)  # not in startTime order


def test_a_workspace_of_the_older_spec_refuses_the_newer_classes(clock: Clock) -> None:
    sim = simulator(clock, applicabilities=OLDER_APPLICABILITIES)
    with session_for(sim) as session:
        for applicability in APPLICABILITIES:
            if applicability in OLDER_APPLICABILITIES:
                assert query(session, applicability).status_code == 200
            else:
                assert_error(query(session, applicability), 400, "applicability must be one of the following")


@pytest.mark.parametrize(("status", "fragment"), [(404, "INSUFFICIENT_WORKSPACE_ACCESS"), (402, "Enterprise plan"),
                                                  (403, "plan")])
def test_a_plan_without_audit_logs_answers_the_status_of_the_knob(status: int, fragment: str, clock: Clock) -> None:
    sim = simulator(clock, enterprise=False, **({} if status == 404 else {"no_audit_logs_status": status}))
    with session_for(sim) as session:
        assert_error(query(session), status, fragment)


def test_a_server_error_carries_the_rate_limit_headers_too(sim: ClickUpSimulator, session: requests.Session,
                                                           clock: Clock) -> None:
    query(session)  # opens the rate-limit minute
    clock.advance(seconds=5)
    sim.faults.next(Fault.SERVER_ERROR)
    failed = query(session)
    assert_error(failed, 500, "Internal Server Error")
    assert failed.headers["X-RateLimit-Reset"] == str(int(NOW.timestamp()) + 60)  # 55 s away: not when to retry
    assert failed.headers["X-RateLimit-Remaining"] == "9998"


# --- log classes and filters --------------------------------------------------------------------------------------


def test_one_query_returns_one_class_and_the_six_classes_partition_the_rows(sim: ClickUpSimulator,
                                                                             session: requests.Session) -> None:
    events = generate_events(3000, NOW - timedelta(days=2), NOW, seed=2)
    sim.add_events(events)
    served: Counter[str] = Counter()
    for applicability in APPLICABILITIES:
        page = rows_of(query(session, applicability, pagination={"pageRows": 1000}))
        assert page, applicability
        assert {applicability_of(item["eventType"]) for item in page} == {applicability}
        served.update(item["id"] for item in page)
    expected = Counter(applicability_of(item["eventType"]) for item in events)
    assert all(count >= 20 for count in expected.values()), expected
    assert set(served.values()) == {1}
    assert applicability_of("TASK_CREATED") == "user-activity" and applicability_of("FIELD_MERGED") == "custom-fields"
    assert applicability_of("USER_LOGIN") == "auth-and-security" and applicability_of("LIST_DELETED") == \
        "hierarchy-activity"
    assert applicability_of("AGENT_CREATED") == "agent-settings-activity"
    assert applicability_of("SOMETHING_NEW") == "other-activity"


def test_filters_select_matching_rows(sim: ClickUpSimulator, session: requests.Session) -> None:
    events = generate_events(2000, NOW - timedelta(days=1), NOW, seed=3)
    sim.add_events(events)
    auth = [item for item in events if applicability_of(item["eventType"]) == "auth-and-security"]
    someone = next(item for item in auth if item["userId"] is not None)

    def ids(**filters: Any) -> list[str]:
        return sorted(item["id"] for item in rows_of(query(session, filter=filters, pagination={"pageRows": 1000})))

    def expected(predicate: Any) -> list[str]:
        return sorted(item["id"] for item in auth if predicate(item))

    logins = expected(lambda item: item["eventType"] == "USER_LOGIN")
    assert ids(eventType="USER_LOGIN") == ids(eventType=["USER_LOGIN"]) == logins  # string or array
    assert ids(eventType=["USER_LOGIN", "USER_LOGOUT"]) == expected(
        lambda item: item["eventType"] in {"USER_LOGIN", "USER_LOGOUT"})
    failed = ids(eventType="USER_LOGIN", eventStatus="failed")
    assert failed and failed == expected(lambda item: item["eventType"] == "USER_LOGIN"
                                         and item["eventStatus"] == "failed")
    assert ids(userId=[str(someone["userId"])]) == expected(lambda item: item["userId"] == someone["userId"])
    assert ids(userEmail=[someone["userEmail"]]) == expected(lambda item: item["userEmail"] == someone["userEmail"])
    assert ids(workspaceId=WORKSPACE) == ids()
    assert len(rows_of(query(session, "hierarchy-activity", filter={"eventType": "FOLDER_CREATED"}))) > 0


def test_malformed_bodies_get_a_400_in_the_v3_envelope(session: requests.Session) -> None:
    assert_error(query(session, None), 400, "applicability is required")
    assert_error(query(session, "auth"), 400, "applicability")
    assert_error(query(session, filter={"eventType": "NOT_AN_EVENT"}), 400, "eventType")
    assert_error(query(session, filter={"eventType": [1, 2]}), 400, "eventType")
    assert_error(query(session, filter={"eventStatus": "ok"}), 400, "eventStatus")
    assert_error(query(session, filter={"userEmail": "a@example.com"}), 400, "userEmail")
    assert_error(query(session, filter={"workspaceId": "1"}), 400, "workspaceId")
    assert_error(query(session, filter=["not", "an", "object"]), 400, "filter")
    assert_error(query(session, pagination={"pageDirection": "up"}), 400, "pageDirection")
    assert_error(query(session, pagination={"pageTimestamp": "now"}), 400, "pageTimestamp")
    assert_error(session.post(AUDIT_URL, data=b"{not json", timeout=10), 400, "JSON")
    assert_error(session.post(AUDIT_URL, json=["auth-and-security"], timeout=10), 400, "object")


# --- the response's undocumented shape ----------------------------------------------------------------------------


def test_rows_default_to_a_data_envelope_with_ids_iso_times_and_the_workspace(sim: ClickUpSimulator,
                                                                              session: requests.Session) -> None:
    sim.add_events([row("abc", NOW - timedelta(minutes=1))])
    body = query(session).json()
    assert body == {"data": [{"id": "abc", "workspaceId": int(WORKSPACE), "eventType": "USER_LOGIN",
                              "eventStatus": "success", "title": "User Login", "userId": 81000007,
                              "userName": "Ada Lovelace", "userEmail": "ada@example.com", "userRole": 2,
                              "clientIp": "192.0.2.7", "startTime": iso(NOW - timedelta(minutes=1)),
                              "endTime": iso(NOW - timedelta(minutes=1))}]}
    assert sim.ground_truth() == {"abc": body["data"][0]}


def test_shape_knobs_bare_list_no_ids_epoch_ms(clock: Clock) -> None:
    sim = simulator(clock, envelope=None, row_ids=False, time_format="epoch_ms")
    events = generate_events(50, NOW - timedelta(days=1), NOW, seed=4)
    sim.add_events(events)
    with session_for(sim) as session:
        body = query(session, pagination={"pageRows": 1000}).json()
    assert isinstance(body, list) and body
    assert all("id" not in item and isinstance(item["startTime"], int) for item in body)
    truth = sim.ground_truth()
    assert set(truth) == {item["id"] for item in events}  # keyed by the id the rows were captured with
    assert all(item in truth.values() for item in body)

    logs = simulator(clock, envelope="logs")
    logs.add_events(events)
    with session_for(logs) as session:
        assert set(query(session).json()) == {"logs"}


def test_rows_captured_without_an_id_get_an_internal_key(sim: ClickUpSimulator) -> None:
    bare = row("x", NOW - timedelta(minutes=1))
    del bare["id"]
    sim.add_events([bare, {**bare, "startTime": ms(NOW - timedelta(minutes=2))}])
    truth = sim.ground_truth()
    assert len(truth) == 2 and all(key.startswith("row-") for key in truth)
    assert sorted(item["startTime"] for item in truth.values()) == [iso(NOW - timedelta(minutes=2)),
                                                                     iso(NOW - timedelta(minutes=1))]
    with pytest.raises(ValueError, match="unique"):
        sim.add_events([row("dup", NOW), row("dup", NOW)])
    assert len(sim.ground_truth()) == 2  # a refused batch leaves no trace


# --- visibility ---------------------------------------------------------------------------------------------------


def test_late_rows_appear_when_published_and_future_rows_when_their_time_comes(
        sim: ClickUpSimulator, session: requests.Session, clock: Clock) -> None:
    sim.add_events([row("on-time", NOW - timedelta(minutes=3))])
    sim.add_events([row("late", NOW - timedelta(minutes=2))], published=False)
    sim.add_events([row("future", NOW + timedelta(minutes=5))])
    assert [item["id"] for item in rows_of(query(session))] == ["on-time"]
    assert set(sim.ground_truth()) == {"on-time"}
    assert sim.publish_pending() == 1
    assert [item["id"] for item in rows_of(query(session))] == ["late", "on-time"]
    clock.advance(minutes=5)
    assert set(sim.ground_truth()) == {"on-time", "late", "future"}
    sim.expire_cursors()  # nothing to expire: the same query answers the same
    assert [item["id"] for item in rows_of(query(session))] == ["future", "late", "on-time"]


def test_retention_knob(clock: Clock) -> None:
    sim = simulator(clock, retention=timedelta(days=30))
    sim.add_events([row("old", NOW - timedelta(days=31)), row("recent", NOW - timedelta(days=29))])
    with session_for(sim) as session:
        assert [item["id"] for item in rows_of(query(session))] == ["recent"]
    assert set(sim.ground_truth()) == {"recent"}


# --- routes, auth, plan -------------------------------------------------------------------------------------------


def test_only_the_v3_auditlogs_operation_exists(session: requests.Session) -> None:
    assert query(session).status_code == 200
    assert_error(query(session, url=f"{API}/api/v3/workspaces/{WORKSPACE}/audit-logs"), 404, "Route not found")
    assert_error(query(session, url=f"{API}/api/v2/team/{WORKSPACE}/audit"), 404, "Route not found")
    assert_error(session.get(AUDIT_URL, timeout=10), 404, "Route not found")


def test_the_token_goes_as_is_and_oauth_as_bearer(clock: Clock) -> None:
    sim = simulator(clock, oauth_token="81000001_oauthaccesstoken")
    for authorization in (None, "pk_81000001_wrong", f"Bearer {TOKEN}", f"token {TOKEN}"):
        with session_for(sim, authorization) as session:
            assert_error(query(session), 401, "Token invalid")
    for authorization in (TOKEN, "Bearer 81000001_oauthaccesstoken"):
        with session_for(sim, authorization) as session:
            assert query(session).status_code == 200


def test_wrong_workspace_plan_and_role(clock: Clock) -> None:
    with session_for(simulator(clock)) as session:
        assert_error(query(session, url=f"{API}/api/v3/workspaces/9015000002/auditlogs"), 401, "Team not authorized")
    with session_for(simulator(clock, enterprise=False)) as session:
        assert_error(query(session), 404, "INSUFFICIENT_WORKSPACE_ACCESS")
    with session_for(simulator(clock, owner=False)) as session:
        assert_error(query(session), 403, "owner")


# --- rate limits and faults ---------------------------------------------------------------------------------------


def test_rate_limit_headers_and_429_with_an_epoch_reset(clock: Clock) -> None:
    sim = simulator(clock, rate_limit_per_minute=3)
    with session_for(sim) as session:
        first = query(session)
        assert first.headers["X-RateLimit-Limit"] == "3" and first.headers["X-RateLimit-Remaining"] == "2"
        assert first.headers["X-RateLimit-Reset"] == str(int(NOW.timestamp()) + 60)  # Unix time, seconds
        clock.advance(seconds=10)
        assert [query(session).status_code for _ in range(2)] == [200, 200]
        clock.advance(seconds=10)
        throttled = query(session)
        assert_error(throttled, 429, "Rate limit")
        assert "Retry-After" not in throttled.headers
        assert throttled.headers["X-RateLimit-Remaining"] == "0"
        assert throttled.headers["X-RateLimit-Reset"] == str(int(NOW.timestamp()) + 60)
        clock.advance(seconds=40)
        assert query(session).status_code == 200
    assert sim.stats()["rate_limited"] == 1

    with session_for(simulator(clock)) as session:  # not enforced, still announced
        assert session.post(AUDIT_URL, json={"applicability": "other-activity"}, timeout=10) \
            .headers["X-RateLimit-Limit"] == "10000"


def test_faults_use_clickups_shapes(sim: ClickUpSimulator, session: requests.Session) -> None:
    sim.add_events(generate_events(20, NOW - timedelta(days=1), NOW, seed=5))
    sim.faults.next(Fault.RATE_LIMITED)
    limited = query(session)
    assert_error(limited, 429, "Rate limit")
    assert int(limited.headers["X-RateLimit-Reset"]) == int(NOW.timestamp()) + sim.fault_retry_after
    sim.faults.next(Fault.SERVER_ERROR)
    assert_error(query(session), 500, "Internal Server Error")
    sim.faults.next(Fault.TRUNCATED_BODY)
    truncated = query(session, "user-activity")
    with pytest.raises(requests.exceptions.JSONDecodeError):
        truncated.json()
    assert sim.stats()["faults_injected"] == 3
    assert TOKEN not in repr(sim.requests_log)


# --- generated rows -----------------------------------------------------------------------------------------------


def test_generated_rows_are_realistic_deterministic_and_only_failed_logins_repeat_within_a_millisecond() -> None:
    events = generate_events(4000, NOW - timedelta(days=7), NOW, seed=6)

    assert events == generate_events(4000, NOW - timedelta(days=7), NOW, seed=6)
    assert events != generate_events(4000, NOW - timedelta(days=7), NOW, seed=7)
    assert len({item["id"] for item in events}) == 4000
    assert events == sorted(events, key=lambda item: item["startTime"])
    for item in events:
        assert list(item) == ["id", "eventType", "eventStatus", "title", "userId", "userName", "userEmail",
                              "userRole", "clientIp", "startTime", "endTime"]
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", item["id"])
        assert ISO_MS_Z.match(item["startTime"]) and ISO_MS_Z.match(item["endTime"])
        took = datetime.fromisoformat(item["endTime"]) - datetime.fromisoformat(item["startTime"])
        # SCIM calls take a moment; everything else ends when it starts
        assert timedelta(0) < took <= timedelta(seconds=2.1) if item["eventType"].startswith("SCIM_") else not took
        assert NOW - timedelta(days=7) <= datetime.fromisoformat(item["startTime"]) < NOW
        assert item["eventStatus"] in {"success", "failed", "error"}
        assert item["userRole"] in {1, 2, 3, 4, None} and (item["userRole"] is None) == (item["userId"] is None)
        assert re.fullmatch(r"(192\.0\.2|198\.51\.100|203\.0\.113)\.\d+", item["clientIp"])
    kinds = Counter(item["eventType"] for item in events)
    assert len(kinds) >= 40
    assert {"USER_LOGIN", "CHANGE_USER_ROLE", "INVITE_TO_WORKSPACE", "REMOVE_FROM_WORKSPACE", "SCIM_DEPROVISION",
            "CHANGE_SSO_POLICY", "TASK_DELETED", "FIELD_CREATED", "LIST_DELETED", "AGENT_CREATED"} <= set(kinds)
    failed_logins = [item for item in events if item["eventType"] == "USER_LOGIN" and item["eventStatus"] == "failed"]
    assert failed_logins and any(item["userId"] is None for item in failed_logins)  # addresses that are no member's
    pairs = list(itertools.pairwise(events))
    assert sum(a["startTime"] == b["startTime"] for a, b in pairs) > 100  # bursts
    # Within a millisecond rows differ, except the repeats of a failed login (a password-guessing script).
    by_ms: dict[str, Counter[str]] = {}
    for item in events:
        by_ms.setdefault(item["startTime"], Counter())[repr({k: v for k, v in item.items() if k != "id"})] += 1
    repeated = [(content, n) for contents in by_ms.values() for content, n in contents.items() if n > 1]
    assert len(repeated) >= 10 and max(n for _, n in repeated) >= 3
    assert all("'eventType': 'USER_LOGIN', 'eventStatus': 'failed'" in content for content, _ in repeated)


@pytest.mark.slow
def test_100k_rows_generate_load_and_page_at_scale(clock: Clock) -> None:
    events = generate_events(100_000, NOW - timedelta(days=30), NOW, seed=8)
    sim = simulator(clock)
    sim.add_events(events)
    recent = [item for item in events if item["startTime"] >= iso(NOW - timedelta(days=2))
              and applicability_of(item["eventType"]) == "user-activity"]
    seen: set[str] = set()
    stamp, pages = NOW_MS, 0
    with session_for(sim) as session:
        while True:
            # Exclusive pageTimestamp, so re-reading the last millisecond from stamp + 1 and dropping what was seen
            # is the loss-free walk.
            page = rows_of(query(session, "user-activity", filter={"startTime": ms(NOW - timedelta(days=2))},
                                 pagination={"pageRows": 100, "pageTimestamp": stamp + 1}))
            pages += 1
            new = {item["id"] for item in page} - seen
            seen |= new
            if len(page) < 100:
                break
            stamp = ms(datetime.fromisoformat(page[-1]["startTime"]))
            assert new, "the walk must advance"
    assert seen == {item["id"] for item in recent}
    assert pages >= len(recent) // 100
