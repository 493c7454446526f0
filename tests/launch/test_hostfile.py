"""Hostfile (plain SSH) launches: parsing, the exact ssh commands, and running them through a stub
``ssh`` that executes the remote command here. Each host's command is a real node launcher
(``distill launch --node-rank R``) whose ``accelerate`` is a stub (tests/launch/stub_site): success,
one failing host, a SIGTERM to the launcher (exit 75), a SIGKILLed launcher (no job outlives it)."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fileio import hostname
from launch.compose import ACCELERATE_CONFIG_DIR
from launch.hostfile import Host, parse_hostfile
from tests.launch.conftest import ROOT, launch_cmd, write_exe
from tests.launch.test_commands import launch

HOSTS = "# two GPU nodes\n\nalice@gpu-1 slots=4   # node 0\ngpu-2 slots=4\n"


def test_parse_hostfile(tmp_path):
    f = tmp_path / "hosts"
    f.write_text(HOSTS)
    assert parse_hostfile(f) == [Host("alice@gpu-1", 4), Host("gpu-2", 4)]
    assert parse_hostfile(f)[0].address == "gpu-1"


@pytest.mark.parametrize("text, needle", [
    ("a slots=4\nb slots=2\n", "hosts give different slots (2, 4)"),
    ("a slots=4\nb\n", "some hosts give slots=N and some do not"),
    ("a slots=0\n", "hosts:1: expected 'slots=N' (N >= 1) after the host, got 'slots=0'"),
    ("a gpus=4\n", "expected 'slots=N'"),
    ("a\nb\na\n", "hosts:3: host 'a' is listed twice"),
    ("# nothing\n\n", "lists no hosts"),
    ("a;rm\n", "'a;rm' is not a host name"),
])
def test_bad_hostfile_exits_2(capsys, monkeypatch, tmp_path, text, needle):
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    (tmp_path / "hosts").write_text(text)
    rc, out, err = launch(capsys, monkeypatch, "configs/default.yaml", "--hostfile", "hosts", "--dry-run",
                          cwd=tmp_path)
    assert rc == 2 and needle in err, err
    assert "ssh" not in out


def test_hostfile_with_more_nodes_than_hosts_exits_2(capsys, monkeypatch, tmp_path):
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    (tmp_path / "hosts").write_text(HOSTS)
    rc, _, err = launch(capsys, monkeypatch, "configs/default.yaml", "--hostfile", "hosts", "--nodes", "3",
                        cwd=tmp_path)
    assert rc == 2 and "3 nodes but hosts lists 2 hosts" in err


def test_dry_run_prints_one_ssh_command_per_host(capsys, monkeypatch, tmp_path):
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    (tmp_path / "hosts").write_text(HOSTS)
    rc, out, _ = launch(capsys, monkeypatch, "configs/default.yaml", "--hostfile", "hosts", "--dry-run",
                        "--main-port", "29600", "--grace", "90", "--", "train.max_steps=3", cwd=tmp_path)
    assert rc == 0
    lines = [line for line in out.splitlines() if not line.startswith("#")]
    assert len(lines) == 2
    tpl = ACCELERATE_CONFIG_DIR / "gpu_multi.yaml"
    for rank, (line, host) in enumerate(zip(lines, ["alice@gpu-1", "gpu-2"])):
        argv = shlex.split(line)
        assert argv[:-1] == ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=30", host]
        # The host runs its own node launcher, which stops its job when ssh's stdin ends.
        assert argv[-1] == (
            f"cd {tmp_path} && DISTILL_LAUNCH_STOP_ON_EOF=1 {sys.executable} -m distill launch configs/default.yaml "
            f"--nodes 2 --node-rank {rank} --procs-per-node 4 --main-addr gpu-1 --timeout 900 --grace 90 "
            f"--accelerate-config {tpl} --main-port 29600 --set train.max_steps=3")
    # ... and what that launcher runs is shown too.
    launcher = (f"DISTILL_DIST_TIMEOUT_S=900 TORCH_ELASTIC_SHUTDOWN_TIMEOUT=90 accelerate launch --config_file {tpl} "
                "--num_processes 8 --num_machines 2 --machine_rank 1 --main_process_ip gpu-1")
    assert f"#   {launcher} --main_process_port 29600 --rdzv_conf timeout=900 -m distill train configs/default.yaml " \
           "--set train.max_steps=3" in out.splitlines()


def test_hostfile_refuses_a_run_directory_in_use_or_existing(capsys, monkeypatch, tmp_path):
    """Like a local launch: nothing is started over ssh for a run that exists or that a live
    process holds."""
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    (tmp_path / "hosts").write_text(HOSTS)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    lock = tmp_path / "runs" / ".demo.lock"
    try:
        lock.parent.mkdir(parents=True)
        lock.write_text(json.dumps({"host": hostname(), "pid": holder.pid, "started": "2030-01-01T00:00:00+00:00",
                                    "what": "distill train"}))
        rc, out, err = launch(capsys, monkeypatch, "configs/default.yaml", "--hostfile", "hosts", cwd=tmp_path)
        assert rc == 2, err
        assert f"runs/demo is in use by pid {holder.pid} on " in err and "since 2030-01-01" in err
        assert "ssh" not in out
    finally:
        holder.kill()
        holder.wait()
    lock.unlink()
    (tmp_path / "runs" / "demo").mkdir()
    (tmp_path / "runs" / "demo" / "config.yaml").write_text("x")
    rc, out, err = launch(capsys, monkeypatch, "configs/default.yaml", "--hostfile", "hosts", cwd=tmp_path)
    assert rc == 2 and "already exists; pass --resume" in err
    assert "ssh" not in out


@pytest.fixture
def ssh_stub(tmp_path) -> Path:
    """``ssh [-o X]... HOST CMD`` runs CMD here with HOST set (stdin passed through, as ssh does);
    ``accelerate`` becomes a recorder that, per host and phase, succeeds, fails (exit 7, once
    another host's job waits), or waits: on SIGTERM it reports 75 for its rank, as a checkpointing
    trainer under torchrun would, and exits 1 as torchrun then does."""
    d = tmp_path / "stubs"
    d.mkdir()
    write_exe(d / "accelerate-rec", r"""#!/bin/bash
phase=$(sed -E 's/.* -m distill ([a-z]+) .*/\1/' <<< "$*")
echo "$HOST $phase $*" >> "$REC"
case "$(eval echo "\$ACT_${HOST//-/_}_$phase")" in
  fail) until [ -s "$PIDS" ] || [ $SECONDS -gt 30 ]; do sleep 0.1; done; exit 7 ;;  # once another waits
  wait) trap 'echo "$HOST term" >> "$REC"; echo 75 > "$DISTILL_STATUS_DIR/rank-$HOST"; exit 1' TERM
        echo $$ >> "$PIDS"; sleep 60 & echo $! >> "$PIDS"; wait; echo "$HOST late" >> "$REC" ;;
