"""UTC time helpers: one clock for the engine (tests may replace `now`) and one record time format."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MILLISECOND = timedelta(milliseconds=1)


def now() -> datetime:
    return datetime.now(UTC)


def to_iso(moment: datetime) -> str:
    """`2026-11-22T10:15:00.123Z`: UTC, milliseconds, `Z` — the format every record's event_time uses."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"  # strftime is 5x slower


def to_compact(moment: datetime) -> str:
    """`20261122T101500123Z`: the same instant, safe inside S3 keys."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y%m%dT%H%M%S") + f"{moment.microsecond // 1000:03d}Z"


def to_millis(moment: datetime) -> int:
    return (moment - EPOCH) // MILLISECOND


def from_millis(millis: int) -> datetime:
    return EPOCH + timedelta(milliseconds=millis)


def floor_millis(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond - moment.microsecond % 1000)


def parse_time(value: object) -> datetime:
    """Parses a vendor time: ISO 8601 (with `Z` or an offset) or epoch seconds/milliseconds.

    Raises ValueError for anything else; naive ISO times are taken as UTC.
    """
    return _parse(value)[0]


def parse_event_time(value: object, field: str) -> datetime:
    """A vendor event's time, strictly: ISO 8601 with a zone, or epoch seconds/milliseconds. A ValueError names the
    field for anything else, a zoneless ISO time included (taking it as UTC would be a guess)."""
    try:
        moment, zoned = _parse(value)
    except (ValueError, OverflowError):
        raise ValueError(f"{field} is {str(value)[:60]!r}, not a time (ISO 8601 with a zone, or epoch ms)") from None
    if not zoned:
        raise ValueError(f"{field} is {value!r}, an ISO 8601 time without a zone: taking it as UTC would be a guess")
    return moment


def _parse(value: object) -> tuple[datetime, bool]:
    """The instant, and whether the value said its zone (epoch numbers are UTC by definition)."""
    if isinstance(value, str):  # first: nearly every vendor time is an ISO string (parsed once or twice per event)
        text = value.strip()
        if not text:
            raise ValueError(f"not a time: {value!r}")
        if text.isdigit():
            return _parse(int(text))
        parsed = datetime.fromisoformat(text.replace("z", "Z"))
        if parsed.tzinfo is None:
            return floor_millis(parsed.replace(tzinfo=UTC)), False
        if parsed.tzinfo is not UTC:
            parsed = parsed.astimezone(UTC)
        # floor_millis, without building a new datetime for a time already in whole milliseconds
        return (floor_millis(parsed) if parsed.microsecond % 1000 else parsed), True
    if isinstance(value, bool):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, int | float):
        # Epoch milliseconds are 13 digits today; seconds 10. Anything past year 5138 in seconds is milliseconds.
        seconds = value / 1000 if abs(value) >= 1e11 else value
        return floor_millis(EPOCH + timedelta(seconds=seconds)), True
    raise ValueError(f"not a time: {value!r}")
