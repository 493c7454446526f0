"""bench/stats.py against intervals computed by hand."""

from __future__ import annotations

import math

import pytest

from bench.stats import paired, run_seeds, summarize, t_quantile


def test_t_quantiles_match_the_printed_table():
    # Standard two-sided 95% critical values of Student's t.
    for dof, want in [(1, 12.706), (2, 4.303), (4, 2.776), (9, 2.262), (30, 2.042)]:
        assert t_quantile(0.975, dof) == pytest.approx(want, abs=5e-4)


def test_summary_by_hand():
    # values 1, 2, 3, 4, 5: mean 3, s^2 = (4+1+0+1+4)/4 = 2.5, s = 1.5811;
    # half width = 2.7764 * 1.5811 / sqrt(5) = 1.9632
    s = summarize([1, 2, 3, 4, 5])
    assert s.mean == 3.0 and s.n == 5
    assert s.std == pytest.approx(math.sqrt(2.5))
    assert s.half_width == pytest.approx(1.9632, abs=1e-4)
    assert (s.low, s.high) == pytest.approx((1.0368, 4.9632), abs=1e-4)
    assert str(s) == "3.0000 ± 1.9632 (95% CI, n=5)"
    # 90%: t_{0.95, 4} = 2.1318 -> 1.5074
    assert summarize([1, 2, 3, 4, 5], 0.90).half_width == pytest.approx(1.5074, abs=1e-4)


def test_paired_difference_removes_the_shared_seed_effect():
    # Both methods move together with the seed; a beats b by exactly 0.01 +- small noise.
    b = [0.60, 0.70, 0.65, 0.62, 0.68]
    a = [x + d for x, d in zip(b, [0.011, 0.009, 0.010, 0.012, 0.008])]
    unpaired = summarize(a)
    assert unpaired.low < summarize(b).high  # separate intervals overlap: no claim possible
    d = paired(a, b)
    # differences .011 .009 .010 .012 .008: mean .010, s = .0015811, half = 2.7764 * s / sqrt(5)
    assert d.mean == pytest.approx(0.010)
    assert d.half_width == pytest.approx(0.0019632, abs=1e-6)
    assert d.excludes(0.0)
    assert not paired([1.0, 2.0, 3.0], [2.0, 1.0, 3.0]).excludes(0.0)


def test_run_seeds_calls_every_seed_and_edge_cases():
    seen = []
    s = run_seeds(lambda seed: seen.append(seed) or float(seed), seeds=[3, 1, 2])
    assert seen == [3, 1, 2] and s.mean == 2.0 and s.values == (3.0, 1.0, 2.0)
    one = summarize([0.5])
    assert one.mean == 0.5 and math.isnan(one.half_width)
    with pytest.raises(ValueError, match="no values"):
        summarize([])
    with pytest.raises(ValueError, match="same seeds"):
        paired([1.0], [1.0, 2.0])
