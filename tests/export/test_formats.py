"""Issue #23: `distill export` to sentence-transformers, Model2Vec and ONNX; each export, loaded by its
own library, equals the project's `Encoder.encode` on the same texts (1e-5; ONNX 1e-4)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from distill.cli import main
from distill.encoder import Encoder
from distill.export.manifest import verify_export
from tests.conftest import ROOT
from tests.export.conftest import TEXTS, write_export


@pytest.fixture(scope="module")
def exports(tiny_bert, tmp_path_factory):
    """{lattice on (True) / off (False) / off with position weights ("pos") / off with a pooled MLP
    ("mlp") / off with bigram rows ("bigram"): run-like dir holding student/} written by the real
    export code."""
    root = tmp_path_factory.mktemp("exports")
    out = {lat: write_export(tiny_bert, root / f"run-{lat}" / "student", lattice=lat).parent for lat in (True, False)}
    out["pos"] = write_export(tiny_bert, root / "run-pos" / "student", lattice=False, position_weights="vector").parent
    out["mlp"] = write_export(tiny_bert, root / "run-mlp" / "student", lattice=False, pooled_mlp=24).parent
    out["bigram"] = write_export(tiny_bert, root / "run-bigram" / "student", lattice=False, bigram_buckets=97).parent
    return out


@pytest.fixture(autouse=True)
def cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def export(run, fmt, out, *extra, capsys=None) -> int:
    return main(["export", str(run), "--format", fmt, "--output", str(out), *extra])


@pytest.mark.parametrize("lattice", [True, False, "pos", "mlp", "bigram"],
                         ids=["lattice-on", "lattice-off", "position-weights", "pooled-mlp", "bigrams"])
def test_sentence_transformers_round_trip(exports, lattice, tmp_path):
    from sentence_transformers import SentenceTransformer

    run, out = exports[lattice], tmp_path / "st"
    assert export(run, "sentence-transformers", out) == 0
    enc = Encoder.from_pretrained(run)
    module = lattice is not False  # a lattice, position weights or an MLP: not a plain StaticEmbedding table
    model = SentenceTransformer(str(out), device="cpu", trust_remote_code=module)
    for bs in (1, 3, 64):
        np.testing.assert_allclose(model.encode(TEXTS, batch_size=bs), enc.encode(TEXTS), atol=1e-5, rtol=0)
    types = [m["type"] for m in json.loads((out / "modules.json").read_text())]
    if module:
        assert types[0] == "distill.export.st.LatticeStudentModule" and types[1].endswith("Normalize")
        with pytest.raises(ValueError, match="trust_remote_code"):  # sentence-transformers >= 6 asks for it
            SentenceTransformer(str(out), device="cpu")
    else:
        assert all(t.startswith("sentence_transformers.") for t in types), types
        assert types[0].endswith("StaticEmbedding") and types[1].endswith("Normalize")
    verify_export(out, full=True)
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: sentence-transformers\n") and "SentenceTransformer(" in card
    assert ("| token pairs | 97 hashed buckets" in card) == (lattice == "bigram")  # the card names the pair rows


def test_other_space_and_force(exports, tmp_path):
    from sentence_transformers import SentenceTransformer

    run, out = exports[False], tmp_path / "st"
    assert export(run, "sentence-transformers", out) == 0
    assert export(run, "sentence-transformers", out, "--space", "other") == 2  # exists
    assert export(run, "sentence-transformers", out, "--space", "other", "--force") == 0
    got = SentenceTransformer(str(out), device="cpu").encode(TEXTS)
    assert got.shape == (len(TEXTS), 8)
    np.testing.assert_allclose(got, Encoder.from_pretrained(run).encode(TEXTS, space="other"), atol=1e-5, rtol=0)
    assert not list(tmp_path.glob(".tmp-*"))


@pytest.mark.slow  # a subprocess / a torch.onnx export (~20 s)
def test_lattice_off_sentence_transformers_loads_with_no_project_code(exports, tmp_path):
    run, out = exports[False], tmp_path / "st"
    assert export(run, "sentence-transformers", out) == 0
    np.save(tmp_path / "want.npy", Encoder.from_pretrained(run).encode(TEXTS))
    code = (
        "import sys, json, numpy as np\n"
        "sys.modules['distill'] = None  # any import of the project fails\n"
        "from sentence_transformers import SentenceTransformer\n"
        f"got = SentenceTransformer({str(out)!r}, device='cpu').encode({TEXTS!r})\n"
        f"want = np.load({str(tmp_path / 'want.npy')!r})\n"
        "print(json.dumps({'diff': float(abs(got - want).max()),\n"
        "                  'project': sorted(m for m in sys.modules if m.split('.')[0] in\n"
        "                                    ('distill', 'lattice', 'teachers') and sys.modules[m] is not None)}))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                       env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "HOME": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    out_doc = json.loads(r.stdout.strip().splitlines()[-1])
    assert out_doc["diff"] < 1e-5 and out_doc["project"] == []


def test_model2vec_round_trip_and_refusal(exports, tmp_path, capsys):
    from model2vec import StaticModel

    run, out = exports[False], tmp_path / "m2v"
    assert export(run, "model2vec", out) == 0
    model = StaticModel.from_pretrained(str(out))
    np.testing.assert_allclose(model.encode(TEXTS), Encoder.from_pretrained(run).encode(TEXTS), atol=1e-5, rtol=0)
    verify_export(out, full=True)
    assert (out / "README.md").read_text().startswith("---\nlibrary_name: model2vec\n")
    capsys.readouterr()
    assert export(exports[True], "model2vec", tmp_path / "no") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --format model2vec: a Model2Vec model is a static table")
    assert not (tmp_path / "no").exists() and not list(tmp_path.glob(".tmp-*"))
    assert export(exports["pos"], "model2vec", tmp_path / "no") == 2  # a table cannot weight by position
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "weights tokens by position (position_weights: vector)" in err[0], err
    assert not (tmp_path / "no").exists() and not list(tmp_path.glob(".tmp-*"))
    assert export(exports["mlp"], "model2vec", tmp_path / "no") == 2  # nor run an MLP on the mean
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "runs an MLP on the mean (pooled_mlp: 24)" in err[0], err
    assert not (tmp_path / "no").exists() and not list(tmp_path.glob(".tmp-*"))
    assert export(exports["bigram"], "model2vec", tmp_path / "no") == 2  # nor add rows of token pairs
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "adds rows of adjacent token pairs (bigram_buckets: 97)" in err[0], err
    assert not (tmp_path / "no").exists() and not list(tmp_path.glob(".tmp-*"))


@pytest.mark.slow  # a subprocess / a torch.onnx export (~20 s)
@pytest.mark.parametrize("lattice", [True, False, "pos", "mlp", "bigram"],
                         ids=["lattice-on", "lattice-off", "position-weights", "pooled-mlp", "bigrams"])
def test_onnx_round_trip(exports, lattice, tmp_path):
    import onnxruntime as ort

    run, out = exports[lattice], tmp_path / "onnx"
    assert export(run, "onnx", out) == 0
    enc = Encoder.from_pretrained(run)
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    ins = {i.name: i for i in sess.get_inputs()}
    assert set(ins) == {"input_ids", "attention_mask"} and [o.name for o in sess.get_outputs()] == ["sentence_embedding"]
    for i in ins.values():  # int64, both axes symbolic (dynamic)
        assert i.type == "tensor(int64)" and all(isinstance(d, str) for d in i.shape), (i.name, i.shape)
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(out / "tokenizer.json"))  # the exported one: truncation as the Encoder's
    ids = [e.ids for e in tok.encode_batch(TEXTS, add_special_tokens=False)]
    assert ids == enc.tokenize(TEXTS)
    want = enc.encode(TEXTS)
    for extra in (0, 7):  # more padding than needed changes nothing
        width = max(map(len, ids)) + extra
        x = np.array([r + [0] * (width - len(r)) for r in ids], dtype=np.int64)
        m = np.array([[1] * len(r) + [0] * (width - len(r)) for r in ids], dtype=np.int64)
        got = sess.run(["sentence_embedding"], {"input_ids": x, "attention_mask": m})[0]
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    one = sess.run(None, {"input_ids": np.array([ids[1]], dtype=np.int64),
                          "attention_mask": np.ones((1, len(ids[1])), dtype=np.int64)})[0]
    np.testing.assert_allclose(one[0], want[1], atol=1e-4, rtol=0)
    verify_export(out, full=True)


@pytest.mark.parametrize("case,want", [
    ("no_student", "no exported standalone student"),
    ("exists", "exists (pass --force to replace it)"),
    ("into_the_run", "holds the student being exported"),
    ("bad_space", "--space: 'nope' is not one of this student's spaces (t, other)"),
    ("damaged", "checksum differs from the manifest"),
])
def test_export_refusals_are_one_line_exit_2(case, want, exports, tiny_bert, tmp_path, capsys):
    run, out, extra = exports[False], tmp_path / "out", []
    if case == "no_student":
        run = tmp_path / "empty"
        run.mkdir()
    elif case == "exists":
        out.mkdir()
    elif case == "into_the_run":
        out, extra = exports[False], ["--force"]
    elif case == "bad_space":
        extra = ["--space", "nope"]
    elif case == "damaged":
        run = write_export(tiny_bert, tmp_path / "r" / "student", lattice=False).parent
        with open(run / "student" / "model.safetensors", "r+b") as f:
            f.seek(200)
            f.write(b"\x00" * 64)
    capsys.readouterr()
    assert export(run, "onnx", out, *extra) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("error: ") and want in err[0], err
    assert (exports[False] / "student" / "manifest.json").is_file()


@pytest.mark.slow
def test_cli_subprocess_export(exports, tmp_path):
    r = subprocess.run([sys.executable, "-m", "distill", "export", str(exports[True]), "--format", "model2vec",
                        "--output", str(tmp_path / "x")], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "lattice" in r.stderr, r.stderr
