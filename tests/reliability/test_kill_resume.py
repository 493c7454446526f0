"""SIGKILL a training run mid-checkpoint-write and at random moments, then --resume.

What must hold: a partial checkpoint (``.tmp-step_*``) is never loaded and is cleaned up, each
resume starts from the checkpoint the ``latest`` pointer named when the process died, and the
losses of every step equal those of the uninterrupted baseline run with the same seed.

The random kill delays come from RELIABILITY_SEED (printed on failure) so a failing sequence
can be replayed.
"""

from __future__ import annotations

import os
import random
import time

import pytest

from distill.checkpoint import find_resume_checkpoint, list_checkpoints, read_latest, verify_checkpoint
from tests.faults import fault_env
from tests.reliability.conftest import (
    MAX_STEPS,
    assert_losses_match,
    finish,
    resumed_step,
    start,
    train_args,
    wait_for,
)

pytestmark = pytest.mark.slow
SEED = int(os.environ.get("RELIABILITY_SEED", time.time_ns() % 1_000_000))


def test_sigkill_mid_write_and_at_random_moments_resumes_to_identical_losses(baseline, tmp_path):
    b = baseline
    name = "killed"
    run_dir = b.run_dir_of(name)
    cks = run_dir / "checkpoints"
    tmp8 = cks / ".tmp-step_00000008"

    # 1. Kill inside the step-8 write. A faulty checkpointer (tests/faults.py) holds the write open (files in the
    #    temporary directory, no manifest yet) so the kill lands there every time.
    p = start(train_args(b, name), b.root, tmp_path / "first.log", env=fault_env("ckpt_pause=8:120"))
    wait_for(lambda: (tmp8 / "accelerate" / "random_states_0.pkl").exists(), p, what="the step-8 write")
    p.kill()
    assert finish(p) == -9
    assert tmp8.is_dir() and not (tmp8 / "manifest.json").exists(), "the kill should leave a partial write"
    # The pointer never moved to the unfinished checkpoint; the partial one is not a candidate.
    assert read_latest(run_dir) == "step_00000004"
    assert [c.name for c in list_checkpoints(run_dir)] == ["step_00000004"]
    assert find_resume_checkpoint(run_dir).name == "step_00000004"

    # 2. Resume, and kill the resumed process at a random moment: first a random delay once it
    #    is training, then a random few ms after it starts its next checkpoint write (racing
    #    the write, no hook). Then resume to the end. Every resume must start from what
    #    `latest` named when the previous process died.
    rng = random.Random(SEED)
    history = []
    rc = None
    for attempt in ("random delay", "racing a write", "to the end"):
        log = tmp_path / f"resume-{attempt.replace(' ', '-')}.log"
        pointer = read_latest(run_dir)
        p = start(train_args(b, name, resume=True), b.root, log)
        delay = None
        # (A process that finishes before its moment comes -- e.g. resumed from the last
        # checkpoint, with no write left to race -- is simply not killed.)
        if attempt == "random delay":
            if wait_for(lambda log=log: "resumed from" in log.read_text(), p, exit_ok=True):
                delay = rng.uniform(0.0, 1.0)
        elif attempt == "racing a write":
            if wait_for(lambda log=log: "Saving current state" in log.read_text(), p, exit_ok=True):
                delay = rng.uniform(0.0, 0.05)
        if delay is not None:
            time.sleep(delay)
            p.kill()
        rc = finish(p)
        out = log.read_text()
        history.append((attempt, pointer, round(delay, 3) if delay is not None else None, rc))
        assert "Traceback" not in out, (SEED, history, out[-3000:])
        assert resumed_step(out) == int(pointer.removeprefix("step_")), (SEED, history, out[-2000:])
        assert rc in (0, -9), (SEED, history, out[-3000:])
    assert rc == 0, (SEED, history)
    print("kill history (seed; attempt, resumed from, delay, rc):", SEED, history)

    # Every step's loss (the last process to log a step wins) equals the uninterrupted run's.
    assert_losses_match(run_dir, b, range(1, MAX_STEPS + 1))
    # The partial write was cleaned up by the next save; every checkpoint left verifies.
    assert not [p.name for p in cks.iterdir() if p.name.startswith(".tmp-")], (SEED, history)
    assert read_latest(run_dir) == f"step_{MAX_STEPS:08d}"
    for ck in list_checkpoints(run_dir):
        verify_checkpoint(ck)
    assert (run_dir / "student" / "student.json").is_file() and (run_dir / "eval.json").is_file()
