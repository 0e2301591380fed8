"""decode_output on hand-built protos: observation kinds, masks, terminal/decision split, error paths."""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest
from PIL import Image

import unimarl.bridge.decode as decode_module
from unimarl.bridge.decode import decode_output, visual_layout_for
from unimarl.bridge.errors import ObservationError, ProtocolError
from unimarl.bridge.png import split_pngs
from unimarl.bridge.spec import DimensionProperty, ObservationType
from unimarl.protos import (
    ActionSpecProto,
    AgentInfoProto,
    BrainParametersProto,
    CompressionTypeProto,
    ObservationProto,
    UnityRLOutputProto,
)

B = "Walker?team=0"


def brain(name: str = B, continuous: int = 0, branches: tuple[int, ...] = ()) -> BrainParametersProto:
    spec = ActionSpecProto(
        num_continuous_actions=continuous, num_discrete_actions=len(branches), discrete_branch_sizes=branches
    )
    return BrainParametersProto(brain_name=name, action_spec=spec, is_training=True)


def float_obs(values, shape=None, name: str = "", props=()) -> ObservationProto:
    values = np.asarray(values, np.float32)
    obs = ObservationProto(shape=shape or values.shape, dimension_properties=props, name=name)
    obs.float_data.data.extend(values.ravel().tolist())
    return obs


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def output(agents: list[AgentInfoProto], name: str = B) -> UnityRLOutputProto:
    out = UnityRLOutputProto()
    out.agentInfos[name].value.extend(agents)
    return out


def decode(out, brains=(), known=None, layout="HWC", nan_policy="raise", warned=None):
    return decode_output(
        out, list(brains), known or {}, visual_layout=layout, nan_policy=nan_policy, warned=warned
    )


def test_visual_layout_by_package_major() -> None:
    assert visual_layout_for("2.2.1-exp.1") == "HWC"
    assert visual_layout_for("3.0.0") == "CHW"
    assert visual_layout_for("4.0.0") == "CHW"
    with pytest.raises(ProtocolError, match=r"major version.*'develop'"):
        visual_layout_for("develop")


def test_spec_from_first_agent_and_brain() -> None:
    agent = AgentInfoProto(id=3)
    agent.observations.extend(
        [float_obs(np.zeros(4), props=[1], name="ray"), float_obs(np.zeros((2, 3)), name="goal")]
    )
    agent.observations[1].observation_type = 1
    result = decode(output([agent]), [brain(continuous=2, branches=(3, 2))])
    spec = result.new_specs[B]
    assert spec.action_spec.continuous_size == 2 and spec.action_spec.discrete_branches == (3, 2)
    assert spec.observation_specs[0].shape == (4,)
    assert spec.observation_specs[0].dimension_property == (DimensionProperty.NONE,)
    assert spec.observation_specs[1].dimension_property == (DimensionProperty.UNSPECIFIED,) * 2
    assert spec.observation_specs[1].observation_type == ObservationType.GOAL_SIGNAL
    assert [o.name for o in spec.observation_specs] == ["ray", "goal"]


def test_deprecated_action_fields_when_action_spec_is_empty() -> None:
    old = BrainParametersProto(brain_name=B, vector_action_size_deprecated=[3, 4])
    agent = AgentInfoProto(id=1, observations=[float_obs([1.0])])
    assert decode(output([agent]), [old]).new_specs[B].action_spec.discrete_branches == (3, 4)


def test_decision_terminal_split_and_scalars() -> None:
    rng = np.random.default_rng(1)
    values = rng.standard_normal((5, 8)).astype(np.float32)
    agents = [
        AgentInfoProto(id=10, reward=1.5, group_id=2, group_reward=0.5, observations=[float_obs(values[0])]),
        AgentInfoProto(
            id=11, reward=-1.0, done=True, max_step_reached=True, observations=[float_obs(values[1])]
        ),
        AgentInfoProto(id=12, reward=2.0, done=True, group_id=1, observations=[float_obs(values[2])]),
        # agent 11 ended its episode and immediately requested the next decision
        AgentInfoProto(id=11, reward=0.0, observations=[float_obs(values[3])]),
        AgentInfoProto(id=13, reward=0.25, max_step_reached=True, observations=[float_obs(values[4])]),
    ]
    steps = decode(output(agents), [brain(continuous=1)]).steps[B]
    d, t = steps.decision, steps.terminal
    assert d.agent_id.tolist() == [10, 11, 13] and t.agent_id.tolist() == [11, 12]
    np.testing.assert_array_equal(d.obs[0], values[[0, 3, 4]])
    np.testing.assert_array_equal(t.obs[0], values[[1, 2]])
    assert d.reward.tolist() == [1.5, 0.0, 0.25] and t.reward.tolist() == [-1.0, 2.0]
    assert t.interrupted.tolist() == [True, False] and d.interrupted.tolist() == [False] * 3
    assert d.group_id.tolist() == [2, 0, 0] and d.group_reward.tolist() == [0.5, 0.0, 0.0]
    assert t.group_id.tolist() == [0, 1]
    assert d.obs[0].dtype == np.float32 and d.action_mask is None and t.action_mask is None


