"""Target store: teacher embeddings of texts, computed once per text, kept on disk in shards.

Layout (format 2)::

    <root>/FORMAT                                   "2"
    <root>/spaces/<space>/space.json                what makes these embeddings (below), dim, dtype
    <root>/spaces/<space>/shards/<shard>/keys.npy   (n,) S16  blake2b-128 of each text (UTF-8)
    <root>/spaces/<space>/shards/<shard>/emb.npy    (n, dim)  float32 or float16, same row order
    <root>/spaces/<space>/shards/<shard>/shard.json rows, dim, dtype, sha256 of both files
    <root>/spaces/<space>/claims/<shard>.lock       a writer at work on that shard (fileio.Lock)
    <root>/spaces/<space>/verified.json             shards whose sha256 was checked (size, mtime)
    <root>/spaces/<space>/last_used                 touched when a run or `distill embed` used it

A *space* is one teacher in one prompt role: the sha256 of the spec's embedding fields (prefixes
left out), the weights identity, the role's own prefix, ``POOLING_CODE_VERSION``, the storage
dtype and ``STORE_FORMAT_VERSION``. Inside a space a text is addressed by its content key, so a
text embedded once is never embedded again by any run, stage or corpus that contains it: adding
texts embeds only the new ones; removing or reordering texts embeds nothing.

Missing texts (unique, in request order) are cut into units of ``shard_rows``; each unit becomes
one shard, written atomically (``fileio.write_dir_atomic``) with its checksums. A killed writer
loses at most its unit in flight; the rerun plans the same units (finished units are whole, so
the cut of what is left does not move) and the result equals an uninterrupted run bit for bit.
In a multi-process job rank r embeds units r, r+W, ...; a unit is claimed with a lock file, so two
jobs sharing a store never embed the same unit twice (one waits for the other's shard).

Reads never copy the store: :class:`RowView` gathers rows with ``pread`` (float32 out).
Format-1 entries (``<root>/<sha256>/embeddings.npy``, one per whole text list) are listed by
``distill store ls`` as legacy, never read, and removed by ``distill store gc --apply``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch

from fileio import (
    Lock,
    clean_stale_temps,
    remove_path,
    sha256_file,
    temp_path,
    write_dir_atomic,
    write_json_atomic,
    write_text_atomic,
)

from . import distributed as tdist
from .kinds import weights_identity
from .pooling import POOLING_CODE_VERSION
from .spec import TeacherSpec
from .teacher import load_teacher

log = logging.getLogger(__name__)

STORE_FORMAT_VERSION = 2
FORMAT_FILE = "FORMAT"
SPACES_DIR = "spaces"
DEFAULT_SHARD_ROWS = 16384
DTYPES = ("float32", "float16")
KEY_DTYPE = np.dtype("S16")
LEGACY_MANIFEST = "manifest.json"
CLAIM_POLL_S = 1.0


class StoreError(OSError):
    """The store cannot be used as asked (another format, a failed write); names the path."""


def field_role(field: str) -> str:
    """The prompt role for a text field: questions are queries, everything else answers."""
    return "query" if field == "question" else "answer"


def text_keys(texts: Sequence[str]) -> np.ndarray:
    """(n,) S16 content keys: blake2b-128 of each text's UTF-8 bytes (the prefix is the space's)."""
    out = np.empty(len(texts), dtype=KEY_DTYPE)
    for i, t in enumerate(texts):
        out[i] = hashlib.blake2b(t.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    return out


def texts_digest(texts: Sequence[str]) -> str:
    """sha256 over the texts in order (length-prefixed, so ["ab"] != ["a", "b"])."""
    h = hashlib.sha256()
    for t in texts:
        b = t.encode("utf-8", "surrogatepass")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def space_inputs(spec: TeacherSpec, weights_id: str, role: str, dtype: str = "float32") -> dict:
    """Everything that changes a stored row but the text itself (``space.json`` records it).

    Of the two prefixes only the role's own counts: a new query prompt recomputes the questions,
    not the answers. The teacher's ``name`` is kept out: two configs naming one model differently
    share its rows.
    """
    if dtype not in DTYPES:
        raise ValueError(f"targets.dtype: {dtype!r} is not one of {', '.join(DTYPES)}")
    fields = spec.embedding_fields()
    for k in ("query_prefix", "answer_prefix", "name"):
        fields.pop(k, None)
    return {
        "store_format": STORE_FORMAT_VERSION,
        "pooling_code_version": POOLING_CODE_VERSION,
        "spec": fields,
        "weights": weights_id,
        "role": role,
        "prefix": spec.query_prefix if role == "query" else spec.answer_prefix,
        "dtype": dtype,
    }


def space_id(inputs: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _duration(seconds: float) -> str:
    """``1h02m``, ``3m05s``, ``12s``."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _npy_data_offset(path: Path) -> tuple[int, tuple, np.dtype]:
    """(byte offset of the data, shape, dtype) of a C-order .npy file."""
    with open(path, "rb") as f:
        major, _minor = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(f)
        if fortran:
            raise ValueError(f"{path}: Fortran-order array")
        return f.tell(), shape, dtype


