"""Errors that mean "the user's input is wrong": the CLI prints them in one line and exits 2."""

from __future__ import annotations

from distill.data import DataError
from distill.export.manifest import ExportError
from distill.schema import ConfigError


class RunDirError(ValueError):
    """A run directory that is missing, incomplete, or belongs to another run."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be used (corrupt, or from a different run / teacher set / shape)."""


class TrainingDiverged(RuntimeError):
    """Too many consecutive non-finite losses or gradients (exit 1, last good checkpoint kept)."""


UserError = (ConfigError, DataError, RunDirError, CheckpointError, ExportError, FileNotFoundError)
