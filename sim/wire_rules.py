"""Rules of the Unity side of the wire that the client applies: actions by position, exits, visual layout.

Each rule cites com.unity.ml-agents' C# source (package 3.0.0; the same lines in 4.0.1 unless said otherwise);
docs/unity-semantics.md lists them all with the tests that hold them.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import numpy as np

from unimarl.sim.game import BehaviorDef

logger = logging.getLogger(__name__)

EXIT_QUIT, EXIT_ERROR, EXIT_USAGE, EXIT_DIE = 0, 1, 2, 3

#: Visual layouts of rank-3 float observations on the wire, by C# package version (see :func:`visual_layout`).
HWC, CHW, CHW_SHAPE_HWC_DATA = "hwc", "chw", "chw-shape-hwc-data"


class SimExit(Exception):
    """Ends the client with an exit code (raised inside the loop, caught by :meth:`Client.run`)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


class SimExitError(SimExit):
    """The game hit an exception Unity would throw in the communicator (exit code 1)."""

    def __init__(self, reason: str) -> None:
        super().__init__(EXIT_ERROR, reason)


def _version_tuple(version: str) -> tuple[int, int, int] | None:
    match = re.match(r"\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?", version)
    if match is None:
        return None
    return int(match[1]), int(match[2] or 0), int(match[3] or 0)


def visual_layout(package_version: str) -> str:
    """How a game of this C# package version writes uncompressed rank-3 observations.

    * < 3.0.0: shape [H, W, C], floats in H, W, C order (``ObservationSpec.Visual`` was HWC in 2.x);
    * 3.0.0 up to 4.0.0: shape [C, H, W] (3.0.0 Runtime/Sensors/ObservationSpec.cs:98-107) but the floats in
      H, W, C order: ``ObservationWriter[ch, h, w]`` writes the proto's list at
      ``TensorShape.Index(n, c, h, w)`` (3.0.0 Runtime/Sensors/ObservationWriter.cs:151,
      Runtime/Inference/TensorExtensions.cs:56-63: ``h * W * C + w * C + c``); fixed in 4.0.1 ("Fixed
      tensor indexing to use correct CHW layout (#6239)", 4.0.1 CHANGELOG.md:13; 4.0.1
      TensorExtensions.cs:60-62: ``c * H * W + h * W + w``). 4.0.0 is taken to have the bug, as the fix
      first shipped in 4.0.1;
    * 4.0.1 and later: shape [C, H, W], floats in C, H, W order.
    """
    version = _version_tuple(package_version)
    if version is None:
        logger.warning("package version %r has no numeric major; assuming the 2.x layout", package_version)
        return HWC
    if version < (3, 0, 0):
        return HWC
    return CHW_SHAPE_HWC_DATA if version < (4, 0, 1) else CHW


def check_action_count(behavior: BehaviorDef, received: int, n: int) -> None:
    """Unity's rule for the number of actions of a behaviour with ``n`` agents that requested a decision.

    ``RpcCommunicator.SendBatchedMessageHelper`` (Runtime/Communicator/RpcCommunicator.cs:418-440) skips a
    behaviour whose action list is empty (its agents keep empty, i.e. zero, actions), reads
    ``agentActions[i]`` for every ``i < numAgents`` (extra actions are ignored) and so throws
    ``ArgumentOutOfRangeException`` when 0 < received < n. The exception leaves the communicator's lists
    uncleared and the player in a broken state; the sim logs the same error and exits (code 1).
    """
    if 0 < received < n:
        raise SimExitError(
            f"ArgumentOutOfRangeException: behaviour {behavior.name!r} received {received} actions for {n} "
            "agents that requested a decision (RpcCommunicator.SendBatchedMessageHelper reads one action per "
            "agent); the trainer must send one action per agent, in the order of the previous output"
        )
    if received > n:
        logger.warning(
            "behaviour %s: %d actions for %d deciding agents; extra ignored", behavior.name, received, n
        )


def parse_actions(behavior: BehaviorDef, actions: list[Any], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Actions for ``n`` deciding agents -> (continuous [n, c], discrete [n, b]); no actions: all zero."""
    n_cont, n_disc = behavior.num_continuous, len(behavior.discrete_branches)
    continuous = np.zeros((n, n_cont), np.float32)
    discrete = np.zeros((n, n_disc), np.int32)
    check_action_count(behavior, len(actions), n)
    for i, action in enumerate(actions[:n]):
        cont, disc = list(action.continuous_actions), list(action.discrete_actions)
        if not cont and not disc and action.vector_actions_deprecated:  # trainer without hybrid actions
            legacy = list(action.vector_actions_deprecated)
            cont, disc = (legacy, []) if n_cont else ([], [int(v) for v in legacy])
        if n_cont:
            continuous[i, : len(cont[:n_cont])] = cont[:n_cont]
        if n_disc:
            discrete[i, : len(disc[:n_disc])] = disc[:n_disc]
    return continuous, discrete
