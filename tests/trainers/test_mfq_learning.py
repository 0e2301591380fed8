"""Short learning sanity checks for MF-Q and MF-AC on a toy coordination game.

N agents repeatedly pick one of 3 actions; agent j's reward is the fraction of its neighbours that picked the
same action at the previous step, i.e. mean_a_j[a_j]: the best reply to the crowd is the crowd's last choice.
Random play earns 1/3. Action 2 is disabled for every agent, so a learner that ignores masks loses reward.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unimarl.bridge.spec import ActionSpec
from unimarl.trainers.algos.meanfield.mean_action import MeanActionTracker
from unimarl.trainers.algos.meanfield.mfac import MFACConfig, MFACLearner
from unimarl.trainers.algos.meanfield.mfq import MFQConfig, MFQLearner
from unimarl.trainers.algos.meanfield.networks import NetworkConfig
from unimarl.trainers.algos.meanfield.replay import Transitions
from unimarl.trainers.core.batch import PolicySpec

N_AGENTS, N_ACTIONS, EP_LEN = 16, 4, 8
SPEC = PolicySpec(obs_shapes=((2,),), action_spec=ActionSpec(discrete_branches=(N_ACTIONS,)))
SMALL_NET = NetworkConfig(encoder="mlp", visual_hidden=32, mean_hidden=(16,), head_hidden=(32,))


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def play(learner, episodes: int, train: bool, deterministic: bool = False) -> float:
    """Run episodes of the toy game; mean reward per agent step (steps >= 1) in the last quarter."""
    rng = np.random.default_rng(0)
    agents = [f"a{i}" for i in range(N_AGENTS)]
    mask = np.ones((N_AGENTS, N_ACTIONS), np.int8)
    mask[:, 2] = 0
    rewards = []
    for ep in range(episodes):
        if train and hasattr(learner, "set_progress"):
            learner.set_progress(ep / episodes)
        tracker = MeanActionTracker(SPEC.action_spec)
        obs = (
            np.concatenate([np.ones((N_AGENTS, 1)), rng.normal(size=(N_AGENTS, 1))], 1).astype(np.float32),
        )
        mean = tracker.mean_actions(agents)
        for t in range(EP_LEN):
            out = learner.act(obs, mean, mask, deterministic=deterministic)
            act = out.discrete_actions[:, 0]
            assert not (act == 2).any(), "a disabled action was chosen"
            reward = mean[np.arange(N_AGENTS), act]
            tracker.record(agents, act[:, None])
            next_mean = tracker.mean_actions(agents)
            next_obs = (obs[0] + np.float32(0),)
            done = np.full(N_AGENTS, t == EP_LEN - 1)
            if train:
                learner.add(
                    Transitions(obs, act, reward, next_obs, done, None, mean, next_mean, mask, mask, agents)
                )
                if hasattr(learner, "set_progress"):
                    learner.update()
            if ep >= episodes * 3 // 4 and t > 0:  # step 0 has no previous crowd action
                rewards.append(reward.mean())
            obs, mean = next_obs, next_mean
        if train and not hasattr(learner, "set_progress"):
            learner.update()
    return float(np.mean(rewards))


def test_mfq_learns_to_follow_the_crowd():
    cfg = MFQConfig(
        network=SMALL_NET,
        learning_rate=3e-3,
        gamma=0.5,
        update_every=1,
        gradient_steps=2,
        tau=0.05,
        buffer_capacity=4096,
        learning_starts=64,
    )
    learner = MFQLearner(SPEC, cfg, seed=0)
    play(learner, 60, train=True)
    for k in (0, 1, 3):
        q = learner.q_online([torch.tensor([[1.0, 0.0]])], torch.eye(N_ACTIONS)[k : k + 1])
        assert int(q.argmax()) == k, q
    assert play(learner, 8, train=False, deterministic=True) > 0.9


def test_mfac_learns_to_coordinate():
    cfg = MFACConfig(
        network=SMALL_NET, learning_rate=3e-3, gamma=0.5, entropy_coef=0.01, value_coef=1.0, tau=0.05
    )
    learner = MFACLearner(SPEC, cfg, seed=0)
    assert play(learner, 150, train=True) > 0.7
