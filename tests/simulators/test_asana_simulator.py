"""The Asana simulator behaves as Asana documents its Audit Log API (vendors.md §4), seen through `requests`."""

from __future__ import annotations

import base64
import itertools
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from auditlake_local.simulators import (
    AsanaSimulator,
    Fault,
    FaultPlan,
    RequestRecord,
    SimRequest,
    SimResponse,
    SimulatorAdapter,
    VendorSimulator,
    generate_events,
    serve,
)

TOKEN = "2/1200000000000001/1208000000000000:0123456789abcdef"
WORKSPACE = "1337"
API = "https://app.asana.com/api/1.0"
EVENTS_URL = f"{API}/workspaces/{WORKSPACE}/audit_log_events"
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
RATE_LIMIT_MESSAGE = ("You've made too many requests and hit a rate limit. "
                      "Please retry after the given amount of time.")


class Clock:
    """A settable clock shared by the simulator and the test."""

    def __init__(self, now: datetime) -> None:
        self.value = now

    def __call__(self) -> datetime:
        return self.value

    def advance(self, **delta: float) -> None:
        self.value += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def sim(clock: Clock) -> AsanaSimulator:
    return AsanaSimulator(TOKEN, WORKSPACE, now=clock)


def session_for(simulator: VendorSimulator, token: str | None = TOKEN) -> requests.Session:
    session = requests.Session()
    session.mount("https://app.asana.com/", SimulatorAdapter(simulator))
    if token is not None:
        session.headers["Authorization"] = f"Bearer {token}"
    return session


@pytest.fixture
def session(sim: AsanaSimulator) -> Iterator[requests.Session]:
    with session_for(sim) as session:
        yield session


def get(session: requests.Session, **params: Any) -> requests.Response:
    return session.get(EVENTS_URL, params=params, timeout=10)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event(gid: str, created_at: datetime, event_type: str = "user_login_succeeded") -> dict[str, Any]:
    user = {"gid": "1200000000000099", "name": "Ada Lovelace", "email": "ada@example.com"}
    return {"gid": gid, "created_at": iso(created_at), "event_type": event_type, "event_category": "logins",
            "actor": {"actor_type": "user", **user}, "resource": {"resource_type": "user", **user},
            "details": {}, "context": {"context_type": "web", "client_ip_address": "192.0.2.1"}}


def read_all(session: requests.Session, max_pages: int = 2000,
             **params: Any) -> tuple[list[dict[str, Any]], dict[str, Any], int]:
    """Pages until the stream is caught up (empty data): (events, last response body, pages requested).

    Fails at the first event returned twice, so a stream that stops advancing fails fast instead of looping.
    """
    events: list[dict[str, Any]] = []
    seen: set[str] = set()
    query = dict(params)
    for pages in range(1, max_pages + 1):
        response = get(session, **query)
        assert response.status_code == 200, response.text
        body = response.json()
        if not body["data"]:
            return events, body, pages
        for item in body["data"]:
            assert item["gid"] not in seen, f"event {item['gid']} returned twice (page {pages})"
            seen.add(item["gid"])
        events.extend(body["data"])
        query = {**params, "offset": body["next_page"]["offset"]}
    raise AssertionError(f"the stream did not catch up within {max_pages} pages")


def sort_key(item: dict[str, Any]) -> tuple[str, int]:
    return item["created_at"], int(item["gid"])


def assert_error(response: requests.Response, status: int, fragment: str) -> None:
    assert response.status_code == status, response.text
    errors = response.json()["errors"]
    assert len(errors) == 1
    assert fragment.lower() in errors[0]["message"].lower()


# --- ordering and paging ----------------------------------------------------------------------------------------


def test_pages_are_ascending_and_the_stream_returns_every_event_exactly_once(sim: AsanaSimulator,
                                                                            session: requests.Session) -> None:
    sim.add_events(generate_events(250, NOW - timedelta(days=2), NOW, seed=1))

    events, last, pages = read_all(session, limit=100)

    assert [item["gid"] for item in events] == [item["gid"] for item in sorted(events, key=sort_key)]
    assert len(events) == len({item["gid"] for item in events}) == 250
    assert {item["gid"] for item in events} == set(sim.ground_truth())
    assert pages == 4  # 100 + 100 + 50, then the empty "caught up" page
    assert last["data"] == [] and last["next_page"] is not None
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", item["created_at"]) for item in events)


