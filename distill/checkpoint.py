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
Leftover ``.tmp-*`` entries (a write that was killed) are never loaded and are removed by the
next save.

Nothing here unpickles arbitrary objects: the model is safetensors, the rest is JSON, and the
few pickle-based files Accelerate writes (optimizer, RNG states) must load under
``torch.load(weights_only=True)`` while the checkpoint is verified -- a file that needs any other
global is refused like a corrupt one. (Accelerate itself loads with ``weights_only=True`` too, but
silently skips RNG states it cannot load; verifying first makes that a reported fallback.)
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

from distill.errors import CheckpointError
from fileio import fsync_dir, sha256_file, write_dir_atomic, write_json_atomic, write_text_atomic  # noqa: F401 (re-exported)

logger = logging.getLogger(__name__)
PREFIX = "step_"
TMP_PREFIX = ".tmp-"
# What a failed write raises: OSError from Python's own I/O, but torch.save reports a full disk as
# RuntimeError ("PytorchStreamWriter failed writing file" / "unexpected pos") and safetensors as
# SafetensorError ("Error while serializing: I/O error: ..."). All mean "this checkpoint was not
# written": clean up and report it as a failed write.
try:
    from safetensors import SafetensorError
except ImportError:  # pragma: no cover - safetensors is a dependency of accelerate
    SafetensorError = OSError
WRITE_ERRORS = (OSError, RuntimeError, SafetensorError)
# Files Accelerate writes with torch.save (pickle inside): checked with weights_only=True.
PICKLE_SUFFIXES = (".bin", ".pkl", ".pt", ".pth")


def build_manifest(root: Path) -> dict:
    files = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != "manifest.json":
            files[str(p.relative_to(root))] = {"size": p.stat().st_size, "sha256": sha256_file(p)}
    return {"format": 1, "files": files}


def _weights_only_refusal(err: Exception) -> str:
    """The informative line of torch's (long, multi-line) weights-only refusal: the global it met."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    for line in lines:
        if re.search(r"unsupported|GLOBAL", line, re.IGNORECASE) and "default value" not in line:
            return line[:200]
    return (lines[0] if lines else type(err).__name__)[:200]


def check_safe_pickles(path: Path) -> None:
    """Every pickle-based file of the checkpoint must load with ``weights_only=True``.

    Uses Accelerate's own loader (same allow-list of numpy globals for the RNG states), memory-
    mapped where the file is a zip archive so the tensor data is not read. A file that needs any
    other global -- a planted object whose unpickling would run code -- is refused, never run.
    """
    from accelerate.utils import load as accelerate_load

    for p in sorted(path.rglob("*")):
        if not (p.is_file() and p.suffix in PICKLE_SUFFIXES):
            continue
        try:
            accelerate_load(str(p), map_location="cpu", mmap=zipfile.is_zipfile(p))
        except Exception as err:  # UnpicklingError, RuntimeError, EOFError ... all mean "refuse"
            raise CheckpointError(
                f"{p}: refused: it does not load as plain weights under weights_only=True "
                f"({_weights_only_refusal(err)})"
            ) from None


def verify_checkpoint(path: Path, safe_pickles: bool = True) -> None:
    """Raise :class:`CheckpointError` naming the first missing, truncated, altered or unsafe file."""
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
    if safe_pickles:
        check_safe_pickles(path)


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete-looking checkpoints (renamed into place), newest first."""
    d = checkpoint_dir(run_dir)
    if not d.is_dir():
        return []
    cks = [p for p in d.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and p.name[len(PREFIX):].isdigit()]
    return sorted(cks, key=lambda p: int(p.name[len(PREFIX):]), reverse=True)


