"""Distillation losses (per teacher) and their combination across teachers.

Implementation: to be filled in (see LossConfig for the contract).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

LOSS_TERMS = ("cosine", "mse", "smooth_l1", "infonce", "relational")
WEIGHTINGS = ("fixed", "uncertainty", "inverse_loss")


@dataclass
class LossConfig:
    # Loss terms and their weights, applied per teacher: {"cosine": 1.0, "infonce": 0.5}.
    terms: dict[str, float] = field(default_factory=lambda: {"cosine": 1.0})
    # InfoNCE temperature.
    temperature: float = 0.05
    # Standardise targets per teacher (mean/std over the training split) for mse / smooth_l1.
    standardize: bool = True
    # How teachers are combined: configured weights, learned uncertainty weights, or
    # weights from each teacher's running loss.
    weighting: Literal["fixed", "uncertainty", "inverse_loss"] = "fixed"
    # EMA factor of the running per-teacher loss used by "inverse_loss".
    ema: float = 0.9

    def __post_init__(self) -> None:
        if not self.terms:
            raise ValueError(f"terms: at least one loss term is needed (one of {', '.join(LOSS_TERMS)})")
        for name, w in self.terms.items():
            if name not in LOSS_TERMS:
                raise ValueError(f"terms.{name}: unknown loss term; allowed: {', '.join(LOSS_TERMS)}")
            if not isinstance(w, (int, float)) or isinstance(w, bool) or w < 0:
                raise ValueError(f"terms.{name}: weight must be a number >= 0, got {w!r}")
        if not self.temperature > 0:
            raise ValueError(f"temperature: must be > 0, got {self.temperature!r}")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting: {self.weighting!r} is not one of {', '.join(WEIGHTINGS)}")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"ema: must be in [0, 1), got {self.ema!r}")