def test_limits_up_to_1000_are_accepted_when_switched(clock: Clock) -> None:
    """The other reading of the conflict: the prose's 1000 is the maximum too."""
    sim = AsanaSimulator(TOKEN, WORKSPACE, now=clock, max_limit=1000)
    sim.add_events(generate_events(1500, NOW - timedelta(days=1), NOW, seed=2))
    with session_for(sim) as session:
        assert len(get(session, limit=500).json()["data"]) == 500
        assert len(get(session, limit=1000).json()["data"]) == 1000
        assert_error(get(session, limit=1001), 400, "between 1 and 1000")


def test_limit_bounds_and_the_default_of_1000(sim: AsanaSimulator, session: requests.Session) -> None:
    sim.add_events(generate_events(1500, NOW - timedelta(days=1), NOW, seed=2))

    for bad in (0, 101, -1, "ten"):
        assert_error(get(session, limit=bad), 400, "limit")
    assert len(get(session, limit=1).json()["data"]) == 1
    assert len(get(session, limit=100).json()["data"]) == 100

    first = get(session).json()  # no limit: "The default limit is 1000 events"
    assert len(first["data"]) == 1000
    second = get(session, offset=first["next_page"]["offset"]).json()
    assert len(second["data"]) == 500


def test_start_at_is_inclusive_and_end_at_exclusive(sim: AsanaSimulator, session: requests.Session) -> None:
    t0 = NOW - timedelta(hours=3)
    sim.add_events([event("1000000000000001", t0 - timedelta(milliseconds=1)),
                    event("1000000000000002", t0),
                    event("1000000000000003", t0 + timedelta(hours=1)),
                    event("1000000000000004", t0 + timedelta(hours=2))])

    body = get(session, start_at=iso(t0), end_at=iso(t0 + timedelta(hours=2))).json()

    assert [item["gid"] for item in body["data"]] == ["1000000000000002", "1000000000000003"]
    # Numeric offsets name the same instants: 11:00+02:00 is 09:00Z (= t0), 13:00+02:00 is 11:00Z.
    same = get(session, start_at="2025-06-01T11:00:00+02:00", end_at="2025-06-01T13:00:00.000+02:00").json()
    assert [item["gid"] for item in same["data"]] == ["1000000000000002", "1000000000000003"]


def test_malformed_parameters_get_a_400_envelope(session: requests.Session) -> None:
    assert_error(get(session, start_at="yesterday"), 400, "start_at")
    assert_error(get(session, end_at="2025-13-01T00:00:00Z"), 400, "end_at")
    assert_error(get(session, actor_type="robot"), 400, "actor_type")
    assert_error(get(session, offset="not-an-offset"), 400, "offset")
    assert "help" in get(session, limit=0).json()["errors"][0]


def test_filters_select_matching_events_only(sim: AsanaSimulator, session: requests.Session) -> None:
    events = generate_events(600, NOW - timedelta(days=1), NOW, seed=3)
    sim.add_events(events)
    some_user = next(item for item in events if item["actor"]["actor_type"] == "user")
    cases: list[tuple[dict[str, str], Any]] = [
        ({"event_type": "task_deleted"}, lambda item: item["event_type"] == "task_deleted"),
        ({"actor_type": "asana"}, lambda item: item["actor"]["actor_type"] == "asana"),
        ({"actor_gid": some_user["actor"]["gid"]}, lambda item: item["actor"].get("gid") == some_user["actor"]["gid"]),
        ({"resource_gid": some_user["resource"]["gid"]},
         lambda item: item["resource"].get("gid") == some_user["resource"]["gid"]),
    ]
    for params, predicate in cases:
        returned, _, _ = read_all(session, limit=100, **params)
        expected = [item["gid"] for item in events if predicate(item)]
        assert expected, params
        assert sorted(item["gid"] for item in returned) == sorted(expected), params


# --- the streaming quirk ----------------------------------------------------------------------------------------


