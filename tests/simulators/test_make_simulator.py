"""The Make simulator behaves as Make documents its audit-log API (vendors.md §3), seen through `requests`."""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from auditlake_local.simulators import Fault, SimulatorAdapter, VendorSimulator, serve
from auditlake_local.simulators.make import (
    DEFAULT_ORGANIZATION_ID,
    PAGE_CAPS,
    RATE_LIMIT_MESSAGE,
    TIME_FORMATS,
    ZONES,
    MakeSimulator,
    generate_events,
)

TOKEN = "0b9f3c52-7a1e-4d8b-9c6f-2e5d4a3b1c0f"
ORG = DEFAULT_ORGANIZATION_ID
API = "https://eu1.make.com/api/v2"
LOGS_URL = f"{API}/audit-logs/organization/{ORG}"
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
ACCESS_DENIED = {"detail": "Access denied.", "message": "Permission denied", "code": "SC403"}
# The friendly alternative of every switch (the defaults are the least friendly ones): for tests of what Make does
# document, which the switches do not change.
FRIENDLY: dict[str, Any] = {"page_cap": "none", "time_format": "epoch_ms", "tie_order": "stable",
                            "date_filter": "triggeredAt", "day_zone": timedelta(0), "date_to_inclusive": True}


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
def sim(clock: Clock) -> MakeSimulator:
    return MakeSimulator(TOKEN, ORG, now=clock)


def session_for(simulator: VendorSimulator, token: str | None = TOKEN) -> requests.Session:
    session = requests.Session()
    for zone in ZONES:
        session.mount(f"https://{zone}/", SimulatorAdapter(simulator))
    session.mount("https://make.test/", SimulatorAdapter(simulator))
    if token is not None:
        session.headers["Authorization"] = f"Token {token}"
    return session


@pytest.fixture
def session(sim: MakeSimulator) -> Iterator[requests.Session]:
    with session_for(sim) as session:
        yield session


@pytest.fixture
def friendly(clock: Clock) -> MakeSimulator:
    return MakeSimulator(TOKEN, ORG, now=clock, **FRIENDLY)


@pytest.fixture
def friendly_session(friendly: MakeSimulator) -> Iterator[requests.Session]:
    with session_for(friendly) as session:
        yield session


def get(session: requests.Session, url: str = LOGS_URL, **params: Any) -> requests.Response:
    return session.get(url, params=params, timeout=10)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def entry(uuid: str, triggered: datetime, event_name: str = "scenario_updated", *, team: int | None = 5100,
          actor: int = 2000001, actor_name: str = "Ada Lovelace") -> dict[str, Any]:
    event: dict[str, Any] = {
        "uuid": uuid, "createdAt": (triggered + timedelta(milliseconds=40)).isoformat().replace("+00:00", "Z"),
        "triggeredAt": ms(triggered), "organizationId": ORG, "organization": {"id": ORG, "name": "Example Corp"},
        "eventName": event_name}
    if team is not None:
        event["team"] = {"id": team, "name": "Operations" if team == 5100 else "Finance"}
    event["actor"] = {"id": actor, "name": actor_name, "email": f"{actor}@example.com"}
    event["targetId"] = "3000"
    return event


def uuids(response: requests.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["uuid"] for item in response.json()["auditLogs"]]


def read_all(session: requests.Session, limit: int, **params: Any) -> list[dict[str, Any]]:
    """Pages by offset until a page has fewer entries than the limit."""
    events: list[dict[str, Any]] = []
    for page in range(10_000):
        response = get(session, **{**params, "pg[offset]": page * limit, "pg[limit]": limit})
        assert response.status_code == 200, response.text
        events.extend(response.json()["auditLogs"])
        if len(response.json()["auditLogs"]) < limit:
            return events
    raise AssertionError("paging did not end")


def assert_error(response: requests.Response, status: int, code: str, fragment: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) <= {"detail", "message", "code", "suberrors"} and body["code"] == code
    said = " ".join([body["detail"], body["message"], *(sub["message"] for sub in body.get("suberrors", []))])
    assert fragment.lower() in said.lower(), body
    return body


# --- order and paging -------------------------------------------------------------------------------------------


def test_default_order_is_newest_first_and_asc_must_be_asked_for(sim: MakeSimulator,
                                                                 session: requests.Session) -> None:
    sim.add_events([entry(f"{n:032x}", NOW - timedelta(hours=5 - n)) for n in range(1, 5)])

    default = get(session)
    assert uuids(default) == [f"{n:032x}" for n in (4, 3, 2, 1)]  # the trap: desc unless told otherwise
    # No pg[limit]: 1000 asked, the default cap serves 100 and says so.
    assert default.json()["pg"] == {"sortBy": "triggeredAt", "sortDir": "desc", "limit": 100, "offset": 0}
    ascending = get(session, **{"pg[sortBy]": "triggeredAt", "pg[sortDir]": "asc"})
    assert uuids(ascending) == [f"{n:032x}" for n in (1, 2, 3, 4)]
    assert ascending.json()["pg"]["sortDir"] == "asc"


