"""The ``--record PATH`` file: one JSON line per input the game received, for tests to read back.

Each line holds ``status``, ``command``, ``sent`` (per behaviour the ``ids``, ``done`` flags, ``rewards`` and
``group_rewards`` (Unity ``AddGroupReward``, 0 for agents without a group) of the output this input answers,
in message order) and ``actions`` (per behaviour ``continuous`` and ``discrete`` lists, in received order),
and, for behaviours that act from a pushed policy, ``inferred`` (per behaviour the ``continuous`` and
``discrete`` actions the game applied instead, aligned with the deciding agents of ``sent``; for a hidden
behaviour, which is never sent, also the ``ids`` of its agents that decided with that output, the latest
decision, their Unity ``groups`` (empty without groups), and the ``ended`` ids reported done with it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np

from unimarl.protos import CommandProto, UnityMessageProto


def record_line(
    message: UnityMessageProto,
    sent: Mapping[str, dict[str, list]],
    inferred: Mapping[str, tuple[np.ndarray, np.ndarray]],
    hidden_applied: Mapping[str, dict[str, list]],
) -> str:
    """One line of the record file (with its newline) for the input ``message``."""
    rl_input = message.unity_input.rl_input
    actions = {
        name: {
            "continuous": [list(a.continuous_actions) for a in lst.value],
            "discrete": [list(a.discrete_actions) for a in lst.value],
        }
        for name, lst in sorted(rl_input.agent_actions.items())
    }
    line: dict[str, object] = {
        "status": message.header.status,
        "command": CommandProto.Name(rl_input.command),
        "sent": dict(sent),
        "actions": actions,
    }
    applied: dict[str, dict[str, list]] = {
        name: {"continuous": c.tolist(), "discrete": d.tolist()} for name, (c, d) in inferred.items()
    }
    applied.update(hidden_applied)
    if applied:
        line["inferred"] = applied
    return json.dumps(line) + "\n"
