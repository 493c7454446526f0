"""distill.losses: every term against numbers worked out by hand, and the teacher weightings."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from distill.losses import (
    LOSS_FNS,
    WEIGHTING_FNS,
    LossConfig,
    LossContext,
    MultiTeacherLoss,
    TargetStats,
    compute_target_stats,
)


def t(x) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float32)


def test_config_validates_against_the_live_registries(monkeypatch):
    """No second list of names: registering a term or a weighting is all it takes."""
    with pytest.raises(ValueError, match="terms.mine: unknown loss term; allowed: cosine, mse"):
        LossConfig(terms={"mine": 1.0})
    with pytest.raises(ValueError, match="weighting: 'mine' is not one of fixed"):
        LossConfig(weighting="mine")
    monkeypatch.setitem(LOSS_FNS, "mine", LOSS_FNS["mse"])
    monkeypatch.setitem(WEIGHTING_FNS, "mine", WEIGHTING_FNS["fixed"])
    cfg = LossConfig(terms={"mine": 1.0}, weighting="mine")
    preds, targets = {"a": t([[1.0, 0.0]])}, {"a": t([[0.0, 1.0]])}
    out = MultiTeacherLoss(cfg, ["a"], {"a": 1.0})(preds, targets)
    assert out.total.item() == pytest.approx(1.0)  # mse of (1, -1) = 1


# --- terms ---------------------------------------------------------------------------------------


def test_cosine_term():
    pred, target = t([[3, 4], [1, 0]]), t([[4, 3], [0, 2]])
    # cos = 24/25 and 0.
    assert LOSS_FNS["cosine"](pred, target, LossContext()).item() == pytest.approx((0.04 + 1.0) / 2)
    per = LOSS_FNS["cosine"](pred, target, LossContext(reduction="none"))
    assert per.tolist() == pytest.approx([0.04, 1.0], abs=1e-6)


def test_mse_in_the_target_norm_space_scalar_and_per_dim_and_raw():
    pred, target = t([[3, 4]]), t([[1, 0]])
    scalar = TargetStats(mean=t([1, 2]), std=t(2.0))
    per_dim = TargetStats(mean=t([1, 2]), std=t([1, 2]))
    # The term itself is the raw mse: stats in its context do not rescale it (issue #22 folded the
    # old loss.standardize into loss.target_norm, which maps pred and target before every term).
    assert LOSS_FNS["mse"](pred, target, LossContext(stats=scalar)).item() == pytest.approx((4 + 16) / 2)
    assert one_teacher_loss({"mse": 1.0}, "none", scalar, pred, target) == pytest.approx(10.0)
    # phis: pred -> (2/2, 2/2) = (1, 1); target -> (0, -1); squared diffs 1, 4.
    assert one_teacher_loss({"mse": 1.0}, "phis", scalar, pred, target) == pytest.approx(2.5)
    # standardize: pred -> (2, 1); target -> (0, -1); squared diffs 4, 4.
    assert one_teacher_loss({"mse": 1.0}, "standardize", per_dim, pred, target) == pytest.approx(4.0)


def test_smooth_l1_raw_and_phis():
    stats = TargetStats(mean=t([0, 0]), std=t(2.0))
    pred, target = t([[2, 6]]), t([[1, 2]])
    # raw diffs 1 (quadratic: 0.5·1) and 4 (linear: 4 − 0.5).
    raw = LOSS_FNS["smooth_l1"](pred, target, LossContext(stats=stats))
    assert raw.item() == pytest.approx((0.5 + 3.5) / 2)
    assert one_teacher_loss({"smooth_l1": 1.0}, "none", stats, pred, target) == pytest.approx(2.0)
    # phis: diffs 0.5 (quadratic: 0.5·0.25) and 2 (linear: 2 − 0.5): beta = 1 in units of σ.
    phis = one_teacher_loss({"smooth_l1": 1.0}, "phis", stats, pred, target)
    assert phis == pytest.approx((0.125 + 1.5) / 2)


def test_infonce_term():
    pred, target = t([[1, 0], [0, 1]]), t([[2, 0], [1, 1]])
    tau = 0.5
    r = 1 / math.sqrt(2)
    # normalised targets (1, 0), (r, r); logits row 0 = (1, r)/tau, row 1 = (0, r)/tau.
    ce0 = -1 / tau + math.log(math.exp(1 / tau) + math.exp(r / tau))
    ce1 = -r / tau + math.log(math.exp(0) + math.exp(r / tau))
    ctx = LossContext(temperature=tau)
    assert LOSS_FNS["infonce"](pred, target, ctx).item() == pytest.approx((ce0 + ce1) / 2, rel=1e-5)
    per = LOSS_FNS["infonce"](pred, target, LossContext(temperature=tau, reduction="none"))
    assert per.tolist() == pytest.approx([ce0, ce1], rel=1e-5)
    assert LOSS_FNS["infonce"](pred[:1], target[:1], ctx).item() == pytest.approx(0.0, abs=1e-7)


def test_relational_term_off_diagonal():
    pred = t([[1, 0], [0, 1], [1, 1]])
    target = t([[1, 0], [3, 0], [0, 1]])
    # pred cosines: (0,1)=0, (0,2)=r, (1,2)=r; target: (0,1)=1, (0,2)=0, (1,2)=0.
    # squared differences: 1, 1/2, 1/2; row means over j≠i: (1+.5)/2, (1+.5)/2, (.5+.5)/2.
    per = LOSS_FNS["relational"](pred, target, LossContext(reduction="none"))
    assert per.tolist() == pytest.approx([0.75, 0.75, 0.5], abs=1e-6)
    assert LOSS_FNS["relational"](pred, target, LossContext()).item() == pytest.approx(2 / 3, abs=1e-6)
    assert LOSS_FNS["relational"](pred[:1], target[:1], LossContext()).item() == 0.0


# --- stats ---------------------------------------------------------------------------------------


def test_target_stats_and_moments():
    x = t([[1, 2], [3, 6]])
    s = compute_target_stats(x)
    assert s.mean.tolist() == pytest.approx([2, 4])
    assert s.std.item() == pytest.approx(math.sqrt((1 + 4) / 2))  # per-dim variances 1 and 4
    s = compute_target_stats(x, per_dim=True)
    assert s.std.tolist() == pytest.approx([1, 2])
    # Two "ranks" holding one row each, moments summed as an all-reduce would.
    m = TargetStats.from_moments(x[0] + x[1], x[0] ** 2 + x[1] ** 2, 2, per_dim=True)
    assert m.mean.tolist() == pytest.approx([2, 4]) and m.std.tolist() == pytest.approx([1, 2])
    # float64 moments: a large offset must not wipe out a small spread.
    big = torch.tensor([[1e4 + 1.0], [1e4 - 1.0]], dtype=torch.float64)
    assert compute_target_stats(big).std.item() == pytest.approx(1.0, rel=1e-6)


def test_standardisation_equalises_a_scaled_teacher():
    g = torch.Generator().manual_seed(0)
    targets = torch.randn(64, 8, generator=g)
    preds = targets + 0.3 * torch.randn(64, 8, generator=g)
    cfg = LossConfig(terms={"mse": 1.0}, target_norm="phis")
    stats = {"small": compute_target_stats(targets), "big": compute_target_stats(100 * targets + 7)}
    loss = MultiTeacherLoss(cfg, ["small", "big"], {"small": 1.0, "big": 1.0}, stats=stats)
    out = loss({"small": preds, "big": 100 * preds + 7}, {"small": targets, "big": 100 * targets + 7})
    assert out.per_teacher["big"] == pytest.approx(out.per_teacher["small"], rel=1e-4)
    # target_norm none: the raw mse, although the stats are there.
    raw = MultiTeacherLoss(LossConfig(terms={"mse": 1.0}), ["small", "big"], {"small": 1.0, "big": 1.0},
                           stats=stats)
    out = raw({"small": preds, "big": 100 * preds + 7}, {"small": targets, "big": 100 * targets + 7})
    assert out.per_teacher["big"] / out.per_teacher["small"] == pytest.approx(1e4, rel=1e-3)


# --- combining teachers --------------------------------------------------------------------------


def two_teachers():
    preds = {"a": t([[3, 4], [1, 0]]), "b.x": t([[1, 0, 0], [0, 1, 0]])}
    targets = {"a": t([[4, 3], [0, 2]]), "b.x": t([[1, 1, 0], [0, 1, 0]])}
    # a: cosine (0.04 + 1)/2 = 0.52; mse ((1+1) + (1+4))/4 = 1.75.
    # b.x: cosine (1 − r + 0)/2; mse (1 + 0)/6.
    r = 1 / math.sqrt(2)
    la = 0.52 + 2 * 1.75
    lb = (1 - r) / 2 + 2 * (1 / 6)
    return preds, targets, la, lb


def test_fixed_weights_and_terms_combine_as_configured():
    preds, targets, la, lb = two_teachers()
    cfg = LossConfig(terms={"cosine": 1.0, "mse": 2.0})
    loss = MultiTeacherLoss(cfg, ["a", "b.x"], {"a": 3.0, "b.x": 1.0})
    out = loss(preds, targets)
    assert out.per_teacher == pytest.approx({"a": la, "b.x": lb}, rel=1e-5)
    assert out.per_term["a/mse"] == pytest.approx(1.75) and out.per_term["a/cosine"] == pytest.approx(0.52)
    assert out.weights == pytest.approx({"a": 0.75, "b.x": 0.25})
    assert out.total.item() == pytest.approx(0.75 * la + 0.25 * lb, rel=1e-5)
    # Half a ramp on b: weights 3 and 0.5, normalised.
    out = loss(preds, targets, ramp={"b.x": 0.5})
    assert out.weights == pytest.approx({"a": 3 / 3.5, "b.x": 0.5 / 3.5})


def test_ramp_zero_removes_a_teacher():
    preds, targets, la, lb = two_teachers()
    preds = {k: v.clone().requires_grad_() for k, v in preds.items()}
    targets = dict(targets, **{"b.x": torch.full((2, 3), float("nan"))})
    loss = MultiTeacherLoss(LossConfig(terms={"cosine": 1.0, "mse": 2.0}), ["a", "b.x"],
                            {"a": 1.0, "b.x": 1.0})
    out = loss(preds, targets, ramp={"b.x": 0.0}, per_example=True)
    assert out.weights == {"a": 1.0, "b.x": 0.0}
    assert out.total.item() == pytest.approx(la, rel=1e-5)  # b's NaN does not leak in
    out.total.backward()
    assert preds["b.x"].grad is None and torch.isfinite(preds["a"].grad).all()
    assert torch.isfinite(out.per_example).all()


def test_per_example_averages_to_total():
    g = torch.Generator().manual_seed(1)
    preds = {"a": torch.randn(5, 4, generator=g), "b": torch.randn(5, 6, generator=g)}
    targets = {"a": torch.randn(5, 4, generator=g), "b": torch.randn(5, 6, generator=g)}
    cfg = LossConfig(terms={"cosine": 1.0, "infonce": 0.5, "relational": 2.0, "smooth_l1": 1.0}, temperature=0.1)
    loss = MultiTeacherLoss(cfg, ["a", "b"], {"a": 1.0, "b": 3.0})
    out = loss(preds, targets, per_example=True)
    assert out.per_example.shape == (5,) and not out.per_example.requires_grad
    assert out.per_example.mean().item() == pytest.approx(out.total.item(), rel=1e-5)
    # Hand check on cosine alone: per example = Σ_k w_k (1 − cos_k,i).
    loss = MultiTeacherLoss(LossConfig(terms={"cosine": 1.0}), ["a", "b"], {"a": 1.0, "b": 3.0})
    out = loss(preds, targets, per_example=True)
    exp = sum(w * (1 - np.array([np.dot(p, q) / np.linalg.norm(p) / np.linalg.norm(q)
                                 for p, q in zip(preds[k].numpy(), targets[k].numpy())]))
              for k, w in (("a", 0.25), ("b", 0.75)))
    assert out.per_example.numpy() == pytest.approx(exp, rel=1e-5)


def test_constructor_validation():
    with pytest.raises(ValueError, match="teacher_weights: no weight for b"):
        MultiTeacherLoss(LossConfig(), ["a", "b"], {"a": 1.0})
    with pytest.raises(ValueError, match="weight > 0"):
        MultiTeacherLoss(LossConfig(), ["a"], {"a": 0.0})
    loss = MultiTeacherLoss(LossConfig(), ["a"], {"a": 1.0})
    with pytest.raises(ValueError, match="teacher 'a'"):
        loss({"a": torch.zeros(2, 3)}, {"a": torch.zeros(2, 4)})


def test_all_teachers_ramped_out_still_backpropagates():
    preds, targets, _, _ = two_teachers()
    preds = {k: v.clone().requires_grad_() for k, v in preds.items()}
    loss = MultiTeacherLoss(LossConfig(), ["a", "b.x"], {"a": 1.0, "b.x": 1.0})
    out = loss(preds, targets, ramp={"a": 0.0, "b.x": 0.0})
    assert out.total.item() == 0.0 and out.weights == {"a": 0.0, "b.x": 0.0}
    out.total.backward()
    assert preds["a"].grad.abs().sum().item() == 0.0  # the graph exists, with zero gradients


# --- loss.target_norm: every term in a per-teacher normalised space --------------------------------


def one_teacher_loss(terms: dict, target_norm: str, stats: TargetStats | None, pred, target, **kw) -> float:
    cfg = LossConfig(terms=terms, target_norm=target_norm, **kw)
    return MultiTeacherLoss(cfg, ["a"], {"a": 1.0}, stats={"a": stats} if stats else None)(
        {"a": pred}, {"a": target}).total.item()


def test_target_norm_center_computes_the_cosine_between_centred_vectors():
    stats = TargetStats(mean=t([1.0, 0.0]), std=t(2.0))
    pred, target = t([[1.0, 1.0]]), t([[2.0, 0.0]])
    # Raw: cos((1, 1), (2, 0)) = 1/sqrt(2). Centred: cos((0, 1), (1, 0)) = 0.
    assert one_teacher_loss({"cosine": 1.0}, "none", stats, pred, target) == pytest.approx(1 - 1 / math.sqrt(2))
    assert one_teacher_loss({"cosine": 1.0}, "center", stats, pred, target) == pytest.approx(1.0)
    # phis = centre + one positive scale: the same cosine.
    assert one_teacher_loss({"cosine": 1.0}, "phis", stats, pred, target) == pytest.approx(1.0)
    # Centring only one side would give cos((1, 1), (1, 0)) or cos((0, 1), (2, 0)): neither is 0 and 1.
    pred2, target2 = t([[3.0, 1.0]]), t([[1.0, 2.0]])
    # Centred: (2, 1) and (0, 2): cos = 2 / (sqrt(5) * 2) = 1/sqrt(5).
    assert one_teacher_loss({"cosine": 1.0}, "center", stats, pred2, target2) == pytest.approx(1 - 1 / math.sqrt(5))


def test_target_norm_standardize_rescales_each_dimension():
    stats = TargetStats(mean=t([0.0, 0.0]), std=t([1.0, 10.0]))
    pred, target = t([[1.0, 10.0]]), t([[1.0, 0.0]])
    # Raw cos((1, 10), (1, 0)) = 1/sqrt(101); per-dimension (1, 1) vs (1, 0): 1/sqrt(2).
    assert one_teacher_loss({"cosine": 1.0}, "none", stats, pred, target) == pytest.approx(1 - 1 / math.sqrt(101))
    assert one_teacher_loss({"cosine": 1.0}, "standardize", stats, pred, target) == pytest.approx(1 - 1 / math.sqrt(2))
    # A scalar std cannot standardise per dimension: refused, not silently a phis.
    with pytest.raises(ValueError, match="target_norm=standardize: teacher.s. a have a scalar std"):
        MultiTeacherLoss(LossConfig(target_norm="standardize"), ["a"], {"a": 1.0},
                         stats={"a": TargetStats(mean=t([0.0, 0.0]), std=t(1.0))})


def test_target_norm_mse_center_phis_none():
    stats = TargetStats(mean=t([1.0, 2.0]), std=t(2.0))
    pred, target = t([[3.0, 4.0]]), t([[1.0, 0.0]])
    # centre: the mean cancels in a difference: raw mse (4 + 16)/2 = 10.
    assert one_teacher_loss({"mse": 1.0}, "center", stats, pred, target) == pytest.approx(10.0)
    # phis: diffs (2, 4)/2 -> mse (1 + 4)/2 = 2.5 (what the retired loss.standardize=true gave with none).
    assert one_teacher_loss({"mse": 1.0}, "phis", stats, pred, target) == pytest.approx(2.5)
    # none: the raw mse, with the stats at hand (issue #22: no standardisation of its own any more).
    assert one_teacher_loss({"mse": 1.0}, "none", stats, pred, target) == pytest.approx(10.0)


def test_target_norm_applies_to_infonce_and_relational():
    """A shared offset makes every raw pair similar; centring removes it before both terms."""
    mu = t([5.0, 5.0, 0.0])
    stats = TargetStats(mean=mu, std=t(1.0))
    target = mu + t([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    pred = mu + t([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]])
    # Centred, pred 0 and 1 match their targets, pred 2 is the opposite of target 2.
    # infonce (temperature 1): per example -log softmax of cosines: rows 0, 1: [1, 0, 0]; row 2: [0, 0, -1].
    a = math.log(math.e + 2) - 1            # -log(e / (e + 1 + 1))
    b = math.log(2 + math.exp(-1)) + 1      # -log(e^-1 / (1 + 1 + e^-1))
    got = one_teacher_loss({"infonce": 1.0}, "center", stats, pred, target, temperature=1.0)
    assert got == pytest.approx((2 * a + b) / 3, rel=1e-5)
    raw = one_teacher_loss({"infonce": 1.0}, "none", stats, pred, target, temperature=1.0)
    assert abs(raw - got) > 0.1
    # relational: the third prediction twice as far out. Centred, all vectors on both sides are
    # orthogonal (both similarity matrices are the identity): 0. Raw, the offset makes its
    # similarities to the others differ from the target's: > 0.
    pred = mu + t([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 2.0]])
    assert one_teacher_loss({"relational": 1.0}, "center", stats, pred, target) == pytest.approx(0.0, abs=1e-7)
    assert one_teacher_loss({"relational": 1.0}, "none", stats, pred, target) > 1e-4


def test_target_norm_none_is_the_raw_loss_and_other_modes_need_stats():
    g = torch.Generator().manual_seed(3)
    pred, target = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    stats = compute_target_stats(target + 3)
    terms = {"cosine": 1.0, "infonce": 0.25, "relational": 0.5, "mse": 0.5}
    default = MultiTeacherLoss(LossConfig(terms=terms), ["a"], {"a": 1.0}, stats={"a": stats})
    none = MultiTeacherLoss(LossConfig(terms=terms, target_norm="none"), ["a"], {"a": 1.0}, stats={"a": stats})
    assert none({"a": pred}, {"a": target}).total.item() == default({"a": pred}, {"a": target}).total.item()
    # ... and it is every term on the raw vectors, the stats unused (mse included).
    raw = sum(w * LOSS_FNS[n](pred, target, LossContext()).item() for n, w in terms.items())
    assert none({"a": pred}, {"a": target}).total.item() == pytest.approx(raw, rel=1e-5)
    with pytest.raises(ValueError, match="target_norm=center: no target stats for teacher.s. b"):
        MultiTeacherLoss(LossConfig(target_norm="center"), ["a", "b"], {"a": 1.0, "b": 1.0}, stats={"a": stats})
    with pytest.raises(ValueError, match="target_norm: 'zscore' is not one of none, center, phis, standardize"):
        LossConfig(target_norm="zscore")


# --- loss.teacher_drop ----------------------------------------------------------------------------


def test_both_sides_terms_by_hand_and_their_validation():
    """loss.both_sides: infonce pairs the student's question with the student's answer (both
    directions), cosine keeps the student's answer on the teacher's; checked against direct
    computation, and only ever computed when the answer encodings are given."""
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(3)
    q, a, tgt = (torch.randn(4, 5, generator=g) for _ in range(3))
    cfg = LossConfig(terms={"cosine": 1.0}, temperature=0.1, both_sides={"infonce": 2.0, "cosine": 0.5})
    loss = MultiTeacherLoss(cfg, ["k"], {"k": 1.0})
    out = loss({"k": q}, {"k": tgt}, answer_preds={"k": a}, per_example=True)

    def nce(x, y):
        logits = F.normalize(x, dim=-1) @ F.normalize(y, dim=-1).T / 0.1
        return F.cross_entropy(logits, torch.arange(4), reduction="none")

    sym = 0.5 * (nce(q, a) + nce(a, q))
    anchor = 1 - F.cosine_similarity(a, tgt, dim=-1)
    base = 1 - F.cosine_similarity(q, tgt, dim=-1)
    assert out.per_term["k/both_sides.infonce"] == pytest.approx(sym.mean().item(), rel=1e-5)
    assert out.per_term["k/both_sides.cosine"] == pytest.approx(anchor.mean().item(), rel=1e-5)
    assert out.total.item() == pytest.approx((base + 2.0 * sym + 0.5 * anchor).mean().item(), rel=1e-5)
    assert out.per_example.numpy() == pytest.approx((base + 2.0 * sym + 0.5 * anchor).numpy(), rel=1e-5)
    # Swapping the answers breaks the pairing: the infonce term rises.
    swapped = loss({"k": q}, {"k": tgt}, answer_preds={"k": a.flip(0)})
    assert swapped.per_term["k/both_sides.infonce"] != pytest.approx(out.per_term["k/both_sides.infonce"])
    with pytest.raises(ValueError, match="needs answer_preds"):
        loss({"k": q}, {"k": tgt})
    with pytest.raises(ValueError, match="answer_preds go with loss.both_sides"):
        MultiTeacherLoss(LossConfig(), ["k"], {"k": 1.0})({"k": q}, {"k": tgt}, answer_preds={"k": a})
    with pytest.raises(ValueError, match="both_sides.mse: unknown term; allowed: infonce, cosine"):
        LossConfig(both_sides={"mse": 1.0})
    with pytest.raises(ValueError, match="both_sides.cosine: weight must be a number >= 0"):
        LossConfig(both_sides={"cosine": -1})
    assert not LossConfig(both_sides={"cosine": 0.0}).encodes_answers
