"""Q→A evaluation: cosine (raw and centred), recall@k and MRR, with identity and ridge baselines.

For each teacher space k, a predictor maps question embeddings to predicted answer embeddings;
the true answer of pair i is ranked by cosine against *all* held-out answers of that space.
The identity baseline predicts the question's own embedding; the ridge baseline is a linear
map fitted in closed form on the training split. A student that does not beat both has learned
nothing the teacher did not already give for free.

Centred cosine: prediction and target minus the *training* answers' mean (``center``). In a space
whose answers share one dominant direction (SmolLM2's last-token answers: the training mean alone
scores 0.77 raw cosine) raw cosine rewards predicting the mean; the centred one scores the mean as 0.

Everything here works in row blocks, so memory is O(N * block + N * d), never O(N^2): an N x N
similarity matrix of 50,000 held-out pairs alone is 20 GB in float64. The block sizes are picked
from a byte budget (``BLOCK_BYTES``) and the blocked results equal the dense ones.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# About 64 MiB of float64 scores per block: big enough that each block is one efficient GEMM,
# small enough that evaluation fits beside training on any machine.
BLOCK_BYTES = 64 * 2**20


def _rows_per_block(n_cols: int, block_rows: int | None) -> int:
    if block_rows is not None:
        if block_rows < 1:
            raise ValueError(f"block_rows must be >= 1, got {block_rows}")
        return block_rows
    return max(1, BLOCK_BYTES // (8 * max(1, n_cols)))


def retrieval_ranks(pred: torch.Tensor, answers: torch.Tensor, *,
                    block_rows: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The cosine of each true answer and its rank among all answers, computed in row blocks.

    pred, answers: (N, d); row i of ``answers`` is the true answer of row i of ``pred``.
    Returns (cosine (N,) float64, rank (N,) int64). Ties are counted against the true answer:
    rank = 1 + the number of *other* answers scoring >= it, so a constant predictor gets no
    credit. Memory: (N, d) normalised copies plus one (block_rows, N) float64 block.
    """
    if pred.ndim != 2 or pred.shape != answers.shape:
        raise ValueError(f"pred and answers must both be (N, d), got {tuple(pred.shape)} and {tuple(answers.shape)}")
    n = pred.shape[0]
    pred = F.normalize(pred.double(), dim=-1)
    answers = F.normalize(answers.double(), dim=-1)
    cos = torch.empty(n, dtype=torch.float64)
    rank = torch.empty(n, dtype=torch.int64)
    step = max(1, min(n, _rows_per_block(n, block_rows)))
    # Reused buffers: fresh ones per block would page-fault N * N * 9 bytes in total.
    buf = torch.empty(step, n, dtype=torch.float64)
    hit = torch.empty(step, n, dtype=torch.bool)
    for i0 in range(0, n, step):
        i1 = min(n, i0 + step)
        sims = torch.mm(pred[i0:i1], answers.T, out=buf[: i1 - i0])  # (b, N)
        # The true score is read from the same GEMM output it is compared against, so the true
        # answer always counts itself exactly once, as in the dense N x N computation.
        true = sims[torch.arange(i1 - i0), torch.arange(i0, i1)]
        cos[i0:i1] = true
        ge = torch.ge(sims, true[:, None], out=hit[: i1 - i0])
        # >= itself, so this is already 1 + the others. Summing the bytes into int32 is ~5x
        # faster than a bool sum (which widens every element to int64 first).
        rank[i0:i1] = ge.view(torch.uint8).sum(dim=1, dtype=torch.int32)
    return cos, rank


def answer_mean(answers: torch.Tensor, block_rows: int = 65536) -> torch.Tensor:
    """answers: (N, d), may be memory-mapped -> (d,) float64 mean, summed in row blocks."""
    total = torch.zeros(answers.shape[1], dtype=torch.float64)
    for i0 in range(0, answers.shape[0], block_rows):
        total += torch.as_tensor(answers[i0:i0 + block_rows]).double().sum(0)
    return total / max(1, answers.shape[0])


