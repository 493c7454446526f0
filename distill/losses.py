"""Distillation losses (per teacher) and their combination across teachers.

Per teacher k the student's head gives pred_k (B, d_k), the target store gives target_k
(B, d_k). ``LOSS_FNS`` maps a term name to ``fn(pred, target, ctx) -> Tensor``; the
``MultiTeacherLoss`` module sums the configured terms per teacher and combines the teachers by
their configured weights.

How to add a loss term: write ``fn(pred (B, d), target (B, d), ctx: LossContext) -> Tensor`` that
returns the per-example losses (B,) when ``ctx.reduction == "none"`` and their mean otherwise
(``_reduce`` does it) and add one line to ``LOSS_FNS`` (the config validates against it). A
teacher weighting is one function and one line in ``WEIGHTING_FNS``.

Nothing here knows about processes: anything distributed is injected (``reduce_mean``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# loss.target_norm: the per-teacher space every loss term is computed in (see ``normalise_targets``).
TARGET_NORMS = ("none", "center", "phis", "standardize")


@dataclass
class LossConfig:
    # Loss terms and their weights, applied per teacher: {"cosine": 1.0, "infonce": 0.5}.
    # (The default is configs/default.yaml's: InfoNCE 0.25 beside cosine.)
    terms: dict[str, float] = field(default_factory=lambda: {"cosine": 1.0, "infonce": 0.25})
    # InfoNCE temperature.
    temperature: float = 0.05
    # How teachers are combined (a name in WEIGHTING_FNS): the configured weights. (uncertainty
    # and inverse_loss were retired in issue #22: no result moved with them.)
    weighting: str = "fixed"
    # The space EVERY term (cosine, infonce, relational, mse, ...) is computed in, per teacher k,
    # with the training answers' statistics, prediction and target mapped alike (predictions
    # themselves stay in the raw teacher space): none (raw) | center (x − μ_k) | phis (PHI-S:
    # (x − μ_k) / σ_k, one scalar σ_k) | standardize ((x − μ_k) / σ_k per dimension). (Issue #22
    # folded the old `standardize: true`, mse / smooth_l1 alone on (x − μ_k) / σ_k, into phis.)
    target_norm: str = "none"
    # Question -> answer pairs with a standalone (token) student: the student encodes each answer
    # too, and these terms (per teacher, in the target_norm space, beside ``terms``) train what a
    # standalone user compares, the student's question against the student's answer:
    #   infonce: in-batch, both directions, student(question) <-> student(answer);
    #   cosine:  1 - cos(student(answer), the teacher's answer embedding), which keeps the answer
    #            side on its teacher. {} (default): the student encodes questions only.
    both_sides: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.terms:
            raise ValueError(f"terms: at least one loss term is needed (one of {', '.join(LOSS_FNS)})")
        # Names are validated against the live registries, defined below.
        for name, w in self.terms.items():
            if name not in LOSS_FNS:
                raise ValueError(f"terms.{name}: unknown loss term; allowed: {', '.join(LOSS_FNS)}")
            if not isinstance(w, (int, float)) or isinstance(w, bool) or w < 0:
                raise ValueError(f"terms.{name}: weight must be a number >= 0, got {w!r}")
        if not self.temperature > 0:
            raise ValueError(f"temperature: must be > 0, got {self.temperature!r}")
        if self.weighting not in WEIGHTING_FNS:
            raise ValueError(f"weighting: {self.weighting!r} is not one of {', '.join(WEIGHTING_FNS)}")
        if self.target_norm not in TARGET_NORMS:
            raise ValueError(f"target_norm: {self.target_norm!r} is not one of {', '.join(TARGET_NORMS)}")
        if not isinstance(self.both_sides, dict):
            raise ValueError(f"both_sides: a mapping of term -> weight, got {self.both_sides!r}")
        for term, w in self.both_sides.items():
            if term not in BOTH_SIDES_FNS:
                raise ValueError(f"both_sides.{term}: unknown term; allowed: {', '.join(BOTH_SIDES_FNS)}")
            if not isinstance(w, (int, float)) or isinstance(w, bool) or w < 0:
                raise ValueError(f"both_sides.{term}: weight must be a number >= 0, got {w!r}")

    @property
    def encodes_answers(self) -> bool:
        """Whether the student encodes the answers too (a ``both_sides`` term with weight > 0)."""
        return any(w > 0 for w in self.both_sides.values())


# ---------------------------------------------------------------------------------------------
# Per-teacher loss terms
# ---------------------------------------------------------------------------------------------


@dataclass
class TargetStats:
    """One teacher's target statistics over the training split.

    mean: (d,); std: (d,) per dimension, or () one scalar for the whole space.
    """

    mean: Tensor
    std: Tensor

    @classmethod
    def from_moments(cls, total: Tensor, total_sq: Tensor, count: int | float | Tensor,
                     per_dim: bool = False, eps: float = 1e-6) -> TargetStats:
        """Statistics from summed moments, so a trainer can all-reduce (sum) them across ranks first.

        total: (d,) = Σ_i x_i; total_sq: (d,) = Σ_i x_i²; count: N (summed over ranks).
        The variance is the population one (divide by N). per_dim=False gives one scalar std, the
        root of the mean per-dimension variance (see ``compute_target_stats``).
        """
        # float64: E[x²] − E[x]² cancels badly in float32 when |mean| >> std.
        total = torch.as_tensor(total, dtype=torch.float64)
        total_sq = torch.as_tensor(total_sq, dtype=torch.float64)
        n = float(count)
        if n <= 0:
            raise ValueError(f"count: must be > 0, got {count!r}")
        mean = total / n
        var = (total_sq / n - mean * mean).clamp_min(0.0)
        std = var.sqrt() if per_dim else var.mean().sqrt()
        return cls(mean=mean.float(), std=std.clamp_min(eps).float())


def compute_target_stats(targets: Tensor, per_dim: bool = False, eps: float = 1e-6) -> TargetStats:
    """Mean (d,) and std of a teacher's training-split targets (N, d).

    per_dim=False (default) gives one scalar std: standardising then removes the teacher's overall
    scale (so a teacher with large norms does not dominate) but keeps the shape of its space, so
    the standardised MSE stays proportional to the MSE in the teacher's own space — the space the
    evaluation measures in. per_dim=True z-scores every dimension (it also equalises "rogue"
    high-variance dimensions, and amplifies near-constant ones up to 1/eps).
    """
    if hasattr(targets, "blocks"):  # a store view (teachers.RowView): summed in row blocks, never loaded whole
        if len(targets.shape) != 2 or targets.shape[0] == 0:
            raise ValueError(f"targets: expected a non-empty (N, d) array, got shape {tuple(targets.shape)}")
        s1 = torch.zeros(targets.shape[1], dtype=torch.float64)
        s2 = torch.zeros_like(s1)
        for _, block in targets.blocks():
            b = torch.from_numpy(block).to(torch.float64)
            s1 += b.sum(0)
            s2 += (b * b).sum(0)
        return TargetStats.from_moments(s1, s2, targets.shape[0], per_dim=per_dim, eps=eps)
    x = torch.as_tensor(targets).detach().to(torch.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"targets: expected a non-empty (N, d) array, got shape {tuple(x.shape)}")
    return TargetStats.from_moments(x.sum(0), (x * x).sum(0), x.shape[0], per_dim=per_dim, eps=eps)


@dataclass
class LossContext:
    """What a loss term may use besides (pred, target): the teacher's stats and the loss config.

    reduction="mean" asks for a scalar, "none" for the per-example losses (B,) whose mean is
    that scalar (the curriculum ranks examples by them).
    """

    temperature: float = 0.05
    stats: TargetStats | None = None
    reduction: Literal["mean", "none"] = "mean"


def _reduce(per_example: Tensor, ctx: LossContext) -> Tensor:
    return per_example.mean() if ctx.reduction == "mean" else per_example


def normalise_targets(x: Tensor, stats: TargetStats, mode: str) -> Tensor:
    """Map (B, d) vectors of one teacher's space into its normalised space (``loss.target_norm``).

    center: x − μ; phis: (x − μ) / σ with σ one scalar (PHI-S, Ranzinger et al. 2024, without its
    Hadamard rotation: a rotation preserves every dot product and norm, so cosine, InfoNCE,
    relational and MSE are unchanged by it; only the element-wise smooth_l1 would notice);
    standardize: (x − μ) / σ_d per dimension (stats computed with per_dim=True). For the cosine
    terms centre and phis are the same (a positive scalar does not change a cosine).
    """
    if mode == "none":
        return x
    if mode == "center":
        return x - stats.mean
    if mode in ("phis", "standardize"):
        return (x - stats.mean) / stats.std
    raise ValueError(f"target_norm: {mode!r} is not one of {', '.join(TARGET_NORMS)}")


def target_stats_per_dim(cfg: LossConfig) -> bool:
    """Whether the loss needs per-dimension stds (``compute_target_stats(per_dim=...)``)."""
    return cfg.target_norm == "standardize"


def cosine_loss(pred: Tensor, target: Tensor, ctx: LossContext) -> Tensor:
    """mean_i (1 − cos(pred_i, target_i)); pred, target: (B, d). Scale-free (phis equals center for it)."""
    return _reduce(1.0 - F.cosine_similarity(pred, target, dim=-1, eps=1e-8), ctx)


def mse_loss(pred: Tensor, target: Tensor, ctx: LossContext) -> Tensor:
    """Mean squared error over (B, d), in the space pred and target come in (``loss.target_norm``)."""
    return _reduce((pred - target).pow(2).mean(-1), ctx)


def smooth_l1_loss(pred: Tensor, target: Tensor, ctx: LossContext) -> Tensor:
    """Smooth-L1 (Huber, beta = 1 in the units pred and target come in: σ_k with phis) over (B, d)."""
    return _reduce(F.smooth_l1_loss(pred, target, reduction="none", beta=1.0).mean(-1), ctx)


def infonce_loss(pred: Tensor, target: Tensor, ctx: LossContext) -> Tensor:
    """In-batch contrastive loss, one direction: each prediction must pick its own target.

    logits (B, B) = normalize(pred) @ normalize(target).T / temperature; loss_i =
    −log softmax(logits_i)[i]. One-directional (pred → targets) on purpose: it is the retrieval
    the evaluation measures (a predicted answer embedding ranked against a bank of answers).
    Negatives are the other examples of this rank's micro-batch (no gather across ranks);
    with B = 1 there are none and the loss is 0.
    """
    logits = F.normalize(pred, dim=-1) @ F.normalize(target, dim=-1).T / ctx.temperature
    labels = torch.arange(pred.shape[0], device=pred.device)
    return _reduce(F.cross_entropy(logits, labels, reduction="none"), ctx)


def relational_loss(pred: Tensor, target: Tensor, ctx: LossContext) -> Tensor:
    """MSE between the in-batch cosine-similarity matrices (B, B) of pred and of target.

    Off-diagonal entries only: the diagonal is 1 on both sides, and counting it would shrink the
    loss by (B − 1)/B for no reason. loss_i = mean_{j≠i} (S_pred − S_target)²_ij; 0 when B = 1.
    """
    pn, tn = F.normalize(pred, dim=-1), F.normalize(target, dim=-1)
    diff = (pn @ pn.T - tn @ tn.T).pow(2)
    b = pred.shape[0]
    off = diff * (1.0 - torch.eye(b, device=pred.device, dtype=diff.dtype))
    return _reduce(off.sum(-1) / max(b - 1, 1), ctx)


LossFn = Callable[[Tensor, Tensor, LossContext], Tensor]

# Registry: config name -> term. To add a term: write fn(pred, target, ctx) honouring
# ctx.reduction and add one line here.
LOSS_FNS: dict[str, LossFn] = {
    "cosine": cosine_loss,
    "mse": mse_loss,
    "smooth_l1": smooth_l1_loss,
    "infonce": infonce_loss,
    "relational": relational_loss,
}


# ---------------------------------------------------------------------------------------------
# Combining teachers
# ---------------------------------------------------------------------------------------------


def both_sides_infonce(q: Tensor, a: Tensor, target: Tensor, ctx: LossContext) -> Tensor:  # noqa: ARG001
    """Symmetric in-batch InfoNCE between the student's question and answer encodings q, a (B, d):
    each question picks its answer among the batch's answers and each answer its question (the
    mean of the two directions)."""
    return 0.5 * (infonce_loss(q, a, ctx) + infonce_loss(a, q, ctx))


def both_sides_cosine(q: Tensor, a: Tensor, target: Tensor, ctx: LossContext) -> Tensor:  # noqa: ARG001
    """1 - cos(the student's answer encoding a, the teacher's answer embedding), per example."""
    return cosine_loss(a, target, ctx)


# loss.both_sides: term -> fn(student question, student answer, teacher answer, ctx) (B, d) each.
BOTH_SIDES_FNS = {"infonce": both_sides_infonce, "cosine": both_sides_cosine}


def _identity(x: Tensor) -> Tensor:
    return x


@dataclass
class LossOutput:
    """total: scalar with grad. per_teacher / per_term: this rank's values (not reduced).

    weights: the effective weight of each teacher this step (0 for an inactive one).
    per_example: (B,) detached combined loss per example, when asked for.
    """

    total: Tensor
    per_teacher: dict[str, float]
    per_term: dict[str, float]
    weights: dict[str, float]
    per_example: Tensor | None = None


def weight_fixed(m: MultiTeacherLoss, L: Tensor, a: Tensor, active: list[int]) -> tuple[Tensor, Tensor]:
    """Configured weights: total = Σ a_k L_k. Returns (effective weights (K,), contributions (K,))."""
    return a, a * L


WeightingFn = Callable[["MultiTeacherLoss", Tensor, Tensor, list], tuple[Tensor, Tensor]]
# Registry: config name -> fn(loss module, L (K,), a (K,), active indices) -> (weights, contributions).
WEIGHTING_FNS: dict[str, WeightingFn] = {
    "fixed": weight_fixed,
}


class MultiTeacherLoss(nn.Module):
    """The distillation loss over all teachers.

    Per teacher k: L_k = Σ_term λ_term · term(pred_k, target_k), λ from cfg.terms (λ = 0 terms are
    not computed). a_k = w_k · ramp_k, normalised to sum 1 over the active teachers (ramp_k > 0
    and w_k > 0); inactive teachers are reported but add nothing. Then by cfg.weighting:

    - fixed: total = Σ a_k L_k.

    Distributed: the trainer wraps this module with the student in DDP, which averages every
    gradient; ``reduce_mean`` (default identity; the trainer passes an all-reduce mean) is there
    for a weighting that keeps a running statistic (none does today).
    Losses are computed in float32 whatever the dtype of the heads.
    """

    def __init__(self, cfg: LossConfig, teacher_names: list[str], teacher_weights: dict[str, float],
                 stats: dict[str, TargetStats] | None = None,
                 reduce_mean: Callable[[Tensor], Tensor] | None = None):
        super().__init__()
        if not teacher_names:
            raise ValueError("teacher_names: at least one teacher is needed")
        if len(set(teacher_names)) != len(teacher_names):
            raise ValueError(f"teacher_names: duplicates in {teacher_names!r}")
        missing = [n for n in teacher_names if n not in teacher_weights]
        if missing:
            raise ValueError(f"teacher_weights: no weight for {', '.join(missing)}")
        for n in teacher_names:
            if not teacher_weights[n] >= 0:
                raise ValueError(f"teacher_weights.{n}: must be >= 0, got {teacher_weights[n]!r}")
        if not any(teacher_weights[n] > 0 for n in teacher_names):
            raise ValueError("teacher_weights: at least one teacher needs a weight > 0")
        self.cfg = cfg
        self.teacher_names = list(teacher_names)
        self.teacher_weights = {n: float(teacher_weights[n]) for n in teacher_names}
        self.reduce_mean = reduce_mean or _identity
        self.terms = {name: float(w) for name, w in cfg.terms.items() if w > 0}
        if not self.terms:
            raise ValueError("terms: every term has weight 0")
        self.both_sides = {name: float(w) for name, w in cfg.both_sides.items() if w > 0}
        stats = stats or {}
        unknown = [n for n in stats if n not in self.teacher_names]
        if unknown:
            raise ValueError(f"stats: not teachers: {', '.join(unknown)}")
        if cfg.target_norm != "none":
            missing = [n for n in self.teacher_names if n not in stats]
            if missing:
                raise ValueError(f"target_norm={cfg.target_norm}: no target stats for teacher(s) {', '.join(missing)}")
            flat = [n for n in self.teacher_names if stats[n].std.ndim != 1]
            if cfg.target_norm == "standardize" and flat:
                raise ValueError(f"target_norm=standardize: teacher(s) {', '.join(flat)} have a scalar std; "
                                 "compute their stats with per_dim=True")
        # Teacher names may contain '.', which buffer names may not: index by position. The
        # stats are non-persistent buffers so .to(device) moves them but checkpoints do not hold
        # them (they are recomputed from the training split).
        self._has_stats = []
        for i, n in enumerate(self.teacher_names):
            st = stats.get(n)
            self._has_stats.append(st is not None)
            if st is not None:
                self.register_buffer(f"stats_mean_{i}", st.mean.detach().float().clone(), persistent=False)
                self.register_buffer(f"stats_std_{i}", st.std.detach().float().clone(), persistent=False)

    def _stats(self, i: int) -> TargetStats | None:
        if not self._has_stats[i]:
            return None
        return TargetStats(getattr(self, f"stats_mean_{i}"), getattr(self, f"stats_std_{i}"))

    def _teacher_loss(self, i: int, pred: Tensor, target: Tensor, per_example: bool,
                      answer: Tensor | None = None) -> tuple[Tensor, dict, Tensor | None]:
        """L_k (scalar), its terms {term: scalar}, and the per-example L_k (B,) if asked.

        With ``target_norm`` set, pred and target (and ``answer``, the student's answer encoding
        that the ``both_sides`` terms read) are first mapped into the teacher's normalised space
        and every term is computed there.
        """
        norm, st = self.cfg.target_norm, self._stats(i)
        if norm != "none":
            pred, target = normalise_targets(pred, st, norm), normalise_targets(target, st, norm)
            if answer is not None:
                answer = normalise_targets(answer, st, norm)
        ctx = LossContext(temperature=self.cfg.temperature, stats=st, reduction="none")
        # Per-example values, whose mean is the term: one computation serves both.
        parts = [(name, lam, LOSS_FNS[name](pred, target, ctx)) for name, lam in self.terms.items()]
        if answer is not None:
            parts += [(f"both_sides.{name}", lam, BOTH_SIDES_FNS[name](pred, answer, target, ctx))
                      for name, lam in self.both_sides.items()]
        terms, total, per_ex = {}, 0.0, None
        for name, lam, values in parts:
            terms[name] = values.mean()
            total = total + lam * terms[name]
            if per_example:
                per_ex = lam * values.detach() if per_ex is None else per_ex + lam * values.detach()
        return total, terms, per_ex

    def forward(self, preds: dict[str, Tensor], targets: dict[str, Tensor],
                ramp: dict[str, float] | None = None, per_example: bool = False,
                answer_preds: dict[str, Tensor] | None = None) -> LossOutput:
        """preds[k], targets[k]: (B, d_k) for every teacher k; ramp[k] multiplies w_k (missing: 1).

        answer_preds[k] (B, d_k): the student's encodings of the answers, which ``cfg.both_sides``
        needs (and only it may be given with)."""
        ramp = ramp or {}
        if (answer_preds is not None) != bool(self.both_sides):
            raise ValueError("loss: answer_preds go with loss.both_sides (both or neither)"
                             if answer_preds is not None else
                             "loss: loss.both_sides needs answer_preds (the student's answer encodings)")
        for n in self.teacher_names:
            if n not in preds or n not in targets:
                raise ValueError(f"loss: teacher {n!r} is missing from the predictions or the targets")
            if preds[n].shape != targets[n].shape or preds[n].ndim != 2:
                raise ValueError(f"loss: teacher {n!r}: prediction {tuple(preds[n].shape)} and target "
                                 f"{tuple(targets[n].shape)} must be the same (B, d) shape")
        a = torch.tensor([self.teacher_weights[n] * max(float(ramp.get(n, 1.0)), 0.0) for n in self.teacher_names])
        active = [i for i in range(len(a)) if a[i] > 0]
        if active:
            a = a / a.sum()

        losses, per_term, per_ex = [], {}, []
        for i, n in enumerate(self.teacher_names):
            p, t = preds[n].float(), targets[n].float()
            ap = None
            if answer_preds is not None:
                if n not in answer_preds:
                    raise ValueError(f"loss: teacher {n!r} is missing from the answer predictions")
                ap = answer_preds[n].float()
                if ap.shape != p.shape:
                    raise ValueError(f"loss: teacher {n!r}: answer prediction {tuple(ap.shape)} and prediction "
                                     f"{tuple(p.shape)} must be the same (B, d) shape")
            if i in active:
                L, terms, pe = self._teacher_loss(i, p, t, per_example, ap)
            else:
                # Reported, never backpropagated.
                with torch.no_grad():
                    L, terms, pe = self._teacher_loss(i, p, t, per_example, ap)
            losses.append(L)
            per_ex.append(pe)
            per_term.update({f"{n}/{term}": v.detach() for term, v in terms.items()})
        L = torch.stack(losses)  # (K,)
        a = a.to(L.device)

        w, contrib = WEIGHTING_FNS[self.cfg.weighting](self, L, a, active)
        if active:
            # Only active teachers enter the sum: an inactive teacher's NaN times 0 would be NaN.
            total = sum(contrib[i] for i in active)
        else:
            # Every teacher is ramped out: a zero that still has a graph, so backward() works.
            total = sum(preds[n].sum() * 0.0 for n in self.teacher_names)

        out_pe = None
        if per_example:
            out_pe = sum(w[i].detach() * per_ex[i] for i in active) if active else torch.zeros_like(per_ex[0])
        # One device→host transfer for all logged numbers.
        k = len(self.teacher_names)
        flat = torch.cat([L.detach(), w.detach(), torch.stack(list(per_term.values()))]).tolist()
        return LossOutput(
            total=total,
            per_teacher=dict(zip(self.teacher_names, flat[:k])),
            weights=dict(zip(self.teacher_names, flat[k:2 * k])),
            per_term=dict(zip(per_term, flat[2 * k:])),
            per_example=out_pe,
        )
