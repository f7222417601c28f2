"""Stream keys (state.StreamKey): a value whose string is the state item's key, exactly as stored since the first
release, read back by `parse` alone; and the archive's and the digests' names derived from it."""

from __future__ import annotations

from datetime import date

import pytest

from auditlake.archive import PartBuilder, stream_part
from auditlake.digest import digest_key, stream_prefix
from auditlake.state import Kind, StreamKey
from auditlake.timeutil import parse_time

# A stream id of each vendor, as its adapter names it (ClickUp's hold ':' and '-').
STREAMS = [("asana", "1200000000000001"), ("ashby", "organization"), ("clickup", "9015123456:auth-and-security"),
           ("make", "4821")]


@pytest.mark.parametrize(("vendor", "stream"), STREAMS)
def test_a_key_is_the_string_already_stored_and_reads_back(vendor: str, stream: str) -> None:
    key = StreamKey(vendor, stream)
    assert str(key) == f"{vendor}#{stream}"
    assert str(key.backfill) == f"{vendor}#{stream}#backfill"
    assert str(key.reconcile) == f"{vendor}#{stream}#reconcile"
    for kind in Kind:
        assert StreamKey.parse(str(key.with_kind(kind))) == key.with_kind(kind)
        assert key.with_kind(kind).live == key and key.with_kind(kind).kind is kind


def test_keys_are_values() -> None:
    key = StreamKey("asana", "1")
    assert key == StreamKey("asana", "1", Kind.LIVE) and hash(key) == hash(StreamKey("asana", "1"))
    assert key != key.backfill and len({key, key.backfill, key.reconcile, StreamKey("asana", "1")}) == 3
    with pytest.raises(AttributeError):
        key.kind = Kind.BACKFILL  # type: ignore[misc]


@pytest.mark.parametrize("text", ["", "asana", "asana#", "#1", "asana#1#", "asana#1#live", "asana#1#backfill#x",
                                  "asana#1#archive", "asana#1#backfill#backfill",
                                  "digests/vendor=asana/stream=asana-1/"])
def test_parse_refuses_what_is_no_stream_key(text: str) -> None:
    with pytest.raises(ValueError, match=r"not a stream key|empty or holds"):
        StreamKey.parse(text)


@pytest.mark.parametrize(("vendor", "stream"), [("", "1"), ("asana", ""), ("as#ana", "1"), ("asana", "1#backfill")])
def test_a_key_refuses_parts_that_would_not_read_back(vendor: str, stream: str) -> None:
    with pytest.raises(ValueError, match="empty or holds '#'"):
        StreamKey(vendor, stream)


def test_a_key_refuses_a_kind_that_is_not_a_kind() -> None:
    with pytest.raises(TypeError):
        StreamKey("asana", "1", "backfill")  # type: ignore[arg-type]


def test_object_and_digest_names_follow_the_key() -> None:
    key = StreamKey("clickup", "9015123456:auth-and-security")
    assert stream_part(key) == "clickup-9015123456-auth-and-security"
    assert stream_part(key.backfill) == "clickup-9015123456-auth-and-security-backfill"
    builder = PartBuilder(key.reconcile, "20261101T000000000Z-20261101T001000000Z", 2)
    builder.add(parse_time("2026-11-01T00:05:00Z"), b"{}\n")
    assert builder.keys() == ["events/vendor=clickup/dt=2026-11-01/clickup-9015123456-auth-and-security-reconcile_"
                              "20261101T000000000Z-20261101T001000000Z_p000002.json.gz"]
    assert stream_prefix(key.backfill) == "digests/vendor=clickup/stream=clickup-9015123456-auth-and-security-backfill/"
    assert digest_key(key, 7) == "digests/vendor=clickup/stream=clickup-9015123456-auth-and-security/0000000007.json"


class Listing:
    """An S3 client's list_objects_v2 paginator over a fixed set of keys."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys

    def get_paginator(self, _name: str) -> Listing:
        return self

    def paginate(self, Bucket: str, Prefix: str) -> list[dict[str, list[dict[str, str]]]]:
        return [{"Contents": [{"Key": k} for k in self.keys if k.startswith(Prefix)]}]


def test_a_streams_objects_are_those_of_its_three_kinds_and_no_other_stream() -> None:
    from auditlake.archive import Archive  # noqa: PLC0415

    day = "events/vendor=asana/dt=2026-11-01/"
    mine = [f"{day}asana-1_w_p000001.json.gz", f"{day}asana-1-backfill_w_p000001.json.gz",
            f"{day}asana-1-reconcile_w_p000003.json.gz"]
    others = [f"{day}asana-12_w_p000001.json.gz", f"{day}asana-1-other_w_p000001.json.gz",
              "events/vendor=asana/dt=2026-11-02/asana-1_w_p000001.json.gz"]
    archive = Archive(Listing(mine + others), "bucket", "key")
    for kind in Kind:
        assert archive.stream_objects(StreamKey("asana", "1", kind), [date(2026, 11, 1)]) == mine


# --- accounts: a named account's keys beside the default account's, which are as they always were ------------------


@pytest.mark.parametrize(("vendor", "stream"), STREAMS)
@pytest.mark.parametrize("account", ["us-sub", "a", "0-org", "x" * 31])
def test_a_named_accounts_key_reads_back(vendor: str, stream: str, account: str) -> None:
    key = StreamKey(vendor, stream, account=account)
    assert str(key) == f"{vendor}@{account}#{stream}"
    assert str(key.reconcile) == f"{vendor}@{account}#{stream}#reconcile"
    assert key.account_name == account and StreamKey(vendor, stream).account_name == "default"
    for kind in Kind:
        assert StreamKey.parse(str(key.with_kind(kind))) == key.with_kind(kind)
        assert key.with_kind(kind).account == account and key.with_kind(kind).live == key
    assert key != StreamKey(vendor, stream) and StreamKey.parse(str(StreamKey(vendor, stream))).account is None


@pytest.mark.parametrize("account", ["", "default", "US", "-x", "a_b", "a#b", "a@b", "x" * 32, "a b", 7])
def test_a_key_refuses_what_is_no_account_name(account: object) -> None:
    with pytest.raises(ValueError, match="is not one"):
        StreamKey("make", "4187", account=account)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["make@#4187", "make@default#4187", "make@US#4187", "make@a@b#4187", "@x#4187",
                                  "make@x", "make@x#4187#live"])
def test_parse_refuses_what_is_no_named_accounts_key(text: str) -> None:
    with pytest.raises(ValueError, match=r"not a stream key|is not one|empty or holds"):
        StreamKey.parse(text)


def test_a_named_accounts_objects_and_digests_are_its_own() -> None:
    """Its names follow from its key (S3-safe), and never begin like another stream's of the vendor."""
    key = StreamKey("make", "4190", account="us-sub")
    assert stream_part(key) == "make-us-sub-4190" and stream_part(key.backfill) == "make-us-sub-4190-backfill"
    assert stream_prefix(key) == "digests/vendor=make/stream=make-us-sub-4190/"
    assert digest_key(key.reconcile, 2) == "digests/vendor=make/stream=make-us-sub-4190-reconcile/0000000002.json"
    default = StreamKey("make", "4187")
    assert stream_part(default) == "make-4187" and stream_prefix(default) == "digests/vendor=make/stream=make-4187/"
    names = {stream_part(k.with_kind(kind)) + "_" for k in (key, default) for kind in Kind}
    assert not any(a != b and a.startswith(b) for a in names for b in names)
