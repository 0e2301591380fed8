"""How much does a trained MF-Q policy use its mean action? Measured on the states it meets in play.

The policy (an MF-Q checkpoint, side A) plays the battle game against ``--opponent`` (a checkpoint,
``scripted`` or ``random``) until ``--states`` of its decisions were recorded: observation, action mask and
the mean action of its team at the previous step, exactly as the rollout workers feed it. Then its Q network
is evaluated on those states three more times, with the mean action replaced:

* ``zero``: all zeros (what ``unimarl eval --mean-action-ablation zero`` plays);
* ``shuffle``: the mean action of another recorded state, drawn at random (``unimarl eval``'s shuffle ablation
  permutes within a step instead);
* ``uniform``: 1 / n_actions everywhere (a team acting uniformly at random).

Printed per replacement: the share of states whose greedy action changes, the mean total-variation distance
between the Boltzmann policies at the temperature the checkpoint reached (what the policy plays), and the
change of Q split in two, each relative to the mean spread of Q over the allowed actions: the shift all
allowed actions share (the state's value moves) and what remains (the differences between actions move, which
is what changes a choice). The same figures for an
untrained network of the same shape (``--init-seed``) are the reference: a network that learned to use its
mean action changes its choices more than an untrained one when the mean action changes. Also printed: how
much the mean action itself varies between the recorded states (mean L1 distance between two states' mean
actions), the most a policy could read from it.

Baseline named in the output: ``untrained`` (the same network at initialisation), measured in the same run.

    .venv/bin/python benchmarks/mean_action_use.py RUN/checkpoints/checkpoint-12000.pt --opponent scripted \
        --config battle64.yaml --states 20000 --json mean_action_use.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unimarl.bridge.spec import ActionSpec
from unimarl.trainers.algos.meanfield.checkpoint import (
    CheckpointPolicy,
    CheckpointPolicyError,
    checkpoint_policy,
)
from unimarl.trainers.algos.meanfield.learners import make_learner
from unimarl.trainers.algos.meanfield.mfq import MFQLearner, boltzmann_policy
from unimarl.trainers.algos.meanfield.networks import masked_logits
from unimarl.trainers.algos.meanfield.worker import MFPlan, MFPolicySetup, MFRolloutWorker
from unimarl.trainers.core.batch import PolicySpec
from unimarl.trainers.core.checkpoints import checkpoint_files, read_checkpoint
from unimarl.trainers.core.config import load_config
from unimarl.trainers.envs.factory import EnvFactory, make_sim_build
from unimarl.trainers.run.curriculum import last_lessons


@dataclasses.dataclass(frozen=True)
class Side:
    """A player: a baseline (``baseline:scripted`` or ``baseline:random``) or a checkpoint's MF policy."""

    label: str
    baseline: str | None = None
    policy: CheckpointPolicy | None = None


def load_side(text: str) -> Side:
    """``scripted`` / ``random`` / ``CHECKPOINT_OR_RUN_DIR[#POLICY]``."""
    if text in ("scripted", "random"):
        return Side(text, baseline=f"baseline:{text}")
    path_text, _, name = text.partition("#")
    path = Path(path_text)
    if path.is_dir():
        found = checkpoint_files(path / "checkpoints") or checkpoint_files(path)
        if not found:
            raise SystemExit(f"no checkpoint-*.pt in {path}: pass a checkpoint or a run folder")
        path = found[-1]
    policy = checkpoint_policy(path, read_checkpoint(path, CheckpointPolicyError, "cpu"), name)
    return Side(f"{path.parent.parent.name}/{path.name}#{policy.name}", policy=policy)


@dataclasses.dataclass(frozen=True)
class Recorded:
    """The policy's decisions: observations, action masks (True = allowed), mean actions it was fed."""

    obs: tuple[np.ndarray, ...]
    mask: np.ndarray
    mean: np.ndarray


def record_states(
    factory: EnvFactory, side: Side, opponent: Side, states: int, num_envs: int, seed: int
) -> Recorded:
    """Side A's decisions (obs, mask, mean action) while it plays ``opponent``, as the workers feed them."""
    worker = MFRolloutWorker(factory, num_envs, seed=seed)
    try:
        specs = worker.specs()
        first, second = sorted(specs)
        mine, theirs = side.policy, opponent.policy
        assert mine is not None
        policies = {"a": MFPolicySetup(specs[first], mine.trainer_type, mine.hyperparameters)}
        weights = {"a": mine.weights}
        actor = {first: "a", second: opponent.baseline or "b"}
        if theirs is not None:
            policies["b"] = MFPolicySetup(specs[second], theirs.trainer_type, theirs.hyperparameters)
            weights["b"] = theirs.weights
        worker.configure(MFPlan(policies, actor, frozenset({"a"})))
        rows: list[Any] = []
        while sum(int((t.action_mask.sum(1) >= 2).sum()) for t in rows) < states:
            rows.extend(worker.collect(weights, 1.0, 16).transitions.get("a", []))
    finally:
        worker.close()
    mask = np.concatenate([t.action_mask for t in rows]).astype(bool)
    choice = np.nonzero(mask.sum(1) >= 2)[0][:states]  # decisions with a choice to make
    obs = tuple(np.concatenate([t.obs[i] for t in rows])[choice] for i in range(len(rows[0].obs)))
    return Recorded(obs, mask[choice], np.concatenate([t.mean_action for t in rows])[choice])


