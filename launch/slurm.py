"""An sbatch script that runs the plan on a SLURM allocation: one launcher per node via ``srun``.

Each node's launcher takes its node rank from SLURM (``$SLURM_NODEID``; with one task per node it
equals ``$SLURM_PROCID``), the node count from ``$SLURM_NNODES`` and the rendezvous address from
the first host of ``$SLURM_JOB_NODELIST``, so the same script also runs when submitted with a
different ``--nodes``.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Optional

from launch.compose import DEFAULT_PORT, Plan, Shell, render, venv_bin


def sbatch_script(plan: Plan, *, workdir: Path, job_name: str, output: str, time: Optional[str],
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
    lines += [f"#SBATCH {opt if opt.startswith('-') else '--' + opt}" for opt in extra_opts]
    env = plan.env()
    lines += [
        "",
        "set -euo pipefail",
        f"cd {shlex.quote(str(workdir))}",
        f'export PATH={shlex.quote(venv_bin())}:"$PATH"',
        "# Node 0 of the allocation hosts the rendezvous.",
        'export MAIN_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)"',
        f"export MAIN_PORT={c.main_port or DEFAULT_PORT}",
        *(f"export {k}={shlex.quote(v) if v else ''}" for k, v in env.items()),
        f'echo "distill launch: $SLURM_NNODES nodes x {c.procs_per_node} processes, main $MAIN_ADDR:$MAIN_PORT"',
    ]
    commands = plan.node_commands(
        Shell("$SLURM_NODEID"),
        main_addr=Shell("$MAIN_ADDR"),
        main_port=Shell("$MAIN_PORT"),
        num_processes=Shell(f"$((SLURM_NNODES * {c.procs_per_node}))"),
        num_machines=Shell("$SLURM_NNODES"),
    )
    lines += [
        "",
        "# One task per node runs that node's launcher; each task expands $SLURM_NODEID itself (hence",
        "# bash -c in single quotes). --kill-on-bad-exit ends every node's launcher when one fails,",
        "# instead of leaving the others waiting for it.",
    ]
    for argv in commands:
        lines.append(f"srun --kill-on-bad-exit=1 bash -c {shlex.quote(render(argv))}")
    return "\n".join(lines) + "\n"
