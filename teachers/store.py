"""Target store: teacher embeddings computed once, kept on disk, reused while nothing changed.

Layout (one directory per entry, named by its fingerprint)::

    <root>/<fingerprint>/embeddings.npy    (N, dim) float32, read memory-mapped
    <root>/<fingerprint>/manifest.json     fingerprint inputs, shape, dtype, size, sha256, created

The fingerprint is the sha256 of everything that changes the embeddings: the spec's embedding
fields (``TeacherSpec.embedding_fields()``), the weights identity (``teachers.source``), the
role and its prefix, the texts (sha256 over them, in order), ``POOLING_CODE_VERSION`` and
``STORE_FORMAT_VERSION``. Any change gives a new entry; an old entry is never silently reused.

Writes are atomic: the entry is written in a hidden temporary directory beside it and renamed
into place, so a reader sees a whole entry or none. An entry whose data file's size or sha256
disagrees with its manifest (truncated, corrupted, half-copied) is reported and rebuilt.
In a multi-process job only rank 0 checks and writes; the other ranks wait at a barrier and
then open the finished entries read-only.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch

from fileio import sha256_file as _file_sha256

from . import distributed as tdist
from .kinds import weights_identity
from .pooling import POOLING_CODE_VERSION
from .spec import TeacherSpec
from .teacher import load_teacher

log = logging.getLogger(__name__)

STORE_FORMAT_VERSION = 1
DATA_FILE = "embeddings.npy"
MANIFEST_FILE = "manifest.json"


def field_role(field: str) -> str:
    """The prompt role for a text field: questions are queries, everything else answers."""
    return "query" if field == "question" else "answer"


def texts_digest(texts: Sequence[str]) -> str:
    """sha256 over the texts in order (length-prefixed, so ["ab"] != ["a", "b"])."""
    h = hashlib.sha256()
    for t in texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def fingerprint_inputs(spec: TeacherSpec, weights_id: str, role: str, texts_sha256: str, n_texts: int) -> dict:
    """Everything that changes a stored embedding (the manifest records it as is).

    Of the two prefixes only the role's own counts: a new query prompt recomputes the
    questions, not the answers.
    """
    fields = spec.embedding_fields()
    fields.pop("query_prefix", None)
    fields.pop("answer_prefix", None)
    return {
        "store_format": STORE_FORMAT_VERSION,
        "pooling_code_version": POOLING_CODE_VERSION,
        "spec": fields,
        "weights": weights_id,
        "role": role,
        "prefix": spec.query_prefix if role == "query" else spec.answer_prefix,
        "texts_sha256": texts_sha256,
        "n_texts": n_texts,
    }


def fingerprint(inputs: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


class TargetStore:
    """Directory of fingerprinted embedding entries. Safe to share between runs."""

    def __init__(self, root: Union[str, Path]):
        self.root = Path(root)

    def entry_dir(self, fp: str) -> Path:
        return self.root / fp

    def manifest(self, fp: str) -> dict:
        """The manifest of entry ``fp`` (raises ``FileNotFoundError`` if there is none)."""
        return json.loads((self.entry_dir(fp) / MANIFEST_FILE).read_text())

    def entries(self) -> list[dict]:
        """Manifests of every readable entry, oldest first (corrupt ones are skipped)."""
        out = []
        if not self.root.is_dir():
            return out
        for d in self.root.iterdir():
            if d.is_dir() and not d.name.startswith("."):
                try:
                    out.append(self.manifest(d.name))
                except (OSError, ValueError):
                    continue
        return sorted(out, key=lambda m: m.get("created", ""))

    def check(self, fp: str, full: bool = True) -> tuple[bool, str]:
        """(usable, reason). ``full`` also compares the data file's sha256 with the manifest's."""
        d = self.entry_dir(fp)
        if not d.exists():
            return False, "missing"
        try:
            m = self.manifest(fp)
        except (OSError, ValueError) as err:
            return False, f"unreadable manifest ({err})"
        data = d / m.get("file", DATA_FILE)
        if not data.is_file():
            return False, "data file missing"
        size = data.stat().st_size
        if size != m.get("size"):
            return False, f"data file is {size} bytes, manifest says {m.get('size')}"
        if m.get("fingerprint") != fp:
            return False, "manifest belongs to another fingerprint"
        if full:
            digest = _file_sha256(data)
            if digest != m.get("sha256"):
                return False, "sha256 of the data file differs from the manifest"
        return True, "ok"

    def load(self, fp: str, verify: bool = True) -> Optional[np.ndarray]:
        """The entry as a read-only memmap (N, dim) float32, or None if missing or corrupt."""
        ok, why = self.check(fp, full=verify)
        if not ok:
            if why != "missing":
                log.warning("target store: entry %s is corrupt (%s); it will be rebuilt", fp[:12], why)
            return None
        m = self.manifest(fp)
        try:
            arr = np.load(self.entry_dir(fp) / m["file"], mmap_mode="r")
        except ValueError as err:
            log.warning("target store: entry %s does not load (%s); it will be rebuilt", fp[:12], err)
            return None
        if list(arr.shape) != m["shape"] or str(arr.dtype) != m["dtype"]:
            log.warning("target store: entry %s has shape %s %s, manifest says %s %s; it will be rebuilt",
                        fp[:12], list(arr.shape), arr.dtype, m["shape"], m["dtype"])
            return None
        return arr

    def put(self, fp: str, array: Union[np.ndarray, torch.Tensor], inputs: Mapping[str, Any],
            extra: Optional[Mapping[str, Any]] = None) -> np.ndarray:
        """Write entry ``fp`` atomically (replacing a corrupt one) and return it memory-mapped."""
        if isinstance(array, torch.Tensor):
            array = array.detach().cpu().numpy()
        arr = np.ascontiguousarray(array, dtype=np.float32)
        if arr.ndim != 2:
            raise ValueError(f"array: expected (N, dim), got shape {arr.shape}")
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{fp[:16]}-", dir=self.root))
        trash = None
        try:
            data = tmp / DATA_FILE
            with open(data, "wb") as f:
                np.save(f, arr)
                f.flush()
                os.fsync(f.fileno())
            import transformers

            manifest = {
                "fingerprint": fp,
                "inputs": dict(inputs),
                **dict(extra or {}),
                "shape": list(arr.shape),
                "dtype": str(arr.dtype),
                "file": DATA_FILE,
                "size": data.stat().st_size,
                "sha256": _file_sha256(data),
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
            }
            _write_synced(tmp / MANIFEST_FILE, json.dumps(manifest, indent=2, sort_keys=True).encode())
            final = self.entry_dir(fp)
            try:
                os.rename(tmp, final)  # fails when the entry directory already exists
            except OSError:
                # Another job sharing this store may have just written the same entry: keep a good
                # one (same fingerprint, same content) and drop ours; only a corrupt one is replaced.
                if final.exists() and self.check(fp, full=True)[0] and self.load(fp, verify=False) is not None:
                    shutil.rmtree(tmp, ignore_errors=True)
                    return self.load(fp, verify=False)
                if final.exists():  # a corrupt entry: move it aside so the rename below is atomic
                    trash = self.root / f".trash-{fp[:16]}-{uuid.uuid4().hex[:8]}"
                    os.rename(final, trash)
                os.rename(tmp, final)
        except OSError as err:
            shutil.rmtree(tmp, ignore_errors=True)
            raise OSError(f"target store {self.root}: writing entry {fp[:12]} failed ({err}); "
                          "existing entries are unchanged") from err
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            if trash is not None:
                shutil.rmtree(trash, ignore_errors=True)
        loaded = self.load(fp, verify=False)
        assert loaded is not None, f"entry {fp} unreadable right after writing it"
        return loaded

    def remove(self, fp: str) -> None:
        shutil.rmtree(self.entry_dir(fp), ignore_errors=True)


@dataclass
class _Planned:
    teacher: str
    field: str
    role: str
    fp: str
    inputs: dict
    cached: bool


def _plan(specs: Sequence[TeacherSpec], fields: Mapping[str, Sequence[str]], digests: Mapping[str, str],
          store: TargetStore) -> list[_Planned]:
    """Fingerprint every (teacher, field) and check which entries are usable (rank 0 only)."""
    plan = []
    for spec in specs:
        wid = weights_identity(spec.model, spec.revision, teacher=spec.name)
        for field, texts in fields.items():
            role = field_role(field)
            inputs = fingerprint_inputs(spec, wid, role, digests[field], len(texts))
            fp = fingerprint(inputs)
            ok, why = store.check(fp, full=True)
            if ok and store.load(fp, verify=False) is None:  # bytes as recorded, but not an (N, dim) array
                ok, why = False, "does not load as an embeddings array"
            if not ok and why != "missing":
                log.warning("target store: %s/%s entry %s is corrupt (%s); rebuilding it",
                            spec.name, field, fp[:12], why)
            plan.append(_Planned(spec.name, field, role, fp, inputs, ok))
    return plan


def build_targets(specs: Sequence[TeacherSpec], fields: Mapping[str, Sequence[str]], store: TargetStore,
                  device: Union[str, torch.device] = "cpu", progress: bool = True, *,
                  ds_config: Union[None, str, Path, dict] = None,
                  stats: Optional[dict] = None) -> dict[tuple[str, str], np.ndarray]:
    """Every teacher's embeddings of every text field, from the store or computed into it.

    ``fields``: ``{"question": [...], "answer": [...]}`` (the "question" field is embedded with
    the query prefix, every other field with the answer prefix). Returns
    ``{(teacher_name, field): (N_field, dim) float32 read-only memmap}``.

    A teacher is loaded only if one of its entries is missing or corrupt. In a multi-process
    job every rank calls this with the same arguments: the teachers are sharded per
    ``spec.shard`` and every rank embeds a slice; rank 0 writes; all ranks get every array.
    ``stats``, if given, is filled with ``cached``/``computed`` (lists of (teacher, field)),
    ``loaded`` (teacher names) and ``forward_calls`` ({teacher: model forwards on this rank}).
    """
    tdist.ensure_process_group()
    fields = {f: list(t) for f, t in fields.items()}
    digests = {f: texts_digest(t) for f, t in fields.items()}
    if tdist.is_distributed() and any(d != digests for d in tdist.all_gather_object(digests)):
        raise ValueError("fields: every rank must pass the same texts to build_targets")
    plan: list[_Planned] = tdist.run_on_main(_plan, specs, fields, digests, store)
    st = stats if stats is not None else {}
    st.update(cached=[], computed=[], loaded=[], forward_calls={})
    done = {p.fp for p in plan if p.cached}
    for spec in specs:
        todo = [p for p in plan if p.teacher == spec.name and p.fp not in done]
        for p in plan:
            if p.teacher == spec.name and p.fp in done:
                st["cached"].append((p.teacher, p.field))
                if tdist.is_main():
                    log.info("target store: %s/%s from entry %s, no teacher forward", p.teacher, p.field, p.fp[:12])
        if not todo:
            continue
        teacher = load_teacher(spec, device, ds_config=ds_config)
        st["loaded"].append(spec.name)
        try:
            for p in todo:
                if p.fp in done:  # the same texts + prompt under two field names: embed once
                    st["computed"].append((p.teacher, p.field))
                    continue
                emb = teacher.encode(fields[p.field], p.role, split=True, progress=progress)
                extra = {"teacher": spec.name, "field": p.field}
                tdist.run_on_main(lambda p=p, emb=emb, extra=extra: store.put(p.fp, emb, p.inputs, extra) is None)
                done.add(p.fp)
                st["computed"].append((p.teacher, p.field))
                if tdist.is_main():
                    log.info("target store: %s/%s computed (%d x %d) into entry %s",
                             p.teacher, p.field, emb.shape[0], emb.shape[1], p.fp[:12])
            st["forward_calls"][spec.name] = teacher.forward_calls
        finally:
            teacher.close()
    tdist.barrier()
    arrays = {}
    for p in plan:
        # Rank 0 verified the sha256 while planning or has just written the entry.
        arr = store.load(p.fp, verify=False)
        if arr is None:
            raise RuntimeError(f"target store: entry {p.fp} for {p.teacher}/{p.field} is unreadable after building")
        arrays[(p.teacher, p.field)] = arr
    if tdist.is_main():
        log.info("target store %s: %d entries reused, %d computed", store.root, len(st["cached"]),
                 len(st["computed"]))
    return arrays