def _save_npy(path: Path, arr: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, arr)
        f.flush()
        os.fsync(f.fileno())


# -- one space ----------------------------------------------------------------------------------
@dataclass
class ShardIndex:
    """Every stored key of a space, sorted, with where its row lives."""

    names: list[str]
    keys: np.ndarray  # (n,) S16 sorted
    shard: np.ndarray  # (n,) int32 index into names
    row: np.ndarray  # (n,) int64 row inside that shard

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(found mask, position in the index) of each key."""
        if not len(self.keys):
            return np.zeros(len(keys), dtype=bool), np.zeros(len(keys), dtype=np.int64)
        pos = np.searchsorted(self.keys, keys)
        pos_c = np.minimum(pos, len(self.keys) - 1)
        return self.keys[pos_c] == keys, pos_c


class Space:
    """One teacher-and-role directory of shards."""

    def __init__(self, root: Path, sid: str):
        self.dir = root / SPACES_DIR / sid
        self.id = sid

    @property
    def shards_dir(self) -> Path:
        return self.dir / "shards"

    def info(self) -> dict:
        return json.loads((self.dir / "space.json").read_text())

    def ensure(self, inputs: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
        if (self.dir / "space.json").is_file():
            return
        self.shards_dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "claims").mkdir(exist_ok=True)
        write_json_atomic(self.dir / "space.json", {"id": self.id, "inputs": dict(inputs), **dict(meta),
                                                    "created": _now()})

    def shard_names(self) -> list[str]:
        if not self.shards_dir.is_dir():
            return []
        return sorted(p.name for p in self.shards_dir.iterdir() if p.is_dir() and not p.name.startswith("."))

    def shard_meta(self, name: str) -> dict:
        return json.loads((self.shards_dir / name / "shard.json").read_text())

    def check_shard(self, name: str) -> Optional[str]:
        """None if the shard's files match its shard.json (sizes, sha256, shapes), else why not."""
        d = self.shards_dir / name
        try:
            meta = self.shard_meta(name)
        except (OSError, ValueError) as err:
            return f"unreadable shard.json ({err})"
        for fname in ("keys.npy", "emb.npy"):
            p = d / fname
            if not p.is_file():
                return f"{fname} missing"
            want = meta.get("files", {}).get(fname, {})
            if p.stat().st_size != want.get("size"):
                return f"{fname} is {p.stat().st_size} bytes, shard.json says {want.get('size')}"
            if sha256_file(p) != want.get("sha256"):
                return f"sha256 of {fname} differs from shard.json"
        # Bytes as recorded, but they must also be the arrays a shard holds (never objects: a
        # pickled payload is not read, let alone run).
        rows, dim = meta.get("rows"), meta.get("dim")
        for fname, shape, dtypes in (("keys.npy", (rows,), (KEY_DTYPE,)),
                                     ("emb.npy", (rows, dim), tuple(np.dtype(x) for x in DTYPES))):
            try:
                _off, got_shape, got_dtype = _npy_data_offset(d / fname)
            except (OSError, ValueError) as err:
                return f"{fname} is not a .npy array ({err})"
            if tuple(got_shape) != shape or got_dtype not in dtypes:
                return f"{fname} holds {got_dtype} {tuple(got_shape)}, expected {shape} of {dtypes[0]}"
        return None

    def _verified(self) -> dict:
        try:
            v = json.loads((self.dir / "verified.json").read_text())
            return v if isinstance(v, dict) else {}
        except (OSError, ValueError):
            return {}

    @staticmethod
    def _stamp(d: Path) -> list[int]:
        out = []
        for fname in ("keys.npy", "emb.npy", "shard.json"):
            st = (d / fname).stat()
            out += [st.st_size, st.st_mtime_ns]
        return out

    def verify(self, full: bool = False) -> list[tuple[str, str]]:
        """Check every shard whose files changed since it was last verified (``full``: all).

        Returns ``[(shard, why)]`` of corrupt shards (not removed here)."""
        seen = {} if full else self._verified()
        bad, ok = [], {}
        for name in self.shard_names():
            d = self.shards_dir / name
            try:
                stamp = self._stamp(d)
            except OSError:
                stamp = None
            if stamp is not None and seen.get(name) == stamp:
                ok[name] = stamp
                continue
            why = self.check_shard(name)
            if why is None and stamp is not None:
                ok[name] = stamp
            else:
                bad.append((name, why or "files missing"))
        if ok != seen:
            try:
                write_json_atomic(self.dir / "verified.json", ok)
            except OSError:  # a read-only store is still readable
                pass
        return bad

    def drop_corrupt(self, label: str) -> int:
        """Verify; remove corrupt shards (their texts are re-embedded). Returns the rows lost."""
        lost = 0
        for name, why in self.verify():
            rows = 0
            try:
                rows = int(self.shard_meta(name).get("rows", 0))
            except (OSError, ValueError):
                pass
            log.warning("target store: %s shard %s is corrupt (%s); its %s rows will be re-embedded",
                        label, name, why, rows or "?")
            aside = temp_path(self.shards_dir / name, "corrupt")
            try:
                os.rename(self.shards_dir / name, aside)
            except OSError:
                continue
            remove_path(aside)
            lost += rows
        return lost

    def index(self) -> ShardIndex:
        names = self.shard_names()
        keys, shard, row = [], [], []
        for i, name in enumerate(names):
            k = np.load(self.shards_dir / name / "keys.npy")
            keys.append(k)
            shard.append(np.full(len(k), i, dtype=np.int32))
            row.append(np.arange(len(k), dtype=np.int64))
        if not keys:
            e = np.empty(0, dtype=np.int64)
            return ShardIndex(names, np.empty(0, dtype=KEY_DTYPE), e.astype(np.int32), e)
        k, s, r = np.concatenate(keys), np.concatenate(shard), np.concatenate(row)
        order = np.argsort(k, kind="stable")
        return ShardIndex(names, k[order], s[order], r[order])

    def view(self, keys: np.ndarray) -> tuple[int, Optional[RowView]]:
        """(how many of ``keys`` are missing, a view of their rows in that order, or None when
        any is missing)."""
        idx = self.index()
        found, pos = idx.lookup(keys)
        missing = int((~found).sum())
        if missing:
            return missing, None
        info = self.info()
        return 0, RowView(self.shards_dir, idx.names, idx.shard[pos], idx.row[pos], info["dim"],
                          np.dtype(info["dtype"]))

    def write_shard(self, name: str, keys: np.ndarray, emb: np.ndarray) -> bool:
        """Publish one shard atomically. False when a shard of that name already exists."""

        def fill(tmp: Path) -> None:
            tmp.mkdir()
            _save_npy(tmp / "keys.npy", keys)
            _save_npy(tmp / "emb.npy", emb)
            files = {f: {"size": (tmp / f).stat().st_size, "sha256": sha256_file(tmp / f)}
                     for f in ("keys.npy", "emb.npy")}
            meta = {"rows": len(keys), "dim": int(emb.shape[1]), "dtype": str(emb.dtype), "files": files,
                    "created": _now()}
            with open(tmp / "shard.json", "w") as f:
                json.dump(meta, f, indent=2, sort_keys=True)

        try:
            return write_dir_atomic(self.shards_dir / name, fill, replace=False)
        except OSError as err:
            raise StoreError(f"target store {self.dir}: writing shard {name} failed ({err}); finished shards "
                             "are kept and a rerun continues from them") from err

    def touch_used(self) -> None:
        p = self.dir / "last_used"
        try:
            p.touch()  # updates the mtime of an existing file too
        except OSError:
            pass

    def last_used(self) -> Optional[float]:
        try:
            return (self.dir / "last_used").stat().st_mtime
        except OSError:
            return None


