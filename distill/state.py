"""The trainer's own state and the decisions it takes from evaluations.

``TrainState`` is everything the loop carries between steps that is not a module, optimiser or
sampler; it round-trips through ``state_dict``/``load_state_dict`` (JSON in a checkpoint's
``trainer_state.json``). ``EvalPolicy.on_eval(metric)`` is the one place that turns an evaluation
into best-checkpoint bookkeeping, a plateau LR cut and early stopping. ``lr_factor`` is the one
warmup-then-schedule formula (the trainer and the benches both use it).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

logger = logging.getLogger(__name__)


@dataclass
class TrainState:
    step: int = 0  # optimiser steps taken (skipped non-finite steps included)
    plateau_factor: float = 1.0  # LR multiplier from reduce-on-plateau
    best_metric: float | None = None
    best_step: int | None = None
    bad_evals: int = 0  # evaluations since the best one
    nonfinite_total: int = 0
    nonfinite_run: int = 0  # consecutive non-finite steps

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, d: dict) -> None:
        for k, v in d.items():
            if k in self.__dataclass_fields__:  # older checkpoints carry a never-read "plateau_bad"
                setattr(self, k, v)


def lr_factor(optim, total_steps: int, step: int, plateau_factor: float = 1.0) -> float:
    """LR multiplier at ``step``: linear warmup, then cosine to ``min_lr_ratio``, constant, or the
    plateau factor. ``optim`` is the config's OptimSection."""
    warm, floor = optim.warmup_steps, optim.min_lr_ratio
    w = min(1.0, (step + 1) / warm) if warm else 1.0
    if optim.schedule == "cosine" and step >= warm:
        progress = min(1.0, (step - warm) / max(1, total_steps - warm))
        w = floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    elif optim.schedule == "plateau":
        w *= plateau_factor
    return w


class EvalPolicy:
    """Best metric, reduce-on-plateau and early stopping, driven by one metric (higher is better).

    ``on_eval(metric)`` updates ``state`` and returns True when training should stop early.
    """

    def __init__(self, state: TrainState, schedule: str, plateau_patience: int, plateau_factor: float,
                 early_stopping_patience: int):
        self.state, self.schedule = state, schedule
        self.plateau_patience, self.plateau_factor = plateau_patience, plateau_factor
        self.early_stopping_patience = early_stopping_patience

    def on_eval(self, metric: float) -> bool:
        s = self.state
        if s.best_metric is None or metric > s.best_metric:
            s.best_metric, s.best_step, s.bad_evals = metric, s.step, 0
            return False
        s.bad_evals += 1
        if self.schedule == "plateau" and s.bad_evals % self.plateau_patience == 0:
            s.plateau_factor *= self.plateau_factor
            logger.info("plateau: lr factor now %.4g", s.plateau_factor)
        if self.early_stopping_patience and s.bad_evals >= self.early_stopping_patience:
            logger.info("early stopping at step %d (best %.4f at step %s)", s.step, s.best_metric, s.best_step)
            return True
        return False
