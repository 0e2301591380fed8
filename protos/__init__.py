"""Protocol buffers: Unity ML-Agents' communicator protocol (API 1.5.0) and unimarl's own messages.

The ``.proto`` sources live beside this file; ``_generated`` holds the compiled modules. Import messages from
here rather than from ``_generated`` directly::

    from unimarl.protos import UnityMessageProto
"""

from unimarl.protos._generated.agent_action_pb2 import AgentActionProto
from unimarl.protos._generated.agent_info_pb2 import AgentInfoProto
from unimarl.protos._generated.brain_parameters_pb2 import ActionSpecProto, BrainParametersProto
from unimarl.protos._generated.capabilities_pb2 import UnityRLCapabilitiesProto
from unimarl.protos._generated.command_pb2 import CommandProto
from unimarl.protos._generated.header_pb2 import HeaderProto
from unimarl.protos._generated.observation_pb2 import (
    CompressionTypeProto,
    ObservationProto,
    ObservationTypeProto,
)
from unimarl.protos._generated.unity_input_pb2 import UnityInputProto
from unimarl.protos._generated.unity_message_pb2 import UnityMessageProto
from unimarl.protos._generated.unity_output_pb2 import UnityOutputProto
from unimarl.protos._generated.unity_rl_initialization_input_pb2 import UnityRLInitializationInputProto
from unimarl.protos._generated.unity_rl_initialization_output_pb2 import UnityRLInitializationOutputProto
from unimarl.protos._generated.unity_rl_input_pb2 import UnityRLInputProto
from unimarl.protos._generated.unity_rl_output_pb2 import UnityRLOutputProto

#: Communication API version spoken by this package (Unity's ``Academy.k_ApiVersion``).
API_VERSION = "1.5.0"
#: gRPC method path of the single RPC; Unity is the client, the trainer the server.
EXCHANGE_METHOD = "/communicator_objects.UnityToExternalProto/Exchange"


def all_capabilities() -> UnityRLCapabilitiesProto:
    """Every capability flag set: what both sides of unimarl announce (the trainer and the stand-in games)."""
    caps = UnityRLCapabilitiesProto()
    for field in caps.DESCRIPTOR.fields:
        setattr(caps, field.name, True)
    return caps


__all__ = [
    "API_VERSION",
    "EXCHANGE_METHOD",
    "ActionSpecProto",
    "AgentActionProto",
    "AgentInfoProto",
    "BrainParametersProto",
    "CommandProto",
    "CompressionTypeProto",
    "HeaderProto",
    "ObservationProto",
    "ObservationTypeProto",
    "UnityInputProto",
    "UnityMessageProto",
    "UnityOutputProto",
    "UnityRLCapabilitiesProto",
    "UnityRLInitializationInputProto",
    "UnityRLInitializationOutputProto",
    "UnityRLInputProto",
    "UnityRLOutputProto",
    "all_capabilities",
]
