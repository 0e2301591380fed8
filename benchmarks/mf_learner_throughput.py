"""MF-Q learner throughput: samples learned per second, the learner's update against the baseline update.

The battle game's spec (:mod:`unimarl.sim.battle`: a 13x13x5 view, position (2) and status (4) vectors, 21
actions) and the reference network fill a replay buffer with ``--agents`` agents x 40 steps of synthetic
transitions (binary views, stored as float16 like the trainer does). Two learners with the same seed and the
same data then alternate rounds of ``--steps`` gradient steps, so a busy machine slows both alike:

- baseline: the update path of commit 60b54dc, copied below (:class:`Baseline`): per step one replay read
  with separate gathers for the start and next frames, every sample field converted to a tensor twice, the
  soft target update parameter by parameter, torch's default Adam (a Python loop over the parameters on
  the CPU);
- learner: ``MFQLearner.update`` as the training loop runs it (:mod:`unimarl.trainers.algos.meanfield.mfq`).

Both draw the same batches (the buffers' random generators are seeded alike), so they compute the same
steps: the weights they end with are compared and their largest difference printed. Printed per batch
size: the median samples/s of each over the rounds and their ratio, by the wall clock and by the process's
CPU time (steadier on a shared machine; with several threads it counts each thread's time, waiting included);
``--json PATH`` writes the same as JSON.
``--compile`` wraps the learner's networks in ``torch.compile`` (compile time excluded), ``--profile`` prints
the top operators of one round of each.

    .venv/bin/python benchmarks/mf_learner_throughput.py --threads 1 --batch-sizes 64,256,512,1024 \\
        --json /tmp/mf_learner.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unimarl.bridge.spec import ActionSpec
from unimarl.trainers.algos.meanfield.mfq import MFQConfig, MFQLearner, mf_value, td_target
from unimarl.trainers.algos.meanfield.replay import ReplayBuffer, ReplaySample, Transitions
from unimarl.trainers.core.batch import PolicySpec

ACTIONS = 21
FILL_STEPS = 40


def battle_spec(view: int) -> PolicySpec:
    """The battle game's spec in ML-Agents' sensor order: LocalView, position, Status."""
    return PolicySpec(
        obs_shapes=((view, view, 5), (2,), (4,)), action_spec=ActionSpec(discrete_branches=(ACTIONS,))
    )


def team_steps(spec: PolicySpec, agents: int, steps: int, seed: int = 0) -> list[Transitions]:
    """``steps`` consecutive team steps: binary views, random vectors, mean actions and masks."""
    rng = np.random.default_rng(seed)

    def observe() -> tuple[np.ndarray, ...]:
        view = (rng.random((agents, *spec.obs_shapes[0])) < 0.2).astype(np.float32)
        return (view, *(rng.random((agents, *s), dtype=np.float32) for s in spec.obs_shapes[1:]))

    obs, mean = observe(), rng.dirichlet(np.ones(ACTIONS), size=agents).astype(np.float32)
    out = []
    for _ in range(steps):
        nxt, nxt_mean = observe(), rng.dirichlet(np.ones(ACTIONS), size=agents).astype(np.float32)
        out.append(
            Transitions(
                obs=obs,
                action=rng.integers(0, ACTIONS, agents),
                reward=rng.standard_normal(agents).astype(np.float32),
                next_obs=nxt,
                terminated=rng.random(agents) < 0.01,
                mean_action=mean,
                next_mean_action=nxt_mean,
                action_mask=np.ones((agents, ACTIONS), bool),
                next_action_mask=rng.random((agents, ACTIONS)) < 0.8,
                agent_keys=list(range(agents)),
            )
        )
        obs, mean = nxt, nxt_mean
    return out


class Baseline:
    """The MF-Q update of commit 60b54dc (``trainers/mfq.py``, ``replay.py``, ``mf_networks.py``), run on a
    learner's networks and buffer with torch's default Adam."""

    def __init__(self, learner: MFQLearner) -> None:
        self.learner = learner
        self.optimizer = torch.optim.Adam(learner.q_online.parameters(), lr=learner.config.learning_rate)

    @staticmethod
    def read(buf: ReplayBuffer, rows: np.ndarray) -> ReplaySample:
        s = buf._row_obs[rows] % buf.frame_capacity
        s2 = buf._row_next[rows] % buf.frame_capacity
        return ReplaySample(
            obs=tuple(store[s].astype(np.float32) for store in buf._frame_obs),
            mean_action=buf._frame_mean[s],
            action_mask=buf._frame_mask[s],
            action=buf._row_action[rows].astype(np.int64),
            reward=buf._row_reward[rows],
            next_obs=tuple(store[s2].astype(np.float32) for store in buf._frame_obs),
            next_mean_action=buf._frame_mean[s2],
            next_action_mask=buf._frame_mask[s2],
            terminated=buf._row_terminated[rows].astype(np.float32),
            logp=np.full(len(rows), np.nan, np.float32),
        )

    def tensors(self, s: ReplaySample) -> dict[str, torch.Tensor]:
        return {
            f.name: torch.as_tensor(np.asarray(getattr(s, f.name)), device=self.learner.device)
            for f in dataclasses.fields(s)
            if f.name not in ("obs", "next_obs")
        }

    def obs(self, obs: tuple[np.ndarray, ...]) -> list[torch.Tensor]:
        return [torch.as_tensor(np.asarray(o, np.float32), device=self.learner.device) for o in obs]

    @torch.no_grad()
    def td_targets(self, s: ReplaySample) -> torch.Tensor:
        lr = self.learner
        t = self.tensors(s)
        next_obs = self.obs(s.next_obs)
        next_mean = t["next_mean_action"] if lr.mean_dim else None
        q_t = lr.q_target(next_obs, next_mean)
        q_o = lr.q_online(next_obs, next_mean) if lr.config.double_q else None
        v = mf_value(q_t, t["next_action_mask"], 1.0 / lr.temperature, q_o)
        return td_target(t["reward"], t["terminated"], v, lr.config.gamma)

    def gradient_step(self) -> dict[str, float]:
        lr = self.learner
        s = self.read(lr.buffer, lr.buffer.sample_rows(lr.config.batch_size))
        y = self.td_targets(s)
        t = self.tensors(s)
        q = lr.q_online(self.obs(s.obs), t["mean_action"] if lr.mean_dim else None)
        q_a = q.gather(1, t["action"].view(-1, 1)).squeeze(1)
        loss = torch.mean((y - q_a) ** 2)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            for tp, op in zip(lr.q_target.parameters(), lr.q_online.parameters(), strict=True):
                tp.mul_(1.0 - lr.config.tau).add_(op, alpha=lr.config.tau)
        return {"q_loss": float(loss.detach()), "q_mean": float(q_a.detach().mean())}

    def update(self, steps: int) -> None:
        logs = [self.gradient_step() for _ in range(steps)]
        _ = {k: float(np.mean([m[k] for m in logs])) for k in logs[0]}


def learners(args: argparse.Namespace, batch: int, steps: int) -> tuple[Baseline, MFQLearner, list]:
    spec = battle_spec(args.view)
    cfg = MFQConfig(batch_size=batch, update_every=1, gradient_steps=steps)
    data = team_steps(spec, args.agents, FILL_STEPS + 2 * args.rounds + 2)
    pair = []
    for _ in range(2):
        learner = MFQLearner(spec, cfg, seed=0)
        for t in data[:FILL_STEPS]:
            learner.buffer.add(t)
        pair.append(learner)
    if args.compile:
        pair[1].q_online.compile()
        pair[1].q_target.compile()
    return Baseline(pair[0]), pair[1], data[FILL_STEPS:]


def measure(args: argparse.Namespace, batch: int) -> dict[str, Any]:
    steps = args.steps or max(4, 4096 // batch)
    base, learner, more = learners(args, batch, steps)
    # warm-up (and compilation): one round each, same data
    learner.add(more[0])
    learner.update()
    base.learner.add(more[0])
    base.update(steps)
    rates: dict[str, list[float]] = {"baseline": [], "learner": []}
    cpu_rates: dict[str, list[float]] = {"baseline": [], "learner": []}
    for r in range(args.rounds):
        for name in ("baseline", "learner") if r % 2 == 0 else ("learner", "baseline"):
            target = base.learner if name == "baseline" else learner
            target.add(more[1 + r])  # one worker step arrives, as in training (not timed)
            t0, c0 = time.perf_counter(), time.process_time()
            if name == "baseline":
                base.update(steps)
            else:
                learner.update()
            rates[name].append(steps * batch / (time.perf_counter() - t0))
            cpu_rates[name].append(steps * batch / (time.process_time() - c0))
    diff = max(
        float((a - b).abs().max())
        for a, b in zip(
            base.learner.q_online.state_dict().values(), learner.q_online.state_dict().values(), strict=True
        )
    )
    med = {k: statistics.median(v) for k, v in rates.items()}
    cpu = {k: statistics.median(v) for k, v in cpu_rates.items()}
    out = {
        "batch_size": batch,
        "steps_per_round": steps,
        "rounds": args.rounds,
        "baseline_samples_per_s": med["baseline"],
        "learner_samples_per_s": med["learner"],
        "ratio": med["learner"] / med["baseline"],
        "baseline_samples_per_cpu_s": cpu["baseline"],
        "learner_samples_per_cpu_s": cpu["learner"],
        "cpu_ratio": cpu["learner"] / cpu["baseline"],
        "baseline_rounds": rates["baseline"],
        "learner_rounds": rates["learner"],
        "max_weight_difference": diff,
    }
    if args.profile:
        profile(base, learner, steps, more[-1])
    return out


def profile(base: Baseline, learner: MFQLearner, steps: int, data: Transitions) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    for name, run in (("baseline", lambda: base.update(steps)), ("learner", learner.update)):
        (base.learner if name == "baseline" else learner).add(data)
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            run()
        print(f"-- {name}: {steps} gradient steps")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-sizes", default="64,256,512,1024", help="comma-separated batch sizes")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (the learner's cores)")
    p.add_argument("--rounds", type=int, default=6, help="timed rounds per learner, alternating")
    p.add_argument("--steps", type=int, default=0, help="gradient steps per round (0: about 4096 samples)")
    p.add_argument("--agents", type=int, default=128, help="agents per step in the replay data")
    p.add_argument("--view", type=int, default=13, help="side of the battle view")
    p.add_argument("--compile", action="store_true", help="torch.compile the learner's networks")
    p.add_argument("--profile", action="store_true", help="print the top operators of one round of each")
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    header = {
        "torch": torch.__version__,
        "threads": args.threads,
        "machine": platform.processor() or platform.machine(),
        "spec": {"view": [args.view, args.view, 5], "vectors": [2, 4], "actions": ACTIONS},
        "compile": args.compile,
    }
    print(f"MF-Q learner, battle spec {header['spec']}, torch {torch.__version__}, {args.threads} threads")
    print(f"{'':>6}{'samples per wall-clock s':^33}{'samples per CPU s':^33}")
    print(
        f"{'batch':>6}{'baseline':>13}{'learner':>12}{'ratio':>8}{'baseline':>13}{'learner':>12}{'ratio':>8}"
        f"{'max |dw|':>11}"
    )
    results = []
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        r = measure(args, batch)
        results.append(r)
        print(
            f"{batch:>6}{r['baseline_samples_per_s']:>13,.0f}{r['learner_samples_per_s']:>12,.0f}"
            f"{r['ratio']:>8.2f}{r['baseline_samples_per_cpu_s']:>13,.0f}{r['learner_samples_per_cpu_s']:>12,.0f}"
            f"{r['cpu_ratio']:>8.2f}{r['max_weight_difference']:>11.1e}"
        )
    if args.json:
        args.json.write_text(json.dumps({**header, "results": results}, indent=2))


if __name__ == "__main__":
    main()
