"""bench/standalone.py --recipe*: which runs each row averages, and the paired on - off numbers."""

from __future__ import annotations

import argparse

import pytest

from bench.standalone import _paired_diffs, expand_runs, recipe_variants


def _args(**kw):
    base = {"recipe": None, "recipe_on": None, "recipe_off": None, "variant": None}
    return argparse.Namespace(**{**base, **kw})


def _runs(tmp_path, *names):
    for n in names:
        (tmp_path / n).mkdir()
    return [str(tmp_path / n) for n in names]


def test_globs_expand_sorted_and_keep_pattern_order(tmp_path):
    on = _runs(tmp_path, "on-s1", "on-s0", "on-s2")
    off = _runs(tmp_path, "off-s0")
    got = expand_runs([str(tmp_path / "on-s*"), off[0]])
    assert got == sorted(on) + off  # a wrong implementation keeps filesystem order or drops the plain path


def test_a_pattern_matching_nothing_or_a_file_is_named(tmp_path):
    with pytest.raises(ValueError, match="nope-\\*: no run directory matches"):
        expand_runs([str(tmp_path / "nope-*")])
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="f: not a run directory"):
        expand_runs([str(tmp_path / "f")])


def test_old_and_new_forms_give_the_same_rows(tmp_path):
    on, off = _runs(tmp_path, "on", "off")
    old = recipe_variants(_args(recipe=[on, off]))
    new = recipe_variants(_args(recipe_on=[on], recipe_off=[off]))
    assert old == new == {"(e) recipe, lattice on": [on], "(d) recipe, lattice off": [off]}
    small = _runs(tmp_path, "small-s0", "small-s1")
    v = recipe_variants(_args(recipe_on=[on], variant=[["d2s2", *small]]))
    assert v["recipe, d2s2"] == small and "(d) recipe, lattice off" not in v
    with pytest.raises(ValueError, match="RUN_ON \\[RUN_OFF\\]"):
        recipe_variants(_args(recipe=[on, off, on]))
    with pytest.raises(ValueError, match="no run given"):
        recipe_variants(_args(variant=[["label"]]))


def _res(r1, sts, m):
    return {"dolly_test": {"r1": r1}, "sts": {"mean": sts}, "trec_dev": {"map": m}}


def test_paired_difference_is_per_seed_not_of_the_means():
    # on - off per seed: r1 +0.01, +0.03 -> mean 0.02, sd 0.01414, t(0.975, 1) = 12.706 -> hw 0.1270
    per = {"on": [_res(0.80, 0.70, 0.5), _res(0.70, 0.60, 0.5)],
           "off": [_res(0.79, 0.69, 0.6), _res(0.67, 0.60, 0.4)]}
    d = _paired_diffs(per, "on", "off")
    assert d["dolly_r1"]["mean"] == pytest.approx(0.02)
    assert d["dolly_r1"]["half_width"] == pytest.approx(12.706 * 0.0141421 / 2 ** 0.5, rel=1e-3)
    assert d["sts"]["values"] == pytest.approx([0.01, 0.0])
    assert d["trec_map"]["mean"] == pytest.approx(0.0)
