"""The shared HTTP client: what it retries, how long it waits, what its errors say (and never say)."""

from __future__ import annotations

from datetime import timedelta
from email.utils import formatdate
from typing import Any

import pytest
import requests
from requests.adapters import BaseAdapter

from auditlake import http
from auditlake.deadline import Deadline
from auditlake.errors import DeadlineReached, MalformedResponse, VendorError

TOKEN = "tok-3141592653"


class Canned(BaseAdapter):
    """Answers each request with the next canned (status, headers, body) and records what was sent."""

    def __init__(self, *answers: tuple[int, dict[str, str], bytes]) -> None:
        super().__init__()
        self.answers = list(answers)
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.sent.append(request)
        status, headers, body = self.answers.pop(0)
        response = requests.Response()
        response.status_code, response._content, response.url = status, body, request.url or ""
        response.headers.update(headers)
        response.request = request
        return response

    def close(self) -> None:
        pass


def client(adapter: Canned, remaining_s: float = 300) -> http.HttpClient:
    session = requests.Session()
    session.mount("https://vendor.test/", adapter)
    return http.HttpClient(
        "acme", "https://vendor.test/api", headers={"Authorization": f"Bearer {TOKEN}"},
        error_details=lambda status, body: (body.get("code") if isinstance(body, dict) else None,
                                            body.get("message", "") if isinstance(body, dict) else str(body)),
        deadline=Deadline(lambda: int(remaining_s * 1000), timedelta(seconds=60)), max_attempts=3,
        secrets=[TOKEN], session=session)


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    waits: list[float] = []
    monkeypatch.setattr(http, "pause", waits.append)
    return waits


def test_retry_after_seconds_and_http_date(pauses: list[float]) -> None:
    in_ten = formatdate(usegmt=True, timeval=__import__("time").time() + 10)
    adapter = Canned((429, {"Retry-After": "7"}, b"{}"), (429, {"Retry-After": in_ten}, b"{}"),
                     (200, {}, b'{"ok": 1}'))
    c = client(adapter)
    assert c.get("/x") == {"ok": 1}
    assert pauses[0] == 7 and 8 <= pauses[1] <= 10
    assert (c.stats.throttles, c.stats.retries, c.stats.requests) == (2, 2, 3)


def test_rate_limit_reset_epoch_seconds(pauses: list[float]) -> None:
    reset = str(int(__import__("time").time()) + 20)
    c = client(Canned((429, {"X-RateLimit-Reset": reset}, b"{}"), (200, {}, b"[]")))
    assert c.get("/x") == []
    assert 18 <= pauses[0] <= 20


def test_a_server_error_backs_off_instead_of_waiting_for_the_rate_limit_reset(pauses: list[float]) -> None:
    # ClickUp sends X-RateLimit-Reset on every response; on a 5xx it is not an instruction to wait for the reset.
    reset = str(int(__import__("time").time()) + 55)
    c = client(Canned((500, {"X-RateLimit-Reset": reset}, b"{}"), (503, {"X-RateLimit-Reset": reset}, b"{}"),
                      (200, {"X-RateLimit-Reset": reset}, b"[]")))
    assert c.get("/x") == []
    assert len(pauses) == 2 and pauses[0] <= 2 and pauses[1] <= 4  # full-jitter backoff: 2 s, then 4 s at most
    assert http.retry_after_seconds(_response(503, {"Retry-After": "3", "X-RateLimit-Reset": reset})) == 3
    assert http.retry_after_seconds(_response(503, {"X-RateLimit-Reset": reset})) is None
    assert 50 <= (http.retry_after_seconds(_response(429, {"X-RateLimit-Reset": reset})) or 0) <= 55


def _response(status: int, headers: dict[str, str]) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.headers.update(headers)
    return response


def test_a_wait_past_the_deadline_stops_instead(pauses: list[float]) -> None:
    c = client(Canned((429, {"Retry-After": "120"}, b"{}")), remaining_s=100)
    with pytest.raises(DeadlineReached):
        c.get("/x")
    assert pauses == []


def test_client_errors_are_not_retried_and_carry_the_vendors_words(pauses: list[float]) -> None:
    c = client(Canned((403, {}, b'{"code": "forbidden", "message": "token tok-3141592653 lacks scope"}')))
    with pytest.raises(VendorError) as failure:
        c.get("/x")
    assert (failure.value.status, failure.value.code) == (403, "forbidden")
    assert str(failure.value) == "acme API HTTP 403 [forbidden]: token [redacted] lacks scope"
    assert pauses == []


def test_retries_are_bounded_and_backoff_is_jittered(pauses: list[float]) -> None:
    c = client(Canned((500, {}, b"{}"), (502, {}, b"<html>bad gateway</html>"), (503, {}, b"{}")))
    with pytest.raises(VendorError, match=r"acme API HTTP 503: gave up after 3 attempts"):
        c.get("/x")
    assert len(pauses) == 2 and all(0 <= p <= 30 for p in pauses)


def test_truncated_json_is_retried_and_html_is_refused(pauses: list[float]) -> None:
    assert client(Canned((200, {}, b'{"data": [1, 2'), (200, {}, b'{"data": []}'))).get("/x") == {"data": []}
    with pytest.raises(MalformedResponse, match="HTML page"):
        client(Canned((200, {}, b"<!doctype html><title>login</title>"))).get("/x")


def test_redirects_are_never_followed() -> None:
    adapter = Canned((302, {"Location": "https://elsewhere.test/steal"}, b""))
    with pytest.raises(VendorError, match=r"redirect.*not followed"):
        client(adapter).get("/x")
    assert [r.url for r in adapter.sent] == ["https://vendor.test/api/x"]