# -- reading ------------------------------------------------------------------------------------
class RowView:
    """Rows of a space in a requested order, read on demand (never the whole store in memory).

    ``view.rows(idx)`` / ``view[idx]`` -> float32 (len(idx), dim); ``view.select(idx)`` -> a
    sub-view; ``np.asarray(view)`` reads every row (for small splits). ``shape`` and ``len`` as
    an array's.
    """

    def __init__(self, shards_dir: Path, names: list[str], shard: np.ndarray, row: np.ndarray, dim: int,
                 dtype: np.dtype):
        self.shards_dir, self.names = Path(shards_dir), list(names)
        self.shard, self.row = np.asarray(shard, dtype=np.int32), np.asarray(row, dtype=np.int64)
        self.dim, self.store_dtype = int(dim), np.dtype(dtype)
        self._files: dict[int, tuple[int, int]] = {}

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.row), self.dim)

    dtype = np.dtype("float32")
    ndim = 2

    def __len__(self) -> int:
        return len(self.row)

    def _file(self, s: int) -> tuple[int, int]:
        if s not in self._files:
            path = self.shards_dir / self.names[s] / "emb.npy"
            offset, _shape, _dtype = _npy_data_offset(path)
            self._files[s] = (os.open(path, os.O_RDONLY), offset)
        return self._files[s]

    def rows(self, idx) -> np.ndarray:
        idx = np.arange(len(self))[idx] if isinstance(idx, slice) else np.asarray(idx, dtype=np.int64).reshape(-1)
        out = np.empty((len(idx), self.dim), dtype=np.float32)
        rb = self.dim * self.store_dtype.itemsize
        shards, rows = self.shard[idx], self.row[idx]
        for s in np.unique(shards):
            fd, offset = self._file(int(s))
            where = np.flatnonzero(shards == s)
            rs = rows[where]
            lo, hi = int(rs.min()), int(rs.max()) + 1
            if (hi - lo) <= 4 * len(rs):  # dense: one read of the span
                buf = os.pread(fd, (hi - lo) * rb, offset + lo * rb)
                block = np.frombuffer(buf, dtype=self.store_dtype).reshape(hi - lo, self.dim)
                out[where] = block[rs - lo]
            else:
                for j, r in zip(where, rs):
                    out[j] = np.frombuffer(os.pread(fd, rb, offset + int(r) * rb), dtype=self.store_dtype)
        return out

    def __getitem__(self, idx) -> np.ndarray:
        if isinstance(idx, (int, np.integer)):
            return self.rows([int(idx)])[0]
        return self.rows(idx)

    def select(self, idx) -> RowView:
        idx = np.asarray(idx, dtype=np.int64)
        return RowView(self.shards_dir, self.names, self.shard[idx], self.row[idx], self.dim, self.store_dtype)

    def blocks(self, size: int = 8192):
        """Yield ``(start, float32 rows)`` in order, ``size`` rows at a time."""
        for start in range(0, len(self), size):
            yield start, self.rows(slice(start, min(start + size, len(self))))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = np.empty(self.shape, dtype=np.float32)
        for start, block in self.blocks():
            out[start: start + len(block)] = block
        return out if dtype is None else out.astype(dtype)

    def numpy(self) -> np.ndarray:
        return np.asarray(self)

    def tensor(self) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self))

    def close(self) -> None:
        for fd, _ in self._files.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self._files.clear()

    def __del__(self):
        self.close()

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_files"] = {}
        return state


