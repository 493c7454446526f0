"""Shared pieces of the reliability tests: one trained baseline run per session, process helpers.

Every training process here runs with one intra-op thread: the machine has 2 shared cores, where
more threads only contend, and a fixed thread count keeps float reductions in the same order, so
a resumed run can be compared with the baseline to 1e-6.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.distill.e2e import distill_cmd, run, scalars, tiny_setup

THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# The tiny end-to-end config without images/histograms and with one evaluation (at the end):
# the tests here are about state, and every saved second is a second of a 2-core budget.
FAST = {"logging.image_every": 0, "logging.histogram_every": 0, "train.eval_every": 12}
MAX_STEPS = 12  # checkpoints at 4, 8, 12 (save_every=4, keep_last=5)


@dataclass
class Baseline:
    root: Path
    config: Path
    run_dir: Path
    losses: dict[int, float]

    def run_dir_of(self, name: str) -> Path:
        return self.root / "runs" / name


@pytest.fixture(scope="session")
def baseline(tmp_path_factory) -> Baseline:
    """An uninterrupted 12-step run: the losses every interrupted run must reproduce.

    Its root also holds the tiny teacher, the pairs and the target store that the other runs of
    this directory share (they read the store; any test that damages state works on a copy).
    """
    root = tmp_path_factory.mktemp("reliability")
    cfg = tiny_setup(root, max_steps=MAX_STEPS, **FAST)
    r = run(distill_cmd("train", str(cfg)), cwd=root, env=THREADS)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    run_dir = root / "runs" / "tiny"
    losses = scalars(run_dir, "loss/total")
    assert sorted(losses) == list(range(1, MAX_STEPS + 1))
    return Baseline(root, cfg, run_dir, losses)


def train_args(b: Baseline, name: str, *extra: str, resume: bool = False) -> list[str]:
    args = ["train", str(b.config), "--set", f"run.name={name}", *extra]
    return args + (["--resume"] if resume else [])


def start(args: list[str], cwd: Path, log: Path, env: dict | None = None) -> subprocess.Popen:
    """Start `python -m distill ARGS` with stdout+stderr to a file (a pipe could fill and block)."""
    e = dict(os.environ)
    e.update(THREADS)
    e.update(env or {})
    f = open(log, "w")  # noqa: SIM115 (closed when the process is reaped, see finish)
    p = subprocess.Popen(distill_cmd(*args), cwd=cwd, stdout=f, stderr=subprocess.STDOUT, env=e)
    p.log_file = f  # type: ignore[attr-defined]
    return p


def finish(p: subprocess.Popen, timeout: float = 300) -> int:
    try:
        rc = p.wait(timeout=timeout)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.log_file.close()  # type: ignore[attr-defined]
    return rc


def wait_for(pred, p: subprocess.Popen, timeout: float = 240, what: str = "condition",
             poll: float = 0.005, exit_ok: bool = False) -> bool:
    """Poll ``pred`` every few ms until it holds (True). If the process ends first: False with
    ``exit_ok``, else fail."""
    deadline = time.monotonic() + timeout
    while not pred():
        if p.poll() is not None:
            if exit_ok:
                return False
            raise AssertionError(f"process exited ({p.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(poll)
    return True


def resumed_step(output: str) -> int | None:
    """The step a run says it resumed from (None: it started fresh)."""
    m = re.search(r"resumed from \S+ \(step (\d+)\)", output)
    return int(m.group(1)) if m else None


def assert_losses_match(run_dir: Path, b: Baseline, steps) -> None:
    got = scalars(run_dir, "loss/total")
    for s in steps:
        assert s in got, f"step {s} was never logged (logged: {sorted(got)})"
        assert got[s] == pytest.approx(b.losses[s], abs=1e-6), (s, got[s], b.losses[s])


def listening_ports(pid: int) -> list[str]:
    """TCP sockets in LISTEN state and bound UDP sockets held by ``pid`` or its descendants.

    Sockets are matched by inode: /proc/<pid>/fd/* -> socket:[inode] against /proc/net/{tcp,udp}*.
    """
    pids, todo = set(), [pid]
    while todo:
        q = todo.pop()
        if q in pids:
            continue
        pids.add(q)
        for task in Path(f"/proc/{q}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    inodes = set()
    for q in pids:
        for fd in Path(f"/proc/{q}/fd").glob("*"):
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = []
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        try:
            lines = Path(f"/proc/net/{proto}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            local, state, inode = cols[1], cols[3], cols[9]
            listening = state == "0A" if proto.startswith("tcp") else True
            if inode in inodes and listening:
                found.append(f"{proto} {local}")
    return found
