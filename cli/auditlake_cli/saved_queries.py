"""The stack's saved queries (Athena named queries), as the command line names and runs them.

A saved query's parameters are the `?` placeholders of its SQL, named in order by its description's last sentence,
"Parameters (in order): first_day, last_day." Athena takes their values as SQL literals.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from auditlake_cli.errors import CliError

_PARAMETERS = re.compile(r"Parameters \(in order\): ([a-z_]+(?:, [a-z_]+)*)\.")


@dataclass(frozen=True)
class SavedQuery:
    key: str  # the name as a command-line word: "Failed logins" -> failed-logins
    name: str
    description: str
    sql: str
    parameters: tuple[str, ...]  # names of the `?` placeholders, in order, from the description

    @classmethod
    def of(cls, name: str, description: str, sql: str) -> SavedQuery:
        description = " ".join(description.split())
        match = _PARAMETERS.search(description)
        return cls(key=key_of(name), name=name, description=description, sql=sql.strip(),
                   parameters=tuple(match[1].split(", ")) if match else ())

    @property
    def summary(self) -> str:
        """The description without its parameter notes, which a table's parameters column shows."""
        return self.description.partition(" Parameters (in order):")[0]


def key_of(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def find(queries: Mapping[str, SavedQuery], name: str) -> SavedQuery | None:
    """A saved query by key (failed-logins) or by its name as the console shows it (Failed logins)."""
    return next((q for q in queries.values() if name == q.key or name.lower() == q.name.lower()), None)


def bind(query: SavedQuery, parameters: Mapping[str, str]) -> list[str]:
    """The query's execution parameters, in order, from NAME=VALUE pairs; every one given, none unknown."""
    missing = [p for p in query.parameters if p not in parameters]
    if missing:
        raise CliError(f"the saved query {query.key} needs {' '.join(f'--param {p}=…' for p in missing)}")
    unknown = sorted(set(parameters) - set(query.parameters))
    if unknown:
        raise CliError(f"the saved query {query.key} has no parameter {unknown[0]}; it takes "
                       f"{', '.join(query.parameters) or 'none'}")
    return [literal(parameters[p]) for p in query.parameters]


def literal(value: str) -> str:
    """Athena's execution parameters are SQL literals: a string is quoted (unless it already is)."""
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value
    return "'" + value.replace("'", "''") + "'"