def test_every_known_behaviour_has_steps() -> None:
    agent = AgentInfoProto(id=1, observations=[float_obs(np.zeros(3)), float_obs(np.zeros((4, 4, 2)))])
    first = decode(output([agent]), [brain()])
    later = decode(output([agent], name="Other"), [brain("Other")], known=first.new_specs)
    assert set(later.steps) == {B, "Other"} and set(later.new_specs) == {"Other"}
    empty = later.steps[B]
    assert len(empty.decision) == 0 and len(empty.terminal) == 0
    assert empty.decision.obs[1].shape == (0, 4, 4, 2)


def test_fast_path_with_differing_sensor_names_still_decodes() -> None:
    values = np.arange(12, dtype=np.float32).reshape(3, 4)
    agents = [AgentInfoProto(id=i, observations=[float_obs(values[i], name=f"s{i}")]) for i in range(3)]
    batch = decode(output(agents), [brain()]).steps[B].decision
    np.testing.assert_array_equal(batch.obs[0], values)


def test_rank3_float_observation_keeps_declared_shape() -> None:
    grid = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    agents = [AgentInfoProto(id=i, observations=[float_obs(grid + i)]) for i in range(2)]
    batch = decode(output(agents), [brain()], layout="CHW").steps[B].decision
    assert batch.obs[0].shape == (2, 2, 3, 4)
    np.testing.assert_array_equal(batch.obs[0][1], grid + 1)


def test_masks_split_per_branch_true_is_disabled() -> None:
    agents = [
        AgentInfoProto(id=0, observations=[float_obs([0.0])], action_mask=[True, False, False, False, True]),
        AgentInfoProto(id=1, observations=[float_obs([0.0])]),  # no mask sent: everything enabled
        AgentInfoProto(id=2, done=True, observations=[float_obs([0.0])], action_mask=[True] * 5),
    ]
    steps = decode(output(agents), [brain(branches=(3, 2))]).steps[B]
    mask = steps.decision.action_mask
    assert mask is not None and len(mask) == 2
    assert mask[0].tolist() == [[True, False, False], [False, False, False]]
    assert mask[1].tolist() == [[False, True], [False, False]]
    assert steps.terminal.action_mask is None
    full = [
        AgentInfoProto(id=i, observations=[float_obs([0.0])], action_mask=[i == 0, False, True])
        for i in (0, 1)
    ]
    uniform = decode(output(full), [brain(branches=(3,))]).steps[B].decision.action_mask
    assert uniform is not None and uniform[0].tolist() == [[True, False, True], [False, False, True]]


def test_mask_of_wrong_length_is_a_protocol_error() -> None:
    agents = [
        AgentInfoProto(id=0, observations=[float_obs([0.0])], action_mask=[True, False, False]),
        AgentInfoProto(id=7, observations=[float_obs([0.0])], action_mask=[True, False]),
    ]
    with pytest.raises(ProtocolError, match=r"agent 7: action mask of length 2, expected 3"):
        decode(output(agents), [brain(branches=(3,))])


def _png_agent(agent_id: int, image: np.ndarray, shape, mapping=()) -> AgentInfoProto:
    data = png_bytes(image) if image.ndim == 2 or image.shape[2] <= 4 else b""
    obs = ObservationProto(shape=shape, compression_type=CompressionTypeProto.PNG, compressed_data=data)
    obs.compressed_channel_mapping.extend(mapping)
    return AgentInfoProto(id=agent_id, observations=[obs])


@pytest.mark.parametrize("layout", ["HWC", "CHW"])
def test_png_rgb_in_game_layout(layout: str) -> None:
    image = np.random.default_rng(2).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    shape = (6, 5, 3) if layout == "HWC" else (3, 6, 5)
    batch = decode(output([_png_agent(0, image, shape)]), [brain()], layout=layout).steps[B].decision
    expected = image.astype(np.float32) / 255.0
    if layout == "CHW":
        expected = np.moveaxis(expected, -1, 0)
    assert batch.obs[0].shape == (1, *shape)
    np.testing.assert_allclose(batch.obs[0][0], expected, atol=1e-7)


def test_png_grayscale_mean_without_mapping() -> None:
    image = np.random.default_rng(3).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    batch = decode(output([_png_agent(0, image, (4, 4, 1))]), [brain()]).steps[B].decision
    np.testing.assert_allclose(batch.obs[0][0, :, :, 0], image.mean(axis=2) / 255.0, atol=1e-6)


