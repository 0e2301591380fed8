"""Hot-swap through the real wire: a sim game receives and acknowledges pushed models, and rejects corrupt,
truncated, oversized, hash-mismatched and unloadable ones while keeping its previous policy; the game's
policy runner then acts exactly as the running model does.

The wire tests use Default agents: as in Unity, agents that act from a received model (Inference Only) are
never reported to the trainer, so the game would not exchange. What the runner does with the models it keeps
is checked in-process against onnxruntime."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np

from unimarl.bridge.policy_channel import PolicyChannel
from unimarl.protos._generated.policy_channel_pb2 import PolicyChunkProto
from unimarl.protos.policy_wire import MAX_MODEL_SIZE, RejectReason, decode_ack, encode_policy
from unimarl.protos.sidechannel import unframe
from unimarl.sim.game import BehaviorDef, ObsDef
from unimarl.sim.policy_runner import PolicyRunner


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
    env = hs.open_game(tmp_path, channel)
    try:
        env.reset()
        digest = channel.push(hs.BEHAVIOR, 1, good)
        for _ in range(2):
            env.step(hs.zero_actions(env))
        status = channel.status()[hs.BEHAVIOR]
        assert (status.running_version, status.running_sha256) == (1, digest)
        assert status.last_ack is not None and status.last_ack.ok and status.round_trip_s is not None
        for reason, version, payloads in _bad_transfers(hs.BEHAVIOR, good):
            channel.push_payloads(hs.BEHAVIOR, version, b"", payloads)
            for _ in range(2):
                env.step(hs.zero_actions(env))
            status = channel.status()[hs.BEHAVIOR]
            assert status.last_ack is not None
            assert (status.last_ack.version, status.last_ack.reason) == (version, reason), (
                status.last_ack.error
            )
            assert not status.last_ack.ok and status.last_ack.error
            assert status.running_version == 1
    finally:
        env.close()


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
    env = hs.open_game(tmp_path, channel)
    try:
        env.reset()
        channel.push(hs.BEHAVIOR, 1, first)
        env.step(hs.zero_actions(env))
        channel.push(hs.BEHAVIOR, 2, second)
        for _ in range(3):
            env.step(hs.zero_actions(env))
    finally:
        env.close()
    assert channel.running_versions() == {hs.BEHAVIOR: 2}
    assert [a.version for a in channel.pop_acks()] == [1, 2]


def _model_actions(model: bytes, obs: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    feed = {"obs_0": obs, "action_masks": np.ones((len(obs), 5), np.float32)}
    return np.asarray(session.run(["deterministic_discrete_actions"], feed)[0])


def test_runner_acts_from_the_running_model_through_rejections_and_replacement(
    tmp_path: Path, hs: ModuleType
) -> None:
    """The game's policy runner (an Inference Only agent's decisions) acts as the model it acknowledged
    running: the first model, unchanged by every rejected transfer, then its replacement."""
    first, second = hs.coop_nav_model(tmp_path, seed=3), hs.coop_nav_model(tmp_path, seed=4)
    behavior = BehaviorDef(hs.BEHAVIOR, (ObsDef("VectorSensor", (14,)),), discrete_branches=(5,))
    runner = PolicyRunner(chw=False, inference=True)
    obs = np.random.default_rng(0).normal(size=(64, 14)).astype(np.float32)

    def acks() -> list[tuple[int, RejectReason]]:
        return [
            (a.version, a.reason) for a in map(decode_ack, (p for _, p in unframe(runner.pop_ack_frames())))
        ]

    for payload in encode_policy(hs.BEHAVIOR, 1, first, 4096):
        runner.receive(payload, {hs.BEHAVIOR: behavior})
    assert acks() == [(1, RejectReason.ACCEPTED)] and runner.acts_for(hs.BEHAVIOR)
    expected = _model_actions(first, obs)
    assert len(np.unique(expected)) > 1  # the comparison is not between constant actions
    for reason, version, payloads in _bad_transfers(hs.BEHAVIOR, first):
        for payload in payloads:
            runner.receive(payload, {hs.BEHAVIOR: behavior})
        assert acks() == [(version, reason)]
        np.testing.assert_array_equal(runner.act(behavior, [obs], None)[1], expected)
    for payload in encode_policy(hs.BEHAVIOR, 7, second, 4096):
        runner.receive(payload, {hs.BEHAVIOR: behavior})
    assert acks() == [(7, RejectReason.ACCEPTED)]
    np.testing.assert_array_equal(runner.act(behavior, [obs], None)[1], _model_actions(second, obs))
