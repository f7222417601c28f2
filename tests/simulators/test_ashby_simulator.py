"""The Ashby simulator behaves as Ashby documents auditLog.list (vendors.md §2), seen through `requests`."""

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

from auditlake_local.simulators import Fault, SimulatorAdapter, VendorSimulator, serve
from auditlake_local.simulators.ashby import (
    ACTOR_TYPES,
    CATEGORIES,
    ERROR_ENVELOPES,
    TIME_FIELDS,
    VOCABULARY,
    AshbySimulator,
    generate_events,
)

API_KEY = "ashby-api-key-5b0e1f7c9d2a"
API = "https://api.ashbyhq.com"
LIST_URL = f"{API}/auditLog.list"
NOW = datetime(2026, 9, 1, 12, 0, tzinfo=UTC)
ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")


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
def sim(clock: Clock) -> AshbySimulator:
    return AshbySimulator(API_KEY, now=clock)


def session_for(simulator: VendorSimulator, api_key: str | None = API_KEY, password: str = "") -> requests.Session:
    session = requests.Session()
    session.mount(f"{API}/", SimulatorAdapter(simulator))
    session.headers["Accept"] = "application/json; version=1"
    if api_key is not None:
        session.auth = (api_key, password)
    return session


@pytest.fixture
def session(sim: AshbySimulator) -> Iterator[requests.Session]:
    with session_for(sim) as session:
        yield session


def post(session: requests.Session, **body: Any) -> requests.Response:
    return session.post(LIST_URL, json=body, timeout=10)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def entry(entry_id: str, created_at: datetime, category: str = "UserLoggedIn", actor_id: str = "user-1",
          target_type: str = "app_user", target_id: str = "user-1") -> dict[str, Any]:
    return {"id": entry_id, "createdAt": iso(created_at), "category": category,
            "actor": {"type": "User", "id": actor_id, "name": "Ada Lovelace", "email": "ada@example.com"},
            "target": {"type": target_type, "id": target_id, "name": "Ada Lovelace"},
            "details": {"ipAddress": "192.0.2.1"}}


def ids(body: dict[str, Any]) -> list[str]:
    return [item["id"] for item in body["results"]]


def read_all(session: requests.Session, max_pages: int = 2000,
             **body: Any) -> tuple[list[dict[str, Any]], int]:
    """Pages with nextCursor until moreDataAvailable is false: (entries, pages requested).

    Fails at the first entry returned twice, so paging that stops advancing fails fast instead of looping.
    """
    entries: list[dict[str, Any]] = []
    seen: set[str] = set()
    request = dict(body)
    for pages in range(1, max_pages + 1):
        response = post(session, **request)
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["success"] is True, page
        for item in page["results"]:
            assert item["id"] not in seen, f"entry {item['id']} returned twice (page {pages})"
            seen.add(item["id"])
        entries.extend(page["results"])
        if not page["moreDataAvailable"]:
            assert "nextCursor" not in page
            return entries, pages
        request = {**body, "cursor": page["nextCursor"]}
    raise AssertionError(f"paging did not end within {max_pages} pages")


