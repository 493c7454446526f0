"""One writer per run: the lock a training run holds on its run directory.

The lock file sits beside the run directory, ``<output_dir>/.<name>.lock`` (as the sbatch script
and its log do): the "already exists" check stays a plain non-empty-directory check, and a refused
run creates nothing inside the run directory. It holds its holder's host, pid and start time
(:class:`fileio.Lock`).

A job takes it once: its main process (global rank 0) takes it before anything is computed or
written and holds it until the run ends, whatever the exit (success, error, pre-emption,
KeyboardInterrupt); the other ranks learn the outcome from one broadcast, so a refused job's ranks
all exit 2 together instead of waiting in a collective for a rank that left. A lock whose holder
is a dead process on this host is taken over (logged); a live holder, or one on another host
(nobody here can tell whether it lives), stops the run with one line naming it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from distill.errors import RunDirError
from fileio import Lock, hostname

logger = logging.getLogger(__name__)


class RunLocked(RunDirError):
    """The run directory is held by another writer (exit 2, nothing written)."""


class RunLock(Lock):
    """:class:`fileio.Lock` that also removes the output directory it had to create for the lock
    file when the run leaves it empty (a run refused for bad input leaves nothing behind)."""

    def __init__(self, path: Path, what: str = ""):
        super().__init__(path, what=what)
        self.created = None
        for d in (self.path.parent, *self.path.parent.parents):
            if d.exists():
                break
            self.created = d

    def release(self) -> None:
        super().release()
        d = self.path.parent
        while self.created is not None:
            try:
                d.rmdir()  # only an empty directory
            except OSError:
                return
            if d == self.created:
                self.created = None
            d = d.parent


def lock_path(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    return run_dir.parent / f".{run_dir.name}.lock"


def describe(run_dir: Path, holder: dict) -> str:
    """One line: who holds the run and what to do about it."""
    path = lock_path(run_dir)
    who = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} since {holder.get('started', '?')}"
    if holder.get("what"):
        who += f" ({holder['what']})"
    advice = "wait for it to end or stop it (--resume continues the run afterwards)"
    if holder.get("host") != hostname():
        advice += f"; if that process is gone, delete {path}"
    return f"run directory {run_dir} is in use by {who}: {advice}"


def live_holder(run_dir: Path) -> dict | None:
    """The record of a live holder of the run's lock (or one on another host), else None.

    A look only: nothing is taken. ``distill launch`` uses it to refuse before starting a job."""
    lock = Lock(lock_path(run_dir))
    rec = lock.holder()
    if rec is None or (rec and lock.is_stale(rec)):
        return None
    return rec or {"host": "?", "pid": "?", "what": "unreadable lock file"}


def check_free(run_dir: Path) -> None:
    if (rec := live_holder(run_dir)) is not None:
        raise RunLocked(describe(run_dir, rec))


def acquire(run_dir: Path, state, what: str = "distill train") -> Lock | None:
    """Take the run's lock on the job's main process; raise :class:`RunLocked` on every rank if
    another writer holds it. Returns the held lock (main process) or None (other ranks).

    ``state``: the job's Accelerator (or ``PartialState``): ``is_main_process``,
    ``num_processes``; with several processes it must be initialised (one broadcast)."""
    lock, refusal = None, None
    if state.is_main_process:
        lock = RunLock(lock_path(run_dir), what=f"{what} {run_dir}")
        rec = lock.holder()
        if rec and lock.is_stale(rec):
            logger.warning("run lock %s: its holder (pid %s on %s, since %s) is gone; taking it over",
                           lock.path, rec.get("pid"), rec.get("host"), rec.get("started", "?"))
        holder = lock.try_acquire()
        if holder is not None:
            refusal = describe(run_dir, holder)
            lock.release()  # not held: only tidies what try_acquire created
            lock = None
    try:
        if state.num_processes > 1:
            from accelerate.utils import broadcast_object_list

            refusal = broadcast_object_list([refusal], from_process=0)[0]
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    if refusal is not None:
        if state.num_processes > 1:
            _leave_together()
        raise RunLocked(refusal)
    return lock


def _leave_together() -> None:
    """Every rank of a refused job tears its process group down at the same point, so that no
    rank's gloo/NCCL connections close under another that is still using them (which aborts)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