# -- the store ----------------------------------------------------------------------------------
class TargetStore:
    """A directory of spaces. Safe to share between runs, stages, corpora and concurrent jobs."""

    def __init__(self, root: Union[str, Path], shard_rows: int = DEFAULT_SHARD_ROWS):
        self.root = Path(root)
        if shard_rows < 1:
            raise ValueError(f"targets.shard_rows: must be >= 1, got {shard_rows!r}")
        self.shard_rows = int(shard_rows)
        fmt = self.root / FORMAT_FILE
        if fmt.is_file():
            got = fmt.read_text().strip()
            if got != str(STORE_FORMAT_VERSION):
                raise StoreError(f"target store {self.root}: format {got!r}, this version reads format "
                                 f"{STORE_FORMAT_VERSION}; use another targets.store_dir")

    def _init_dir(self) -> None:
        if not (self.root / FORMAT_FILE).is_file():
            self.root.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.root / FORMAT_FILE, f"{STORE_FORMAT_VERSION}\n")

    def space(self, sid: str) -> Space:
        return Space(self.root, sid)

    def spaces(self) -> list[Space]:
        d = self.root / SPACES_DIR
        if not d.is_dir():
            return []
        return [Space(self.root, p.name) for p in sorted(d.iterdir()) if (p / "space.json").is_file()]

    def legacy_entries(self) -> list[Path]:
        """Format-1 entries (one directory per whole text list): listed, never read."""
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir()
                      if p.is_dir() and len(p.name) == 64 and (p / LEGACY_MANIFEST).is_file())

    def clean_temps(self) -> list[Path]:
        """Remove temporaries of dead writers (never a live writer's) and their stale claims."""
        removed = clean_stale_temps(self.root)
        for sp in self.spaces():
            removed += clean_stale_temps(sp.dir) + clean_stale_temps(sp.shards_dir)
            claims = sp.dir / "claims"
            if claims.is_dir():
                for c in claims.glob("*.lock"):
                    lock = Lock(c)
                    rec = lock.holder()
                    if rec and lock.is_stale(rec):
                        remove_path(c)
                        removed.append(c)
        return removed


