"""Per-stream state in DynamoDB: the cursor, a version, and a lease, in one item per stream.

Item `stream = str(StreamKey)` (`<vendor>#<stream id>`; a named account's `<vendor>@<account>#<stream id>`). Every
write after the lease is taken is conditional on the version read and on still owning the lease, so a run that lost
its stream can never move the cursor. What the item holds:

- `done_until`: every window before it is complete (late events included, as far as the overlap reaches).
- `origin`: where the first window began; a backfill (its own item, `<vendor>#<stream id>#backfill`, whose
  `backfill` span runs from the date asked to the lower edge of what is collected) ends there.
- `reconciliation` (a reconciliation stream's item, `<vendor>#<stream id>#reconcile`, whose `backfill` attribute
  holds the span being re-read): when the current or last reconciliation began and completed, and what it found.
- `seen`: ids archived at or after `done_until - overlap`: the next window re-reads that span and skips them.
  At most MAX_DEDUP_IDS: for a stream busier than that within one overlap, `seen_from` is where the kept ids
  begin, and the next window starts there instead (its overlap shrinks; it never re-reads what it cannot skip).
- `window`: the window in progress: its planned end, how far its span is handed to slices (`read_until`), the
  ids it archived that the next window re-reads, and its open slices. A slice is a part of the window's span read
  with a query of its own (several are read at once, see engine.py): its bounds, the vendor's cursor, the next part
  number, the newest (or oldest) event time archived and its ids (where to resume if the vendor's cursor expires),
  ids to skip, the ids of the last page fetched (offset paging may repeat them), and its `intent`: the keys of the
  part being written, recorded before the S3 writes, so a crash between the writes and the cursor commit is
  recognised (and the written objects read back) by the next run. Items written before slices existed hold one
  window read whole, with its intent beside it; they are read as a window of one slice.
- `hint`: what the last completed window's final page told the adapter about where the next window may start
  reading (opaque JSON, see engine.py); absent in items written before hints existed, which read as none.
- `digest`: the head of the stream's digest chain and what its next digest will list (DigestState; digest.py
  writes the digests and moves the head).
"""

from __future__ import annotations

import enum
import json
import re
import threading
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from auditlake.errors import LeaseLost, StreamBusy
from auditlake.timeutil import parse_time, to_iso


class Kind(enum.Enum):
    """What a stream's state item tracks: the live collection, history before it, or a reconciliation of it."""

    LIVE = "live"
    BACKFILL = "backfill"
    RECONCILE = "reconcile"


# A named account, as the template's `<Title>Accounts` parameter allows it; "default" names the vendor's first one.
ACCOUNT_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,30}")
DEFAULT_ACCOUNT = "default"


@dataclass(frozen=True)
class StreamKey:
    """Which stream a state item, a digest chain and an archived object belong to: the vendor, the account, the
    adapter's stream id, and the kind of collection.

    `str()` is the state item's key, as stored since the first release: `<vendor>#<stream>` for the live stream of
    the vendor's default account (`account` None), and `#backfill` or `#reconcile` after it for the streams beside
    it. A named account's keys are `<vendor>@<account>#<stream>[#kind]`: an account name holds neither `@` nor
    `#`, so the default account's keys, objects and digests stay exactly as they were. `parse` is the one place
    that reads a key back. A stream id may hold any character but `#` (ClickUp's are `<workspace id>:<log class>`),
    so the key reads back unambiguously.
    """

    vendor: str
    stream: str
    kind: Kind = Kind.LIVE
    account: str | None = None  # None: the vendor's default account (its first secret)

    def __post_init__(self) -> None:
        if not isinstance(self.kind, Kind):
            raise TypeError(f"a stream key's kind is a Kind, not {self.kind!r}")
        for name, value in (("vendor", self.vendor), ("stream id", self.stream)):
            if not isinstance(value, str):
                raise TypeError(f"a stream key's {name} is a string, not {value!r}")
            if not value or "#" in value:
                raise ValueError(f"a stream key's {name} {value!r} is empty or holds '#', the key's separator")
        if "@" in self.vendor:
            raise ValueError(f"a stream key's vendor {self.vendor!r} holds '@', the account's separator")
        if self.account is not None:
            check_account(self.account)

    def __str__(self) -> str:
        owner = self.vendor if self.account is None else f"{self.vendor}@{self.account}"
        base = f"{owner}#{self.stream}"
        return base if self.kind is Kind.LIVE else f"{base}#{self.kind.value}"

    @property
    def account_name(self) -> str:
        """The account as records and operators name it: "default" for the vendor's first one."""
        return self.account or DEFAULT_ACCOUNT

    @classmethod
    def parse(cls, text: str) -> StreamKey:
        """The key whose `str()` is `text`; ValueError for anything else."""
        match text.split("#"):
            case [owner, stream]:
                kind = Kind.LIVE
            case [owner, stream, kind_text] if kind_text in (Kind.BACKFILL.value, Kind.RECONCILE.value):
                kind = Kind(kind_text)
            case _:
                raise ValueError(f"{text!r} is not a stream key (<vendor>[@<account>]#<stream>, then #backfill or "
                                 "#reconcile)")
        vendor, at, account = owner.partition("@")
        if at and account == DEFAULT_ACCOUNT:
            # The default account has one spelling, without `@`: two keys may never name one stream.
            raise ValueError(f"{text!r} is not a stream key: the default account's keys name no account")
        return cls(vendor, stream, kind, account if at else None)

    def with_kind(self, kind: Kind) -> StreamKey:
        return StreamKey(self.vendor, self.stream, kind, self.account)

    @property
    def live(self) -> StreamKey:
        return self.with_kind(Kind.LIVE)

    @property
    def backfill(self) -> StreamKey:
        return self.with_kind(Kind.BACKFILL)

    @property
    def reconcile(self) -> StreamKey:
        return self.with_kind(Kind.RECONCILE)


