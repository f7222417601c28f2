"""`auditlake verify`: proves from the digests that the archive is whole, or names what is not.

For each stream selected (and its backfill and reconciliation), it walks the digest chain (digest.py) from its
first digest to its last and checks:

- every digest's signature, with the signing key's public key (fetched from KMS, or a file for offline checks);
- every link: digest n names digest n - 1's key and the SHA-256 of its stored bytes, sequence numbers run
  1, 2, 3, … without a hole, and each digest key holds one version (a second one is a fork);
- that the chain ends where the stream's state says it does (when the state table is readable), and that a live
  chain's last digest is recent (a stream writes one at least hourly);
- every object a digest lists (whose events fall in the range): the version listed is still the one S3 serves,
  and its bytes have the SHA-256 and the record count the digest says;
- that every object under `events/` is listed by a digest (or, by the state, waiting for the next one);
- that the spans the digests cover leave no gap over the range, from where collection (or a backfill) began.

Each problem is one finding, naming the object or digest. What it proves: every object a digest lists is intact,
nothing was added or removed unseen, and every instant of the covered time was read from the vendor to the end
by a collector holding the signing key. What it cannot prove: that the vendor returned every event (an event
published later than the overlap is missed by the live collection, and found by the next reconciliation only within
its span, as the README says), or anything about a time no digest covers.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import json
import re
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import FlexibleChecksumError
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from auditlake import digest as digests
from auditlake.archive import EVENTS_PREFIX, safe_key_part
from auditlake.state import Kind, StreamKey, StreamState
from auditlake.timeutil import parse_time, to_iso

MODIFIED = "modified object"
DELETED = "deleted object"
UNLISTED = "unlisted object"
BROKEN = "broken chain"
FORKED = "forked chain"
BAD_SIGNATURE = "bad signature"
GAP = "gap"
KINDS = (MODIFIED, DELETED, UNLISTED, BROKEN, FORKED, BAD_SIGNATURE, GAP)

# A live stream writes a digest at least hourly; one older than this means later digests are gone or the
# collector has stopped.
STALE_AFTER = timedelta(hours=2)
READERS = 8  # objects and digests are read in parallel
DIGEST_NAME = re.compile(r"^(?P<sequence>\d{10})\.json$")
OBJECT_NAME = re.compile(r"^(?P<stream>.+)_(?P<window>\d{8}T\d{9}Z-\d{8}T\d{9}Z)_p(?P<part>\d+)\.json\.gz$")
Span = tuple[datetime, datetime]


class VerifyError(Exception):
    """Verification could not run at all (no key, no bucket); the message is one sentence for the operator."""


@dataclass(frozen=True)
class Finding:
    kind: str
    subject: str  # the object or digest, by key (and version where it matters)
    detail: str

    def line(self) -> str:
        return f"{self.kind}: {self.subject}: {self.detail}"


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    chains: list[str] = field(default_factory=list)  # stream keys whose chains were walked
    digests: int = 0
    signatures_valid: int = 0
    objects_listed: int = 0  # by the digests, in the range
    objects_checked: int = 0  # read and hashed
    records: int = 0  # in the objects checked
    pending: int = 0  # written since their stream's last digest (the state says so); the next digest lists them
    covered: dict[str, list[Span]] = field(default_factory=dict)  # per stream (backfill included)
    since: datetime | None = None
    until: datetime | None = None

    @property
    def clean(self) -> bool:
        return not self.findings

    def add(self, kind: str, subject: str, detail: str) -> None:
        self.findings.append(Finding(kind, subject, detail))

    def summary(self) -> str:
        spans = [span for spans in self.covered.values() for span in spans]
        covered = "nothing covered" if not spans else \
            f"covered {to_iso(min(s for s, _ in spans))} .. {to_iso(max(e for _, e in spans))}"
        counts = ", ".join(f"{sum(f.kind == kind for f in self.findings)} {kind}" for kind in KINDS
                           if any(f.kind == kind for f in self.findings))
        return (f"{len(self.chains)} chain(s), {self.digests} digests ({self.signatures_valid} signatures valid), "
                f"{self.objects_checked} objects with {self.records:,} records checked against "
                f"{self.objects_listed} listed, {self.pending} waiting for their stream's next digest; {covered}; "
                + (f"{len(self.findings)} finding(s): {counts}" if self.findings else "no findings"))


# -- the public key -----------------------------------------------------------------------------------------------


def load_public_key(data: bytes, source: str) -> ec.EllipticCurvePublicKey:
    """The signing key's public half, PEM or DER (what `aws kms get-public-key` returns, base64-decoded)."""
    try:
        key = serialization.load_pem_public_key(data) if data.lstrip().startswith(b"-----BEGIN") \
            else serialization.load_der_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise VerifyError(f"{source} is not a public key in PEM or DER ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise VerifyError(f"{source} is not an ECC_NIST_P256 public key, which the digests are signed with")
    return key


def signature_valid(key: ec.EllipticCurvePublicKey, signature: str | None, message: bytes) -> bool:
    if not signature:
        return False
    try:
        key.verify(base64.b64decode(signature, validate=True), message, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


# -- what S3 holds --------------------------------------------------------------------------------------------------


@dataclass
class Versions:
    """Every version and delete marker S3 keeps of one key."""

    versions: dict[str, dict[str, Any]] = field(default_factory=dict)  # version id -> listing entry
    markers: list[dict[str, Any]] = field(default_factory=list)

    @property
    def latest(self) -> str | None:
        """The version a plain GET serves; None when a delete marker hides the key."""
        return next((v for v, item in self.versions.items() if item.get("IsLatest")), None)


def list_versions(s3: Any, bucket: str, prefix: str) -> dict[str, Versions]:
    found: dict[str, Versions] = defaultdict(Versions)
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Versions", []):
            found[item["Key"]].versions[str(item.get("VersionId") or "null")] = item
        for item in page.get("DeleteMarkers", []):
            found[item["Key"]].markers.append(item)
    return dict(found)


def list_prefixes(s3: Any, bucket: str, prefix: str) -> list[str]:
    prefixes = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    return prefixes


# -- chains -------------------------------------------------------------------------------------------------------


@dataclass
class DigestVersion:
    key: str
    version_id: str
    sha256: str
    body: dict[str, Any] | None  # None: not a readable digest
    signed: bool
    written: datetime | None  # when S3 stored this version


@dataclass
class Chain:
    prefix: str
    stream: str | None = None  # its stream key, from its digests or the state
    digests: list[DigestVersion] = field(default_factory=list)  # the authentic member at each sequence number
    head: DigestVersion | None = None


def chain_prefixes(s3: Any, bucket: str, vendors: Iterable[str] | None) -> list[str]:
    vendor_prefixes = list_prefixes(s3, bucket, f"{digests.DIGESTS_PREFIX}/") if vendors is None else \
        [f"{digests.DIGESTS_PREFIX}/vendor={vendor}/" for vendor in vendors]
    return [p for vendor_prefix in vendor_prefixes for p in list_prefixes(s3, bucket, vendor_prefix)]


class Verifier:
    """Verifies one bucket's digests and objects. `states` are the streams' state items (None: not readable, so
    the chains' heads and the objects awaiting a digest are unknown); `now` is the clock staleness is judged by;
    `collected` says whether a stream is still collected (None: every stream is): the live chain of an account
    removed from the stack ends where its collection stopped, so its age is no finding."""

    def __init__(self, s3: Any, bucket: str, public_key: ec.EllipticCurvePublicKey, *,
                 states: Callable[[], list[StreamState]] | None = None,
                 now: Callable[[], datetime] | None = None, readers: int = READERS,
                 collected: Callable[[StreamKey], bool] | None = None) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.public_key = public_key
        self.states = states
        self.now = now
        self.readers = readers
        self.collected = collected

    def run(self, streams: list[str] | None = None, since: datetime | None = None,
            until: datetime | None = None) -> Report:
        """Verifies the chains of `streams` (vendor names or stream keys; None: all) over [since, until)."""
        report = Report(since=since, until=until)
        vendors = None if not streams else sorted({_vendor_of(s) for s in streams})
        objects = self._list_objects(vendors, since, until)
        states = {state.key: state for state in self.states()} if self.states is not None else None
        prefixes = set(chain_prefixes(self.s3, self.bucket, vendors))
        for state in (states or {}).values():
            prefixes.add(digests.stream_prefix(state.stream_key))  # a chain whose every digest is gone still counts
        selected = [p for p in sorted(prefixes) if self._selected(p, streams)]
        with ThreadPoolExecutor(self.readers) as pool:
            chains = [self._walk(prefix, states, report, pool) for prefix in selected]
            report.chains = [chain.stream or chain.prefix for chain in chains]
            self._check_coverage(chains, report)
            self._check_objects(chains, objects, states, streams, report, pool)
        return report

    @staticmethod
    def _selected(prefix: str, streams: list[str] | None) -> bool:
        if not streams:
            return True
        for stream in streams:
            if "#" not in stream:
                if prefix.startswith(f"{digests.DIGESTS_PREFIX}/vendor={stream}/"):
                    return True
            elif prefix in {digests.stream_prefix(key) for key in _chosen_keys(stream)}:
                return True
        return False

    # -- a chain ---------------------------------------------------------------------------------------------

    def _walk(self, prefix: str, states: dict[str, StreamState] | None, report: Report,
              pool: ThreadPoolExecutor) -> Chain:
        chain = Chain(prefix)
        found = list_versions(self.s3, self.bucket, prefix)
        by_sequence: dict[int, tuple[str, Versions]] = {}
        for key, versions in found.items():
            match = DIGEST_NAME.match(key.removeprefix(prefix))
            if match is None:
                report.add(BROKEN, key, "is no digest name (10-digit sequence number .json) but sits among the digests")
                continue
            by_sequence[int(match["sequence"])] = (key, versions)
        reads = {(key, version): pool.submit(self._read_digest, key, version, item.get("LastModified"))
                 for key, versions in found.items() if DIGEST_NAME.match(key.removeprefix(prefix))
                 for version, item in versions.versions.items()}
        state = next((s for s in (states or {}).values() if digests.stream_prefix(s.stream_key) == prefix), None)
        chain.stream = state.key if state else None
        previous: DigestVersion | None = None
        last = max(by_sequence, default=0)
        named_by_next: dict[int, set[str]] = {}  # sequence -> the SHA-256s its successor (or the state) links to
        if state is not None and state.digest.previous_sha256:
            named_by_next[state.digest.sequence] = {state.digest.previous_sha256}
        for sequence, (key, versions) in by_sequence.items():
            for version in versions.versions:
                link = (reads[(key, version)].result().body or {}).get("previous")
                if isinstance(link, dict):
                    named_by_next.setdefault(sequence - 1, set()).add(str(link.get("sha256")))
        for sequence in range(1, last + 1):
            if sequence not in by_sequence:
                key = f"{prefix}{sequence:010d}.json"
                report.add(BROKEN, key, "is missing: the chain breaks here (the digest was deleted, every version "
                                        "of it)")
                previous = None
                continue
            key, versions = by_sequence[sequence]
            candidates = [reads[(key, version)].result() for version in versions.versions]
            report.digests += len(candidates)
            if versions.markers and versions.latest is None:
                report.add(BROKEN, key, "is hidden by a delete marker (its version is still stored; delete the "
                                        "marker to restore it)")
            if len(candidates) > 1:
                report.add(FORKED, key, f"has {len(candidates)} versions ({', '.join(sorted(versions.versions))}): "
                                        "a digest was written over; the chain forks here")
            for candidate in candidates:
                self._check_digest(candidate, sequence, prefix, report)
            member = self._member(candidates, sequence, previous, key, report, named_by_next.get(sequence, set()))
            if member is not None and member.body is not None:
                chain.stream = chain.stream or str(member.body.get("stream"))
                chain.digests.append(member)
            previous = member
        chain.head = previous
        self._check_head(chain, last, state, report)
        return chain

    def _read_digest(self, key: str, version: str, written: datetime | None) -> DigestVersion:
        response = self.s3.get_object(Bucket=self.bucket, Key=key, VersionId=version)
        try:
            stored = response["Body"].read()
        except FlexibleChecksumError:
            return DigestVersion(key, version, "", None, False, written)  # its bytes changed in place
        sha256 = hashlib.sha256(stored).hexdigest()
        try:
            body = json.loads(stored)
            if not isinstance(body, dict):
                body = None
        except ValueError:
            body = None
        previous = (body or {}).get("previous") or {}
        message = digests.string_to_sign(key, sha256, previous.get("sha256") if isinstance(previous, dict) else None)
        signature = response.get("Metadata", {}).get(digests.METADATA_SIGNATURE)
        return DigestVersion(key, version, sha256, body, signature_valid(self.public_key, signature, message),
                             written)

    def _check_digest(self, candidate: DigestVersion, sequence: int, prefix: str, report: Report) -> None:
        subject = f"{candidate.key} (version {candidate.version_id})"
        if candidate.signed:
            report.signatures_valid += 1
        else:
            report.add(BAD_SIGNATURE, subject, "its signature does not verify with the signing key's public key "
                                               "(the digest was altered, or signed by another key)")
        body = candidate.body
        if body is None:
            report.add(BROKEN, subject, "is not a JSON digest")
            return
        problems = []
        if body.get("format") != digests.FORMAT:
            problems.append(f"format {body.get('format')!r}")
        if body.get("key") != candidate.key:
            problems.append(f"says it is {body.get('key')}")
        if body.get("sequence") != sequence:
            problems.append(f"says it is number {body.get('sequence')}")
        if _prefix_of(body.get("stream")) != prefix:
            problems.append(f"belongs to stream {body.get('stream')!r}")
        if problems:
            report.add(BROKEN, subject, "is out of place: " + ", ".join(problems))

    @staticmethod
    def _member(candidates: list[DigestVersion], sequence: int, previous: DigestVersion | None, key: str,
                report: Report, named_by_next: set[str]) -> DigestVersion:
        """The version that continues the chain: the one linking to the previous member, signed, and linked to by
        the next digest (of two signed forks, that one; else the one written first)."""
        def link(candidate: DigestVersion) -> dict[str, Any]:
            value = (candidate.body or {}).get("previous")
            return value if isinstance(value, dict) else {}

        def best(versions: list[DigestVersion]) -> DigestVersion:
            return min(versions, key=lambda c: (not c.signed, c.body is None, c.sha256 not in named_by_next,
                                                c.written or datetime.max.replace(tzinfo=UTC), c.version_id))

        if sequence == 1:
            first = [c for c in candidates if c.body is not None and (c.body.get("previous") is None)]
            if not first:
                report.add(BROKEN, key, "is the chain's first digest but names a previous one")
            return best(first or candidates)
        if previous is None:
            return best(candidates)  # the digest before it is missing, which is reported already
        linked = [c for c in candidates if link(c).get("key") == previous.key
                  and link(c).get("sha256") == previous.sha256]
        if linked:
            return best(linked)
        named = sorted({str(link(c).get("key")) for c in candidates})
        if previous.key in named:
            report.add(BROKEN, key, f"links to {previous.key} by a SHA-256 that is not that digest's "
                                    f"({previous.sha256}): one of the two was changed")
        else:
            report.add(BROKEN, key, f"does not link to {previous.key}, the digest before it (it names "
                                    f"{', '.join(named)})")
        return best(candidates)

    def _check_head(self, chain: Chain, last: int, state: StreamState | None, report: Report) -> None:
        if state is not None and state.digest.sequence > last:
            missing = digests.digest_key(state.stream_key, last + 1)
            report.add(BROKEN, missing, f"is missing, and every digest after it: the state records digest "
                                        f"{state.digest.sequence} as the chain's head, S3 holds {last}")
        elif state is not None and state.digest.sequence and chain.head is not None \
                and chain.head.key == state.digest.previous_key and chain.head.sha256 != state.digest.previous_sha256:
            report.add(BROKEN, chain.head.key, "is not the digest the collector wrote: its SHA-256 differs from the "
                                               "one the state records")
        head = chain.head
        if head is None or head.body is None or _kind_of(head.body.get("stream")) is not Kind.LIVE:
            return  # a backfill's or a reconciliation's chain ends when its span is read
        key = _parsed(head.body.get("stream"))
        if key is not None and self.collected is not None and not self.collected(key):
            return  # an account no longer collected: its chain ended when it was removed
        created = _time(head.body.get("created_at"))
        now = self.now() if self.now else None
        if now is not None and self._recent(report.until) and created is not None and now - created > STALE_AFTER:
            report.add(GAP, head.key, f"is the chain's last digest, written {to_iso(created)}: a stream writes one at "
                                      "least hourly, so later digests were deleted or the collector has stopped")

    def _recent(self, until: datetime | None) -> bool:
        """Whether the range ends so recently that the streams' next digests may still be due."""
        return until is None or (self.now is not None and until > self.now() - STALE_AFTER)

    # -- time covered ------------------------------------------------------------------------------------------

    def _check_coverage(self, chains: list[Chain], report: Report) -> None:
        streams: dict[str, list[Span]] = defaultdict(list)
        last_digest: dict[str, str] = {}
        for chain in chains:
            stream = _live_key(chain.stream or chain.prefix)
            for member in chain.digests:
                for span in (member.body or {}).get("covered") or []:
                    start, end = _time(span[0]), _time(span[1])
                    if start is not None and end is not None and start < end:
                        streams[stream] = digests.add_span(streams[stream], start, end)
                        last_digest[stream] = member.key
        for stream, spans in sorted(streams.items()):
            report.covered[stream] = spans
            low = report.since or spans[0][0]
            # Up to a recent end, the time after the last digest is the next digest's (the chains' age is checked
            # instead); an end further back must be covered.
            high = min(report.until or spans[-1][1], spans[-1][1]) if self._recent(report.until) else report.until
            assert high is not None
            holes = []
            cursor = low
            for start, end in spans:
                if start > cursor and cursor < high:
                    holes.append((cursor, min(start, high)))
                cursor = max(cursor, end)
            if cursor < high:
                holes.append((cursor, high))
            for start, end in holes:
                report.add(GAP, stream, f"[{to_iso(start)}, {to_iso(end)}) is covered by no digest: nothing attests "
                                        f"that this time was read from the vendor (near {last_digest[stream]})")
        for chain in chains:
            stream = _live_key(chain.stream or chain.prefix)
            if stream not in report.covered:
                report.covered[stream] = []
                if report.since is not None or report.until is not None:
                    report.add(GAP, stream, "no digest covers any time of this stream")

    # -- objects ------------------------------------------------------------------------------------------------

    def _list_objects(self, vendors: list[str] | None, since: datetime | None,
                      until: datetime | None) -> dict[str, Versions]:
        if vendors is None and (since is None or until is None):
            return list_versions(self.s3, self.bucket, f"{EVENTS_PREFIX}/")  # everything, foreign layouts too
        vendor_prefixes = [f"{EVENTS_PREFIX}/vendor={v}/" for v in vendors] if vendors is not None else \
            list_prefixes(self.s3, self.bucket, f"{EVENTS_PREFIX}/")
        found: dict[str, Versions] = {}
        for vendor_prefix in vendor_prefixes:
            if since is None or until is None:
                found.update(list_versions(self.s3, self.bucket, vendor_prefix))
                continue
            for day in _days(since, until):  # an object's dt is its events' UTC day
                found.update(list_versions(self.s3, self.bucket, f"{vendor_prefix}dt={day}/"))
        return found

    def _check_objects(self, chains: list[Chain], objects: dict[str, Versions],
                       states: dict[str, StreamState] | None, streams: list[str] | None, report: Report,
                       pool: ThreadPoolExecutor) -> None:
        listed: dict[str, dict[str, tuple[digests.ObjectEntry, str]]] = defaultdict(dict)
        for chain in chains:
            for member in chain.digests:
                for raw in (member.body or {}).get("objects") or []:
                    try:
                        entry = digests.ObjectEntry.from_json(raw)
                    except (KeyError, TypeError, ValueError):
                        report.add(BROKEN, member.key, f"lists an unreadable object entry {str(raw)[:80]}")
                        continue
                    listed[entry.key][_version(entry.version_id)] = (entry, member.key)
        in_range = [(entry, digest_key) for versions in listed.values() for entry, digest_key in versions.values()
                    if self._in_range(entry, report.since, report.until)]
        report.objects_listed = len(in_range)
        checks = [pool.submit(self._check_listed, entry, digest_key, objects.get(entry.key))
                  for entry, digest_key in in_range]
        for check in checks:
            findings, records = check.result()
            report.findings += findings
            if records is not None:
                report.objects_checked += 1
                report.records += records
        pending, writing = _pending(states or {})
        selected_streams = {safe_key_part(p) for p in _selected_stream_keys(chains, streams)}
        for key, versions in sorted(objects.items()):
            latest = versions.latest
            if latest is None or (key in listed and _version(latest) in listed[key]):
                continue
            name = OBJECT_NAME.match(key.rpartition("/")[2])
            if streams and any("#" in s for s in streams) and (name is None or name["stream"] not in selected_streams):
                continue
            if (key, _version(latest)) in pending or key in writing:
                report.pending += 1
                continue
            if key in listed:
                continue  # a listed object replaced by another version: reported as modified
            report.add(UNLISTED, f"{key} (version {latest})", "no digest lists it: it was added to the archive "
                                                            "outside the collectors' commits")

    @staticmethod
    def _in_range(entry: digests.ObjectEntry, since: datetime | None, until: datetime | None) -> bool:
        first, last = _time(entry.first_event_time), _time(entry.last_event_time)
        if first is None or last is None:
            return True
        return (since is None or last >= since) and (until is None or first < until)

    def _check_listed(self, entry: digests.ObjectEntry, digest_key: str,
                      versions: Versions | None) -> tuple[list[Finding], int | None]:
        version = _version(entry.version_id)
        subject = f"{entry.key} (version {version})"
        where = f"listed in {digest_key}"
        if versions is None or (not versions.versions and not versions.markers):
            return [Finding(DELETED, subject, f"no version of it is left ({where})")], None
        if version not in versions.versions:
            others = f"; version {versions.latest} is there instead" if versions.latest else ""
            return [Finding(DELETED, subject, f"this version was deleted{others} ({where})")], None
        findings = []
        if versions.latest is None:
            findings.append(Finding(DELETED, subject, f"a delete marker hides it: queries no longer see it (the "
                                                      f"version is still stored; {where})"))
        elif versions.latest != version:
            findings.append(Finding(MODIFIED, subject, f"version {versions.latest} replaces it: queries read that "
                                                       f"one ({where})"))
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=entry.key, VersionId=version)["Body"].read()
        except FlexibleChecksumError:
            findings.append(Finding(MODIFIED, subject, f"its bytes no longer match the SHA-256 S3 recorded when it "
                                                       f"was written ({where})"))
            return findings, None
        sha256 = hashlib.sha256(body).hexdigest()
        if sha256 != entry.sha256:
            findings.append(Finding(MODIFIED, subject, f"its bytes changed: SHA-256 {sha256}, the digest says "
                                                       f"{entry.sha256} ({where})"))
        try:
            records = sum(1 for line in gzip.decompress(body).splitlines() if line.strip())
        except (OSError, EOFError, zlib.error):
            findings.append(Finding(MODIFIED, subject, f"is no longer readable gzip ({where})"))
            return findings, 0
        if records != entry.records:
            findings.append(Finding(MODIFIED, subject, f"holds {records} records, the digest says {entry.records} "
                                                       f"({where})"))
        return findings, records


def _version(version_id: str | None) -> str:
    return version_id or "null"


def _time(value: Any) -> datetime | None:
    try:
        return parse_time(value)
    except (TypeError, ValueError):
        return None


# A digest's body says which stream it belongs to, as text that anyone with write access may have changed: it is
# parsed, never split, and text that is no stream key is judged as strictly as a live stream's would be.


def _parsed(text: Any) -> StreamKey | None:
    try:
        return StreamKey.parse(text) if isinstance(text, str) else None
    except ValueError:
        return None


def _live_key(stream: str) -> str:
    """The live stream a chain's time belongs to (a backfill's and a reconciliation's cover the same stream)."""
    key = _parsed(stream)
    return stream if key is None else str(key.live)


def _kind_of(stream: Any) -> Kind:
    key = _parsed(stream)
    return Kind.LIVE if key is None else key.kind


def _prefix_of(stream: Any) -> str | None:
    key = _parsed(stream)
    return None if key is None else digests.stream_prefix(key)


def _vendor_of(chosen: str) -> str:
    """`--stream` takes a vendor or a stream key."""
    key = _parsed(chosen) if "#" in chosen else None
    return chosen if key is None else key.vendor


def _chosen_keys(chosen: str) -> list[StreamKey]:
    """The streams a `--stream` key chooses: a live stream with its backfill and reconciliation, or one of these
    alone."""
    key = _parsed(chosen)
    if key is None:
        return []
    return [key.with_kind(kind) for kind in Kind] if key.kind is Kind.LIVE else [key]


def _days(since: datetime, until: datetime) -> Iterator[str]:
    day = since.date()
    while datetime(day.year, day.month, day.day, tzinfo=since.tzinfo) < until:
        yield day.isoformat()
        day += timedelta(days=1)


def _pending(states: dict[str, StreamState]) -> tuple[set[tuple[str, str]], set[str]]:
    """What the state says is waiting for a stream's next digest: objects committed since its last digest (by
    version), and the keys of a part whose objects are being written (the commit that records them is next)."""
    committed = {(e.key, _version(e.version_id)) for s in states.values() for e in s.digest.objects}
    writing = {key for s in states.values() for intent in s.intents for key in intent.keys}
    return committed, writing


def _selected_stream_keys(chains: list[Chain], streams: list[str] | None) -> list[str]:
    keys = [chain.stream for chain in chains if chain.stream]
    return keys + [str(key) for s in streams or [] if "#" in s for key in _chosen_keys(s)]
