"""The policy side-channel codec: chunking, reassembly, and every rejection reason."""

from __future__ import annotations

import hashlib

import pytest

from unimarl.protos._generated.policy_channel_pb2 import PolicyChunkProto
from unimarl.protos.policy_wire import (
    PolicyAssembler,
    PolicyRejectedError,
    RejectReason,
    decode_ack,
    encode_ack,
    encode_policy,
)

MODEL = bytes(range(256)) * 40  # 10240 bytes


def _chunk(payload: bytes, **changes: object) -> bytes:
    proto = PolicyChunkProto()
    proto.ParseFromString(payload)
    for key, value in changes.items():
        setattr(proto, key, value)
    return proto.SerializeToString()


def _feed_all(assembler: PolicyAssembler, payloads: list[bytes]) -> list[object]:
    results: list[object] = []
    for payload in payloads:
        try:
            results.append(assembler.feed(payload))
        except PolicyRejectedError as e:
            results.append(e.reason)
    return results


@pytest.mark.parametrize("size", [0, 1, 1000, 1024, 10240])
def test_round_trip(size: int) -> None:
    model = MODEL[:size]
    payloads = encode_policy("Striker?team=0", 7, model, chunk_size=1024)
    assert len(payloads) == max(1, -(-size // 1024))
    results = _feed_all(PolicyAssembler(), payloads)
    assert results[:-1] == [None] * (len(payloads) - 1)
    received = results[-1]
    assert received.model == model and received.version == 7 and received.behavior == "Striker?team=0"
    assert received.sha256 == hashlib.sha256(model).digest()


def test_behaviours_interleave() -> None:
    a = encode_policy("A", 1, MODEL, chunk_size=4000)
    b = encode_policy("B", 2, MODEL[::-1], chunk_size=4000)
    results = _feed_all(PolicyAssembler(), [a[0], b[0], a[1], b[1], b[2], a[2]])
    assert [r.behavior for r in results if r is not None] == ["B", "A"]


def test_newer_transfer_replaces_unfinished_one() -> None:
    old = encode_policy("A", 1, MODEL, chunk_size=4000)
    new = encode_policy("A", 2, MODEL[:5000], chunk_size=4000)
    results = _feed_all(PolicyAssembler(), [old[0], new[0], old[1], new[1]])
    assert results[:3] == [None, None, RejectReason.OUT_OF_ORDER]
    assert results[3] is not None and results[3].version == 2  # an old chunk does not end the new transfer


CASES = {
    "bad_wire_type": (lambda p: [p[0] + b"\x0f"], RejectReason.CORRUPT),
    "bad_utf8_name": (lambda p: [b"\x0a\x02\xc3\x28" + p[0]], RejectReason.CORRUPT),
    "cut_inside_field": (lambda p: [p[0][: len(p[0]) // 2]], RejectReason.CORRUPT),
    "short_hash": (lambda p: [_chunk(p[0], sha256=b"\x01" * 31)], RejectReason.CORRUPT),
    "index_outside_count": (lambda p: [_chunk(p[0], chunk_index=5)], RejectReason.CORRUPT),
    "more_than_declared": (lambda p: [_chunk(p[0], total_size=100)], RejectReason.CORRUPT),
    "count_changes": (lambda p: [p[0], _chunk(p[1], chunk_count=9)], RejectReason.CORRUPT),
    "truncated": (lambda p: [p[0], p[1], _chunk(p[2], data=p[2][-10:])], RejectReason.TRUNCATED),
    "oversized": (lambda p: [_chunk(p[0], total_size=1 << 30)], RejectReason.OVERSIZED),
    "hash_mismatch": (lambda p: [p[0], p[1], _chunk(p[2], data=b"\x00" * 2240)], RejectReason.HASH_MISMATCH),
    "skipped_chunk": (lambda p: [p[0], p[2]], RejectReason.OUT_OF_ORDER),
    "no_first_chunk": (lambda p: [p[1]], RejectReason.OUT_OF_ORDER),
    "duplicate_chunk": (lambda p: [p[0], p[1], p[1]], RejectReason.DUPLICATE_CHUNK),
    "duplicate_first": (lambda p: [p[0], p[0]], RejectReason.DUPLICATE_CHUNK),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_rejections(case: str) -> None:
    build, reason = CASES[case]
    payloads = build(encode_policy("Runner", 3, MODEL, chunk_size=4000))
    assembler = PolicyAssembler(max_model_size=1 << 20)
    for payload in payloads[:-1]:
        assert assembler.feed(payload) is None
    with pytest.raises(PolicyRejectedError, match=reason.name) as info:
        assembler.feed(payloads[-1])
    assert info.value.reason == reason


def test_rest_of_a_rejected_transfer_is_ignored() -> None:
    p = encode_policy("Runner", 3, MODEL, chunk_size=2000)
    results = _feed_all(PolicyAssembler(), [p[0], p[2], p[3], p[4], p[5], *encode_policy("Runner", 4, MODEL)])
    assert results[:5] == [None, RejectReason.OUT_OF_ORDER, None, None, None]
    assert results[5].version == 4


def test_ack_round_trip() -> None:
    digest = hashlib.sha256(MODEL).digest()
    ack = decode_ack(encode_ack("Runner", 3, digest, RejectReason.HASH_MISMATCH, "bad hash"))
    assert (ack.behavior, ack.version, ack.sha256, ack.ok, ack.reason, ack.error) == (
        "Runner",
        3,
        digest,
        False,
        RejectReason.HASH_MISMATCH,
        "bad hash",
    )
    assert decode_ack(encode_ack("Runner", 3, digest, RejectReason.ACCEPTED)).ok
    with pytest.raises(PolicyRejectedError, match="CORRUPT: acknowledgement does not parse"):
        decode_ack(b"\x0a\xff")


def test_encode_rejects_bad_arguments() -> None:
    with pytest.raises(PolicyRejectedError, match="chunk_size 0"):
        encode_policy("A", 1, MODEL, chunk_size=0)
    with pytest.raises(PolicyRejectedError, match="behaviour name is empty"):
        encode_policy("", 1, MODEL)
