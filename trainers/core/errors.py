"""Errors raised by ``unimarl.trainers``.

Every error a user can cause derives from :class:`TrainerError` and says what was wrong and what to do
about it.
"""

from __future__ import annotations


class TrainerError(Exception):
    """Root of every error raised by ``unimarl.trainers``."""


class ConfigError(TrainerError):
    """A training config (YAML file or command-line flag) is invalid: unknown key, wrong type, bad value."""


class EnvSetupError(TrainerError):
    """The configured environment could not be created (bad factory, not a ParallelEnv, bad space)."""


class ResumeError(TrainerError):
    """A run cannot be resumed (no checkpoint, or the checkpoint does not match the config)."""


class RayClusterError(TrainerError):
    """Ray could not be started or reached (stale cluster file, unreachable address)."""
