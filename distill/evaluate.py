"""Held-out evaluation: Q→A cosine, recall@k and MRR, with identity and ridge baselines.

For each teacher space k, a predictor maps question embeddings to predicted answer embeddings;
the true answer of pair i is ranked by cosine against *all* held-out answers of that space.
The identity baseline predicts the question's own embedding; the ridge baseline is a linear
map fitted in closed form on the training split. A student that does not beat both has learned
nothing the teacher did not already give for free.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def retrieval_metrics(pred: torch.Tensor, answers: torch.Tensor, ks=(1, 5, 10)) -> dict[str, float]:
    """Mean cosine, recall@k and MRR of the true answer among all answers.

    pred, answers: (N, d); row i of ``answers`` is the true answer of row i of ``pred``.
    Ties are counted against the true answer (rank = 1 + number of answers scoring >= it,
    other than itself), so a constant predictor gets no credit.
    """
    pred = F.normalize(pred.double(), dim=-1)
    answers = F.normalize(answers.double(), dim=-1)
    sims = pred @ answers.T  # (N, N)
    true = sims.diagonal()
    rank = 1 + (sims >= true[:, None]).sum(dim=1) - 1  # the true answer itself is >= itself
    out = {"cosine": true.mean().item()}
    for k in ks:
        out[f"recall@{k}"] = (rank <= k).double().mean().item()
    out["mrr"] = (1.0 / rank.double()).mean().item()
    return out


def fit_ridge(x: torch.Tensor, y: torch.Tensor, lam: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form ridge regression y ≈ x W + b (bias not penalised).

    x: (N, d_in), y: (N, d_out) -> W: (d_in, d_out), b: (d_out,).
    """
    x = x.double()
    y = y.double()
    xm, ym = x.mean(0), y.mean(0)
    xc, yc = x - xm, y - ym
    a = xc.T @ xc + lam * torch.eye(x.shape[1], dtype=x.dtype)
    w = torch.linalg.solve(a, xc.T @ yc)
    b = ym - xm @ w
    return w, b


def evaluate_spaces(
    predictions: dict[str, torch.Tensor],
    heldout_q: dict[str, torch.Tensor],
    heldout_a: dict[str, torch.Tensor],
    train_q: dict[str, torch.Tensor] | None = None,
    train_a: dict[str, torch.Tensor] | None = None,
    ks=(1, 5, 10),
    ridge_lambda: float = 1.0,
) -> dict[str, dict[str, dict[str, float]]]:
    """Metrics per teacher space for the student and the baselines.

    Returns ``{teacher: {"student": {...}, "identity": {...}, "ridge": {...}}}``. The ridge
    baseline needs the training split and is left out without it.
    """
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, pred in predictions.items():
        answers = heldout_a[name].float()
        row = {"student": retrieval_metrics(pred.float(), answers, ks)}
        row["identity"] = retrieval_metrics(heldout_q[name].float(), answers, ks)
        if train_q is not None and train_a is not None:
            w, b = fit_ridge(train_q[name].float(), train_a[name].float(), ridge_lambda)
            ridge_pred = heldout_q[name].double() @ w + b
            row["ridge"] = retrieval_metrics(ridge_pred.float(), answers, ks)
        out[name] = row
    return out


def format_table(results: dict[str, dict[str, dict[str, float]]], input_teacher: str | None = None) -> str:
    """A plain-text table: one block per teacher space, predictors as rows, metrics as columns."""
    lines = []
    for name, rows in results.items():
        metrics = list(next(iter(rows.values())).keys())
        tag = " (input teacher)" if name == input_teacher else ""
        lines.append(f"teacher space: {name}{tag}")
        header = f"  {'predictor':<10}" + "".join(f"{m:>11}" for m in metrics)
        lines.append(header)
        lines.append("  " + "-" * (len(header) - 2))
        for pred_name, vals in rows.items():
            lines.append(f"  {pred_name:<10}" + "".join(f"{vals[m]:>11.4f}" for m in metrics))
        if "student" in rows:
            beats = [b for b in ("identity", "ridge") if b in rows]
            verdict = []
            for m in ("cosine", "recall@1"):
                if m in rows["student"] and beats:
                    best = max(rows[b][m] for b in beats)
                    delta = rows["student"][m] - best
                    verdict.append(f"{m} {'+' if delta >= 0 else ''}{delta:.4f} vs best baseline")
            if verdict:
                lines.append("  student: " + "; ".join(verdict))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