def assert_error(response: requests.Response, code: str, status: int = 200, fragment: str = "") -> None:
    """An error in whichever envelope the simulator is switched to; the message is checked where it is sent."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False
    if "errorInfo" in body:
        assert set(body) == {"success", "errorInfo"}
        assert body["errorInfo"]["code"] == code
        assert fragment.lower() in body["errorInfo"]["message"].lower()
        assert ULID.match(body["errorInfo"]["requestId"])
        return
    assert set(body) == {"success", "errors"}
    said = body["errors"]
    assert isinstance(said, list) and len(said) == 1 and isinstance(said[0], str)
    if said[0] != code:  # the older envelope's bare code (the default); else a sentence naming it, or none
        assert fragment.lower() in said[0].lower() or code not in said[0], said


def newest_first(items: list[dict[str, Any]]) -> list[str]:
    return [item["id"] for item in sorted(items, key=lambda item: (item["createdAt"], item["id"]), reverse=True)]


# --- ordering and paging ----------------------------------------------------------------------------------------


def test_pages_are_newest_first_and_return_every_entry_exactly_once(sim: AshbySimulator,
                                                                    session: requests.Session) -> None:
    sim.add_events(generate_events(250, NOW - timedelta(days=2), NOW, seed=1))
    window = {"startDate": iso(NOW - timedelta(days=3)), "endDate": iso(NOW)}

    entries, pages = read_all(session, limit=100, **window)

    assert [item["id"] for item in entries] == newest_first(entries)
    assert {item["id"] for item in entries} == set(sim.ground_truth()) and len(entries) == 250
    assert pages == 3  # 100 + 100 + 50, and the last one says so itself
    first = post(session, limit=100, **window).json()
    assert first["moreDataAvailable"] is True and isinstance(first["nextCursor"], str)
    assert set(first) == {"success", "results", "moreDataAvailable", "nextCursor"}


@pytest.mark.parametrize("when_full", [True, False])
def test_an_exactly_full_last_page(when_full: bool, clock: Clock) -> None:
    """Docs are silent on a full last page: by default it says moreDataAvailable: true and an empty page follows;
    with the flag exact, it says false itself."""
    sim = AshbySimulator(API_KEY, now=clock, more_data_when_full=when_full)
    sim.add_events(generate_events(200, NOW - timedelta(days=1), NOW, seed=2))
    with session_for(sim) as session:
        entries, pages = read_all(session, limit=100, startDate=iso(NOW - timedelta(days=2)), endDate=iso(NOW))
    assert len(entries) == 200 and pages == 2 + when_full


def test_the_cursor_continues_exactly_after_the_last_entry_inside_a_burst(sim: AshbySimulator,
                                                                          session: requests.Session) -> None:
    instant = NOW - timedelta(hours=1)
    burst = [entry(entry_id, instant) for entry_id in ("e-5", "e-2", "e-9", "e-4", "e-3")]
    sim.add_events([entry("before", instant - timedelta(milliseconds=1)), *burst,
                    entry("after", instant + timedelta(milliseconds=1))])

    entries, pages = read_all(session, limit=2, startDate=iso(NOW - timedelta(days=1)), endDate=iso(NOW))

    assert [item["id"] for item in entries] == ["after", "e-9", "e-5", "e-4", "e-3", "e-2", "before"]
    assert pages == 4  # pages end twice inside the burst; nothing is lost or repeated


def test_limit_defaults_to_100_and_is_bounded(sim: AshbySimulator, session: requests.Session) -> None:
    sim.add_events(generate_events(150, NOW - timedelta(hours=20), NOW, seed=3))
    assert len(post(session).json()["results"]) == 100
    assert len(post(session, limit=1).json()["results"]) == 1
    assert len(post(session, limit=40.0).json()["results"]) == 40
    for bad in (0, 101, -1, "ten", 1.5, True):
        assert_error(post(session, limit=bad), "invalid_input", fragment="limit")


# --- the date window --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("start_inclusive", "end_inclusive"), [(False, True), (True, False), (True, True),
                                                                (False, False)])
def test_the_bounds_are_inclusive_as_switched(start_inclusive: bool, end_inclusive: bool, clock: Clock) -> None:
    """Docs are silent on the bounds: by default startDate is exclusive and endDate inclusive (the least friendly
    combination); each is a switch."""
    sim = AshbySimulator(API_KEY, now=clock, start_inclusive=start_inclusive, end_inclusive=end_inclusive)
    t0 = NOW - timedelta(hours=3)
    sim.add_events([entry("a", t0 - timedelta(milliseconds=1)), entry("b", t0),
                    entry("c", t0 + timedelta(hours=1)), entry("d", t0 + timedelta(hours=2)),
                    entry("e", t0 + timedelta(hours=2, milliseconds=1))])
    expected = ["d"] * end_inclusive + ["c"] + ["b"] * start_inclusive
    with session_for(sim) as session:
        assert ids(post(session, startDate=iso(t0), endDate=iso(t0 + timedelta(hours=2))).json()) == expected
        # "All dates are ISO 8601 interpreted as UTC": offsets name the same instants, naive times are UTC.
        same = post(session, startDate="2026-09-01T11:00:00+02:00", endDate="2026-09-01T11:00:00.000").json()
        assert ids(same) == expected
        # Paged by a cursor, the bounds hold just the same.
        entries, pages = read_all(session, limit=1, startDate=iso(t0), endDate=iso(t0 + timedelta(hours=2)))
        assert [item["id"] for item in entries] == expected and pages == len(expected) + 1  # a full last page


def test_by_default_the_start_is_exclusive_and_the_end_inclusive(sim: AshbySimulator) -> None:
    assert (sim.start_inclusive, sim.end_inclusive) == (False, True)


def test_missing_dates_default_to_24_hour_windows(sim: AshbySimulator, session: requests.Session) -> None:
    sim.add_events([entry("now-30h", NOW - timedelta(hours=30)), entry("now-20h", NOW - timedelta(hours=20)),
                    entry("now-1h", NOW - timedelta(hours=1))])

    assert ids(post(session).json()) == ["now-1h", "now-20h"]  # {}: the last 24 hours ending now
    # endDate only: the 24 hours ending at endDate.
    assert ids(post(session, endDate=iso(NOW - timedelta(hours=10))).json()) == ["now-20h", "now-30h"]
    # startDate only: the 24 hours from startDate, *not* until now — the silent pitfall.
    assert ids(post(session, startDate=iso(NOW - timedelta(hours=48))).json()) == ["now-30h"]
    assert ids(post(session, startDate=iso(NOW - timedelta(hours=48)), endDate=iso(NOW)).json()) == [
        "now-1h", "now-20h", "now-30h"]


def test_an_explicit_span_is_at_most_18_months(session: requests.Session) -> None:
    start = datetime(2024, 8, 31, tzinfo=UTC)
    limit = datetime(2026, 2, 28, tzinfo=UTC)  # 18 calendar months on, the day clamped to February's end
    assert post(session, startDate=iso(start), endDate=iso(limit)).json()["success"] is True
    assert post(session, startDate=iso(start), endDate=iso(start + timedelta(days=540))).json()["success"] is True
    too_long = post(session, startDate=iso(start), endDate=iso(limit + timedelta(milliseconds=1)))
    assert_error(too_long, "invalid_input", fragment="18 months")


def test_bad_dates_are_invalid_input(session: requests.Session) -> None:
    assert_error(post(session, startDate=iso(NOW), endDate=iso(NOW - timedelta(seconds=1))), "invalid_input",
                 fragment="before")
    assert_error(post(session, startDate="yesterday", endDate=iso(NOW)), "invalid_input", fragment="startDate")
    assert_error(post(session, endDate="2026-13-01T00:00:00Z"), "invalid_input", fragment="endDate")
    assert_error(post(session, startDate=1767225600000), "invalid_input", fragment="startDate")
    assert post(session, startDate="2026-08-31", endDate="2026-09-01").json()["success"] is True  # dates are ISO too


def test_malformed_bodies_are_invalid_input(session: requests.Session) -> None:
    assert_error(session.post(LIST_URL, data=b"{not json", timeout=10), "invalid_input", fragment="JSON")
    assert_error(session.post(LIST_URL, json=["a list"], timeout=10), "invalid_input", fragment="object")
    assert session.post(LIST_URL, timeout=10).json()["success"] is True  # no body at all: as {}


# --- filters ----------------------------------------------------------------------------------------------------


def test_filters_combine_as_documented(sim: AshbySimulator, session: requests.Session) -> None:
    sim.add_events([
        entry("login-u1", NOW - timedelta(hours=5), "UserLoggedIn", actor_id="u1", target_id="u1"),
        entry("login-u2", NOW - timedelta(hours=4), "UserLoggedIn", actor_id="u2", target_id="u2"),
        entry("job-u1", NOW - timedelta(hours=3), "JobStatusChanged", actor_id="u1", target_type="job",
              target_id="j1"),
        entry("job-u2", NOW - timedelta(hours=2), "JobCreated", actor_id="u2", target_type="job", target_id="j2"),
        entry("key-u1", NOW - timedelta(hours=1), "ApiKeyCreated", actor_id="u1", target_type="api_key",
              target_id="k1"),
    ])

    def matching(**filters: Any) -> set[str]:
        return set(ids(post(session, **filters).json()))

    assert matching(actorIds=["u1"]) == {"login-u1", "job-u1", "key-u1"}
    assert matching(targetIds=["j1", "j2"]) == {"job-u1", "job-u2"}
    assert matching(actorIds=["u1"], targetIds=["j1", "j2"]) == {"job-u1"}  # AND
    assert matching(targetTypes=["api_key"], categories=["JobCreated"]) == {"key-u1", "job-u2"}  # OR
    assert matching(actorIds=["u2"], targetTypes=["job"], categories=["UserLoggedIn"]) == {"login-u2", "job-u2"}
    assert matching(actorIds=[], targetIds=[], targetTypes=[], categories=[]) == {  # [] = omitted
        "login-u1", "login-u2", "job-u1", "job-u2", "key-u1"}


def test_filter_limits_and_vocabulary(session: requests.Session) -> None:
    many = [f"id-{n}" for n in range(101)]
    for name in ("actorIds", "targetIds"):
        assert_error(post(session, **{name: many}), "invalid_input", status=400, fragment=name)
        assert post(session, **{name: many[:100]}).json()["success"] is True
    assert_error(post(session, targetTypes=["spaceship"]), "invalid_input", fragment="spaceship")
    assert_error(post(session, categories=["JobStatusChanged", "JobTeleported"]), "invalid_input",
                 fragment="JobTeleported")
    assert_error(post(session, actorIds="u1"), "invalid_input", fragment="actorIds")
    assert_error(post(session, targetIds=[1, 2]), "invalid_input", fragment="targetIds")


# --- cursors ----------------------------------------------------------------------------------------------------


def test_a_cursor_only_works_with_the_window_and_filters_it_was_issued_for(sim: AshbySimulator,
                                                                           session: requests.Session) -> None:
    sim.add_events(generate_events(50, NOW - timedelta(days=1), NOW, seed=4))
    start, end = NOW - timedelta(days=2), NOW
    cursor = post(session, limit=5, startDate=iso(start), endDate=iso(end)).json()["nextCursor"]

    assert_error(post(session, limit=5, cursor=cursor), "cursor_invalid")
    assert_error(post(session, limit=5, startDate=iso(start - timedelta(seconds=1)), endDate=iso(end),
                      cursor=cursor), "cursor_invalid", fragment="different")
    assert_error(post(session, limit=5, startDate=iso(start), endDate=iso(end), categories=["UserLoggedIn"],
                      cursor=cursor), "cursor_invalid")
    # The same instants spelled differently, and another page size, are the same query.
    same = post(session, limit=7, startDate=start.isoformat(), endDate=end.isoformat(), cursor=cursor)
    assert same.json()["success"] is True and len(same.json()["results"]) == 7


def test_a_cursor_keeps_paging_the_window_its_first_page_resolved(sim: AshbySimulator, session: requests.Session,
                                                                  clock: Clock) -> None:
    sim.add_events(generate_events(30, NOW - timedelta(hours=23), NOW - timedelta(minutes=1), seed=5))
    sim.cursor_ttl = None  # the cursor is sent 12 hours later
    first = post(session, limit=10).json()  # {}: the last 24 h ending now
    clock.advance(hours=12)  # a "now"-relative window would have moved by half
    rest, _ = read_all(session, limit=10, cursor=first["nextCursor"])
    assert len(first["results"]) + len(rest) == 30


def test_an_altered_or_foreign_cursor_could_not_be_decoded(sim: AshbySimulator, session: requests.Session) -> None:
    sim.add_events(generate_events(10, NOW - timedelta(hours=2), NOW, seed=6))
    window = {"startDate": iso(NOW - timedelta(days=1)), "endDate": iso(NOW)}
    payload, signature = post(session, limit=2, **window).json()["nextCursor"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["pos"][0] -= 1
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    for cursor in (f"{forged}.{signature}", "not-a-cursor", "a.b.c"):
        assert_error(post(session, limit=2, cursor=cursor, **window), "cursor_invalid", fragment="decoded")
    assert_error(post(session, limit=2, cursor=17, **window), "invalid_input", fragment="cursor")


def test_expire_cursors_invalidates_every_cursor_issued_so_far(sim: AshbySimulator,
                                                               session: requests.Session) -> None:
    sim.add_events(generate_events(10, NOW - timedelta(hours=2), NOW, seed=7))
    window = {"startDate": iso(NOW - timedelta(days=1)), "endDate": iso(NOW)}
    cursor = post(session, limit=2, **window).json()["nextCursor"]

    sim.expire_cursors()

    assert_error(post(session, limit=2, cursor=cursor, **window), "next_cursor_expired", fragment="expired")
    fresh = post(session, limit=2, **window).json()["nextCursor"]  # restarting the window works
    assert post(session, limit=2, cursor=fresh, **window).json()["success"] is True


def test_cursors_expire_after_a_short_ttl_by_default(sim: AshbySimulator, session: requests.Session,
                                                     clock: Clock) -> None:
    """Docs: cursors expire, after an undocumented time. By default sooner than a collector's next five-minute
    tick, and an expired cursor stays expired."""
    sim.add_events(generate_events(10, NOW - timedelta(hours=2), NOW, seed=8))
    window = {"startDate": iso(NOW - timedelta(days=1)), "endDate": iso(NOW)}
    cursor = post(session, limit=2, **window).json()["nextCursor"]
    clock.advance(seconds=30)
    assert post(session, limit=2, cursor=cursor, **window).json()["success"] is True
    clock.advance(minutes=5)
    for _ in range(3):
        assert_error(post(session, limit=2, cursor=cursor, **window), "next_cursor_expired")
        clock.advance(hours=1)


def test_cursors_expire_after_their_ttl(clock: Clock) -> None:
    sim = AshbySimulator(API_KEY, now=clock, cursor_ttl=timedelta(minutes=15))
    sim.add_events(generate_events(10, NOW - timedelta(hours=2), NOW, seed=8))
    window = {"startDate": iso(NOW - timedelta(days=1)), "endDate": iso(NOW)}
    with session_for(sim) as session:
        cursor = post(session, limit=2, **window).json()["nextCursor"]
        clock.advance(minutes=14)
        assert post(session, limit=2, cursor=cursor, **window).json()["success"] is True
        clock.advance(minutes=2)
        assert_error(post(session, limit=2, cursor=cursor, **window), "next_cursor_expired")


def test_a_cursor_is_a_position_so_late_entries_above_it_need_a_new_query(sim: AshbySimulator,
                                                                          session: requests.Session) -> None:
    t = NOW - timedelta(hours=5)
    sim.add_events([entry(f"e-{n}", t + timedelta(hours=n)) for n in range(4)])
    window = {"startDate": iso(NOW - timedelta(days=1)), "endDate": iso(NOW)}
    first = post(session, limit=2, **window).json()
    assert ids(first) == ["e-3", "e-2"]

    sim.add_events([entry("late-above", t + timedelta(hours=2, minutes=30)),
                    entry("late-below", t + timedelta(minutes=30))], published=False)
    assert "late-below" not in sim.ground_truth()
    assert sim.publish_pending() == 2

    rest = post(session, limit=10, cursor=first["nextCursor"], **window).json()
    assert ids(rest) == ["e-1", "late-below", "e-0"]
    assert "late-above" in ids(post(session, limit=10, **window).json())  # a collector's overlap finds it
    assert {"late-above", "late-below"} <= set(sim.ground_truth())


def test_entries_are_not_visible_before_they_happen(sim: AshbySimulator, session: requests.Session,
                                                    clock: Clock) -> None:
    sim.add_events([entry("soon", NOW + timedelta(minutes=5))])
    window = {"startDate": iso(NOW - timedelta(hours=1)), "endDate": iso(NOW + timedelta(hours=1))}
    assert post(session, **window).json()["results"] == []
    assert sim.ground_truth() == {}
    clock.advance(minutes=5)
    assert ids(post(session, **window).json()) == ["soon"]


def test_entries_timed_by_other_field_names_are_ordered_too(sim: AshbySimulator, session: requests.Session) -> None:
    older = {"id": "x-1", "occurredAt": iso(NOW - timedelta(hours=2)), "category": "CandidateExported"}
    newer = {"id": "x-2", "timestamp": iso(NOW - timedelta(hours=1)), "category": "CandidateExported"}
    sim.add_events([older, newer])
    assert post(session).json()["results"] == [newer, older]  # unknown categories are served as they are
    with pytest.raises(ValueError, match="no ISO time"):
        sim.add_events([{"id": "x-3", "category": "UserLoggedIn"}])


def test_duplicate_ids_are_refused(sim: AshbySimulator) -> None:
    sim.add_events([entry("one", NOW)], published=False)
    with pytest.raises(ValueError, match="unique"):
        sim.add_events([entry("two", NOW), entry("one", NOW)])
    assert sim.publish_pending() == 1 and set(sim.ground_truth()) == {"one"}  # the refused batch left no trace


# --- auth, permission, feature, routes --------------------------------------------------------------------------


def test_basic_auth_with_the_key_as_username(sim: AshbySimulator) -> None:
    with session_for(sim, None) as session:
        assert_error(post(session), "unauthenticated", status=401)
        bearer = session.post(LIST_URL, json={}, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10)
        assert_error(bearer, "unauthenticated", status=401)
    with session_for(sim, "wrong-key") as session:
        assert_error(post(session), "invalid_api_key", status=403)
    # Any password is accepted: some clients send the key as the password as well.
    with session_for(sim, API_KEY, password=API_KEY) as session:
        assert post(session).json() == {"success": True, "results": [], "moreDataAvailable": False}
    with session_for(sim) as session:
        session.headers["Accept"] = "application/json"
        assert post(session).json()["success"] is True


def test_missing_permission_is_a_403_and_a_missing_feature_a_200_error(clock: Clock) -> None:
    without_permission = AshbySimulator(API_KEY, now=clock, has_permission=False)
    with session_for(without_permission) as session:
        assert_error(post(session), "missing_endpoint_permission", status=403, fragment="auditLogsRead")
    without_feature = AshbySimulator(API_KEY, now=clock, audit_logs_enabled=False)
    without_feature.add_events([entry("a", NOW - timedelta(hours=1))])
    with session_for(without_feature) as session:
        for body in ({}, {"startDate": iso(NOW - timedelta(days=1)), "endDate": iso(NOW)}, {"limit": 500}):
            assert_error(post(session, **body), "audit_logs_not_enabled", fragment="Audit Logs")
        without_feature.audit_logs_enabled = True
        assert ids(post(session).json()) == ["a"]


@pytest.mark.parametrize("status", [200, 403, 404])
def test_a_missing_feature_answers_with_the_switched_status(status: int, clock: Clock) -> None:
    """`audit_logs_not_enabled` is documented, and Ashby's rule makes it a 200; a 403 or a 404 are the
    alternatives."""
    sim = AshbySimulator(API_KEY, now=clock, audit_logs_enabled=False, not_enabled_status=status)
    with session_for(sim) as session:
        assert_error(post(session), "audit_logs_not_enabled", status=status, fragment="Audit Logs")


@pytest.mark.parametrize("envelope", ERROR_ENVELOPES)
def test_every_error_comes_in_the_switched_envelope(envelope: str, clock: Clock) -> None:
    """By default the older envelope, `errors: [code]` as in the docs' example; or a sentence naming the code, a
    sentence naming none, or the current `errorInfo`."""
    sim = AshbySimulator(API_KEY, now=clock, error_envelope=envelope)
    sim.add_events(generate_events(10, NOW - timedelta(hours=2), NOW, seed=7))
    window = {"startDate": iso(NOW - timedelta(days=1)), "endDate": iso(NOW)}
    with session_for(sim) as session:
        cursor = post(session, limit=2, **window).json()["nextCursor"]
        sim.expire_cursors()
        answers = {"next_cursor_expired": post(session, limit=2, cursor=cursor, **window),
                   "cursor_invalid": post(session, limit=2, cursor="not-a-cursor", **window),
                   "invalid_input": post(session, limit=500)}
        sim.audit_logs_enabled = False
        answers["audit_logs_not_enabled"] = post(session)
        sim.has_permission = False
        answers["missing_endpoint_permission"] = post(session)
    for code, response in answers.items():
        body = response.json()
        assert body["success"] is False
        if envelope == "error_info":
            assert body["errorInfo"]["code"] == code
        elif envelope == "errors":
            assert body == {"success": False, "errors": [code]}
        elif envelope == "errors_sentence":
            assert code in body["errors"][0] and len(body["errors"][0]) > len(code) + 10
        else:
            assert body["errors"][0] and not re.search(r"\b[a-z]+_[a-z_]+\b", body["errors"][0]), body
    assert AshbySimulator(API_KEY, now=clock).error_envelope == "errors"
    with pytest.raises(ValueError, match="error_envelope"):
        AshbySimulator(API_KEY, now=clock, error_envelope="xml")


@pytest.mark.parametrize("name", [*TIME_FIELDS, "eventTime"])
def test_entries_carry_their_time_under_the_switched_name(name: str, clock: Clock) -> None:
    """Docs are silent on the time field's name: `time_field` serves every entry's time under the one given, in
    pages and in the ground truth alike."""
    sim = AshbySimulator(API_KEY, now=clock, time_field=name)
    added = [entry("a", NOW - timedelta(hours=1)), entry("b", NOW - timedelta(hours=2))]
    sim.add_events(added)
    with session_for(sim) as session:
        served = post(session).json()["results"]
    assert [item["id"] for item in served] == ["a", "b"]
    for item, original in zip(served, added, strict=True):
        assert {*TIME_FIELDS, "eventTime"} & set(item) == {name}
        assert item[name] == original["createdAt"]
        assert {k: v for k, v in item.items() if k != name} == {k: v for k, v in original.items()
                                                                if k != "createdAt"}
        assert sim.ground_truth()[item["id"]] == item


def test_unknown_route_and_method(session: requests.Session) -> None:
    assert_error(session.post(f"{API}/auditLog.info", json={}, timeout=10), "not_found", status=404)
    assert_error(session.get(LIST_URL, timeout=10), "method_not_allowed", status=405)


# --- rate limits and faults -------------------------------------------------------------------------------------


def test_rate_limit_mode_answers_429_with_retry_after(clock: Clock) -> None:
    sim = AshbySimulator(API_KEY, now=clock, rate_limit_per_minute=3)
    with session_for(sim) as session:
        for _ in range(3):
            assert post(session).status_code == 200
            clock.advance(seconds=10)
        throttled = post(session)  # at t=30s: 4 requests within a minute
        assert_error(throttled, "rate_limit_exceeded", status=429)
        assert throttled.headers["Retry-After"] == "40"  # the request at t=10s leaves the window at t=70s
        assert post(session).status_code == 429  # rejected requests count too
        clock.advance(seconds=61)
        assert post(session).status_code == 200
    assert sim.stats()["rate_limited"] == 2


def test_each_fault_surfaces_as_a_real_client_would_see_it(sim: AshbySimulator, session: requests.Session) -> None:
    sim.add_events(generate_events(20, NOW - timedelta(hours=5), NOW, seed=9))
    full = post(session, limit=10)

    sim.faults.next(Fault.RATE_LIMITED)
    limited = post(session, limit=10)
    assert_error(limited, "rate_limit_exceeded", status=429)
    assert limited.headers["Retry-After"] == "1"
    sim.faults.next(Fault.SERVER_ERROR)
    assert_error(post(session, limit=10), "internal_server_error", status=500)
    sim.faults.next(Fault.UNAVAILABLE)
    with pytest.raises(requests.exceptions.JSONDecodeError):
        post(session, limit=10).json()
    sim.faults.next(Fault.TIMEOUT)
    with pytest.raises(requests.exceptions.ReadTimeout):
        post(session, limit=10)
    sim.faults.next(Fault.CONNECTION_RESET)
    with pytest.raises(requests.exceptions.ConnectionError):
        post(session, limit=10)
    sim.faults.next(Fault.TRUNCATED_BODY)
    truncated = post(session, limit=10)
    assert truncated.status_code == 200 and truncated.content == full.content[: len(full.content) // 2]

    assert post(session, limit=10).json()["results"] == full.json()["results"]  # faults change nothing
    stats = sim.stats()
    assert stats["faults_injected"] == 6 and stats["network_errors"] == 2
    assert API_KEY not in repr(sim.requests_log) and API_KEY not in repr(stats)


def test_loopback_server_serves_real_http(sim: AshbySimulator) -> None:
    sim.add_events(generate_events(15, NOW - timedelta(hours=5), NOW, seed=10))
    with serve(sim) as base_url, requests.Session() as session:
        url = f"{base_url}/auditLog.list"
        first = session.post(url, json={"limit": 10}, auth=(API_KEY, ""), timeout=5).json()
        assert len(first["results"]) == 10 and first["moreDataAvailable"] is True
        rest = session.post(url, json={"limit": 10, "cursor": first["nextCursor"]}, auth=(API_KEY, ""),
                            timeout=5).json()
        assert len(rest["results"]) == 5 and rest["moreDataAvailable"] is False
        assert session.post(url, json={}, timeout=5).status_code == 401


# --- generated entries ------------------------------------------------------------------------------------------


def test_generated_entries_are_realistic_and_deterministic() -> None:
    events = generate_events(4000, NOW - timedelta(days=7), NOW, seed=11)

    assert events == generate_events(4000, NOW - timedelta(days=7), NOW, seed=11)
    assert events != generate_events(4000, NOW - timedelta(days=7), NOW, seed=12)
    assert len({item["id"] for item in events}) == 4000
    assert events == sorted(events, key=lambda item: item["createdAt"])
    target_of = {category: target for target, categories in VOCABULARY.items() for category in categories}
    actor_types: set[str] = set()
    for item in events:
        assert list(item) == ["id", "createdAt", "category", "actor", "target", "details"]
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", item["id"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", item["createdAt"])
        assert NOW - timedelta(days=7) <= datetime.fromisoformat(item["createdAt"]) < NOW
        assert item["category"] in CATEGORIES
        assert item["target"]["type"] == target_of[item["category"]]  # each category has exactly one target type
        actor = item["actor"]
        actor_types.add(actor["type"])
        assert actor["type"] in ACTOR_TYPES
        assert ("email" in actor) == (actor["type"] == "User")
        assert (actor["id"] is None) == (actor["type"] in {"Automation", "Support", "Other"})
        if actor["type"] in {"User", "ApiUser"}:
            assert re.fullmatch(r"(192\.0\.2|198\.51\.100|203\.0\.113)\.\d+", item["details"]["ipAddress"])
            assert item["details"]["userAgent"]
    assert actor_types == ACTOR_TYPES
    counts = {category: sum(item["category"] == category for item in events) for category in CATEGORIES}
    for security_relevant in ("UserLoggedIn", "UserLoginFailed", "UserInvited", "UserDeactivated",
                              "UserPermissionsChanged", "JobStatusChanged", "ApplicationStageChanged"):
        assert counts[security_relevant] > 0, security_relevant
    assert sum(counts.values()) == 4000 and sum(count > 0 for count in counts.values()) >= 20
    assert sum(a["createdAt"] == b["createdAt"] for a, b in itertools.pairwise(events)) > 100  # bursts


@pytest.mark.slow
def test_100k_entries_generate_and_page_at_scale(clock: Clock) -> None:
    events = generate_events(100_000, NOW - timedelta(days=30), NOW, seed=13)
    sim = AshbySimulator(API_KEY, now=clock)
    sim.add_events(events)
    since = NOW - timedelta(days=2)
    with session_for(sim) as session:
        returned, pages = read_all(session, limit=100, startDate=iso(since), endDate=iso(NOW))
    expected = sum(item["createdAt"] >= iso(since) for item in events)
    assert len(returned) == expected and pages == -(-expected // 100)