def check_account(name: object) -> str:
    """A named account's name, or ValueError saying what a name may be."""
    if not isinstance(name, str) or not ACCOUNT_NAME.fullmatch(name) or name == DEFAULT_ACCOUNT:
        raise ValueError(f"account name {name!r} is not one: 1 to 31 lower-case letters, digits and '-', starting "
                         f"with a letter or digit, and not {DEFAULT_ACCOUNT!r}")
    return name


_serialize = TypeSerializer().serialize
_deserialize = TypeDeserializer().deserialize


@dataclass
class Intent:
    part: int
    keys: list[str]


@dataclass
class SliceState:
    """A part of a window's span, read with a query of its own: `[start, end)` are the query's bounds (a vendor
    cursor expiry narrows them to what is left), `planned_end` where the slice was planned to end (the next slice
    begins there). Its objects are named after `id`."""

    id: str
    start: datetime
    end: datetime
    planned_end: datetime
    cursor: Any | None = None
    part: int = 1
    frontier_time: datetime | None = None
    frontier_ids: set[str] = field(default_factory=set)
    skip: set[str] = field(default_factory=set)
    # Every id of the last page fetched: offset paging shifts when the vendor inserts late events, and the next
    # page then repeats the tail of this one.
    last_page_ids: set[str] = field(default_factory=set)
    intent: Intent | None = None


@dataclass
class WindowState:
    """A window being read: `[start of its id, planned_end)`, handed to slices up to `read_until`; `slices` are
    the ones not yet read to their end, oldest first. It is complete when its whole span is handed out and every
    slice is read."""

    id: str
    planned_end: datetime  # done_until moves here when the window completes
    read_until: datetime
    slices: list[SliceState] = field(default_factory=list)
    # Ids archived by this window that the next window re-reads (id -> epoch ms), complete from `carry_from` on.
    # Kept apart from the stream's `seen`, which this window still needs whole to skip what it re-reads.
    carry: dict[str, int] = field(default_factory=dict)
    carry_from: datetime | None = None
    hint: Any | None = None  # what the final slice's last page said for the next window, kept until completion
    # The events and the seconds of span of the slices read to their end, each weighing twice the one before: the
    # density later slices are sized by (slicing.py).
    read_events: float = 0.0
    read_seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return not self.slices and self.read_until >= self.planned_end


@dataclass
class Span:
    since: datetime
    until: datetime


# -- the digest chain's state: its head and what the next digest will list (digest.py writes the digests) ---------

Covered = tuple[datetime, datetime]  # [start, end) of time the vendor was read to the end for


