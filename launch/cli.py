"""``distill launch``: compose the ``accelerate launch`` command(s) of a run and run them.

    distill launch CONFIG [--nodes N --procs-per-node P --node-rank R --main-addr A --main-port PORT]
                          [--cpu] [--accelerate-config NAME|PATH] [--timeout S] [--grace S] [--no-embed]
                          [--resume] [--slurm [--slurm-out PATH] ...] [--hostfile FILE] [--dry-run]
                          [-- KEY=VALUE ...]

Local: ``--procs-per-node 2`` runs both phases on this machine. Multi-node: run it on every node
with that node's ``--node-rank`` (without one, ``--dry-run`` prints every node's commands).
``--slurm`` writes an sbatch script, ``--hostfile`` starts every node over ssh. Overrides after
``--`` (or with ``--set``) reach every phase as ``--set KEY=VALUE``.

Exit status: as ``distill train`` -- 0, 2 for bad input (found here, nothing started; or by every
rank), 75 when the job was pre-empted (SIGTERM) after a clean checkpoint (``--resume`` continues
it), 128 + N when stopped by signal N otherwise, else the failing launcher's status.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from launch.compose import (
    DEFAULT_GRACE_S,
    DEFAULT_TIMEOUT_S,
    PHASES,
    Cluster,
    LaunchError,
    Plan,
    display_path,
    env_prefix,
    render,
    resolve_template,
    venv_bin,
)

logger = logging.getLogger("launch")


def add_launch_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("cluster")
    g.add_argument("--nodes", type=int, default=None, metavar="N", help="machines (default 1, or the hostfile's hosts)")
    g.add_argument("--procs-per-node", type=int, default=None, metavar="P",
                   help="processes per machine, e.g. its GPU count (default 1, or the hostfile's slots)")
    g.add_argument("--node-rank", type=int, default=None, metavar="R", help="this machine's index, 0 .. nodes-1")
    g.add_argument("--main-addr", default=None, metavar="ADDR", help="address of node 0 (the rendezvous)")
    g.add_argument("--main-port", type=int, default=None, metavar="PORT",
                   help="rendezvous port of the train phase (default 29500); the embed phase uses PORT+1")
    g.add_argument("--cpu", action="store_true",
                   help="CPU processes with gloo (hides GPUs, sets train.cpu=true, template cpu_multi)")
    g.add_argument("--accelerate-config", default=None, metavar="NAME|PATH",
                   help="accelerate config: a file, or a name in configs/accelerate/ "
                        "(default gpu_multi, or cpu_multi with --cpu)")
    g.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT_S, metavar="S",
                   help=f"seconds a node waits for a missing peer, at the rendezvous and in collectives "
                        f"(default {DEFAULT_TIMEOUT_S})")
    g.add_argument("--grace", type=int, default=DEFAULT_GRACE_S, metavar="S",
                   help=f"seconds the trainers get to checkpoint after SIGTERM before they are killed; with "
                        f"--slurm also how long before the time limit SLURM sends it (default {DEFAULT_GRACE_S})")
    r = p.add_argument_group("run")
    r.add_argument("--resume", action="store_true", help="train resumes from the run's latest checkpoint")
    r.add_argument("--no-embed", action="store_true",
                   help="skip the embed phase (the train phase embeds whatever the store lacks)")
    r.add_argument("--dry-run", action="store_true", help="print the commands (or the sbatch script), run nothing")
    r.add_argument("--set", dest="launch_overrides", action="append", nargs="+", default=[], metavar="KEY=VALUE",
                   help="config override for every phase (repeatable; also accepted after --)")
    s = p.add_argument_group("SLURM")
    s.add_argument("--slurm", action="store_true", help="write an sbatch script (one launcher per node via srun)")
    s.add_argument("--slurm-out", default=None, metavar="PATH",
                   help="where to write it (default <output_dir>/<run name>.sbatch, beside the run directory)")
    s.add_argument("--job-name", default=None, help="SLURM job name (default distill-<run name>)")
    s.add_argument("--time", default="24:00:00", help="SLURM time limit (default 24:00:00)")
    s.add_argument("--gpus-per-node", type=int, default=None,
                   help="GPUs to request per node (default --procs-per-node; 0 with --cpu)")
    s.add_argument("--cpus-per-node", type=int, default=None, help="CPUs to request per node (--cpus-per-task)")
    s.add_argument("--sbatch-opt", action="append", default=[], metavar="OPT",
                   help="extra #SBATCH option (repeatable): --sbatch-opt partition=gpu, or "
                        "--sbatch-opt=--partition=gpu")
    h = p.add_argument_group("SSH")
    h.add_argument("--hostfile", default=None, metavar="FILE",
                   help="hosts, one per line ('host [slots=N]', # comments): one ssh launcher per host")
    p.epilog = ("Config overrides after -- reach every phase as --set KEY=VALUE, e.g. "
                "distill launch run.yaml --cpu --procs-per-node 2 -- train.max_steps=200 run.name=try2")
    _split_at_double_dash(p)


def _split_at_double_dash(p: argparse.ArgumentParser) -> None:
    """Take everything after the first ``--`` as overrides before argparse sees it.

    argparse cannot give a positional list after ``--`` once the positional CONFIG has been
    matched (``launch CONFIG --cpu -- a=1`` fails with "unrecognized arguments"), so the launch
    subparser splits the ``--`` part off itself.
    """
    parse = p.parse_known_args

    def parse_known_args(args=None, namespace=None):
        args = list(args or [])
        extra: list[str] = []
        if "--" in args:
            i = args.index("--")
            args, extra = args[:i], args[i + 1:]
        ns, unknown = parse(args, namespace)
        ns.extra_overrides = extra
        return ns, unknown

    p.parse_known_args = parse_known_args


def _overrides(args, cpu: bool = True) -> list[str]:
    """The user's overrides, plus ``train.cpu=true`` (last, so it wins) with ``--cpu`` and ``cpu``."""
    out = [o for group in args.launch_overrides for o in group] + list(getattr(args, "extra_overrides", []))
    for o in out:
        if "=" not in o:
            raise LaunchError("--", f"'{o}' is not a KEY=VALUE override")
    if args.cpu and cpu:
        out.append("train.cpu=true")
    return out


