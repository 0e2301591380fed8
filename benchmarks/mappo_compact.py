"""Compact single-file MAPPO on MPE simple_spread: the baseline that benchmarks/train_throughput.py compares
unimarl's training core against (same env, same work per iteration, no framework around the loop).

Same networks and hyperparameters as unimarl's defaults (``MAPPOHyperparameters``, ``NetworkSettings``):
a shared actor and a centralised critic on [global state, own observation], both 2 x 64 tanh with LayerNorm
and running observation normalisation; ``time_horizon`` 64 steps per env per iteration, GAE (gamma 0.99,
lambda 0.95) with truncations bootstrapped from the critic, 15 epochs of one full-batch minibatch, PPO clip
0.2, entropy 0.01, Huber (10) value loss clipped at 0.2 around the collection-time value, ValueNorm targets,
separate Adam optimisers (lr 5e-4, eps 1e-5) with gradient norms clipped at 10. The envs are stepped one after
the other in this process, one batched forward per step over all agents of all envs; torch runs one thread.

    .venv/bin/python benchmarks/mappo_compact.py --seconds 20 --num-envs 32
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

HIDDEN = 64  # NetworkSettings: 2 hidden layers of 64, tanh, LayerNorm
HORIZON, EPOCHS, GAMMA, LAM = 64, 15, 0.99, 0.95  # time_horizon, epochs, gamma, lam
CLIP, ENTROPY, LR, HUBER, VALUE_CLIP, MAX_NORM = 0.2, 0.01, 5e-4, 10.0, 0.2, 10.0


def make_env() -> Any:
    from mpe2 import simple_spread_v3

    return simple_spread_v3.parallel_env(max_cycles=25, continuous_actions=False)


class RunningNorm:
    """Running mean/variance of feature vectors (parallel merge, float64); normalises to [-5, 5]."""

    def __init__(self, size: int) -> None:
        self.mean = torch.zeros(size, dtype=torch.float64)
        self.var = torch.ones(size, dtype=torch.float64)
        self.count = 1e-4

    def update(self, x: Tensor) -> None:
        x, n = x.double(), x.shape[0]
        delta, total = x.mean(0) - self.mean, self.count + n
        m2 = self.var * self.count + x.var(0, unbiased=False) * n + delta.square() * self.count * n / total
        self.mean, self.var, self.count = self.mean + delta * n / total, m2 / total, total

    def __call__(self, x: Tensor) -> Tensor:
        return ((x - self.mean.float()) / torch.sqrt(self.var + 1e-8).float()).clamp(-5.0, 5.0)


class ValueNorm:
    """Debiased EMA of the returns' mean and mean square (MAPPO reference: beta 0.99999, min var 1e-2)."""

    def __init__(self, beta: float = 0.99999) -> None:
        self.beta, self.m, self.sq, self.debias = beta, 0.0, 0.0, 0.0

    def stats(self) -> tuple[float, float]:
        if self.debias == 0.0:
            return 0.0, 1.0
        mean = self.m / self.debias
        return mean, max(self.sq / self.debias - mean**2, 1e-2) ** 0.5

    def update(self, x: Tensor) -> None:
        b = self.beta
        self.m = b * self.m + (1 - b) * x.double().mean().item()
        self.sq = b * self.sq + (1 - b) * x.double().square().mean().item()
        self.debias = b * self.debias + (1 - b)