def test_next_page_is_null_only_when_nothing_ever_matched(sim: AsanaSimulator, session: requests.Session) -> None:
    assert get(session, limit=10).json() == {"data": [], "next_page": None}

    sim.add_events([event("1000000000000001", NOW - timedelta(hours=1))])
    assert get(session, limit=10, event_type="workspace_export_started").json() == {"data": [], "next_page": None}
    assert get(session, limit=10, start_at=iso(NOW - timedelta(minutes=5))).json()["next_page"] is None

    first = get(session, limit=10).json()
    assert len(first["data"]) == 1 and first["next_page"] is not None
    caught_up = get(session, limit=10, offset=first["next_page"]["offset"]).json()
    assert caught_up["data"] == []
    assert caught_up["next_page"] is not None  # kept so the client can poll for future events
    again = get(session, limit=10, offset=caught_up["next_page"]["offset"]).json()
    assert again["data"] == [] and again["next_page"] is not None


@pytest.mark.parametrize("mode", ["on_last_page", "on_every_page"])
def test_next_page_null_on_pages_of_events_when_switched(mode: str, clock: Clock) -> None:
    """Beyond the docs: null on the page that reaches the last event matching now, or on every page of events.
    An empty page after an offset keeps its next_page either way."""
    sim = AsanaSimulator(TOKEN, WORKSPACE, now=clock, null_next_page=mode)
    sim.add_events(generate_events(25, NOW - timedelta(days=1), NOW - timedelta(hours=1), seed=4))
    with session_for(sim) as session:
        pages = [get(session, limit=10).json()]
        while pages[-1]["next_page"] is not None and pages[-1]["data"]:
            pages.append(get(session, limit=10, offset=pages[-1]["next_page"]["offset"]).json())
    if mode == "on_every_page":
        assert len(pages) == 1 and len(pages[0]["data"]) == 10 and pages[0]["next_page"] is None
    else:
        assert [len(page["data"]) for page in pages] == [10, 10, 5] and pages[-1]["next_page"] is None
        assert all(page["next_page"] is not None for page in pages[:-1])
    with pytest.raises(ValueError, match="null_next_page"):
        AsanaSimulator(TOKEN, WORKSPACE, now=clock, null_next_page="sometimes")


def test_events_are_published_up_to_the_publication_delay_late(clock: Clock) -> None:
    """Capture latency: each event becomes visible at its own moment within `publication_delay` after created_at,
    the same for every query; the ground truth is what is published."""
    sim = AsanaSimulator(TOKEN, WORKSPACE, now=clock, publication_delay=timedelta(hours=2))
    events = generate_events(300, NOW - timedelta(minutes=30), NOW, seed=12)
    sim.add_events(events)
    with session_for(sim) as session:
        visible, _, _ = read_all(session, limit=100)
        assert 0 < len(visible) < 300 and {e["gid"] for e in visible} == set(sim.ground_truth())
        clock.advance(hours=1)
        later, _, _ = read_all(session, limit=100)
        assert len(visible) < len(later) < 300 and {e["gid"] for e in visible} < {e["gid"] for e in later}
        clock.advance(hours=1, minutes=1)
        assert len(read_all(session, limit=100)[0]) == len(sim.ground_truth()) == 300
    assert AsanaSimulator(TOKEN, WORKSPACE, now=clock).publication_delay is None


def test_next_page_path_and_uri_repeat_the_query(sim: AsanaSimulator, session: requests.Session) -> None:
    sim.add_events(generate_events(30, NOW - timedelta(days=1), NOW, seed=4))
    start = iso(NOW - timedelta(days=2))

    body = get(session, limit=10, start_at=start).json()
    next_page = body["next_page"]

    assert next_page["path"].startswith(f"/workspaces/{WORKSPACE}/audit_log_events?")
    assert next_page["uri"] == API + next_page["path"]
    assert next_page["offset"].startswith("eyJ")
    assert "start_at=" in next_page["path"] and "limit=10" in next_page["path"]
    via_uri = session.get(next_page["uri"], timeout=10).json()
    via_offset = get(session, limit=10, start_at=start, offset=next_page["offset"]).json()
    assert via_uri["data"] == via_offset["data"]
    assert {item["gid"] for item in via_uri["data"]}.isdisjoint({item["gid"] for item in body["data"]})


