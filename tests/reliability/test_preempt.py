"""Pre-emption: SIGTERM makes the trainer finish the step, checkpoint, and exit 75.

The signal is sent while the step-4 checkpoint is being written (held open by the test hook), the
worst moment: that write must still complete, the next step boundary (5) must save again, and
a resume from step 5 must reproduce the uninterrupted losses. While the run is alive we also
look at its sockets: a single-process training run listens on no network port.
"""

from __future__ import annotations

import json
import signal
import time

import pytest

from distill.checkpoint import list_checkpoints, read_latest, verify_checkpoint
from tests.distill.e2e import distill_cmd, run
from tests.faults import fault_env
from tests.reliability.conftest import (
    MAX_STEPS,
    THREADS,
    assert_losses_match,
    finish,
    listening_ports,
    resumed_step,
    start,
    train_args,
    wait_for,
)

pytestmark = pytest.mark.slow
EXIT_PREEMPTED = 75


@pytest.fixture(scope="module")
def preempted(baseline, tmp_path_factory):
    b = baseline
    logs = tmp_path_factory.mktemp("preempt-logs")
    name = "preempted"
    cks = b.run_dir_of(name) / "checkpoints"
    p = start(train_args(b, name), b.root, logs / "run.log", env=fault_env("ckpt_pause=4:3"))
    ports = []
    try:
        wait_for(lambda: (cks / ".tmp-step_00000004" / "accelerate").is_dir(), p, what="the step-4 write")
        ports += listening_ports(p.pid)  # mid-run: model, optimizer, TensorBoard writer all live
        p.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        ports += listening_ports(p.pid)
    finally:
        rc = finish(p)
    out = (logs / "run.log").read_text()
    return {"rc": rc, "out": out, "ports": ports, "run_dir": b.run_dir_of(name), "logs": logs}


def test_sigterm_mid_write_saves_at_next_boundary_and_exits_75(preempted):
    out, run_dir = preempted["out"], preempted["run_dir"]
    assert preempted["rc"] == EXIT_PREEMPTED, out[-3000:]
    assert "Traceback" not in out
    assert "SIGTERM: saving a checkpoint at the next step boundary" in out
    assert "pre-empted: checkpoint saved at step 5; resume with --resume" in out
    # The interrupted step-4 write completed; step 5 was saved; `latest` names step 5.
    assert [c.name for c in list_checkpoints(run_dir)] == ["step_00000005", "step_00000004"]
    assert read_latest(run_dir) == "step_00000005"
    for ck in list_checkpoints(run_dir):
        verify_checkpoint(ck)
    state = json.loads((run_dir / "checkpoints" / "step_00000005" / "trainer_state.json").read_text())
    assert state["loop"]["step"] == 5
    # A pre-empted run is not finished: no export, no final evaluation.
    assert not (run_dir / "student").exists() and not (run_dir / "eval.json").exists()


def test_resume_after_preemption_reproduces_uninterrupted_losses(preempted, baseline):
    run_dir = preempted["run_dir"]
    r = run(distill_cmd(*train_args(baseline, "preempted", resume=True)), cwd=baseline.root, env=THREADS)
    assert r.returncode == 0, r.stderr[-3000:]
    assert resumed_step(r.stderr) == 5
    assert_losses_match(run_dir, baseline, range(1, MAX_STEPS + 1))
    assert (run_dir / "student" / "student.json").is_file()


def test_training_listens_on_no_network_port(preempted):
    # Nothing in a single-process run (Accelerate, TensorBoard writer, teachers) may open a
    # listening socket: only what the user starts (tensorboard, a multi-node rendezvous) listens.
    assert preempted["ports"] == []


def test_port_probe_sees_a_listening_socket(tmp_path):
    # The probe above must be able to fail: a process that does listen is seen.
    import subprocess
    import sys

    code = "import socket, time; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); print(1, flush=True); time.sleep(60)"
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "1"
        found = listening_ports(p.pid)
    finally:
        p.kill()
        p.wait()
    assert len(found) == 1 and found[0].startswith("tcp 0100007F:"), found
