"""Real multi-process launches on this machine (gloo on CPU): 2 local processes, two "nodes" on
127.0.0.1, and failures (a rank that dies, a node that never comes) that must end the job with a
non-zero status in bounded time instead of hanging."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.faults import fault_env
from tests.launch.conftest import free_port, launch_cmd, run_launch

pytestmark = pytest.mark.slow


def trainer_state(run_dir: Path) -> dict:
    (ck,) = sorted((run_dir / "checkpoints").glob("step_*"))
    return json.loads((ck / "trainer_state.json").read_text())


def start_nodes(cwd: Path, config: Path, *extra: str, env: dict | None = None, timeout_s: int = 60):
    """Two launchers, node rank 0 and 1, one process each, rendezvous on 127.0.0.1."""
    port = free_port()
    e = dict(os.environ, LOGLEVEL="INFO", **(env or {}))  # LOGLEVEL: torchrun logs the rendezvous result
    procs = []
    for rank in (0, 1):
        args = [str(config), "--cpu", "--nodes", "2", "--node-rank", str(rank), "--procs-per-node", "1",
                "--main-addr", "127.0.0.1", "--main-port", str(port), "--timeout", str(timeout_s), *extra]
        procs.append(subprocess.Popen(launch_cmd(*args), cwd=cwd, env=e, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    return procs


def descendants(pid: int) -> dict[int, bytes]:
    """Every process below ``pid`` (the launcher's commands, torchrun's ranks), with its cmdline."""
    parent, cmd = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmd[int(stat.parent.name)] = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
    found, frontier = {}, [pid]
    while frontier:
        p = frontier.pop()
        for child, ppid in parent.items():
            if ppid == p and child not in found:
                found[child] = cmd.get(child, b"")
                frontier.append(child)
    return found


def is_rank(cmdline: bytes) -> bool:
    """``python [-opts] -m distill embed|train ...``: a rank, not the ``accelerate``/torchrun
    process whose arguments also hold ``-m distill train`` (SIGUSR1 would end those)."""
    args = cmdline.split(b"\0")
    if b"-m" not in args:
        return False
    i = args.index(b"-m")
    return all(a.startswith(b"-") for a in args[1:i]) and args[i + 1:i + 3] in ([b"distill", b"embed"],
                                                                               [b"distill", b"train"])


def wait_all(procs, timeout: float) -> list[tuple[int, str]]:
    """Every launcher's (status, output). One still running at ``timeout`` fails the test with
    each node's output, including the Python stacks of its ranks (``python -m distill`` dumps
    them on SIGUSR1), so that a hang says where it waited."""
    outputs = [[] for _ in procs]
    readers = [threading.Thread(target=lambda p=p, o=o: o.extend(p.stdout), daemon=True)
               for p, o in zip(procs, outputs)]
    for r in readers:
        r.start()
    deadline = time.monotonic() + timeout
    hung = []
    try:
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=max(1.0, deadline - time.monotonic()))
        hung = [rank for rank, p in enumerate(procs) if p.poll() is None]
        if hung:
            for p in procs:
                for pid, cmd in descendants(p.pid).items():
                    if is_rank(cmd):
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGUSR1)
            time.sleep(3)
    finally:
        for p in procs:
            if p.poll() is None:  # only a launcher not yet reaped: its PID is still its own
                for pid in [*descendants(p.pid), p.pid]:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
    codes = [p.wait() for p in procs]
    for r in readers:
        r.join(timeout=10)
    out = [(code, "".join(o)) for code, o in zip(codes, outputs)]
    if hung:
        pytest.fail(f"node(s) {hung} still running after {timeout:.0f} s:\n" + "\n".join(
            f"--- node {rank} (exit {code}):\n{text[-6000:]}" for rank, (code, text) in enumerate(out)))
    return out


def test_two_processes_embed_then_train(tmp_path, tiny, store_dir):
    proc, secs = run_launch([str(tiny), "--cpu", "--procs-per-node", "2"], cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "--num_processes 2 --num_machines 1 -m distill embed" in out
    assert "--num_processes 2 --num_machines 1 -m distill train" in out
    run = tmp_path / "runs" / "tiny"
    assert (run / "student" / "student.json").is_file() and (run / "eval.json").is_file()
    state = trainer_state(run)
    assert state["world_size"] == 2 and state["loop"]["step"] == 6
    spaces = list(store_dir.glob("spaces/*/space.json"))
    assert len(spaces) == 2  # the embed phase stored questions and answers of the one teacher


def test_two_nodes_on_localhost_train_one_run(tmp_path, tiny):
    procs = start_nodes(tmp_path, tiny)
    results = wait_all(procs, timeout=300)
    for rank, (code, text) in enumerate(results):
        assert code == 0, f"node {rank}:\n{text[-4000:]}"
        # torchrun's rendezvous result on this node, for each phase: 2 nodes, world size 2, our rank
        assert re.findall(r"\bgroup_rank=(\d+)", text) == [str(rank)] * 2, text[-4000:]
        assert re.findall(r"\bglobal_world_sizes=(\S+)", text) == ["[2]"] * 2
        assert f"global_ranks=[{rank}]" in text
    runs = list((tmp_path / "runs").iterdir())
    assert [p.name for p in runs] == ["tiny"]  # one run, not one per node
    run = runs[0]
    assert len(list(run.glob("events.out.tfevents.*"))) == 1
    assert (run / "student" / "student.json").is_file()
    assert trainer_state(run)["world_size"] == 2


def test_a_dying_rank_fails_the_local_job(tmp_path, tiny):
    """Rank 1 of 2 exits (os._exit(13)) at step 2: the launch exits non-zero, well before any timeout."""
    proc, secs = run_launch([str(tiny), "--cpu", "--procs-per-node", "2", "--no-embed"], cwd=tmp_path,
                            env=fault_env("rank_exit=1:2"), timeout=240)
    assert proc.returncode != 0
    assert secs < 120
    assert "exitcode  : 13" in proc.stderr  # torchrun's report names the rank that died
    assert not (tmp_path / "runs" / "tiny" / "student").exists()


def test_a_dying_rank_fails_both_nodes(tmp_path, tiny):
    """Node 1's only rank dies: node 0's rank loses its peer in a collective and both launchers
    exit non-zero; neither waits for the 60 s timeout, let alone torch's 30 min default."""
    t0 = time.monotonic()
    procs = start_nodes(tmp_path, tiny, "--no-embed", env=fault_env("rank_exit=1:2"))
    results = wait_all(procs, timeout=240)
    assert time.monotonic() - t0 < 120
    assert all(code != 0 for code, _ in results), [code for code, _ in results]
    assert "exitcode  : 13" in results[1][1]


