"""Turning a run config and a cluster description into ``accelerate launch`` commands.

    distill launch configs/my_run.yaml --cpu --procs-per-node 2                 # this machine
    distill launch CONFIG --nodes 4 --procs-per-node 8 --node-rank R --main-addr 10.0.0.1
    distill launch CONFIG --nodes 4 --procs-per-node 8 --slurm [--dry-run]      # sbatch script
    distill launch CONFIG --hostfile hosts [--dry-run]                          # ssh per host

A run is two phases, each one ``accelerate launch ... -m distill <phase> CONFIG`` per node:
``embed`` fills the target store (teachers shard the work across the job), then ``train``
(only ``train`` with ``targets.mode: online`` or ``--no-embed``). One launcher per node starts
that node's processes (torchrun); ``--num_processes`` is the total over all nodes.

Parts: :mod:`launch.compose` (commands, cluster checks, accelerate config templates),
:mod:`launch.slurm` (sbatch script), :mod:`launch.hostfile` (ssh commands: each host runs its own
node launcher), :mod:`launch.runner` (running them: failures and signals end everything, nothing
waits forever), :mod:`launch.cli`.

Failure handling: a rank that dies ends its node's launcher (torchrun stops the node's other
workers) and its peers' collectives fail on the closed connections; a node that never arrives
fails the static rendezvous after ``--timeout`` seconds (``--rdzv_conf timeout=S``); every rank
gets ``DISTILL_DIST_TIMEOUT_S`` to bound its collectives; several launchers (ssh) are stopped
together when one fails.

Stopping: SIGINT/SIGTERM are passed on and the trainers get ``--grace`` seconds to checkpoint
(``TORCH_ELASTIC_SHUTDOWN_TIMEOUT``); a job whose ranks all exited 75 (pre-empted after a clean
checkpoint) exits 75, locally, through ssh and in the sbatch script (whose requeued job runs with
``--resume``); a killed launcher takes its job with it.

Adding an accelerate setup is one file: ``configs/accelerate/<name>.yaml`` (a real accelerate
config; the per-run numbers come from the command line), selected with
``--accelerate-config <name>``.
"""

from launch.compose import Cluster, LaunchError, Plan

__all__ = ["Cluster", "LaunchError", "Plan"]
