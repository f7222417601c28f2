"""Digests: a signed chain per stream that lets an auditor prove nothing was changed, deleted or missed.

After each run that archived anything, and at least hourly when a stream is idle, the stream writes a digest:
`digests/vendor=<vendor>/stream=<stream key>/<sequence, 10 digits>.json`. It lists every object written since the
previous digest (key, version id, SHA-256 of the stored bytes, record count, first and last event time), the
windows completed since (`covered`: spans the vendor was read to the end for), the stream's position before and
after, and the previous digest's key and SHA-256, so the digests of a stream form one unbroken chain. A backfill
(`<vendor>#<stream>#backfill`, a StreamKey of kind BACKFILL) is a stream of its own, with its own chain. The covered
spans of a stream's chains tile time from where collection began: a hole between them is time nobody read.

Signing. The body is canonical JSON. The digest is signed by an asymmetric KMS key (ECC_NIST_P256,
ECDSA_SHA_256, MessageType RAW) over a short canonical string:

    auditlake-digest/1 \\n <digest key> \\n <SHA-256 hex of the body> \\n <previous digest's SHA-256 hex, or ->

and the signature travels in the object's metadata (`x-amz-meta-signature`), as CloudTrail does: the SHA-256 a
later digest links to is then simply that of the stored bytes, and anyone holding the public key verifies offline.

Crash protocol. What the next digest will hold accumulates in the stream's state item (`digest`), written with
the commits the engine makes anyway: an object's entry is added in the same write that commits its part (or
that recovers it after a crash), a window's span in the write that completes it. At most MAX_PENDING_OBJECTS
entries wait there: a run that writes more seals a digest early, so the item stays small. Sealing digest n:

1. build the body from the state; sign it with KMS;
2. write it at its deterministic key (the sequence number comes from the state), conditionally
   (`If-None-Match: *`): a retry can neither overwrite it nor write a second digest n;
3. the next state write records n as the chain's head and empties what it listed.

If a run dies between 2 and 3, the next run's write of digest n fails its condition: it reads the digest that is
there, checks that it continues this chain (same stream, sequence and previous digest), and adopts it: what it
lists and covers leaves the pending state, and only the rest goes into digest n + 1. Nothing is rewritten, so
the chain can neither fork nor skip.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import threading
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from auditlake.archive import safe_key_part, window_start
from auditlake.errors import AuditlakeError
from auditlake.state import Covered, ObjectEntry, StreamKey, StreamState, WindowState
from auditlake.timeutil import parse_time, to_iso

if TYPE_CHECKING:
    from auditlake.archive import ArchiveObject

# ObjectEntry (what a digest lists) and the chain's state live with the stream's state (state.py); ObjectEntry is
# named here too, where readers of digests look for it.
__all__ = [
    "DIGESTS_PREFIX", "FORMAT", "IDLE_DIGEST_INTERVAL", "MAX_ADOPTIONS", "MAX_PENDING_OBJECTS", "METADATA_ALGORITHM",
    "METADATA_FORMAT", "METADATA_KEY", "METADATA_SIGNATURE", "SIGNING_ALGORITHM", "DigestError", "DigestWriter",
    "ObjectEntry", "add_span", "build_body", "canonical_json", "digest_key", "entry_of", "entry_of_stored",
    "position_of", "stream_prefix", "string_to_sign",
]

FORMAT = "auditlake-digest/1"
DIGESTS_PREFIX = "digests"
SIGNING_ALGORITHM = "ECDSA_SHA_256"
# Idle streams write a digest when the last one is this old: with any schedule period up to 5 minutes, a digest
# arrives at least hourly.
IDLE_DIGEST_INTERVAL = timedelta(minutes=55)
# Objects waiting for the next digest in the state item: about 80 bytes each compressed, so at most ~16 KB.
MAX_PENDING_OBJECTS = 200
# Runs that died between writing a digest and recording it leave at most one unrecorded digest; a run that lost its
# lease could add one more. Beyond that, something other than the collectors writes digests.
MAX_ADOPTIONS = 3

METADATA_SIGNATURE = "signature"
METADATA_ALGORITHM = "signing-algorithm"
METADATA_KEY = "signing-key"
METADATA_FORMAT = "digest-format"


class DigestError(AuditlakeError):
    """A digest could not be written, or what is at its key does not continue the stream's chain."""


def entry_of(obj: ArchiveObject) -> ObjectEntry:
    """The entry of an object this run wrote (its version id set by Archive.put)."""
    return ObjectEntry(key=obj.key, version_id=obj.version_id, sha256=base64.b64decode(obj.sha256).hex(),
                       records=obj.records, first_event_time=to_iso(obj.first_time),
                       last_event_time=to_iso(obj.last_time))