def centred_cosine(pred: torch.Tensor, answers: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
    """(N,) float64 cos(pred_i - center, answer_i - center); center: (d,), the training answers' mean."""
    c = center.double()
    return F.cosine_similarity(pred.double() - c, answers.double() - c, dim=-1)


def retrieval_metrics(pred: torch.Tensor, answers: torch.Tensor, ks=(1, 5, 10), *,
                      block_rows: int | None = None, center: torch.Tensor | None = None) -> dict[str, float]:
    """Mean cosine, recall@k and MRR of the true answer among all answers, and with ``center``
    (the training answers' mean, (d,)) the mean centred cosine as ``cosine_centred``.

    pred, answers: (N, d); row i of ``answers`` is the true answer of row i of ``pred``.
    Ties are counted against the true answer (rank = 1 + number of answers scoring >= it,
    other than itself), so a constant predictor gets no credit. Computed in blocks of
    ``block_rows`` predictions (default: from ``BLOCK_BYTES``); see :func:`retrieval_ranks`.
    """
    true, rank = retrieval_ranks(pred, answers, block_rows=block_rows)
    out = {"cosine": true.mean().item()}
    if center is not None:
        out["cosine_centred"] = centred_cosine(pred, answers, center).mean().item()
    for k in ks:
        out[f"recall@{k}"] = (rank <= k).double().mean().item()
    out["mrr"] = (1.0 / rank.double()).mean().item()
    return out


def fit_ridge(x: torch.Tensor, y: torch.Tensor, lam: float = 1.0, *,
              block_rows: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form ridge regression y ≈ x W + b (bias not penalised).

    x: (N, d_in), y: (N, d_out) -> W: (d_in, d_out), b: (d_out,). x and y may be memory-mapped
    float32: they are read in row blocks (two passes: the means, then the centred X^T X and
    X^T Y in float64), so memory is O(block * d + d^2), not a float64 copy of the data.
    """
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must be (N, d_in) and (N, d_out), got {tuple(x.shape)} and {tuple(y.shape)}")
    n, d_in = x.shape
    d_out = y.shape[1]
    step = _rows_per_block(d_in + d_out, block_rows)
    xs = torch.zeros(d_in, dtype=torch.float64)
    ys = torch.zeros(d_out, dtype=torch.float64)
    for i0 in range(0, n, step):
        xs += x[i0:i0 + step].double().sum(0)
        ys += y[i0:i0 + step].double().sum(0)
    xm, ym = xs / n, ys / n
    # Centre before accumulating: X^T X - N m m^T would cancel most digits when the mean is large.
    a = lam * torch.eye(d_in, dtype=torch.float64)
    c = torch.zeros(d_in, d_out, dtype=torch.float64)
    for i0 in range(0, n, step):
        xc = x[i0:i0 + step].double() - xm
        a += xc.T @ xc
        c += xc.T @ (y[i0:i0 + step].double() - ym)
    w = torch.linalg.solve(a, c)
    b = ym - xm @ w
    return w, b


def fit_ridge_wide(x: torch.Tensor, y: torch.Tensor, lam: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`fit_ridge` (bias not penalised), solved in the dual when there are fewer rows than
    features: W = X_c^T (X_c X_c^T + lam I)^-1 Y_c, an N x N system instead of d_in x d_in (the same
    solution). For in-memory float64 x, e.g. random features (8192 wide, 2070 rows)."""
    if len(x) >= x.shape[1]:
        return fit_ridge(x, y, lam)
    xm, ym = x.mean(0), y.mean(0)
    xc = x - xm
    w = xc.T @ torch.linalg.solve(xc @ xc.T + lam * torch.eye(len(xc), dtype=xc.dtype), y - ym)
    return w, ym - xm @ w


def topk_cosine(query: torch.Tensor, bank: torch.Tensor, k: int, *, rows=None,
                block_rows: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The k bank rows most cosine-similar to each query, scanning the bank in blocks.

    query: (m, d); bank: (N, d), may be memory-mapped; ``rows``: optional (R,) indices of the bank
    rows to search (e.g. the training split) so the caller needs no gathered copy. Returns
    (scores (m, k') float32, indices (m, k') int64) with k' = min(k, candidates), best first;
    indices are positions within ``rows`` when it is given, else bank rows. Ties go to the lower
    index, so the result does not depend on the block size. Memory: O(m * (block + k)).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if query.ndim != 2 or bank.ndim != 2 or query.shape[1] != bank.shape[1]:
        raise ValueError(f"query (m, d) and bank (N, d) must share d, got {tuple(query.shape)} and {tuple(bank.shape)}")
    rows_t = None if rows is None else torch.as_tensor(np.asarray(rows), dtype=torch.long)
    n = bank.shape[0] if rows_t is None else len(rows_t)
    m = query.shape[0]
    q = F.normalize(query.float(), dim=-1)
    best_v = torch.empty(m, 0, dtype=torch.float32)
    best_i = torch.empty(m, 0, dtype=torch.long)
    # Per bank row in a block: m float32 scores plus the sort's values and int64 indices.
    step = _rows_per_block(2 * m, block_rows)
    for i0 in range(0, n, step):
        i1 = min(n, i0 + step)
        blk = torch.as_tensor(bank[i0:i1] if rows_t is None else bank[rows_t[i0:i1].numpy()])
        scores = q @ F.normalize(blk.float(), dim=-1).T  # (m, b)
        # Stable descending sorts keep equal scores in index order; the running best (all lower
        # indices) comes first in the merge, so ties always resolve to the lower index.
        v, j = torch.sort(scores, dim=1, descending=True, stable=True)
        v, j = v[:, :k], j[:, :k] + i0
        cand_v, cand_i = torch.cat([best_v, v], dim=1), torch.cat([best_i, j], dim=1)
        order = torch.sort(cand_v, dim=1, descending=True, stable=True).indices[:, :k]
        best_v, best_i = cand_v.gather(1, order), cand_i.gather(1, order)
    return best_v, best_i


def evaluate_spaces(
    predictions: dict[str, torch.Tensor],
    heldout_q: dict[str, torch.Tensor],
    heldout_a: dict[str, torch.Tensor],
    train_q: dict[str, torch.Tensor] | None = None,
    train_a: dict[str, torch.Tensor] | None = None,
    ks=(1, 5, 10),
    ridge_lambda: float = 1.0,
    centers: dict[str, torch.Tensor] | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    """Metrics per teacher space for the student and the baselines.

    Returns ``{teacher: {"student": {...}, "identity": {...}, "ridge": {...}}}``. The ridge
    baseline needs the training split and is left out without it. ``centers``: {teacher: (d,)}
    the training answers' means for the centred cosine (default: from ``train_a`` when given).
    """
    out: dict[str, dict[str, dict[str, float]]] = {}
    if centers is None and train_a is not None:
        centers = {n: answer_mean(train_a[n]) for n in predictions}
    for name, pred in predictions.items():
        answers = heldout_a[name].float()  # no copy when already float32
        c = None if centers is None else centers[name]
        row = {"student": retrieval_metrics(pred.float(), answers, ks, center=c)}
        row["identity"] = retrieval_metrics(heldout_q[name].float(), answers, ks, center=c)
        if train_q is not None and train_a is not None:
            w, b = fit_ridge(train_q[name].float(), train_a[name].float(), ridge_lambda)
            ridge_pred = heldout_q[name].double() @ w + b
            row["ridge"] = retrieval_metrics(ridge_pred.float(), answers, ks, center=c)
        out[name] = row
    return out


def format_table(results: dict[str, dict[str, dict[str, float]]], input_teacher: str | list[str] | None = None) -> str:
    """A plain-text table: one block per teacher space, predictors as rows, metrics as columns;
    ``input_teacher``: the space(s) whose question embedding the student reads, tagged."""
    inputs = [input_teacher] if isinstance(input_teacher, str) else list(input_teacher or [])
    lines = []
    for name, rows in results.items():
        metrics = list(next(iter(rows.values())).keys())
        tag = " (input teacher)" if name in inputs else ""
        lines.append(f"teacher space: {name}{tag}")
        widths = [max(11, len(m) + 1) for m in metrics]
        header = f"  {'predictor':<11}" + "".join(f"{m:>{w}}" for m, w in zip(metrics, widths))
        lines.append(header)
        lines.append("  " + "-" * (len(header) - 2))
        for pred_name, vals in rows.items():
            lines.append(f"  {pred_name:<11}" + "".join(f"{vals.get(m, float('nan')):>{w}.4f}"
                                                        for m, w in zip(metrics, widths)))
        if "student" in rows:
            beats = [b for b in ("identity", "ridge", "ridge_input") if b in rows]
            verdict = []
            for m in ("cosine", "cosine_centred", "recall@1"):
                if m in rows["student"] and beats and all(m in rows[b] for b in beats):
                    best = max(rows[b][m] for b in beats)
                    delta = rows["student"][m] - best
                    verdict.append(f"{m} {'+' if delta >= 0 else ''}{delta:.4f} vs best baseline")
            if verdict:
                lines.append("  student: " + "; ".join(verdict))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
