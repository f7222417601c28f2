"""Reconciliation: a second, independent proof that the archive holds what the vendor holds.

The live collection can only be as right as our reading of each vendor's API. A reconciliation re-reads a trailing
span of what the vendor still holds, compares it by event id with what the archive holds for those days, and
archives whatever is missing, exactly once, on a stream of its own (`<vendor>#<stream>#reconcile`, with its own
state, lease and digest chain). Every event it finds is one the live path missed: it is counted
(`ReconciledEvents`) and alarmed on.

It never races the live collection: its span ends where the live stream's completed time less the overlap ends,
which no live window re-reads again; and it starts no earlier than the live stream's origin (before it is a
backfill's). Within a span it is a backfill: windows without overlap, paged to the end, resumable across runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from auditlake.archive import Archive, safe_key_part


@dataclass(frozen=True)
class Reconciliation:
    """What a reconciliation run is asked for: re-read the last `span` when the last one began `every` ago or
    more (scheduled), or, by hand, everything from `since` on now."""

    span: timedelta
    every: timedelta
    since: datetime | None = None


def days_between(since: datetime, until: datetime) -> list[date]:
    """The UTC days that hold instants of `[since, until)`."""
    days, day = [], since.date()
    while day <= (until - timedelta(microseconds=1)).date():
        days.append(day)
        day += timedelta(days=1)
    return days


def archived_ids(archive: Archive, vendor: str, live_key: str, since: datetime, until: datetime) -> set[str]:
    """The ids of every event the stream has archived (live, backfill or reconciled) in the days of `[since,
    until)`. Objects are partitioned by event day, so these days' objects hold every archived event of the span."""
    ids: set[str] = set()
    for key in archive.stream_objects(vendor, safe_key_part(live_key), days_between(since, until)):
        ids.update(event_id for event_id, _ in archive.read_events(key))
    return ids
