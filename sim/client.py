"""The Unity-like client: runs a stand-in game and talks to the trainer exactly as a Unity player build.

Command line as a player build: ``--mlagents-port N`` (required: a build without it would run inference;
the sim exits with code 2), ``-batchmode``, ``-nographics``, ``-logFile PATH`` (``-`` = stderr); other
Unity flags are ignored. The sim's own flags: ``--package-version`` (default 2.2.1-exp.1; major >= 3 sends
rank-3 observations CHW), ``--timeout`` (seconds to wait for the trainer on each call, default 60, 0 =
forever), ``--record PATH``, ``--misbehave MODE[:N]``, plus each game's flags.

Wire behaviour (Academy + RpcCommunicator): dial ``localhost:N``; call #1 sends the initialization output
(name "AcademySingleton", API 1.5.0, package version, all capabilities) without brain parameters; its reply
holds seed, num_areas and capabilities; call #2 sends a bare header 200 and its reply is the first input.
Then per input: header 400 or QUIT -> exit 0; side channels applied; RESET -> reset; STEP -> actions
matched by position to the previous output's deciding agents, then academy steps until some agent has
something to report. Each output carries brain parameters for behaviours seen for the first time.

Cost per step: a game that sets ``reads_actions = False`` (``bench``) gets no actions (the client checks
only their count); the record file is built only with ``--record``.

Faults (``--misbehave``, N = number of STEP commands applied first): ``die:N`` exit 3; ``hang:N`` stop
answering (block forever); ``malformed:N`` send bytes that are not a message; ``bad-version`` announce API
2.0.0; ``bad-shape:N`` one observation shorter than its shape; ``nan:N`` a NaN in one observation.

``--record PATH`` appends one JSON line per input received: ``status``, ``command``, ``sent`` (per behaviour
the ``ids``, ``done`` flags and ``rewards`` of the output this input answers, in message order) and
``actions`` (per behaviour ``continuous`` and ``discrete`` lists, in received order), and, for behaviours that
act from a pushed policy, ``inferred`` (per behaviour the ``continuous`` and ``discrete`` actions the game
applied instead, aligned with the deciding agents of ``sent``; for an ``--inference-behavior`` behaviour,
which is never sent, also the ``ids`` of its agents that decided with that output, the latest decision).

Pushed policies (policy side channel, :mod:`unimarl.sim.policy_runner`) are always received and
acknowledged; ``--behavior-type inference`` makes the agents of a behaviour with a received policy act from
it (Unity's *Inference Only*), ``default`` keeps the trainer's actions (a connected *Default* agent).

``--inference-behavior NAME`` (repeatable; the full name, e.g. ``Battle?team=1``; an unknown name is a usage
error listing the game's behaviours) plays a Unity team whose Behavior Type is *Heuristic Only* and whose
``Heuristic`` calls ``PolicyHotSwap.TryDecide`` (e.g. a self-play opponent run inside the game): its agents
are never reported (no AgentInfos, no brain parameters; ML-Agents sends only agents with a remote policy);
they decide at every academy step they request a decision, silent steps included, with the deterministic
outputs of the newest model received for the behaviour, and with zero actions before one arrives. Its game
stats are sent as usual; its models are received and acknowledged like any other.

Exit codes: 0 quit, 1 trainer unreachable / no answer in time, 2 usage, 3 ``--misbehave die``.

The command line itself is parsed by :mod:`unimarl.sim.player_args`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
from dataclasses import fields
from typing import IO, Any

import grpc
import numpy as np
from google.protobuf.message import DecodeError

from unimarl.protos import (
    API_VERSION,
    EXCHANGE_METHOD,
    CommandProto,
    UnityMessageProto,
    all_capabilities,
)
from unimarl.protos.policy_wire import POLICY_CHANNEL_ID
from unimarl.sim import encode
from unimarl.sim.channels import SideChannels, stats_bytes
from unimarl.sim.game import AgentBatch, BehaviorDef, Game
from unimarl.sim.player_args import build_parser, configure_logging
from unimarl.sim.policy_runner import PolicyRunner

__all__ = ["Client", "SimExit", "build_parser", "parse_actions", "run_client"]

logger = logging.getLogger(__name__)

EXIT_QUIT, EXIT_ERROR, EXIT_USAGE, EXIT_DIE = 0, 1, 2, 3
STATUS_OK, STATUS_CLOSE = 200, 400
MALFORMED_BYTES = b"\xff\xff\xff\xff this is not a UnityMessageProto"
_MAX_SILENT_STEPS = 100_000


class SimExit(Exception):
    """Ends the client with an exit code (raised inside the loop, caught by :meth:`Client.run`)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


