"""`auditlake verify` against archives the collectors built: clean when untouched, and every kind of tampering named.

One archive of nine streams (Asana, Ashby, Make, ClickUp's six classes) is built once for TestOneArchive; each of
its tests tampers with one stream and verifies that stream, so the tests do not see each other. The cases after it
need a chain of their own and build a small archive each.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import boto3
import pytest
from conftest import Clock, verify_archive
from moto.s3.models import s3_backends
from worlds import World, world_of

from auditlake import digest, http, timeutil
from auditlake.state import StateStore, StreamKey, StreamState
from auditlake_cli.verify import (
    BAD_SIGNATURE,
    BROKEN,
    DELETED,
    FORKED,
    GAP,
    MODIFIED,
    UNLISTED,
    Finding,
    Report,
    Verifier,
    load_public_key,
)
from auditlake_local.stack import ACCOUNT, LocalStack
from auditlake_local.vendors import VENDORS

PARTS = {"MAX_OBJECT_EVENTS": "40"}  # several objects per stream and run


@dataclass
class Built:
    stack: LocalStack
    clock: Clock
    worlds: dict[str, World]
    finished_at: datetime  # verification "now" for the tests that do not run the collectors again
    streams: dict[str, str]  # a short name (asana, ashby, make, clickup:<class>) -> stream key
    untouched: dict[str, Report]  # verified before any test tampered with anything

    @property
    def s3(self) -> Any:
        return boto3.client("s3")

    def digests(self, stream: str) -> list[tuple[str, dict[str, Any]]]:
        """(key, body) of the stream's digests in chain order."""
        prefix = digest.stream_prefix(StreamKey.parse(stream))
        listing = self.s3.list_objects_v2(Bucket=self.stack.bucket, Prefix=prefix)["Contents"]
        return [(item["Key"], json.loads(self.s3.get_object(Bucket=self.stack.bucket, Key=item["Key"])["Body"]
                                         .read())) for item in sorted(listing, key=lambda i: i["Key"])]

    def listed_object(self, stream: str) -> dict[str, Any]:
        """An object the stream's first digest lists."""
        return self.digests(stream)[0][1]["objects"][0]


def collect(stack: LocalStack, worlds: dict[str, World], clock: Clock) -> None:
    for world in worlds.values():
        summary = stack.invoke(world.function_id, environment=PARTS)
        assert summary["status"] == "ok", summary


def build(stack: LocalStack, clock: Clock, vendors: tuple[str, ...]) -> Iterator[dict[str, World]]:
    """The vendors' simulators, and four rounds of collection: the history, new events, and twice an hour later
    (new events, then none): every chain has at least three digests, one of them idle."""
    with contextlib.ExitStack() as opened:
        worlds = {vendor: opened.enter_context(world_of(vendor, stack, clock.now)) for vendor in vendors}
        now = clock.now()
        for number, world in enumerate(worlds.values()):
            world.seed(300 if world.vendor == "clickup" else 100, now - timedelta(days=3),
                       now - timedelta(minutes=10), seed=number)
        collect(stack, worlds, clock)
        for round_number, gap in enumerate((timedelta(minutes=5), timedelta(minutes=56), timedelta(minutes=56))):
            clock.advance(gap)
            now = clock.now()
            if round_number < 2:
                for number, world in enumerate(worlds.values()):
                    world.seed(120 if world.vendor == "clickup" else 20, now - timedelta(minutes=5),
                               now - timedelta(minutes=3), seed=100 * (round_number + 1) + number)
            collect(stack, worlds, clock)
        yield worlds


@pytest.fixture(scope="class")
def built() -> Iterator[Built]:
    clock = Clock()
    with pytest.MonkeyPatch.context() as patch, LocalStack.start() as stack:
        patch.setattr(timeutil, "now", clock.now)
        patch.setattr(http, "pause", lambda _seconds: None)
        for worlds in build(stack, clock, tuple(VENDORS)):
            keys = [s.stream_key for s in StateStore(boto3.client("dynamodb"), stack.table).scan()]
            streams = {key.vendor if key.vendor != "clickup" else f"clickup:{key.stream.rpartition(':')[2]}": str(key)
                       for key in keys}
            assert len(streams) == 9, keys
            finished = clock.now()
            since = finished - timedelta(hours=3)
            untouched = {
                "all": verify_archive(stack, clock),
                "make": verify_archive(stack, clock, streams=["make"]),
                "make, last 3 hours": verify_archive(stack, clock, streams=["make"], since=since, until=finished),
                "make, before": verify_archive(stack, clock, streams=["make"], since=since - timedelta(days=200),
                                               until=since),
            }
            yield Built(stack, clock, worlds, finished, streams, untouched)


