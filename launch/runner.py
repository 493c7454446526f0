"""Run launcher commands and never hang on a failed one.

Exit status: 0 when every command succeeds; 75 (EX_TEMPFAIL) when the run was pre-empted after a
clean checkpoint, so ``--resume`` continues it; 128 + N when the launcher was stopped by signal N
otherwise; else the first failing command's status.

Each command runs in its own session (process group), so the launcher can signal a command's
whole tree; on Linux it also dies with the launcher (``PR_SET_PDEATHSIG``: SIGTERM), so even a
SIGKILLed launcher leaves no trainers behind. Several commands run side by side (one ssh per
host); when one fails the others are stopped and the first failure's status is returned.

Stopping: SIGINT / SIGTERM sent to the launcher are passed on (torchrun passes them to the
workers; the training loop checkpoints on SIGTERM and exits 75); whatever still runs ``grace_s``
later is killed. An ssh command is stopped by closing its stdin instead: the node launcher at the
other end (``distill launch --node-rank R`` with ``$DISTILL_LAUNCH_STOP_ON_EOF``) stops its own
job when its stdin ends -- which also happens when this launcher is killed or the connection drops.

Ranks' statuses: torchrun reports any worker that exits non-zero as a plain failure (and
accelerate turns it into 1), so each rank writes its own exit status into ``$DISTILL_STATUS_DIR``
(``distill/__main__.py``). A failed command whose reporting ranks all exited with the same
non-zero status counts as that status: 75 when they were pre-empted after a checkpoint, 2 when
they refused bad input (a run directory another job holds, say).
"""

from __future__ import annotations

import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

logger = logging.getLogger("launch")

POLL_S = 0.2
# After a stop request: time for the training loop to checkpoint and torchrun to stop its workers.
GRACE_S = 120.0
EXIT_PREEMPTED = 75  # as distill.train.EXIT_PREEMPTED (not imported: the launcher stays light)
STATUS_ENV = "DISTILL_STATUS_DIR"
STOP_ON_EOF_ENV = "DISTILL_LAUNCH_STOP_ON_EOF"


def exit_status(returncode: int) -> int:
    """A shell-style exit status: 128 + N for a process killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _die_with_parent():
    """preexec_fn: SIGTERM this child when the launcher dies (Linux), else nothing."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork
    parent = os.getpid()

    def preexec() -> None:
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the launcher died before prctl
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


class Stop:
    """A stop request shared by the phases of one launch: a signal to the launcher, or (node
    launchers of a hostfile run) the end of stdin. Installs the signal handlers while entered."""

    def __init__(self, watch_stdin: bool = False):
        self.signal: int | None = None
        self.at: float | None = None
        self.procs: list[tuple[subprocess.Popen, bool]] = []  # (process, stopped by closing stdin)
        self.stdin_fd = None
        if watch_stdin:
            try:
                self.stdin_fd = sys.stdin.fileno()
            except (AttributeError, OSError, ValueError):  # no usable stdin: nothing to watch
                logger.warning("launch: %s is set but stdin cannot be read; not watching it", STOP_ON_EOF_ENV)
        self._old: dict = {}

    def __enter__(self) -> Stop:
        self._old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)

    def _on_signal(self, signum, frame) -> None:  # noqa: ARG002
        self.request(signum, f"got signal {signum}")

    def request(self, signum: int, why: str) -> None:
        if self.signal is not None:
            return
        logger.warning("launch: %s; stopping (trainers save a checkpoint first, up to the grace period)", why)
        self.signal, self.at = signum, time.monotonic()
        for p, by_stdin in self.procs:
            if p.poll() is None:
                stop_process(p, by_stdin, signum)

    def poll_stdin(self) -> None:
        """Node launcher of a hostfile run: stdin ended (the launcher that started us is gone)."""
        if self.stdin_fd is None:
            return
        try:
            ready, _, _ = select.select([self.stdin_fd], [], [], 0)
            ended = bool(ready) and not os.read(self.stdin_fd, 65536)
        except (OSError, ValueError):
            ended = True
        if ended:
            self.stdin_fd = None
            self.request(signal.SIGTERM, "stdin closed (the launcher that started this node is gone)")


def stop_process(p: subprocess.Popen, by_stdin: bool, signum: int = signal.SIGTERM) -> None:
    if by_stdin and p.stdin is not None:
        try:
            p.stdin.close()
        except OSError:
            pass
    else:
        _signal_group(p, signum)


def reported_statuses(directory: str) -> list[int]:
    out = []
    for name in sorted(os.listdir(directory)):
        try:
            with open(os.path.join(directory, name)) as f:
                out.append(int(f.read().strip()))
        except (OSError, ValueError):
            continue
    return out