def test_offset_continues_exactly_after_the_last_event_inside_a_burst(sim: AsanaSimulator,
                                                                      session: requests.Session) -> None:
    instant = NOW - timedelta(hours=1)
    burst = [event(gid, instant) for gid in ("7000000000000005", "3000000000000002", "9000000000000001",
                                             "1000000000000004", "5000000000000003")]
    sim.add_events([event("2000000000000000", instant - timedelta(milliseconds=1)), *burst,
                    event("8000000000000000", instant + timedelta(milliseconds=1))])

    events, _, pages = read_all(session, limit=2)

    assert [item["gid"] for item in events] == [
        "2000000000000000",
        "1000000000000004", "3000000000000002", "5000000000000003", "7000000000000005", "9000000000000001",
        "8000000000000000",
    ]
    assert pages == 5  # pages end twice inside the burst; none is lost or repeated


def test_late_event_after_the_position_is_streamed_but_one_before_it_is_not(sim: AsanaSimulator,
                                                                            session: requests.Session) -> None:
    t1, t2, t3 = NOW - timedelta(minutes=30), NOW - timedelta(minutes=20), NOW - timedelta(minutes=10)
    sim.add_events([event("1000000000000001", t1), event("1000000000000002", t2), event("1000000000000003", t3)])
    _, caught_up, _ = read_all(session, limit=100)
    offset = caught_up["next_page"]["offset"]

    sim.add_events([event("1000000000000010", t2 + timedelta(seconds=1)),  # sorts before the position
                    event("1000000000000020", t3 + timedelta(seconds=1))], published=False)
    assert get(session, limit=100, offset=offset).json()["data"] == []
    assert "1000000000000010" not in sim.ground_truth()

    assert sim.publish_pending() == 2

    streamed = get(session, limit=100, offset=offset).json()
    assert [item["gid"] for item in streamed["data"]] == ["1000000000000020"]
    requeried = get(session, limit=100, start_at=iso(t1)).json()  # an overlap re-query finds the early one
    assert "1000000000000010" in [item["gid"] for item in requeried["data"]]
    assert {"1000000000000010", "1000000000000020"} <= set(sim.ground_truth())


def test_events_are_not_visible_before_they_happen(sim: AsanaSimulator, session: requests.Session,
                                                   clock: Clock) -> None:
    sim.add_events([event("1000000000000001", NOW + timedelta(minutes=5))])
    assert get(session).json()["data"] == []
    assert sim.ground_truth() == {}
    clock.advance(minutes=5)
    assert [item["gid"] for item in get(session).json()["data"]] == ["1000000000000001"]


# --- offsets that stop working ----------------------------------------------------------------------------------


def test_offsets_expire_after_their_ttl(clock: Clock) -> None:
    sim = AsanaSimulator(TOKEN, WORKSPACE, now=clock, offset_ttl=timedelta(minutes=15))
    sim.add_events(generate_events(10, NOW - timedelta(days=1), NOW, seed=5))
    with session_for(sim) as session:
        offset = get(session, limit=2).json()["next_page"]["offset"]
        clock.advance(minutes=14)
        assert get(session, limit=2, offset=offset).status_code == 200
        clock.advance(minutes=2)
        assert_error(get(session, limit=2, offset=offset), 400, "expired")
        assert get(session, limit=2).status_code == 200  # a new query without offset still works


def test_offsets_expire_sooner_than_a_tick_by_default(sim: AsanaSimulator, session: requests.Session,
                                                      clock: Clock) -> None:
    sim.add_events(generate_events(10, NOW - timedelta(days=1), NOW, seed=5))
    offset = get(session, limit=2).json()["next_page"]["offset"]
    clock.advance(seconds=30)
    assert get(session, limit=2, offset=offset).status_code == 200
    clock.advance(minutes=5)
    for _ in range(3):  # and an expired offset stays expired
        assert_error(get(session, limit=2, offset=offset), 400, "expired")
        clock.advance(hours=1)


@pytest.mark.parametrize("status", [410, 404])
def test_an_expired_offset_answers_the_switched_status(status: int, clock: Clock) -> None:
    sim = AsanaSimulator(TOKEN, WORKSPACE, now=clock, expired_offset_status=status)
    sim.add_events(generate_events(10, NOW - timedelta(days=1), NOW, seed=5))
    with session_for(sim) as session:
        offset = get(session, limit=2).json()["next_page"]["offset"]
        sim.expire_offsets()
        assert_error(get(session, limit=2, offset=offset), status, "expired")