def _check_world(cfg, world: int) -> None:
    """The training loop splits the global batch over processes x accumulation steps."""
    from distill.config import check_world

    if problem := check_world(cfg.train, world):
        raise LaunchError("--procs-per-node", f"train.batch_size {problem}")


def cmd_launch(args) -> int:
    from distill.config import load_config

    overrides = _overrides(args)
    # Validate before anything starts: a bad config or override exits 2 here, not on N nodes.
    cfg = load_config(args.config, overrides)
    phases = PHASES if cfg.targets.mode == "store" and not args.no_embed else ("train",)

    hosts = None
    nodes, procs = args.nodes, args.procs_per_node
    main_addr = args.main_addr
    if args.hostfile:
        from launch.hostfile import parse_hostfile, slots_per_node

        if args.slurm:
            raise LaunchError("--hostfile", "use either --hostfile or --slurm")
        if args.node_rank is not None:
            raise LaunchError("--node-rank", "is given by the host's line in --hostfile")
        hosts = parse_hostfile(args.hostfile)
        if nodes is not None:
            if nodes > len(hosts):
                raise LaunchError("--nodes", f"{nodes} nodes but {args.hostfile} lists {len(hosts)} hosts")
            hosts = hosts[:nodes]
        nodes = len(hosts)
        procs = slots_per_node(hosts) if procs is None else procs
        if main_addr is None:
            main_addr = hosts[0].address
    cluster = Cluster(nodes=1 if nodes is None else nodes, procs_per_node=1 if procs is None else procs,
                      node_rank=args.node_rank,
                      main_addr=main_addr, main_port=args.main_port, timeout_s=args.timeout)
    if cluster.nodes > 1 and not (args.slurm or hosts) and cluster.main_addr is None:
        raise LaunchError("--main-addr", f"is needed with --nodes {cluster.nodes} (the address of node 0)")
    if args.slurm and args.node_rank is not None:
        raise LaunchError("--node-rank", "is given by SLURM ($SLURM_NODEID) with --slurm")
    _check_world(cfg, cluster.world_size)

    cwd = Path.cwd()
    plan = Plan(config=args.config, template=display_path(resolve_template(args.accelerate_config, args.cpu), cwd),
                cluster=cluster, phases=phases, overrides=overrides, resume=args.resume, cpu=args.cpu,
                grace_s=args.grace)

    if args.slurm:
        return _slurm(args, cfg, plan, cwd)
    if hosts is not None:
        if not args.dry_run:
            _check_run_dir(cfg, args.resume)
        return _hostfile(args, plan, hosts, cwd)
    return _local(args, cfg, plan)


