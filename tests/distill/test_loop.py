"""The training loop's pieces in process (fast): a step, an evaluation and its decisions, a
save/resume round trip, a non-finite step. The end-to-end behaviour is in test_train.py and
tests/reliability/ (real processes); these catch a broken component in seconds."""

from __future__ import annotations

import pytest
import torch

from distill.config import load_config
from distill.state import EvalPolicy, TrainState
from distill.train import build_recipe
from tests.distill.e2e import tiny_setup
from tests.faults import faulty_components

FAST = {"logging.image_every": 0, "logging.histogram_every": 0, "logging.tensorboard": False,
        "train.eval_every": 2, "train.save_every": 2}


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_config(tiny_setup(tmp_path, n_pairs=64, max_steps=4, **FAST))
    torch.set_num_threads(threads)


def params(r) -> list[torch.Tensor]:
    return [p.detach().clone() for p in r.model.parameters()]


def test_a_step_moves_the_weights_and_the_state(cfg):
    r = build_recipe(cfg)
    before = params(r)
    assert r.train_step(r.sampler.next_batch(), preempted=False) is False
    assert r.state.step == 1 and r.sampler.step == 1 and r.state.nonfinite_total == 0
    assert any(not torch.equal(a, b) for a, b in zip(before, params(r)))
    assert r.scheduler.last_epoch == 1
    # The pre-emption flag travels with the step's collective.
    assert r.train_step(r.sampler.next_batch(), preempted=True) is True


def test_untrained_residual_student_evaluates_as_the_identity_baseline(cfg):
    r = build_recipe(cfg)
    res = r.evaluate()
    assert set(res) == {"bert-mean", "bert-cls"}
    assert set(res["bert-mean"]) == {"student", "identity", "ridge"}
    # Residual + zero-initialised head and skip: the input teacher's prediction is the question.
    assert res["bert-mean"]["student"] == pytest.approx(res["bert-mean"]["identity"], abs=1e-6)
    assert r.metric(res) == res["bert-mean"]["student"]["cosine"]  # eval.metric: cosine


def test_eval_policy_best_plateau_and_early_stopping():
    s = TrainState()
    p = EvalPolicy(s, "plateau", plateau_patience=2, plateau_factor=0.5, early_stopping_patience=3)
    s.step = 10
    assert p.on_eval(0.5) is False and (s.best_metric, s.best_step) == (0.5, 10)
    s.step = 20
    assert p.on_eval(0.4) is False and s.bad_evals == 1 and s.plateau_factor == 1.0
    assert p.on_eval(0.5) is False and s.bad_evals == 2 and s.plateau_factor == 0.5  # equal is no gain
    assert p.on_eval(0.45) is True and s.best_step == 10
    restored = TrainState()
    restored.load_state_dict({**s.state_dict(), "plateau_bad": 7})  # an old checkpoint's extra key
    assert restored == s


def test_save_then_resume_continues_the_same_trajectory(cfg):
    r = build_recipe(cfg)
    for _ in range(2):
        r.train_step(r.sampler.next_batch(), preempted=False)
    r.save()
    r.train_step(r.sampler.next_batch(), preempted=False)
    uninterrupted = params(r)

    again = build_recipe(cfg, resume=True)
    assert again.state.step == 2 and again.sampler.step == 2
    assert again.scheduler.last_epoch == 2
    again.train_step(again.sampler.next_batch(), preempted=False)
    for a, b in zip(uninterrupted, params(again)):
        assert torch.allclose(a, b, atol=1e-7)


def test_a_nonfinite_step_is_skipped_and_counted(cfg):
    from distill import train as t

    r = t.build_recipe(cfg, components=faulty_components({"nan_steps": {0}}))
    before = params(r)
    r.train_step(r.sampler.next_batch(), preempted=False)
    assert (r.state.step, r.state.nonfinite_total, r.state.nonfinite_run) == (1, 1, 1)
    assert all(torch.equal(a, b) for a, b in zip(before, params(r)))  # nothing applied
    r.train_step(r.sampler.next_batch(), preempted=False)
    assert (r.state.nonfinite_total, r.state.nonfinite_run) == (1, 0)
    assert all(torch.isfinite(p).all() for p in params(r))
