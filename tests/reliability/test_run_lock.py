"""One writer per run: the run-directory lock of ``distill train`` (distill/runlock.py).

Real processes for the races: a second ``distill train`` started while the first is still
computing its targets (before the run directory exists), and a ``--resume`` while it trains, both
exit 2 with the holder's pid and write nothing; a 2-process job refused by a held lock ends on
every rank at once. In-process for the exit paths: the lock is gone after success, a bad-input
error and KeyboardInterrupt; a dead holder's lock is taken over (logged); a holder on another host
is named with the file to delete.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distill.config import load_config
from distill.data import DataError
from distill.errors import RunDirError
from distill.runlock import RunLocked, lock_path
from distill.train import Components, train
from fileio import hostname
from tests.distill.e2e import accelerate_cmd, distill_cmd, free_port, run, tiny_setup
from tests.reliability.conftest import THREADS, finish, start, wait_for

EXIT_PREEMPTED = 75
QUIET = {"logging.image_every": 0, "logging.histogram_every": 0, "logging.tensorboard": True}


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Path:
    """A tiny run config (its store filled by the first run that needs it)."""
    root = tmp_path_factory.mktemp("runlock")
    tiny_setup(root, max_steps=4, **QUIET, **{"train.eval_every": 4})
    return root


def cfg_of(root: Path, name: str, **overrides):
    sets = [f"run.name={name}"] + [f"{k}={v}" for k, v in overrides.items()]
    return load_config(root / "run.yaml", sets)


def sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])


def plant_lock(run_dir: Path, host: str, pid: int, started: str = "2030-01-01T00:00:00+00:00") -> Path:
    path = lock_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"host": host, "pid": pid, "started": started, "what": "distill train"}))
    return path


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.mark.slow
def test_second_train_and_resume_while_the_first_runs_exit_2_and_write_nothing(setup, tmp_path):
    """The first run holds the lock from its very start: a second run started as soon as the lock
    appears (the first is loading teachers and computing targets, before the run directory exists,
    so the "already exists" check alone would pass) and a --resume while it trains are refused
    with who holds the run, and leave no trace in it."""
    name = "busy"
    run_dir = setup / "runs" / name
    args = ["train", str(setup / "run.yaml"), "--set", f"run.name={name}", "train.max_steps=100000",
            "train.save_every=100000", "train.eval_every=100000"]
    first = start(args, setup, tmp_path / "first.log")
    try:
        wait_for(lock_path(run_dir).exists, first, timeout=120, what="the first run's lock")
        second = subprocess.Popen(distill_cmd(*args), cwd=setup, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env={**os.environ, **THREADS})
        wait_for(lambda: list(run_dir.glob("events.out.tfevents.*")), first, timeout=180,
                 what="the first run's training")
        resume = run(distill_cmd(*args, "--resume"), cwd=setup, env=THREADS, timeout=180)
        _, err2 = second.communicate(timeout=180)
        for r, err in ((second, err2), (resume, resume.stderr)):
            assert r.returncode == 2, err[-2000:]
            lines = [line for line in err.splitlines() if line.startswith("error:")]
            assert len(lines) == 1, err[-2000:]
            assert re.fullmatch(rf"error: run directory {re.escape(str(run_dir))} is in use by pid {first.pid} on "
                                rf"{re.escape(hostname())} since \S+ \(distill train .*\): wait for it to end or "
                                r"stop it \(--resume continues the run afterwards\)", lines[0]), lines[0]
            assert "Traceback" not in err
        assert first.poll() is None  # untouched by either
        # Only the first run wrote: one event file, no second config, no checkpoint.
        assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1
        assert not (run_dir / "checkpoints").exists()
        first.send_signal(signal.SIGTERM)
        assert finish(first, timeout=120) == EXIT_PREEMPTED
    finally:
        if first.poll() is None:
            first.kill()
            finish(first)
    assert not lock_path(run_dir).exists()  # released on the pre-emption exit


@pytest.mark.slow
def test_a_held_lock_ends_every_rank_of_a_2_process_job(setup, tmp_path):
    """Rank 0 finds the lock held by a live process and tells the others (one broadcast): both
    ranks exit 2 at once instead of rank 1 waiting in a collective for a rank that left."""
    name = "twoproc"
    run_dir = setup / "runs" / name
    holder = sleeper()
    try:
        plant_lock(run_dir, hostname(), holder.pid)
        t0 = time.monotonic()
        r = run(accelerate_cmd(2, "train", str(setup / "run.yaml"), "--set", f"run.name={name}", port=free_port()),
                cwd=setup, env=THREADS, timeout=240)
        secs = time.monotonic() - t0
    finally:
        holder.kill()
        holder.wait()
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert secs < 120, secs
    assert out.count(f"is in use by pid {holder.pid} on {hostname()}") == 2, out[-3000:]  # each rank says why
    assert "exitcode  : 2" in out  # torchrun's report: the ranks exited 2, not killed by a timeout
    assert "SIGABRT" not in out  # the ranks tore their process group down together
    assert not run_dir.exists()
    assert json.loads(lock_path(run_dir).read_text())["pid"] == holder.pid  # the holder's lock, untouched


def test_lock_is_released_after_success_and_a_dead_holder_is_taken_over(setup, caplog):
    cfg = cfg_of(setup, "stale", **{"train.max_steps": 2})
    pid = dead_pid()
    plant_lock(cfg.run_dir, hostname(), pid)
    with caplog.at_level(logging.WARNING, logger="distill.runlock"):
        assert train(cfg) == 0
    assert f"its holder (pid {pid} on {hostname()}, since 2030-01-01T00:00:00+00:00) is gone; taking it over" \
        in caplog.text
    assert (cfg.run_dir / "eval.json").is_file()
    assert not lock_path(cfg.run_dir).exists()


def test_lock_is_released_after_bad_input_and_keyboard_interrupt(setup):
    cfg = cfg_of(setup, "errors")
    cfg.run_dir.mkdir(parents=True)
    (cfg.run_dir / "config.yaml").write_text("x")
    with pytest.raises(RunDirError, match="already exists"):  # checked under the lock
        train(cfg)
    assert not lock_path(cfg.run_dir).exists()

    # Bad data found after the lock was taken: no lock file, and no output directory made for it.
    (setup / "empty.jsonl").write_text("")
    cfg = cfg_of(setup, "bad-data", **{"run.output_dir": str(setup / "fresh" / "runs"),
                                       "data.path": str(setup / "empty.jsonl")})
    with pytest.raises(DataError):
        train(cfg)
    assert not (setup / "fresh").exists()

    def interrupted(r):
        raise KeyboardInterrupt

    cfg = cfg_of(setup, "interrupted")
    with pytest.raises(KeyboardInterrupt):
        train(cfg, components=Components(student=interrupted))
    assert not lock_path(cfg.run_dir).exists()


def test_a_holder_on_another_host_is_named_with_the_file_to_delete(setup):
    cfg = cfg_of(setup, "elsewhere")
    path = plant_lock(cfg.run_dir, "node-17", 4242)
    with pytest.raises(RunLocked) as err:
        train(cfg)
    assert str(err.value) == (
        f"run directory {cfg.run_dir} is in use by pid 4242 on node-17 since 2030-01-01T00:00:00+00:00 "
        "(distill train): wait for it to end or stop it (--resume continues the run afterwards); "
        f"if that process is gone, delete {path}")
    assert not cfg.run_dir.exists()
    assert json.loads(path.read_text())["host"] == "node-17"  # not taken over: nobody here knows if it lives
