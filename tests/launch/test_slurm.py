"""The sbatch script: its #SBATCH lines, and what each node's launcher expands to when the script
runs under stub ``srun`` / ``scontrol`` / ``accelerate`` (one task per node, as SLURM would); a
requeued job (``SLURM_RESTART_COUNT=1``) resuming, a first start refusing an existing run, a
SIGTERM stopping the running phase -- and, with the real trainer, a pre-empted job that exits 75
and, rerun as a requeued job, finishes the run from its checkpoint."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest

from launch.compose import ACCELERATE_CONFIG_DIR
from tests.faults import fault_env
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
        "#SBATCH --open-mode=append",
        "#SBATCH --requeue",
        "#SBATCH --signal=B:TERM@120",
        "#SBATCH --partition=gpu",
        "#SBATCH --exclusive",
    ]
    assert 'export MAIN_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)"' in out
    phases = [line for line in out.splitlines() if line.startswith("  phase ")]
    assert len(phases) == 2
    inner = shlex.split(phases[1].removesuffix("; status=$?"))[-1]  # what bash -c gets: variables unexpanded
    assert inner == (f"accelerate launch --config_file {GPU_TPL} "
                     "--num_processes $((SLURM_NNODES * 8)) --num_machines $SLURM_NNODES "
                     "--machine_rank $SLURM_NODEID --main_process_ip $MAIN_ADDR --main_process_port $MAIN_PORT "
                     "--rdzv_conf timeout=900 -m distill train configs/default.yaml --set train.max_steps=9 "
                     "$DISTILL_RESUME")
    assert 'srun --kill-on-bad-exit=1 bash -c "$1" &' in out
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


SRUN = ('#!/bin/bash\n'
        'while [[ "$1" == --* ]]; do shift; done\n'
        '# Signals to srun reach the tasks, as with the real one.\n'
        'trap \'kill -TERM "$task" 2>/dev/null\' TERM\n'
        'for ((i = 0; i < SLURM_NNODES; i++)); do\n'
        '  SLURM_NODEID=$i SLURM_PROCID=$i "$@" & task=$!\n'
        '  while :; do wait "$task"; s=$?; kill -0 "$task" 2>/dev/null || break; done\n'
        '  [ "$s" = 0 ] || exit "$s"\n'
        'done\n')


@pytest.fixture
def stubs(tmp_path) -> Path:
    """srun runs its command once per node with that node's SLURM_NODEID/PROCID (stopping at the
    first failure, like --kill-on-bad-exit) and passes SIGTERM on; accelerate records its expanded
    argv per node, fails in $FAIL_PHASE, and waits in $WAIT_PHASE until SIGTERM (recorded)."""
    d = tmp_path / "stubs"
    d.mkdir()
    write_exe(d / "scontrol", '#!/bin/bash\nprintf "node-a\\nnode-b\\nnode-c\\nnode-d\\n"\n')
    write_exe(d / "accelerate-rec", '#!/bin/bash\n'
              'echo "$SLURM_NODEID $MAIN_ADDR $DISTILL_DIST_TIMEOUT_S $*" >> "$REC"\n'
              'case "$*" in *"distill $FAIL_PHASE "*) exit 7;; esac\n'
              'case "$*" in *"distill $WAIT_PHASE "*)\n'
              '  trap \'echo "$SLURM_NODEID term" >> "$REC"; kill $!; exit 1\' TERM\n'
              '  echo $$ > "$REC.waiting"; sleep 60 & wait;;\n'
              'esac\n')
    # A function beats PATH lookup: the script puts its own environment's bin first. It execs the
    # recorder, as `bash -c 'accelerate ...'` execs the real one (so the task's signals reach it).
    write_exe(d / "srun-real", SRUN)
    write_exe(d / "srun", '#!/bin/bash\n'
              'accelerate() { exec "$STUBS/accelerate-rec" "$@"; }\nexport -f accelerate\n'
              'exec "$STUBS/srun-real" "$@"\n')
    return d


def script_env(stubs: Path, rec: Path, **extra) -> dict:
    return {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}", "STUBS": str(stubs), "REC": str(rec),
            "SLURM_NNODES": "4", "SLURM_JOB_NODELIST": "node-[a-d]", **extra}


def run_script(script: Path, stubs: Path, rec: Path, fail_phase: str = "none", **extra):
    env = script_env(stubs, rec, FAIL_PHASE=fail_phase, **extra)
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


def test_a_requeued_job_resumes_and_a_first_start_refuses_an_existing_run(capsys, monkeypatch, tmp_path, stubs):
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    rc, out, _ = launch(capsys, monkeypatch, *SLURM, "--", "run.name=j", cwd=tmp_path)
    script, rec = Path(out.strip()), tmp_path / "rec.txt"
    run_dir = tmp_path / "runs" / "j"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("x")  # what the pre-empted first attempt left
    # Requeued (SLURM counts the restarts): the train phase resumes; the embed phase reruns (the
    # store keeps what it has).
    proc = run_script(script, stubs, rec, SLURM_RESTART_COUNT="1")
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in rec.read_text().splitlines()]
    assert len(rows) == 8
    assert all(r[-1] == "--resume" for r in rows if "train" in r)
    assert not any("--resume" in r for r in rows if "embed" in r)
    # A first start (no restarts) over an existing run directory is refused before any phase.
    rec.unlink()
    proc = run_script(script, stubs, rec, SLURM_RESTART_COUNT="0")
    assert proc.returncode == 2
    assert f"error: run directory {run_dir} already exists; pass --resume" in proc.stderr
    assert not rec.exists()


def test_sigterm_to_the_script_stops_the_running_phase_and_starts_no_other(capsys, monkeypatch, tmp_path, stubs):
    """SLURM signals the batch shell (--signal=B:TERM@G): the trap passes it to srun, srun to the
    node launchers; the train phase never starts; with a checkpoint in the run, exit 75."""
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    rc, out, _ = launch(capsys, monkeypatch, *SLURM, "--grace", "30", "--", "run.name=j", cwd=tmp_path)
    script, rec = Path(out.strip()), tmp_path / "rec.txt"
    assert "#SBATCH --signal=B:TERM@30" in script.read_text()
    (tmp_path / "runs" / "j" / "checkpoints").mkdir(parents=True)
    (tmp_path / "runs" / "j" / "checkpoints" / "latest").write_text("step_00000004\n")
    env = script_env(stubs, rec, SLURM_NNODES="1", SLURM_RESTART_COUNT="1", WAIT_PHASE="embed")
    proc = subprocess.Popen(["bash", str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not Path(f"{rec}.waiting").exists():
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 75, err
    assert "a requeued job resumes it" in out
    rows = [line.split() for line in rec.read_text().splitlines()]
    assert ["0", "term"] in rows
    assert not any("train" in r for r in rows)


@pytest.mark.slow
def test_preempted_job_exits_75_and_its_requeue_finishes_the_run(monkeypatch, tmp_path, tiny):
    """The real trainer under the generated script (stub srun/scontrol, real accelerate, one CPU
    process): SIGTERM to the batch shell mid-run -> a clean checkpoint, exit 75; the same script
    rerun as a requeued job (SLURM_RESTART_COUNT=1) resumes from that checkpoint and finishes."""
    from distill.cli import main
    from tests.distill.e2e import run
    from tests.ports import free_port

    stubs = tmp_path / "stubs"
    stubs.mkdir()
    write_exe(stubs / "scontrol", '#!/bin/bash\necho 127.0.0.1\n')
    write_exe(stubs / "srun", SRUN)
    monkeypatch.chdir(tmp_path)
    assert main(["launch", str(tiny), "--slurm", "--cpu", "--no-embed", "--slurm-out", "job.sbatch", "--",
                 "train.max_steps=8", "train.save_every=2", "train.eval_every=8"]) == 0

    script = (tmp_path / "job.sbatch").read_text().replace("MAIN_PORT=29500", f"MAIN_PORT={free_port(pair=True)}")
    (tmp_path / "job.sbatch").write_text(script)
    run_dir = tmp_path / "runs" / "tiny"
    env = dict(os.environ, PATH=f"{stubs}:{os.environ['PATH']}", SLURM_NNODES="1", SLURM_JOB_NODELIST="n1",
               OMP_NUM_THREADS="1", **fault_env("ckpt_pause=2:4"))
    proc = subprocess.Popen(["bash", "job.sbatch"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (run_dir / "checkpoints" / ".tmp-step_00000002").is_dir():  # held open 4 s
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()[0][-3000:]
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 75, out[-3000:]
    assert "pre-empted: checkpoint saved at step 3" in out
    assert not (run_dir / "eval.json").exists()
    second = run(["bash", "job.sbatch"], cwd=tmp_path, timeout=300, env=dict(env, SLURM_RESTART_COUNT="1"))
    assert second.returncode == 0, (second.stdout + second.stderr)[-3000:]
    assert "resumed from" in second.stderr and "(step 3)" in second.stderr
    assert (run_dir / "eval.json").is_file()
