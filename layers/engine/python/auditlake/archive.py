"""The archive: gzip NDJSON objects in S3, one per (stream, window, part, event date).

Keys are deterministic and collision-free: `events/vendor=<v>/dt=<YYYY-MM-DD>/<stream>_<window>_p<part>.json.gz`.
A window is named by its original bounds, parts count up within it, and every write is conditional
(`If-None-Match: *`), so an object is written once and never replaced. Objects are encrypted with the stack's
KMS key (bucket keys on) and carry a SHA-256 checksum that S3 verifies on receipt. No `Content-Encoding: gzip`:
Athena and every S3 client must see the stored gzip bytes as they are.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
import threading
import zlib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from auditlake.errors import ArchiveConflict
from auditlake.state import Kind, StreamKey
from auditlake.timeutil import parse_time, to_compact

EVENTS_PREFIX = "events"
# Measured on Asana records (python -m auditlake_local.bench and a per-level sweep of the same lines): level 3
# compresses 9.6x at about 6 µs per event, level 6 11.5x at 15 µs, level 9 12.1x at 32 µs. The collector's budget
# is 30 µs per event in all; the 20% more bytes of level 3 cost less than a cent per million events in S3 and Athena.
GZIP_LEVEL = 3


def vendor_prefix(vendor: str) -> str:
    return f"{EVENTS_PREFIX}/vendor={vendor}/"


def object_key(vendor: str, day: date, stream_key: str, window_id: str, part: int) -> str:
    return f"{vendor_prefix(vendor)}dt={day.isoformat()}/{stream_key}_{window_id}_p{part:06d}.json.gz"


def window_id(start: datetime, end: datetime) -> str:
    return f"{to_compact(start)}-{to_compact(end)}"


def window_start(window_id: str) -> datetime:
    """The start a window (or slice) was planned with, which its id names (a cursor expiry narrows its query)."""
    compact = window_id.partition("-")[0]  # 20261122T101500123Z, as window_id writes it
    moment = datetime.strptime(compact[:15], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    return moment + timedelta(milliseconds=int(compact[15:18]))


def safe_key_part(text: str) -> str:
    """A stream id as it may appear inside an object key (and an Athena-friendly file name)."""
    return re.sub(r"[^A-Za-z0-9.-]+", "-", text).strip("-")


def stream_part(key: StreamKey) -> str:
    """What a stream's objects' names begin with: its key, S3-safe (`asana-1200...-backfill`)."""
    return safe_key_part(str(key))


class _GzipStream:
    """Compresses lines as they arrive, so a part holds compressed bytes, not events."""

    def __init__(self) -> None:
        # wbits=31: gzip container; mtime 0 and no file name keep the bytes a function of the content alone.
        self._compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
        self._chunks: list[bytes] = []

    def write(self, data: bytes) -> None:
        chunk = self._compressor.compress(data)
        if chunk:
            self._chunks.append(chunk)

    def finish(self) -> bytes:
        self._chunks.append(self._compressor.flush())
        return b"".join(self._chunks)


@dataclass
class ArchiveObject:
    key: str
    body: bytes
    records: int
    first_time: datetime
    last_time: datetime
    sha256: str = field(init=False)
    version_id: str | None = field(init=False, default=None)  # set by Archive.put: the digests name it

    def __post_init__(self) -> None:
        self.sha256 = base64.b64encode(hashlib.sha256(self.body).digest()).decode()


@dataclass
class _DayBuffer:
    stream: _GzipStream = field(default_factory=_GzipStream)
    records: int = 0
    first_time: datetime | None = None
    last_time: datetime | None = None


class PartBuilder:
    """Collects one part's records, split by event date, compressing as it goes."""

    def __init__(self, key: StreamKey, window_id: str, part: int) -> None:
        self.vendor = key.vendor
        self.stream_part = stream_part(key)
        self.window_id = window_id
        self.part = part
        self._days: dict[date, _DayBuffer] = {}
        self.records = 0

    def add(self, event_time: datetime, line: bytes) -> None:
        day = event_time.date()
        buffer = self._days.get(day)
        if buffer is None:  # not setdefault: a buffer (and its compressor's state) per event would be built and dropped
            buffer = self._days[day] = _DayBuffer()
        buffer.stream.write(line)
        buffer.records += 1
        # Comparisons, not min/max: two calls less for every event.
        if buffer.first_time is None or event_time < buffer.first_time:
            buffer.first_time = event_time
        if buffer.last_time is None or event_time > buffer.last_time:
            buffer.last_time = event_time
        self.records += 1

    def keys(self) -> list[str]:
        return [object_key(self.vendor, day, self.stream_part, self.window_id, self.part) for day in sorted(self._days)]

    def seal(self) -> list[ArchiveObject]:
        objects = []
        for day in sorted(self._days):
            buffer = self._days[day]
            assert buffer.first_time is not None and buffer.last_time is not None
            objects.append(ArchiveObject(object_key(self.vendor, day, self.stream_part, self.window_id, self.part),
                                         buffer.stream.finish(), buffer.records, buffer.first_time, buffer.last_time))
        self._days.clear()
        return objects


class Archive:
    def __init__(self, s3: Any, bucket: str, kms_key_arn: str) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.kms_key_arn = kms_key_arn
        self.objects_written = 0
        self.bytes_written = 0
        self._counting = threading.Lock()  # runs of several streams and slices count here at once

    def put(self, obj: ArchiveObject) -> str | None:
        """Writes the object once and returns its version id (also set on `obj`); raises ArchiveConflict if the
        key already exists."""
        try:
            response = self.s3.put_object(
                Bucket=self.bucket, Key=obj.key, Body=obj.body, ContentType="application/gzip",
                ServerSideEncryption="aws:kms", SSEKMSKeyId=self.kms_key_arn, BucketKeyEnabled=True,
                ChecksumAlgorithm="SHA256", ChecksumSHA256=obj.sha256, IfNoneMatch="*",
                Metadata={"records": str(obj.records)},
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"PreconditionFailed", "ConditionalRequestConflict"}:
                raise ArchiveConflict(f"s3://{self.bucket}/{obj.key} already exists") from exc
            raise
        with self._counting:
            self.objects_written += 1
            self.bytes_written += len(obj.body)
        obj.version_id = response.get("VersionId")
        return obj.version_id

    def exists(self, key: str) -> bool:
        # A listing, not a HEAD: without s3:ListBucket a HEAD of a missing key is a 403, indistinguishable
        # from a real denial; the function may list its own prefix only.
        listing = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=key, MaxKeys=1)
        return any(item["Key"] == key for item in listing.get("Contents", []))

    def stream_objects(self, key: StreamKey, days: list[date]) -> list[str]:
        """The keys of every object a stream's runs wrote (live, backfill and reconciliation alike, whatever the kind
        of `key`) in these days' partitions."""
        names = tuple(f"{stream_part(key.with_kind(kind))}_" for kind in Kind)
        keys = []
        paginator = self.s3.get_paginator("list_objects_v2")
        for day in days:
            prefix = f"{vendor_prefix(key.vendor)}dt={day.isoformat()}/"
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                keys += [item["Key"] for item in page.get("Contents", [])
                         if item["Key"].removeprefix(prefix).startswith(names)]
        return keys

    def read_events(self, key: str) -> list[tuple[str, datetime]]:
        """(event_id, event_time) of every record in an archived object."""
        body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        events = []
        for line in gzip.decompress(body).splitlines():
            if line.strip():
                record = json.loads(line)
                events.append((record["event_id"], parse_time(record["event_time"])))
        return events
