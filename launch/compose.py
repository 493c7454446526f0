"""Compose the ``accelerate launch`` command lines of a run: one launcher per node, one command per
phase (``distill embed`` builds the target store, then ``distill train``).

A command is an argv list. Tokens that must reach a shell unquoted (``$SLURM_NODEID`` in an sbatch
script, ``$PATH`` in an ssh command) are :class:`Shell` strings; everything else is quoted by
:func:`render`, so a printed command is exactly what runs.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from distill.schema import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ACCELERATE_CONFIG_DIR = PROJECT_ROOT / "configs" / "accelerate"
DEFAULT_GPU_TEMPLATE = "gpu_multi"
DEFAULT_CPU_TEMPLATE = "cpu_multi"
DEFAULT_PORT = 29500
# Every rank reads this to bound its collectives (torch has no environment variable for the
# process-group timeout, so the code that creates the group must pass it on).
TIMEOUT_ENV = "DISTILL_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 900
# Seconds from a stop request (SIGTERM, SLURM's --signal) to SIGKILL: the trainers finish their step
# and checkpoint in it. torchrun reads it from this variable (its own default is 30 s).
SHUTDOWN_ENV = "TORCH_ELASTIC_SHUTDOWN_TIMEOUT"
DEFAULT_GRACE_S = 120
PHASES = ("embed", "train")


class LaunchError(ConfigError):
    """Bad launch arguments or cluster description: the CLI prints one line and exits 2."""


class Shell(str):
    """A token passed to the shell as is (a variable or arithmetic expansion), never quoted."""


Token = Union[str, int, Shell]


def render(argv: list[Token]) -> str:
    """One shell command line; plain tokens quoted, :class:`Shell` tokens verbatim."""
    return " ".join(t if isinstance(t, Shell) else shlex.quote(str(t)) for t in argv)


@dataclass(frozen=True)
class Cluster:
    """Where the run goes: ``nodes`` machines with ``procs_per_node`` processes each.

    ``node_rank`` is this machine's index (None when the launcher does not run on one node
    itself: SLURM, hostfile, or printing every node's command). ``main_addr``/``main_port`` is
    the rendezvous of node 0; the train phase uses ``main_port``, the embed phase
    ``main_port + 1`` so that a node starting the train phase early can never join the embed
    phase's rendezvous store while node 0 is still tearing it down.
    """

    nodes: int = 1
    procs_per_node: int = 1
    node_rank: Optional[int] = None
    main_addr: Optional[str] = None
    main_port: Optional[int] = None
    timeout_s: int = DEFAULT_TIMEOUT_S

    def __post_init__(self) -> None:
        if self.nodes < 1:
            raise LaunchError("--nodes", f"must be >= 1, got {self.nodes}")
        if self.procs_per_node < 1:
            raise LaunchError("--procs-per-node", f"must be >= 1, got {self.procs_per_node}")
        if self.node_rank is not None and not 0 <= self.node_rank < self.nodes:
            raise LaunchError("--node-rank", f"must be in [0, {self.nodes - 1}] for --nodes {self.nodes}, "
                                             f"got {self.node_rank}")
        if self.main_port is not None and not 1 <= self.main_port <= 65534:
            raise LaunchError("--main-port", f"must be in [1, 65534] (the embed phase uses PORT+1), "
                                             f"got {self.main_port}")
        if self.timeout_s < 1:
            raise LaunchError("--timeout", f"must be >= 1 second, got {self.timeout_s}")

    @property
    def world_size(self) -> int:
        return self.nodes * self.procs_per_node


def resolve_template(name: Optional[str], cpu: bool) -> Path:
    """An accelerate config: a path, or a name in configs/accelerate/ (default by --cpu)."""
    name = name or (DEFAULT_CPU_TEMPLATE if cpu else DEFAULT_GPU_TEMPLATE)
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.parent != Path("."):
        if not path.is_file():
            raise LaunchError("--accelerate-config", f"file not found: {name}")
        return path
    for ext in (".yaml", ".yml"):
        candidate = ACCELERATE_CONFIG_DIR / f"{name}{ext}"
        if candidate.is_file():
            return candidate
    known = ", ".join(sorted(p.stem for p in ACCELERATE_CONFIG_DIR.glob("*.y*ml")))
    raise LaunchError("--accelerate-config", f"'{name}' is not a file nor one of {known}")


def display_path(path: Path, cwd: Optional[Path] = None) -> str:
    """Relative to the working directory when below it (shorter commands), else absolute."""
    path = Path(path).resolve()
    cwd = (cwd or Path.cwd()).resolve()
    try:
        return str(path.relative_to(cwd))
    except ValueError:
        return str(path)


def program_argv(phase: str, config: str, overrides: list[str], resume: bool | Shell) -> list[Token]:
    """``distill <phase> CONFIG --set k=v ...`` (what accelerate runs with ``-m``). ``resume``: a
    :class:`Shell` token stands for the flag (the sbatch script decides at run time)."""
    argv: list[Token] = ["distill", phase, config]
    for o in overrides:
        argv += ["--set", o]
    if resume and phase == "train":
        argv.append(resume if isinstance(resume, Shell) else "--resume")
    return argv


def phase_port(port: Token | None, phase: str) -> Token | None:
    if port is None or phase == "train":
        return port
    if isinstance(port, Shell):
        return Shell(f"$(({port.lstrip('$')} + 1))")
    return int(port) + 1


def accelerate_argv(template: str, program: list[Token], *, num_processes: Token, num_machines: Token,
                    machine_rank: Token | None = None, main_addr: Token | None = None,
                    main_port: Token | None = None, rdzv_timeout_s: int | None = None) -> list[Token]:
    """``accelerate launch --config_file T --num_processes N ... -m distill ...``.

    ``num_processes`` is the TOTAL over all machines, as accelerate expects (it starts
    num_processes / num_machines per machine). Flags given here override the template's values.
    """
    argv: list[Token] = ["accelerate", "launch", "--config_file", template,
                         "--num_processes", num_processes, "--num_machines", num_machines]
    if machine_rank is not None:
        argv += ["--machine_rank", machine_rank]
    if main_addr is not None:
        argv += ["--main_process_ip", main_addr]
    if main_port is not None:
        argv += ["--main_process_port", main_port]
    if rdzv_timeout_s is not None:
        # static rendezvous: how long node 0 waits for the other nodes (and they for it) before
        # giving up, instead of torch's default 600 s.
        argv += ["--rdzv_conf", f"timeout={rdzv_timeout_s}"]
    return argv + ["-m", *program]


@dataclass
class Plan:
    """Everything a launch needs, independent of where it runs."""

    config: str  # the run config path as the commands name it
    template: str  # accelerate config path as the commands name it
    cluster: Cluster
    phases: tuple[str, ...]
    overrides: list[str] = field(default_factory=list)
    resume: bool = False
    cpu: bool = False
    grace_s: int = DEFAULT_GRACE_S

    def __post_init__(self) -> None:
        if self.grace_s < 1:
            raise LaunchError("--grace", f"must be >= 1 second, got {self.grace_s}")

    def env(self) -> dict[str, str]:
        """Environment every launcher (and so every rank) gets."""
        env = {TIMEOUT_ENV: str(self.cluster.timeout_s), SHUTDOWN_ENV: str(self.grace_s)}
        if self.cpu:
            # Hidden GPUs: every package (teachers pick NCCL when CUDA is visible) agrees on gloo.
            env["CUDA_VISIBLE_DEVICES"] = ""
        return env

    def node_commands(self, machine_rank: Token | None = None, *, main_addr: Token | None = None,
                      main_port: Token | None = None, num_processes: Token | None = None,
                      num_machines: Token | None = None, resume: Shell | None = None) -> list[list[Token]]:
        """One accelerate command per phase for one node. Arguments left out come from the
        cluster; the SLURM script passes shell expansions (``$SLURM_NODEID``) instead."""
        c = self.cluster
        multi = c.nodes > 1 or num_machines is not None
        if machine_rank is None:
            machine_rank = c.node_rank
        main_addr = c.main_addr if main_addr is None else main_addr
        main_port = c.main_port if main_port is None else main_port
        if multi and main_port is None:
            main_port = DEFAULT_PORT
        return [
            accelerate_argv(
                self.template, program_argv(phase, self.config, self.overrides,
                                            self.resume or (resume if resume is not None else False)),
                num_processes=c.world_size if num_processes is None else num_processes,
                num_machines=c.nodes if num_machines is None else num_machines,
                machine_rank=machine_rank if multi else None,
                main_addr=main_addr,
                main_port=phase_port(main_port, phase),
                rdzv_timeout_s=c.timeout_s if multi else None,
            )
            for phase in self.phases
        ]


def env_prefix(env: dict[str, str]) -> str:
    """``K=V K2=V2 `` as a shell prefix (empty values stay visible: ``CUDA_VISIBLE_DEVICES=``)."""
    return "".join(f"{k}={shlex.quote(v) if v else ''} " for k, v in env.items())


def venv_bin() -> str:
    """The directory of the running interpreter's scripts (where ``accelerate`` was installed)."""
    return os.path.dirname(sys.executable)
