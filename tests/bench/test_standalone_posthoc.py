"""bench/standalone_posthoc.py: the SIF weights and the common-direction removal it measures."""

from __future__ import annotations

import numpy as np

from bench.standalone_posthoc import common_directions, remove, sif_weights


def test_sif_weights_shrink_frequent_tokens_and_keep_unseen_ones():
    counts = np.array([0, 1, 9, 90], dtype=float)  # p = 0, 0.01, 0.09, 0.9
    w = sif_weights(counts, 0.01)
    np.testing.assert_allclose(w, [1.0, 0.5, 0.1, 0.01 / 0.91])
    assert np.all(np.diff(w) < 0)


def test_common_directions_finds_the_planted_direction_and_remove_projects_it_out():
    rng = np.random.default_rng(0)
    d = rng.normal(size=8)
    d /= np.linalg.norm(d)
    x = 5.0 + rng.normal(size=(500, 8)) * 0.1 + np.outer(rng.normal(size=500) * 3.0, d)
    mu, u = common_directions(x, 1)
    np.testing.assert_allclose(mu, x.mean(0))
    assert abs(abs(u[:, 0] @ d) - 1.0) < 1e-3
    y = remove(x, mu, u)
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, rtol=1e-6)
    assert np.abs(y @ d).max() < 0.05  # nothing left along the planted direction
    # k = 0 removes the mean only; None leaves the rows as they are (normalised)
    mu0, u0 = common_directions(x, 0)
    assert u0.shape == (8, 0)
    np.testing.assert_allclose(remove(x, mu0, u0), (x - x.mean(0)) / np.linalg.norm(x - x.mean(0), axis=1, keepdims=True))
    mun, un = common_directions(x, None)
    np.testing.assert_allclose(remove(x, mun, un), x / np.linalg.norm(x, axis=1, keepdims=True))