def _check_run_dir(cfg, resume: bool) -> None:
    """Refuse a run another writer holds, or an existing run without --resume, before anything
    starts (not after the embed phase). A resume's checkpoint is verified by the trainer."""
    from distill import runlock

    runlock.check_free(cfg.run_dir)
    if not resume:
        from distill.config import check_new_run_dir

        check_new_run_dir(cfg.run_dir)


def _describe(plan: Plan, node_rank) -> str:
    c = plan.cluster
    where = f"node {node_rank} of {c.nodes}, " if c.nodes > 1 else ""
    return (f"# {where}{c.procs_per_node} process(es) per node, {c.world_size} in all; "
            f"phases: {', '.join(plan.phases)}")


def _local(args, cfg, plan: Plan) -> int:
    c = plan.cluster
    env = plan.env()
    if args.dry_run:
        ranks = [c.node_rank] if (c.nodes == 1 or c.node_rank is not None) else list(range(c.nodes))
        for rank in ranks:
            print(_describe(plan, rank))
            for argv in plan.node_commands(rank):
                print(env_prefix(env) + render(argv))
        return 0
    if c.nodes > 1 and c.node_rank is None:
        raise LaunchError("--node-rank", f"is needed to run node commands with --nodes {c.nodes} "
                                         "(or --dry-run to print every node's, --slurm, --hostfile)")
    if c.node_rank in (None, 0):
        _check_run_dir(cfg, args.resume)  # node 0 holds the run directory
    from launch.runner import STOP_ON_EOF_ENV, run_sequence

    commands = plan.node_commands(c.node_rank)
    print(_describe(plan, c.node_rank), flush=True)
    for argv in commands:
        print(env_prefix(env) + render(argv), flush=True)
    env = dict(env, PATH=f"{venv_bin()}:{os.environ.get('PATH', '')}")  # accelerate from this environment
    # A hostfile run's node launcher (started over ssh) stops its job when its stdin ends.
    watch = os.environ.pop(STOP_ON_EOF_ENV, "") == "1"
    return run_sequence([[str(t) for t in argv] for argv in commands], env, plan.grace_s, watch_stdin=watch)


def _hostfile(args, plan: Plan, hosts, cwd: Path) -> int:
    from launch.hostfile import ssh_commands

    commands = ssh_commands(plan, hosts, cwd, _overrides(args, cpu=False))
    print(f"# {len(hosts)} hosts, {plan.cluster.procs_per_node} process(es) each, main {plan.cluster.main_addr}; "
          f"phases: {', '.join(plan.phases)}; each host runs its node's launcher:", flush=True)
    for argv in commands:
        print(render(argv), flush=True)
    if args.dry_run:
        for rank, host in enumerate(hosts):
            print(f"# {host.target} (node {rank}) then runs:")
            for argv in plan.node_commands(rank):
                print("#   " + env_prefix(plan.env()) + render(argv))
        return 0
    from launch.runner import run_parallel

    # The node launchers kill what outlives their grace period; give them time to report it.
    return run_parallel([[str(t) for t in argv] for argv in commands], grace_s=plan.grace_s + 30, via_stdin=True)


def _slurm(args, cfg, plan: Plan, cwd: Path) -> int:
    from launch.slurm import sbatch_script

    out_dir = (cwd / cfg.run.output_dir).resolve()
    gpus = args.gpus_per_node if args.gpus_per_node is not None else (0 if args.cpu else plan.cluster.procs_per_node)
    if gpus < 0:
        raise LaunchError("--gpus-per-node", f"must be >= 0, got {gpus}")
    # The script and SLURM's log live beside the run directory, not in it: training refuses to
    # start in a non-empty run directory unless resuming.
    text = sbatch_script(plan, workdir=cwd, run_dir=(cwd / cfg.run_dir).resolve(),
                         job_name=args.job_name or f"distill-{cfg.run.name}",
                         output=str(out_dir / f"{cfg.run.name}.%j.out"), time=args.time,
                         gpus_per_node=gpus, cpus_per_node=args.cpus_per_node, extra_opts=args.sbatch_opt)
    if args.dry_run:
        print(text, end="")
        return 0
    path = Path(args.slurm_out) if args.slurm_out else out_dir / f"{cfg.run.name}.sbatch"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(path)
    return 0
