"""Actor heads, action masking, distributions, the centralised critic's pooling, init, ONNX export."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from unimarl.bridge.spec import ActionSpec
from unimarl.trainers.algos.mappo.networks import (
    Actor,
    ActorOutput,
    Critic,
    CriticInputTensors,
    entropy,
    log_prob,
    sample_actions,
)
from unimarl.trainers.core.batch import PolicySpec
from unimarl.trainers.core.errors import ConfigError

HYBRID = PolicySpec(obs_shapes=((3,), (2, 2)), action_spec=ActionSpec(2, (3, 4)))
DISCRETE = PolicySpec(obs_shapes=((4,),), action_spec=ActionSpec(0, (3, 4)))


def obs_for(spec: PolicySpec, batch: int, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn((batch, *shape), generator=gen) for shape in spec.obs_shapes]


def test_actor_output_shapes_for_hybrid_actions() -> None:
    actor = Actor(HYBRID, hidden_sizes=(16, 16))
    out = actor(obs_for(HYBRID, 5), torch.ones(5, 7))
    assert out.continuous_mean is not None and out.continuous_mean.shape == (5, 2)
    assert out.continuous_log_std is not None and out.continuous_log_std.shape == (2,)
    assert [logits.shape for logits in out.discrete_logits] == [(5, 3), (5, 4)]
    continuous, discrete = sample_actions(
        out, deterministic=False, generator=torch.Generator().manual_seed(0)
    )
    assert continuous.shape == (5, 2) and discrete.shape == (5, 2) and discrete.dtype == torch.int64
    assert log_prob(out, continuous, discrete).shape == (5,)
    assert entropy(out).shape == (5,)


def test_masked_actions_are_never_sampled_and_have_zero_probability() -> None:
    actor = Actor(DISCRETE, hidden_sizes=(16,))
    batch = 10_000
    mask = torch.ones(batch, 7)
    mask[:, 1] = 0.0  # branch 0: action 1 forbidden
    mask[:, 3] = 0.0  # branch 1: actions 0 and 3 forbidden
    mask[:, 6] = 0.0
    out = actor(obs_for(DISCRETE, batch), mask)
    _, discrete = sample_actions(out, deterministic=False, generator=torch.Generator().manual_seed(1))
    assert not (discrete[:, 0] == 1).any()
    assert not torch.isin(discrete[:, 1], torch.tensor([0, 3])).any()
    assert set(discrete[:, 0].tolist()) == {0, 2} and set(discrete[:, 1].tolist()) == {1, 2}

    forbidden = torch.tensor([[1, 0]]).repeat(batch, 1)
    assert torch.exp(log_prob(out, torch.zeros(batch, 0), forbidden)).max().item() == 0.0
    assert torch.isfinite(entropy(out)).all()


def test_masked_entropy_equals_entropy_over_allowed_actions() -> None:
    logits = torch.tensor([[0.3, -1.0, 2.0]])
    masked = logits - (1.0 - torch.tensor([[1.0, 0.0, 1.0]])) * 1e8
    out = ActorOutput(None, None, [masked])
    allowed = torch.softmax(torch.tensor([0.3, 2.0]), dim=0)
    expected = -(allowed * torch.log(allowed)).sum()
    assert entropy(out).item() == pytest.approx(expected.item(), rel=1e-6)
    deterministic = sample_actions(out, deterministic=True)[1]
    assert deterministic.tolist() == [[2]]


def test_continuous_log_prob_and_entropy_match_normal() -> None:
    mean = torch.tensor([[0.5, -1.0]])
    log_std = torch.tensor([0.2, -0.3])
    out = ActorOutput(mean, log_std, [])
    action = torch.tensor([[1.0, 0.0]])
    reference = torch.distributions.Normal(mean, torch.exp(log_std))
    assert log_prob(out, action, torch.zeros(1, 0)).item() == pytest.approx(
        reference.log_prob(action).sum().item(), rel=1e-6
    )
    assert entropy(out).item() == pytest.approx(reference.entropy().sum().item(), rel=1e-6)


def test_hybrid_log_prob_is_sum_of_parts() -> None:
    out = ActorOutput(torch.zeros(1, 1), torch.zeros(1), [torch.log(torch.tensor([[0.25, 0.75]]))])
    logp = log_prob(out, torch.zeros(1, 1), torch.tensor([[1]]))
    assert logp.item() == pytest.approx(-0.5 * math.log(2 * math.pi) + math.log(0.75), rel=1e-6)


TEAM_SPEC = PolicySpec(obs_shapes=((3,),), action_spec=ActionSpec(0, (2,)))


def team_input(team_obs: torch.Tensor, team_mask: torch.Tensor | None = None) -> CriticInputTensors:
    """Teammates [B, K, D] as references into a source batch holding their observations."""
    batch, k, _ = team_obs.shape
    if team_mask is None:
        team_mask = torch.ones((batch, k), dtype=torch.bool)
    rows = torch.arange(batch * k).reshape(batch, k)
    return CriticInputTensors(
        team_rows=torch.where(team_mask, rows, -1),
        team_source=[team_obs.reshape(batch * k, team_obs.shape[2])],
    )


def test_critic_value_changes_with_a_teammates_observation() -> None:
    critic = Critic(TEAM_SPEC, hidden_sizes=(16, 16))
    own = [torch.randn(1, 3)]
    team = torch.randn(1, 2, 3)
    before = critic(own, team_input(team))
    changed = team.clone()
    changed[0, 1] += 1.0
    after = critic(own, team_input(changed))
    assert before.shape == (1,)
    assert abs(after.item() - before.item()) > 1e-4


def test_critic_is_permutation_invariant_and_ignores_padding() -> None:
    critic = Critic(TEAM_SPEC, hidden_sizes=(16, 16))
    own = [torch.randn(1, 3)]
    team = torch.randn(1, 2, 3)
    value = critic(own, team_input(team))
    swapped = critic(own, team_input(team.flip(1)))
    padded_obs = torch.cat([team, torch.full((1, 1, 3), 99.0)], dim=1)
    padded = critic(own, team_input(padded_obs, torch.tensor([[True, True, False]])))
    torch.testing.assert_close(swapped, value)
    torch.testing.assert_close(padded, value)


def test_critic_handles_no_teammates_and_varying_team_sizes() -> None:
    critic = Critic(TEAM_SPEC, hidden_sizes=(16,))
    own = [torch.randn(3, 3)]
    empty = critic(own, team_input(torch.zeros(3, 0, 3)))
    absent = critic(own, CriticInputTensors())
    torch.testing.assert_close(empty, absent)
    # rows with 0, 1 and 3 live teammates in one batch
    mask = torch.tensor([[False, False, False], [True, False, False], [True, True, True]])
    mixed = critic(own, team_input(torch.randn(3, 3, 3), mask))
    assert torch.isfinite(mixed).all()
    assert mixed[0].item() == pytest.approx(empty[0].item(), rel=1e-6)


def test_critic_with_global_state_uses_it() -> None:
    spec = PolicySpec(obs_shapes=((3,),), action_spec=ActionSpec(1, ()), state_shape=(2, 3))
    critic = Critic(spec, hidden_sizes=(16,))
    own = [torch.randn(2, 3)]
    state = torch.randn(2, 2, 3)
    before = critic(own, CriticInputTensors(state=state))
    after = critic(own, CriticInputTensors(state=state + 1.0))
    assert before.shape == (2,)
    assert (before - after).abs().min().item() > 1e-5


def test_orthogonal_init_gains() -> None:
    actor = Actor(HYBRID, hidden_sizes=(32, 32))
    critic = Critic(TEAM_SPEC, hidden_sizes=(32, 32))
    assert actor.logits_head is not None and actor.mean_head is not None
    for head, gain in ((actor.logits_head, 0.01), (actor.mean_head, 0.01), (critic.value_head, 1.0)):
        weight = head.weight.detach()
        torch.testing.assert_close(weight @ weight.T, gain**2 * torch.eye(weight.shape[0]))
        assert head.bias.abs().max().item() == 0.0
    first = actor.trunk[0].weight.detach()
    torch.testing.assert_close(first.T @ first, 2.0 * torch.eye(first.shape[1]), atol=1e-5, rtol=1e-5)


def test_unknown_activation_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown activation 'gelu'"):
        Actor(DISCRETE, activation="gelu")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_actor_exports_to_onnx_opset_15_with_small_operator_set() -> None:
    onnx = pytest.importorskip("onnx")

    class Wrapper(torch.nn.Module):
        def __init__(self, actor: Actor) -> None:
            super().__init__()
            self.actor = actor

        def forward(self, obs_0: torch.Tensor, obs_1: torch.Tensor, mask: torch.Tensor) -> tuple:
            out = self.actor([obs_0, obs_1], mask)
            return (out.continuous_mean, *out.discrete_logits)

    actor = Actor(HYBRID, hidden_sizes=(8, 8)).eval()
    buffer = io.BytesIO()
    args = (*obs_for(HYBRID, 2), torch.ones(2, 7))
    torch.onnx.export(Wrapper(actor), args, buffer, opset_version=15, dynamo=False)
    model = onnx.load_from_string(buffer.getvalue())
    ops = {node.op_type for node in model.graph.node}
    allowed = {"Flatten", "Reshape", "Concat", "Sub", "Div", "Clip", "Gemm", "MatMul", "Add", "Tanh", "Mul"}
    allowed |= {"ReduceMean", "Pow", "Sqrt", "Constant", "Slice", "Cast"}
    allowed |= {"Identity"}  # the exporter aliases equal initializers (e.g. zero biases) through Identity
    assert ops <= allowed, ops - allowed
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(buffer.getvalue())
    feeds = {i.name: a.numpy() for i, a in zip(session.get_inputs(), args, strict=True)}
    expected = actor([args[0], args[1]], args[2])
    got = session.run(None, feeds)
    np.testing.assert_allclose(got[0], expected.continuous_mean.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(got[2], expected.discrete_logits[1].detach().numpy(), atol=1e-5)
