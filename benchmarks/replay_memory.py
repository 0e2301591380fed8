"""Replay memory for a large population: bytes per transition and peak RSS, against a plain float32 buffer.

128 agents with a 13x13x5 view, a 34-float feature vector and 21 discrete actions fill the reference replay
capacity (80,000 transitions, 625 steps). Each layout runs in a fresh process so that its peak RSS
(``resource.getrusage``) is its own; the figure printed is the peak minus the process's RSS before allocating.

- baseline "float32, next obs duplicated": obs and next obs both stored as float32 per transition, plus mean
  action, next mean action, next mask, action, reward, terminated (the naive layout);
- ReplayBuffer with float32 / float16 / uint8 views, next obs shared between consecutive transitions.

Run: .venv/bin/python benchmarks/replay_memory.py
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys

import numpy as np

AGENTS, VIEW, FEATURES, ACTIONS, CAPACITY = 128, (13, 13, 5), 34, 21, 80_000


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def steps():
    """Synthetic team steps: binary views (integer valued, so uint8 is lossless), random features."""
    rng = np.random.default_rng(0)
    view = (rng.random((AGENTS, *VIEW)) < 0.2).astype(np.float32)
    feat = rng.random((AGENTS, FEATURES), dtype=np.float32)
    mean = np.full((AGENTS, ACTIONS), 1 / ACTIONS, np.float32)
    for t in range(CAPACITY // AGENTS):
        nxt = np.roll(view, 1, axis=1)
        yield t, (view, feat), (nxt, feat), mean
        view = nxt


def run_baseline() -> dict:
    before = rss_mib()
    n = CAPACITY
    arrays = {
        "obs": np.zeros((n, *VIEW), np.float32),
        "feat": np.zeros((n, FEATURES), np.float32),
        "next_obs": np.zeros((n, *VIEW), np.float32),
        "next_feat": np.zeros((n, FEATURES), np.float32),
        "mean": np.zeros((n, ACTIONS), np.float32),
        "next_mean": np.zeros((n, ACTIONS), np.float32),
        "next_mask": np.zeros((n, ACTIONS), bool),
        "action": np.zeros(n, np.int64),
        "reward": np.zeros(n, np.float32),
        "terminated": np.zeros(n, bool),
    }
    for t, obs, nxt, mean in steps():
        sl = slice(t * AGENTS, (t + 1) * AGENTS)
        arrays["obs"][sl], arrays["feat"][sl] = obs
        arrays["next_obs"][sl], arrays["next_feat"][sl] = nxt
        arrays["mean"][sl] = arrays["next_mean"][sl] = mean
        arrays["next_mask"][sl] = True
    nbytes = sum(a.nbytes for a in arrays.values())
    return {"bytes_per_transition": nbytes / n, "peak_rss_mib": rss_mib() - before}


def run_buffer(view_dtype: str) -> dict:
    from unimarl.trainers.algos.meanfield.replay import ReplayBuffer, Transitions

    before = rss_mib()
    buf = ReplayBuffer(
        [VIEW, (FEATURES,)], CAPACITY, n_actions=ACTIONS, mean_dim=ACTIONS, obs_dtypes=[view_dtype, "float32"]
    )
    keys = [f"agent{i}" for i in range(AGENTS)]
    zeros = np.zeros(AGENTS)
    for _, obs, nxt, mean in steps():
        buf.add(
            Transitions(
                obs,
                zeros.astype(np.int64),
                zeros.astype(np.float32),
                nxt,
                zeros.astype(bool),
                mean_action=mean,
                next_mean_action=mean,
                agent_keys=keys,
            )
        )
    assert len(buf) == CAPACITY
    return {"bytes_per_transition": buf.bytes_per_transition, "peak_rss_mib": rss_mib() - before}


def main() -> None:
    if len(sys.argv) == 2:
        out = run_baseline() if sys.argv[1] == "baseline" else run_buffer(sys.argv[1])
        print(json.dumps(out))
        return
    print(f"{AGENTS} agents x view {VIEW} + {FEATURES} features, {ACTIONS} actions, capacity {CAPACITY:,}")
    results = {}
    for name in ("baseline", "float32", "float16", "uint8"):
        proc = subprocess.run([sys.executable, __file__, name], capture_output=True, text=True, check=True)
        results[name] = json.loads(proc.stdout)
    base = results["baseline"]
    print(f"{'layout':<34}{'bytes/transition':>18}{'peak RSS MiB':>14}{'ratio vs baseline':>19}")
    for name, r in results.items():
        label = (
            "float32, next obs duplicated" if name == "baseline" else f"ReplayBuffer, {name} views, shared"
        )
        ratio = r["bytes_per_transition"] / base["bytes_per_transition"]
        print(f"{label:<34}{r['bytes_per_transition']:>18,.0f}{r['peak_rss_mib']:>14,.0f}{ratio:>19.3f}")


if __name__ == "__main__":
    main()
