"""Hot-swap through the real wire: a sim game receives, acknowledges and runs pushed models, and rejects
corrupt, truncated, oversized, hash-mismatched and unloadable ones while keeping its previous policy."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np

from unimarl.bridge.policy_channel import PolicyChannel
from unimarl.protos._generated.policy_channel_pb2 import PolicyChunkProto
from unimarl.protos.policy_wire import MAX_MODEL_SIZE, RejectReason, encode_policy


def _edit(payload: bytes, **fields: object) -> bytes:
    chunk = PolicyChunkProto()
    chunk.ParseFromString(payload)
    for key, value in fields.items():
        setattr(chunk, key, value)
    return chunk.SerializeToString()


def _flip_last_byte(payload: bytes) -> bytes:
    chunk = PolicyChunkProto()
    chunk.ParseFromString(payload)
    chunk.data = chunk.data[:-1] + bytes([chunk.data[-1] ^ 0xFF])
    return chunk.SerializeToString()


def _bad_transfers(behavior: str, good: bytes) -> list[tuple[RejectReason, int, list[bytes]]]:
    """(expected reason, version, chunk payloads) of each faulty transfer, as sent on the wire."""
    mismatch = encode_policy(behavior, 2, good, 4096)
    mismatch[-1] = _flip_last_byte(mismatch[-1])
    truncated = [_edit(p, total_size=len(good)) for p in encode_policy(behavior, 3, good[:-100], 4096)]
    oversized = [_edit(encode_policy(behavior, 4, good, 4096)[0], total_size=MAX_MODEL_SIZE + 1)]
    corrupt = [_edit(encode_policy(behavior, 5, good, 4096)[0], sha256=b"short")]
    return [
        (RejectReason.HASH_MISMATCH, 2, mismatch),
        (RejectReason.TRUNCATED, 3, truncated),
        (RejectReason.OVERSIZED, 4, oversized),
        (RejectReason.CORRUPT, 5, corrupt),
        (RejectReason.LOAD_FAILED, 6, encode_policy(behavior, 6, b"not an onnx model", 4096)),
    ]


def test_push_ack_and_rejections_keep_the_running_policy(tmp_path: Path, hs: ModuleType) -> None:
    good = hs.coop_nav_model(tmp_path, seed=1)
    channel = PolicyChannel(chunk_size=4096)
    record = tmp_path / "record.jsonl"
    env = hs.open_game(tmp_path, channel, "--behavior-type", "inference", "--record", str(record))
    try:
        obs, _ = env.reset()
        history = [obs]
        digest = channel.push(hs.BEHAVIOR, 1, good)
        for _ in range(2):
            history.append(env.step(hs.zero_actions(env))[0])
        status = channel.status()[hs.BEHAVIOR]
        assert (status.running_version, status.running_sha256) == (1, digest)
        assert status.last_ack is not None and status.last_ack.ok and status.round_trip_s is not None
        for reason, version, payloads in _bad_transfers(hs.BEHAVIOR, good):
            channel.push_payloads(hs.BEHAVIOR, version, b"", payloads)
            for _ in range(2):
                history.append(env.step(hs.zero_actions(env))[0])
            status = channel.status()[hs.BEHAVIOR]
            assert status.last_ack is not None
            assert (status.last_ack.version, status.last_ack.reason) == (version, reason), (
                status.last_ack.error
            )
            assert not status.last_ack.ok and status.last_ack.error
            assert status.running_version == 1
    finally:
        env.close()
    applied, expected = hs.applied_vs_model(record, history, good)
    assert len(applied) >= 10 * 3  # every step after the swap, 3 agents each
    assert len(np.unique(expected)) > 1  # the comparison is not between constant actions
    np.testing.assert_array_equal(applied, expected)


def test_default_behavior_type_acknowledges_but_keeps_trainer_actions(tmp_path: Path, hs: ModuleType) -> None:
    channel = PolicyChannel()
    record = tmp_path / "record.jsonl"
    env = hs.open_game(tmp_path, channel, "--record", str(record))
    try:
        env.reset()
        channel.push(hs.BEHAVIOR, 7, hs.coop_nav_model(tmp_path, seed=2))
        for _ in range(3):
            env.step(hs.zero_actions(env))
    finally:
        env.close()
    assert channel.running_versions() == {hs.BEHAVIOR: 7}
    assert "inferred" not in record.read_text()


def test_newer_push_replaces_the_running_policy(tmp_path: Path, hs: ModuleType) -> None:
    first, second = hs.coop_nav_model(tmp_path, seed=3), hs.coop_nav_model(tmp_path, seed=4)
    channel = PolicyChannel(chunk_size=2048)
    record = tmp_path / "record.jsonl"
    env = hs.open_game(tmp_path, channel, "--behavior-type", "inference", "--record", str(record))
    try:
        obs, _ = env.reset()
        history = [obs]
        channel.push(hs.BEHAVIOR, 1, first)
        history.append(env.step(hs.zero_actions(env))[0])
        channel.push(hs.BEHAVIOR, 2, second)
        history.append(env.step(hs.zero_actions(env))[0])
        lines_before = len(record.read_text().splitlines())
        for _ in range(4):
            history.append(env.step(hs.zero_actions(env))[0])
    finally:
        env.close()
    assert channel.running_versions() == {hs.BEHAVIOR: 2}
    assert [a.version for a in channel.pop_acks()] == [1, 2]
    # from the step after v2's acknowledgement on, the game acts as v2 does
    tail = tmp_path / "tail.jsonl"
    lines = record.read_text().splitlines()
    tail.write_text("\n".join(["{}"] * lines_before + lines[lines_before:]) + "\n")
    applied, expected = hs.applied_vs_model(tail, history, second)
    np.testing.assert_array_equal(applied, expected)
