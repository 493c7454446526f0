"""Atomic, verified file writes and process locks: the one leaf module every writer uses.

Standard library only, so the query-time ``Encoder``, the teachers, the target store and the
trainer can all import it without importing each other (``lattice/`` keeps its own few lines:
it must import nothing of this project).

Writes
    ``write_bytes_atomic`` / ``write_text_atomic`` / ``write_json_atomic`` write a temporary file
    beside the target, fsync it and rename it over the target; ``write_dir_atomic`` does the same
    for a whole directory. A reader sees the old content or the new one, never a mix, and a write
    that fails or is killed leaves only a temporary whose name says who wrote it.

Temporaries
    Every temporary is named ``.tmp-<name>~<host>~<pid>~<random>``: ``temp_owner`` reads the
    writer back, and ``clean_stale_temps`` removes the temporaries of writers that are gone (a
    dead pid on this host) without touching a live writer's.

Locks
    :class:`Lock` is an ``O_EXCL`` lock file holding its holder (host, pid, start time, what it
    is doing). A lock whose holder is a dead process on this host is stale and taken over; a live
    holder, or one on another host, is reported by :class:`LockHeld` with who holds it.
"""

from __future__ import annotations

import datetime as _dt
import errno
import hashlib
import json
import os
import shutil
import socket
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional, Union

PathLike = Union[str, "os.PathLike[str]"]
TMP_PREFIX = ".tmp-"
_SEP = "~"


def sha256_file(path: PathLike, chunk: int = 1 << 23) -> str:
    """sha256 of a file's bytes, read in blocks of ``chunk`` bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fsync_dir(path: PathLike) -> None:
    """Make a rename inside ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def hostname() -> str:
    return socket.gethostname().replace(_SEP, "-") or "localhost"


def temp_path(path: PathLike, tag: str = "") -> Path:
    """A fresh temporary sibling of ``path`` that names its writer: ``.tmp-<name>[.tag]~host~pid~rand``."""
    path = Path(path)
    name = path.name + (f".{tag}" if tag else "")
    return path.with_name(f"{TMP_PREFIX}{name}{_SEP}{hostname()}{_SEP}{os.getpid()}{_SEP}{uuid.uuid4().hex[:8]}")


def temp_owner(name: str) -> Optional[tuple[str, int]]:
    """(host, pid) of the writer of a temporary made by :func:`temp_path`, or None for another name."""
    if not name.startswith(TMP_PREFIX):
        return None
    parts = name.rsplit(_SEP, 3)
    if len(parts) != 4 or not parts[2].isdigit():
        return None
    return parts[1], int(parts[2])


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (a zombie counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return True


def is_stale_temp(name: str) -> bool:
    """A temporary whose writer is a dead process on this host. Temporaries of other hosts and
    unnamed ones are never called stale (nobody here can tell whether their writer lives)."""
    owner = temp_owner(name)
    return owner is not None and owner[0] == hostname() and not pid_alive(owner[1])


def remove_path(path: PathLike) -> None:
    """Delete a file or a directory tree (symlinks are unlinked, never followed)."""
    p = Path(path)
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


def clean_stale_temps(directory: PathLike, recursive: bool = False) -> list[Path]:
    """Remove the temporaries of dead writers under ``directory``; returns what was removed."""
    d = Path(directory)
    if not d.is_dir():
        return []
    removed = []
    for p in sorted(d.rglob(f"{TMP_PREFIX}*") if recursive else d.glob(f"{TMP_PREFIX}*")):
        if is_stale_temp(p.name) and (p.exists() or p.is_symlink()):
            remove_path(p)
            removed.append(p)
    return removed


def write_bytes_atomic(path: PathLike, data: bytes) -> None:
    """Write ``data`` beside ``path``, fsync, rename over ``path`` (old or new content, never a mix)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_text_atomic(path: PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: PathLike, obj: Any, indent: Optional[int] = 2, sort_keys: bool = True) -> None:
    write_text_atomic(path, json.dumps(obj, indent=indent, sort_keys=sort_keys))


def fsync_tree(root: PathLike) -> None:
    """fsync every file and directory below ``root`` (before it is renamed into place)."""
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = os.path.join(dirpath, name)
            if os.path.islink(p):
                continue
            with open(p, "rb") as f:
                os.fsync(f.fileno())
        fsync_dir(dirpath)


def write_dir_atomic(path: PathLike, fill: Callable[[Path], None], *, replace: bool = True,
                     sync: bool = True) -> bool:
    """``fill(tmp)`` creates and fills a directory ``tmp`` beside ``path``, which is then renamed
    into place, so a reader never sees a half-written directory.

    ``replace=True``: an existing ``path`` is moved aside (not deleted) until the new one is in
    place. ``replace=False``: an existing ``path`` (another writer was first) is kept and ours is
    dropped. Returns True when ours was published. A ``fill`` that raises leaves ``path`` as it
    was and no temporary behind; a killed one leaves a temporary :func:`clean_stale_temps` removes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        fill(tmp)
        if not tmp.is_dir():
            raise FileNotFoundError(f"{tmp}: fill() did not create the directory")
        if sync:
            fsync_tree(tmp)
    except BaseException:
        remove_path(tmp)
        raise
    old = None
    try:
        if path.exists():
            if not replace:
                remove_path(tmp)
                return False
            old = temp_path(path, "old")
            os.replace(path, old)
        try:
            os.rename(tmp, path)
        except OSError as err:  # a concurrent writer published first
            if err.errno not in (errno.EEXIST, errno.ENOTEMPTY) or replace:
                raise
            remove_path(tmp)
            return False
    except BaseException:
        remove_path(tmp)
        if old is not None and not path.exists():
            os.replace(old, path)
        raise
    if old is not None:
        remove_path(old)
    fsync_dir(path.parent)
    return True


class LockHeld(RuntimeError):
    """The lock is held by a live process (or one on another host). ``holder``: its record."""

    def __init__(self, path: Path, holder: dict):
        self.path, self.holder = path, holder
        who = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}"
        since = holder.get("started", "?")
        what = f" ({holder['what']})" if holder.get("what") else ""
        super().__init__(f"{path} is held by {who} since {since}{what}")


