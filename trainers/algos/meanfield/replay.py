"""Replay storage for the mean-field learners, sized for large populations.

Everything is preallocated numpy (``np.zeros``: pages are committed by the OS only when first written). The
buffer keeps two rings:

- *frames*: what an agent sees when it decides - its observations (stored in a configurable dtype per sensor:
  float32, float16, or uint8 for integer-valued sensors, checked to be lossless on insert), the mean action it
  acts on and its action mask;
- *rows*: one per transition - the generation numbers of the frame it starts from and the frame it leads to,
  the action, the reward, ``terminated`` and, with ``store_logp`` (MF-AC), the action's log-probability
  under the weights that chose it (NaN when not given).

With ``share_frames`` (the default; transitions must then carry ``agent_keys``), an agent's next transition
starts from the frame its previous transition led to (checked equal, so a caller that skips a step still gets
correct data) and each frame is stored once instead of twice. A frame lives until ``frame_capacity`` newer
frames were written (capacity plus ``frame_slack`` for agents' first frames, or twice the capacity without
sharing); the few rows whose frames were overwritten are never sampled. ``terminated`` rows do not
bootstrap; ``truncated`` rows do, and both end the agent's chain of frames.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from unimarl.trainers.algos.meanfield.mean_action import MeanFieldError

logger = logging.getLogger(__name__)

_DTYPES = {"float32": np.float32, "float16": np.float16, "uint8": np.uint8}


@dataclass(frozen=True)
class Transitions:
    """B agent transitions (s, a, mean_a, r, s', mean_a', terminated), first axis B.

    ``action``: int [B] (one discrete branch). ``action_mask`` / ``next_action_mask``: [B, n_actions], nonzero
    = allowed (None = all allowed). ``mean_action`` / ``next_mean_action``: float32 [B, D] (None without mean
    actions). ``agent_keys``: stable agent names, enabling frame sharing between consecutive transitions.
    ``logp``: float32 [B], log-probability of each action under the weights that chose it (None: unknown).
    """

    obs: tuple[np.ndarray, ...]
    action: np.ndarray
    reward: np.ndarray
    next_obs: tuple[np.ndarray, ...]
    terminated: np.ndarray
    truncated: np.ndarray | None = None
    mean_action: np.ndarray | None = None
    next_mean_action: np.ndarray | None = None
    action_mask: np.ndarray | None = None
    next_action_mask: np.ndarray | None = None
    agent_keys: Sequence[Hashable] | None = None
    logp: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.action.shape[0])


@dataclass(frozen=True)
class ReplaySample:
    """A batch read back from the buffer: obs float32, masks bool (True = allowed), ``terminated`` float32,
    ``logp`` float32 (NaN where the transition carried none)."""

    obs: tuple[np.ndarray, ...]
    mean_action: np.ndarray
    action_mask: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    next_obs: tuple[np.ndarray, ...]
    next_mean_action: np.ndarray
    next_action_mask: np.ndarray
    terminated: np.ndarray
    logp: np.ndarray


class ReplayBuffer:
    """Preallocated ring buffer of transitions with shared frames (see the module docstring)."""

    def __init__(
        self,
        obs_shapes: Sequence[tuple[int, ...]],
        capacity: int,
        *,
        n_actions: int,
        mean_dim: int = 0,
        obs_dtypes: Sequence[str] | None = None,
        frame_slack: float = 0.125,
        share_frames: bool = True,
        seed: int | None = None,
        store_logp: bool = False,
    ) -> None:
        if capacity < 1 or n_actions < 1 or mean_dim < 0 or frame_slack < 0:
            raise MeanFieldError(
                f"bad replay settings capacity={capacity}, n_actions={n_actions}, mean_dim={mean_dim}, "
                f"frame_slack={frame_slack}; all must be positive (mean_dim, frame_slack >= 0)"
            )
        dtypes = tuple(obs_dtypes) if obs_dtypes is not None else ("float32",) * len(obs_shapes)
        if len(dtypes) != len(obs_shapes) or any(d not in _DTYPES for d in dtypes):
            raise MeanFieldError(
                f"obs_dtypes {dtypes} must name one of {sorted(_DTYPES)} "
                f"for each of the {len(obs_shapes)} sensors"
            )
        self.capacity = int(capacity)
        self.share_frames = share_frames
        self.frame_slack = frame_slack
        # unshared, every transition writes two frames
        self.frame_capacity = int(
            capacity + math.ceil(capacity * frame_slack) if share_frames else 2 * capacity
        )
        self.obs_dtypes = dtypes
        fc = self.frame_capacity
        self._frame_obs = [np.zeros((fc, *s), _DTYPES[d]) for s, d in zip(obs_shapes, dtypes, strict=True)]
        self._frame_mean = np.zeros((fc, mean_dim), np.float32)
        self._frame_mask = np.zeros((fc, n_actions), bool)
        self._row_obs = np.zeros(capacity, np.int64)  # frame generation numbers, slot = gen % frame_capacity
        self._row_next = np.zeros(capacity, np.int64)
        self._row_action = np.zeros(capacity, np.int16 if n_actions <= 2**15 else np.int32)
        self._row_reward = np.zeros(capacity, np.float32)
        self._row_logp = np.full(capacity if store_logp else 0, np.nan, np.float32)  # on-policy learners only
        self._row_terminated = np.zeros(capacity, bool)
        self._frames_written = 0
        self._rows_written = 0
        self._last_frame: dict[Hashable, int] = {}
        self._rng = np.random.default_rng(seed)

    # -- sizes -----------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return min(self._rows_written, self.capacity)

    @property
    def frames_written(self) -> int:
        """Frames written so far: with frame sharing about one per transition instead of two."""
        return self._frames_written

    @property
    def nbytes(self) -> int:
        """Bytes held by all preallocated arrays."""
        arrays = [*self._frame_obs, self._frame_mean, self._frame_mask, self._row_obs, self._row_next]
        arrays += [self._row_action, self._row_reward, self._row_logp, self._row_terminated]
        return int(sum(a.nbytes for a in arrays))

    @property
    def bytes_per_transition(self) -> float:
        """Storage per transition at full capacity, frames included."""
        return self.nbytes / self.capacity

    def clear(self) -> None:
        """Drop every transition (the arrays stay allocated)."""
        self._frames_written += self.frame_capacity  # every older frame generation becomes stale
        self._rows_written = 0
        self._last_frame = {}

    # -- writing ---------------------------------------------------------------------------------------------
    def _write_frames(
        self, obs: tuple[np.ndarray, ...], mean: np.ndarray | None, mask: np.ndarray | None, rows: np.ndarray
    ) -> np.ndarray:
        gens = self._frames_written + np.arange(len(rows), dtype=np.int64)
        slots = gens % self.frame_capacity
        for store, o, dtype in zip(self._frame_obs, obs, self.obs_dtypes, strict=True):
            values = o[rows]
            if dtype == "uint8" and values.size:
                stored = values.astype(np.uint8)
                if not np.array_equal(stored, values):
                    raise MeanFieldError(
                        "a sensor stored as uint8 holds values that are not integers in 0..255 "
                        f"(e.g. {values.flat[np.argmax(stored != values)]}); store it as float16 or float32"
                    )
            store[slots] = values
        if self._frame_mean.shape[1]:
            if mean is None:
                raise MeanFieldError("this buffer stores mean actions; pass mean_action and next_mean_action")
            self._frame_mean[slots] = mean[rows]
        self._frame_mask[slots] = True if mask is None else mask[rows].astype(bool)
        self._frames_written += len(rows)
        return gens

    def _frame_matches(self, gens: np.ndarray, t: Transitions, rows: np.ndarray) -> np.ndarray:
        """Which stored frames equal the incoming start frames (as they would be stored)."""
        slots = gens % self.frame_capacity
        same = np.ones(len(rows), bool)
        for store, o in zip(self._frame_obs, t.obs, strict=True):
            incoming = o[rows].astype(store.dtype).reshape(len(rows), -1)
            same &= (store[slots].reshape(len(rows), -1) == incoming).all(axis=1)
        if self._frame_mean.shape[1] and t.mean_action is not None:
            same &= (self._frame_mean[slots] == t.mean_action[rows]).all(axis=1)
        return same

    def _check(self, t: Transitions) -> int:
        b = len(t)
        if 2 * b > self.frame_capacity or b > self.capacity:
            raise MeanFieldError(
                f"{b} transitions at once do not fit a buffer of capacity {self.capacity}; "
                f"raise the capacity to at least {2 * b}"
            )
        if len(t.obs) != len(self._frame_obs) or len(t.next_obs) != len(self._frame_obs):
            raise MeanFieldError(
                f"transitions carry {len(t.obs)} sensors, the buffer stores {len(self._frame_obs)}"
            )
        for i, (store, o, o2) in enumerate(zip(self._frame_obs, t.obs, t.next_obs, strict=True)):
            if o.shape != (b, *store.shape[1:]) or o2.shape != o.shape:
                raise MeanFieldError(
                    f"sensor {i}: obs {o.shape} / next_obs {o2.shape}, expected {(b, *store.shape[1:])}"
                )
        return b

    def add(self, t: Transitions) -> None:
        """Append B transitions, overwriting the oldest once full."""
        b = self._check(t)
        if b == 0:
            return
        start = np.full(b, -1, np.int64)
        keys = list(t.agent_keys) if t.agent_keys is not None else None
        if keys is None and self.share_frames:
            raise MeanFieldError(
                "this buffer shares frames between an agent's transitions and needs agent_keys; "
                "pass them, or build it with share_frames=False (twice the frame memory)"
            )
        if keys is not None and self.share_frames:
            if len(keys) != b:
                raise MeanFieldError(
                    f"{len(keys)} agent_keys for {b} transitions; pass one key per transition"
                )
            # a shared frame must outlive the up to 2B frames this call writes
            oldest = self._frames_written + 2 * b - self.frame_capacity
            known = np.array([self._last_frame.get(k, -1) for k in keys], np.int64)
            cand = np.flatnonzero(known >= max(oldest, 0))
            if cand.size:
                ok = self._frame_matches(known[cand], t, cand)
                start[cand[ok]] = known[cand[ok]]
        new = np.flatnonzero(start < 0)
        if new.size:
            start[new] = self._write_frames(t.obs, t.mean_action, t.action_mask, new)
        nxt = self._write_frames(t.next_obs, t.next_mean_action, t.next_action_mask, np.arange(b))
        row_slots = (self._rows_written + np.arange(b)) % self.capacity
        self._row_obs[row_slots] = start
        self._row_next[row_slots] = nxt
        self._row_action[row_slots] = np.asarray(t.action).reshape(b)
        self._row_reward[row_slots] = np.asarray(t.reward, np.float32).reshape(b)
        if self._row_logp.size:
            logp = np.nan if t.logp is None else np.asarray(t.logp, np.float32).reshape(b)
            self._row_logp[row_slots] = logp
        self._row_terminated[row_slots] = np.asarray(t.terminated, bool).reshape(b)
        self._rows_written += b
        if keys is not None and self.share_frames:
            ended = np.asarray(t.terminated, bool) | (
                np.zeros(b, bool) if t.truncated is None else np.asarray(t.truncated, bool)
            )
            for k, g, done in zip(keys, nxt, ended, strict=True):
                if done:
                    self._last_frame.pop(k, None)
                else:
                    self._last_frame[k] = int(g)

    # -- reading ---------------------------------------------------------------------------------------------
    def _valid(self, rows: np.ndarray) -> np.ndarray:
        return self._row_obs[rows] >= self._frames_written - self.frame_capacity

    def _read(self, rows: np.ndarray) -> ReplaySample:
        """The transitions in ``rows``: one gather per stored array, start and next frames together (the
        ``obs`` and ``next_obs`` halves are views of one array)."""
        n = len(rows)
        frames = np.concatenate([self._row_obs[rows], self._row_next[rows]]) % self.frame_capacity
        obs = [store[frames].astype(np.float32, copy=False) for store in self._frame_obs]
        mean, mask = self._frame_mean[frames], self._frame_mask[frames]
        return ReplaySample(
            obs=tuple(o[:n] for o in obs),
            mean_action=mean[:n],
            action_mask=mask[:n],
            action=self._row_action[rows].astype(np.int64),
            reward=self._row_reward[rows],
            next_obs=tuple(o[n:] for o in obs),
            next_mean_action=mean[n:],
            next_action_mask=mask[n:],
            terminated=self._row_terminated[rows].astype(np.float32),
            logp=self._row_logp[rows] if self._row_logp.size else np.full(n, np.nan, np.float32),
        )

    def sample(self, batch_size: int) -> ReplaySample:
        """Exactly ``batch_size`` transitions drawn uniformly (with replacement) from those whose frames are
        still stored (rows whose start frame was overwritten are never returned); :class:`MeanFieldError`
        when no row has its frames."""
        return self._read(self.sample_rows(batch_size))

    def sample_batches(self, batch_size: int, n: int) -> ReplaySample:
        """``n`` batches in one sample of ``n * batch_size`` rows, batch i at rows ``i * batch_size`` on: the
        rows ``n`` calls of :meth:`sample` would draw, read with one gather per stored array."""
        return self._read(np.concatenate([self.sample_rows(batch_size) for _ in range(n)]))

    def sample_rows(self, batch_size: int) -> np.ndarray:
        """The row indices :meth:`sample` reads (see there)."""
        n = len(self)
        if n == 0 or batch_size < 1:
            raise MeanFieldError(
                f"cannot sample {batch_size} transitions from a buffer holding {n}; add some first"
            )
        rows = self._rng.integers(0, n, size=batch_size)
        for _ in range(8):  # rejection sampling: cheap while few rows lost their frames
            bad = ~self._valid(rows)
            if not bad.any():
                return rows
            rows[bad] = self._rng.integers(0, n, size=int(bad.sum()))
        bad = ~self._valid(rows)
        if bad.any():  # many rows lost their frames: draw the rest from the intact rows directly
            intact = np.flatnonzero(self._valid(np.arange(n)))
            if intact.size == 0:
                raise MeanFieldError(
                    f"none of the {n} stored transitions has its frames left: agents' first frames "
                    f"overwrote them (frame_slack={self.frame_slack}, frame capacity {self.frame_capacity}); "
                    "raise frame_slack, or use share_frames=False"
                )
            rows[bad] = intact[self._rng.integers(0, intact.size, size=int(bad.sum()))]
        return rows

    def iterate(self, batch_size: int) -> Iterator[ReplaySample]:
        """Every stored transition once, shuffled, in batches of ``batch_size`` (the last may be smaller)."""
        rows = self._rng.permutation(len(self))
        rows = rows[self._valid(rows)]
        for i in range(0, rows.size, batch_size):
            yield self._read(rows[i : i + batch_size])
