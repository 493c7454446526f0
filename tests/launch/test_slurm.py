"""The sbatch script: its #SBATCH lines, and what each node's launcher expands to when the script
runs under stub ``srun`` / ``scontrol`` / ``accelerate`` (one task per node, as SLURM would)."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from launch.compose import ACCELERATE_CONFIG_DIR
from tests.launch.conftest import ROOT, write_exe
from tests.launch.test_commands import launch

SLURM = ["configs/default.yaml", "--slurm", "--nodes", "4", "--procs-per-node", "8", "--time", "02:00:00",
         "--sbatch-opt=--partition=gpu", "--sbatch-opt", "exclusive"]


# Outside the working directory (tests run in a temporary one): named by its absolute path.
GPU_TPL = str(ACCELERATE_CONFIG_DIR / "gpu_multi.yaml")


def sbatch_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("#SBATCH")]


def test_dry_run_prints_the_script_and_writes_nothing(capsys, monkeypatch, tmp_path):
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    rc, out, _ = launch(capsys, monkeypatch, *SLURM, "--dry-run", "--", "train.max_steps=9", cwd=tmp_path)
    assert rc == 0
    assert out.startswith("#!/bin/bash\n")
    assert sbatch_lines(out) == [
        "#SBATCH --job-name=distill-demo",
        "#SBATCH --nodes=4",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --gpus-per-node=8",
        "#SBATCH --time=02:00:00",
        f"#SBATCH --output={tmp_path.resolve()}/runs/demo.%j.out",
        "#SBATCH --partition=gpu",
        "#SBATCH --exclusive",
    ]
    assert 'export MAIN_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)"' in out
    srun = [line for line in out.splitlines() if line.startswith("srun ")]
    assert len(srun) == 2
    inner = shlex.split(srun[1])[-1]  # what bash -c gets: variables still unexpanded
    assert inner == (f"accelerate launch --config_file {GPU_TPL} "
                     "--num_processes $((SLURM_NNODES * 8)) --num_machines $SLURM_NNODES "
                     "--machine_rank $SLURM_NODEID --main_process_ip $MAIN_ADDR --main_process_port $MAIN_PORT "
                     "--rdzv_conf timeout=900 -m distill train configs/default.yaml --set train.max_steps=9")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["configs"]


def test_script_is_written_beside_the_run_directory(capsys, monkeypatch, tmp_path):
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    rc, out, _ = launch(capsys, monkeypatch, *SLURM, cwd=tmp_path)
    path = tmp_path / "runs" / "demo.sbatch"
    assert rc == 0 and out.strip() == str(path.resolve())
    # Not inside runs/demo: training refuses a non-empty run directory.
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["demo.sbatch"]
    custom = tmp_path / "jobs" / "x.sh"
    rc, out, _ = launch(capsys, monkeypatch, *SLURM, "--slurm-out", str(custom), "--cpu", cwd=tmp_path)
    assert rc == 0 and out.strip() == str(custom)
    text = custom.read_text()
    assert "--gpus-per-node" not in text  # --cpu asks for no GPUs
    assert "export CUDA_VISIBLE_DEVICES=\n" in text and "cpu_multi.yaml" in text


@pytest.fixture
def stubs(tmp_path) -> Path:
    """srun runs its command once per node with that node's SLURM_NODEID/PROCID (stopping at the
    first failure, like --kill-on-bad-exit); accelerate records its expanded argv per node."""
    d = tmp_path / "stubs"
    d.mkdir()
    write_exe(d / "scontrol", '#!/bin/bash\nprintf "node-a\\nnode-b\\nnode-c\\nnode-d\\n"\n')
    write_exe(d / "accelerate-rec", '#!/bin/bash\n'
              'echo "$SLURM_NODEID $MAIN_ADDR $DISTILL_DIST_TIMEOUT_S $*" >> "$REC"\n'
              'case "$*" in *"distill $FAIL_PHASE "*) exit 7;; esac\n')
    # A function beats PATH lookup: the script puts its own environment's bin first.
    write_exe(d / "srun", '#!/bin/bash\n'
              'while [[ "$1" == --* ]]; do shift; done\n'
              'accelerate() { "$STUBS/accelerate-rec" "$@"; }\nexport -f accelerate\n'
              'for ((i = 0; i < SLURM_NNODES; i++)); do\n'
              '  SLURM_NODEID=$i SLURM_PROCID=$i "$@" || exit $?\n'
              'done\n')
    return d


def run_script(script: Path, stubs: Path, rec: Path, fail_phase: str = "none"):
    env = dict(os.environ, PATH=f"{stubs}:{os.environ['PATH']}", STUBS=str(stubs), REC=str(rec),
               SLURM_NNODES="4", SLURM_JOB_NODELIST="node-[a-d]", FAIL_PHASE=fail_phase)
    return subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)


def test_script_runs_one_launcher_per_node_with_slurm_ranks(capsys, monkeypatch, tmp_path, stubs):
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    rc, out, _ = launch(capsys, monkeypatch, *SLURM, "--main-port", "29400", "--", "run.name=j", cwd=tmp_path)
    assert rc == 0
    rec = tmp_path / "rec.txt"
    proc = run_script(Path(out.strip()), stubs, rec)
    assert proc.returncode == 0, proc.stderr
    assert "4 nodes x 8 processes, main node-a:29400" in proc.stdout
    rows = [line.split() for line in rec.read_text().splitlines()]
    assert len(rows) == 8  # 4 nodes x (embed, train)
    for row, (phase, node) in zip(rows, [(p, n) for p in ("embed", "train") for n in range(4)]):
        node_id, main_addr, timeout, *argv = row
        assert (node_id, main_addr, timeout) == (str(node), "node-a", "900")
        opt = {argv[i]: argv[i + 1] for i in range(1, argv.index("-m"), 2)}
        assert opt == {
            "--config_file": GPU_TPL, "--num_processes": "32", "--num_machines": "4",
            "--machine_rank": str(node), "--main_process_ip": "node-a",
            "--main_process_port": "29401" if phase == "embed" else "29400", "--rdzv_conf": "timeout=900",
        }
        assert argv[argv.index("-m"):] == ["-m", "distill", phase, "configs/default.yaml", "--set", "run.name=j"]


def test_a_failed_embed_phase_stops_the_script(capsys, monkeypatch, tmp_path, stubs):
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    rc, out, _ = launch(capsys, monkeypatch, *SLURM, cwd=tmp_path)
    rec = tmp_path / "rec.txt"
    proc = run_script(Path(out.strip()), stubs, rec, fail_phase="embed")
    assert proc.returncode == 7
    assert "distill train" not in rec.read_text()