def find_resume_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint ``latest`` names, else the newest one, that verifies; a bad one is reported and
    skipped (falling back to the previous one). ``.tmp-*`` directories are never candidates."""
    candidates = list_checkpoints(run_dir)
    name = read_latest(run_dir)
    if name is not None:
        first = [p for p in candidates if p.name == name]
        candidates = first + [p for p in candidates if p.name != name]
    for ck in candidates:
        try:
            verify_checkpoint(ck)
            return ck
        except CheckpointError as err:
            logger.warning("skipping checkpoint %s: %s; falling back to the previous one", ck.name, err)
    return None


def read_latest(run_dir: Path) -> str | None:
    """The checkpoint name the ``latest`` pointer holds (None if there is no readable pointer)."""
    pointer = checkpoint_dir(run_dir) / "latest"
    try:
        name = pointer.read_bytes().decode("utf-8", errors="replace").strip()
    except OSError:
        return None
    return name or None


def remove_leftovers(d: Path) -> list[str]:
    """Delete ``.tmp-*`` entries under a checkpoint directory (writes that never finished)."""
    removed = []
    if not d.is_dir():
        return removed
    for p in d.iterdir():
        if p.name.startswith(TMP_PREFIX):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed.append(p.name)
    if removed:
        logger.info("removed unfinished checkpoint writes: %s", ", ".join(sorted(removed)))
    return removed


def read_checkpoint_json(ck: Path, name: str) -> dict:
    return json.loads((ck / name).read_text(encoding="utf-8"))


def save_checkpoint(accelerator, run_dir: Path, step: int, trainer_state: dict, meta: dict, keep_last: int,
                    before_publish: Callable[[Path], None] | None = None) -> Path:
    """Save on every rank (collective), publish atomically from the main process.

    ``before_publish(tmp_dir)``, if given, runs on the main process once the model and optimiser
    files are in the temporary directory and before the manifest is written (tests stop there)."""
    d = checkpoint_dir(run_dir)
    final = d / f"{PREFIX}{step:08d}"
    tmp = d / f"{TMP_PREFIX}{PREFIX}{step:08d}"
    replaced = d / f"{TMP_PREFIX}replaced-{PREFIX}{step:08d}"
    if accelerator.is_main_process:
        d.mkdir(parents=True, exist_ok=True)
        remove_leftovers(d)  # killed writes of any step; never loaded, so safe to drop
    accelerator.wait_for_everyone()
    try:
        accelerator.save_state(str(tmp / "accelerate"), safe_serialization=True)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            if before_publish is not None:
                before_publish(tmp)
            write_json_atomic(tmp / "trainer_state.json", trainer_state)
            write_json_atomic(tmp / "meta.json", meta)
            write_json_atomic(tmp / "manifest.json", build_manifest(tmp))
            fsync_dir(tmp)
            if final.exists():  # a re-save of the same step (after a resume): move the old one aside
                os.rename(final, replaced)
            os.rename(tmp, final)
            fsync_dir(d)
            write_text_atomic(d / "latest", final.name + "\n")
            shutil.rmtree(replaced, ignore_errors=True)
            for old in list_checkpoints(run_dir)[keep_last:]:
                shutil.rmtree(old, ignore_errors=True)
    except WRITE_ERRORS as err:
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            if replaced.exists() and not final.exists():  # put the old same-step checkpoint back
                os.rename(replaced, final)
        what = str(err) if isinstance(err, OSError) else f"{type(err).__name__}: {err}"
        raise OSError(f"writing checkpoint {final} failed ({what}); the previous checkpoint is unchanged") from err
    accelerator.wait_for_everyone()
    return final


def config_meta(cfg) -> dict:
    """What a resume must match, as far as the config alone tells: the teacher set (everything
    that changes targets) and the student's fields without the lattice sizes only the teachers'
    dimensions fix. ``cfg`` is a :class:`distill.config.Config`; :meth:`Checkpointer.meta` is the
    full version, from the built student."""
    from distill.students import section_config

    return {"teachers": {t.name: t.embedding_fields() for t in cfg.teachers},
            "data": data_meta(cfg.data), **section_config(cfg.student, cfg.input_names())}


def data_meta(data) -> dict:
    """The data fields a resume must match: every one that changes which examples the run reads,
    their splits or their order (``on_error`` only decides whether a bad row stops the run)."""
    from dataclasses import asdict

    return {k: v for k, v in asdict(data).items() if k != "on_error"}


def run_meta(cfg, student) -> dict:
    """config_meta plus what the built student fixed (lattice sizes, tokenizer size and pad id)."""
    conf = student.student_config()
    conf.pop("teacher_dims")  # implied by the teachers' fields
    return {"teachers": config_meta(cfg)["teachers"], "data": data_meta(cfg.data), **conf}


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_compatible(meta: dict, expected: dict, ck: Path, partial: bool = False) -> None:
    """Refuse a resume whose teacher set, data or student differs from the checkpoint's.

    Both are dicts as :func:`run_meta` writes them; every field is compared, generically.
    ``partial``: compare only what ``expected`` holds (a check from the config alone, before the
    teachers' dimensions are known, so a refusal comes before anything is computed or written).
    A checkpoint written before its meta held the data settings is not checked on them.
    """
    diffs = []
    old_t, new_t = meta.get("teachers", {}), expected.get("teachers", {})
    if "teachers" in expected or not partial:
        if set(old_t) != set(new_t):
            diffs.append(f"teachers: checkpoint has {sorted(old_t)}, config has {sorted(new_t)}")
        else:
            for name in old_t:
                if old_t[name] != new_t[name]:
                    keys = sorted(k for k in set(old_t[name]) | set(new_t[name])
                                  if old_t[name].get(k) != new_t[name].get(k))
                    diffs.append(f"teacher '{name}' differs in {', '.join(keys)}")
    if isinstance(meta.get("data"), dict) and "data" in expected:
        old_d, new_d = meta["data"], expected["data"]
        for k in sorted(set(old_d) | set(new_d)):
            if old_d.get(k) != new_d.get(k):
                diffs.append(f"data.{k}: checkpoint {old_d.get(k)!r}, config {new_d.get(k)!r}")
    old_s = _flatten({k: v for k, v in meta.items() if k not in ("teachers", "data")})
    new_s = _flatten({k: v for k, v in expected.items() if k not in ("teachers", "data")})
    for k in sorted(set(new_s) if partial else set(old_s) | set(new_s)):
        if old_s.get(k) != new_s.get(k):
            diffs.append(f"student.{k}: checkpoint {old_s.get(k)!r}, config {new_s.get(k)!r}")
    if diffs:
        raise CheckpointError(f"cannot resume from {ck}: " + "; ".join(diffs))


def prepare_run_dir(run_dir: Path, resume: bool) -> Path | None:
    """Refuse to overwrite a finished or running run; return the checkpoint to resume from."""
    if not resume:
        from distill.config import check_new_run_dir

        check_new_run_dir(run_dir)
        return None
    ck = find_resume_checkpoint(run_dir)
    if ck is None and list_checkpoints(run_dir):
        raise CheckpointError(f"{run_dir}: no checkpoint passed verification; refusing to start over it")
    return ck


class Checkpointer:
    """Saves and restores a run's training state: the Accelerate state (model, optimiser, RNG),
    the trainer's own state dict and the resume manifest ``meta``."""

    def __init__(self, accelerator, run_dir: Path, meta: dict, keep_last: int):
        self.accelerator, self.run_dir, self.meta, self.keep_last = accelerator, run_dir, meta, keep_last

    def before_publish(self, tmp: Path) -> None:
        """Called mid-write (main process), after the model files, before the manifest."""

    def save(self, step: int, trainer_state: dict) -> Path:
        return save_checkpoint(self.accelerator, self.run_dir, step, trainer_state, self.meta, self.keep_last,
                               before_publish=self.before_publish)

    def restore(self, ck: Path) -> dict:
        """Check ``ck`` matches this run, load the Accelerate state; return the trainer state dict."""
        check_compatible(read_checkpoint_json(ck, "meta.json"), self.meta, ck)
        self.accelerator.load_state(str(ck / "accelerate"))
        return read_checkpoint_json(ck, "trainer_state.json")
