"""Run launcher commands and never hang on a failed one.

Exit status: 0 when every command succeeds; 128 + N when the launcher was stopped by signal N
(passed on: the training loop checkpoints on SIGTERM; resume with ``--resume``); otherwise the
first failing command's status.

Each command runs in its own session (process group), so the launcher can signal a command's
whole tree. Several commands run side by side (the ssh command of each host); when one fails the
others are stopped and the first failure's status is returned. SIGINT / SIGTERM sent to the
launcher are passed on (the training loop checkpoints on SIGTERM); whatever is still running a
grace period later is killed.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Sequence

logger = logging.getLogger("launch")

POLL_S = 0.2
# After a stop request: time for the training loop to checkpoint and torchrun to stop its workers.
GRACE_S = 60.0


def exit_status(returncode: int) -> int:
    """A shell-style exit status: 128 + N for a process killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def run_parallel(commands: Sequence[Sequence[str]], env: dict[str, str] | None = None,
                 grace_s: float = GRACE_S) -> int:
    """Run the commands side by side; 0 when all succeed, else the first failure's status."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    procs: list[subprocess.Popen] = []
    stop = {"signal": None, "at": None}

    def on_signal(signum, frame):  # noqa: ARG001
        if stop["signal"] is None:
            logger.warning("launch: got signal %d, passing it on", signum)
            stop["signal"], stop["at"] = signum, time.monotonic()
            for p in procs:
                if p.poll() is None:
                    _signal_group(p, signum)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for argv in commands:
            procs.append(subprocess.Popen(list(argv), env=full_env, start_new_session=True))
        failed: int | None = None
        failed_at = 0.0
        while True:
            codes = [p.poll() for p in procs]
            if failed is None:
                bad = [c for c in codes if c is not None and c != 0]
                if bad:
                    failed, failed_at = exit_status(bad[0]), time.monotonic()
                    if len(procs) > 1:
                        logger.error("launch: a launcher failed (exit %d); stopping the others", failed)
                    for p in procs:
                        if p.poll() is None:
                            _signal_group(p, signal.SIGTERM)
            if all(c is not None for c in codes):
                break
            started = failed_at if failed is not None else stop["at"]
            if started is not None and time.monotonic() - started > grace_s:
                for p in procs:
                    if p.poll() is None:
                        logger.error("launch: pid %d still running %.0f s after the stop; killing it", p.pid, grace_s)
                        _signal_group(p, signal.SIGKILL)
                for p in procs:
                    p.wait()
                break
            time.sleep(POLL_S)
        if stop["signal"] is not None:
            # Stopped on request: say so (torchrun reports any stop as a plain 1).
            return 128 + stop["signal"]
        return failed or 0
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        for p in procs:
            if p.poll() is None:  # an exception above: leave nothing behind
                _signal_group(p, signal.SIGKILL)
                p.wait()


def run_sequence(commands: Sequence[Sequence[str]], env: dict[str, str] | None = None) -> int:
    """Run the commands one after the other; stop at the first failure and return its status."""
    for argv in commands:
        status = run_parallel([argv], env)
        if status != 0:
            return status
    return 0