def test_concatenated_pngs_with_channel_mapping() -> None:
    rng = np.random.default_rng(4)
    first, second = rng.integers(0, 256, (2, 3, 4, 3), dtype=np.uint8)
    obs = ObservationProto(
        shape=(3, 3, 4),
        compression_type=CompressionTypeProto.PNG,
        compressed_data=png_bytes(first) + png_bytes(second),
        compressed_channel_mapping=[0, 1, 2, 2, -1, -1],  # channel 2 averages two decoded channels
    )
    batch = (
        decode(output([AgentInfoProto(id=0, observations=[obs])]), [brain()], layout="CHW").steps[B].decision
    )
    f, s = first.astype(np.float32) / 255.0, second.astype(np.float32) / 255.0
    np.testing.assert_allclose(batch.obs[0][0, 0], f[:, :, 0], atol=1e-6)
    np.testing.assert_allclose(batch.obs[0][0, 2], (f[:, :, 2] + s[:, :, 0]) / 2, atol=1e-6)
    assert len(split_pngs(obs.compressed_data)) == 2


def test_png_errors() -> None:
    bad = ObservationProto(
        shape=(2, 2, 3), compression_type=CompressionTypeProto.PNG, compressed_data=b"garbage"
    )
    with pytest.raises(ObservationError, match=r"agent 5 observation 0: compressed observation is not a PNG"):
        decode(output([AgentInfoProto(id=5, observations=[bad])]), [brain()])
    image = np.zeros((2, 2, 3), np.uint8)
    with pytest.raises(ObservationError, match=r"PNG decodes to \(2, 2, 3\) \(HWC\), expected \(2, 3, 3\)"):
        decode(output([_png_agent(0, image, (2, 3, 3))]), [brain()])
    with pytest.raises(ObservationError, match="mapping has 2 entries but the PNGs decode to 3 channels"):
        decode(output([_png_agent(0, image, (2, 2, 2), mapping=[0, 1])]), [brain()])


def test_variable_length_observation_is_zero_padded() -> None:
    props = [DimensionProperty.VARIABLE_SIZE, DimensionProperty.NONE]
    agents = [
        AgentInfoProto(id=0, observations=[float_obs([1, 2, 3, 4], shape=(3, 2), props=props)]),
        AgentInfoProto(id=1, observations=[float_obs([5, 6], shape=(3, 2), props=props)]),
    ]
    batch = decode(output(agents), [brain()]).steps[B].decision
    assert batch.obs[0].tolist() == [[[1, 2], [3, 4], [0, 0]], [[5, 6], [0, 0], [0, 0]]]


def test_float_length_disagreeing_with_shape() -> None:
    agents = [
        AgentInfoProto(id=1, observations=[float_obs([1.0, 2.0])]),
        AgentInfoProto(id=9, observations=[float_obs([1.0, 2.0, 3.0], shape=(2,))]),
    ]
    with pytest.raises(
        ObservationError,
        match=r"'Walker\?team=0' agent 9 observation 0: float_data holds 3 values, "
        r"expected 2",
    ):
        decode(output(agents), [brain()])


def test_shape_differing_from_spec() -> None:
    known = decode(output([AgentInfoProto(id=1, observations=[float_obs(np.zeros(4))])]), [brain()]).new_specs
    later = output([AgentInfoProto(id=4, observations=[float_obs(np.zeros(5))])])
    with pytest.raises(ObservationError, match=r"agent 4 observation 0: shape \(5,\), expected \(4,\)"):
        decode(later, known=known)
    missing = output([AgentInfoProto(id=6)])
    with pytest.raises(ObservationError, match="agent 6: 0 observations, expected 1"):
        decode(missing, known=known)


def test_nan_policies(caplog: pytest.LogCaptureFixture) -> None:
    agents = [
        AgentInfoProto(id=i, observations=[float_obs([1.0, np.nan if i == 2 else 0.0])]) for i in range(3)
    ]
    with pytest.raises(ObservationError, match=r"agent\(s\) \[2\]: observation 0 holds NaN or inf"):
        decode(output(agents), [brain()])
    game_a: set[tuple[str, str]] = set()
    with caplog.at_level(logging.WARNING, logger="unimarl.bridge.decode"):
        warned = decode(output(agents), [brain()], nan_policy="warn", warned=game_a)
        decode(output(agents), [brain()], nan_policy="warn", warned=game_a)
    assert warned.steps[B].decision.obs[0][2].tolist() == [1.0, 0.0]
    assert sum("NaN or inf" in r.message for r in caplog.records) == 1  # once per game
    assert game_a == {(B, "observation 0")}
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="unimarl.bridge.decode"):
        decode(output(agents), [brain()], nan_policy="warn", warned=set())  # another game: its own warning
    assert sum("NaN or inf" in r.message for r in caplog.records) == 1
    ignored = decode(output(agents), [brain()], nan_policy="ignore")
    assert np.isnan(ignored.steps[B].decision.obs[0][2, 1])
    inf_reward = [AgentInfoProto(id=3, reward=np.inf, observations=[float_obs([0.0])])]
    with pytest.raises(ObservationError, match=r"agent\(s\) \[3\]: reward holds NaN or inf"):
        decode(output(inf_reward), [brain()])


