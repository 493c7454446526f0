"""Golden numbers: the per-step losses and final held-out metrics of a tiny fixed-seed run.

"Resume equals uninterrupted" and "2 processes equal 1" compare the trainer with itself; these
numbers were recorded from the trainer before the recipe refactor (issue #10) and passed
unchanged through it, so a change that alters the arithmetic (sampling order, loss reduction,
schedule, evaluation) fails here. If a change is meant to alter them, update GOLDEN_* in the same
commit and say why there. History: re-recorded once, for the three splits (issue #13): training
lost the validation questions, so the losses and the student's metrics moved; the test split is
the old held-out split (its identity baselines are unchanged). Issue #11 added the ridge_input
baseline rows (ridge from the input teacher's question embedding; nothing else moved) and pins
student.skip_init to zero, the init these numbers were recorded with. Issue #22 added the centred
cosine (``cosine_centred``: prediction and target minus the training answers' mean) to every row;
nothing else moved.

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
    # The zero (identity-start) skips these numbers were recorded with (also the default); the
    # ridge-initialised skips (issue #11) are checked in test_ridge_init.py.
    "student.skip_init": "zero",
}

GOLDEN_LOSSES: dict[int, float] = {
    1: 28254.150390625, 2: 25385.408203125, 3: 19769.15625, 4: 14654.025390625, 5: 9995.09375,
    6: 6321.30419921875, 7: 3809.17626953125, 8: 2488.8330078125, 9: 1809.63134765625, 10: 1378.02099609375,
    11: 1058.4237060546875, 12: 801.3422241210938, 13: 531.6951293945312, 14: 377.8857727050781,
    15: 259.16839599609375, 16: 176.16259765625, 17: 144.99655151367188, 18: 122.40847778320312,
    19: 106.80313110351562, 20: 95.7976303100586,
}
GOLDEN_METRICS: dict[str, dict[str, dict[str, dict[str, float]]]] = {
    'validation': {
        'bert-cls': {
            'identity': {
                'cosine': 0.9999923049756931,
                'cosine_centred': -0.13295702364298126,
                'mrr': 0.2348382554264907,
                'recall@1': 0.1111111111111111,
                'recall@10': 0.5555555555555556,
                'recall@5': 0.2777777777777778,
            },
            'ridge': {
                'cosine': 0.9999966844067948,
                'cosine_centred': -0.08445477872984196,
                'mrr': 0.19417267101090632,
                'recall@1': 0.05555555555555555,
                'recall@10': 0.5555555555555556,
                'recall@5': 0.2777777777777778,
            },
            'ridge_input': {
                'cosine': 0.9999966212387886,
                'cosine_centred': -0.026909122518877098,
                'mrr': 0.17298860816017678,
                'recall@1': 0.05555555555555555,
                'recall@10': 0.5555555555555556,
                'recall@5': 0.2777777777777778,
            },
            'student': {
                'cosine': 0.9982400201280759,
                'cosine_centred': 0.026148072100780143,
                'mrr': 0.19284228843052376,
                'recall@1': 0.05555555555555555,
                'recall@10': 0.6111111111111112,
                'recall@5': 0.2777777777777778,
            },
        },
        'bert-mean': {
            'identity': {
                'cosine': 0.9108224302533124,
                'cosine_centred': 0.016971038406566982,
                'mrr': 0.255349919688155,
                'recall@1': 0.1111111111111111,
                'recall@10': 0.7222222222222222,
                'recall@5': 0.3333333333333333,
            },
            'ridge': {
                'cosine': 0.9552114293032979,
                'cosine_centred': -0.02225977661911248,
                'mrr': 0.16507214191037722,
                'recall@1': 0.0,
                'recall@10': 0.5555555555555556,
                'recall@5': 0.2777777777777778,
            },
            'student': {
                'cosine': 0.929558207816811,
                'cosine_centred': 0.09668181301906816,
                'mrr': 0.29070967612634274,
                'recall@1': 0.1111111111111111,
                'recall@10': 0.7222222222222222,
                'recall@5': 0.5,
            },
        },
    },
    'test': {
        'bert-cls': {
            'identity': {
                'cosine': 0.9999886531455431,
                'cosine_centred': -0.03584401543097908,
                'mrr': 0.21594932844932843,
                'recall@1': 0.0,
                'recall@10': 0.7857142857142857,
                'recall@5': 0.5,
            },
            'ridge': {
                'cosine': 0.9999960137499746,
                'cosine_centred': 0.005390456838377431,
                'mrr': 0.23225445189730903,
                'recall@1': 0.07142857142857142,
                'recall@10': 0.7142857142857143,
                'recall@5': 0.35714285714285715,
            },
            'ridge_input': {
                'cosine': 0.9999960467972843,
                'cosine_centred': 0.03579109005487254,
                'mrr': 0.2391447837876409,
                'recall@1': 0.07142857142857142,
                'recall@10': 0.7142857142857143,
                'recall@5': 0.42857142857142855,
            },
            'student': {
                'cosine': 0.9982232001420096,
                'cosine_centred': -0.10087735570034873,
                'mrr': 0.22952900274328844,
                'recall@1': 0.07142857142857142,
                'recall@10': 0.7142857142857143,
                'recall@5': 0.35714285714285715,
            },
        },
        'bert-mean': {
            'identity': {
                'cosine': 0.8903519147142968,
                'cosine_centred': 0.023768421310406598,
                'mrr': 0.2877293341579056,
                'recall@1': 0.07142857142857142,
                'recall@10': 0.8571428571428571,
                'recall@5': 0.5714285714285714,
            },
            'ridge': {
                'cosine': 0.9564186468847068,
                'cosine_centred': 0.1046447896478557,
                'mrr': 0.24685195756624329,
                'recall@1': 0.07142857142857142,
                'recall@10': 0.7142857142857143,
                'recall@5': 0.42857142857142855,
            },
            'student': {
                'cosine': 0.9109593657588173,
                'cosine_centred': 0.06326645003830378,
                'mrr': 0.30023191094619667,
                'recall@1': 0.07142857142857142,
                'recall@10': 0.7857142857142857,
                'recall@5': 0.6428571428571429,
            },
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
    results = {split: payload[split] for split in ("validation", "test")}
    if os.environ.get("DISTILL_GOLDEN_PRINT"):
        print("GOLDEN_LOSSES =", {k: losses[k] for k in sorted(losses)})
        print("GOLDEN_METRICS =", results)
    assert sorted(losses) == list(range(1, STEPS + 1))
    for step, value in GOLDEN_LOSSES.items():
        assert losses[step] == pytest.approx(value, rel=REL), (step, losses[step], value)
    assert set(results) == set(GOLDEN_METRICS)
    for split, teachers in GOLDEN_METRICS.items():
        assert set(results[split]) == set(teachers)
        for teacher, spaces in teachers.items():  # the student and the baselines it must beat
            assert set(results[split][teacher]) == set(spaces)
            for space, metrics in spaces.items():
                for name, value in metrics.items():
                    got = results[split][teacher][space][name]
                    assert got == pytest.approx(value, rel=REL, abs=1e-7), (split, teacher, space, name, got)
    assert GOLDEN_LOSSES and GOLDEN_METRICS
