"""Streams of one invocation share its time: an even share each, and what one leaves goes to the next."""

from __future__ import annotations

from datetime import timedelta

from auditlake.deadline import Deadline


def test_streams_share_what_is_left() -> None:
    left = {"ms": 150_000}  # 90 s spendable above the 60 s margin
    parent = Deadline(lambda: left["ms"], timedelta(seconds=60))

    first = parent.share(3)
    assert first.spendable() == 30
    left["ms"] -= 29_000
    assert not first.near()
    left["ms"] -= 1_000
    assert first.near()
    assert first.remaining() == 60, "the margin to commit and release stays with each share"

    second = parent.share(2)  # 60 s left to spend: 30 s each for the two streams after the first
    left["ms"] -= 5_000  # the second stream was idle
    third = parent.share(1)
    assert second.spendable() == 25 and third.spendable() == 55


def test_share_of_a_spent_deadline_is_near() -> None:
    parent = Deadline(lambda: 50_000, timedelta(seconds=60))
    assert parent.share(4).near()


def test_a_share_never_has_more_time_than_the_invocation() -> None:
    parent = Deadline(lambda: 50_000, timedelta(seconds=60))  # already inside the margin
    share = parent.share(3)
    assert share.remaining() == parent.remaining() == 50
    assert share.near()
