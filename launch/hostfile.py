"""Plain SSH clusters: a hostfile names the machines, one ssh command starts each node's launcher.

Hostfile format (as DeepSpeed's and MPI's)::

    # comment
    gpu-node-1 slots=8
    user@gpu-node-2 slots=8     # ssh target; the rendezvous address is the part after '@'

The first host is node 0 and hosts the rendezvous. Every host must share the working directory
(and the virtual environment) at the same path, as on a cluster with a shared file system.

Each host runs this node's own launcher, ``distill launch CONFIG --node-rank R ...`` (the same one
as a manual multi-node run), which runs the phases and maps a pre-empted job to exit 75; ssh
passes that status back. The node launcher stops its job (SIGTERM: the trainers checkpoint) when
its stdin ends, which is how this launcher stops a host (it closes the pipe) and what happens when
this launcher is killed or the connection drops: no trainer outlives its launcher.
"""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from launch.compose import LaunchError, Plan, Token, env_prefix, render
from launch.runner import STOP_ON_EOF_ENV

_HOST = re.compile(r"^[A-Za-z0-9_.@:\[\]-]+$")
# Fail fast on an unreachable host or a password prompt instead of waiting at it.
SSH = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=30"]


@dataclass(frozen=True)
class Host:
    target: str  # what ssh connects to (may hold user@)
    slots: Optional[int] = None

    @property
    def address(self) -> str:
        return self.target.rpartition("@")[2]


def parse_hostfile(path: str | Path) -> list[Host]:
    path = Path(path)
    if not path.is_file():
        raise LaunchError("--hostfile", f"file not found: {path}")
    hosts: list[Host] = []
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{path}:{lineno}"
        name, *rest = line.split()
        if not _HOST.match(name):
            raise LaunchError("--hostfile", f"{where}: '{name}' is not a host name")
        slots = None
        for item in rest:
            m = re.fullmatch(r"slots=(\d+)", item)
            if not m or int(m.group(1)) < 1:
                raise LaunchError("--hostfile", f"{where}: expected 'slots=N' (N >= 1) after the host, got '{item}'")
            slots = int(m.group(1))
        if any(h.target == name for h in hosts):
            raise LaunchError("--hostfile", f"{where}: host '{name}' is listed twice")
        hosts.append(Host(name, slots))
    if not hosts:
        raise LaunchError("--hostfile", f"{path} lists no hosts")
    return hosts


def slots_per_node(hosts: list[Host]) -> Optional[int]:
    """The common ``slots`` of the hosts (None if none gives it); torchrun needs the same
    number of processes on every node."""
    given = {h.slots for h in hosts if h.slots is not None}
    if len(given) > 1:
        raise LaunchError("--hostfile", f"hosts give different slots ({', '.join(map(str, sorted(given)))}); "
                                        "every node must run the same number of processes")
    if given and any(h.slots is None for h in hosts):
        raise LaunchError("--hostfile", "some hosts give slots=N and some do not")
    return given.pop() if given else None


def node_launcher_argv(plan: Plan, node_rank: int, overrides: list[str]) -> list[Token]:
    """``python -m distill launch CONFIG --node-rank R ...``: node R's launcher, with this plan.
    ``overrides``: the user's (``--cpu`` adds its own)."""
    c = plan.cluster
    argv: list[Token] = [sys.executable, "-m", "distill", "launch", plan.config,
                         "--nodes", c.nodes, "--node-rank", node_rank, "--procs-per-node", c.procs_per_node,
                         "--main-addr", c.main_addr, "--timeout", c.timeout_s, "--grace", plan.grace_s,
                         "--accelerate-config", plan.template]
    if c.main_port is not None:
        argv += ["--main-port", c.main_port]
    if plan.cpu:
        argv.append("--cpu")
    if plan.resume:
        argv.append("--resume")
    if "embed" not in plan.phases:
        argv.append("--no-embed")
    for o in overrides:
        argv += ["--set", o]
    return argv


def remote_command(plan: Plan, node_rank: int, workdir: Path, overrides: list[str]) -> str:
    """The shell command one host runs: cd, then the node's launcher, which stops on stdin's end."""
    return (f"cd {shlex.quote(str(workdir))} && "
            + env_prefix({STOP_ON_EOF_ENV: "1"}) + render(node_launcher_argv(plan, node_rank, overrides)))


def ssh_commands(plan: Plan, hosts: list[Host], workdir: Path, overrides: list[str]) -> list[list[Token]]:
    """One ``ssh HOST 'cd DIR && ... distill launch ... --node-rank i'`` per host."""
    return [[*SSH, host.target, remote_command(plan, i, workdir, overrides)] for i, host in enumerate(hosts)]
