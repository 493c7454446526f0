"""Curriculum: difficulty scores, pacing functions and a rank-consistent sampler.

Implementation: to be filled in (see CurriculumConfig for the contract).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

DIFFICULTIES = ("none", "teacher_disagreement", "qa_distance", "length", "student_loss")
PACINGS = ("none", "linear", "root", "geometric", "step")


@dataclass
class CurriculumConfig:
    # Difficulty score per training example.
    difficulty: Literal["none", "teacher_disagreement", "qa_distance", "length", "student_loss"] = "qa_distance"
    # Pacing function c(t): the fraction of the easiest examples the sampler draws from at step t.
    pacing: Literal["none", "linear", "root", "geometric", "step"] = "root"
    # c(0): fraction of the data available at the first step.
    start_fraction: float = 0.3
    # Fraction of the total steps after which c(t) = 1 (all data).
    ramp_fraction: float = 0.5
    # Number of stages for the "step" pacing.
    num_stages: int = 4
    # Per-teacher loss-weight ramps: teacher name -> [start_step, ramp_steps]; a teacher's weight
    # is 0 before start_step and rises linearly to its configured weight over ramp_steps.
    teacher_ramp: dict[str, list[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.difficulty not in DIFFICULTIES:
            raise ValueError(f"difficulty: {self.difficulty!r} is not one of {', '.join(DIFFICULTIES)}")
        if self.pacing not in PACINGS:
            raise ValueError(f"pacing: {self.pacing!r} is not one of {', '.join(PACINGS)}")
        if not 0.0 < self.start_fraction <= 1.0:
            raise ValueError(f"start_fraction: must be in (0, 1], got {self.start_fraction!r}")
        if not 0.0 < self.ramp_fraction <= 1.0:
            raise ValueError(f"ramp_fraction: must be in (0, 1], got {self.ramp_fraction!r}")
        if not isinstance(self.num_stages, int) or self.num_stages < 1:
            raise ValueError(f"num_stages: must be a positive integer, got {self.num_stages!r}")
        for name, r in self.teacher_ramp.items():
            if not isinstance(r, list) or len(r) != 2 or not all(isinstance(v, int) and v >= 0 for v in r):
                raise ValueError(f"teacher_ramp.{name}: must be [start_step, ramp_steps] of integers >= 0, got {r!r}")