def entry_of_stored(key: str, body: bytes, version_id: str | None) -> ObjectEntry:
    """The entry of an object read back from the archive (written by a run that died before committing it)."""
    times = [parse_time(json.loads(line)["event_time"]) for line in gzip.decompress(body).splitlines()
             if line.strip()]
    if not times:
        raise DigestError(f"{key} holds no records; an archived object always holds at least one")
    return ObjectEntry(key=key, version_id=version_id, sha256=hashlib.sha256(body).hexdigest(), records=len(times),
                       first_event_time=to_iso(min(times)), last_event_time=to_iso(max(times)))


def add_span(spans: list[Covered], start: datetime, end: datetime) -> list[Covered]:
    """`spans` with [start, end) added, merged where they touch or overlap, in order."""
    merged: list[Covered] = []
    for span_start, span_end in sorted([*spans, (start, end)]):
        if merged and span_start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], span_end))
        else:
            merged.append((span_start, span_end))
    return merged


def position_of(state: StreamState) -> dict[str, Any]:
    """Where the stream stands: everything before `done_until` is collected; an open window is paged up to its
    cursor and has written the parts before `part`."""
    window = state.window
    return {
        "done_until": to_iso(state.done_until) if state.done_until else None,
        "window": None if window is None else {
            "id": window.id, "read_until": to_iso(window.read_until),
            "slices": [{"id": s.id, "part": s.part, "cursor": s.cursor} for s in window.slices]},
    }


# -- keys, bodies, signatures ---------------------------------------------------------------------------------------


def stream_prefix(key: StreamKey) -> str:
    """Where a stream's digests are: `digests/vendor=<vendor>/stream=<its key, S3-safe>/`."""
    return f"{DIGESTS_PREFIX}/vendor={key.vendor}/stream={safe_key_part(str(key))}/"


def digest_key(key: StreamKey, sequence: int) -> str:
    return f"{stream_prefix(key)}{sequence:010d}.json"


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def string_to_sign(key: str, body_sha256: str, previous_sha256: str | None) -> bytes:
    """What the KMS key signs (MessageType RAW): short, and enough to bind the body, its place and its chain."""
    return "\n".join([FORMAT, key, body_sha256, previous_sha256 or "-"]).encode()


def build_body(state: StreamState, sequence: int, now: datetime) -> dict[str, Any]:
    digest = state.digest
    stream_key = state.stream_key
    objects = sorted(digest.objects, key=lambda e: e.key)
    return {
        "format": FORMAT,
        "key": digest_key(stream_key, sequence),
        "stream": str(stream_key),
        "vendor": stream_key.vendor,
        "sequence": sequence,
        "created_at": to_iso(now),
        "previous": None if digest.previous_key is None else {"key": digest.previous_key,
                                                               "sha256": digest.previous_sha256},
        "cursor_before": digest.position,
        "cursor_after": position_of(state),
        "covered": [[to_iso(s), to_iso(e)] for s, e in digest.covered],
        "origin": to_iso(state.origin) if state.origin else None,
        "backfill": None if state.backfill is None else {"since": to_iso(state.backfill.since),
                                                         "until": to_iso(state.backfill.until)},
        "objects": [e.as_json() for e in objects],
        "records": sum(e.records for e in objects),
    }


# -- the writer -------------------------------------------------------------------------------------------------------


