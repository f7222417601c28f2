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

from auditlake.archive import Archive
from auditlake.state import StreamKey


@dataclass(frozen=True)
class Reconciliation:
    """What a reconciliation run is asked for: re-read the last `span` when the last one began `every` ago or
    more (scheduled), or, by hand, everything from `since` on now."""

    span: timedelta
    every: timedelta
    since: datetime | None = None


class ArchivedIds:
    """The ids of the events a stream has archived (live, backfill or reconciled), read from the archive one UTC
    day at a time, as the reconciliation's pages reach that day. Objects are partitioned by event day, so a day's
    objects hold every archived event of that day. At most `keep` days are held at once: a span is read in time
    order (either direction), so memory is bounded by a day's events, not the span's."""

    def __init__(self, archive: Archive, key: StreamKey, keep: int = 2) -> None:
        self.archive = archive
        self.key = key
        self.keep = keep
        self._days: dict[date, set[str]] = {}
        self.objects_read = 0

    def holds(self, event_id: str, event_time: datetime) -> bool:
        day = event_time.date()
        ids = self._days.pop(day, None)
        if ids is None:
            ids = self._read(day)
        self._days[day] = ids  # the most recently used day last
        while len(self._days) > self.keep:
            del self._days[next(iter(self._days))]
        return event_id in ids

    def _read(self, day: date) -> set[str]:
        ids: set[str] = set()
        for key in self.archive.stream_objects(self.key, [day]):
            ids.update(event_id for event_id, _ in self.archive.read_events(key))
            self.objects_read += 1
        return ids
