"""Does the lattice matter? The default student against the same student without its lattice path.

Both variants use the default config's input teacher (all-MiniLM-L6-v2, targets from the store),
the default loss (cosine + 0.25 InfoNCE), lattice, optimiser, batch and step count, and uniform
sampling; "no lattice" zeroes and freezes the lattice heads, so only the residual and the linear
skip train. Held-out Dolly metrics are printed beside the identity and ridge baselines.

    python bench/student_ablation.py        # from the repository root (fills the store if needed)
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from distill.config import load_config  # noqa: E402
from distill.data import load_pairs, split_indices  # noqa: E402
from distill.evaluate import evaluate_spaces, retrieval_metrics  # noqa: E402
from distill.losses import MultiTeacherLoss, compute_target_stats  # noqa: E402
from distill.student import Student  # noqa: E402
from distill.targets import compute_targets  # noqa: E402

OUT = ROOT / "bench" / "results" / "student_ablation.json"


def train_variant(cfg, qtr, atr, qhe, ahe, name, ablate: bool, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    st = Student({name: qtr.shape[1]}, name, cfg.student.lattice, residual=True, skip=cfg.student.skip)
    if ablate:
        for p in st.heads.parameters():
            torch.nn.init.zeros_(p)
            p.requires_grad_(False)
    loss = MultiTeacherLoss(cfg.loss, [name], {name: 1.0}, stats={name: compute_target_stats(atr)})
    params = [p for p in list(st.parameters()) + list(loss.parameters()) if p.requires_grad]
    o = cfg.optim
    opt = torch.optim.AdamW(params, lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay)
    steps, warm = cfg.train.max_steps, o.warmup_steps

    def factor(s):
        w = min(1.0, (s + 1) / warm) if warm else 1.0
        if s >= warm:
            p = min(1.0, (s - warm) / max(1, steps - warm))
            w = o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p))
        return w

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    st.train()
    for _ in range(steps):
        idx = torch.as_tensor(rng.choice(len(qtr), cfg.train.batch_size, replace=False))
        out = loss(st(qtr[idx]), {name: atr[idx]})
        opt.zero_grad()
        out.total.backward()
        torch.nn.utils.clip_grad_norm_(params, o.grad_clip)
        opt.step()
        sched.step()
    st.eval()
    with torch.no_grad():
        pred = st(qhe)[name]
    m = retrieval_metrics(pred, ahe, tuple(cfg.eval.recall_at))
    m["train_s"] = time.perf_counter() - t0
    m["trainable_parameters"] = sum(p.numel() for p in params)
    return m


def main() -> int:
    cfg = load_config(ROOT / "configs" / "default.yaml")
    spec = cfg.input_teacher()
    pairs = load_pairs(cfg.data).dataset
    qs, ans = list(pairs["question"]), list(pairs["answer"])
    tr, he = split_indices(qs, cfg.data.holdout_fraction, cfg.data.split_seed)
    t = compute_targets([spec], qs, ans, cfg.targets.store_dir, progress=False)
    n = spec.name
    qtr, atr, qhe, ahe = t.q[n][tr], t.a[n][tr], t.q[n][he], t.a[n][he]
    base = evaluate_spaces({n: qhe}, {n: qhe}, {n: ahe}, {n: qtr}, {n: atr}, ks=tuple(cfg.eval.recall_at),
                           ridge_lambda=cfg.eval.ridge_lambda)[n]
    rows = {"identity": base["identity"], "ridge": base["ridge"],
            "student (lattice + skip + residual)": train_variant(cfg, qtr, atr, qhe, ahe, n, ablate=False),
            "no lattice (skip + residual only)": train_variant(cfg, qtr, atr, qhe, ahe, n, ablate=True)}
    print(f"held-out {cfg.data.path}, teacher space {n}, {cfg.train.max_steps} steps, batch {cfg.train.batch_size}")
    print(f"{'predictor':<38}{'cosine':>8}{'R@1':>8}{'R@5':>8}{'MRR':>8}")
    for k, m in rows.items():
        print(f"{k:<38}{m['cosine']:>8.4f}{m['recall@1']:>8.4f}{m['recall@5']:>8.4f}{m['mrr']:>8.4f}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"config": "configs/default.yaml (input teacher only, uniform sampling)",
                               "results": rows}, indent=2))
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
