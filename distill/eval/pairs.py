"""Pair similarity (STS-style): how well an encoder's cosine ranks sentence pairs by a gold score.

A file of ``{"s1": ..., "s2": ..., "score": float}`` lines (optionally ``"set": name``) ->
Spearman's rho between the cosine of the two sentences' embeddings and the gold score, per set
and their mean. Spearman is Pearson's r of the *ranks*, and tied values share the mean of the
ranks they span (gold STS scores are often tied: 0.0, 5.0), so the result does not depend on the
order of the file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def average_ranks(x: Sequence[float]) -> np.ndarray:
    """1-based ranks of ``x`` (ascending), tied values sharing the mean of their ranks: [3, 1, 3] -> [2.5, 1, 2.5]."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(1, len(x) + 1, dtype=np.float64)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.zeros(len(counts))
    np.add.at(sums, inverse, ranks)
    return (sums / counts)[inverse]


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rho with ties (average ranks); nan when either side is constant or n < 2."""
    if len(a) != len(b):
        raise ValueError(f"spearman: {len(a)} values against {len(b)}")
    if len(a) < 2:
        return float("nan")
    ra, rb = average_ranks(a), average_ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / den) if den > 0 else float("nan")


def pair_cosines(encode: Callable[[list[str]], np.ndarray], s1: Sequence[str], s2: Sequence[str]) -> np.ndarray:
    """(N,) cosine of each pair; every distinct sentence is encoded once. ``encode``: texts -> (n, d)."""
    texts = sorted(set(s1) | set(s2))
    pos = {t: i for i, t in enumerate(texts)}
    e = np.asarray(encode(texts), dtype=np.float64)
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    a, b = e[[pos[t] for t in s1]], e[[pos[t] for t in s2]]
    return (a * b).sum(1)


def evaluate_pairs(encode: Callable[[list[str]], np.ndarray], rows: Sequence[dict]) -> dict:
    """rows: ``{"s1", "s2", "score"[, "set"]}`` -> ``{"spearman": mean over sets, "pairs": n,
    "sets": {set: spearman}}`` (one set, named ``all``, when the rows name none)."""
    cos = pair_cosines(encode, [r["s1"] for r in rows], [r["s2"] for r in rows])
    gold = np.array([float(r["score"]) for r in rows])
    by_set: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_set.setdefault(str(r.get("set", "all")), []).append(i)
    sets = {name: spearman(cos[idx], gold[idx]) for name, idx in sorted(by_set.items())}
    return {"spearman": float(np.mean(list(sets.values()))), "pairs": len(rows), "sets": sets}
