"""Golden numbers: the per-step losses and final held-out metrics of a tiny fixed-seed run.

"Resume equals uninterrupted" and "2 processes equal 1" compare the trainer with itself; these
numbers were recorded from the trainer before the recipe refactor (issue #10), so a change that
alters the arithmetic (sampling order, loss reduction, schedule, evaluation) fails here. If a
change is meant to alter them, update GOLDEN_* in the same commit and say why there.

In-process and single-threaded (a fixed reduction order); about 20 s on one core.
"""

from __future__ import annotations

import json
import os

import pytest
import torch

from tests.distill.e2e import scalars, tiny_setup

REL = 1e-5
STEPS = 20
# A config that exercises grad accumulation, three loss terms, learned teacher weights,
# a curriculum with pacing and the warmup-cosine schedule.
OVERRIDES = {
    "train.max_steps": STEPS, "train.eval_every": 10, "train.save_every": 10, "train.grad_accum": 2,
    "logging.image_every": 0, "logging.histogram_every": 0,
    "loss.terms": {"cosine": 1.0, "mse": 0.5, "infonce": 0.25},
    "optim.schedule": "cosine",
}

GOLDEN_LOSSES: dict[int, float] = {
    1: 29599.37890625, 2: 26601.23828125, 3: 20693.50390625, 4: 15242.84375, 5: 10460.2626953125,
    6: 6485.02685546875, 7: 3927.5546875, 8: 2563.0712890625, 9: 1874.02001953125, 10: 1450.49462890625,
    11: 1134.017822265625, 12: 815.2098999023438, 13: 593.2939453125, 14: 385.3521728515625,
    15: 257.3251647949219, 16: 200.93765258789062, 17: 145.00120544433594, 18: 125.08741760253906,
    19: 114.57000732421875, 20: 100.1335678100586,
}
GOLDEN_METRICS: dict[str, dict[str, dict[str, float]]] = {
    'bert-cls': {
        'identity': {
            'cosine': 0.9999886531455431,
            'mrr': 0.21594932844932843,
            'recall@1': 0.0,
            'recall@10': 0.7857142857142857,
            'recall@5': 0.5,
        },
        'ridge': {
            'cosine': 0.9999960138045222,
            'mrr': 0.232254451897309,
            'recall@1': 0.07142857142857142,
            'recall@10': 0.7142857142857143,
            'recall@5': 0.35714285714285715,
        },
        'student': {
            'cosine': 0.9982794017062362,
            'mrr': 0.22392111856397573,
            'recall@1': 0.07142857142857142,
            'recall@10': 0.6428571428571429,
            'recall@5': 0.2857142857142857,
        },
    },
    'bert-mean': {
        'identity': {
            'cosine': 0.8903519147142968,
            'mrr': 0.2877293341579056,
            'recall@1': 0.07142857142857142,
            'recall@10': 0.8571428571428571,
            'recall@5': 0.5714285714285714,
        },
        'ridge': {
            'cosine': 0.9570381875869076,
            'mrr': 0.2563757670900528,
            'recall@1': 0.07142857142857142,
            'recall@10': 0.7142857142857143,
            'recall@5': 0.35714285714285715,
        },
        'student': {
            'cosine': 0.9120780143831647,
            'mrr': 0.299546485260771,
            'recall@1': 0.07142857142857142,
            'recall@10': 0.8571428571428571,
            'recall@5': 0.6428571428571429,
        },
    },
}


def run_tiny(root) -> tuple[dict[int, float], dict]:
    from distill.config import load_config
    from distill.train import train

    cfg_path = tiny_setup(root, n_pairs=64, max_steps=STEPS, **OVERRIDES)
    cfg = load_config(cfg_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert train(cfg) == 0
    finally:
        torch.set_num_threads(threads)
    run_dir = root / "runs" / "tiny"
    losses = scalars(run_dir, "loss/total")
    payload = json.loads((run_dir / "eval.json").read_text())
    return losses, payload


def test_golden_numbers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    losses, payload = run_tiny(tmp_path)
    results = payload["results"]
    if os.environ.get("DISTILL_GOLDEN_PRINT"):
        print("GOLDEN_LOSSES =", {k: losses[k] for k in sorted(losses)})
        print("GOLDEN_METRICS =", results)
    assert sorted(losses) == list(range(1, STEPS + 1))
    for step, value in GOLDEN_LOSSES.items():
        assert losses[step] == pytest.approx(value, rel=REL), (step, losses[step], value)
    assert set(results) == set(GOLDEN_METRICS)
    for teacher, spaces in GOLDEN_METRICS.items():  # the student and the baselines it must beat
        assert set(results[teacher]) == set(spaces)
        for space, metrics in spaces.items():
            for name, value in metrics.items():
                got = results[teacher][space][name]
                assert got == pytest.approx(value, rel=REL, abs=1e-7), (teacher, space, name, got, value)
    assert GOLDEN_LOSSES and GOLDEN_METRICS
