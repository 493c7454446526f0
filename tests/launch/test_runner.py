"""launch.runner with small shell commands standing in for accelerate: the exit status a launch
reports (its ranks' common status: 75 only when every reporting rank exited 75), and a SIGKILLed launcher's children being
told to stop (PR_SET_PDEATHSIG) instead of running on, orphaned."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from launch.runner import run_parallel, run_sequence


def ranks(*statuses: int, exit_code: int = 1, after_s: float = 0) -> list[str]:
    """A command whose ranks report these statuses (``after_s`` seconds in), then exits as
    torchrun does after a failure."""
    steps = [f"sleep {after_s}"] + [f'echo {s} > "$DISTILL_STATUS_DIR/rank-{i}"' for i, s in enumerate(statuses)]
    return ["bash", "-c", "; ".join([*steps, f"exit {exit_code}"])]


@pytest.mark.parametrize("commands, expected", [
    ([ranks(75, 75)], 75),  # every rank checkpointed and exited 75: torchrun's 1 becomes 75
    ([ranks(75, 1)], 1),  # one rank failed otherwise: the launch failed
    ([ranks(2, 2)], 2),  # every rank refused bad input: 2, as distill train
    ([ranks(0, exit_code=1)], 1),  # a rank that finished does not hide one that crashed unreported
    ([ranks(exit_code=1)], 1),  # nobody reported (killed ranks): torchrun's own status
    ([ranks(0, 0, exit_code=0)], 0),
    ([ranks(75, 75), ranks(75, exit_code=143)], 75),  # several launchers, all pre-empted
    # The first failure decides; the launchers stopped because of it do not.
    ([ranks(75, 75, after_s=2), ranks(exit_code=7)], 7),
    ([ranks(75, 75), ranks(exit_code=7, after_s=2)], 75),
])
def test_exit_status_maps_reported_75(commands, expected):
    assert run_parallel(commands) == expected


def test_a_sequence_stops_at_a_preempted_phase(tmp_path):
    marker = tmp_path / "second-phase-ran"
    assert run_sequence([ranks(75), ["touch", str(marker)]]) == 75
    assert not marker.exists()


LAUNCHER = """
import sys
from launch.runner import run_parallel
sys.exit(run_parallel([["bash", "-c", sys.argv[1]]]))
"""


def test_children_are_stopped_when_the_launcher_is_killed(tmp_path):
    """SIGKILL gives the launcher no chance to pass anything on: the kernel sends its children
    SIGTERM (torchrun passes it to the trainers, which checkpoint)."""
    got, pid_file = tmp_path / "got-term", tmp_path / "pid"
    child = (f'trap "echo term > {got}; exit 0" TERM; echo $$ > {pid_file}; sleep 60 & wait')
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, child], env=dict(os.environ))
    try:
        deadline = time.monotonic() + 30
        while not pid_file.exists() or not pid_file.read_text().strip():
            assert time.monotonic() < deadline and launcher.poll() is None
            time.sleep(0.05)
        launcher.send_signal(signal.SIGKILL)
        launcher.wait()
        deadline = time.monotonic() + 10
        # `echo term > got` creates the file before it writes: wait for the word, not the file.
        while not (got.exists() and got.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert got.read_text().strip() == "term"
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass


def test_python_m_distill_reports_its_exit_status(tmp_path):
    """What each rank leaves for the launcher: its exit status, under its global rank."""
    r = subprocess.run([sys.executable, "-m", "distill", "train", "nope.yaml"], cwd=tmp_path, capture_output=True,
                       text=True, env=dict(os.environ, DISTILL_STATUS_DIR=str(tmp_path), RANK="3"), timeout=120)
    assert r.returncode == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rank-3"]
    assert (tmp_path / "rank-3").read_text() == "2\n"