def test_a_node_that_never_comes_fails_the_other_within_the_timeout(tmp_path, tiny):
    """Only node 0 of 2 starts: the static rendezvous gives up after --timeout, not torch's 600 s."""
    port = free_port()
    args = [str(tiny), "--cpu", "--nodes", "2", "--node-rank", "0", "--main-addr", "127.0.0.1",
            "--main-port", str(port), "--timeout", "10", "--no-embed"]
    proc, secs = run_launch(args, cwd=tmp_path, timeout=240)
    assert proc.returncode != 0
    assert secs < 90
    assert "waiting for clients. 1/2 clients joined" in proc.stderr


FROZEN_JOB = '''
import datetime, os, time
import torch, torch.distributed as dist
# What the training loop is asked to do with DISTILL_DIST_TIMEOUT_S (torch's gloo default: 30 min).
timeout = float(os.environ.get("DISTILL_DIST_TIMEOUT_S", 1800))
dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=timeout))
rank = dist.get_rank()
for step in range(10**6):
    if rank == 1 and step == 3:
        time.sleep(10**6)  # frozen: alive, connections open, never answers again
    x = torch.ones(1)
    dist.all_reduce(x)
'''


def test_a_frozen_rank_is_bounded_by_the_collective_timeout(tmp_path):
    """A standalone job through the composed command and environment: rank 1 stops answering
    (no closed connection to notice), rank 0's collective times out after --timeout seconds,
    torchrun stops the frozen rank, the launcher exits non-zero."""
    from launch.compose import Cluster, Plan, resolve_template, venv_bin

    (tmp_path / "frozen_job.py").write_text(FROZEN_JOB)
    plan = Plan(config="unused.yaml", template=str(resolve_template(None, cpu=True)),
                cluster=Cluster(procs_per_node=2, timeout_s=8), phases=("train",), cpu=True)
    (argv,) = plan.node_commands()
    i = argv.index("-m")
    argv = [str(t) for t in argv[: i + 1]] + ["frozen_job"]  # the composed launcher, our program
    env = dict(os.environ, **plan.env(), PATH=f"{venv_bin()}:{os.environ['PATH']}")
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, err = proc.communicate(timeout=150)
    finally:
        if proc.poll() is None:  # hung: take the whole tree down, then fail
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode != 0
    assert time.monotonic() - t0 < 90
    assert "Timed out" in err, err[-3000:]


def test_sigterm_to_the_launcher_checkpoints_and_exits_75(tmp_path, tiny):
    """The signal reaches the ranks through accelerate/torchrun: the loop saves a checkpoint at
    the next step boundary, every rank exits 75 and reports it, and the launcher exits 75 (not
    torchrun's 1 or 128 + SIGTERM), so a requeue with --resume continues the run."""
    args = [str(tiny), "--cpu", "--procs-per-node", "2", "--no-embed", "--", "train.max_steps=100000",
            "train.save_every=100000", "train.eval_every=100000"]
    proc = subprocess.Popen(launch_cmd(*args), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    run = tmp_path / "runs" / "tiny"
    try:
        deadline = time.monotonic() + 180
        while not list(run.glob("events.out.tfevents.*")) and time.monotonic() < deadline:
            time.sleep(0.5)  # the tracker starts just before the first step
        time.sleep(3)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 75, out[-3000:]
    assert out.count("pre-empted: checkpoint saved at step") == 2  # both ranks reached it
    assert "launch: pre-empted after a clean checkpoint (exit 75)" in out
    (ck,) = (run / "checkpoints").glob("step_*")
    assert trainer_state(run)["loop"]["step"] == int(ck.name.split("_")[1]) > 0
    assert not (tmp_path / "runs" / ".tiny.lock").exists()  # released on the way out