@pytest.mark.parametrize("status", [402, 403])
def test_a_domain_without_audit_logs_answers_the_switched_status(status: int, clock: Clock) -> None:
    """402 Payment Required is documented for the endpoint (the default); 403 the other plausible answer."""
    sim = AsanaSimulator(TOKEN, WORKSPACE, now=clock, audit_logs_available=False, no_audit_logs_status=status)
    sim.add_events(generate_events(10, NOW - timedelta(days=1), NOW, seed=5))
    with session_for(sim) as session:
        assert_error(get(session, limit=2), status, "Enterprise+" if status == 402 else "access")
        sim.audit_logs_available = True
        assert len(get(session, limit=2).json()["data"]) == 2
    assert AsanaSimulator(TOKEN, WORKSPACE, now=clock).no_audit_logs_status == 402


def test_expire_offsets_invalidates_every_offset_issued_so_far(sim: AsanaSimulator,
                                                               session: requests.Session) -> None:
    sim.add_events(generate_events(10, NOW - timedelta(days=1), NOW, seed=6))
    offset = get(session, limit=2).json()["next_page"]["offset"]

    sim.expire_offsets()

    assert_error(get(session, limit=2, offset=offset), 400, "offset")
    fresh = get(session, limit=2).json()["next_page"]["offset"]
    assert get(session, limit=2, offset=fresh).status_code == 200


def test_an_offset_only_works_with_the_filters_it_was_issued_for(sim: AsanaSimulator,
                                                                 session: requests.Session) -> None:
    sim.add_events(generate_events(50, NOW - timedelta(days=1), NOW, seed=7))
    start = NOW - timedelta(days=2)
    offset = get(session, limit=5, start_at=iso(start)).json()["next_page"]["offset"]

    assert_error(get(session, limit=5, offset=offset), 400, "offset")
    assert_error(get(session, limit=5, start_at=iso(start - timedelta(seconds=1)), offset=offset), 400, "offset")
    assert_error(get(session, limit=5, start_at=iso(start), event_type="task_deleted", offset=offset), 400, "offset")
    # The same instant spelled differently, and another page size, are the same query.
    assert get(session, limit=7, start_at=start.isoformat(), offset=offset).status_code == 200