def run_parallel(commands: Sequence[Sequence[str]], env: dict[str, str] | None = None,
                 grace_s: float = GRACE_S, *, via_stdin: bool = False, stop: Stop | None = None) -> int:
    """Run the commands side by side; 0 when all succeed, 75 when all were pre-empted after a
    checkpoint, else the first failure's status (its ranks' own, see above; 128 + N when stopped
    by signal N).

    ``via_stdin``: each command gets a pipe as stdin, and is stopped by closing it (ssh commands
    whose remote end stops on EOF); otherwise commands report their ranks' statuses through
    ``$DISTILL_STATUS_DIR`` and are stopped by signalling their process group."""
    if stop is None:
        with Stop() as own:
            return run_parallel(commands, env, grace_s, via_stdin=via_stdin, stop=own)
    status_dirs = [None if via_stdin else tempfile.mkdtemp(prefix="distill-status-") for _ in commands]
    procs: list[subprocess.Popen] = []
    try:
        stop.poll_stdin()
        if stop.signal is not None:
            return 128 + stop.signal  # stopped between phases: start nothing
        for argv, status_dir in zip(commands, status_dirs):
            full_env = dict(os.environ)
            full_env.update(env or {})
            if status_dir is not None:
                full_env[STATUS_ENV] = status_dir
            p = subprocess.Popen(list(argv), env=full_env, start_new_session=True, preexec_fn=_die_with_parent(),
                                 stdin=subprocess.PIPE if via_stdin else None)
            procs.append(p)
            stop.procs.append((p, via_stdin))
            if stop.signal is not None:  # a signal while starting them
                stop_process(p, via_stdin, stop.signal)
        codes = _wait(procs, stop, grace_s, via_stdin)
        return _outcome(codes, status_dirs, stop)
    finally:
        for p in procs:
            if p.poll() is None:  # an exception above: leave nothing behind
                _signal_group(p, signal.SIGKILL)
                p.wait()
            if p.stdin is not None:
                p.stdin.close()
        stop.procs = [(p, b) for p, b in stop.procs if p not in procs]
        for d in status_dirs:
            if d is not None:
                shutil.rmtree(d, ignore_errors=True)


def _wait(procs: list[subprocess.Popen], stop: Stop, grace_s: float, via_stdin: bool) -> list[tuple[int, float]]:
    """Wait for every process; stop the others at the first failure; kill what outlives the grace
    period. Returns (exit status, time it was seen) per process."""
    seen: dict[int, tuple[int, float]] = {}
    failed_at = None
    while True:
        stop.poll_stdin()
        for i, p in enumerate(procs):
            if i not in seen and p.poll() is not None:
                seen[i] = (exit_status(p.returncode), time.monotonic())
                if seen[i][0] != 0 and failed_at is None:
                    failed_at = time.monotonic()
                    if len(procs) > 1 and stop.signal is None:
                        logger.error("launch: a launcher failed (exit %d); stopping the others", seen[i][0])
                    for q in procs:
                        if q.poll() is None:
                            stop_process(q, via_stdin)
        if len(seen) == len(procs):
            return [seen[i] for i in range(len(procs))]
        started = min(t for t in (failed_at, stop.at) if t is not None) if (failed_at or stop.at) else None
        if started is not None and time.monotonic() - started > grace_s:
            for p in procs:
                if p.poll() is None:
                    logger.error("launch: pid %d still running %.0f s after the stop; killing it", p.pid, grace_s)
                    _signal_group(p, signal.SIGKILL)
            for i, p in enumerate(procs):
                if i not in seen:
                    p.wait()
                    seen[i] = (exit_status(p.returncode), time.monotonic())
            return [seen[i] for i in range(len(procs))]
        time.sleep(POLL_S)


def _outcome(codes: list[tuple[int, float]], status_dirs: list, stop: Stop) -> int:
    mapped = []
    for (code, _), d in zip(codes, status_dirs):
        if code != 0 and d is not None:
            reported = set(reported_statuses(d))
            if len(reported) == 1 and 0 not in reported:
                code = reported.pop()
        mapped.append(code)
    if all(c == 0 for c in mapped):
        return 0
    if EXIT_PREEMPTED in mapped and all(c in (0, EXIT_PREEMPTED) for c in mapped):
        logger.warning("launch: pre-empted after a clean checkpoint (exit %d); --resume continues the run",
                       EXIT_PREEMPTED)
        return EXIT_PREEMPTED
    if stop.signal is not None:
        # Stopped on request: say so (torchrun reports any stop as a plain 1).
        return 128 + stop.signal
    first = min((t, c) for (c0, t), c in zip(codes, mapped) if c != 0)
    return first[1]


def run_sequence(commands: Sequence[Sequence[str]], env: dict[str, str] | None = None,
                 grace_s: float = GRACE_S, *, watch_stdin: bool = False) -> int:
    """Run the commands one after the other; stop at the first failure and return its status.
    A stop request ends the running command and starts no other. ``watch_stdin``: the end of
    stdin is a stop request (a hostfile run's node launcher)."""
    with Stop(watch_stdin=watch_stdin) as stop:
        for argv in commands:
            status = run_parallel([argv], env, grace_s, stop=stop)
            if status != 0:
                return status
    return 0
