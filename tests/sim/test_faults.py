"""Each ``--misbehave`` mode and the answer timeout, observed from the trainer side of the wire."""

from __future__ import annotations

import queue

import numpy as np
import pytest
from google.protobuf.message import DecodeError

from unimarl.protos import UnityMessageProto

COOP = "CoopNav?team=0"


def _start(trainer, launch, mode: str, *flags: str):
    proc = launch("coop_nav", trainer.port, "--misbehave", mode, *flags)
    trainer.handshake()
    trainer.reset()
    return proc


def test_die_exits_3_mid_episode(trainer, launch):
    proc = _start(trainer, launch, "die:2")
    trainer.step()
    trainer.command(0)
    assert proc.wait(timeout=20) == 3
    assert "--misbehave die" in proc.log_path.read_text()


def test_hang_stops_answering(trainer, launch):
    proc = _start(trainer, launch, "hang:1")
    trainer.command(0)
    with pytest.raises(queue.Empty):
        trainer.receive_raw(timeout=2.0)
    assert proc.poll() is None


def test_malformed_sends_unparseable_bytes(trainer, launch):
    _start(trainer, launch, "malformed:1")
    trainer.command(0)
    with pytest.raises(DecodeError):
        UnityMessageProto().ParseFromString(trainer.receive_raw())


def test_bad_version_announces_api_2(trainer, launch):
    launch("coop_nav", trainer.port, "--misbehave", "bad-version")
    first, _ = trainer.handshake()
    assert first.unity_output.rl_initialization_output.communication_version == "2.0.0"


@pytest.mark.parametrize("mode", ["bad-shape:1", "nan:1"])
def test_corrupt_observation(trainer, launch, wire, mode):
    launch("coop_nav", trainer.port, "--misbehave", mode)
    trainer.handshake()
    clean = trainer.reset()
    assert all(len(i.observations[0].float_data.data) == 14 for i in wire.agents(clean, COOP))
    infos = wire.agents(trainer.step(), COOP)  # the output after N = 1 applied steps is corrupted
    data = [np.asarray(i.observations[0].float_data.data) for i in infos]
    if mode.startswith("bad-shape"):
        assert [len(d) for d in data] == [13, 14, 14]
    else:
        assert np.isnan(data[0][0]) and not np.isnan(np.concatenate(data[1:])).any()


def test_no_answer_within_timeout_exits_1(trainer, launch):
    proc = launch("coop_nav", trainer.port, "--timeout", "1")
    trainer.receive()  # call #1, never answered
    assert proc.wait(timeout=20) == 1
    assert "no answer from the trainer" in proc.log_path.read_text()


def test_an_unparsable_trainer_reply_exits_1_with_a_reason(trainer, launch):
    proc = launch("coop_nav", trainer.port)
    trainer.receive_raw()  # call #1: the initialization output
    trainer.replies.put(b"\xff\xff\xff")  # not a UnityMessageProto
    assert proc.wait(timeout=20) == 1
    assert "answered 3 bytes that are not a message" in proc.log_path.read_text()