@dataclass
class _Request:
    """One teacher's embeddings of one field's texts."""

    spec: TeacherSpec
    field: str
    role: str
    space: str
    inputs: dict
    keys: np.ndarray  # (n,) per requested text
    stats: dict = field(default_factory=dict)


def _plan_units(idx: ShardIndex, keys: np.ndarray, shard_rows: int) -> list[np.ndarray]:
    """Positions (into the request) of the missing texts, unique, request order, cut in units."""
    found, _ = idx.lookup(keys)
    missing = np.flatnonzero(~found)
    if not len(missing):
        return []
    _, first = np.unique(keys[missing], return_index=True)
    missing = missing[np.sort(first)]
    return [missing[i: i + shard_rows] for i in range(0, len(missing), shard_rows)]


def _unit_name(keys: np.ndarray) -> str:
    return "u-" + hashlib.blake2b(keys.tobytes(), digest_size=12).hexdigest()


class _Embedder:
    """Loads the teacher on first need (collectively, for zero3) and embeds units."""

    def __init__(self, spec: TeacherSpec, device, ds_config, progress: bool):
        self.spec, self.device, self.ds_config, self.progress = spec, device, ds_config, progress
        self.teacher = None

    def get(self):
        if self.teacher is None:
            self.teacher = load_teacher(self.spec, self.device, ds_config=self.ds_config)
        return self.teacher

    def close(self) -> None:
        if self.teacher is not None:
            self.teacher.close()
            self.teacher = None