def verify(built: Built, name: str, now: datetime | None = None) -> list[Finding]:
    public = boto3.client("kms").get_public_key(KeyId=built.stack.functions_env("DIGEST_SIGNING_KEY_ARN"))
    verifier = Verifier(boto3.client("s3"), built.stack.bucket, load_public_key(public["PublicKey"], "kms"),
                        states=StateStore(boto3.client("dynamodb"), built.stack.table).scan,
                        now=lambda: now or built.finished_at)
    return verifier.run([built.streams[name]]).findings


def kinds(findings: list[Finding]) -> list[str]:
    return sorted(f.kind for f in findings)


def stored_key(built: Built, key: str) -> Any:
    """moto's record of the latest version of `key`: the only way to change stored bytes without a new version,
    as a fault in storage (or someone with access to it) would."""
    return s3_backends[ACCOUNT]["aws"].get_bucket(built.stack.bucket).keys.getlist(key)[-1]


class TestOneArchive:
    """Nine streams, one kind of tampering each."""

    # -- an untouched archive ---------------------------------------------------------------------------------------


    def test_an_untouched_archive_verifies_clean(self, built: Built) -> None:
        report = built.untouched["all"]
        assert report.clean, [f.line() for f in report.findings]
        assert len(report.chains) == 9 and report.digests >= 27 and report.signatures_valid == report.digests
        assert report.objects_checked == report.objects_listed > 40 and report.pending == 0
        assert report.records == sum(len(w.simulator.ground_truth()) for w in built.worlds.values())
        assert all(len(spans) == 1 for spans in report.covered.values()), "each stream's time covered in one piece"


    def test_a_time_range_checks_the_objects_of_that_range_only(self, built: Built) -> None:
        full, ranged = built.untouched["make"], built.untouched["make, last 3 hours"]
        assert full.clean and ranged.clean, [f.line() for f in ranged.findings]
        assert 0 < ranged.objects_listed < full.objects_listed
        early = built.untouched["make, before"]
        assert kinds(early.findings) == [GAP] and "is covered by no digest" in early.findings[0].detail


    # -- objects --------------------------------------------------------------------------------------------------


    def test_an_object_replaced_by_a_new_version_is_modified(self, built: Built) -> None:
        entry = built.listed_object(built.streams["asana"])
        body = gzip.compress(b'{"event_id":"forged"}\n')
        new = built.s3.put_object(Bucket=built.stack.bucket, Key=entry["key"], Body=body)  # the overwrite S3 allows
        (finding,) = verify(built, "asana")
        assert (finding.kind, finding.subject) == (MODIFIED, f"{entry['key']} (version {entry['version_id']})")
        assert f"version {new['VersionId']} replaces it" in finding.detail


    def test_objects_whose_bytes_changed_in_place_are_modified(self, built: Built) -> None:
        """Bytes changed under the same version (as only someone inside the storage could): S3's own checksum
        tells; and where its stored checksum was changed too, the digest's SHA-256 and record count still tell."""
        stream = built.streams["clickup:auth-and-security"]
        first, second = [e for _, body in built.digests(stream) for e in body["objects"]][:2]
        stored = stored_key(built, first["key"])
        stored.value = stored.value + gzip.compress(b'{"event_id":"inserted"}\n')  # one more gzip member and line
        stored.checksum_value = base64.b64encode(hashlib.sha256(stored.value).digest()).decode()
        flipped = stored_key(built, second["key"])
        flipped.value = flipped.value[:-1] + bytes([flipped.value[-1] ^ 0xFF])
        findings = verify(built, "clickup:auth-and-security")
        assert kinds(findings) == [MODIFIED] * 3
        by_subject: dict[str, list[str]] = {}
        for finding in findings:
            by_subject.setdefault(finding.subject, []).append(finding.detail)
        assert sorted(by_subject) == sorted(f"{e['key']} (version {e['version_id']})" for e in (first, second))
        details = " | ".join(by_subject[f"{first['key']} (version {first['version_id']})"])
        assert f"its bytes changed: SHA-256 {hashlib.sha256(stored.value).hexdigest()}" in details
        assert f"holds {first['records'] + 1} records, the digest says {first['records']}" in details
        (flipped_detail,) = by_subject[f"{second['key']} (version {second['version_id']})"]
        assert "no longer match the SHA-256 S3 recorded" in flipped_detail

    def test_an_object_hidden_by_a_delete_marker_is_deleted(self, built: Built) -> None:
        entry = built.listed_object(built.streams["clickup:hierarchy-activity"])
        built.s3.delete_object(Bucket=built.stack.bucket, Key=entry["key"])
        (finding,) = verify(built, "clickup:hierarchy-activity")
        assert (finding.kind, finding.subject) == (DELETED, f"{entry['key']} (version {entry['version_id']})")
        assert "a delete marker hides it" in finding.detail


    def test_an_object_whose_version_was_deleted_is_deleted(self, built: Built) -> None:
        entry = built.listed_object(built.streams["clickup:custom-fields"])
        built.s3.delete_object(Bucket=built.stack.bucket, Key=entry["key"], VersionId=entry["version_id"])
        (finding,) = verify(built, "clickup:custom-fields")
        assert (finding.kind, finding.subject) == (DELETED, f"{entry['key']} (version {entry['version_id']})")
        assert "no version of it is left" in finding.detail


    def test_an_object_no_digest_lists_is_unlisted(self, built: Built) -> None:
        entry = built.listed_object(built.streams["clickup:user-activity"])
        key = re.sub(r"_p\d{6}\.json\.gz$", "_p000999.json.gz", entry["key"])  # a part no run wrote
        assert key != entry["key"]
        added = built.s3.put_object(Bucket=built.stack.bucket, Key=key, IfNoneMatch="*",
                                    Body=gzip.compress(b'{"event_id":"planted"}\n'))
        (finding,) = verify(built, "clickup:user-activity")
        assert (finding.kind, finding.subject) == (UNLISTED, f"{key} (version {added['VersionId']})")


    # -- digests --------------------------------------------------------------------------------------------------


    def test_a_digest_deleted_from_the_middle_breaks_the_chain(self, built: Built) -> None:
        stream = built.streams["clickup:other-activity"]
        chain = built.digests(stream)
        middle = next((key, body) for key, body in chain[1:-1] if body["objects"])
        for version in built.s3.list_object_versions(Bucket=built.stack.bucket, Prefix=middle[0])["Versions"]:
            built.s3.delete_object(Bucket=built.stack.bucket, Key=middle[0], VersionId=version["VersionId"])
        findings = verify(built, "clickup:other-activity")
        broken = [f for f in findings if f.kind == BROKEN]
        assert [(f.subject, "is missing" in f.detail) for f in broken] == [(middle[0], True)]
        # What it listed is now listed nowhere.
        assert sorted(f.subject.partition(" ")[0] for f in findings if f.kind == UNLISTED) == \
            sorted(e["key"] for e in middle[1]["objects"])
        assert len(findings) == 1 + len(middle[1]["objects"])


    def test_a_digest_rewritten_without_the_key_has_a_bad_signature_and_breaks_the_chain(self, built: Built) -> None:
        """An object dropped from a digest's list: the rewritten digest replaces the original (new version, the old
        one deleted). Its signature fails, the next digest no longer links to it, and the object is unlisted."""
        stream = built.streams["clickup:agent-settings-activity"]
        (key, body), (next_key, _) = next((pair, after) for pair, after in zip(built.digests(stream),
                                                                               built.digests(stream)[1:], strict=False)
                                          if pair[1]["objects"])
        dropped = body["objects"].pop()
        original = built.s3.get_object(Bucket=built.stack.bucket, Key=key)
        rewritten = built.s3.put_object(Bucket=built.stack.bucket, Key=key, Body=digest.canonical_json(body),
                                        Metadata=original["Metadata"])
        built.s3.delete_object(Bucket=built.stack.bucket, Key=key, VersionId=original["VersionId"])
        findings = {f.kind: f for f in verify(built, "clickup:agent-settings-activity")}
        assert sorted(findings) == sorted([BAD_SIGNATURE, BROKEN, UNLISTED])
        assert findings[BAD_SIGNATURE].subject == f"{key} (version {rewritten['VersionId']})"
        assert findings[BROKEN].subject == next_key and f"links to {key} by a SHA-256" in findings[BROKEN].detail
        assert findings[UNLISTED].subject == f"{dropped['key']} (version {dropped['version_id']})"


    def test_a_signature_changed_in_place_is_bad(self, built: Built) -> None:
        stream = built.streams["make"]
        key, _ = built.digests(stream)[1]
        stored = stored_key(built, key)
        signature = bytearray(base64.b64decode(stored.metadata["x-amz-meta-signature"]))
        signature[-1] ^= 0x01
        stored.set_metadata({**stored.metadata, "x-amz-meta-signature": base64.b64encode(bytes(signature)).decode()},
                            replace=True)
        (finding,) = verify(built, "make")
        assert (finding.kind, finding.subject.partition(" ")[0]) == (BAD_SIGNATURE, key)


    def test_time_the_collector_was_made_to_skip_is_a_gap(self, built: Built) -> None:
        """Someone with write access to the state moves Ashby's cursor three hours ahead: the collector resumes from
        there, and the hours it never read are covered by no digest."""
        table = built.stack.table
        store = StateStore(boto3.client("dynamodb"), table)
        state = store.read(StreamKey.parse(built.streams["ashby"]))
        assert state is not None and state.done_until is not None
        skipped_from = state.done_until
        state.done_until = skipped_from + timedelta(hours=3)
        boto3.client("dynamodb").put_item(TableName=table, Item=_item(state))
        built.clock.advance(timedelta(hours=4))
        summary = built.stack.invoke(built.worlds["ashby"].function_id, environment=PARTS)
        assert summary["digests"]["written"] == 1
        findings = verify(built, "ashby", now=built.clock.now())
        assert kinds(findings) == [GAP]
        expected = f"[{timeutil.to_iso(skipped_from)}, {timeutil.to_iso(state.done_until - timedelta(minutes=10))})"
        assert findings[0].subject == built.streams["ashby"] and expected in findings[0].detail


