"""loss.teacher_drop and loss.target_norm inside the trainer (distill.train), on a tiny run.

The loss module's arithmetic is tested in test_losses.py; here: the trainer draws each step's
drop from (run.seed, step) (so the logged teacher weights are drop_teachers' pattern, which a
resumed run redraws without state), and it hands the loss stats of the right kind.
"""

from __future__ import annotations

import pytest
import torch

from distill.losses import drop_teachers
from tests.distill.e2e import scalars, tiny_setup

STEPS = 8


def test_trainer_drops_the_teachers_drop_teachers_names(tmp_path, monkeypatch):
    from distill.config import load_config
    from distill.train import build_recipe, run

    monkeypatch.chdir(tmp_path)
    cfg = load_config(tiny_setup(tmp_path, n_pairs=64, max_steps=STEPS, **{
        "run.seed": 3, "loss.teacher_drop": 0.5, "loss.target_norm": "standardize",
        "loss.terms": {"cosine": 1.0, "infonce": 0.25}, "curriculum.pacing": "none",
        "train.eval_every": STEPS, "train.save_every": STEPS, "logging.image_every": 0,
        "logging.histogram_every": 0}))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        r = build_recipe(cfg)
        # standardize needs per-dimension stds, the others one scalar.
        loss = r.accelerator.unwrap_model(r.model).loss
        assert loss._stats(0).std.ndim == 1 and loss._stats(0).std.shape == loss._stats(0).mean.shape
        assert run(r, lambda: False) == 0
        r.accelerator.end_training()
    finally:
        torch.set_num_threads(threads)
    names, weights = ["bert-mean", "bert-cls"], {"bert-mean": 1.0, "bert-cls": 0.5}
    logged = {n: scalars(cfg.run_dir, f"teacher_weight/{n}") for n in names}
    dropped_somewhere = set()
    for step in range(STEPS):  # the weights of step s are logged at s + 1
        ramp = drop_teachers(names, weights, {}, 0.5, 3, step)
        kept = {n: weights[n] for n in names if ramp.get(n, 1.0) > 0}
        for n in names:
            want = kept.get(n, 0.0) / sum(kept.values())
            assert logged[n][step + 1] == pytest.approx(want), (step, n)
        dropped_somewhere |= set(names) - set(kept)
    assert dropped_somewhere == set(names)  # the pattern drops each teacher at least once in 8 steps
