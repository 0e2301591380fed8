"""Learning threshold of the README's quick start: MAPPO on the coop_nav sim game (slow tier).

The run uses configs/coop_nav.yaml as shipped, with a step budget instead of its time budget so the threshold
does not depend on the machine's speed. Random actions score about -53 per agent (25-step episodes; measured
with the same metric by benchmarks/mappo_vs_ppo.py --task sim).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unimarl.trainers.core.config import load_config
from unimarl.trainers.run.train import train

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "coop_nav.yaml"
RANDOM_RETURN = -53.0
THRESHOLD = -40.0
BUDGET = 30_000  # env steps (x 8 areas per game): 2-3 minutes on 2 cores, up to 6 on a slow day


@pytest.mark.slow
@pytest.mark.timeout(1200)  # the step budget ends the run; a slow machine needs more than the default 300 s
def test_quick_start_config_learns_coop_nav(tmp_path: Path) -> None:
    config = load_config(CONFIG)
    config.run.results_dir = str(tmp_path)
    config.run.device = "cpu"
    config.run.max_steps = BUDGET
    config.run.max_seconds = 900  # a safety net only; the step budget ends the run
    result = train(config)
    assert result.stopped_by == "max_steps"
    lines = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    returns = [line["return/CoopNav?team=0"] for line in lines if "return/CoopNav?team=0" in line]
    assert returns[0] < THRESHOLD < max(returns[-2:]), returns
    assert max(returns[-2:]) - RANDOM_RETURN > 13.0, returns