def _item(state: StreamState) -> dict[str, Any]:
    from boto3.dynamodb.types import TypeSerializer  # noqa: PLC0415

    from auditlake.state import _to_item  # noqa: PLC0415 - the exact item the collector writes, one field changed

    item = {k: v for k, v in _to_item(state).items() if v is not None}
    item["version"] = state.version
    return {k: TypeSerializer().serialize(v) for k, v in item.items()}


# -- chains of their own -------------------------------------------------------------------------------------


@pytest.fixture
def small(stack: LocalStack, clock: Clock, pauses: Any) -> Iterator[Built]:
    for worlds in build(stack, clock, ("asana",)):
        keys = [s.key for s in StateStore(boto3.client("dynamodb"), stack.table).scan()]
        yield Built(stack, clock, worlds, clock.now(), {"asana": keys[0]}, {})


def test_a_second_signed_digest_at_the_same_place_is_a_fork(small: Built) -> None:
    """A second digest number 2, validly signed (as a second writer holding the key would sign it): a fork."""
    stream = small.streams["asana"]
    key, body = small.digests(stream)[1]
    fork = digest.canonical_json({**body, "created_at": timeutil.to_iso(small.finished_at)})
    sha256 = hashlib.sha256(fork).hexdigest()
    signing_key = small.stack.functions_env("DIGEST_SIGNING_KEY_ARN")
    signature = boto3.client("kms").sign(KeyId=signing_key, MessageType="RAW", SigningAlgorithm="ECDSA_SHA_256",
                                         Message=digest.string_to_sign(key, sha256, body["previous"]["sha256"]))
    small.s3.put_object(Bucket=small.stack.bucket, Key=key, Body=fork,
                        Metadata={"signature": base64.b64encode(signature["Signature"]).decode()})
    (finding,) = verify(small, "asana")
    assert (finding.kind, finding.subject) == (FORKED, key) and "has 2 versions" in finding.detail