@dataclass(frozen=True)
class ObjectEntry:
    """One archived object as a digest lists it."""

    key: str
    version_id: str | None  # None: the bucket did not version it (S3 calls that version "null")
    sha256: str  # hex, of the stored bytes
    records: int
    first_event_time: str
    last_event_time: str

    def as_json(self) -> dict[str, Any]:
        return {"key": self.key, "version_id": self.version_id, "sha256": self.sha256, "records": self.records,
                "first_event_time": self.first_event_time, "last_event_time": self.last_event_time}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> ObjectEntry:
        return cls(key=str(value["key"]), version_id=value.get("version_id"), sha256=str(value["sha256"]),
                   records=int(value["records"]), first_event_time=str(value["first_event_time"]),
                   last_event_time=str(value["last_event_time"]))


@dataclass
class DigestState:
    """The chain's head (the last digest written) and what the next digest will hold."""

    sequence: int = 0  # of the last digest written; 0: none yet
    previous_key: str | None = None
    previous_sha256: str | None = None
    previous_at: datetime | None = None
    position: dict[str, Any] | None = None  # the stream's position as the last digest recorded it
    covered: list[Covered] = field(default_factory=list)  # windows completed since the last digest
    objects: list[ObjectEntry] = field(default_factory=list)  # objects written since the last digest

    def to_item(self) -> dict[str, Any] | None:
        if self.sequence == 0 and not self.covered and not self.objects:
            return None
        return {
            "sequence": self.sequence,
            "previous_key": self.previous_key,
            "previous_sha256": self.previous_sha256,
            "previous_at": to_iso(self.previous_at) if self.previous_at else None,
            "position": json.dumps(self.position, separators=(",", ":")) if self.position is not None else None,
            "covered": json.dumps([[to_iso(s), to_iso(e)] for s, e in self.covered], separators=(",", ":")),
            # Entries are mostly hashes and version ids: compressed, the item stays far below DynamoDB's 400 KB.
            "objects": zlib.compress(json.dumps([e.as_json() for e in self.objects],
                                                separators=(",", ":")).encode(), 6),
        }

    @classmethod
    def from_item(cls, item: dict[str, Any] | None) -> DigestState:
        if not item:
            return cls()
        objects = item.get("objects")
        raw = bytes(getattr(objects, "value", objects)) if objects else b""
        return cls(
            sequence=int(item.get("sequence", 0)),
            previous_key=item.get("previous_key"),
            previous_sha256=item.get("previous_sha256"),
            previous_at=parse_time(item["previous_at"]) if item.get("previous_at") else None,
            position=json.loads(item["position"]) if item.get("position") else None,
            covered=[(parse_time(s), parse_time(e)) for s, e in json.loads(item.get("covered") or "[]")],
            objects=[ObjectEntry.from_json(e) for e in json.loads(zlib.decompress(raw))] if raw else [],
        )


@dataclass
class StreamState:
    key: str  # the item's key as stored: str(StreamKey)
    version: int
    done_until: datetime | None = None
    origin: datetime | None = None  # where the first window began: a backfill ends there
    # The span a backfill or a reconciliation stream covers: its done_until runs from since to until.
    backfill: Span | None = None
    seen: dict[str, int] = field(default_factory=dict)  # event id -> event time in epoch ms
    seen_from: datetime | None = None  # when set, `seen` holds every archived id from here on, and no earlier
    window: WindowState | None = None
    hint: Any | None = None  # the adapter's resume hint for the next window (opaque)
    newest_event_time: datetime | None = None
    events_archived: int = 0
    status: dict[str, Any] = field(default_factory=dict)  # last run's outcome, for operators
    # A reconciliation stream's current or last reconciliation: when it began (and completed), its span, and how
    # many events it found missing from the archive.
    reconciliation: dict[str, Any] | None = None
    digest: DigestState = field(default_factory=DigestState)

    @property
    def stream_key(self) -> StreamKey:
        return StreamKey.parse(self.key)

    @property
    def intents(self) -> list[Intent]:
        """The parts being written: an open slice's intent each."""
        return [] if self.window is None else [s.intent for s in self.window.slices if s.intent is not None]