esac
""")
    # The remote command runs in a session of its own, as under sshd: no signal to this client
    # reaches it; it sees only its stdin end (and ssh passes its exit status back).
    write_exe(d / "ssh", '#!/bin/bash\n'
              'while [[ "$1" == -o ]]; do shift 2; done\n'
              'host=$1; shift\n'
              'HOST=$host setsid bash -c "$1" <&0 &\n'
              'wait $!\n')
    return d


def start(tmp_path: Path, stubs: Path, actions: dict[str, str]) -> subprocess.Popen:
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    (tmp_path / "hosts").write_text("h-0\nh-1 # second\n")
    pythonpath = os.pathsep.join(filter(None, [str(ROOT / "tests" / "launch" / "stub_site"),
                                               os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PATH=f"{stubs}:{os.environ['PATH']}", PYTHONPATH=pythonpath,
               STUB_ACCELERATE=str(stubs / "accelerate-rec"), REC=str(tmp_path / "rec"),
               PIDS=str(tmp_path / "pids"), **{f"ACT_{k}": v for k, v in actions.items()})
    return subprocess.Popen(launch_cmd("configs/default.yaml", "--hostfile", "hosts", "--procs-per-node", "2",
                                       "--grace", "20"),
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def records(tmp_path: Path) -> list[list[str]]:
    return [line.split() for line in (tmp_path / "rec").read_text().splitlines()]


def test_hostfile_run_starts_every_host_with_its_rank(tmp_path, ssh_stub):
    proc = start(tmp_path, ssh_stub, {})
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    rows = records(tmp_path)
    assert sorted((r[0], r[1]) for r in rows) == [("h-0", "embed"), ("h-0", "train"), ("h-1", "embed"),
                                                  ("h-1", "train")]
    for host, _phase, *argv in rows:
        assert argv[argv.index("--machine_rank") + 1] == host[-1]
        assert argv[argv.index("--main_process_ip") + 1] == "h-0"
        assert argv[argv.index("--num_processes") + 1] == "4"


def assert_gone(pids_file: Path, within_s: float = 10) -> None:
    """The hosts' waiting processes are gone (a killed orphan may take a moment to be reaped)."""
    pids = set(map(int, pids_file.read_text().split()))
    deadline = time.monotonic() + within_s
    while pids and time.monotonic() < deadline:
        for pid in list(pids):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                pids.discard(pid)
        time.sleep(0.1)
    assert not pids, f"still running: {pids}"