class DigestWriter:
    """Seals a stream's pending objects and spans into the next digest of its chain."""

    def __init__(self, s3: Any, kms: Any, bucket: str, archive_key_arn: str, signing_key_arn: str) -> None:
        self.s3 = s3
        self.kms = kms
        self.bucket = bucket
        self.archive_key_arn = archive_key_arn
        self.signing_key_arn = signing_key_arn
        self.written = 0
        self.adopted = 0
        self.signatures = 0
        self._counting = threading.Lock()  # the streams of an account run at once

    # -- what the engine records as it goes ------------------------------------------------------------------

    @staticmethod
    def record(state: StreamState, entry: ObjectEntry) -> None:
        state.digest.objects = [e for e in state.digest.objects if e.key != entry.key] + [entry]

    @staticmethod
    def record_window(state: StreamState, window: WindowState) -> None:
        state.digest.covered = add_span(state.digest.covered, window_start(window.id), window.planned_end)

    def read_stored(self, key: str) -> ObjectEntry:
        response = self.s3.get_object(Bucket=self.bucket, Key=key)
        return entry_of_stored(key, response["Body"].read(), response.get("VersionId"))

    @staticmethod
    def due(state: StreamState, now: datetime) -> bool:
        digest = state.digest
        return bool(digest.objects) or digest.previous_at is None or now - digest.previous_at >= IDLE_DIGEST_INTERVAL

    @staticmethod
    def full(state: StreamState) -> bool:
        return len(state.digest.objects) >= MAX_PENDING_OBJECTS

    # -- sealing ---------------------------------------------------------------------------------------------

    def seal(self, state: StreamState, now: datetime) -> str | None:
        """Writes the next digest (adopting one a dead run left), updating `state` for the caller to save.
        Returns the key of the digest written, or None when an adopted digest left nothing due."""
        for _ in range(MAX_ADOPTIONS + 1):
            sequence = state.digest.sequence + 1
            body = canonical_json(build_body(state, sequence, now))
            key = digest_key(state.stream_key, sequence)
            sha256 = hashlib.sha256(body).hexdigest()
            signature = self._sign(string_to_sign(key, sha256, state.digest.previous_sha256))
            if self._put(key, body, signature):
                self._advance(state, key, sha256, sequence, now, position_of(state))
                with self._counting:
                    self.written += 1
                return key
            self._adopt(state, key, sequence)
            if not self.due(state, now):
                return None
        raise DigestError(f"{state.key}: more than {MAX_ADOPTIONS} digests were found written ahead of the chain's "
                          "recorded head; something other than this stream's collector writes its digests")

    def _sign(self, message: bytes) -> str:
        try:
            response = self.kms.sign(KeyId=self.signing_key_arn, Message=message, MessageType="RAW",
                                     SigningAlgorithm=SIGNING_ALGORITHM)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise DigestError(f"KMS refused to sign a digest with {self.signing_key_arn}: {error.get('Code')}: "
                              f"{error.get('Message')}") from exc
        with self._counting:
            self.signatures += 1
        return base64.b64encode(response["Signature"]).decode()

    def _put(self, key: str, body: bytes, signature: str) -> bool:
        """Writes the digest once; False if something is at its key already."""
        try:
            self.s3.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentType="application/json",
                ServerSideEncryption="aws:kms", SSEKMSKeyId=self.archive_key_arn, BucketKeyEnabled=True,
                ChecksumAlgorithm="SHA256", ChecksumSHA256=base64.b64encode(hashlib.sha256(body).digest()).decode(),
                IfNoneMatch="*",
                Metadata={METADATA_SIGNATURE: signature, METADATA_ALGORITHM: SIGNING_ALGORITHM,
                          METADATA_KEY: self.signing_key_arn, METADATA_FORMAT: FORMAT},
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"PreconditionFailed", "ConditionalRequestConflict"}:
                return False
            raise
        return True

    def _adopt(self, state: StreamState, key: str, sequence: int) -> None:
        """Takes the digest at `key` (written by a run that died before recording it) as the chain's head."""
        try:
            stored = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
                raise DigestError(f"{key} is being written by another run; the next run adopts it") from exc
            raise
        try:
            found = json.loads(stored)
            previous = found.get("previous") or {}
            continues = (found.get("stream") == state.key and found.get("sequence") == sequence
                         and previous.get("key") == state.digest.previous_key
                         and previous.get("sha256") == state.digest.previous_sha256)
            listed = {str(entry["key"]) for entry in found["objects"]}
            covered_to = max((parse_time(end) for _, end in found["covered"]), default=None)
            created_at = parse_time(found["created_at"])
            position = found["cursor_after"]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DigestError(f"{key} exists but is not a digest this collector wrote ({exc}); the chain of "
                              f"{state.key} needs an operator") from exc
        if not continues:
            raise DigestError(f"{key} exists but does not continue the chain of {state.key} (its previous digest "
                              f"is {previous.get('key')}, the chain's head is {state.digest.previous_key}); the "
                              "chain needs an operator")
        digest = state.digest
        digest.objects = [e for e in digest.objects if e.key not in listed]
        if covered_to is not None:
            digest.covered = [(max(start, covered_to), end) for start, end in digest.covered if end > covered_to]
        self._advance(state, key, hashlib.sha256(stored).hexdigest(), sequence, created_at, position,
                      keep_pending=True)
        with self._counting:
            self.adopted += 1

    @staticmethod
    def _advance(state: StreamState, key: str, sha256: str, sequence: int, at: datetime, position: dict[str, Any],
                 *, keep_pending: bool = False) -> None:
        digest = state.digest
        digest.sequence = sequence
        digest.previous_key = key
        digest.previous_sha256 = sha256
        digest.previous_at = at
        digest.position = position
        if not keep_pending:
            digest.objects = []
            digest.covered = []
