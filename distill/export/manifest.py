"""Every export carries ``manifest.json``: the size and sha256 of each of its files.

Loading verifies it: the sizes always (one ``stat`` per file: a truncated ``model.safetensors`` is
caught before safetensors reads it), the hashes once per file version. A file whose hash matched is
remembered by ``(size, mtime_ns, ctime_ns, inode)`` in a small cache (``$XDG_CACHE_HOME`` or
``~/.cache``, ``lattice-distill/verified/``), so loading the same export again costs a few ``stat``
calls, and any write to a file (which moves its ctime) makes the next load hash it again. The cache is
best effort: where it cannot be written every load hashes.

Same format as a checkpoint's manifest (:mod:`distill.checkpoint`)::

    {"format": 1, "files": {"model.safetensors": {"size": 123, "sha256": "..."}, ...}}

Leaf module (hashlib, json, os): the query-time :class:`distill.encoder.Encoder` imports it.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path

from fileio import sha256_file

MANIFEST_NAME = "manifest.json"
FORMAT = 1


class ExportError(ValueError):
    """An export that is damaged, incomplete, or cannot express the student (the CLI: one line, exit 2)."""


def write_manifest(root: str | os.PathLike) -> dict:
    """Hash every file below ``root`` (the manifest itself aside) into ``root/manifest.json``; write it
    last, once every other file is complete."""
    root = Path(root)
    files = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and rel != MANIFEST_NAME:
            files[rel] = {"size": p.stat().st_size, "sha256": sha256_file(p)}
    doc = {"format": FORMAT, "files": files}
    with open(root / MANIFEST_NAME, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    return doc


def _cache_file(root: Path) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    key = hashlib.sha256(str(root.resolve()).encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return base / "lattice-distill" / "verified" / f"{key}.json"


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def verify_export(root: str | os.PathLike, full: bool | None = None) -> None:
    """Raise :class:`ExportError` naming the first missing, truncated or altered file of the export at
    ``root``. ``full``: True hashes every file, False checks sizes only, None (default) hashes the
    files the cache has not seen in their current version."""
    root = Path(root)
    mf = root / MANIFEST_NAME
    if not mf.is_file():
        raise ExportError(f"{root}: no {MANIFEST_NAME}, so the export cannot be verified (damaged, or written before "
                          f"exports carried one: to adopt such an export as it is, python -m distill.export.manifest "
                          f"{root})")
    raw = mf.read_bytes()
    try:
        files = json.loads(raw)["files"]
        sizes = {rel: int(info["size"]) for rel, info in files.items()}
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise ExportError(f"{mf}: not a readable manifest ({err}): export the run again") from None
    stats = {}
    for rel, size in sizes.items():
        p = root / rel
        try:
            st = p.stat()
        except OSError:
            raise ExportError(f"{p}: missing from the export (the manifest lists it): export the run again") from None
        if st.st_size != size:
            raise ExportError(f"{p}: {st.st_size} bytes, the manifest says {size} (truncated or altered): "
                              f"export the run again")
        stats[rel] = _stat_key(st)
    if full is False:
        return
    manifest_sha = hashlib.sha256(raw).hexdigest()
    cache_path = _cache_file(root)
    cached: dict = {}
    if full is None:
        try:
            doc = json.loads(cache_path.read_text(encoding="utf-8"))
            if doc.get("manifest") == manifest_sha:
                cached = doc.get("files", {})
        except (OSError, ValueError, AttributeError):
            cached = {}
    for rel, info in files.items():
        if cached.get(rel) == stats[rel]:
            continue
        if sha256_file(root / rel) != info["sha256"]:
            raise ExportError(f"{root / rel}: checksum differs from the manifest (altered or corrupt): "
                              f"export the run again")
    try:  # remember what was verified; a read-only cache only costs the next load a re-hash
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_path.with_name(f".{cache_path.name}.{uuid.uuid4().hex}.tmp")
        try:
            tmp.write_text(json.dumps({"root": str(root.resolve()), "manifest": manifest_sha, "files": stats}),
                           encoding="utf-8")
            os.replace(tmp, cache_path)
        finally:
            tmp.unlink(missing_ok=True)
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    """``python -m distill.export.manifest DIR``: write the manifest of an export that has none (one
    written before exports carried one), taking its files as they are."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not Path(args[0]).is_dir():
        print("usage: python -m distill.export.manifest EXPORT_DIR", file=sys.stderr)
        return 2
    if (Path(args[0]) / MANIFEST_NAME).exists():
        print(f"error: {Path(args[0]) / MANIFEST_NAME} exists: verify_export checks it, nothing to adopt", file=sys.stderr)
        return 2
    doc = write_manifest(args[0])
    print(f"wrote {Path(args[0]) / MANIFEST_NAME}: {len(doc['files'])} files")
    return 0


__all__ = ["MANIFEST_NAME", "ExportError", "main", "sha256_file", "verify_export", "write_manifest"]


if __name__ == "__main__":
    raise SystemExit(main())