def test_offset_paging_ascending_returns_every_entry_once_in_order(friendly: MakeSimulator,
                                                                   friendly_session: requests.Session) -> None:
    """With stable ties (the friendly `tie_order`), plain offset paging reads every entry once."""
    sim, session = friendly, friendly_session
    events = generate_events(730, NOW - timedelta(days=3), NOW, seed=1, burst_rate=0.3)
    sim.add_events(events)

    returned = read_all(session, 100, **{"pg[sortDir]": "asc"})

    assert len(returned) == 730 and {item["uuid"] for item in returned} == set(sim.ground_truth())
    # Ties share a millisecond and are ordered by uuid, the same way on every request.
    assert [item["uuid"] for item in returned] == [item["uuid"] for item in
                                                   sorted(events, key=lambda e: (e["triggeredAt"], e["uuid"]))]
    descending = read_all(session, 100)
    assert [item["uuid"] for item in descending] == [item["uuid"] for item in reversed(returned)]


def test_limit_default_max_and_bad_paging_parameters(friendly: MakeSimulator,
                                                     friendly_session: requests.Session) -> None:
    sim, session = friendly, friendly_session  # no page cap: what the SDK describes
    sim.add_events(generate_events(1200, NOW - timedelta(days=1), NOW, seed=2))

    assert len(uuids(get(session))) == 1000  # no pg[limit]: 1000
    assert len(uuids(get(session, **{"pg[limit]": 10_000}))) == 1200
    assert len(uuids(get(session, **{"pg[limit]": 1}))) == 1
    for name, bad in (("pg[limit]", 0), ("pg[limit]", 10_001), ("pg[limit]", "ten"), ("pg[offset]", -1),
                      ("pg[sortBy]", "uuid"), ("pg[sortDir]", "up"), ("pg[returnTotalCount]", "yes")):
        assert_error(get(session, **{name: bad}), 400, "SC400", name)
    body = assert_error(get(session, **{"pg[limit]": 0, "pg[offset]": -1}), 400, "SC400", "pg[offset]")
    assert len(body["suberrors"]) == 2
    # Last-based paging's key is undocumented for audit logs: refused, not guessed.
    assert_error(get(session, **{"pg[last]": "1713528322000"}), 400, "SC400", "pg[last]")
    assert uuids(get(session, **{"pg[offset]": 5000})) == []


def test_return_total_count(sim: MakeSimulator, session: requests.Session) -> None:
    sim.add_events(generate_events(57, NOW - timedelta(days=1), NOW, seed=3))
    assert "totalCount" not in get(session, **{"pg[limit]": 10}).json()["pg"]
    pg = get(session, **{"pg[limit]": 10, "pg[offset]": 50, "pg[returnTotalCount]": "true"}).json()["pg"]
    assert pg == {"sortBy": "triggeredAt", "sortDir": "desc", "limit": 10, "offset": 50, "totalCount": 57}


def test_other_sort_keys(friendly: MakeSimulator, friendly_session: requests.Session) -> None:
    sim, session = friendly, friendly_session
    events = generate_events(200, NOW - timedelta(days=1), NOW, seed=4)
    sim.add_events(events)
    by_name = uuids(get(session, **{"pg[sortBy]": "eventName", "pg[sortDir]": "asc", "pg[limit]": 500}))
    names = {item["uuid"]: item["eventName"] for item in events}
    assert [names[u] for u in by_name] == sorted(names[u] for u in by_name)
    by_created = get(session, **{"pg[sortBy]": "createdAt", "pg[limit]": 500}).json()["auditLogs"]
    assert [item["createdAt"] for item in by_created] == sorted((item["createdAt"] for item in events), reverse=True)


# --- dates ------------------------------------------------------------------------------------------------------


