"""distill.curriculum: pacing and difficulty against hand-worked numbers, and the sampler's guarantees."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest

from distill.curriculum import (
    DIFFICULTY_FNS,
    PACING_FNS,
    CurriculumConfig,
    CurriculumSampler,
    compute_difficulty,
)


def test_config_validates_against_the_live_registries(monkeypatch):
    """No second list of names: registering a difficulty or a pacing is all it takes."""
    with pytest.raises(ValueError, match="difficulty: 'mine' is not one of none, "):
        CurriculumConfig(difficulty="mine")
    with pytest.raises(ValueError, match="pacing: 'mine' is not one of none, linear"):
        CurriculumConfig(pacing="mine")
    monkeypatch.setitem(DIFFICULTY_FNS, "mine", DIFFICULTY_FNS["length"])
    monkeypatch.setitem(PACING_FNS, "mine", PACING_FNS["linear"])
    cfg = CurriculumConfig(difficulty="mine", pacing="mine")
    assert cfg.difficulty == cfg.pacing == "mine"


# --- pacing: c0 = 0.3, total 100 steps, ramp_fraction 0.5 -> T_ramp = 50 ----------------------------

PACING_CASES = {
    "linear": {0: 0.3, 10: 0.3 + 0.7 * 0.2, 25: 0.65, 49: 0.3 + 0.7 * 49 / 50, 50: 1.0, 99: 1.0},
    "root": {0: 0.3, 10: math.sqrt(0.2 * 0.91 + 0.09), 25: math.sqrt(0.545), 50: 1.0, 80: 1.0},
    "none": {0: 1.0, 30: 1.0, 99: 1.0},
}


@pytest.mark.parametrize("pacing", sorted(PACING_CASES))
def test_pacing_values(pacing):
    cfg = CurriculumConfig(pacing=pacing, start_fraction=0.3, ramp_fraction=0.5)
    for step, expected in PACING_CASES[pacing].items():
        assert PACING_FNS[pacing](step, 100, cfg) == pytest.approx(expected, abs=1e-12), step


def test_pacing_reaches_1_exactly_at_the_ramp_end():
    # T_ramp = 0.28 · 100 = 28 (28.000000000000004 in floating point): all data from step 28 on.
    for name in ("linear", "root"):
        cfg = CurriculumConfig(pacing=name, start_fraction=0.5, ramp_fraction=0.28)
        assert PACING_FNS[name](27, 100, cfg) < 1.0
        assert PACING_FNS[name](28, 100, cfg) == 1.0


# --- difficulty ------------------------------------------------------------------------------------


def unit(c: float, scale: float = 1.0) -> list[float]:
    """A 2-vector at cosine c from (1, 0)."""
    return [scale * c, scale * math.sqrt(1 - c * c)]


def test_qa_distance():
    q = {"a": np.array([[1, 0], [1, 0]], np.float32), "b": np.array([[1, 0, 0], [0, 1, 0]], np.float16)}
    a = {"a": np.array([[0, 1], [5, 5]], np.float32), "b": np.array([[2, 0, 0], [0, -1, 0]], np.float16)}
    # a: cos 0 and 1/√2; b: cos 1 and −1.
    d = compute_difficulty("qa_distance", q_targets=q, a_targets=a)
    assert d == pytest.approx([(1 + 0) / 2, ((1 - 1 / math.sqrt(2)) + 2) / 2])


def test_teacher_disagreement_compares_ranks():
    # Teacher a's cosines 0.1, 0.2, 0.3 -> ranks 0, .5, 1; teacher b's 0.9, 0.5, 0.7 -> 1, 0, .5.
    # Different scales and dimensions must not matter.
    q = {"a": np.array([[1, 0]] * 3), "b": np.array([[7, 0, 0]] * 3)}
    a = {"a": np.array([unit(0.1), unit(0.2), unit(0.3)]),
         "b": np.array([unit(0.9, 3) + [0], unit(0.5, 0.1) + [0], unit(0.7) + [0]])}
    d = compute_difficulty("teacher_disagreement", q_targets=q, a_targets=a)
    assert d == pytest.approx([0.5, 0.25, 0.25])  # population std of (0, 1), (.5, 0), (1, .5)
    # Ties share the average rank: a = 0.1, 0.1, 0.3 -> 0.25, 0.25, 1 against b's 1, 0, .5.
    a["a"] = np.array([unit(0.1), unit(0.1), unit(0.3)])
    d = compute_difficulty("teacher_disagreement", q_targets=q, a_targets=a)
    assert d == pytest.approx([0.375, 0.125, 0.25])


def test_teacher_disagreement_with_one_teacher_falls_back(caplog):
    q, a = {"a": np.array([[1.0, 0.0], [1.0, 0.0]])}, {"a": np.array([[0.0, 1.0], [1.0, 0.0]])}
    with caplog.at_level(logging.WARNING, logger="distill.curriculum"):
        d = compute_difficulty("teacher_disagreement", q_targets=q, a_targets=a)
    assert d == pytest.approx([1.0, 0.0]) and "qa_distance" in caplog.text


def test_length_none_and_student_loss_scores():
    qs, ans = ["ab", "c", ""], ["xyz", "", "0123456"]
    assert compute_difficulty("length", questions=qs, answers=ans).tolist() == [5, 1, 7]
    assert compute_difficulty("none", questions=qs, answers=ans).tolist() == [0, 0, 0]
    assert compute_difficulty("student_loss", questions=qs, answers=ans).tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="not one of"):
        compute_difficulty("hardness", questions=qs, answers=ans)
    with pytest.raises(ValueError, match="number of examples"):
        compute_difficulty("length", questions=qs, answers=ans[:2])


# --- sampler ---------------------------------------------------------------------------------------


def shuffled_difficulty(n: int = 50) -> np.ndarray:
    return np.random.default_rng(7).permutation(n).astype(float)  # distinct values 0..n-1


def test_sampler_draws_only_from_the_easiest_fraction():
    diff = shuffled_difficulty(50)
    cfg = CurriculumConfig(pacing="linear", start_fraction=0.2, ramp_fraction=0.5)
    s = CurriculumSampler(diff, cfg, total_steps=20, global_batch_size=4, seed=3)
    thresholds = []
    for step in range(20):
        batch = s.next_batch()
        c = min(1.0, 0.2 + 0.8 * step / 10)
        assert s.competence == pytest.approx(c)
        # Difficulty values are 0..49, so the pool of the n easiest has threshold n − 1.
        n = math.ceil(round(c * 50, 9))
        assert s.threshold == n - 1 and s.pool_size == n
        assert (diff[batch] <= s.threshold).all()
        assert len(set(batch.tolist())) == 4  # no repeats within a batch
        thresholds.append(s.threshold)
    assert thresholds[0] == 9 and thresholds[-1] == 49
    assert all(x <= y for x, y in zip(thresholds, thresholds[1:]))


def test_the_pool_grows_to_the_whole_set(monkeypatch):
    # Two plateaus and then everything (a registered pacing: the registry is the extension point).
    monkeypatch.setitem(PACING_FNS, "plateaus", lambda t, total, cfg: 0.25 if t < 100 else 0.625 if t < 200 else 1.0)
    diff = shuffled_difficulty(20)
    cfg = CurriculumConfig(pacing="plateaus")
    s = CurriculumSampler(diff, cfg, total_steps=400, global_batch_size=5, seed=0)
    seen_early = {i for _ in range(100) for i in s.next_batch().tolist()}  # c = 0.25: the 5 easiest
    assert seen_early == set(np.flatnonzero(diff < 5).tolist())
    seen_mid = {i for _ in range(100) for i in s.next_batch().tolist()}  # c = 0.625: 13 easiest
    assert seen_mid == set(np.flatnonzero(diff < 13).tolist())
    seen_late = {i for _ in range(200) for i in s.next_batch().tolist()}
    assert seen_late == set(range(20))


def test_small_pool_repeats_as_little_as_possible():
    cfg = CurriculumConfig(pacing="linear", start_fraction=0.3, ramp_fraction=1.0)
    s = CurriculumSampler(np.arange(10.0), cfg, total_steps=1000, global_batch_size=8, seed=1)
    batch = s.next_batch()  # pool: 3 easiest (0, 1, 2), 8 draws -> each 2 or 3 times
    counts = np.bincount(batch, minlength=10)
    assert counts[3:].sum() == 0 and sorted(counts[:3].tolist()) == [2, 3, 3]


def test_ranks_take_disjoint_slices_of_the_same_global_batch():
    diff = shuffled_difficulty(40)
    cfg = CurriculumConfig(pacing="root", start_fraction=0.3, ramp_fraction=0.5)
    one = CurriculumSampler(diff, cfg, total_steps=30, global_batch_size=6, seed=11)
    r0, r1 = (CurriculumSampler(diff, cfg, total_steps=30, global_batch_size=6, seed=11, rank=r, world_size=2)
              for r in (0, 1))
    for _ in range(30):
        g, a, b = one.next_batch(), r0.next_batch(), r1.next_batch()
        assert len(a) == len(b) == 3 and not set(a.tolist()) & set(b.tolist())
        assert np.array_equal(np.concatenate([a, b]), g)
    # Different steps draw different batches (the RNG is seeded by the step).
    assert not np.array_equal(one.global_batch(0), one.global_batch(1))
    with pytest.raises(ValueError, match="not divisible"):
        CurriculumSampler(diff, cfg, total_steps=30, global_batch_size=5, seed=11, rank=0, world_size=2)


@pytest.fixture
def hold(monkeypatch):
    """A registered pacing that keeps c = start_fraction for the whole run."""
    monkeypatch.setitem(PACING_FNS, "hold", lambda t, total, cfg: cfg.start_fraction)
    return "hold"


def test_ties_are_broken_by_the_seed_not_by_row_order(hold):
    cfg = CurriculumConfig(difficulty="none", pacing=hold, start_fraction=0.1)
    pools = []
    for seed in (0, 0, 1):
        s = CurriculumSampler(np.zeros(100), cfg, total_steps=10**6, global_batch_size=10, seed=seed)
        pools.append(frozenset(i for _ in range(50) for i in s.next_batch().tolist()))
    assert pools[0] == pools[1] and len(pools[0]) == 10
    assert pools[0] != pools[2] and pools[0] != frozenset(range(10))


def test_state_dict_resumes_the_same_sequence():
    diff = shuffled_difficulty(30)
    cfg = CurriculumConfig(pacing="root", start_fraction=0.2, ramp_fraction=0.5)
    a = CurriculumSampler(diff, cfg, total_steps=20, global_batch_size=4, seed=5)
    for _ in range(7):
        a.next_batch()
    state = a.state_dict()
    rest = [a.next_batch() for _ in range(10)]
    b = CurriculumSampler(diff, cfg, total_steps=20, global_batch_size=4, seed=5)
    b.load_state_dict(json.loads(json.dumps(state)))
    assert b.competence == a.competence_at(6)
    assert all(np.array_equal(x, b.next_batch()) for x in rest)


def student_loss_sampler(**kw):
    # c stays 0.5 for the whole test (the `hold` pacing).
    cfg = CurriculumConfig(difficulty="student_loss", pacing="hold", start_fraction=0.5)
    return CurriculumSampler(np.zeros(10), cfg, total_steps=10**6, global_batch_size=5, seed=2, **kw)


def test_student_loss_moves_hard_examples_out_of_the_pool(hold):
    s = student_loss_sampler()
    s.update_losses(np.arange(5), np.full(5, 5.0))  # 0..4 hard, 5..9 unseen (= easiest)
    assert sorted(s.next_batch().tolist()) == [5, 6, 7, 8, 9]
    s.update_losses([5, 6, 7, 8, 9], [1.0, 1.0, 1.0, 1.0, float("nan")])  # NaN ignored: 9 stays 0
    assert sorted(s.next_batch().tolist()) == [5, 6, 7, 8, 9] and s.threshold == 1.0
    s.update_losses([5, 6, 7, 8, 9], [9.0] * 5)
    assert s.threshold == 1.0  # still the cut-off the last batch was drawn with
    assert sorted(s.next_batch().tolist()) == [0, 1, 2, 3, 4] and s.threshold == 5.0
    fixed = CurriculumSampler(np.zeros(10), CurriculumConfig(difficulty="qa_distance"), 10, 5, seed=0)
    with pytest.raises(ValueError, match="student_loss"):
        fixed.update_losses([0], [1.0])


def test_student_loss_resort_every_and_resume(hold):
    s = student_loss_sampler(resort_every=3)
    s.update_losses(np.arange(5), np.full(5, 5.0))
    assert sorted(s.next_batch().tolist()) == [5, 6, 7, 8, 9]  # step 0: the first update re-sorts
    s.update_losses(np.arange(5, 10), np.full(5, 9.0))
    assert sorted(s.next_batch().tolist()) == [5, 6, 7, 8, 9]  # steps 1, 2: too soon, the order stands
    s.next_batch()
    state = s.state_dict()
    rest = []
    for step in range(3, 12):
        rest.append(s.next_batch())
        s.update_losses(rest[-1], (rest[-1] * 7 + step) % 11)
    assert sorted(rest[0].tolist()) == [0, 1, 2, 3, 4]  # step 3: re-sorted, 5..9 now hard

    t = student_loss_sampler(resort_every=3)
    t.load_state_dict(json.loads(json.dumps(state)))  # the trainer keeps it in a JSON file
    for step, expected in zip(range(3, 12), rest):
        got = t.next_batch()
        assert np.array_equal(got, expected), step
        t.update_losses(got, (got * 7 + step) % 11)
    with pytest.raises(ValueError, match="examples"):
        CurriculumSampler(np.zeros(11), t.cfg, 10, 5, seed=2).load_state_dict(state)
