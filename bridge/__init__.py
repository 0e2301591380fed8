"""unimarl.bridge: Unity ML-Agents games as multi-agent environments.

The trainer is the gRPC server the game dials (:class:`UnityConnection`), and :class:`UnityParallelEnv`
presents a game as a PettingZoo parallel environment; side channels carry engine settings, environment
parameters and stats. Depends on numpy, grpcio and protobuf only (never torch or ray).
"""

from unimarl.bridge.connection import UnityConnection
from unimarl.bridge.errors import (
    ActionError,
    BridgeError,
    IncompatibleVersionError,
    LaunchError,
    ObservationError,
    PortInUseError,
    ProtocolError,
    SideChannelError,
    UnityClosedError,
    UnityProcessExitedError,
    UnityTimeoutError,
)
from unimarl.bridge.launcher import GameProcess
from unimarl.bridge.parallel_env import NoGlobalStateError, UnityParallelEnv, parse_agent_name
from unimarl.bridge.side_channels import (
    EngineConfigurationChannel,
    EnvironmentParametersChannel,
    IncomingMessage,
    OutgoingMessage,
    RawBytesChannel,
    SideChannel,
    SideChannelManager,
    StatsAggregationMethod,
    StatsSideChannel,
)
from unimarl.bridge.spec import (
    ActionSpec,
    ActionTuple,
    AgentBatch,
    BehaviorSpec,
    BehaviorSteps,
    DimensionProperty,
    GameOutput,
    ObservationSpec,
    ObservationType,
)

__all__ = [
    "ActionError",
    "ActionSpec",
    "ActionTuple",
    "AgentBatch",
    "BehaviorSpec",
    "BehaviorSteps",
    "BridgeError",
    "DimensionProperty",
    "EngineConfigurationChannel",
    "EnvironmentParametersChannel",
    "GameOutput",
    "GameProcess",
    "IncomingMessage",
    "IncompatibleVersionError",
    "LaunchError",
    "NoGlobalStateError",
    "ObservationError",
    "ObservationSpec",
    "ObservationType",
    "OutgoingMessage",
    "PortInUseError",
    "ProtocolError",
    "RawBytesChannel",
    "SideChannel",
    "SideChannelError",
    "SideChannelManager",
    "StatsAggregationMethod",
    "StatsSideChannel",
    "UnityClosedError",
    "UnityConnection",
    "UnityParallelEnv",
    "UnityProcessExitedError",
    "UnityTimeoutError",
    "parse_agent_name",
]