def test_date_from_and_date_to_are_whole_utc_days_both_included(friendly: MakeSimulator,
                                                               friendly_session: requests.Session) -> None:
    """With UTC days filtering triggeredAt (the friendly `day_zone` and `date_filter`)."""
    sim, session = friendly, friendly_session
    day = datetime(2025, 5, 30, tzinfo=UTC)
    sim.add_events([entry("a" * 32, day - timedelta(milliseconds=1)), entry("b" * 32, day),
                    entry("c" * 32, day + timedelta(hours=23, minutes=59, seconds=59, milliseconds=999)),
                    entry("d" * 32, day + timedelta(days=1)), entry("e" * 32, day + timedelta(days=1, hours=12))])
    asc = {"pg[sortDir]": "asc"}

    assert uuids(get(session, dateFrom="2025-05-30", dateTo="2025-05-30", **asc)) == ["b" * 32, "c" * 32]
    assert uuids(get(session, dateFrom="2025-05-30", **asc)) == ["b" * 32, "c" * 32, "d" * 32, "e" * 32]
    assert uuids(get(session, dateTo="2025-05-29", **asc)) == ["a" * 32]
    assert uuids(get(session, dateFrom="2025-06-01", dateTo="2025-05-01")) == []
    # The rendered docs' date-time form is read as an instant.
    assert uuids(get(session, dateFrom="2025-05-31T12:00:00.000Z", **asc)) == ["e" * 32]
    assert uuids(get(session, dateFrom="2025-05-30T00:00:00Z", dateTo="2025-05-31T00:00:00.000Z",
                     **asc)) == ["b" * 32, "c" * 32, "d" * 32]
    for name, bad in (("dateFrom", "30.05.2025"), ("dateTo", "2025-13-01"), ("dateFrom", "yesterday")):
        assert_error(get(session, **{name: bad}), 400, "SC400", name)


def test_date_to_exclusive_knob(clock: Clock) -> None:
    sim = MakeSimulator(TOKEN, ORG, now=clock, **{**FRIENDLY, "date_to_inclusive": False})
    day = datetime(2025, 5, 30, tzinfo=UTC)
    sim.add_events([entry("a" * 32, day + timedelta(hours=1)), entry("b" * 32, day + timedelta(days=1, hours=1))])
    with session_for(sim) as session:
        assert uuids(get(session, dateFrom="2025-05-30", dateTo="2025-05-31")) == ["a" * 32]
        assert uuids(get(session, dateFrom="2025-05-30", dateTo="2025-05-30")) == []


# --- filters ----------------------------------------------------------------------------------------------------


def test_event_team_and_author_filters_in_every_documented_spelling(friendly: MakeSimulator,
                                                                    friendly_session: requests.Session) -> None:
    sim, session = friendly, friendly_session  # pages of 5,000 (no cap)
    events = generate_events(800, NOW - timedelta(days=2), NOW, seed=5)
    sim.add_events(events)
    someone = next(item["actor"] for item in events if "name" in item["actor"])

    def expect(predicate: Any) -> list[str]:
        return sorted(item["uuid"] for item in events if predicate(item))

    def query(url: str) -> list[str]:
        return sorted(uuids(session.get(url, timeout=10)))

    key_events = expect(lambda e: e["eventName"] in ("key_created", "connection_created"))
    assert key_events
    assert query(f"{LOGS_URL}?event[0]=key_created&event[1]=connection_created&pg[limit]=5000") == key_events
    assert query(f"{LOGS_URL}?event[]=key_created&event[]=connection_created&pg[limit]=5000") == key_events
    assert query(f"{LOGS_URL}?event=key_created&event=connection_created&pg[limit]=5000") == key_events
    assert query(f"{LOGS_URL}?event=webhook_disabled&pg[limit]=5000") == expect(
        lambda e: e["eventName"] == "webhook_disabled")
    finance = expect(lambda e: e.get("team", {}).get("name") == "Finance")
    assert finance and query(f"{LOGS_URL}?team=Finance&pg[limit]=5000") == finance
    assert query(f"{LOGS_URL}?team[0]=5102&pg[limit]=5000") == finance
    by_author = expect(lambda e: e["actor"]["id"] == someone["id"])
    assert query(f"{LOGS_URL}?author={someone['id']}&pg[limit]=5000") == by_author
    assert query(f"{LOGS_URL}?author[0]={someone['name']}&pg[limit]=5000") == sorted(
        item["uuid"] for item in events if item["actor"].get("name") == someone["name"])


def test_team_endpoint_and_filters_endpoint(friendly: MakeSimulator, friendly_session: requests.Session) -> None:
    sim, session = friendly, friendly_session
    events = generate_events(300, NOW - timedelta(days=1), NOW, seed=6)
    sim.add_events(events)
    team_logs = uuids(get(session, f"{API}/audit-logs/team/5102", **{"pg[limit]": 1000}))
    assert sorted(team_logs) == sorted(item["uuid"] for item in events if item.get("team", {}).get("id") == 5102)
    assert_error(get(session, f"{API}/audit-logs/team/5102", team="5100"), 400, "SC400", "team")

    filters = get(session, f"{LOGS_URL}/filters").json()
    assert set(filters) == {"users", "teams", "events"}
    assert all(set(user) == {"id", "name", "email"} for user in filters["users"])
    assert {team["name"] for team in filters["teams"]} <= {"Operations", "Marketing", "Finance", "People Ops",
                                                          "Security", "Sales Automation"}
    values = {item["value"] for group in filters["events"] for item in group["items"]}
    assert {"key_created", "connection_created", "webhook_disabled", "user_invited"} <= values


