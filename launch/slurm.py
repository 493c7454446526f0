"""An sbatch script that runs the plan on a SLURM allocation: one launcher per node via ``srun``.

Each node's launcher takes its node rank from SLURM (``$SLURM_NODEID``; with one task per node it
equals ``$SLURM_PROCID``), the node count from ``$SLURM_NNODES`` and the rendezvous address from
the first host of ``$SLURM_JOB_NODELIST``, so the same script also runs when submitted with a
different ``--nodes``.

Pre-emption: ``--requeue`` lets SLURM requeue the job when it is pre-empted, and
``--signal=B:TERM@GRACE`` warns the script GRACE seconds before the time limit. The script passes a
SIGTERM on to the running phase (srun hands it to every node's launcher, torchrun to the workers),
whose trainers checkpoint and exit 75. A requeued job (``$SLURM_RESTART_COUNT`` > 0) trains with
``--resume``, so it continues from that checkpoint by itself; a first start refuses an existing
run directory, as ``distill launch`` does locally.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Optional

from launch.compose import DEFAULT_PORT, Plan, Shell, render, venv_bin

RESUME_VAR = "DISTILL_RESUME"
EXIT_PREEMPTED = 75

# One phase on every node, in the background so that the TERM trap runs at once (bash runs traps
# only between commands) and the phase is waited for again after it.
_PHASE_FUNCTION = """\
phase() {
  srun --kill-on-bad-exit=1 bash -c "$1" &
  srun_pid=$!
  while :; do
    wait "$srun_pid"; status=$?
    kill -0 "$srun_pid" 2>/dev/null || return "$status"  # ended (not just a trap interrupting wait)
  done
}"""


def sbatch_script(plan: Plan, *, workdir: Path, run_dir: Path, job_name: str, output: str, time: Optional[str],
                  gpus_per_node: int, cpus_per_node: Optional[int], extra_opts: list[str]) -> str:
    c = plan.cluster
    lines = [
        "#!/bin/bash",
        f"# Written by `distill launch --slurm` for {plan.config}; submit with: sbatch THIS_FILE",
        f"#SBATCH --job-name={job_name}",
        f"#SBATCH --nodes={c.nodes}",
        # One launcher per node: accelerate (torchrun) starts the node's processes itself.
        "#SBATCH --ntasks-per-node=1",
    ]
    if gpus_per_node:
        lines.append(f"#SBATCH --gpus-per-node={gpus_per_node}")
    if cpus_per_node:
        lines.append(f"#SBATCH --cpus-per-task={cpus_per_node}")
    if time:
        lines.append(f"#SBATCH --time={time}")
    lines.append(f"#SBATCH --output={output}")
    lines += [
        # A requeued job appends to its log instead of truncating it.
        "#SBATCH --open-mode=append",
        "#SBATCH --requeue",
        f"#SBATCH --signal=B:TERM@{plan.grace_s}",
    ]
    lines += [f"#SBATCH {opt if opt.startswith('-') else '--' + opt}" for opt in extra_opts]
    env = plan.env()
    run = shlex.quote(str(run_dir))
    lines += [
        "",
        "set -uo pipefail  # no -e: the phases' statuses are handled below",
        f"cd {shlex.quote(str(workdir))}",
        f'export PATH={shlex.quote(venv_bin())}:"$PATH"',
        "# Node 0 of the allocation hosts the rendezvous.",
        'export MAIN_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)"',
        f"export MAIN_PORT={c.main_port or DEFAULT_PORT}",
        *(f"export {k}={shlex.quote(v) if v else ''}" for k, v in env.items()),
        f'echo "distill launch: $SLURM_NNODES nodes x {c.procs_per_node} processes, main $MAIN_ADDR:$MAIN_PORT"',
        "",
    ]
    if plan.resume:
        lines.append(f"export {RESUME_VAR}=--resume")
    else:
        lines += [
            "# A requeued job (pre-empted, or requeued by hand) continues from the run's checkpoint.",
            f'if [ "${{SLURM_RESTART_COUNT:-0}}" -gt 0 ]; then export {RESUME_VAR}=--resume; else export {RESUME_VAR}=; fi',
            f'if [ -z "${RESUME_VAR}" ] && [ -n "$(ls -A {run} 2>/dev/null)" ]; then',
            f'  echo "error: run directory {run_dir} already exists; pass --resume to continue it, or choose another '
            'run.name" >&2',
            "  exit 2",
            "fi",
        ]
    commands = plan.node_commands(
        Shell("$SLURM_NODEID"),
        main_addr=Shell("$MAIN_ADDR"),
        main_port=Shell("$MAIN_PORT"),
        num_processes=Shell(f"$((SLURM_NNODES * {c.procs_per_node}))"),
        num_machines=Shell("$SLURM_NNODES"),
        resume=Shell(f"${RESUME_VAR}"),
    )
    lines += [
        "",
        "# SIGTERM (pre-emption; the time limit, by --signal) goes to the running phase: every node's",
        "# trainers save a checkpoint and exit; no later phase starts.",
        "stopped=0 srun_pid=",
        "trap 'stopped=1; [ -n \"$srun_pid\" ] && kill -TERM \"$srun_pid\" 2>/dev/null' TERM",
        _PHASE_FUNCTION,
        "",
        "# One task per node runs that node's launcher; each task expands $SLURM_NODEID itself (hence",
        "# bash -c in single quotes). --kill-on-bad-exit ends every node's launcher when one fails,",
        "# instead of leaving the others waiting for it.",
        "status=0",
    ]
    for argv in commands:
        lines += ['if [ "$status" = 0 ] && [ "$stopped" = 0 ]; then',
                  f"  phase {shlex.quote(render(argv))}; status=$?",
                  "fi"]
    lines += [
        f'if [ "$stopped" = 1 ] && [ ! -e {run}/eval.json ]; then',
        f"  if [ -e {run}/checkpoints/latest ]; then",
        '    echo "distill launch: stopped by SIGTERM; the run has a checkpoint, a requeued job resumes it"',
        f"    exit {EXIT_PREEMPTED}",
        "  fi",
        "  exit 143",
        "fi",
        'exit "$status"',
    ]
    return "\n".join(lines) + "\n"