def test_digests_cut_from_the_end_of_a_chain_break_it(small: Built) -> None:
    """The state records the chain's head: deleting the newest digest shows, even before it goes stale."""
    stream = small.streams["asana"]
    key, body = small.digests(stream)[-1]
    assert body["objects"] == [], "the last digest is the idle one"
    small.s3.delete_object(Bucket=small.stack.bucket, Key=key,
                           VersionId=small.s3.head_object(Bucket=small.stack.bucket, Key=key)["VersionId"])
    (finding,) = verify(small, "asana")
    assert (finding.kind, finding.subject) == (BROKEN, key)
    assert f"the state records digest {body['sequence']} as the chain's head" in finding.detail
    # Without the state, the chain's age tells: its last digest is now from over an hour before the newest.
    stale = verify_without_state(small, now=small.finished_at + timedelta(hours=1, minutes=5))
    assert kinds(stale) == [GAP] and "later digests were deleted or the collector has stopped" in stale[0].detail


def verify_without_state(built: Built, now: datetime) -> list[Finding]:
    public = boto3.client("kms").get_public_key(KeyId=built.stack.functions_env("DIGEST_SIGNING_KEY_ARN"))
    verifier = Verifier(boto3.client("s3"), built.stack.bucket, load_public_key(public["PublicKey"], "kms"),
                        now=lambda: now)
    return verifier.run().findings


def test_a_digest_hidden_by_a_delete_marker_breaks_the_chain(small: Built) -> None:
    key, _ = small.digests(small.streams["asana"])[1]
    small.s3.delete_object(Bucket=small.stack.bucket, Key=key)
    (finding,) = verify(small, "asana")
    assert (finding.kind, finding.subject) == (BROKEN, key) and "hidden by a delete marker" in finding.detail


def test_a_public_key_that_is_not_the_stacks_fails_every_signature(small: Built) -> None:
    other = boto3.client("kms").create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    public: Callable[[], bytes] = lambda: boto3.client("kms").get_public_key(KeyId=other)["PublicKey"]  # noqa: E731
    verifier = Verifier(boto3.client("s3"), small.stack.bucket, load_public_key(public(), "kms"),
                        now=lambda: small.finished_at)
    report = verifier.run()
    assert report.digests >= 3 and kinds(report.findings) == [BAD_SIGNATURE] * report.digests