# --- auth, roles, plan, zone, routes ----------------------------------------------------------------------------


def test_authentication_uses_the_token_scheme(sim: MakeSimulator) -> None:
    for token in (None, "wrong-token"):
        with session_for(sim, token) as session:
            assert_error(get(session), 401, "SC401", "token")
    with session_for(sim, None) as session:
        bearer = session.get(LOGS_URL, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert_error(bearer, 401, "SC401", "token")
        assert session.get(LOGS_URL, headers={"Authorization": f"token {TOKEN}"}, timeout=10).status_code == 200


def test_only_admins_and_owners_of_the_organization_get_its_logs(clock: Clock) -> None:
    for role, status in (("owner", 200), ("admin", 200), ("member", 403)):
        with session_for(MakeSimulator(TOKEN, ORG, now=clock, caller_role=role)) as session:
            response = get(session)
            assert response.status_code == status
            if status == 403:
                assert response.json() == ACCESS_DENIED  # the body the docs print
    with session_for(MakeSimulator(TOKEN, ORG, now=clock)) as session:
        assert get(session, f"{API}/audit-logs/organization/{ORG + 1}").json() == ACCESS_DENIED
        assert_error(get(session, f"{API}/audit-logs/organization/abc"), 400, "SC400", "organizationId")
    member = MakeSimulator(TOKEN, ORG, now=clock, caller_role="member", team_admin_of=[5101])
    with session_for(member) as session:
        assert get(session, f"{API}/audit-logs/team/5101").status_code == 200
        assert get(session, f"{API}/audit-logs/team/5102").json() == ACCESS_DENIED


@pytest.mark.parametrize(("status", "code"), [(402, "SC402"), (403, "SC403")])
def test_audit_logs_need_the_enterprise_plan(status: int, code: str, clock: Clock) -> None:
    """Docs are silent on what another plan gets: 402 (a third-party client's report; the default) or 403."""
    knobs = {} if status == 402 else {"no_audit_logs_status": 403}
    with session_for(MakeSimulator(TOKEN, ORG, now=clock, enterprise=False, **knobs)) as session:
        assert_error(get(session), status, code, "Enterprise")


def test_another_zones_host_answers_no_organization_in_the_zone(clock: Clock) -> None:
    sim = MakeSimulator(TOKEN, ORG, zone="eu2.make.com", now=clock)
    with session_for(sim) as session:
        assert_error(get(session, LOGS_URL), 400, "SC400", "User has no organization in the zone")
        assert_error(get(session, f"https://us1.make.celonis.com/api/v2/audit-logs/organization/{ORG}"), 400,
                     "SC400", "zone")
        assert get(session, f"https://eu2.make.com/api/v2/audit-logs/organization/{ORG}").status_code == 200
        # A host that is no Make zone (a test's fake base) stands for the organization's own zone.
        assert get(session, f"https://make.test/api/v2/audit-logs/organization/{ORG}").status_code == 200
    with pytest.raises(ValueError, match="zone"):
        MakeSimulator(TOKEN, ORG, zone="eu3.make.com")


def test_unknown_routes_and_methods_are_404(session: requests.Session) -> None:
    assert_error(get(session, f"{API}/audit-logs/{ORG}/0123"), 404, "SC404", "not found")
    assert_error(get(session, f"{API}/audit-log/organization/{ORG}"), 404, "SC404", "not found")
    assert_error(session.post(LOGS_URL, json={}, timeout=10), 404, "SC404", "not found")


# --- retention, visibility, late entries ------------------------------------------------------------------------


def test_entries_are_kept_12_months(sim: MakeSimulator, session: requests.Session, clock: Clock) -> None:
    sim.add_events([entry("a" * 32, NOW - timedelta(days=366)), entry("b" * 32, NOW - timedelta(days=364)),
                    entry("c" * 32, NOW - timedelta(days=1))])
    assert uuids(get(session, **{"pg[sortDir]": "asc"})) == ["b" * 32, "c" * 32]
    clock.advance(days=2)
    assert uuids(get(session)) == ["c" * 32]
    assert set(sim.ground_truth()) == {"c" * 32}


def test_entries_are_not_visible_before_they_happen(sim: MakeSimulator, session: requests.Session,
                                                    clock: Clock) -> None:
    sim.add_events([entry("a" * 32, NOW + timedelta(minutes=5))])  # stored 40 ms after it happens
    assert uuids(get(session)) == [] and sim.ground_truth() == {}
    clock.advance(minutes=5)
    assert uuids(get(session)) == [] and sim.ground_truth() == {}
    clock.advance(milliseconds=40)
    assert uuids(get(session)) == ["a" * 32]


def test_a_late_entry_lands_mid_order_and_shifts_the_offsets_after_it(sim: MakeSimulator,
                                                                      session: requests.Session, clock: Clock) -> None:
    base = NOW - timedelta(hours=6)
    sim.add_events([entry(f"{n:032x}", base + timedelta(minutes=n)) for n in range(1, 11)])
    asc = {"pg[sortDir]": "asc", "pg[limit]": 4}
    first = uuids(get(session, **asc, **{"pg[offset]": 0}))
    assert first == [f"{n:032x}" for n in (1, 2, 3, 4)]

    late = entry("f" * 32, base + timedelta(minutes=2, seconds=30))
    sim.add_events([late], published=False)
    assert "f" * 32 not in sim.ground_truth()
    assert uuids(get(session, **asc, **{"pg[offset]": 4})) == [f"{n:032x}" for n in (5, 6, 7, 8)]

    clock.advance(hours=2)
    assert sim.publish_pending() == 1
    # The same offset now starts one entry earlier: a client that just adds the limit reads entry 4 twice.
    assert uuids(get(session, **asc, **{"pg[offset]": 4})) == [f"{n:032x}" for n in (4, 5, 6, 7)]
    # Stored now: its createdAt says so, and a query by createdAt finds it among today's entries.
    served = sim.ground_truth()["f" * 32]
    assert served == {**late, "triggeredAt": "2025-06-01T06:02:30Z", "createdAt": "2025-06-01T14:00:00.000Z"}
    assert uuids(get(session, dateFrom="2025-06-01", **asc)) == ["f" * 32]  # createdAt, days at UTC-10


def test_expire_cursors_changes_nothing(sim: MakeSimulator, session: requests.Session) -> None:
    sim.add_events(generate_events(30, NOW - timedelta(days=1), NOW, seed=7))
    before = get(session, **{"pg[offset]": 10, "pg[limit]": 10}).json()
    sim.expire_cursors()
    assert get(session, **{"pg[offset]": 10, "pg[limit]": 10}).json() == before


def test_duplicate_uuids_are_refused(sim: MakeSimulator) -> None:
    sim.add_events([entry("a" * 32, NOW)], published=False)
    with pytest.raises(ValueError, match="unique"):
        sim.add_events([entry("b" * 32, NOW), entry("a" * 32, NOW)])
    sim.add_events([entry("b" * 32, NOW)])  # the refused batch left no trace


def test_iso_triggered_at_as_the_sdk_types_it(sim: MakeSimulator, session: requests.Session) -> None:
    iso = {**entry("a" * 32, NOW - timedelta(hours=2)), "triggeredAt": "2025-06-01T10:00:00.000Z"}
    sim.add_events([iso, entry("b" * 32, NOW - timedelta(hours=1))])
    assert uuids(get(session, **{"pg[sortDir]": "asc"})) == ["a" * 32, "b" * 32]


@pytest.mark.parametrize(("time_format", "served"), [
    ("iso_seconds", "2025-06-01T11:59:58Z"), ("iso_ms", "2025-06-01T11:59:58.250Z"),
    ("epoch_ms", ms(NOW) - 1750), ("epoch_s", ms(NOW) // 1000 - 2),
])
def test_triggered_at_in_each_time_format(time_format: str, served: Any, clock: Clock) -> None:
    """Docs: the spec types triggeredAt as an integer, the docs' example is ISO in whole seconds. In whole seconds
    the API keeps only the second: entries of one second are ties (here stored by uuid: `tie_order="stable"`)."""
    assert time_format in TIME_FORMATS
    sim = MakeSimulator(TOKEN, ORG, now=clock, time_format=time_format, tie_order="stable")
    moment = NOW - timedelta(milliseconds=1750)
    sim.add_events([entry("b" * 32, moment), entry("a" * 32, moment + timedelta(milliseconds=500))])
    with session_for(sim) as session:
        page = get(session, **{"pg[sortDir]": "asc"}).json()["auditLogs"]
    assert {item["uuid"]: item["triggeredAt"] for item in page}["b" * 32] == served
    whole_seconds = time_format in ("iso_seconds", "epoch_s")
    assert [item["uuid"] for item in page] == (["a" * 32, "b" * 32] if whole_seconds else ["b" * 32, "a" * 32])
    assert sim.ground_truth()["b" * 32]["triggeredAt"] == served


# --- rate limits and faults -------------------------------------------------------------------------------------


def test_rate_limit_is_per_organization_per_minute_without_retry_after(clock: Clock) -> None:
    sim = MakeSimulator(TOKEN, ORG, now=clock, rate_limit_per_minute=3)
    with session_for(sim) as session:
        for _ in range(3):
            assert get(session).status_code == 200
            clock.advance(seconds=10)
        throttled = get(session)
        assert throttled.status_code == 429
        assert throttled.json() == {"detail": "Too many requests.", "message": RATE_LIMIT_MESSAGE, "code": "SC429"}
        assert "Retry-After" not in throttled.headers
        assert get(session).status_code == 429  # rejected requests count too
        clock.advance(seconds=61)
        assert get(session).status_code == 200
    assert sim.stats()["rate_limited"] == 2

    with_header = MakeSimulator(TOKEN, ORG, now=clock, rate_limit_per_minute=1, retry_after_header=True)
    with session_for(with_header) as session:
        get(session)
        assert get(session).headers["Retry-After"] == "60"


def test_each_fault_surfaces_in_makes_shapes(sim: MakeSimulator, session: requests.Session) -> None:
    sim.add_events(generate_events(20, NOW - timedelta(days=1), NOW, seed=8))
    full = get(session, **{"pg[limit]": 10})

    sim.faults.next(Fault.RATE_LIMITED)
    limited = get(session)
    assert limited.status_code == 429 and limited.json()["message"] == RATE_LIMIT_MESSAGE
    sim.faults.next(Fault.SERVER_ERROR)
    assert_error(get(session), 500, "SC500", "Internal")
    sim.faults.next(Fault.UNAVAILABLE)
    assert get(session).status_code == 503
    sim.faults.next(Fault.TIMEOUT)
    with pytest.raises(requests.exceptions.ReadTimeout):
        get(session)
    sim.faults.next(Fault.TRUNCATED_BODY)
    truncated = get(session, **{"pg[limit]": 10})
    assert truncated.content == full.content[: len(full.content) // 2]
    assert get(session, **{"pg[limit]": 10}).json() == full.json()
    assert TOKEN not in repr(sim.requests_log) and TOKEN not in repr(sim.stats())
    assert sim.stats()["faults_injected"] == 5


def test_loopback_server_serves_real_http(sim: MakeSimulator) -> None:
    sim.add_events(generate_events(15, NOW - timedelta(days=1), NOW, seed=9))
    headers = {"Authorization": f"Token {TOKEN}"}
    with serve(sim) as base_url, requests.Session() as session:
        url = f"{base_url}/api/v2/audit-logs/organization/{ORG}"
        page = session.get(url, params={"pg[limit]": 10, "pg[offset]": 10}, headers=headers, timeout=5)
        assert page.status_code == 200 and len(page.json()["auditLogs"]) == 5
        assert session.get(url, timeout=5).status_code == 401


# --- generated entries ------------------------------------------------------------------------------------------


def test_generated_entries_follow_the_spec_schema() -> None:
    events = generate_events(3000, NOW - timedelta(days=7), NOW, seed=11)

    assert events == generate_events(3000, NOW - timedelta(days=7), NOW, seed=11)
    assert events != generate_events(3000, NOW - timedelta(days=7), NOW, seed=12)
    assert len({item["uuid"] for item in events}) == 3000
    assert [item["triggeredAt"] for item in events] == sorted(item["triggeredAt"] for item in events)
    allowed = {"uuid", "createdAt", "triggeredAt", "organizationId", "organization", "eventName", "team", "actor",
               "targetId", "version"}  # the spec's entry has additionalProperties: false
    late = 0
    for item in events:
        assert set(item) <= allowed
        assert re.fullmatch(r"[0-9a-f]{12}4[0-9a-f]{3}[89ab][0-9a-f]{15}", item["uuid"])  # UUIDv4, no hyphens
        assert isinstance(item["triggeredAt"], int) and ms(NOW - timedelta(days=7)) <= item["triggeredAt"] < ms(NOW)
        created = datetime.fromisoformat(item["createdAt"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", item["createdAt"])
        stored_after = created - datetime.fromtimestamp(item["triggeredAt"] / 1000, UTC)
        # Stored within 1.5 s, or (stored late) 2 to 5 minutes after: later than a lag, within an overlap.
        assert timedelta(0) < stored_after <= timedelta(seconds=2) or \
            timedelta(minutes=2) <= stored_after <= timedelta(minutes=5)
        late += stored_after > timedelta(seconds=2)
        assert item["organizationId"] == ORG == item["organization"]["id"]
        assert set(item["actor"]) in ({"id", "name", "email"}, {"id", "anonymized"})
        assert isinstance(item["targetId"], str)
        assert ("team" in item) != (item["eventName"].startswith(("user_invited", "user_removed", "user_role",
                                                                  "organization_")))
        if "version" in item:
            assert item["eventName"] in ("scenario_created", "scenario_updated")
            assert int(item["version"]["to"]) == int(item["version"].get("from", 0)) + 1
    names = {item["eventName"] for item in events}
    assert {"key_created", "connection_created", "webhook_disabled", "user_invited", "user_removed",
            "user_role_changed", "scenario_updated"} <= names
    assert 10 <= late <= 60  # about 1 %
    assert sum(a["triggeredAt"] == b["triggeredAt"] for a, b in itertools.pairwise(events)) > 50  # bursts
    # Many entries share a second (what ties are made of when triggeredAt is served in whole seconds), none more
    # than a page's worth.
    per_second = Counter(item["triggeredAt"] // 1000 for item in events)
    assert sum(n for n in per_second.values() if n > 1) > 600 and max(per_second.values()) <= 45
    assert any("anonymized" in item["actor"] for item in events)


@pytest.mark.slow
def test_100k_entries_generate_and_page_at_scale(clock: Clock) -> None:
    events = generate_events(100_000, NOW - timedelta(days=300), NOW - timedelta(minutes=5), seed=13)
    sim = MakeSimulator(TOKEN, ORG, now=clock, **FRIENDLY)
    sim.add_events(events)
    with session_for(sim) as session:
        returned = read_all(session, 100, **{"pg[sortDir]": "asc"})  # a thousand pages, deep offsets included
        recent = read_all(session, 1000, dateFrom="2025-05-01", **{"pg[sortDir]": "asc"})
    assert [item["uuid"] for item in returned] == [item["uuid"] for item in
                                                   sorted(events, key=lambda e: (e["triggeredAt"], e["uuid"]))]
    assert len(recent) == sum(item["triggeredAt"] >= ms(datetime(2025, 5, 1, tzinfo=UTC)) for item in events)


# --- what the docs leave open: the switches ----------------------------------------------------------------------


@pytest.mark.parametrize(("page_cap", "served", "echo"), [
    ("silent", 100, 100), ("lying", 100, 150), ("reject", None, None), ("ignore", 100, 100), ("none", 150, 150),
])
def test_page_cap_switch(page_cap: str, served: int | None, echo: int | None, clock: Clock) -> None:
    """Docs are silent on pg[limit]'s maximum (the docs' example echoes 100): each alternative, asked for 150."""
    assert page_cap in PAGE_CAPS
    sim = MakeSimulator(TOKEN, ORG, now=clock, page_cap=page_cap)
    sim.add_events(generate_events(400, NOW - timedelta(days=1), NOW - timedelta(minutes=10), seed=20))
    with session_for(sim) as session:
        response = get(session, **{"pg[limit]": 150, "pg[sortDir]": "asc"})
        if served is None:
            assert_error(response, 400, "SC400", "pg[limit]: must be between 1 and 100, got 150")
            assert len(uuids(get(session, **{"pg[limit]": 100}))) == 100
            return
        assert len(uuids(response)) == served and response.json()["pg"]["limit"] == echo
        small = get(session, **{"pg[limit]": 40})  # below the cap: a page larger than asked only when ignored
        assert len(uuids(small)) == (100 if page_cap == "ignore" else 40)


@pytest.mark.parametrize("total_count", [True, False])
def test_total_count_switch(total_count: bool, clock: Clock) -> None:
    sim = MakeSimulator(TOKEN, ORG, now=clock, total_count=total_count)
    sim.add_events(generate_events(57, NOW - timedelta(days=1), NOW - timedelta(minutes=10), seed=21))
    with session_for(sim) as session:
        pg = get(session, **{"pg[limit]": 10, "pg[returnTotalCount]": "true"}).json()["pg"]
    assert pg.get("totalCount") == (57 if total_count else None)


def burst(count: int, second: datetime, prefix: str = "") -> list[dict[str, Any]]:
    """`count` entries within one second."""
    return [entry(f"{prefix}{n:0{32 - len(prefix)}x}", second + timedelta(milliseconds=n * 7)) for n in range(count)]


def test_unstable_ties_reorder_a_second_differently_for_every_query(sim: MakeSimulator,
                                                                   session: requests.Session) -> None:
    """The default `tie_order`: entries of one second come in an order of each query's own (its dates, offset and
    limit), the same every time that query is asked. Plain offset paging cut inside them repeats and skips; what
    a time boundary sees does not change: the entries older than a second are the same, in any query."""
    second = NOW - timedelta(hours=3)
    before = [entry(f"a{n:031x}", second - timedelta(minutes=10 - n)) for n in range(5)]
    ties = burst(30, second, prefix="b")
    after = [entry(f"c{n:031x}", second + timedelta(minutes=n + 1)) for n in range(5)]
    sim.add_events(before + ties + after)
    asc = {"pg[sortDir]": "asc"}

    pages = [uuids(get(session, **asc, **{"pg[offset]": offset, "pg[limit]": 10})) for offset in range(0, 40, 10)]
    assert pages == [uuids(get(session, **asc, **{"pg[offset]": offset, "pg[limit]": 10}))
                     for offset in range(0, 40, 10)], "deterministic per query"
    read = [uuid for page in pages for uuid in page]
    assert len(read) == 40 and len(set(read)) < 40, "naive offset paging repeats (and so skips) tied entries"
    orders = {tuple(u for u in uuids(get(session, **asc, **{"pg[offset]": 0, "pg[limit]": limit}))
                    if u.startswith("b")) for limit in (36, 37, 38, 39, 40)}
    assert len(orders) > 1, "another limit, another order of the same second"
    for offset, limit in ((4, 12), (5, 31), (0, 50), (3, 7)):
        page = get(session, **asc, **{"pg[offset]": offset, "pg[limit]": limit}).json()["auditLogs"]
        positions = range(offset, offset + len(page))
        # Whatever the order of the second's entries, exactly 5 entries are older than it, and the 30 at it come
        # before every later one.
        assert all((item["uuid"][0] == "a") == (position < 5) for item, position in zip(page, positions,
                                                                                         strict=True))
        assert all((item["uuid"][0] == "c") == (position >= 35) for item, position in zip(page, positions,
                                                                                          strict=True))


def test_stable_ties_keep_uuid_order(clock: Clock) -> None:
    sim = MakeSimulator(TOKEN, ORG, now=clock, tie_order="stable")
    ties = burst(30, NOW - timedelta(hours=3))
    sim.add_events(ties)
    with session_for(sim) as session:
        read = [u for offset in range(0, 30, 7) for u in uuids(get(session, **{
            "pg[sortDir]": "asc", "pg[offset]": offset, "pg[limit]": 7}))]
    assert read == sorted(item["uuid"] for item in ties)


@pytest.mark.parametrize(("date_filter", "day_zone", "expected"), [
    # Days at UTC-10 filtering createdAt (the defaults): 2025-05-30 runs from 05-30 10:00 to 05-31 10:00 UTC.
    ("createdAt", timedelta(hours=-10), {"2025-05-30": ["late", "night"], "2025-05-31": ["morning"]}),
    ("createdAt", timedelta(0), {"2025-05-30": ["early", "night"], "2025-05-31": ["late", "morning"]}),
    ("triggeredAt", timedelta(hours=-10), {"2025-05-30": ["late", "night"], "2025-05-31": ["morning"]}),
    ("triggeredAt", timedelta(0), {"2025-05-30": ["early", "late", "night"], "2025-05-31": ["morning"]}),
    # UTC+14: 2025-05-30 runs from 05-29 10:00 to 05-30 10:00 UTC.
    ("triggeredAt", timedelta(hours=14), {"2025-05-30": ["early"], "2025-05-31": ["late", "night"]}),
])
def test_date_filter_field_and_day_zone(date_filter: str, day_zone: timedelta, expected: dict[str, list[str]],
                                        clock: Clock) -> None:
    """Docs are silent on which time dateFrom/dateTo filter and on the days' zone. `late` happened on 05-30 but
    was stored on 05-31 (the docs' example has createdAt 35 days after triggeredAt)."""
    day = datetime(2025, 5, 30, tzinfo=UTC)
    named = {"early": entry("e" * 32, day + timedelta(hours=5)),
             "late": {**entry("1" * 32, day + timedelta(hours=11)), "createdAt": "2025-05-31T04:00:00.000Z"},
             "night": entry("d" * 32, day + timedelta(hours=23)),
             "morning": entry("f" * 32, day + timedelta(days=1, hours=12))}
    sim = MakeSimulator(TOKEN, ORG, now=clock, date_filter=date_filter, day_zone=day_zone, date_to_inclusive=True)
    sim.add_events(named.values())
    names = {item["uuid"]: name for name, item in named.items()}
    with session_for(sim) as session:
        for day_name, wanted in expected.items():
            got = uuids(get(session, dateFrom=day_name, dateTo=day_name, **{"pg[sortDir]": "asc"}))
            assert [names[u] for u in got] == wanted, day_name


def test_an_entry_stored_late_is_retrievable_from_its_created_at(sim: MakeSimulator, session: requests.Session,
                                                                 clock: Clock) -> None:
    late = {**entry("1" * 32, NOW - timedelta(hours=2)), "createdAt": "2025-06-01T12:30:00.000Z"}
    sim.add_events([late, entry("2" * 32, NOW - timedelta(hours=1))])
    assert uuids(get(session, **{"pg[sortDir]": "asc"})) == ["2" * 32] and set(sim.ground_truth()) == {"2" * 32}
    clock.advance(minutes=30)
    # It lands before every entry that was stored before it: it shifts their offsets.
    assert uuids(get(session, **{"pg[sortDir]": "asc"})) == ["1" * 32, "2" * 32]