def test_a_forged_offset_is_rejected(sim: AsanaSimulator, session: requests.Session) -> None:
    # "You can only pass in an offset that was returned to you via a previously paginated request."
    sim.add_events(generate_events(10, NOW - timedelta(days=1), NOW, seed=8))
    header, payload, signature = get(session, limit=2).json()["next_page"]["offset"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["pos"][0] -= 1  # a well-formed token that points one microsecond earlier
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert_error(get(session, limit=2, offset=f"{header}.{forged_payload}.{signature}"), 400, "offset")


# --- auth, routes, retention ------------------------------------------------------------------------------------


def test_authentication_errors_use_asanas_envelope(sim: AsanaSimulator) -> None:
    for token in (None, "wrong-token"):
        with session_for(sim, token) as session:
            assert_error(get(session), 401, "Not Authorized")
    with session_for(sim, None) as session:
        response = session.get(EVENTS_URL, headers={"Authorization": f"Basic {TOKEN}"}, timeout=10)
        assert_error(response, 401, "Not Authorized")
        assert session.get(EVENTS_URL, headers={"Authorization": f"bearer {TOKEN}"}, timeout=10).status_code == 200


def test_unknown_workspace_and_unknown_route_are_404(session: requests.Session) -> None:
    assert_error(session.get(f"{API}/workspaces/999/audit_log_events", timeout=10), 404, "999")
    assert_error(session.get(f"{API}/workspaces/{WORKSPACE}/audit_logs", timeout=10), 404, "route")
    assert_error(session.post(EVENTS_URL, json={}, timeout=10), 404, "route")


def test_events_older_than_90_days_are_gone(sim: AsanaSimulator, session: requests.Session, clock: Clock) -> None:
    sim.add_events([event("1000000000000001", NOW - timedelta(days=91)),
                    event("1000000000000002", NOW - timedelta(days=89)),
                    event("1000000000000003", NOW - timedelta(days=1))])

    assert [item["gid"] for item in get(session).json()["data"]] == ["1000000000000002", "1000000000000003"]
    clock.advance(days=2)
    assert [item["gid"] for item in get(session).json()["data"]] == ["1000000000000003"]
    assert set(sim.ground_truth()) == {"1000000000000003"}


def test_nothing_exists_before_2021_10_08(clock: Clock) -> None:
    clock.value = datetime(2021, 11, 1, tzinfo=UTC)
    sim = AsanaSimulator(TOKEN, WORKSPACE, now=clock)
    sim.add_events([event("1000000000000001", datetime(2021, 10, 7, 23, 59, 59, tzinfo=UTC)),
                    event("1000000000000002", datetime(2021, 10, 8, tzinfo=UTC))])
    with session_for(sim) as session:
        assert [item["gid"] for item in get(session).json()["data"]] == ["1000000000000002"]


def test_duplicate_gids_are_refused(sim: AsanaSimulator) -> None:
    sim.add_events([event("1000000000000001", NOW)], published=False)
    with pytest.raises(ValueError, match="unique"):
        sim.add_events([event("1000000000000001", NOW)])


# --- rate limits and faults -------------------------------------------------------------------------------------


def test_rate_limit_mode_answers_429_with_retry_after(clock: Clock) -> None:
    sim = AsanaSimulator(TOKEN, WORKSPACE, now=clock, rate_limit_per_minute=3)
    with session_for(sim) as session:
        for _ in range(3):
            assert get(session).status_code == 200
            clock.advance(seconds=10)
        throttled = get(session)  # at t=30s: 4 requests within a minute
        assert throttled.status_code == 429
        assert throttled.json() == {"errors": [{"message": RATE_LIMIT_MESSAGE}]}
        assert throttled.headers["Retry-After"] == "40"  # the request at t=10s leaves the window at t=70s
        clock.advance(seconds=40)
        assert get(session).status_code == 200
    assert sim.stats()["rate_limited"] == 1


def test_rejected_requests_count_against_the_quota(clock: Clock) -> None:
    sim = AsanaSimulator(TOKEN, WORKSPACE, now=clock, rate_limit_per_minute=2)
    with session_for(sim) as session:
        assert [get(session).status_code for _ in range(4)] == [200, 200, 429, 429]
        clock.advance(seconds=61)
        assert get(session).status_code == 200


def test_each_fault_surfaces_as_a_real_client_would_see_it(sim: AsanaSimulator, session: requests.Session) -> None:
    sim.add_events(generate_events(20, NOW - timedelta(days=1), NOW, seed=9))
    full = get(session, limit=10)

    sim.faults.next(Fault.RATE_LIMITED)
    limited = get(session, limit=10)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
    assert limited.json() == {"errors": [{"message": RATE_LIMIT_MESSAGE}]}

    sim.faults.next(Fault.SERVER_ERROR)
    error = get(session, limit=10)
    assert error.status_code == 500
    assert error.json()["errors"][0]["message"] == "Server Error"
    assert re.fullmatch(r"\d+ \w+ \w+ \w+ \w+", error.json()["errors"][0]["phrase"])

    sim.faults.next(Fault.UNAVAILABLE)
    unavailable = get(session, limit=10)
    assert unavailable.status_code == 503
    with pytest.raises(requests.exceptions.JSONDecodeError):
        unavailable.json()

    sim.faults.next(Fault.TIMEOUT)
    with pytest.raises(requests.exceptions.ReadTimeout) as timeout:
        get(session, limit=10)
    assert not isinstance(timeout.value, requests.exceptions.ConnectionError)

    sim.faults.next(Fault.CONNECTION_RESET)
    with pytest.raises(requests.exceptions.ConnectionError) as reset:
        get(session, limit=10)
    assert not isinstance(reset.value, requests.exceptions.Timeout)

    sim.faults.next(Fault.TRUNCATED_BODY)
    truncated = get(session, limit=10)
    assert truncated.status_code == 200
    assert truncated.content == full.content[: len(full.content) // 2]
    assert truncated.headers["Content-Length"] == str(len(truncated.content))
    with pytest.raises(requests.exceptions.JSONDecodeError):
        truncated.json()

    # Faults change nothing server-side: the same request now returns the same page.
    assert get(session, limit=10).json()["data"] == full.json()["data"]
    stats = sim.stats()
    assert stats["faults_injected"] == 6
    assert all(stats[f"faults_{fault.value}"] == 1 for fault in Fault)
    assert stats["network_errors"] == 2 and stats["responses_5xx"] == 2 and stats["responses_4xx"] == 1


def test_fault_plan_schedules_exact_request_numbers(sim: AsanaSimulator, session: requests.Session) -> None:
    sim.faults.at(3, Fault.SERVER_ERROR).at(5, Fault.RATE_LIMITED)
    sim.faults.next(Fault.UNAVAILABLE, times=3)  # requests 1, 2 and 4: 3 is taken

    statuses = [get(session).status_code for _ in range(6)]

    assert statuses == [503, 503, 500, 503, 429, 200]
    assert sim.faults.history == [(1, Fault.UNAVAILABLE), (2, Fault.UNAVAILABLE), (3, Fault.SERVER_ERROR),
                                  (4, Fault.UNAVAILABLE), (5, Fault.RATE_LIMITED)]
    with pytest.raises(ValueError, match="already"):
        sim.faults.at(2, Fault.TIMEOUT)


def test_random_faults_are_reproducible_and_bounded() -> None:
    def run(seed: int) -> list[tuple[int, Fault]]:
        plan = FaultPlan().random(0.3, [Fault.TIMEOUT, Fault.SERVER_ERROR], seed=seed, max_faults=20)
        for _ in range(200):
            plan.draw()
        return plan.history

    assert run(1) == run(1)
    assert run(1) != run(2)
    assert len(run(1)) == 20
    assert {fault for _, fault in run(1)} == {Fault.TIMEOUT, Fault.SERVER_ERROR}


def test_request_log_and_hook_never_see_the_token(clock: Clock) -> None:
    seen: list[RequestRecord] = []

    def tick(record: RequestRecord) -> None:
        seen.append(record)
        clock.advance(seconds=1)  # e.g. a fake Lambda clock

    sim = AsanaSimulator(TOKEN, WORKSPACE, now=clock, on_request=tick)
    sim.faults.at(2, Fault.TIMEOUT)
    with session_for(sim) as session:
        get(session, limit=5)
        with pytest.raises(requests.exceptions.ReadTimeout):
            get(session, limit=5)

    assert seen == sim.requests_log
    assert [(record.number, record.status, record.fault) for record in seen] == [(1, 200, None),
                                                                                 (2, None, Fault.TIMEOUT)]
    assert seen[0].params == {"limit": ["5"]}
    assert clock.value == NOW + timedelta(seconds=2)
    assert TOKEN not in repr(sim.requests_log) and TOKEN not in repr(sim.stats())


# --- transports -------------------------------------------------------------------------------------------------


class Redirecting(VendorSimulator):
    def route(self, request: SimRequest) -> SimResponse:
        if request.path == "/old":
            return SimResponse(302, {"Location": "/new"})
        return SimResponse.of_json(200, {"path": request.path})

    def rate_limited_response(self, retry_after: int) -> SimResponse:
        return SimResponse(429, {"Retry-After": str(retry_after)})

    def server_error_response(self) -> SimResponse:
        return SimResponse(500)

    # An API without an audit log: the transport test needs none of the event hooks.
    def add_events(self, events: Any, *, published: bool = True) -> None:
        raise NotImplementedError

    def publish_pending(self) -> int:
        return 0

    def expire_cursors(self) -> None:
        """No cursors."""

    def ground_truth(self) -> dict[str, dict[str, Any]]:
        return {}


def test_adapter_leaves_redirects_to_the_session() -> None:
    with requests.Session() as session:
        session.mount("https://vendor.test/", SimulatorAdapter(Redirecting()))
        held = session.get("https://vendor.test/old", allow_redirects=False, timeout=10)
        assert held.status_code == 302 and held.headers["Location"] == "/new"
        followed = session.get("https://vendor.test/old", timeout=10)
        assert followed.json() == {"path": "/new"}
        assert [response.status_code for response in followed.history] == [302]


def test_loopback_server_serves_real_http(sim: AsanaSimulator) -> None:
    sim.add_events(generate_events(15, NOW - timedelta(days=1), NOW, seed=10))
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with serve(sim) as base_url, requests.Session() as session:
        url = f"{base_url}/api/1.0/workspaces/{WORKSPACE}/audit_log_events"
        first = session.get(url, params={"limit": 10}, headers=headers, timeout=5)
        assert first.status_code == 200 and len(first.json()["data"]) == 10
        next_uri = first.json()["next_page"]["uri"]
        assert next_uri.startswith(f"{base_url}/api/1.0/workspaces/{WORKSPACE}/audit_log_events?")
        assert len(session.get(next_uri, headers=headers, timeout=5).json()["data"]) == 5
        assert session.get(url, timeout=5).status_code == 401

        # On a real socket a TIMEOUT is a connection closed without a response, a reset is an RST.
        for fault, symptom in ((Fault.TIMEOUT, "without response"), (Fault.CONNECTION_RESET, "reset by peer")):
            sim.faults.next(fault)
            with pytest.raises(requests.exceptions.ConnectionError, match=symptom):
                session.get(url, headers=headers, timeout=5)
        sim.faults.next(Fault.TRUNCATED_BODY)
        truncated = session.get(url, params={"limit": 10}, headers=headers, timeout=5)
        assert truncated.status_code == 200
        assert truncated.content == first.content[: len(first.content) // 2]
        assert session.get(url, params={"limit": 10}, headers=headers, timeout=5).json() == first.json()


# --- generated events -------------------------------------------------------------------------------------------


def test_generated_events_follow_the_audit_log_event_schema() -> None:
    events = generate_events(3000, NOW - timedelta(days=7), NOW, seed=11)

    assert events == generate_events(3000, NOW - timedelta(days=7), NOW, seed=11)
    assert events != generate_events(3000, NOW - timedelta(days=7), NOW, seed=12)
    assert len({item["gid"] for item in events}) == 3000
    assert events == sorted(events, key=lambda item: item["created_at"])
    categories: dict[str, set[str]] = {}
    for item in events:
        assert list(item) == ["gid", "created_at", "event_type", "event_category", "actor", "resource", "details",
                              "context"]
        assert re.fullmatch(r"[1-9]\d{15}", item["gid"])
        created = datetime.fromisoformat(item["created_at"])
        assert NOW - timedelta(days=7) <= created < NOW
        categories.setdefault(item["event_type"], set()).add(item["event_category"])
        actor, context = item["actor"], item["context"]
        assert actor["actor_type"] in {"user", "asana", "asana_support", "anonymous", "external_administrator"}
        assert ("gid" in actor) == ("name" in actor) == ("email" in actor) == (actor["actor_type"] == "user")
        assert {"resource_type", "gid", "name"} <= set(item["resource"])
        assert isinstance(item["details"], dict)
        assert context["context_type"] in {"web", "desktop", "mobile", "asana_support", "asana", "email", "api"}
        assert ("api_authentication_method" in context) == (context["context_type"] == "api")
        assert ("oauth_app_name" in context) == (context.get("api_authentication_method") == "oauth")
    assert all(len(values) == 1 for values in categories.values())  # a type always has the same category
    assert categories["user_login_succeeded"] == {"logins"} and categories["task_deleted"] == {"deletion"}
    assert len(categories) >= 15
    assert sum(a["created_at"] == b["created_at"] for a, b in itertools.pairwise(events)) > 50  # bursts


@pytest.mark.slow
def test_100k_events_generate_and_page_at_scale(clock: Clock) -> None:
    events = generate_events(100_000, NOW - timedelta(days=30), NOW, seed=13)
    sim = AsanaSimulator(TOKEN, WORKSPACE, now=clock)
    sim.add_events(events)
    with session_for(sim) as session:
        returned, _, pages = read_all(session, limit=100, start_at=iso(NOW - timedelta(days=2)))
    assert pages == len(returned) // 100 + (2 if len(returned) % 100 else 1)
    assert len(returned) == sum(item["created_at"] >= iso(NOW - timedelta(days=2)) for item in events)
