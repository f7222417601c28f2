"""UTC time helpers: one clock for the engine (tests may replace `now`) and one record time format."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MILLISECOND = timedelta(milliseconds=1)


def now() -> datetime:
    return datetime.now(UTC)


def to_iso(moment: datetime) -> str:
    """`2026-11-22T10:15:00.123Z`: UTC, milliseconds, `Z` — the format every record's event_time uses."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


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
    if isinstance(value, bool):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, int | float):
        # Epoch milliseconds are 13 digits today; seconds 10. Anything past year 5138 in seconds is milliseconds.
        seconds = value / 1000 if abs(value) >= 1e11 else value
        return floor_millis(EPOCH + timedelta(seconds=seconds))
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if text.isdigit():
            return parse_time(int(text))
        parsed = datetime.fromisoformat(text.replace("z", "Z"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return floor_millis(parsed.astimezone(UTC))
    raise ValueError(f"not a time: {value!r}")


def parse_event_time(value: object, field: str) -> datetime:
    """A vendor event's time, strictly: ISO 8601 with a zone, or epoch seconds/milliseconds. A ValueError names the
    field for anything else, a zoneless ISO time included (taking it as UTC would be a guess)."""
    try:
        moment = parse_time(value)
    except (ValueError, OverflowError):
        raise ValueError(f"{field} is {str(value)[:60]!r}, not a time (ISO 8601 with a zone, or epoch ms)") from None
    if isinstance(value, str) and not value.strip().isdigit() \
            and datetime.fromisoformat(value.strip().replace("z", "Z")).tzinfo is None:
        raise ValueError(f"{field} is {value!r}, an ISO 8601 time without a zone: taking it as UTC would be a guess")
    return moment
