"""What the bridge env keeps about agents stays bounded however many episodes a game runs."""

from __future__ import annotations

from pathlib import Path

from unimarl import sim
from unimarl.bridge import UnityParallelEnv


def test_possible_agents_holds_the_latest_step_not_every_episode(tmp_path: Path) -> None:
    build = sim.make_build("coop_nav", tmp_path / "build", extra_args=("--episode-length", "3"))
    env = UnityParallelEnv(build, seed=0, timeout=30, log_dir=tmp_path / "logs")
    try:
        env.reset()
        ended_seen = 0
        for _ in range(60):  # 20 episodes of 3 agents: 60 names
            _, _, terminations, truncations, _ = env.step({agent: 0 for agent in env.agents})
            ended = [a for a in terminations if terminations[a] or truncations[a]]
            ended_seen += len(ended)
            assert set(env.agents) <= set(env.possible_agents)
            assert set(ended) <= set(env.possible_agents)  # the agents that ended at this step, too
            assert len(env.possible_agents) <= 2 * 3, "possible_agents grows with every episode"
        assert ended_seen >= 3 * 19
    finally:
        env.close()
