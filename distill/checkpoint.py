"""Checkpoints that are never half-written and never silently wrong.

Layout of ``RUN_DIR/checkpoints/``::

    step_00000200/            one complete checkpoint
        accelerate/           Accelerator.save_state: model (safetensors), optimizer, RNG states
        trainer_state.json    loop step, scheduler, curriculum sampler, counters
        meta.json             teacher manifest and lattice shape (what a resume must match)
        manifest.json         size and sha256 of every file above, written last
    latest                    name of the newest complete checkpoint

A checkpoint is written into ``.tmp-step_*`` and renamed into place only once every rank has
finished and the manifest is written; ``latest`` moves (atomic replace) only after the rename.
A resume verifies the manifest and falls back to the previous good checkpoint, saying why.
Nothing here unpickles arbitrary objects: Accelerate loads with ``weights_only=True`` and the
rest is JSON.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

from distill.errors import CheckpointError

logger = logging.getLogger(__name__)
PREFIX = "step_"
TMP_PREFIX = ".tmp-"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def build_manifest(root: Path) -> dict:
    files = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != "manifest.json":
            files[str(p.relative_to(root))] = {"size": p.stat().st_size, "sha256": sha256_file(p)}
    return {"format": 1, "files": files}


def verify_checkpoint(path: Path) -> None:
    """Raise :class:`CheckpointError` naming the first missing, truncated or altered file."""
    mf = path / "manifest.json"
    if not mf.is_file():
        raise CheckpointError(f"{path}: no manifest.json (incomplete checkpoint)")
    try:
        manifest = json.loads(mf.read_text(encoding="utf-8"))
        files = manifest["files"]
    except (ValueError, KeyError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}/manifest.json is corrupt ({err})") from None
    for rel, info in files.items():
        p = path / rel
        if not p.is_file():
            raise CheckpointError(f"{p}: missing")
        size = p.stat().st_size
        if size != info["size"]:
            raise CheckpointError(f"{p}: {size} bytes, the manifest says {info['size']} (truncated or altered)")
        if sha256_file(p) != info["sha256"]:
            raise CheckpointError(f"{p}: checksum differs from the manifest (altered or corrupt)")


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete-looking checkpoints (renamed into place), newest first."""
    d = checkpoint_dir(run_dir)
    if not d.is_dir():
        return []
    cks = [p for p in d.iterdir() if p.is_dir() and p.name.startswith(PREFIX)]
    return sorted(cks, key=lambda p: int(p.name[len(PREFIX):]), reverse=True)


def find_resume_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint that verifies; a bad one is reported and skipped."""
    d = checkpoint_dir(run_dir)
    candidates = list_checkpoints(run_dir)
    pointer = d / "latest"
    if pointer.is_file():
        name = pointer.read_text(encoding="utf-8").strip()
        first = [p for p in candidates if p.name == name]
        candidates = first + [p for p in candidates if p.name != name]
    for ck in candidates:
        try:
            verify_checkpoint(ck)
            return ck
        except CheckpointError as err:
            logger.warning("skipping checkpoint %s: %s; falling back to the previous one", ck.name, err)
    return None


def read_checkpoint_json(ck: Path, name: str) -> dict:
    return json.loads((ck / name).read_text(encoding="utf-8"))


def save_checkpoint(accelerator, run_dir: Path, step: int, trainer_state: dict, meta: dict, keep_last: int) -> Path:
    """Save on every rank (collective), publish atomically from the main process."""
    d = checkpoint_dir(run_dir)
    final = d / f"{PREFIX}{step:08d}"
    tmp = d / f"{TMP_PREFIX}{PREFIX}{step:08d}"
    if accelerator.is_main_process:
        d.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    try:
        accelerator.save_state(str(tmp / "accelerate"), safe_serialization=True)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            write_json_atomic(tmp / "trainer_state.json", trainer_state)
            write_json_atomic(tmp / "meta.json", meta)
            write_json_atomic(tmp / "manifest.json", build_manifest(tmp))
            _fsync_dir(tmp)
            if final.exists():  # a re-save of the same step (after a resume): replace it
                shutil.rmtree(final)
            os.rename(tmp, final)
            _fsync_dir(d)
            write_text_atomic(d / "latest", final.name + "\n")
            for old in list_checkpoints(run_dir)[keep_last:]:
                shutil.rmtree(old, ignore_errors=True)
    except OSError as err:
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        raise OSError(f"writing checkpoint {final} failed ({err}); the previous checkpoint is unchanged") from err
    accelerator.wait_for_everyone()
    return final


def check_compatible(meta: dict, expected: dict, ck: Path) -> None:
    """Refuse a resume whose teacher set or lattice shape differs from the checkpoint's."""
    diffs = []
    old_t, new_t = meta.get("teachers", {}), expected.get("teachers", {})
    if set(old_t) != set(new_t):
        diffs.append(f"teachers: checkpoint has {sorted(old_t)}, config has {sorted(new_t)}")
    else:
        for name in old_t:
            if old_t[name] != new_t[name]:
                keys = sorted(k for k in set(old_t[name]) | set(new_t[name]) if old_t[name].get(k) != new_t[name].get(k))
                diffs.append(f"teacher '{name}' differs in {', '.join(keys)}")
    old_l, new_l = meta.get("lattice", {}), expected.get("lattice", {})
    for k in sorted(set(old_l) | set(new_l)):
        if old_l.get(k) != new_l.get(k):
            diffs.append(f"student.lattice.{k}: checkpoint {old_l.get(k)!r}, config {new_l.get(k)!r}")
    for k in ("input_teacher", "input_mode", "residual", "skip", "head_hidden"):
        if meta.get(k) != expected.get(k):
            diffs.append(f"student.{k}: checkpoint {meta.get(k)!r}, config {expected.get(k)!r}")
    if diffs:
        raise CheckpointError(f"cannot resume from {ck}: " + "; ".join(diffs))
