"""Issue #21 item 3: the standalone export carries a manifest (size + sha256 per file) that every load
verifies, and a damaged export is one clear error (exit 2 from the CLI), never rows of NaN."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import distill.export.manifest as manifest
from distill.encoder import Encoder, export_standalone
from distill.export.manifest import ExportError, sha256_file
from tests.conftest import run_cli, snapshot
from tests.export.conftest import TEXTS, tiny_student


@pytest.fixture(autouse=True)
def cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_manifest_lists_every_file_with_its_hash(export_on):
    doc = json.loads((export_on / "manifest.json").read_text())
    names = {p.name for p in export_on.iterdir()} - {"manifest.json"}
    assert set(doc["files"]) == names and {"config.json", "model.safetensors", "tokenizer.json"} <= names
    for rel, info in doc["files"].items():
        assert info == {"size": (export_on / rel).stat().st_size, "sha256": sha256_file(export_on / rel)}


def _truncate(p, keep=0.5):
    data = p.read_bytes()
    p.write_bytes(data[: int(len(data) * keep)])


def _garbage(p, offset=4096, n=4096):
    """4 KB of garbage inside the file, same size: what a bad disk or a bad copy leaves."""
    with open(p, "r+b") as f:
        f.seek(offset)
        f.write(np.random.default_rng(0).integers(0, 256, n, dtype=np.uint8).tobytes())


@pytest.mark.parametrize("damage,message", [
    (_truncate, "bytes, the manifest says"),
    (_garbage, "checksum differs from the manifest"),
])
def test_damaged_weights_are_refused_naming_the_file(export_on, damage, message):
    Encoder.from_pretrained(export_on)  # verified once: the hash is cached by the file's version
    damage(export_on / "model.safetensors")
    with pytest.raises(ExportError, match=message) as err:
        Encoder.from_pretrained(export_on)
    assert str(export_on / "model.safetensors") in str(err.value)


def test_cached_verification_does_not_rehash_but_sees_every_write(export_on, monkeypatch):
    Encoder.from_pretrained(export_on)
    calls = []
    real = manifest.sha256_file
    monkeypatch.setattr(manifest, "sha256_file", lambda p: calls.append(p.name) or real(p))
    Encoder.from_pretrained(export_on)
    assert calls == []  # sizes checked, hashes remembered
    (export_on / "config.json").write_bytes((export_on / "config.json").read_bytes())  # same bytes, new version
    Encoder.from_pretrained(export_on)
    assert calls == ["config.json"]


def test_missing_manifest_or_file_is_refused(export_on):
    (export_on / "vocab.txt").unlink()
    with pytest.raises(ExportError, match="vocab.txt: missing from the export"):
        Encoder.from_pretrained(export_on)
    (export_on / "manifest.json").unlink()
    with pytest.raises(ExportError, match="no manifest.json"):
        Encoder.from_pretrained(export_on)


def test_an_old_export_without_manifest_can_be_adopted(export_off, capsys):
    (export_off / "manifest.json").unlink()
    assert manifest.main([str(export_off)]) == 0
    Encoder.from_pretrained(export_off)
    assert manifest.main([str(export_off)]) == 2  # never over an existing one


def test_non_finite_output_is_an_error_not_a_row(tiny_bert, tmp_path):
    st = tiny_student(lattice=True)
    with torch.no_grad():
        st.embed.weight[1996] = float("nan")  # the token "the": damaged weights with a valid manifest
    export_standalone(st, tiny_bert, tmp_path / "nan")
    enc = Encoder.from_pretrained(tmp_path / "nan")
    assert enc.encode(["hi"]).shape == (1, 32)
    with pytest.raises(ExportError, match="text 1: the student's output is not finite"):
        enc.encode(["hi", "the cat"])


@pytest.mark.slow
@pytest.mark.parametrize("case", ["truncated", "garbage", "nan"])
def test_cli_encode_refuses_a_damaged_export(case, export_on, tiny_bert, tmp_path, cache_home):
    run = export_on
    if case == "truncated":
        _truncate(export_on / "model.safetensors")
        want = f"{export_on / 'model.safetensors'}: "
    elif case == "garbage":
        _garbage(export_on / "model.safetensors")
        want = f"{export_on / 'model.safetensors'}: checksum differs from the manifest"
    else:
        st = tiny_student(lattice=False)
        with torch.no_grad():
            st.heads["t"].bias[0] = float("inf")
        run = export_standalone(st, tiny_bert, tmp_path / "inf")
        want = "text 0: the student's output is not finite"
    src = tmp_path / "in.txt"
    src.write_text("\n".join(TEXTS[:3]) + "\n")
    (tmp_path / "out").mkdir()
    before = snapshot(tmp_path / "out")
    r = run_cli(["encode", str(run), "--input", str(src), "--output", str(tmp_path / "out" / "v.npy")],
                cwd=tmp_path, env={"XDG_CACHE_HOME": str(cache_home)})
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and want in lines[0], r.stderr
    assert snapshot(tmp_path / "out") == before
