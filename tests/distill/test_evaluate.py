"""Blocked evaluation equals the dense computation, and stays bounded in memory at N = 40,000."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from distill.eval.qa import fit_ridge, retrieval_metrics, retrieval_ranks, topk_cosine

ROOT = Path(__file__).resolve().parents[2]


def dense_metrics(pred, answers, ks):
    """The N x N reference (the pre-blocking implementation)."""
    pred = F.normalize(pred.double(), dim=-1)
    answers = F.normalize(answers.double(), dim=-1)
    sims = pred @ answers.T
    true = sims.diagonal()
    rank = (sims >= true[:, None]).sum(dim=1)
    out = {"cosine": true.mean().item()}
    for k in ks:
        out[f"recall@{k}"] = (rank <= k).double().mean().item()
    out["mrr"] = (1.0 / rank.double()).mean().item()
    return out, rank


def dense_ridge(x, y, lam):
    x, y = x.double(), y.double()
    xm, ym = x.mean(0), y.mean(0)
    xc, yc = x - xm, y - ym
    w = torch.linalg.solve(xc.T @ xc + lam * torch.eye(x.shape[1], dtype=x.dtype), xc.T @ yc)
    return w, ym - xm @ w


def tied_data(n=37, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    answers = torch.randn(n, d, generator=g)
    answers[5] = answers[3]  # two identical answers: pair 3 and pair 5 tie with each other
    answers[20:24] = answers[19]
    pred = answers + 0.8 * torch.randn(n, d, generator=g)
    pred[10:16] = 1.0  # a constant predictor on some rows
    pred[3] = answers[3]
    return pred, answers


@pytest.mark.parametrize("block", [1, 5, 7, 36, 37, 100, None])
def test_blocked_metrics_equal_dense(block):
    pred, answers = tied_data()
    ks = (1, 2, 5, 10)
    want, want_rank = dense_metrics(pred, answers, ks)
    cos, rank = retrieval_ranks(pred, answers, block_rows=block)
    assert torch.equal(rank, want_rank)
    assert rank[3] == 2 and rank[5] >= 2  # a tied answer counts against the true one
    got = retrieval_metrics(pred, answers, ks, block_rows=block)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-12), key


@pytest.mark.parametrize("block", [1, 2, 3, 4, 10])
def test_exact_ties_by_hand(block):
    # Vectors whose cosines are exact in floating point, so the ranks are known by hand.
    e = torch.eye(4)
    answers = torch.stack([e[0], e[0], e[1], torch.ones(4)])
    pred = torch.stack([e[0], e[0], e[1], e[2]])
    # sims rows: [1,1,0,.5] [1,1,0,.5] [0,0,1,.5] [0,0,0,.5] -> ranks 2, 2, 1, 1
    cos, rank = retrieval_ranks(pred, answers, block_rows=block)
    assert rank.tolist() == [2, 2, 1, 1]
    assert cos.tolist() == [1.0, 1.0, 1.0, 0.5]
    m = retrieval_metrics(pred, answers, (1, 2), block_rows=block)
    assert m == {"cosine": 0.875, "recall@1": 0.5, "recall@2": 1.0, "mrr": 0.75}
    # A constant predictor earns nothing from ties: every answer but the one it points at ranks last.
    const = retrieval_metrics(torch.ones(4, 4), answers, (1,), block_rows=block)
    assert const["recall@1"] == 0.25 and const["mrr"] == pytest.approx((3 * 0.25 + 1) / 4)


@pytest.mark.parametrize("block", [1, 7, 64, 1000, None])
def test_blocked_ridge_equals_dense_and_reads_memmaps(tmp_path, block):
    g = torch.Generator().manual_seed(1)
    n, d_in, d_out = 203, 6, 5
    x = torch.randn(n, d_in, generator=g) + 40.0  # a large mean: centring must not lose digits
    w_true = torch.randn(d_in, d_out, generator=g)
    y = x @ w_true + 3.0 + 0.01 * torch.randn(n, d_out, generator=g)
    path = tmp_path / "x.npy"
    np.save(path, x.numpy())
    x_mm = torch.from_numpy(np.load(path, mmap_mode="c"))  # a memmap, as the target store gives
    w, b = fit_ridge(x_mm, y, 0.5, block_rows=block)
    w_ref, b_ref = dense_ridge(x, y, 0.5)
    assert torch.allclose(w, w_ref, atol=1e-9) and torch.allclose(b, b_ref, atol=1e-7)
    w0, b0 = fit_ridge(x, y, 1e-9, block_rows=block)
    assert torch.allclose(w0, w_true.double(), atol=0.01)  # recovers the generating map
    assert torch.allclose(b0, torch.full((d_out,), 3.0, dtype=torch.float64), atol=0.5)


def dense_topk(query, bank, k):
    scores = F.normalize(query.float(), dim=-1) @ F.normalize(bank.float(), dim=-1).T
    v, i = torch.sort(scores, dim=1, descending=True, stable=True)
    return v[:, :k], i[:, :k]


@pytest.mark.parametrize("block", [1, 3, 10, 50, 1000, None])
@pytest.mark.parametrize("k", [1, 4, 60])
def test_blocked_topk_equals_dense_with_ties_to_lower_index(block, k):
    g = torch.Generator().manual_seed(2)
    bank = torch.randn(50, 8, generator=g)
    bank[[7, 23, 41]] = bank[30].clone()  # four identical rows across different blocks
    query = torch.cat([bank[30:31], torch.randn(2, 8, generator=g)])
    v, i = topk_cosine(query, bank, k, block_rows=block)
    v_ref, i_ref = dense_topk(query, bank, k)
    assert i.shape == (3, min(k, 50))
    assert torch.equal(i, i_ref) and torch.allclose(v, v_ref, atol=1e-6)
    if k >= 4:
        assert i[0, :4].tolist() == [7, 23, 30, 41]  # ties resolve to the lower index
    rows = np.arange(1, 50, 2)  # a subset: indices come back as positions within it
    v, i = topk_cosine(query, bank, k, rows=rows, block_rows=block)
    v_ref, i_ref = dense_topk(query, bank[torch.as_tensor(rows)], k)
    assert torch.equal(i, i_ref) and torch.allclose(v, v_ref, atol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="k must be >= 1"):
        topk_cosine(torch.ones(1, 2), torch.ones(3, 2), 0)
    with pytest.raises(ValueError, match=r"must both be \(N, d\)"):
        retrieval_metrics(torch.ones(3, 2), torch.ones(4, 2))
    with pytest.raises(ValueError, match="block_rows must be >= 1"):
        retrieval_metrics(torch.ones(3, 2), torch.ones(3, 2), block_rows=0)


LIMIT_SCRIPT = textwrap.dedent("""
    import resource, sys
    LIMIT = 4 * 2**30
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))  # before torch: its ~0.6 GiB counts too
    import numpy as np
    import torch
    from distill.eval.qa import retrieval_metrics, retrieval_ranks

    N, D = 40_000, 16
    # The limit binds: a dense N x N score matrix (6.4 GB in float32, 12.8 GB in float64) cannot even be
    # allocated. (40k, not 60k: the check is the same and the test takes less than half the time.)
    try:
        torch.empty((N, N), dtype=torch.float32)
        sys.exit("the address-space limit did not stop an N x N allocation")
    except RuntimeError:
        pass
    g = torch.Generator().manual_seed(0)
    answers = torch.randn(N, D, generator=g)
    answers[0] = answers[1] = torch.eye(D)[0]  # an exact tie: pair 0's prediction scores 1 on both
    pred = answers.clone()
    odd = torch.arange(1, N, 2)
    pred[odd] = answers[(odd + 2) % N]  # odd pairs predict another pair's answer: rank >= 2
    cos, rank = retrieval_ranks(pred, answers)
    assert rank[0] == 2, rank[0]
    assert bool((rank[2::2] == 1).all()) and bool((rank[1::2] >= 2).all())
    m = retrieval_metrics(pred, answers, (1,))
    assert m["recall@1"] == (N // 2 - 1) / N, m
    # A sample of rows against a direct per-row count in numpy.
    a = answers.double().numpy()
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    p = pred.double().numpy()
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    for i in np.random.default_rng(0).choice(N, 20, replace=False):
        s = a @ p[i]
        assert int((s >= s[i]).sum()) == int(rank[i]), i
    print("vmpeak_kb", [ln.split()[1] for ln in open("/proc/self/status") if ln.startswith("VmPeak")][0])
""")


def test_40k_metrics_under_a_4_gib_address_space_limit():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", LIMIT_SCRIPT], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "vmpeak_kb" in proc.stdout