def _check_action_count(behavior: BehaviorDef, received: int, n: int) -> None:
    if received != n:
        logger.warning("behaviour %s: %d actions for %d deciding agents", behavior.name, received, n)


def parse_actions(behavior: BehaviorDef, actions: list[Any], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Actions for ``n`` deciding agents -> (continuous [n, c], discrete [n, b]); missing rows are zero."""
    n_cont, n_disc = behavior.num_continuous, len(behavior.discrete_branches)
    continuous = np.zeros((n, n_cont), np.float32)
    discrete = np.zeros((n, n_disc), np.int32)
    _check_action_count(behavior, len(actions), n)
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


class Client:
    """One game process's connection to the trainer (Unity's Academy + RpcCommunicator)."""

    def __init__(self, game_cls: type[Game], args: argparse.Namespace) -> None:
        self.game_cls = game_cls
        self.args = args
        self.chw = _package_major(args.package_version) >= 3
        self.channels = SideChannels()
        self.hidden = frozenset(args.inference_behavior)
        self.policies = PolicyRunner(
            self.chw, inference=args.behavior_type == "inference", hidden=self.hidden
        )
        self.channels.handlers[POLICY_CHANNEL_ID] = self._receive_policy
        self._inferred: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._hidden_applied: dict[str, dict[str, list]] = {}  # for the record file only
        self.game: Game | None = None
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
        if rl_input.command == CommandProto.RESET or not self._started:
            self._started = True
            self.game.reset(self.channels.params)
            return
        reads_actions = self.game.reads_actions
        for behavior in self.game.behaviors:
            ids = self.deciding.get(behavior.name)
            if ids is None or not len(ids):
                continue
            lists = rl_input.agent_actions
            received = lists[behavior.name].value if behavior.name in lists else []
            if not reads_actions:  # the game ignores actions: check their count, parse nothing
                _check_action_count(behavior, len(received), len(ids))
                continue
            continuous, discrete = parse_actions(behavior, list(received), len(ids))
            if behavior.name in self._inferred:  # agents acting from a pushed policy ignore the trainer
                continuous, discrete = self._inferred[behavior.name]
            self.game.set_actions(behavior.name, ids, continuous, discrete)
            self.policies.record(behavior.name, ids, continuous, discrete)
        self.steps += 1
        self._fault_before_output()
        for _ in range(_MAX_SILENT_STEPS):
            self.game.step(self.channels.params)
            self._collected = self._collect()
            if any(len(b) for b in self._collected.values()):
                return
        raise SimExit(EXIT_ERROR, f"no agent requested a decision in {_MAX_SILENT_STEPS} steps")

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
        for behavior in self.game.behaviors:
            batch = batches.get(behavior.name)
            if batch is None or not len(batch):
                continue
            if self._fault("nan"):  # on a copy: the game's batch (maybe pooled) stays as it is
                first = batch.obs[0].copy()
                first.reshape(len(batch), -1)[0, 0] = np.nan
                plain = {f.name: getattr(batch, f.name) for f in fields(AgentBatch)}
                batch = AgentBatch(**{**plain, "obs": [first, *batch.obs[1:]]})
            corrupt = self._fault("bad-shape")
            infos.append((behavior.name, encode.encode_batch(behavior, batch, self.chw, corrupt)))
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
            }
        side_channel = stats_bytes(self.game.pop_stats()) + self.policies.pop_ack_frames()
        return encode.output_message(infos, side_channel, new_brains)

    def _act(self, behavior: BehaviorDef, batch: AgentBatch) -> tuple[np.ndarray, np.ndarray]:
        """The received model's actions for the deciding agents of ``batch``."""
        live = ~batch.done
        mask = None if batch.mask is None else batch.mask[live]
        obs = [o[live] for o in batch.obs]
        return self.policies.act(behavior, obs, mask, batch.ids[live], batch.ids[batch.done])

    def _collect(self) -> dict[str, AgentBatch]:
        """The game's batches to report; ``--inference-behavior`` behaviours decide here and are left out."""
        assert self.game is not None
        batches = self.game.collect()
        if not self.hidden:
            return batches
        for behavior in self.game.behaviors:
            batch = batches.get(behavior.name)
            if behavior.name in self.hidden and batch is not None and len(batch):
                self._decide_hidden(behavior, batch)
        return {name: batch for name, batch in batches.items() if name not in self.hidden}

    def _decide_hidden(self, behavior: BehaviorDef, batch: AgentBatch) -> None:
        """A Heuristic Only team's decision: the newest model's actions, zeros before one arrives."""
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
                "continuous": continuous.tolist(),
                "discrete": discrete.tolist(),
            }

    def _receive_policy(self, payload: bytes) -> None:
        behaviors = {b.name: b for b in self.game.behaviors} if self.game is not None else {}
        self.policies.receive(payload, behaviors)

    def write_record(self, message: UnityMessageProto) -> None:
        if self.record is None:
            return
        rl_input = message.unity_input.rl_input
        actions = {
            name: {
                "continuous": [list(a.continuous_actions) for a in lst.value],
                "discrete": [list(a.discrete_actions) for a in lst.value],
            }
            for name, lst in sorted(rl_input.agent_actions.items())
        }
        line = {
            "status": message.header.status,
            "command": CommandProto.Name(rl_input.command),
            "sent": self._last_sent,
            "actions": actions,
        }
        inferred: dict[str, dict[str, list]] = {
            name: {"continuous": c.tolist(), "discrete": d.tolist()}
            for name, (c, d) in self._inferred.items()
        }
        inferred.update(self._hidden_applied)
        self._hidden_applied = {}
        if inferred:
            line["inferred"] = inferred
        self.record.write(json.dumps(line) + "\n")
        self.record.flush()

    def run(self) -> int:
        """Handshake, then exchange until told to quit; returns the exit code."""
        try:
            if self.args.record is not None:
                self.record = self.args.record.open("a")
            message = self.handshake()
            while True:
                self.write_record(message)
                self.apply(message)
                message = self.call(self.output())
        except SimExit as e:
            log = logger.info if e.code == EXIT_QUIT else logger.error
            log("exiting with code %d: %s", e.code, e)
            return e.code
        finally:
            self._channel.close()
            if self.record is not None:
                self.record.close()