class StateStore:
    def __init__(self, dynamodb: Any, table: str) -> None:
        self.dynamodb = dynamodb
        self.table = table
        self.reads = 0
        self.writes = 0  # a lease taken (a conditional update that returns the state) counts as one write
        self._counting = threading.Lock()  # runs of several streams and slices count here at once

    @property
    def operations(self) -> int:
        return self.reads + self.writes

    def acquire(self, key: StreamKey, owner: str, lease_until: int, now: int) -> StreamState:
        """Takes the stream's lease (free, or expired) and returns its state; StreamBusy if another run holds it."""
        with self._counting:
            self.writes += 1
        try:
            item = self.dynamodb.update_item(
                TableName=self.table, Key={"stream": {"S": str(key)}},
                UpdateExpression="SET lease_owner = :me, lease_expires = :until, "
                                 "version = if_not_exists(version, :zero) + :one",
                ConditionExpression="attribute_not_exists(lease_owner) OR lease_expires <= :now",
                ExpressionAttributeValues={":me": {"S": owner}, ":until": {"N": str(lease_until)},
                                           ":now": {"N": str(now)}, ":zero": {"N": "0"}, ":one": {"N": "1"}},
                ReturnValues="ALL_NEW",
            )["Attributes"]
        except ClientError as exc:
            if _condition_failed(exc):
                raise StreamBusy(f"{key} is being collected by another run") from exc
            raise
        return _from_item({k: _deserialize(v) for k, v in item.items()})

    def save(self, state: StreamState, owner: str, lease_until: int, *, release: bool = False) -> None:
        """Writes the whole state if it is still ours at the version we hold; renews or releases the lease."""
        item = _to_item(state)
        item["version"] = state.version + 1
        if not release:
            item["lease_owner"] = owner
            item["lease_expires"] = lease_until
        with self._counting:
            self.writes += 1
        try:
            self.dynamodb.put_item(
                TableName=self.table, Item={k: _serialize(v) for k, v in item.items() if v is not None},
                ConditionExpression="version = :version AND lease_owner = :me",
                ExpressionAttributeValues={":version": {"N": str(state.version)}, ":me": {"S": owner}},
            )
        except ClientError as exc:
            if _condition_failed(exc):
                raise LeaseLost(f"{state.key} changed under this run (version {state.version}); nothing more "
                                "was written") from exc
            raise
        state.version += 1

    def scan(self) -> list[StreamState]:
        """Every stream's state, for operators (no lease; a handful of items, read consistently)."""
        states = []
        for page in self.dynamodb.get_paginator("scan").paginate(TableName=self.table, ConsistentRead=True):
            with self._counting:
                self.reads += 1
            states += [_from_item({k: _deserialize(v) for k, v in item.items()}) for item in page["Items"]]
        return sorted(states, key=lambda state: state.key)

    def read(self, key: StreamKey) -> StreamState | None:
        """The stored state, for operators and tests (no lease)."""
        with self._counting:
            self.reads += 1
        item = self.dynamodb.get_item(TableName=self.table, Key={"stream": {"S": str(key)}}, ConsistentRead=True)
        if "Item" not in item:
            return None
        return _from_item({k: _deserialize(v) for k, v in item["Item"].items()})


