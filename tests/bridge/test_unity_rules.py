"""The bridge against com.unity.ml-agents' C# rules, over real gRPC, the stand-in games playing Unity's part.

See docs/unity-semantics.md for the full table of rules and their C# sources.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from unimarl.bridge import ActionError, ActionTuple, UnityClosedError, UnityConnection
from unimarl.bridge.decode import decode_output, floats_hwc_under_chw
from unimarl.protos import (
    ActionSpecProto,
    AgentInfoProto,
    BrainParametersProto,
    ObservationProto,
    UnityRLOutputProto,
)
from unimarl.sim import make_build

BATTLE = ("--team-size", "3", "--grid", "10", "--view", "5")
TEAM0, COOP = "Battle?team=0", "CoopNav?team=0"


def _first_local_views(tmp_path: Path, version: str) -> tuple[str, np.ndarray]:
    build = make_build("battle", tmp_path / version, extra_args=[*BATTLE, "--package-version", version])
    with UnityConnection(build, seed=3, timeout=30, log_dir=tmp_path / f"logs-{version}") as connection:
        output = connection.reset()
        view = output.steps[TEAM0].decision.obs[0]
        return connection.visual_layout, view


def test_visual_observations_decode_alike_for_every_package_version(tmp_path: Path) -> None:
    """3.0.0 declares [C, H, W] but writes H, W, C floats (3.0.0 Runtime/Sensors/ObservationWriter.cs:151,
    Runtime/Inference/TensorExtensions.cs:56-63); 4.0.1 writes C, H, W (TensorExtensions.cs:60-62,
    CHANGELOG.md:13 "#6239"). The same game decodes to the same array from either, and to the 2.x HWC
    array transposed."""
    layouts, views = zip(
        *(_first_local_views(tmp_path, v) for v in ("2.2.1-exp.1", "3.0.0", "4.0.1")), strict=True
    )
    assert layouts == ("HWC", "CHW", "CHW")
    hwc, v3, v4 = views
    assert v3.shape == v4.shape == (3, 5, 5, 5)
    assert not np.array_equal(v4.ravel(), hwc.ravel()), "the two float orders differ for this view"
    np.testing.assert_array_equal(v3, v4)
    np.testing.assert_array_equal(v4, hwc.transpose(0, 3, 1, 2))


def _csharp_3_0_0_floats(values: np.ndarray) -> list[float]:
    """The float list 3.0.0's ObservationWriter[c, h, w] writes for a [C, H, W] observation: element (c, h, w)
    at TensorShape.Index = h * W * C + w * C + c (3.0.0 Runtime/Inference/TensorExtensions.cs:56-63)."""
    c_size, h_size, w_size = values.shape
    data = [0.0] * values.size
    for c in range(c_size):
        for h in range(h_size):
            for w in range(w_size):
                data[h * w_size * c_size + w * c_size + c] = float(values[c, h, w])
    return data


@pytest.mark.parametrize("agents", [1, 3])  # one agent: the per-agent path; three: the column fast path
def test_decode_undoes_the_3_0_0_float_order(agents: int) -> None:
    values = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4) * 10  # [C=2, H=3, W=4], all distinct
    infos = []
    for i in range(agents):
        obs = ObservationProto(shape=(2, 3, 4), dimension_properties=(1, 2, 2), name="Camera")
        obs.float_data.data.extend(_csharp_3_0_0_floats(values + i))
        infos.append(AgentInfoProto(id=i, observations=[obs]))
    out = UnityRLOutputProto()
    out.agentInfos[TEAM0].value.extend(infos)
    brain = BrainParametersProto(
        brain_name=TEAM0, action_spec=ActionSpecProto(num_discrete_actions=1, discrete_branch_sizes=[2])
    )
    decoded = (
        decode_output(out, [brain], {}, visual_layout="CHW", hwc_floats=floats_hwc_under_chw("3.0.0"))
        .steps[TEAM0]
        .decision.obs[0]
    )
    np.testing.assert_array_equal(decoded, np.stack([values + i for i in range(agents)]))


@pytest.mark.parametrize(
    ("version", "quirk"),
    [
        ("2.2.1-exp.1", False),
        ("3.0.0", True),
        ("3.1.0-exp.1", True),
        ("4.0.0", True),
        ("4.0.1", False),
        ("4.2.0", False),
    ],
)
def test_which_package_versions_write_hwc_floats(version: str, quirk: bool) -> None:
    """The bug is in 3.0.0's TensorExtensions.Index and fixed in the 4.0.1 release (#6239)."""
    assert floats_hwc_under_chw(version) is quirk


def test_game_that_quits_on_its_own_is_answered_and_reported(tmp_path: Path) -> None:
    """Academy.Dispose -> RpcCommunicator.Dispose sends a bare header-400 exchange and waits for the answer
    (RpcCommunicator.cs:269-285; Academy.cs:253): the bridge answers at once and raises UnityClosedError."""
    build = make_build("coop_nav", tmp_path / "build", extra_args=["--quit-after", "2"])
    connection = UnityConnection(build, seed=0, timeout=30, log_dir=tmp_path / "logs")
    with connection:
        connection.reset()
        zeros = {COOP: ActionTuple(np.zeros((3, 0), np.float32), np.zeros((3, 1), np.int64))}
        connection.step(zeros)
        with pytest.raises(UnityClosedError, match=r"header\.status=400 .*the game closed its side"):
            connection.step(zeros)
        assert connection.process is not None
        deadline = time.monotonic() + 20
        while connection.process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert connection.process.poll() == 0, "the game got its answer and exited before close()"


def test_bridge_never_sends_fewer_actions_than_agents(tmp_path: Path) -> None:
    """Fewer actions than deciding agents make Unity throw (RpcCommunicator.cs:430-440) and the sim exit: the
    bridge refuses to send them, and a behaviour left out gets one zero action per agent."""
    build = make_build("coop_nav", tmp_path / "build")
    with UnityConnection(build, seed=0, timeout=30, log_dir=tmp_path / "logs") as connection:
        connection.reset()
        with pytest.raises(ActionError):
            connection.step({COOP: ActionTuple(np.zeros((2, 0), np.float32), np.zeros((2, 1), np.int64))})
        output = connection.step({})  # left out: zeros for all 3
        assert len(output.steps[COOP].decision) == 3
        output = connection.step({COOP: ActionTuple(np.zeros((3, 0), np.float32), np.ones((3, 1), np.int64))})
        assert connection.process is not None and connection.process.poll() is None
