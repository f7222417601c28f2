"""The people of the simulated company, shared by every vendor simulator.

A person has one name, one email and one usual IP address in every tool, as in a real company whose staff sign
in to Asana, Ashby, ClickUp and Make with the same identity. So a query for everything one person did across
vendors finds that person's events in all four archives. Each vendor still gives the person its own id.

The roster is a fixed sequence: `roster(n)` is always the first n people, so generators that need different
numbers of people share the first ones (and `roster(n)[0]` is the same person everywhere).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

FIRST = ("Ada", "Grace", "Alan", "Linus", "Margaret", "Ken", "Barbara", "Dennis", "Frances", "Edsger", "Radia",
         "Guido", "Katherine", "Tim", "Hedy", "Donald", "Annie", "John", "Sophie", "Niklaus")
LAST = ("Lovelace", "Hopper", "Turing", "Torvalds", "Hamilton", "Thompson", "Liskov", "Ritchie", "Allen",
        "Dijkstra", "Perlman", "van Rossum", "Johnson", "Berners-Lee", "Lamarr", "Knuth", "Easley", "Backus",
        "Wilson", "Wirth")
MAX_PEOPLE = 500  # the largest organization any generator builds
DOMAIN = "example.com"
# Documentation address ranges (RFC 5737): never a real host.
_NETWORKS = ("192.0.2", "198.51.100", "203.0.113")


@dataclass(frozen=True, slots=True)
class Person:
    index: int  # place in the roster
    name: str
    email: str
    ip: str  # where the person usually works from


def _person(index: int) -> Person:
    # Every (first, last) pair appears once in the first len(FIRST) * len(LAST) people; later ones get a number.
    row, column = divmod(index, len(FIRST))
    first, last = FIRST[column], LAST[(column + row) % len(LAST)]
    cycle = index // (len(FIRST) * len(LAST))
    local = f"{first}.{last}{cycle + 1 if cycle else ''}".lower().replace(" ", "")
    ip = f"{_NETWORKS[index % len(_NETWORKS)]}.{1 + (index * 37) % 254}"
    return Person(index, f"{first} {last}", f"{local}@{DOMAIN}", ip)


@cache
def roster(size: int) -> tuple[Person, ...]:
    """The first `size` people of the company."""
    if not 0 <= size <= MAX_PEOPLE:
        raise ValueError(f"the roster holds 0 to {MAX_PEOPLE} people, not {size}")
    return tuple(_person(index) for index in range(size))