def _condition_failed(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def pack_ids(ids: dict[str, int] | set[str]) -> bytes:
    """Id sets are stored compressed: a busy overlap holds thousands of ids and an item holds 400 KB."""
    lines = (f"{i}\t{t}" for i, t in sorted(ids.items())) if isinstance(ids, dict) else sorted(ids)
    return zlib.compress("\n".join(lines).encode(), 6)


def _unpack(data: Any) -> list[str]:
    raw = zlib.decompress(bytes(data.value if isinstance(data, Binary) else data)).decode()
    return raw.split("\n") if raw else []


def _unpack_times(data: Any) -> dict[str, int]:
    times: dict[str, int] = {}
    for line in _unpack(data) if data else []:
        event_id, _, millis = line.rpartition("\t")
        times[event_id] = int(millis)
    return times


def _to_item(state: StreamState) -> dict[str, Any]:
    window = state.window
    return {
        "stream": state.key,
        "done_until": to_iso(state.done_until) if state.done_until else None,
        "origin": to_iso(state.origin) if state.origin else None,
        "backfill": None if state.backfill is None else {"since": to_iso(state.backfill.since),
                                                         "until": to_iso(state.backfill.until)},
        "seen": pack_ids(state.seen) if state.seen else None,
        "seen_from": to_iso(state.seen_from) if state.seen_from else None,
        "window": None if window is None else {
            "id": window.id,
            "planned_end": to_iso(window.planned_end),
            "read_until": to_iso(window.read_until),
            "slices": [_slice_item(s) for s in window.slices],
            "carry": pack_ids(window.carry),
            "carry_from": to_iso(window.carry_from) if window.carry_from else None,
            "hint": None if window.hint is None else json.dumps(window.hint),
            "read_events": Decimal(str(round(window.read_events, 3))),
            "read_seconds": Decimal(str(round(window.read_seconds, 3))),
        },
        "hint": None if state.hint is None else json.dumps(state.hint),
        "newest_event_time": to_iso(state.newest_event_time) if state.newest_event_time else None,
        "events_archived": state.events_archived,
        "status": json.loads(json.dumps(state.status), parse_float=Decimal) if state.status else None,
        "reconciliation": json.loads(json.dumps(state.reconciliation), parse_float=Decimal)
        if state.reconciliation else None,
        "digest": state.digest.to_item(),
    }


def _from_item(item: dict[str, Any]) -> StreamState:
    window = item.get("window")
    seen = _unpack_times(item.get("seen"))
    return StreamState(
        key=item["stream"],
        version=int(item.get("version", 0)),
        done_until=parse_time(item["done_until"]) if item.get("done_until") else None,
        origin=parse_time(item["origin"]) if item.get("origin") else None,
        backfill=Span(parse_time(item["backfill"]["since"]), parse_time(item["backfill"]["until"]))
        if item.get("backfill") else None,
        seen=seen,
        seen_from=parse_time(item["seen_from"]) if item.get("seen_from") else None,
        window=None if not window else _window(window, item.get("intent")),
        hint=json.loads(item["hint"]) if item.get("hint") else None,
        newest_event_time=parse_time(item["newest_event_time"]) if item.get("newest_event_time") else None,
        events_archived=int(item.get("events_archived", 0)),
        status=_plain(item.get("status") or {}),
        reconciliation=_plain(item["reconciliation"]) if item.get("reconciliation") else None,
        digest=DigestState.from_item(item.get("digest")),
    )


def _slice_item(s: SliceState) -> dict[str, Any]:
    return {
        "id": s.id,
        "start": to_iso(s.start),
        "end": to_iso(s.end),
        "planned_end": to_iso(s.planned_end),
        "cursor": json.dumps(s.cursor),
        "part": s.part,
        "frontier_time": to_iso(s.frontier_time) if s.frontier_time else None,
        "frontier_ids": pack_ids(s.frontier_ids),
        "skip": pack_ids(s.skip),
        "last_page_ids": pack_ids(s.last_page_ids),
        "intent": None if s.intent is None else {"part": s.intent.part, "keys": s.intent.keys},
    }


def _slice(item: dict[str, Any], intent: dict[str, Any] | None) -> SliceState:
    return SliceState(
        id=item["id"],
        start=parse_time(item["start"]),
        end=parse_time(item["end"]),
        planned_end=parse_time(item["planned_end"]),
        cursor=json.loads(item["cursor"]),
        part=int(item["part"]),
        frontier_time=parse_time(item["frontier_time"]) if item.get("frontier_time") else None,
        frontier_ids=set(_unpack(item["frontier_ids"])),
        skip=set(_unpack(item["skip"])),
        last_page_ids=set(_unpack(item["last_page_ids"])) if item.get("last_page_ids") else set(),
        intent=None if not intent else Intent(part=int(intent["part"]), keys=list(intent["keys"])),
    )


def _window(item: dict[str, Any], legacy_intent: dict[str, Any] | None) -> WindowState:
    """A stored window; one written before slices existed (its query bounds and cursor its own, its intent beside
    it in the item) is a window of one slice, named as the window was."""
    planned_end = parse_time(item["planned_end"])
    if "slices" in item:
        slices = [_slice(s, s.get("intent")) for s in item["slices"]]
        read_until = parse_time(item["read_until"])
    else:
        slices = [_slice(item, legacy_intent)]
        read_until = planned_end
    return WindowState(id=item["id"], planned_end=planned_end, read_until=read_until, slices=slices,
                       carry=_unpack_times(item.get("carry")),
                       carry_from=parse_time(item["carry_from"]) if item.get("carry_from") else None,
                       hint=json.loads(item["hint"]) if item.get("hint") else None,
                       read_events=float(item.get("read_events") or 0),
                       read_seconds=float(item.get("read_seconds") or 0))


def _plain(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal; status fields are plain JSON for summaries."""
    return json.loads(json.dumps(value, default=lambda d: int(d) if d == int(d) else float(d)))