def mlp(inp: int, out: int, head_gain: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for size in (inp, HIDDEN):
        layers += [nn.Linear(size, HIDDEN), nn.Tanh(), nn.LayerNorm(HIDDEN)]
    layers.append(nn.Linear(HIDDEN, out))
    for layer in layers:
        if isinstance(layer, nn.Linear):
            nn.init.orthogonal_(layer.weight, head_gain if layer is layers[-1] else 2**0.5)
            nn.init.zeros_(layer.bias)
    return nn.Sequential(*layers)


def huber(e: Tensor) -> Tensor:
    return torch.where(e.abs() <= HUBER, 0.5 * e.square(), HUBER * (e.abs() - 0.5 * HUBER))


def train(
    seconds: float,
    num_envs: int,
    seed: int = 0,
    on_iteration: Callable[[float, int, int], None] | None = None,
) -> dict[str, float]:
    """Train for ``seconds`` (whole iterations); returns env steps, agent steps and wall seconds.
    ``on_iteration(seconds, env steps, agent steps)`` is called after every iteration."""
    torch.set_num_threads(1)  # as unimarl's in-process (serial) worker; spinning threads stall on busy cores
    torch.manual_seed(seed)
    envs = [make_env() for _ in range(num_envs)]
    agents = envs[0].possible_agents
    raw = [env.reset(seed=seed + i)[0] for i, env in enumerate(envs)]
    n_agents, rows = len(agents), num_envs * len(agents)
    obs_size, state_size = envs[0].observation_space(agents[0]).shape[0], envs[0].state().shape[0]
    actor = mlp(obs_size, envs[0].action_space(agents[0]).n, 0.01)
    critic = mlp(state_size + obs_size, 1, 1.0)  # centralised: [global state, own observation]
    actor_opt = torch.optim.Adam(actor.parameters(), lr=LR, eps=1e-5, foreach=True)
    critic_opt = torch.optim.Adam(critic.parameters(), lr=LR, eps=1e-5, foreach=True)
    obs_norm, state_norm, value_norm = RunningNorm(obs_size), RunningNorm(state_size), ValueNorm()
    gen = torch.Generator().manual_seed(seed)

    def observe() -> tuple[Tensor, Tensor]:
        """Rows = [env, agent]; every agent of an env gets its env's state."""
        obs = np.stack([[o[a] for a in agents] for o in raw]).reshape(rows, obs_size)
        state = np.repeat(np.stack([env.state() for env in envs]), n_agents, axis=0)
        return torch.from_numpy(obs.astype(np.float32)), torch.from_numpy(state.astype(np.float32))

    def value(obs: Tensor, state: Tensor) -> Tensor:
        return critic(torch.cat([state_norm(state), obs_norm(obs)], 1)).squeeze(1)

    env_steps, start = 0, time.perf_counter()
    obs, state = observe()
    while time.perf_counter() - start < seconds:
        b_obs, b_state, b_act, b_logp, b_val, b_rew, b_cut, b_next = ([] for _ in range(8))
        for t in range(HORIZON):
            mean, std = value_norm.stats()
            with torch.no_grad():
                logits = actor(obs_norm(obs))
                act = torch.multinomial(torch.softmax(logits, 1), 1, generator=gen).squeeze(1)
                b_logp.append(torch.log_softmax(logits, 1).gather(1, act[:, None]).squeeze(1))
                b_val.append(value(obs, state) * std + mean)
            steps = [
                env.step(dict(zip(agents, a, strict=True)))
                for env, a in zip(envs, act.view(num_envs, n_agents).tolist(), strict=True)
            ]
            b_obs.append(obs)
            b_state.append(state)
            b_act.append(act)
            b_rew.append(torch.tensor([[s[1][a] for a in agents] for s in steps]).view(rows).float())
            term = np.repeat([any(s[2].values()) for s in steps], n_agents)
            cut = term | np.repeat([any(s[3].values()) for s in steps], n_agents)
            raw = [s[0] for s in steps]
            obs, state = observe()
            next_value = torch.zeros(rows)  # bootstrap of episodes that ended here and of the fragment's end
            if cut.any() or t == HORIZON - 1:
                with torch.no_grad():
                    next_value = torch.where(torch.from_numpy(term), 0.0, value(obs, state) * std + mean)
            if cut.any():
                for i in np.flatnonzero(cut[::n_agents]):
                    raw[i] = envs[i].reset()[0]
                obs, state = observe()
            b_cut.append(torch.from_numpy(cut) | (t == HORIZON - 1))
            b_next.append(next_value)
            env_steps += num_envs
        # GAE (Schulman et al. 2016, arXiv 1506.02438): A_t = delta_t + gamma lam A_{t+1}, cut at episode ends
        adv, running = torch.zeros(HORIZON, rows), torch.zeros(rows)
        for t in reversed(range(HORIZON)):
            after = b_next[t] if t == HORIZON - 1 else torch.where(b_cut[t], b_next[t], b_val[t + 1])
            running = b_rew[t] + GAMMA * after - b_val[t] + GAMMA * LAM * running * ~b_cut[t]
            adv[t] = running
        b_o, b_s, b_a = torch.cat(b_obs), torch.cat(b_state), torch.cat(b_act)
        b_lp, b_v, b_adv = torch.cat(b_logp), torch.cat(b_val), adv.view(-1)
        b_ret = b_adv + b_v
        seeded = value_norm.debias == 0.0
        if seeded:
            value_norm.update(b_ret)  # first statistics before the epochs, as unimarl's ValueNorm
        mean, std = value_norm.stats()
        ret_n, val_n = (b_ret - mean) / std, (b_v - mean) / std
        norm_adv = (b_adv - b_adv.mean()) / (b_adv.std(unbiased=False) + 1e-8)
        for _ in range(EPOCHS):
            logp_all = torch.log_softmax(actor(obs_norm(b_o)), 1)
            ratio = torch.exp(logp_all.gather(1, b_a[:, None]).squeeze(1) - b_lp)
            pg_loss = -torch.min(ratio * norm_adv, ratio.clamp(1 - CLIP, 1 + CLIP) * norm_adv).mean()
            entropy = -(logp_all.exp() * logp_all).sum(1).mean()
            v = value(b_o, b_s)
            v_clipped = val_n + (v - val_n).clamp(-VALUE_CLIP, VALUE_CLIP)
            v_loss = torch.max(huber(ret_n - v), huber(ret_n - v_clipped)).mean()
            actor_opt.zero_grad(), critic_opt.zero_grad()
            (pg_loss - ENTROPY * entropy + v_loss).backward()
            for net, opt in ((actor, actor_opt), (critic, critic_opt)):
                nn.utils.clip_grad_norm_(net.parameters(), MAX_NORM, foreach=True)
                opt.step()
        if not seeded:
            value_norm.update(b_ret)
        obs_norm.update(b_o)
        state_norm.update(b_s)
        if on_iteration is not None:
            on_iteration(time.perf_counter() - start, env_steps, env_steps * n_agents)
    wall = time.perf_counter() - start
    return {"env_steps": env_steps, "agent_steps": env_steps * n_agents, "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--num-envs", type=int, default=32)
    args = parser.parse_args()
    r = train(args.seconds, args.num_envs)
    print(f"compact MAPPO, {args.num_envs} envs: {r['env_steps'] / r['wall_s']:.0f} env steps/s")


if __name__ == "__main__":
    main()