def wait_for_pids(tmp_path: Path, proc: subprocess.Popen, n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # every host waiting in its embed phase
        if (tmp_path / "pids").is_file() and len((tmp_path / "pids").read_text().split()) == n:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    raise AssertionError("the hosts' jobs never started")


def test_one_failing_host_stops_the_others_and_the_launch_fails(tmp_path, ssh_stub):
    t0 = time.monotonic()
    proc = start(tmp_path, ssh_stub, {"h_1_embed": "fail", "h_0_embed": "wait"})
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 7, err  # the failing host's own status
    assert time.monotonic() - t0 < 45
    rows = records(tmp_path)
    assert ["h-0", "term"] in rows and ["h-0", "late"] not in rows
    assert not any(r[1] == "train" for r in rows)  # the train phase never started
    assert_gone(tmp_path / "pids")


def test_sigterm_stops_every_host_and_a_checkpointed_stop_exits_75(tmp_path, ssh_stub):
    proc = start(tmp_path, ssh_stub, {"h_0_embed": "wait", "h_1_embed": "wait"})
    wait_for_pids(tmp_path, proc, 4)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    # Every host's job reported 75 to its node launcher, which exited 75 through ssh.
    assert proc.returncode == 75, err
    assert sorted(r for r in records(tmp_path) if r[1] == "term") == [["h-0", "term"], ["h-1", "term"]]
    assert not any(r[1] == "train" for r in records(tmp_path))  # a stop starts no later phase
    assert_gone(tmp_path / "pids")


def test_a_killed_launcher_stops_every_host(tmp_path, ssh_stub):
    """SIGKILL leaves the launcher no time to do anything: the ssh clients' stdin ends with it, and
    each node launcher stops its job (SIGTERM: a checkpoint) instead of training on unattended."""
    proc = start(tmp_path, ssh_stub, {"h_0_embed": "wait", "h_1_embed": "wait"})
    wait_for_pids(tmp_path, proc, 4)
    proc.kill()
    try:
        proc.communicate(timeout=30)  # stdout closes once every host's node launcher has exited
    except subprocess.TimeoutExpired:
        pass
    assert_gone(tmp_path / "pids", within_s=20)
    assert sorted(r for r in records(tmp_path) if r[1] == "term") == [["h-0", "term"], ["h-1", "term"]]
