"""Digests as the collectors write them: one signed chain per stream, whatever crashes and retries do to a run."""

from __future__ import annotations

import base64
import gzip
import hashlib
import itertools
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import boto3
import pytest
from conftest import Clock, verify_archive
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from worlds import World, world_of

from auditlake import digest
from auditlake.archive import Archive, PartBuilder
from auditlake.digest import DigestError, DigestWriter
from auditlake.engine import Collector
from auditlake.state import StateStore, StreamKey, StreamState
from auditlake.timeutil import parse_time, to_iso
from auditlake_cli.verify import load_public_key
from auditlake_local.stack import LocalStack

SMALL_PARTS = {"MAX_OBJECT_EVENTS": "120"}


class SimulatedCrash(BaseException):
    """The process dies here: nothing after it runs, not even the lease release."""


@pytest.fixture
def clickup(stack: LocalStack, clock: Clock, pauses: Any) -> Iterator[World]:
    """Six streams, each its own chain."""
    with world_of("clickup", stack, clock.now) as vendor_world:
        yield vendor_world


@pytest.fixture
def asana(stack: LocalStack, clock: Clock, pauses: Any) -> Iterator[World]:
    with world_of("asana", stack, clock.now) as vendor_world:
        yield vendor_world


def tick(stack: LocalStack, world: World, clock: Clock, **environment: str) -> dict[str, Any] | BaseException:
    clock.advance()
    try:
        return stack.invoke(world.function_id, environment={**SMALL_PARTS, **environment})
    except (Exception, SimulatedCrash) as exc:
        return exc


def until_caught_up(stack: LocalStack, world: World, clock: Clock, max_ticks: int = 30) -> list[Any]:
    outcomes = []
    for _ in range(max_ticks):
        outcome = tick(stack, world, clock)
        outcomes.append(outcome)
        if isinstance(outcome, dict) and outcome["status"] == "ok":
            return outcomes
    raise AssertionError(f"not caught up: {outcomes[-3:]}")


def seed(world: World, clock: Clock, count: int = 400, days: int = 3, seed_number: int = 1) -> None:
    now = clock.now()
    world.seed(count, now - timedelta(days=days), now - timedelta(minutes=10), seed=seed_number)


def digests_of(stack: LocalStack, prefix: str = "digests/") -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """key -> (body, metadata) of every digest (latest versions)."""
    s3 = boto3.client("s3")
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=stack.bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            response = s3.get_object(Bucket=stack.bucket, Key=item["Key"])
            found[item["Key"]] = (json.loads(response["Body"].read()), response["Metadata"])
    return found


def states(stack: LocalStack) -> dict[str, StreamState]:
    return {s.key: s for s in StateStore(boto3.client("dynamodb"), stack.table).scan()}


def assert_verifies_clean(stack: LocalStack, clock: Clock) -> None:
    report = verify_archive(stack, clock)
    assert report.clean, "\n".join(f.line() for f in report.findings)
    assert report.digests > 0 and report.signatures_valid == report.digests


# -- what a digest holds ----------------------------------------------------------------------------------------


def test_a_run_that_archives_writes_one_signed_digest_of_everything_it_wrote(stack: LocalStack, asana: World,
                                                                            clock: Clock) -> None:
    seed(asana, clock)
    summary = tick(stack, asana, clock)
    assert isinstance(summary, dict) and summary["status"] == "ok"
    assert summary["digests"] == {"written": 1, "adopted": 0, "signatures": 1}
    (key, (body, metadata)), = digests_of(stack).items()
    stream = "asana#1200000000000001"
    assert key == "digests/vendor=asana/stream=asana-1200000000000001/0000000001.json"
    assert summary["streams"][0]["digest"] == key
    assert (body["stream"], body["sequence"], body["previous"], body["cursor_before"]) == (stream, 1, None, None)

    # Every object the run wrote, as S3 stores it: version, SHA-256 of the bytes, records, event times.
    s3 = boto3.client("s3")
    stored = {}
    for version in s3.list_object_versions(Bucket=stack.bucket, Prefix="events/")["Versions"]:
        response = s3.get_object(Bucket=stack.bucket, Key=version["Key"], VersionId=version["VersionId"])
        lines = [json.loads(line) for line in gzip.decompress(response["Body"].read()).splitlines()]
        stored[version["Key"]] = version["VersionId"]
        entry = next(e for e in body["objects"] if e["key"] == version["Key"])
        assert entry["version_id"] == version["VersionId"]
        again = s3.get_object(Bucket=stack.bucket, Key=version["Key"])["Body"].read()
        assert entry["sha256"] == hashlib.sha256(again).hexdigest()
        assert entry["records"] == len(lines)
        assert (entry["first_event_time"], entry["last_event_time"]) == \
            (min(r["event_time"] for r in lines), max(r["event_time"] for r in lines))
    assert len(body["objects"]) == len(stored) == summary["s3"]["objects"] > 3
    assert body["records"] == 400

    # The window covered runs from where collection began to where the stream is done, as the state says.
    state = states(stack)[stream]
    assert body["covered"] == [[body["origin"], body["cursor_after"]["done_until"]]]
    assert body["cursor_after"]["done_until"] == summary["streams"][0]["done_until"]
    assert state.digest.sequence == 1 and state.digest.objects == [] and state.digest.covered == []
    assert state.digest.previous_sha256 == hashlib.sha256(digest.canonical_json(body)).hexdigest()

    # Signed by the stack's key over the short canonical string; the public key verifies it without KMS.
    public = load_public_key(boto3.client("kms").get_public_key(
        KeyId=stack.functions_env("DIGEST_SIGNING_KEY_ARN"))["PublicKey"], "kms")
    message = digest.string_to_sign(key, state.digest.previous_sha256 or "", None)
    assert message.decode().split("\n") == ["auditlake-digest/1", key, state.digest.previous_sha256, "-"]
    public.verify(base64.b64decode(metadata["signature"]), message, ec.ECDSA(hashes.SHA256()))
    assert metadata["signing-algorithm"] == "ECDSA_SHA_256"
    assert_verifies_clean(stack, clock)