def _package_major(version: str) -> int:
    try:
        return int(version.split(".")[0])
    except ValueError:
        logger.warning("package version %r has no numeric major; assuming the 2.x layout", version)
        return 2


def run_client(game_cls: type[Game], argv: list[str], prog: str | None = None) -> int:
    """Parse a player command line for ``game_cls`` and run it; returns the process exit code."""
    parser = build_parser(game_cls, prog)
    args, unknown = parser.parse_known_args(argv)
    configure_logging(args.log_file)
    if unknown:
        logger.info("ignoring unrecognised arguments: %s", " ".join(unknown))
    if args.mlagents_port is None:
        return _usage_error(
            args,
            "no --mlagents-port given: a player build would run inference without a trainer; "
            "the headless sim needs one: pass --mlagents-port N",
        )
    unknown_behaviors = _unknown_behaviors(game_cls, args)
    if unknown_behaviors:
        return _usage_error(args, unknown_behaviors)
    return Client(game_cls, args).run()


def _unknown_behaviors(game_cls: type[Game], args: argparse.Namespace) -> str:
    """Why ``--inference-behavior`` names no behaviour of the game ('' when every name is known)."""
    if not args.inference_behavior:
        return ""
    try:  # behaviours follow from the flags; a throw-away instance lists them before dialing the trainer
        known = [b.name for b in game_cls(args, 0, 1).behaviors]
    except ValueError as e:
        return f"invalid flags for {game_cls.name}: {e}"
    unknown = [name for name in args.inference_behavior if name not in known]
    if not unknown:
        return ""
    return (
        f"--inference-behavior {', '.join(map(repr, unknown))}: no such behaviour in {game_cls.name}; "
        f"pass a full name, one of {known}"
    )


def _usage_error(args: argparse.Namespace, message: str) -> int:
    logger.error(message)
    if args.log_file and args.log_file != "-":
        sys.stderr.write(message + "\n")
    return EXIT_USAGE