def _fill(store: TargetStore, req: _Request, texts: Sequence[str], emb: _Embedder, stats: dict) -> None:
    """Embed every missing text of ``req`` into shards (collective in a multi-process job)."""
    sp = store.space(req.space)
    label = f"{req.spec.name}/{req.field}"
    world, rank = tdist.world_size(), tdist.rank()
    embedded, planned = 0, None
    while True:
        units = tdist.run_on_main(lambda: _plan_units(sp.index(), req.keys, store.shard_rows))
        if planned is None:
            planned = sum(len(u) for u in units)  # the distinct texts missing when this job looked
        if not units:
            break
        names = [_unit_name(req.keys[u]) for u in units]
        teacher = emb.get()  # collective for zero3: every rank reaches this together
        sync = tdist.is_distributed() and teacher.shard == "zero3"
        waiting = False
        rounds = -(-len(units) // world)
        started = time.perf_counter()
        for k in range(rounds):
            i = k * world + rank
            mine, lock = [], None
            if i < len(units) and not (sp.shards_dir / names[i]).is_dir():
                lock = Lock(sp.dir / "claims" / f"{names[i]}.lock", what=f"embedding {label}")
                if lock.try_acquire() is not None:  # another process is embedding this unit
                    waiting, lock = True, None
                elif (sp.shards_dir / names[i]).is_dir():  # finished just before our claim
                    lock.release()
                    lock = None
                else:
                    mine = [texts[j] for j in units[i]]
            try:
                t0 = time.perf_counter()
                prefix = teacher.prefix(req.role)
                out = teacher._encode_local([prefix + t for t in mine], sync=sync, batch_size=teacher.spec.batch_size,
                                            progress=False, desc=label)
                if mine:
                    arr = out.numpy().astype(req.inputs["dtype"], copy=False)
                    sp.write_shard(names[i], req.keys[units[i]], np.ascontiguousarray(arr))
                    embedded += len(mine)
                    dt = time.perf_counter() - t0
                    # This rank's remaining rounds at its pace so far: the whole fill's ETA when ranks keep pace.
                    eta = (time.perf_counter() - started) / (k + 1) * (rounds - k - 1)
                    log.info("target store: %s unit %d/%d: %d rows in %.1fs (%.0f rows/s), rank %d, ETA %s", label,
                             i + 1, len(units), len(mine), dt, len(mine) / max(dt, 1e-9), rank, _duration(eta))
            finally:
                if lock is not None:
                    lock.release()
        tdist.barrier()
        if tdist.all_reduce_max(int(waiting)):
            time.sleep(CLAIM_POLL_S)  # another job holds a unit: wait for its shard (or its claim to go stale)
            if tdist.is_main():
                store.clean_temps()
    stats.setdefault("embedded_rows", {}).setdefault(req.spec.name, 0)
    stats["embedded_rows"][req.spec.name] += embedded
    # The rest of what was missing was embedded by another job sharing the store (this one waited).
    ours = sum(tdist.all_gather_object(embedded)) if tdist.is_distributed() else embedded
    stats.setdefault("other_job_rows", {}).setdefault(req.spec.name, 0)
    stats["other_job_rows"][req.spec.name] += planned - ours


def _open_view(store: TargetStore, req: _Request) -> RowView:
    missing, view = store.space(req.space).view(req.keys)
    if view is None:
        raise StoreError(f"target store {store.root}: {missing} texts of {req.spec.name}/{req.field} "
                         "are missing after embedding")
    return view


def _space_dim(emb: _Embedder, sp: Space) -> int:
    """The space's row width: from its space.json, else from the teacher (loaded on every rank)."""
    dim = tdist.run_on_main(lambda: int(sp.info()["dim"]) if (sp.dir / "space.json").is_file() else None)
    return dim if dim is not None else int(emb.get().dim)


def _init_space(store: TargetStore, sp: Space, inputs: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
    """Create the store (its FORMAT file) and the space only once there is a row to write: a job
    that fails before (a teacher that does not load) leaves no trace."""
    store._init_dir()
    sp.ensure(inputs, meta)


def _ensure(store: TargetStore, req: _Request, texts: Sequence[str], emb: _Embedder, st: dict) -> RowView:
    """Check the space (corrupt shards go), embed what is missing, open the view (every rank)."""
    sp = store.space(req.space)
    label = f"{req.spec.name}/{req.field}"

    def prepare():
        if not sp.dir.is_dir():
            return 0, 0
        lost = sp.drop_corrupt(label)
        return lost, int(sp.index().lookup(req.keys)[0].sum())

    lost, cached = tdist.run_on_main(prepare)
    st["lost_rows"] += lost
    st["cached_rows"][req.spec.name] = st["cached_rows"].get(req.spec.name, 0) + cached
    if cached < len(texts):
        dim = _space_dim(emb, sp)
        meta = {"teacher": req.spec.name, "model": str(req.spec.model), "dim": dim, "dtype": req.inputs["dtype"]}
        tdist.run_on_main(_init_space, store, sp, req.inputs, meta)
        _fill(store, req, texts, emb, st)
    view = _open_view(store, req)
    if tdist.is_main():
        sp.touch_used()
    return view


def build_targets(specs: Sequence[TeacherSpec], fields: Mapping[str, Sequence[str]], store: TargetStore,
                  device: Union[str, torch.device] = "cpu", progress: bool = True, *,
                  ds_config: Union[None, str, Path, dict] = None, dtype: str = "float32",
                  stats: Optional[dict] = None) -> dict[tuple[str, str], RowView]:
    """Every teacher's embeddings of every text field, from the store or computed into it.

    ``fields``: ``{"question": [...], "answer": [...]}`` ("question" is embedded with the query
    prefix, every other field with the answer prefix). Returns ``{(teacher, field): RowView}``
    in the order of the field's texts.

    A teacher is loaded only if one of its texts is missing. In a multi-process job every rank
    calls this with the same arguments; ranks embed disjoint units and every rank gets every view.
    ``stats`` (if given) gets ``embedded_rows`` ({teacher: rows this process embedded}),
    ``cached_rows`` ({teacher: requested rows already stored}), ``other_job_rows`` ({teacher: distinct
    rows another job sharing the store embedded while this one waited}), ``loaded`` (teachers loaded),
    ``forward_calls`` ({teacher: model forwards on this rank}) and ``lost_rows`` (corrupt shards).
    """
    tdist.ensure_process_group()
    fields = {f: list(t) for f, t in fields.items()}
    st = stats if stats is not None else {}
    st.update(embedded_rows={}, cached_rows={}, other_job_rows={}, loaded=[], forward_calls={}, lost_rows=0)
    keys = {f: text_keys(t) for f, t in fields.items()}
    digest = hashlib.sha256(b"".join(k.tobytes() for k in keys.values())).hexdigest()
    if tdist.is_distributed() and any(d != digest for d in tdist.all_gather_object(digest)):
        raise ValueError("fields: every rank must pass the same texts to build_targets")
    if tdist.is_main():
        store.clean_temps()
    tdist.barrier()
    # Every teacher's weights are identified (and a bad source refused) before any teacher runs:
    # a config whose second teacher cannot load writes nothing for the first.
    wids = [weights_identity(spec.model, spec.revision, teacher=spec.name) for spec in specs]
    views = {}
    for spec, wid in zip(specs, wids):
        emb = _Embedder(spec, device, ds_config, progress)
        try:
            for fname, texts in fields.items():
                role = field_role(fname)
                inputs = space_inputs(spec, wid, role, dtype)
                req = _Request(spec, fname, role, space_id(inputs), inputs, keys[fname])
                views[(spec.name, fname)] = _ensure(store, req, texts, emb, st)
            if emb.teacher is not None:
                st["loaded"].append(spec.name)
                st["forward_calls"][spec.name] = emb.teacher.forward_calls
        finally:
            emb.close()
    tdist.barrier()
    if tdist.is_main():
        done, other = sum(st["embedded_rows"].values()), sum(st["other_job_rows"].values())
        log.info("target store %s: %d rows reused, %d embedded by this process%s", store.root,
                 sum(st["cached_rows"].values()), done,
                 f", {other} by another job sharing the store (this one waited for them)" if other else "")
    return views


# -- maintenance --------------------------------------------------------------------------------
def _dir_bytes(d: Path) -> int:
    total = 0
    for p in d.rglob("*"):
        try:
            if p.is_file() and not p.is_symlink():
                total += p.stat().st_size
        except OSError:
            pass
    return total


def describe(store: TargetStore) -> dict:
    """What ``distill store ls`` prints: spaces, legacy entries, leftovers."""
    spaces = []
    for sp in store.spaces():
        try:
            info = sp.info()
        except (OSError, ValueError):
            info = {}
        rows = 0
        names = sp.shard_names()
        for n in names:
            try:
                rows += int(sp.shard_meta(n).get("rows", 0))
            except (OSError, ValueError):
                pass
        lu = sp.last_used()
        spaces.append({"space": sp.id, "teacher": info.get("teacher", "?"), "model": info.get("model", "?"),
                       "role": info.get("inputs", {}).get("role", "?"), "dim": info.get("dim"),
                       "dtype": info.get("dtype"), "shards": len(names), "rows": rows, "bytes": _dir_bytes(sp.dir),
                       "last_used": (_dt.datetime.fromtimestamp(lu, _dt.timezone.utc).isoformat(timespec="seconds")
                                     if lu else None)})
    legacy = [{"entry": p.name, "bytes": _dir_bytes(p)} for p in store.legacy_entries()]
    return {"root": str(store.root), "format": STORE_FORMAT_VERSION, "spaces": spaces, "legacy": legacy}


def verify(store: TargetStore) -> list[tuple[str, str, str]]:
    """Full sha256 check of every shard: ``[(space, shard, why)]`` of the corrupt ones."""
    bad = []
    for sp in store.spaces():
        for name, why in sp.verify(full=True):
            bad.append((sp.id, name, why))
    return bad


def gc_plan(store: TargetStore, keep: Optional[Mapping[str, np.ndarray]] = None) -> list[tuple[Path, str]]:
    """What ``gc`` removes: ``[(path, why)]``. Always: dead writers' temporaries and stale claims
    (a live writer's are never listed) and format-1 entries. With ``keep`` ({space id: keys the
    kept configs use}): spaces no kept config uses, and shards holding none of the kept keys."""
    out: list[tuple[Path, str]] = []
    from fileio import TMP_PREFIX, is_stale_temp

    dirs = [store.root] + [d for sp in store.spaces() for d in (sp.dir, sp.shards_dir)]
    for d in dirs:
        if d.is_dir():
            out += [(p, "temporary of a dead writer") for p in sorted(d.glob(f"{TMP_PREFIX}*")) if is_stale_temp(p.name)]
    for sp in store.spaces():
        claims = sp.dir / "claims"
        for c in sorted(claims.glob("*.lock")) if claims.is_dir() else []:
            lock = Lock(c)
            rec = lock.holder()
            if rec and lock.is_stale(rec):
                out.append((c, "claim of a dead writer"))
    out += [(p, "format-1 entry (not read by this version)") for p in store.legacy_entries()]
    if keep is not None:
        for sp in store.spaces():
            if sp.id not in keep:
                out.append((sp.dir, "space no kept config uses"))
                continue
            wanted = np.sort(np.asarray(keep[sp.id], dtype=KEY_DTYPE))
            for name in sp.shard_names():
                try:
                    k = np.load(sp.shards_dir / name / "keys.npy")
                except (OSError, ValueError):
                    out.append((sp.shards_dir / name, "unreadable shard"))
                    continue
                pos = np.minimum(np.searchsorted(wanted, k), max(len(wanted) - 1, 0))
                if not len(wanted) or not (wanted[pos] == k).any():
                    out.append((sp.shards_dir / name, "no kept config uses its texts"))
    return out


def gc_apply(plan: Sequence[tuple[Path, str]]) -> int:
    """Remove what :func:`gc_plan` listed (each by an atomic rename first). Returns bytes freed."""
    freed = 0
    for path, _why in plan:
        if not (path.exists() or path.is_symlink()):
            continue
        freed += _dir_bytes(path) if path.is_dir() else path.stat().st_size
        aside = temp_path(path, "gc")
        try:
            os.rename(path, aside)
        except OSError:
            continue
        remove_path(aside)
    return freed


def request_spaces(specs: Sequence[TeacherSpec], fields: Mapping[str, Sequence[str]],
                   dtype: str = "float32") -> dict[str, np.ndarray]:
    """{space id: keys} a set of teachers and text fields uses (no teacher is loaded)."""
    out: dict[str, list[np.ndarray]] = {}
    for spec in specs:
        wid = weights_identity(spec.model, spec.revision, teacher=spec.name)
        for fname, texts in fields.items():
            sid = space_id(space_inputs(spec, wid, field_role(fname), dtype))
            out.setdefault(sid, []).append(text_keys(list(texts)))
    return {k: np.concatenate(v) for k, v in out.items()}