class Lock:
    """An exclusive lock file. ``with Lock(path, what="training"):`` or ``acquire()``/``release()``.

    The file is created with ``O_EXCL`` and holds ``{"host", "pid", "started", "what"}``. A lock
    left by a dead process on this host is stale: it is taken over (one process wins the takeover).
    ``stale_after_s``: also treat a lock whose file was not touched for that long as stale
    (for holders on other hosts, which call :meth:`touch` now and then).
    """

    def __init__(self, path: PathLike, what: str = "", stale_after_s: Optional[float] = None):
        self.path, self.what, self.stale_after_s = Path(path), what, stale_after_s
        self.held = False

    def holder(self) -> Optional[dict]:
        """The record of whoever holds the lock now (None when nobody does)."""
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError:
            return {}
        try:
            rec = json.loads(raw)
        except ValueError:
            rec = {}
        return rec if isinstance(rec, dict) else {}

    def is_stale(self, rec: dict) -> bool:
        if rec.get("host") == hostname() and isinstance(rec.get("pid"), int) and not pid_alive(rec["pid"]):
            return True
        if self.stale_after_s is not None:
            try:
                age = _dt.datetime.now().timestamp() - self.path.stat().st_mtime
            except OSError:
                return False
            return age > self.stale_after_s
        return False

    def try_acquire(self) -> Optional[dict]:
        """Take the lock; returns None on success, else the live holder's record."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                rec = self.holder()
                if rec is None:
                    continue  # released meanwhile: try again
                if not rec and self._young():
                    return {"host": "?", "pid": "?", "what": "being written"}
                if rec and not self.is_stale(rec):
                    return rec
                # Stale (or unreadable and old): move it aside; only one contender's rename succeeds.
                aside = temp_path(self.path, "stale")
                try:
                    os.rename(self.path, aside)
                except FileNotFoundError:
                    continue
                remove_path(aside)
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"host": hostname(), "pid": os.getpid(), "what": self.what,
                           "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}, f)
                f.flush()
                os.fsync(f.fileno())
            self.held = True
            return None
        return self.holder() or {}

    def _young(self, seconds: float = 5.0) -> bool:
        try:
            return _dt.datetime.now().timestamp() - self.path.stat().st_mtime < seconds
        except OSError:
            return False

    def acquire(self) -> Lock:
        holder = self.try_acquire()
        if holder is not None:
            raise LockHeld(self.path, holder)
        return self

    def touch(self) -> None:
        if self.held:
            os.utime(self.path)

    def release(self) -> None:
        if not self.held:
            return
        rec = self.holder()
        if rec and rec.get("pid") == os.getpid() and rec.get("host") == hostname():
            self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> Lock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


__all__ = [
    "TMP_PREFIX", "Lock", "LockHeld", "clean_stale_temps", "fsync_dir", "fsync_tree", "hostname", "is_stale_temp",
    "pid_alive", "remove_path", "sha256_file", "temp_owner", "temp_path", "write_bytes_atomic", "write_dir_atomic",
    "write_json_atomic", "write_text_atomic",
]
