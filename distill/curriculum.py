"""Curriculum: difficulty scores, pacing functions and a rank-consistent sampler.

- ``compute_difficulty(name, ...)`` -> (N,) per training example, higher = harder
  (registry ``DIFFICULTY_FNS``).
- A pacing function c(step, total_steps, cfg) in (0, 1]: the fraction of the easiest examples
  available at a step; c(0) = start_fraction, 1 from ramp_fraction · total_steps on (registry
  ``PACING_FNS``).
- ``CurriculumSampler`` draws every step's global batch from that easiest fraction, identically
  on every rank with no communication (the RNG is seeded by (seed, step)); its state_dict lets a
  resumed run continue the same sequence of batches.

How to add a difficulty score or a pacing function: one function, one line in its registry
dict; the config is validated against the live registries, so there is no second list of names.

Nothing here knows about processes: the trainer passes rank / world_size and all-gathers the
student's losses before ``update_losses``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)



@dataclass
class CurriculumConfig:
    # Difficulty score per training example.
    # A name in DIFFICULTY_FNS.
    difficulty: str = "qa_distance"
    # Pacing function c(t): the fraction of the easiest examples the sampler draws from at step t.
    # A name in PACING_FNS. "none" is the default: the project measured root pacing worse.
    pacing: str = "none"
    # c(0): fraction of the data available at the first step.
    start_fraction: float = 0.3
    # Fraction of the total steps after which c(t) = 1 (all data).
    ramp_fraction: float = 0.5

    def __post_init__(self) -> None:
        # Validated against the live registries (defined below): adding one is one function + one line.
        if self.difficulty not in DIFFICULTY_FNS:
            raise ValueError(f"difficulty: {self.difficulty!r} is not one of {', '.join(DIFFICULTY_FNS)}")
        if self.pacing not in PACING_FNS:
            raise ValueError(f"pacing: {self.pacing!r} is not one of {', '.join(PACING_FNS)}")
        if not 0.0 < self.start_fraction <= 1.0:
            raise ValueError(f"start_fraction: must be in (0, 1], got {self.start_fraction!r}")
        if not 0.0 < self.ramp_fraction <= 1.0:
            raise ValueError(f"ramp_fraction: must be in (0, 1], got {self.ramp_fraction!r}")


# ---------------------------------------------------------------------------------------------
# Difficulty scores
# ---------------------------------------------------------------------------------------------

# Rows per chunk when reading (possibly memory-mapped) target arrays: bounds peak memory.
_CHUNK = 65536


def _num_examples(q_targets: dict[str, np.ndarray] | None, a_targets: dict[str, np.ndarray] | None,
                  questions: Sequence[str] | None, answers: Sequence[str] | None) -> int:
    sizes = {len(x) for x in (questions, answers) if x is not None}
    sizes |= {len(v) for d in (q_targets, a_targets) if d for v in d.values()}
    if len(sizes) != 1:
        raise ValueError(f"difficulty: the inputs disagree on the number of examples ({sorted(sizes) or 'none given'})")
    return sizes.pop()


def _qa_cosines(q_targets: dict[str, np.ndarray] | None, a_targets: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    """Per teacher: cos(q_k[i], a_k[i]) as float64 (N,)."""
    if not q_targets or not a_targets:
        raise ValueError("difficulty: needs the teachers' question and answer targets")
    if set(q_targets) != set(a_targets):
        raise ValueError(f"difficulty: question targets ({', '.join(q_targets)}) and answer targets "
                         f"({', '.join(a_targets)}) name different teachers")
    out = {}
    for name, q in q_targets.items():
        a = a_targets[name]
        if q.shape != a.shape or q.ndim != 2:
            raise ValueError(f"difficulty: teacher {name!r}: question {q.shape} and answer {a.shape} targets differ")
        cos = np.empty(len(q), dtype=np.float64)
        for s in range(0, len(q), _CHUNK):
            qc = np.asarray(q[s:s + _CHUNK], dtype=np.float64)
            ac = np.asarray(a[s:s + _CHUNK], dtype=np.float64)
            denom = np.maximum(np.linalg.norm(qc, axis=1) * np.linalg.norm(ac, axis=1), 1e-12)
            cos[s:s + _CHUNK] = (qc * ac).sum(1) / denom
        out[name] = cos
    return out


def _rank01(x: np.ndarray) -> np.ndarray:
    """Ranks of x scaled to [0, 1] (ties share their average rank); (N,) -> (N,)."""
    values, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    first = np.cumsum(counts) - counts
    avg = first + (counts - 1) / 2.0
    return avg[inverse.reshape(-1)] / max(len(x) - 1, 1)


def qa_distance(*, q_targets=None, a_targets=None, questions=None, answers=None) -> np.ndarray:
    """mean_k (1 − cos(q_k[i], a_k[i])): how far the answer lies from the question in teacher space."""
    cos = _qa_cosines(q_targets, a_targets)
    return np.mean([1.0 - c for c in cos.values()], axis=0)


def teacher_disagreement(*, q_targets=None, a_targets=None, questions=None, answers=None) -> np.ndarray:
    """Std across teachers of each teacher's Q→A cosine, rank-normalised over the dataset to [0, 1].

    Teachers differ in dimension and in cosine scale (one's cosines live in [0.6, 0.9], another's
    in [0, 0.5]), so raw cosines are not comparable; their ranks are. An example every teacher puts
    at the same rank scores 0. With one teacher there is nothing to disagree about: this falls back
    to qa_distance and logs a warning.
    """
    cos = _qa_cosines(q_targets, a_targets)
    if len(cos) < 2:
        log.warning("curriculum: teacher_disagreement needs two teachers or more; using qa_distance")
        return qa_distance(q_targets=q_targets, a_targets=a_targets)
    ranks = np.stack([_rank01(c) for c in cos.values()])  # (K, N)
    return ranks.std(axis=0)


def text_length(*, q_targets=None, a_targets=None, questions=None, answers=None) -> np.ndarray:
    """len(question) + len(answer) in characters."""
    if questions is None or answers is None:
        raise ValueError("difficulty: length needs the question and answer texts")
    return np.array([len(q) + len(a) for q, a in zip(questions, answers, strict=True)], dtype=np.float64)


def zeros(*, q_targets=None, a_targets=None, questions=None, answers=None) -> np.ndarray:
    """All examples equally hard (0). Also the start of student_loss: see CurriculumSampler."""
    return np.zeros(_num_examples(q_targets, a_targets, questions, answers), dtype=np.float64)


DifficultyFn = Callable[..., np.ndarray]

# Registry: config name -> score. To add one: write fn(*, q_targets, a_targets, questions, answers)
# -> (N,) float, higher = harder; add one line here (the config validates against this dict).
DIFFICULTY_FNS: dict[str, DifficultyFn] = {
    "none": zeros,
    "teacher_disagreement": teacher_disagreement,
    "qa_distance": qa_distance,
    "length": text_length,
    "student_loss": zeros,
}


def compute_difficulty(name: str, *, q_targets: dict[str, np.ndarray] | None = None,
                       a_targets: dict[str, np.ndarray] | None = None,
                       questions: Sequence[str] | None = None,
                       answers: Sequence[str] | None = None) -> np.ndarray:
    """Difficulty (N,) float64 of every training example, higher = harder.

    q_targets / a_targets: teacher name -> (N, d_k) question / answer embeddings of the training
    split; questions / answers: the N texts. Each score uses what it needs.
    """
    if name not in DIFFICULTY_FNS:
        raise ValueError(f"difficulty: {name!r} is not one of {', '.join(DIFFICULTY_FNS)}")
    n = _num_examples(q_targets, a_targets, questions, answers)
    d = np.asarray(DIFFICULTY_FNS[name](q_targets=q_targets, a_targets=a_targets,
                                        questions=questions, answers=answers), dtype=np.float64)
    if d.shape != (n,) or not np.isfinite(d).all():
        raise ValueError(f"difficulty {name!r}: expected {n} finite values, got shape {d.shape}")
    return d


# ---------------------------------------------------------------------------------------------
# Pacing functions c(t)
# ---------------------------------------------------------------------------------------------


def _t_ramp(total_steps: int, cfg: CurriculumConfig) -> float:
    """T_ramp = ramp_fraction · total_steps."""
    # Rounded: 0.28 · 100 is 28.000000000000004, which would leave c(28) just short of 1.
    return round(cfg.ramp_fraction * total_steps, 9)


def _progress(step: int, total_steps: int, cfg: CurriculumConfig) -> float:
    """t / T_ramp, clipped to [0, 1]."""
    t_ramp = _t_ramp(total_steps, cfg)
    if t_ramp <= 0:
        return 1.0
    return min(max(step / t_ramp, 0.0), 1.0)


def pace_none(step: int, total_steps: int, cfg: CurriculumConfig) -> float:
    return 1.0


def pace_linear(step: int, total_steps: int, cfg: CurriculumConfig) -> float:
    """c0 + (1 − c0) · t / T_ramp."""
    c0 = cfg.start_fraction
    return min(1.0, c0 + (1.0 - c0) * _progress(step, total_steps, cfg))


def pace_root(step: int, total_steps: int, cfg: CurriculumConfig) -> float:
    """sqrt(t (1 − c0²) / T_ramp + c0²): competence-based curriculum (Platanios et al. 2019).

    Fast at first, slow later: the new examples each step are a constant share of the pool.
    """
    c0 = cfg.start_fraction
    return min(1.0, math.sqrt(_progress(step, total_steps, cfg) * (1.0 - c0 * c0) + c0 * c0))


PacingFn = Callable[[int, int, CurriculumConfig], float]

# Registry: config name -> c(step, total_steps, cfg) in (0, 1]. To add one: write the function,
# add one line here (the config validates against this dict).
PACING_FNS: dict[str, PacingFn] = {
    "none": pace_none,
    "linear": pace_linear,
    "root": pace_root,
}





# ---------------------------------------------------------------------------------------------
# Sampler
# ---------------------------------------------------------------------------------------------


class CurriculumSampler:
    """Draws each step's batch from the easiest c(t) fraction of the training set, the same on every rank.

    difficulty: (N,) per example, higher = harder. Examples are ordered by difficulty, ties broken
    by a fixed permutation drawn from `seed` (so equal scores — "none", or student_loss before any
    update — give a random subset rather than the first rows of the file). At step t the pool is
    the first ceil(c(t)·N) of that order; the global batch is drawn uniformly from the pool, without
    replacement when the pool is large enough (else whole permutations of the pool are
    concatenated, so no example repeats more than needed), by an RNG seeded with (seed, t). Every
    rank computes the same global batch with no communication and takes its contiguous slice.

    student_loss: the difficulty is each example's most recent loss, set by update_losses(). An
    example never seen counts as easiest (0, losses being >= 0): optimistic, so every example is
    visited and scored before it can be ranked hard. The order is re-sorted at the next draw after
    an update, at most once every `resort_every` steps (a sort of N values per step is cheap up
    to ~10^6 examples; raise it beyond). The trainer all-gathers indices and losses before calling
    update_losses, so all ranks hold the same losses.
    """

    def __init__(self, difficulty: np.ndarray, cfg: CurriculumConfig, total_steps: int,
                 global_batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 resort_every: int = 1):
        difficulty = np.asarray(difficulty, dtype=np.float64)
        if difficulty.ndim != 1 or len(difficulty) == 0:
            raise ValueError(f"difficulty: expected a non-empty (N,) array, got shape {difficulty.shape}")
        if not np.isfinite(difficulty).all():
            raise ValueError("difficulty: contains non-finite values")
        if total_steps < 1:
            raise ValueError(f"total_steps: must be >= 1, got {total_steps!r}")
        if global_batch_size < 1:
            raise ValueError(f"global_batch_size: must be >= 1, got {global_batch_size!r}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank: must be in [0, world_size={world_size}), got {rank!r}")
        if global_batch_size % world_size:
            raise ValueError(f"global_batch_size: {global_batch_size} is not divisible by the number of "
                             f"processes ({world_size})")
        if seed < 0:
            raise ValueError(f"seed: must be >= 0, got {seed!r}")
        if resort_every < 1:
            raise ValueError(f"resort_every: must be >= 1, got {resort_every!r}")
        self.cfg = cfg
        self.pacing = PACING_FNS[cfg.pacing]
        self.total_steps = int(total_steps)
        self.global_batch_size = int(global_batch_size)
        self.seed = int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        self.resort_every = int(resort_every)
        self.dynamic = cfg.difficulty == "student_loss"
        self.difficulty = difficulty.copy()
        self._tiebreak = np.random.default_rng([self.seed, 0x7E1B]).permutation(len(difficulty))
        self.step = 0
        # Step of the last re-sort after update_losses; None: only the initial sort so far.
        self._last_sort_step: int | None = None
        self._dirty = False
        self._sort()
        self._last_step = 0
        self._threshold: float | None = None

    @property
    def num_examples(self) -> int:
        return len(self.difficulty)

    def _sort(self) -> None:
        # lexsort: the last key is the primary one.
        self._order = np.lexsort((self._tiebreak, self.difficulty))

    def competence_at(self, step: int) -> float:
        return self.pacing(step, self.total_steps, self.cfg)

    def pool_size_at(self, step: int) -> int:
        # The epsilon: 0.07 · 100 is 7.000000000000001 in floating point, which must not become 8.
        return min(self.num_examples, max(1, math.ceil(self.competence_at(step) * self.num_examples - 1e-9)))

    @property
    def competence(self) -> float:
        """c(t) of the most recent batch (of the first one before any draw)."""
        return self.competence_at(self._last_step)

    @property
    def pool_size(self) -> int:
        return self.pool_size_at(self._last_step)

    @property
    def threshold(self) -> float:
        """Difficulty of the hardest example the most recent batch could draw from, as scored then."""
        if self._threshold is None:
            return float(self.difficulty[self._order[self.pool_size - 1]])
        return self._threshold

    def global_batch(self, step: int) -> np.ndarray:
        """The (global_batch_size,) example indices of step `step`, over all ranks; no state change."""
        n = self.pool_size_at(step)
        rng = np.random.default_rng([self.seed, step])
        b = self.global_batch_size
        if b <= n:
            pos = rng.choice(n, size=b, replace=False)
        else:
            pos = np.concatenate([rng.permutation(n) for _ in range(-(-b // n))])[:b]
        return self._order[pos]

    def next_batch(self) -> np.ndarray:
        """This rank's indices (global_batch_size / world_size,) for the current step; advances the step."""
        if self.dynamic and self._dirty and (
                self._last_sort_step is None or self.step - self._last_sort_step >= self.resort_every):
            self._sort()
            self._last_sort_step = self.step
            self._dirty = False
        batch = self.global_batch(self.step)
        # Kept: update_losses may rescore the pool before the trainer logs the threshold.
        self._threshold = float(self.difficulty[self._order[self.pool_size_at(self.step) - 1]])
        self._last_step = self.step
        self.step += 1
        per = self.global_batch_size // self.world_size
        return batch[self.rank * per:(self.rank + 1) * per]

    def update_losses(self, indices: np.ndarray, losses: np.ndarray) -> None:
        """Record the student's latest loss of examples `indices` (M,) = `losses` (M,): student_loss only.

        Call it with the same (all-gathered) arrays on every rank. A repeated index keeps its last value;
        non-finite losses are ignored.
        """
        if not self.dynamic:
            raise ValueError(f"update_losses: only for difficulty 'student_loss' (this run uses {self.cfg.difficulty!r})")
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        val = np.asarray(losses, dtype=np.float64).reshape(-1)
        if idx.shape != val.shape:
            raise ValueError(f"update_losses: {idx.size} indices but {val.size} losses")
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_examples):
            raise ValueError(f"update_losses: indices must be in [0, {self.num_examples})")
        ok = np.isfinite(val)
        self.difficulty[idx[ok]] = val[ok]
        self._dirty = True

    def state_dict(self) -> dict:
        """Plain Python (JSON-safe) state: enough to continue the identical sequence of batches.

        Static difficulties need only the step (the order is recomputed from the same scores);
        student_loss adds the running losses and the current order (N floats and N ints: the order
        is kept because with resort_every > 1 it may lag the losses).
        """
        state = {"step": self.step, "last_step": self._last_step, "num_examples": self.num_examples,
                 "seed": self.seed}
        if self.dynamic:
            # float64 -> Python float -> JSON text round-trips exactly.
            state.update(losses=self.difficulty.tolist(), order=self._order.tolist(),
                         last_sort_step=self._last_sort_step, dirty=self._dirty)
        return state

    def load_state_dict(self, state: dict) -> None:
        if int(state["num_examples"]) != self.num_examples:
            raise ValueError(f"curriculum state: saved for {state['num_examples']} examples, "
                             f"this training set has {self.num_examples}")
        if int(state["seed"]) != self.seed:
            log.warning("curriculum state: saved with seed %s, running with %s: the batch sequence changes",
                        state["seed"], self.seed)
        self.step = int(state["step"])
        self._last_step = int(state["last_step"])
        self._threshold = None
        if self.dynamic:
            if "losses" not in state:
                raise ValueError("curriculum state: holds no student losses (saved with another difficulty)")
            self.difficulty = np.asarray(state["losses"], dtype=np.float64).copy()
            self._order = np.asarray(state["order"], dtype=np.int64).copy()
            if self.difficulty.shape != (self.num_examples,) or self._order.shape != (self.num_examples,):
                raise ValueError("curriculum state: losses / order do not hold one value per example")
            last = state["last_sort_step"]
            self._last_sort_step = None if last is None else int(last)
            self._dirty = bool(state["dirty"])