@pytest.mark.slow
def test_each_run_that_archives_extends_the_chain_and_the_covered_time(stack: LocalStack, clickup: World,
                                                                       clock: Clock) -> None:
    world = clickup
    seed(world, clock, count=200)
    until_caught_up(stack, world, clock)
    for round_number in range(3):
        now = clock.now()
        world.seed(60, now - timedelta(minutes=4), now - timedelta(minutes=3), seed=10 + round_number)
        summary = tick(stack, world, clock)
        assert isinstance(summary, dict) and summary["digests"]["written"] >= 1
    chains: dict[str, list[dict[str, Any]]] = {}
    for _, (body, _) in sorted(digests_of(stack).items()):
        chains.setdefault(body["stream"], []).append(body)
    assert len(chains) == world.streams
    for bodies in chains.values():
        assert [b["sequence"] for b in bodies] == list(range(1, len(bodies) + 1))
        for before, after in itertools.pairwise(bodies):
            assert after["previous"]["key"] == before["key"]
            assert after["previous"]["sha256"] == hashlib.sha256(digest.canonical_json(before)).hexdigest()
            assert after["cursor_before"] == before["cursor_after"]
            # Windows re-read the overlap: each digest's span starts inside the last one's, never after it.
            if after["covered"] and before["covered"]:
                assert after["covered"][0][0] <= before["covered"][-1][1] < after["covered"][-1][1]
    assert_verifies_clean(stack, clock)


@pytest.mark.slow
def test_an_idle_stream_writes_a_digest_at_least_hourly_and_no_more(stack: LocalStack, asana: World,
                                                                     clock: Clock) -> None:
    seed(asana, clock, count=100)
    until_caught_up(stack, asana, clock)
    first = len(digests_of(stack))
    written_at = []
    for number in range(30):  # two and a half hours of five-minute ticks, nothing new at the vendor
        summary = tick(stack, asana, clock)
        assert isinstance(summary, dict) and summary["s3"]["objects"] == 0
        assert summary["dynamodb_operations"] == 2, "the digest rides on the run's last write"
        if summary["digests"]["written"]:
            written_at.append(number)
    assert len(written_at) == 2 and written_at[1] - written_at[0] in (11, 12), written_at
    bodies = [body for _, (body, _) in sorted(digests_of(stack).items())]
    assert len(bodies) == first + 2
    idle = bodies[-1]
    assert idle["objects"] == [] and idle["records"] == 0
    assert len(idle["covered"]) == 1, "an hour of idle windows, covered without a gap"
    assert_verifies_clean(stack, clock)


def test_a_backfill_has_a_chain_of_its_own(stack: LocalStack, asana: World, clock: Clock) -> None:
    now = clock.now()
    asana.seed(500, now - timedelta(days=12), now - timedelta(minutes=10), seed=4)
    tick(stack, asana, clock, INITIAL_LOOKBACK_DAYS="3")
    since = (clock.now() - timedelta(days=14)).date().isoformat()
    summary = stack.invoke(asana.function_id, event={"backfill": {"since": since}}, environment=SMALL_PARTS)
    assert summary["status"] == "ok"
    backfill = digests_of(stack, "digests/vendor=asana/stream=asana-1200000000000001-backfill/")
    (body, _), = backfill.values()
    assert body["stream"] == "asana#1200000000000001#backfill" and body["sequence"] == 1
    live = states(stack)["asana#1200000000000001"]
    assert body["backfill"]["until"] == body["covered"][-1][1] == to_iso(live.origin)
    report = verify_archive(stack, clock)
    assert report.clean, [f.line() for f in report.findings]
    (spans,) = report.covered.values()
    assert len(spans) == 1 and spans[0][0].date().isoformat() >= since, "backfill and live chains tile time"


