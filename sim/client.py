"""The Unity-like client: runs a stand-in game and talks to the trainer exactly as a Unity player build.

Command line as a player build: ``--mlagents-port N`` (required: a build without it would run inference;
the sim exits with code 2), ``-batchmode``, ``-nographics``, ``-logFile PATH`` (``-`` = stderr); other
Unity flags are ignored. The sim's own flags are listed by ``unimarl sim NAME --help``
(:mod:`unimarl.sim.player_args`).

Wire behaviour (Academy + RpcCommunicator; docs/unity-semantics.md cites the C# lines): dial ``localhost:N``;
call #1 sends the initialization output (name "AcademySingleton", API 1.5.0, package version, all
capabilities) without brain parameters; its reply holds seed, num_areas and capabilities; call #2 sends a bare
header 200 and its reply is the first input. Then per input: header 400 or QUIT -> exit 0; side channels
applied; RESET -> reset; STEP -> actions matched by position to the previous output's deciding agents (0 < k
< n actions for n agents: Unity throws, the sim exits with code 1; none: zeros), then academy steps until
some reported agent has something to report. Each output carries brain parameters for behaviours seen for the
first time. Each agent's observations travel in ML-Agents' sensor order (:mod:`unimarl.sim.sensors`).

Behaviour types (``--behavior-type``, ``--inference-behavior``): only agents of type *Default* have a
``RemotePolicy`` and are reported; *Inference Only* and *Heuristic Only* agents are never sent. When no
behaviour is reported, Unity never calls ``DecideBatch``, so the game sends nothing after the handshake: the
sim keeps playing (one academy step every 20 ms) until it is killed.

``--record PATH`` appends one JSON line per input received (:mod:`unimarl.sim.record`).

Faults (``--misbehave``, N = number of STEP commands applied first): ``die:N`` exit 3; ``hang:N`` stop
answering (block forever); ``malformed:N`` send bytes that are not a message; ``bad-version`` announce API
2.0.0; ``bad-shape:N`` one observation shorter than its shape; ``nan:N`` a NaN in one observation; ``mute``
connect but never send the handshake (a player hung at start-up).

Exit codes: 0 quit, 1 trainer unreachable / no answer in time / an exception Unity would throw, 2 usage,
3 ``--misbehave die``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from dataclasses import dataclass, field, fields
from typing import IO

import grpc
import numpy as np
from google.protobuf.message import DecodeError

from unimarl.protos import (
    API_VERSION,
    EXCHANGE_METHOD,
    CommandProto,
    UnityMessageProto,
    UnityRLInputProto,
    all_capabilities,
)
from unimarl.protos.policy_wire import POLICY_CHANNEL_ID
from unimarl.sim import encode
from unimarl.sim.channels import SideChannels, stats_bytes
from unimarl.sim.game import AgentBatch, BehaviorDef, Game
from unimarl.sim.player_args import build_parser, configure_logging, usage_problem
from unimarl.sim.policy_runner import PolicyRunner
from unimarl.sim.record import record_line
from unimarl.sim.sensors import reorder_batch, sorted_behavior
from unimarl.sim.wire_rules import (
    CHW_SHAPE_HWC_DATA,
    EXIT_DIE,
    EXIT_ERROR,
    EXIT_QUIT,
    EXIT_USAGE,
    HWC,
    SimExit,
    check_action_count,
    parse_actions,
    visual_layout,
)

__all__ = ["EXIT_USAGE", "Client", "SimExit", "build_parser", "parse_actions", "run_client"]

logger = logging.getLogger(__name__)

STATUS_OK, STATUS_CLOSE = 200, 400
MALFORMED_BYTES = b"\xff\xff\xff\xff this is not a UnityMessageProto"
_MAX_SILENT_STEPS = 100_000
#: Seconds between academy steps when nothing is sent (Unity's default fixed timestep, 0.02 s).
_QUIET_STEP_S = 0.02


@dataclass(frozen=True)
class _GameView:
    """What follows from the game's behaviours and the flags alone: derived once per game, not per step."""

    game: Game | None = None
    behaviors: list[BehaviorDef] = field(default_factory=list)
    """The game's behaviours, observations in ML-Agents' sensor order."""
    reorder: dict[str, tuple[int, ...]] = field(default_factory=dict)
    """Behaviours whose declared observation order is not the sensor order: the sensor order (indices)."""
    hidden: frozenset[str] = frozenset()
    """Behaviours not reported: not *Default* (all of them under a non-default ``--behavior-type``)."""


