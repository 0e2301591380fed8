"""CoopNav's team reward is the group's reward only, in the Unity example and in the sim.

ML-Agents' cooperative examples (PushBlockCollab, DungeonEscape) reward the team through
``SimpleMultiAgentGroup.AddGroupReward`` and keep the agents' own rewards for individual shaping (CoopNav has
none). The example's group reward (CoopNavArea.cs, run on the stand-in engine by Tests~/WorldTestDriver.cs)
is checked against sim/coop_nav.py's team-reward rule evaluated on the positions the C# agents observed; the
sim's reported rewards against a hand-computed team reward.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import pytest

from unimarl.sim.client import build_parser
from unimarl.sim.coop_nav import BEHAVIOR, CoopNav
from unimarl.sim.game import EnvParams

N = 3
EPISODE = 25


def _sim(agents: int = N) -> CoopNav:
    args: argparse.Namespace = build_parser(CoopNav).parse_args(["--agents", str(agents)])
    return CoopNav(args, 0, 1)


def _world_infos(lines: list[str]) -> list[dict[str, Any]]:
    """``info STEP AGENT EPISODE POLICY BEHAVIOR DONE MAXSTEP REWARD GROUPREWARD GROUP`` lines, each with the
    observation of its ``obs`` line."""
    infos: list[dict[str, Any]] = []
    for line in lines:
        kind, _, tail = line.partition(" ")
        parts = tail.split()
        if kind == "info":
            infos.append(
                {
                    "step": int(parts[0]),
                    "done": parts[5] == "1",
                    "reward": float(parts[7]),
                    "group_reward": float(parts[8]),
                    "group": int(parts[9]),
                }
            )
        elif kind == "obs":
            infos[-1]["obs"] = np.array(parts[1:], np.float32)
    return infos


def test_example_gives_the_team_reward_to_the_group_only(core_driver: Any) -> None:
    infos = _world_infos(core_driver.world(False, "3.0.0", "coopnav", "30"))
    assert infos and all(i["reward"] == 0.0 for i in infos)  # no AddReward: the agents' own rewards stay 0
    game = _sim()
    # decisions after an action and not at a restart: the group reward was added in this step's AgentPreStep,
    # from the positions the agents then observe (CoopNavArea.OnPreStep; AgentSendState follows it)
    checked = [i for i in infos if not i["done"] and i["step"] % EPISODE != 0]
    assert len(checked) >= 20 * N
    for info in checked:
        obs = info["obs"]  # own velocity, own position, landmarks and other agents relative to the agent
        own = obs[2:4]
        game.land[0] = own + obs[4 : 4 + 2 * N].reshape(N, 2)
        game.pos[0] = np.vstack([own, own + obs[4 + 2 * N :].reshape(N - 1, 2)])
        assert info["group"] > 0
        assert info["group_reward"] == pytest.approx(float(game._team_reward()[0]), abs=1e-4)


def test_sim_reports_the_team_reward_as_the_group_reward_only() -> None:
    game = _sim()
    params = EnvParams()
    game.reset(params)
    game.collect()
    # agents 0 and 1 on their landmarks, agent 2 0.5 from its own (nearest) one, all far apart, at rest:
    # team reward = -(0 + 0 + 0.5) - 0 collisions
    game.land[0] = [[-0.6, -0.6], [0.6, 0.6], [0.6, -0.6]]
    game.pos[0] = [[-0.6, -0.6], [0.6, 0.6], [0.6, -0.1]]
    game.vel[:] = 0
    game.force[:] = 0
    for step in range(2):
        game.step(params)
        batch = game.collect()[BEHAVIOR]
        assert batch.rewards.tolist() == [0.0] * N, step
        assert batch.group_reward is not None and batch.group_id is not None
        np.testing.assert_allclose(batch.group_reward, [-0.5] * N, atol=1e-6)
        assert batch.group_id.tolist() == [1] * N