# -- crashes and retries -------------------------------------------------------------------------------------------


# Between signing and writing, and between writing and recording; the latter for six streams as well. A death
# before the digest is test_exactly_once.py's `before_release` (every scenario there verifies the digests too).
DIGEST_CRASHES = [("asana", "after_sign"), ("asana", "after_digest_put"), ("clickup", "after_digest_put")]


@pytest.mark.parametrize(("vendor", "point"), DIGEST_CRASHES)
def test_a_crash_around_the_digest_neither_forks_nor_skips(vendor: str, point: str, stack: LocalStack,
                                                           clock: Clock, pauses: Any,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The process dies between signing and writing the digest, or between writing and recording it: the next runs
    write or adopt it, and the chain verifies without a finding."""
    crashes = {"left": 1}
    real_sign, real_put, real_finish = DigestWriter._sign, DigestWriter._put, Collector._finish

    def crash(where: str) -> None:
        if point == where and crashes["left"]:
            crashes["left"] -= 1
            raise SimulatedCrash(where)

    def sign(self: DigestWriter, message: bytes) -> str:
        signature = real_sign(self, message)
        crash("after_sign")
        return signature

    def put(self: DigestWriter, key: str, body: bytes, signature: str) -> bool:
        written = real_put(self, key, body, signature)
        crash("after_digest_put")
        return written

    def finish(self: Collector, state: Any, result: Any, failure: BaseException | None) -> None:
        if isinstance(failure, SimulatedCrash):
            return  # the process died: no commit, no release
        real_finish(self, state, result, failure)

    monkeypatch.setattr(DigestWriter, "_sign", sign)
    monkeypatch.setattr(DigestWriter, "_put", put)
    monkeypatch.setattr(Collector, "_finish", finish)
    with world_of(vendor, stack, clock.now) as world:
        seed(world, clock, count=200)
        outcomes = until_caught_up(stack, world, clock)
        assert crashes["left"] == 0, "the crash point was never reached"
        assert any(isinstance(o, SimulatedCrash) for o in outcomes)
        adopted = sum(o["digests"]["adopted"] for o in outcomes if isinstance(o, dict))
        assert adopted == (1 if point == "after_digest_put" else 0)
        now = clock.now()
        world.seed(30, now - timedelta(minutes=4), now - timedelta(minutes=3), seed=7)
        tick(stack, world, clock)  # the chain goes on from whatever the crash left
    chains = {body["stream"] for body, _ in digests_of(stack).values()}
    assert len(chains) == world.streams
    assert_verifies_clean(stack, clock)


def test_a_retried_digest_write_is_adopted_not_written_twice(stack: LocalStack, asana: World, clock: Clock,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The client retries a write whose first attempt succeeded: the retry fails its condition, and the digest
    there (this run's own) is adopted."""
    seed(asana, clock)
    real_put = DigestWriter._put

    def put_then_retry(self: DigestWriter, key: str, body: bytes, signature: str) -> bool:
        assert real_put(self, key, body, signature)
        return real_put(self, key, body, signature)  # the retry: If-None-Match fails

    monkeypatch.setattr(DigestWriter, "_put", put_then_retry)
    summary = tick(stack, asana, clock)
    assert isinstance(summary, dict) and summary["status"] == "ok", summary
    assert summary["digests"]["adopted"] == 1 and summary["digests"]["written"] == 0
    monkeypatch.setattr(DigestWriter, "_put", real_put)
    now = clock.now()
    asana.seed(30, now - timedelta(minutes=4), now - timedelta(minutes=3), seed=8)
    tick(stack, asana, clock)
    assert sorted(digests_of(stack)) == [f"digests/vendor=asana/stream=asana-1200000000000001/{n:010d}.json"
                                         for n in (1, 2)]
    assert_verifies_clean(stack, clock)


def test_a_digest_that_cannot_be_written_fails_the_run_after_its_commit(stack: LocalStack, asana: World,
                                                                        clock: Clock,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    seed(asana, clock)
    real_sign = DigestWriter._sign

    def refused(self: DigestWriter, message: bytes) -> str:
        raise DigestError("KMS refused to sign a digest: DisabledException: the key is disabled")

    monkeypatch.setattr(DigestWriter, "_sign", refused)
    failed = tick(stack, asana, clock)
    assert isinstance(failed, Exception) and "digest" in str(failed) and "DisabledException" in str(failed)
    state = states(stack)["asana#1200000000000001"]
    assert state.done_until is not None and state.events_archived == 400, "the collection itself is committed"
    assert len(state.digest.objects) == summary_objects(stack) and state.digest.sequence == 0
    assert state.status["last_outcome"] == "error" and "digest" in state.status["last_error"]
    monkeypatch.setattr(DigestWriter, "_sign", real_sign)
    summary = tick(stack, asana, clock)
    assert isinstance(summary, dict) and summary["digests"]["written"] == 1
    (body, _), = digests_of(stack).values()
    assert len(body["objects"]) == summary_objects(stack) and body["records"] == 400
    assert_verifies_clean(stack, clock)


def summary_objects(stack: LocalStack) -> int:
    return boto3.client("s3").list_objects_v2(Bucket=stack.bucket, Prefix="events/")["KeyCount"]


def test_a_busy_run_seals_early_so_the_state_stays_small(stack: LocalStack, asana: World, clock: Clock,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(digest, "MAX_PENDING_OBJECTS", 4)
    sizes: list[int] = []
    real_save = StateStore.save

    def save(self: StateStore, state: StreamState, *args: Any, **kwargs: Any) -> None:
        sizes.append(len(state.digest.objects))
        real_save(self, state, *args, **kwargs)

    monkeypatch.setattr(StateStore, "save", save)
    seed(asana, clock, count=900, days=20)
    summary = tick(stack, asana, clock, MAX_OBJECT_EVENTS="100")
    assert isinstance(summary, dict) and summary["status"] == "ok"
    assert summary["s3"]["objects"] > 12
    assert summary["digests"]["written"] >= 3
    # A part adds its objects (one per day it spans, about three here) in the commit that may then seal: never
    # more than the cap plus one part's objects wait in the state.
    assert max(sizes) <= 8, sizes
    assert_verifies_clean(stack, clock)


def test_a_digest_that_does_not_continue_the_chain_stops_the_collector(stack: LocalStack, asana: World,
                                                                        clock: Clock) -> None:
    """Something other than the collector wrote at the chain's next key: the collector does not adopt it, does not
    write around it, and says so (after committing its collection)."""
    seed(asana, clock)
    tick(stack, asana, clock)
    foreign = {"format": digest.FORMAT, "stream": "asana#1200000000000001", "sequence": 2,
               "previous": {"key": "elsewhere", "sha256": "0" * 64}, "objects": [], "covered": [],
               "created_at": "2026-01-01T00:00:00.000Z", "cursor_after": {}}
    boto3.client("s3").put_object(Bucket=stack.bucket, Body=json.dumps(foreign).encode(),
                                  Key="digests/vendor=asana/stream=asana-1200000000000001/0000000002.json")
    now = clock.now()
    asana.seed(20, now - timedelta(minutes=4), now - timedelta(minutes=3), seed=2)
    failed = tick(stack, asana, clock)
    assert isinstance(failed, Exception) and "does not continue the chain" in str(failed)
    state = states(stack)["asana#1200000000000001"]
    assert state.digest.sequence == 1 and state.events_archived == 420 and state.digest.objects


def test_object_lock_holds_the_digests_too(clock: Clock, pauses: Any) -> None:
    with LocalStack.start({"ObjectLockMode": "GOVERNANCE", "ObjectLockRetentionDays": "30"}) as stack, \
            world_of("asana", stack, clock.now) as world:
        seed(world, clock, count=50)
        tick(stack, world, clock)
        s3 = boto3.client("s3")
        (version,) = s3.list_object_versions(Bucket=stack.bucket, Prefix="digests/")["Versions"]
        with pytest.raises(s3.exceptions.ClientError, match="AccessDenied"):
            s3.delete_object(Bucket=stack.bucket, Key=version["Key"], VersionId=version["VersionId"])


def test_the_archive_put_returns_the_version_the_digest_names(stack: LocalStack) -> None:
    builder = PartBuilder(StreamKey("asana", "s"), "w", 1)
    builder.add(parse_time("2026-11-01T00:00:00Z"), b'{"event_time":"2026-11-01T00:00:00.000Z"}\n')
    (obj,) = builder.seal()
    archive = Archive(boto3.client("s3"), stack.bucket, stack.functions_env("ARCHIVE_KMS_KEY_ARN"))
    version = archive.put(obj)
    assert version and version == obj.version_id
    assert boto3.client("s3").head_object(Bucket=stack.bucket, Key=obj.key)["VersionId"] == version