def test_unannounced_behaviours_are_protocol_errors() -> None:
    with pytest.raises(ProtocolError, match=r"behaviour\(s\) \['Walker\?team=0'\] that were never announced"):
        decode(output([AgentInfoProto(id=1, observations=[float_obs([0.0])])]))
    with pytest.raises(ProtocolError, match="'Ghost' was announced without any agent info"):
        decode(UnityRLOutputProto(), [brain("Ghost")])


def test_bad_options_rejected() -> None:
    with pytest.raises(ValueError, match="visual_layout must be one of"):
        decode(UnityRLOutputProto(), layout="NHWC")
    with pytest.raises(ValueError, match="nan_policy must be one of"):
        decode(UnityRLOutputProto(), nan_policy="skip")


def test_side_channel_bytes_pass_through() -> None:
    out = UnityRLOutputProto(side_channel=b"\x01\x02")
    assert decode(out).side_channel == b"\x01\x02"


def _steps_equal(a, b) -> None:
    for part in ("decision", "terminal"):
        x, y = getattr(a, part), getattr(b, part)
        for key in ("agent_id", "reward", "group_id", "group_reward", "interrupted"):
            np.testing.assert_array_equal(getattr(x, key), getattr(y, key), err_msg=f"{part}.{key}")
            assert getattr(x, key).dtype == getattr(y, key).dtype
        for u, v in zip(x.obs, y.obs, strict=True):
            np.testing.assert_array_equal(u, v)
        if y.action_mask is None:
            assert x.action_mask is None, part
        else:
            for u, v in zip(x.action_mask, y.action_mask, strict=True):
                np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("case", ["uniform", "defaults", "mixed"])
def test_column_path_equals_per_agent_path(case: str) -> None:
    """Columns parsed in C agree with reading each agent, also when proto3 omits defaults for some agents."""
    rng = np.random.default_rng(1)
    agents = []
    for i in range(6):
        agent = AgentInfoProto(id=i if case != "uniform" else i + 1, reward=float(rng.random()))
        agent.observations.extend([float_obs(rng.random(3), name="ray"), float_obs(rng.random((2, 2)))])
        if case == "uniform":
            agent.action_mask.extend([False, True, False, False, True])
            agent.group_id, agent.group_reward = 2, 0.5
        if case == "mixed":
            agent.done = i in (1, 4)
            agent.max_step_reached = i == 4
            agent.group_id = i % 2
            if i % 3:
                agent.action_mask.extend([bool(i % 2), True, False, False, False])
        agents.append(agent)
    out = output(agents)
    result = decode(out, [brain(branches=(3, 2))])
    spec = result.new_specs[B]
    expected_ids = {"uniform": [1, 2, 3, 4, 5, 6], "defaults": [0, 1, 2, 3, 4, 5], "mixed": [0, 2, 3, 5]}
    assert result.steps[B].decision.agent_id.tolist() == expected_ids[case]
    per_agent = decode_module._Decoder("HWC", "raise", set()).behavior(spec, out.agentInfos[B].value)
    _steps_equal(result.steps[B], per_agent)


def test_column_path_names_an_agent_with_a_missing_observation() -> None:
    agents = [AgentInfoProto(id=i) for i in range(3)]
    for agent in agents[:2]:
        agent.observations.extend([float_obs([1.0, 2.0]), float_obs([3.0])])
    agents[2].observations.extend([float_obs([1.0, 2.0])])
    with pytest.raises(ObservationError, match="agent 2: 1 observations, expected 2"):
        decode(output(agents), [brain(continuous=1)])


def test_observation_counts_are_checked_per_agent_not_only_in_total() -> None:
    """Three observations on one agent and one on another add up to the expected total of four: the decoder
    must still name the agent instead of shifting observations between agents."""
    agents = [AgentInfoProto(id=i) for i in range(3)]
    for agent in agents:
        agent.observations.extend([float_obs([1.0, 2.0]), float_obs([3.0])])
    decode(output(agents), [brain(continuous=1)])  # the spec: two observations per agent
    agents[1].observations.append(float_obs([4.0]))
    del agents[2].observations[1]
    with pytest.raises(ObservationError, match="agent 1: 3 observations, expected 2"):
        decode(output(agents), [brain(continuous=1)])
