"""The engine completes a window only for a reason the vendor states (`vendor.End`), never because a page is short:
an adapter that claims an end it cannot show is an error that loses nothing, and the next run is exact.

The adapter here is Asana's, with its pages rewritten after it built them, so the engine sees exactly what a broken
adapter would hand it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from conftest import Clock, check_archive
from worlds import World, world_of

from auditlake.errors import AuditlakeError
from auditlake.vendor import End, Page
from auditlake_local.stack import LocalStack

SMALL_PARTS = {"MAX_OBJECT_EVENTS": "150"}


@pytest.fixture
def world(stack: LocalStack, clock: Clock, pauses: Any) -> Iterator[World]:
    with world_of("asana", stack, clock.now) as asana:
        now = clock.now()
        asana.seed(450, now - timedelta(days=1), now - timedelta(minutes=20), seed=4)
        yield asana


def rewrite_third_page(stack: LocalStack, world: World, monkeypatch: pytest.MonkeyPatch,
                       change: Callable[[Page], Page]) -> None:
    stack.handler(world.function_id)  # imports the function's module as Lambda would
    adapter = importlib.import_module("asana_collector").Asana
    real_fetch = adapter.fetch_page
    calls = {"n": 0}

    def fetch_page(self: Any, stream: str, window: Any, cursor: Any) -> Page:
        page = real_fetch(self, stream, window, cursor)
        calls["n"] += 1
        return change(page) if calls["n"] == 3 else page

    monkeypatch.setattr(adapter, "fetch_page", fetch_page)


@pytest.mark.usefixtures("sequential_reading")  # the third page of one query
@pytest.mark.parametrize(("change", "message"), [
    (lambda page: replace(page, cursor=None), r"a page with neither a cursor nor an end"),
    (lambda page: replace(page, cursor=None, end=End.EMPTY), r"ended a window on a page of 100 events as if it "
                                                             r"were empty"),
    (lambda page: replace(page, cursor=None, end=End.PAST_WINDOW), r"no event of the page lies past the window"),
])
def test_an_end_the_adapter_cannot_show_is_an_error_that_loses_nothing(
        change: Callable[[Page], Page], message: str, stack: LocalStack, world: World, clock: Clock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    rewrite_third_page(stack, world, monkeypatch, change)
    with pytest.raises(AuditlakeError, match=rf"asana adapter .*{message}"):
        stack.invoke(world.function_id, environment=SMALL_PARTS)
    archived = check_archive(stack, "asana", world.simulator.ground_truth())
    assert archived.duplicates == 0 and 0 < archived.archived <= 300  # the pages before it, perhaps the page too

    monkeypatch.undo()
    clock.advance()
    assert stack.invoke(world.function_id, environment=SMALL_PARTS)["status"] == "ok"
    result = check_archive(stack, "asana", world.simulator.ground_truth())
    assert (result.missing, result.duplicates, result.unexpected) == (0, 0, 0), result


@pytest.mark.parametrize("readers", ["1", ""])
def test_every_window_ends_on_a_stated_reason_and_the_empty_pages_are_counted(
        readers: str, stack: LocalStack, world: World, clock: Clock) -> None:
    summary = stack.invoke(world.function_id, environment={"FETCH_CONCURRENCY": readers})
    (stream,) = summary["streams"]
    # Asana's end is an empty page: one per slice of a window (read whole, a window is one slice), counted apart
    # from the pages that held events.
    assert stream["windows_completed"] == 1
    assert stream["empty_pages"] == stream["slices_read"]
    assert summary["http"]["requests"] == stream["pages_fetched"]
    if readers == "1":
        assert stream["slices_read"] == 1
        assert stream["pages_fetched"] == 450 // 100 + 1 + 1
    else:
        assert stream["slices_read"] > 1
