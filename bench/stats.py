"""Seeds and intervals for benchmarks: run k seeds, report mean ± a 95% Student-t interval.

    from bench.stats import run_seeds, summarize, paired
    r1 = run_seeds(lambda seed: train_and_eval(seed)["recall@1"], seeds=range(5))
    print(summarize(r1))                    # 0.6455 ± 0.0042 (95% CI, n=5)
    print(paired(r1.values, r0.values))     # the difference on the same seeds, with its interval

A claim that method A beats method B should quote ``paired(a, b)`` on the same seeds and hold
only when its interval excludes 0: with k seeds the half-width is t_{0.975, k-1} * s / sqrt(k)
(Student t, because s is estimated from the k runs themselves; t_{0.975, 4} = 2.776, so five
seeds widen the interval 1.4x over the normal approximation's 1.96).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Summary:
    """Mean and a two-sided Student-t confidence interval of k values (one per seed)."""

    mean: float
    half_width: float  # the interval is mean ± half_width; nan for fewer than 2 values
    std: float  # sample standard deviation (ddof = 1)
    n: int
    confidence: float
    values: tuple[float, ...]

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    def excludes(self, x: float = 0.0) -> bool:
        """True when ``x`` lies outside the interval (for a difference: it is significant)."""
        return not (self.low <= x <= self.high)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["values"] = list(self.values)
        d["low"], d["high"] = self.low, self.high
        return d

    def __str__(self) -> str:
        return f"{self.mean:.4f} ± {self.half_width:.4f} ({self.confidence:.0%} CI, n={self.n})"


def t_quantile(p: float, dof: int) -> float:
    """The p-quantile of Student's t distribution with ``dof`` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(p, dof))


def summarize(values: Iterable[float], confidence: float = 0.95) -> Summary:
    """Mean ± the two-sided ``confidence`` Student-t interval of the values."""
    vals = tuple(float(v) for v in values)
    if not vals:
        raise ValueError("summarize: no values")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    n = len(vals)
    mean = math.fsum(vals) / n
    if n < 2:  # one run says nothing about its own spread
        return Summary(mean, math.nan, math.nan, n, confidence, vals)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in vals) / (n - 1))
    half = t_quantile(0.5 + confidence / 2, n - 1) * std / math.sqrt(n)
    return Summary(mean, half, std, n, confidence, vals)


def paired(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Summary:
    """The interval of the mean difference a - b over the same seeds (run i of both used seed i).

    Pairing removes the seed-to-seed variation the two methods share, so it is tighter than
    comparing two separate intervals.
    """
    if len(a) != len(b):
        raise ValueError(f"paired: {len(a)} values against {len(b)}; pair runs on the same seeds")
    return summarize([x - y for x, y in zip(a, b)], confidence)


def run_seeds(fn: Callable[[int], float], seeds: Iterable[int] = range(5), confidence: float = 0.95) -> Summary:
    """Call ``fn(seed)`` for every seed (in order) and summarise the returned numbers."""
    return summarize([fn(s) for s in seeds], confidence)
