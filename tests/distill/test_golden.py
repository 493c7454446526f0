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
nothing else moved. Issue #22 folded loss.standardize into target_norm; the golden config now sets
target_norm: phis (mse as before, cosine/InfoNCE on centred vectors), so losses and metrics were
re-recorded (only the student's rows moved).

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
    # The mse on (x − μ)/σ these numbers had under the retired loss.standardize (issue #22); the
    # cosine and InfoNCE terms see centred vectors with it.
    "loss.target_norm": "phis",
    "optim.schedule": "cosine",
    # The zero (identity-start) skips these numbers were recorded with (also the default); the
    # ridge-initialised skips (issue #11) are checked in test_ridge_init.py.
    "student.skip_init": "zero",
}

# The tiny random BERT's CLS vectors are nearly one vector (cosine 1.0000 between any two), so the
# centred cosine in its space divides rounding noise by residuals ~1e-4 long. The ridge row was
# recorded as -0.0845 (validation); a machine without AVX-512 (AMD EPYC, family 23, 2026-12-04)
# gives -0.0784 with every loss and every other number equal to REL. Those entries are held to
# 0.01 absolute; every other number to REL.
ILL_CONDITIONED: dict[tuple[str, str], float] = {("bert-cls", "cosine_centred"): 0.01}

GOLDEN_LOSSES: dict[int, float] = {
    1: 28254.7421875, 2: 25385.859375, 3: 19769.802734375, 4: 14655.0654296875, 5: 9995.8291015625,
    6: 6322.201171875, 7: 3810.1181640625, 8: 2489.732421875, 9: 1810.6600341796875, 10: 1379.478515625,
    11: 1059.4324951171875, 12: 802.8489990234375, 13: 532.8580322265625, 14: 379.2735595703125,
    15: 260.45001220703125, 16: 177.45254516601562, 17: 146.6316680908203, 18: 124.0242919921875,
    19: 108.14219665527344, 20: 97.12724304199219,
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
                'cosine': 0.998239588749393,
                'cosine_centred': 0.0265520160909006,
                'mrr': 0.202101547689783,
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
                'cosine': 0.927255235647389,
                'cosine_centred': 0.09620846358665597,
                'mrr': 0.20939014689014687,
                'recall@1': 0.0,
                'recall@10': 0.7222222222222222,
                'recall@5': 0.4444444444444444,
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
                'cosine': 0.9982224079645945,
                'cosine_centred': -0.09999871701525444,
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
                'cosine': 0.9076404534144621,
                'cosine_centred': 0.06553465709036017,
                'mrr': 0.37791950113378686,
                'recall@1': 0.21428571428571427,
                'recall@10': 0.8571428571428571,
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
                    tol = ILL_CONDITIONED.get((teacher, name), 1e-7)
                    assert got == pytest.approx(value, rel=REL, abs=tol), (split, teacher, space, name, got)
    assert GOLDEN_LOSSES and GOLDEN_METRICS