@torch.no_grad()
def sensitivity(learner: MFQLearner, data: Recorded, temperature: float, seed: int) -> dict[str, Any]:
    """Per replacement of the mean action: greedy changes, policy TV distance, relative Q change."""
    rng = np.random.default_rng(seed)
    obs = [torch.as_tensor(o, dtype=torch.float32) for o in data.obs]
    mask = torch.as_tensor(data.mask)
    mean = torch.as_tensor(data.mean)
    n, width = mean.shape
    replaced = {
        "zero": torch.zeros_like(mean),
        "shuffle": mean[torch.as_tensor(rng.permutation(n))],
        "uniform": torch.full_like(mean, 1.0 / width),
    }

    def q_of(m: torch.Tensor) -> torch.Tensor:
        rows = range(0, n, 4096)
        return torch.cat([learner.q_online([o[i : i + 4096] for o in obs], m[i : i + 4096]) for i in rows])

    q = q_of(mean)
    allowed = masked_logits(q, mask)
    count = mask.sum(1).clamp_min(1)
    spread = float((allowed.max(1).values - q.masked_fill(~mask, float("inf")).min(1).values).mean())
    pi = boltzmann_policy(q, mask, 1.0 / temperature)
    out: dict[str, Any] = {"q_spread": spread}
    for name, other in replaced.items():
        q2 = q_of(other)
        pi2 = boltzmann_policy(q2, mask, 1.0 / temperature)
        delta = (q2 - q).masked_fill(~mask, 0.0)
        shift = delta.sum(1) / count  # the part every allowed action shares: the state's value moves
        relative = (delta - shift[:, None]).masked_fill(~mask, 0.0)  # what moves the choice
        out[name] = {
            "greedy_changed": float((masked_logits(q2, mask).argmax(1) != allowed.argmax(1)).float().mean()),
            "policy_tv": float(0.5 * (pi2 - pi).abs().sum(1).mean()),
            "value_shift_over_spread": float(shift.abs().mean()) / spread,
            "relative_change_over_spread": float((relative.abs().sum(1) / count).mean()) / spread,
        }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="an MF-Q checkpoint (or run folder; #POLICY picks a policy)")
    p.add_argument("--opponent", default="scripted", help="a checkpoint, scripted or random")
    p.add_argument("--config", required=True, help="YAML whose env and environment_parameters are played")
    p.add_argument("--states", type=int, default=20_000, help="decisions of the policy to record")
    p.add_argument("--num-envs", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init-seed", type=int, default=0, help="seed of the untrained reference network")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args()

    side, opponent = load_side(args.checkpoint), load_side(args.opponent)
    policy = side.policy
    if policy is None or policy.trainer_type != "mfq" or policy.temperature is None:
        kind = policy.trainer_type if policy is not None else "a baseline"
        raise SystemExit(f"{args.checkpoint}: an MF-Q checkpoint is needed, this is {kind}")
    config = load_config(args.config)
    out_dir = Path("results/mean_action_use").resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    build = str(make_sim_build(config.env, out_dir)) if config.env.kind == "sim" else None
    parameters = last_lessons(config.environment_parameters)
    factory = EnvFactory(config.env, config.engine_settings, parameters, str(out_dir), build)
    data = record_states(factory, side, opponent, args.states, args.num_envs, args.seed)
    spec = PolicySpec(tuple(o.shape[1:] for o in data.obs), ActionSpec(0, (int(data.mask.shape[1]),)))
    trained = make_learner("mfq", spec, policy.hyperparameters, acting_only=True)
    trained.set_weights(policy.weights)
    untrained = make_learner("mfq", spec, policy.hyperparameters, acting_only=True, seed=args.init_seed)
    assert isinstance(trained, MFQLearner) and isinstance(untrained, MFQLearner)
    mean = data.mean
    rng = np.random.default_rng(args.seed)
    pairs = rng.integers(len(mean), size=(20_000, 2))
    variation = float(np.abs(mean[pairs[:, 0]] - mean[pairs[:, 1]]).sum(1).mean())
    report = {
        "checkpoint": side.label,
        "opponent": opponent.label,
        "states": len(mean),
        "temperature": policy.temperature,
        "mean_action_l1_between_states": variation,
        "trained": sensitivity(trained, data, policy.temperature, args.seed),
        "untrained": sensitivity(untrained, data, policy.temperature, args.seed),
        "hyperparameters": dataclasses.asdict(policy.hyperparameters),
    }
    print(
        f"{side.label} against {opponent.label}: {report['states']} states, temperature "
        f"{policy.temperature:.3g}; mean action L1 distance between two states {variation:.3f} (of at most "
        "2); "
        f"Q spread over allowed actions: trained {report['trained']['q_spread']:.4f}, untrained "
        f"{report['untrained']['q_spread']:.4f}"
    )
    head = ("mean action", "network", "greedy changed", "policy TV", "value shift/spread", "relative/spread")
    print(f"{head[0]:<11} {head[1]:<10} {head[2]:>15} {head[3]:>10} {head[4]:>19} {head[5]:>16}")
    for name in ("zero", "shuffle", "uniform"):
        for net in ("trained", "untrained"):
            r = report[net][name]
            print(
                f"{name:<11} {net:<10} {r['greedy_changed']:>15.3f} {r['policy_tv']:>10.3f} "
                f"{r['value_shift_over_spread']:>19.3f} {r['relative_change_over_spread']:>16.3f}"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
