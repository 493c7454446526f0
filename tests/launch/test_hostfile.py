"""Hostfile (plain SSH) launches: parsing, the exact ssh commands, and running them through a stub
``ssh`` that executes the remote command here: success, one failing host, a forwarded SIGTERM."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest

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
                        "--main-port", "29600", "--", "train.max_steps=3", cwd=tmp_path)
    assert rc == 0
    lines = [line for line in out.splitlines() if not line.startswith("#")]
    assert len(lines) == 2
    tpl = ACCELERATE_CONFIG_DIR / "gpu_multi.yaml"
    for rank, (line, host) in enumerate(zip(lines, ["alice@gpu-1", "gpu-2"])):
        argv = shlex.split(line)
        assert argv[:-1] == ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=30", host]
        steps = argv[-1].split(" && ")
        assert steps[0] == f"cd {tmp_path}"
        launcher = (f"DISTILL_DIST_TIMEOUT_S=900 accelerate launch --config_file {tpl} --num_processes 8 "
                    f"--num_machines 2 --machine_rank {rank} --main_process_ip gpu-1")
        assert steps[2:] == [
            f"{launcher} --main_process_port 29601 --rdzv_conf timeout=900 -m distill embed configs/default.yaml "
            "--set train.max_steps=3",
            f"{launcher} --main_process_port 29600 --rdzv_conf timeout=900 -m distill train configs/default.yaml "
            "--set train.max_steps=3",
        ]


@pytest.fixture
def ssh_stub(tmp_path) -> Path:
    """``ssh [-o X]... HOST CMD`` runs CMD here with HOST set; ``accelerate`` becomes a recorder
    that, per host and phase, succeeds, fails (exit 7), or waits (with a TERM trap)."""
    d = tmp_path / "stubs"
    d.mkdir()
    write_exe(d / "accelerate-rec", r'''#!/bin/bash
phase=$(sed -E 's/.* -m distill ([a-z]+) .*/\1/' <<< "$*")
echo "$HOST $phase $*" >> "$REC"
case "$(eval echo "\$ACT_${HOST//-/_}_$phase")" in
  fail) sleep 0.5; exit 7 ;;
  wait) trap 'echo "$HOST term" >> "$REC"; exit 0' TERM
        sleep 60 & echo $! >> "$PIDS"; wait; echo "$HOST late" >> "$REC" ;;
esac
''')
    write_exe(d / "ssh", '#!/bin/bash\n'
              'while [[ "$1" == -o ]]; do shift 2; done\n'
              'host=$1; shift\n'
              # A function beats PATH lookup: the remote command puts its environment's bin first.
              'accelerate() { "$STUBS/accelerate-rec" "$@"; }\nexport -f accelerate\n'
              'HOST=$host exec bash -c "$1"\n')
    return d


def start(tmp_path: Path, stubs: Path, actions: dict[str, str]) -> subprocess.Popen:
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    (tmp_path / "hosts").write_text("h-0\nh-1 # second\n")
    env = dict(os.environ, PATH=f"{stubs}:{os.environ['PATH']}", STUBS=str(stubs), REC=str(tmp_path / "rec"),
               PIDS=str(tmp_path / "pids"), **{f"ACT_{k}": v for k, v in actions.items()})
    return subprocess.Popen(launch_cmd("configs/default.yaml", "--hostfile", "hosts", "--procs-per-node", "2"),
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


def test_sigterm_reaches_every_host(tmp_path, ssh_stub):
    proc = start(tmp_path, ssh_stub, {"h_0_embed": "wait", "h_1_embed": "wait"})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # both hosts waiting in their embed phase
        if (tmp_path / "pids").is_file() and len((tmp_path / "pids").read_text().split()) == 2:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert sorted(r for r in records(tmp_path) if r[1] == "term") == [["h-0", "term"], ["h-1", "term"]]
    assert_gone(tmp_path / "pids")
