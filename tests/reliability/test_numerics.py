"""Numerics: a non-finite loss or gradient is caught, the step skipped and counted; a run of them
stops training (exit 1, one clear message) with the last good checkpoint intact -- intact
meaning a resume from it reproduces the uninterrupted run's losses exactly."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from distill.checkpoint import list_checkpoints, read_latest, verify_checkpoint
from tests.distill.e2e import distill_cmd, run, scalars
from tests.faults import fault_env, faulty_build
from tests.reliability.conftest import MAX_STEPS, THREADS, assert_losses_match, resumed_step, train_args

pytestmark = pytest.mark.slow


def test_run_of_nonfinite_losses_stops_with_last_good_checkpoint_intact(baseline):
    b = baseline
    run_dir = b.run_dir_of("diverged")
    # Loop steps 5, 6, 7 (0-based) give NaN: logged steps 6, 7, 8; the third in a row stops.
    r = run(distill_cmd(*train_args(b, "diverged", "train.max_nonfinite=3")), cwd=b.root,
            env={**THREADS, **fault_env("nan_steps=5,6,7")})
    assert r.returncode == 1, r.stderr[-3000:]
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: 3 consecutive non-finite losses/gradients at step 8 (train.max_nonfinite=3); stopped. "
        f"The last good checkpoint in {run_dir / 'checkpoints'} is intact; lower optim.lr or check the data."
    ], r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert r.stderr.count("non-finite loss or gradient") == 3  # each skipped step is reported
    # Nothing was saved after the last finite step; the step-4 checkpoint verifies.
    assert [c.name for c in list_checkpoints(run_dir)] == ["step_00000004"]
    assert read_latest(run_dir) == "step_00000004"
    verify_checkpoint(run_dir / "checkpoints" / "step_00000004")
    assert not (run_dir / "student").exists()
    nonfinite = scalars(run_dir, "train/nonfinite_steps")
    # (the stopping step itself is not logged: the trainer raises before its log call)
    assert (nonfinite[5], nonfinite[6], nonfinite[7]) == (0, 1, 2)

    # Intact means: resuming from it (the fault gone) gives exactly the uninterrupted losses.
    r = run(distill_cmd(*train_args(b, "diverged", "train.max_nonfinite=3", resume=True)), cwd=b.root, env=THREADS)
    assert r.returncode == 0, r.stderr[-3000:]
    assert resumed_step(r.stderr) == 4
    assert_losses_match(run_dir, b, range(5, MAX_STEPS + 1))


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_isolated_nonfinite_loss_and_gradient_are_skipped_and_counted(baseline, monkeypatch, capsys, one_thread):
    """In process: the loss of loop step 2 is NaN (a faulty loss from tests/faults.py), and at loop step 6 the loss is
    finite but one gradient is +inf (injected just before clipping). Both steps are skipped,
    counted, and training finishes with finite weights."""
    import accelerate

    from distill import cli

    original = accelerate.Accelerator.clip_grad_norm_
    calls = {"n": 0}

    def poisoned_clip(self, parameters, max_norm, norm_type=2):
        parameters = list(parameters)
        if calls["n"] == 6:
            p = next(p for p in parameters if p.grad is not None)
            p.grad.view(-1)[0] = float("inf")
        calls["n"] += 1
        return original(self, parameters, max_norm, norm_type)

    monkeypatch.setattr(accelerate.Accelerator, "clip_grad_norm_", poisoned_clip)
    monkeypatch.setattr("distill.train.build_recipe", faulty_build("nan_steps=2"))
    monkeypatch.chdir(baseline.root)
    run_dir = baseline.run_dir_of("blips")
    rc = cli.main(train_args(baseline, "blips"))
    err = capsys.readouterr().err
    assert rc == 0, err[-3000:]
    assert calls["n"] == MAX_STEPS
    losses = scalars(run_dir, "loss/total")
    assert math.isnan(losses[3])  # the NaN-loss step is logged as such ...
    assert all(math.isfinite(v) for s, v in losses.items() if s != 3)  # ... the inf-gradient one had a finite loss
    grad_norm = scalars(run_dir, "train/grad_norm")
    assert math.isinf(grad_norm[7]) or math.isnan(grad_norm[7])
    counts = scalars(run_dir, "train/nonfinite_steps")
    assert (counts[2], counts[3], counts[6], counts[7], counts[MAX_STEPS]) == (0, 1, 1, 2, 2)
    assert json.loads((run_dir / "eval.json").read_text())["nonfinite_steps"] == 2
    weights = load_file(str(run_dir / "student" / "student.safetensors"))
    assert weights and all(torch.isfinite(t).all() for t in weights.values())
    for ck in list_checkpoints(run_dir):
        verify_checkpoint(ck)
        state = load_file(str(ck / "accelerate" / "model.safetensors"))
        assert all(torch.isfinite(t).all() for t in state.values()), ck.name
