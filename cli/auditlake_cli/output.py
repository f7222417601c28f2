"""How the commands print: durations, instants, aligned tables and a progress bar."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO


def duration(seconds: float | None) -> str:
    """`4m 10s`, `2h 5m`, `3d 4h`: the two largest units."""
    if seconds is None:
        return "-"
    total = int(max(0.0, seconds))
    parts = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        if total >= size or (unit == "s" and not parts):
            parts.append(f"{total // size}{unit}")
            total %= size
        if len(parts) == 2:
            break
    return " ".join(parts)


def moment(value: datetime | None, *, millis: bool = False) -> str:
    """An instant as ISO 8601 UTC, to the second (what a terminal needs) or the millisecond (what records hold).
    A naive time is UTC, as Athena's timestamps are."""
    if value is None:
        return "-"
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    fraction = f".{value.microsecond // 1000:03d}" if millis else ""
    return value.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]], *, max_width: int | None = None) -> str:
    """Aligned columns; numbers right-aligned, thousands separated; NULL for missing values; values longer than
    `max_width` shortened with an ellipsis."""
    def cell(value: Any) -> str:
        if value is None:
            return "NULL"
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, int):
            return f"{value:,}"
        if isinstance(value, float):
            return f"{value:,.2f}"
        if isinstance(value, datetime):
            return moment(value, millis=True)
        text = str(value).replace("\n", " ")
        return text if max_width is None or len(text) <= max_width else text[: max_width - 1] + "…"

    texts = [[cell(v) for v in row] for row in rows]
    numeric = [bool(rows) and all(isinstance(row[i], int | float) and not isinstance(row[i], bool)
                                  for row in rows if row[i] is not None) and any(row[i] is not None for row in rows)
               for i in range(len(columns))]
    widths = [max([len(str(c)), *(len(t[i]) for t in texts)]) for i, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if numeric[i] else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths,
                                                                                                strict=True)))

    out = [line([str(c).upper() for c in columns]).rstrip()]
    out += [line(t).rstrip() for t in texts]
    return "\n".join(out)


class Progress:
    """A plain-text progress bar: redrawn in place on a terminal, one line per update otherwise (logs, CI)."""

    WIDTH = 30

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = bool(getattr(out, "isatty", lambda: False)())
        self._drawn = 0

    def update(self, fraction: float, text: str) -> None:
        fraction = min(1.0, max(0.0, fraction))
        filled = round(fraction * self.WIDTH)
        line = f"[{'#' * filled}{'-' * (self.WIDTH - filled)}] {fraction * 100:5.1f}%  {text}"
        if self.tty:
            self.out.write("\r" + line.ljust(self._drawn))
            self._drawn = len(line)
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def close(self) -> None:
        if self.tty and self._drawn:
            self.out.write("\n")
            self.out.flush()
            self._drawn = 0


