"""train(): behaviours that appear after reset (resume through policy_mapping, visual layouts read when they
appear) and the caller's config left as given."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from pettingzoo import ParallelEnv

from unimarl.bridge.spec import ActionSpec, BehaviorSpec, DimensionProperty, ObservationSpec
from unimarl.trainers.core.config import config_from_dict
from unimarl.trainers.export.policies import infer_visual_layout, read_manifest
from unimarl.trainers.run.loop import env_factory
from unimarl.trainers.run.run_dir import RunDir
from unimarl.trainers.run.train import train

ROLLOUT_TESTS = str(Path(__file__).with_name("test_rollout.py"))
NAV = str(Path(__file__).with_name("nav_env.py"))
SMALL = {
    "hyperparameters": {"epochs": 1},
    "time_horizon": 8,
    "summary_freq": 16,
    "checkpoint_interval": 1000,
    "max_steps": 16,
}


def test_resume_rebuilds_a_mapped_late_policy_with_its_behaviours_settings(tmp_path: Path) -> None:
    # 'blue' appears at step 3 and is trained by policy 'blue_team' with blue's own (smaller) network
    data: dict[str, Any] = {
        "env": {"pettingzoo": f"{ROLLOUT_TESTS}:make_late", "num_envs": 1},
        "run": {"run_id": "late", "results_dir": str(tmp_path), "device": "cpu"},
        "behaviors": {"default": SMALL, "blue": {**SMALL, "network_settings": {"hidden_units": 16}}},
        "policy_mapping": {"blue": "blue_team"},
    }
    first = train(config_from_dict(data))
    state = torch.load(first.run_dir / "checkpoints" / "checkpoint-16.pt", weights_only=True)
    assert set(state["policies"]) == {"red", "blue_team"}
    assert state["behavior_policy"] == {"red": "red", "blue": "blue_team"}
    data["run"] = {**data["run"], "resume": True, "max_steps": 32}
    second = train(config_from_dict(data))  # the learner's copy is rebuilt from blue's settings
    assert second.env_steps == 32
    state = torch.load(first.run_dir / "checkpoints" / "checkpoint-32.pt", weights_only=True)
    assert float(state["policies"]["blue_team"]["actor_optim"]["state"][0]["step"]) == 4  # 2 + 2: restored


def test_env_factory_leaves_the_callers_config_as_given(tmp_path: Path) -> None:
    relative = f"{os.path.relpath(NAV)}:make"
    config = config_from_dict({"env": {"pettingzoo": relative}})
    factory = env_factory(config, RunDir(tmp_path, "run"))
    assert config.env.pettingzoo == relative
    assert factory.settings.pettingzoo == f"{Path(NAV).resolve()}:make"


_TE, _NONE = DimensionProperty.TRANSLATIONAL_EQUIVARIANCE, DimensionProperty.NONE
CAMERA = (3, 4, 4)  # marked HWC by the game (as the C# 2.x package sends it); its shape alone reads as CHW
LATE_SPECS = {
    "Vec": BehaviorSpec("Vec", (ObservationSpec((2,), (_NONE,)),), ActionSpec(0, (2,))),
    "Cam": BehaviorSpec("Cam", (ObservationSpec(CAMERA, (_TE, _TE, _NONE)),), ActionSpec(0, (2,))),
}


class LateCameraEnv(ParallelEnv):
    """Unity-like (behaviour specs, behaviour in infos): a 'Vec' agent from reset; a 'Cam' agent, whose game
    marks its visual layout, joins at step 2. Nobody ever ends."""

    metadata = {"name": "late_camera_v0"}  # noqa: RUF012

    def __init__(self) -> None:
        self.possible_agents = ["Vec?agent_id=0", "Cam?agent_id=1"]
        self.agents: list[str] = []
        self.behavior_specs: dict[str, BehaviorSpec] = {}
        self._t = 0

    def agent_behavior(self, agent: str) -> str:
        return agent.split("?")[0]

    def observation_space(self, agent: str) -> spaces.Space:
        shape = LATE_SPECS[self.agent_behavior(agent)].observation_specs[0].shape
        return spaces.Box(-1, 1, shape, np.float32)

    def action_space(self, agent: str) -> spaces.Space:
        return spaces.Discrete(2)

    def _out(self) -> tuple[dict, dict]:
        obs = {a: np.full(self.observation_space(a).shape, 0.1 * self._t, np.float32) for a in self.agents}
        infos = {a: {"behavior": self.agent_behavior(a), "group_id": 0} for a in self.agents}
        return obs, infos

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        self._t = 0
        self.agents = self.possible_agents[:1]
        self.behavior_specs = {"Vec": LATE_SPECS["Vec"]}
        return self._out()

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        self._t += 1
        if self._t == 2:
            self.agents = list(self.possible_agents)
            self.behavior_specs = dict(LATE_SPECS)
        obs, infos = self._out()
        flags = {a: False for a in self.agents}
        return obs, {a: 1.0 for a in self.agents}, flags, dict(flags), infos


def make_late_camera() -> LateCameraEnv:
    return LateCameraEnv()


def test_visual_layout_of_a_late_behaviour_is_read_when_it_appears(tmp_path: Path) -> None:
    assert infer_visual_layout([CAMERA]) == "CHW"  # what an export would assume without the game's mark
    data = {
        "env": {"pettingzoo": f"{__file__}:make_late_camera", "num_envs": 1},
        "run": {"run_id": "cam", "results_dir": str(tmp_path), "device": "cpu"},
        "behaviors": {"default": {**SMALL, "time_horizon": 4, "max_steps": 8}},
    }
    result = train(config_from_dict(data))
    manifest = read_manifest(result.run_dir)
    assert manifest["Cam"]["visual_layout"] == "HWC"