class Client:
    """One game process's connection to the trainer (Unity's Academy + RpcCommunicator)."""

    def __init__(self, game_cls: type[Game], args: argparse.Namespace) -> None:
        self.game_cls = game_cls
        self.args = args
        layout = visual_layout(args.package_version)
        self.chw, self.hwc_data = layout != HWC, layout == CHW_SHAPE_HWC_DATA
        self.channels = SideChannels()
        self.policies = PolicyRunner(
            self.chw,
            inference=args.behavior_type == "inference",
            hidden=frozenset(args.inference_behavior),
        )
        self.channels.handlers[POLICY_CHANNEL_ID] = self._receive_policy
        self._inferred: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._hidden_applied: dict[str, dict[str, list]] = {}  # for the record file only
        self.game: Game | None = None
        self._view = _GameView()
        self.announced: set[str] = set()
        self.deciding: dict[str, np.ndarray] = {}
        self.steps = 0
        self.record: IO[str] | None = None
        self._last_sent: dict[str, dict[str, list]] = {}
        self._collected: dict[str, AgentBatch] = {}
        self._started = False
        self._channel = grpc.insecure_channel(f"localhost:{args.mlagents_port}")
        # Raw bytes both ways: the answer is parsed by ``call`` (None = no (de)serializer).
        self._exchange = self._channel.unary_unary(
            EXCHANGE_METHOD, request_serializer=None, response_deserializer=None
        )

    @property
    def behaviors(self) -> list[BehaviorDef]:
        """The game's behaviours with their observations in ML-Agents' sensor order."""
        return self._game_view().behaviors

    @property
    def hidden(self) -> frozenset[str]:
        """Behaviours not reported: not *Default* (all of them under a non-default ``--behavior-type``)."""
        return self._game_view().hidden

    def _game_view(self) -> _GameView:
        """The sorted behaviours and hidden names of the current game, sorted once per game instance."""
        view = self._view
        if view.game is not self.game:
            assert self.game is not None
            declared = self.game.behaviors
            pairs = [sorted_behavior(b) for b in declared]
            behaviors = [b for b, _ in pairs]
            reorder = {
                b.name: order
                for b, (_, order) in zip(declared, pairs, strict=True)
                if order != tuple(range(len(order)))
            }
            if self.args.behavior_type != "default":
                hidden = frozenset(b.name for b in behaviors)
            else:
                hidden = frozenset(self.args.inference_behavior)
            view = self._view = _GameView(self.game, behaviors, reorder, hidden)
        return view

    def call(self, payload: bytes) -> UnityMessageProto:
        """One Exchange: send ``payload``, wait (``--timeout``) for and parse the answer."""
        timeout = self.args.timeout if self.args.timeout > 0 else None
        where = f"localhost:{self.args.mlagents_port}"
        try:
            reply = self._exchange(payload, timeout=timeout, wait_for_ready=True)
        except grpc.RpcError as e:
            code = e.code() if isinstance(e, grpc.Call) else None
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                reason = f"no answer from the trainer at {where} within {self.args.timeout} s"
                raise SimExit(EXIT_ERROR, reason + " (is it running? raise --timeout?)") from e
            raise SimExit(EXIT_ERROR, f"exchange with the trainer at {where} failed: {e}") from e
        message = UnityMessageProto()
        try:
            message.ParseFromString(reply)
        except DecodeError as e:
            raise SimExit(
                EXIT_ERROR, f"the trainer at {where} answered {len(reply)} bytes that are not a message: {e}"
            ) from e
        return message

    def handshake(self) -> UnityMessageProto:
        """Calls #1 and #2; returns the first real input."""
        if self.args.misbehave is not None and self.args.misbehave.mode == "mute":
            logger.warning("--misbehave mute: never sending the handshake")
            while True:  # hung at start-up until killed
                time.sleep(1.0)
        hello = UnityMessageProto()
        hello.header.status = STATUS_OK
        init = hello.unity_output.rl_initialization_output
        init.name = "AcademySingleton"
        bad = self.args.misbehave is not None and self.args.misbehave.mode == "bad-version"
        init.communication_version = "2.0.0" if bad else API_VERSION
        init.package_version = self.args.package_version
        init.capabilities.CopyFrom(all_capabilities())
        reply = self.call(hello.SerializeToString())
        if reply.header.status == STATUS_CLOSE:
            raise SimExit(EXIT_QUIT, f"trainer refused the handshake: {reply.header.message!r}")
        rl_init = reply.unity_input.rl_initialization_input
        logger.info(
            "connected: trainer API %s, package %s, seed %d, num_areas %d",
            rl_init.communication_version,
            rl_init.package_version,
            rl_init.seed,
            rl_init.num_areas,
        )
        self.game = self.game_cls(self.args, rl_init.seed, rl_init.num_areas)
        second = UnityMessageProto()
        second.header.status = STATUS_OK
        return self.call(second.SerializeToString())

    def apply(self, message: UnityMessageProto) -> None:
        """Apply one input: quit, side channels, reset or step (with fault injection)."""
        assert self.game is not None
        if message.header.status == STATUS_CLOSE:
            raise SimExit(EXIT_QUIT, "trainer closed the connection (status 400)")
        rl_input = message.unity_input.rl_input
        self.channels.process(rl_input.side_channel)
        if rl_input.command == CommandProto.QUIT:
            raise SimExit(EXIT_QUIT, "QUIT command received")
        if not self._started:
            # The first input is processed inside RpcCommunicator.Initialize, before the Academy subscribes to
            # ResetCommandReceived (3.0.0 Academy.cs:462 vs 490-491, 4.0.1: one line later): its command does
            # nothing, and the first EnvironmentStep resets (Academy.cs:572-575), with no action in between.
            self._started = True
            self.game.reset(self.channels.params)
            return
        if rl_input.command == CommandProto.RESET:
            self.game.reset(self.channels.params)
            if self.args.unity_reset:
                self._zero_action_step()
            return
        self._apply_actions(rl_input)
        self.steps += 1
        self._fault_before_output()
        if self.args.quit_after is not None and self.steps >= self.args.quit_after:
            self.quit_by_itself()
        for _ in range(_MAX_SILENT_STEPS):
            self.game.step(self.channels.params)
            self._collected = self._collect()
            if any(len(b) for b in self._collected.values()):
                return
        raise SimExit(EXIT_ERROR, f"no agent requested a decision in {_MAX_SILENT_STEPS} steps")

    def _apply_actions(self, rl_input: UnityRLInputProto) -> None:
        assert self.game is not None
        lists = rl_input.agent_actions
        reads_actions = self.game.reads_actions
        for behavior in self._game_view().behaviors:
            ids = self.deciding.get(behavior.name)
            if ids is None or not len(ids):
                continue
            received = lists[behavior.name].value if behavior.name in lists else []
            if not reads_actions:  # the game ignores actions: check their count, parse nothing
                check_action_count(behavior, len(received), len(ids))
                continue
            continuous, discrete = parse_actions(behavior, list(received), len(ids))
            if behavior.name in self._inferred:  # agents acting from a pushed policy ignore the trainer
                continuous, discrete = self._inferred[behavior.name]
            self.game.set_actions(behavior.name, ids, continuous, discrete)
            self.policies.record(behavior.name, ids, continuous, discrete)

    def _zero_action_step(self) -> None:
        """``--unity-reset``: after a RESET every agent executes one zero action before it is observed.

        The RESET arrives inside ``DecideAction`` (RpcCommunicator.cs:416 -> 300-307 -> 3.0.0
        Academy.cs:520-523, 557-562; 4.0.1 one line later): ``_AgentReset`` clears the stored actions, then
        ``AgentAct`` of the same EnvironmentStep executes them (Academy.cs:599-602, Agent.cs:1390-1396); the
        first new observations follow at the next step's ``AgentSendState``. The sims count that step as the
        episode's first.
        """
        assert self.game is not None
        pending = self.game.collect()  # the reset agents, not observed yet
        if self.game.reads_actions:
            for behavior in self.behaviors:
                batch = pending.get(behavior.name)
                if batch is None or not len(batch):
                    continue
                ids = batch.ids[~batch.done]
                continuous = np.zeros((len(ids), behavior.num_continuous), np.float32)
                discrete = np.zeros((len(ids), len(behavior.discrete_branches)), np.int32)
                self.game.set_actions(behavior.name, ids, continuous, discrete)
        self.game.step(self.channels.params)
        self._collected = self._collect()

    def quit_by_itself(self) -> None:
        """``--quit-after``: the player quits on its own; ``Academy.Dispose`` sends a bare header 400.

        ``Application.quitting += Dispose`` (Academy.cs:253) -> ``Communicator.Dispose`` ->
        ``m_Client.Exchange(WrapMessage(null, 400))`` (RpcCommunicator.cs:269-285), the reply ignored.
        """
        logger.info("--quit-after %d: quitting; sending header 400 to the trainer", self.args.quit_after)
        bye = UnityMessageProto()
        bye.header.status = STATUS_CLOSE
        try:
            self.call(bye.SerializeToString())
        except SimExit as e:  # as Dispose: an exchange that fails is ignored
            logger.info("the trainer did not answer the closing exchange: %s", e)
        raise SimExit(EXIT_QUIT, "quit by itself (--quit-after)")

    def _fault(self, *modes: str) -> bool:
        fault = self.args.misbehave
        return fault is not None and fault.mode in modes and self.steps >= fault.after

    def _fault_before_output(self) -> None:
        if self._fault("die"):
            raise SimExit(EXIT_DIE, f"--misbehave die: exiting after {self.steps} steps")
        if self._fault("hang"):
            logger.warning("--misbehave hang: no longer answering after %d steps", self.steps)
            threading.Event().wait()

    def output(self) -> bytes:
        """The output for the current game state (with new brain parameters and side channels)."""
        assert self.game is not None
        batches = self._collected or self._collect()
        self._collected = {}
        if self._fault("malformed"):
            logger.warning("--misbehave malformed: sending bytes that are not a message")
            return MALFORMED_BYTES
        infos, new_brains = [], []
        self.deciding, self._last_sent, self._inferred = {}, {}, {}
        for behavior in self._game_view().behaviors:
            batch = batches.get(behavior.name)
            if batch is None or not len(batch):
                continue
            if self._fault("nan"):  # on a copy: the game's batch (maybe pooled) stays as it is
                first = batch.obs[0].copy()
                first.reshape(len(batch), -1)[0, 0] = np.nan
                plain = {f.name: getattr(batch, f.name) for f in fields(AgentBatch)}
                batch = AgentBatch(**{**plain, "obs": [first, *batch.obs[1:]]})
            corrupt = self._fault("bad-shape")
            wire = encode.encode_batch(behavior, batch, self.chw, corrupt, self.hwc_data)
            infos.append((behavior.name, wire))
            if behavior.name not in self.announced:
                self.announced.add(behavior.name)
                new_brains.append(behavior)
            self.deciding[behavior.name] = batch.ids[~batch.done]
            if self.policies.acts_for(behavior.name) and len(self.deciding[behavior.name]):
                self._inferred[behavior.name] = self._act(behavior, batch)
            if self.record is None:  # what was sent is only kept for the record file
                continue
            self._last_sent[behavior.name] = {
                "ids": batch.ids.tolist(),
                "done": batch.done.tolist(),
                "rewards": batch.rewards.tolist(),
                # as encoded: a group reward travels only with a group id (Unity's default 0 otherwise)
                "group_rewards": (
                    batch.group_reward.tolist()
                    if batch.group_id is not None and batch.group_reward is not None
                    else [0.0] * len(batch)
                ),
            }
        side_channel = stats_bytes(self.game.pop_stats()) + self.policies.pop_ack_frames()
        return encode.output_message(infos, side_channel, new_brains)

    def _act(self, behavior: BehaviorDef, batch: AgentBatch) -> tuple[np.ndarray, np.ndarray]:
        """The received model's actions for the deciding agents of ``batch``."""
        live = ~batch.done
        mask = None if batch.mask is None else batch.mask[live]
        obs = [o[live] for o in batch.obs]
        groups = None if batch.group_id is None else batch.group_id[live]
        return self.policies.act(behavior, obs, mask, batch.ids[live], batch.ids[batch.done], groups)

    def _collect(self) -> dict[str, AgentBatch]:
        """The batches to report, observations in sensor order; hidden behaviours decide here, left out."""
        assert self.game is not None
        view = self._game_view()
        batches = self.game.collect()
        if view.reorder:  # a behaviour declared in sensor order keeps its batch (and its cached wire bytes)
            batches = {
                name: reorder_batch(b, view.reorder[name]) if name in view.reorder else b
                for name, b in batches.items()
            }
        hidden = view.hidden
        if not hidden:
            return batches
        for behavior in view.behaviors:
            batch = batches.get(behavior.name)
            if behavior.name in hidden and batch is not None and len(batch):
                self._decide_hidden(behavior, batch)
        return {name: batch for name, batch in batches.items() if name not in hidden}

    def _decide_hidden(self, behavior: BehaviorDef, batch: AgentBatch) -> None:
        """A hidden team's decision: the newest model's actions where it acts from one, else zeros."""
        assert self.game is not None
        ids = batch.ids[~batch.done]
        if not len(ids) or not self.game.reads_actions:
            return
        if self.policies.acts_for(behavior.name):
            continuous, discrete = self._act(behavior, batch)
        else:
            continuous = np.zeros((len(ids), behavior.num_continuous), np.float32)
            discrete = np.zeros((len(ids), len(behavior.discrete_branches)), np.int32)
        self.game.set_actions(behavior.name, ids, continuous, discrete)
        self.policies.record(behavior.name, ids, continuous, discrete)
        if self.record is not None:
            self._hidden_applied[behavior.name] = {
                "ids": ids.tolist(),
                "ended": batch.ids[batch.done].tolist(),
                "groups": [] if batch.group_id is None else batch.group_id[~batch.done].tolist(),
                "continuous": continuous.tolist(),
                "discrete": discrete.tolist(),
            }

    def _receive_policy(self, payload: bytes) -> None:
        behaviors = {b.name: b for b in self.behaviors} if self.game is not None else {}
        self.policies.receive(payload, behaviors)

    def write_record(self, message: UnityMessageProto) -> None:
        if self.record is None:
            return
        self.record.write(record_line(message, self._last_sent, self._inferred, self._hidden_applied))
        self.record.flush()
        self._hidden_applied = {}

    def play_quietly(self) -> None:
        """No behaviour is reported: nothing calls ``DecideBatch``, so nothing is sent; play until killed.

        ``RpcCommunicator.DecideBatch`` exchanges only after ``PutObservations`` (RpcCommunicator.cs:320-329,
        362), which only ``RemotePolicy`` calls, and only *Default* agents with a trainer get one
        (Policies/BehaviorParameters.cs:229-263).
        """
        logger.info(
            "no agent has Behavior Type Default (--behavior-type %s): nothing is sent to the trainer after "
            "the handshake, as in a Unity player; playing until killed",
            self.args.behavior_type,
        )
        self._collect()  # the agents' first decisions after the reset
        while True:
            time.sleep(_QUIET_STEP_S)
            self.quiet_step()

    def quiet_step(self) -> None:
        """One academy step with nothing sent: hidden agents decide, nobody is reported."""
        assert self.game is not None
        self.game.step(self.channels.params)
        self._collect()

    def run(self) -> int:
        """Handshake, then exchange until told to quit; returns the exit code."""
        try:
            if self.args.record is not None:
                self.record = self.args.record.open("a")
            message = self.handshake()
            while True:
                self.write_record(message)
                self.apply(message)
                view = self._game_view()
                if len(view.hidden) == len(view.behaviors):
                    self.play_quietly()
                message = self.call(self.output())
        except SimExit as e:
            log = logger.info if e.code == EXIT_QUIT else logger.error
            log("exiting with code %d: %s", e.code, e)
            return e.code
        finally:
            self._channel.close()
            if self.record is not None:
                self.record.close()


def run_client(game_cls: type[Game], argv: list[str], prog: str | None = None) -> int:
    """Parse a player command line for ``game_cls`` and run it; returns the process exit code."""
    parser = build_parser(game_cls, prog)
    args, unknown = parser.parse_known_args(argv)
    configure_logging(args.log_file)
    if unknown:
        logger.info("ignoring unrecognised arguments: %s", " ".join(unknown))
    problem = usage_problem(game_cls, args)
    if problem:
        logger.error(problem)
        if args.log_file and args.log_file != "-":
            sys.stderr.write(problem + "\n")
        return EXIT_USAGE
    return Client(game_cls, args).run()
