"""The standalone student: teacher-derived token table, the student built on it, the export and
the Encoder / `distill encode` that need no teacher and no training code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from distill.encoder import Encoder, export_standalone
from distill.students.tokens import StandaloneConfig, StandaloneStudent
from distill.token_init import pca, teacher_token_table, zipf_weights
from tests.conftest import ROOT, run_cli, snapshot
from tests.teachers.tiny import build_tiny

LATTICE = {"depth": 2, "height": 3, "width": 4, "channels": 4, "hidden": 8, "steps": 2}


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    """A tiny random BERT (hidden 32) with MiniLM's real WordPiece tokenizer (30522 tokens)."""
    return build_tiny("bert", tmp_path_factory.mktemp("tiny") / "bert")


@pytest.fixture(scope="module")
def table(tiny_bert, tmp_path_factory):
    torch.set_num_threads(1)
    return teacher_token_table(str(tiny_bert), dim=16, cache_dir=tmp_path_factory.mktemp("tables"))


def test_pca_reconstructs_and_orders_by_variance():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6)) * np.array([5, 4, 3, 2, 1, 0.5])
    s, mean, comps = pca(x, 6)
    np.testing.assert_allclose(s @ comps + mean, x, atol=1e-9)
    var = s.var(0)
    assert np.all(np.diff(var) <= 1e-9)
    s3, _, _ = pca(x, 3)
    np.testing.assert_allclose(s3, s[:, :3], atol=1e-9)
    with pytest.raises(ValueError, match="dim"):
        pca(x, 7)


def test_zipf_weights_favour_rare_tokens():
    w = zipf_weights(1000, 1e-3)
    assert w.shape == (1000,) and np.all(np.diff(w) > 0) and 0 < w[0] < w[-1] < 1
    assert np.all(zipf_weights(5, None) == 1)


def test_table_rows_are_the_weighted_pca_of_the_teacher_tokens(table, tiny_bert):
    """Recompute a few rows by hand: teacher forward on [CLS] v [SEP], mean over the 3 positions,
    centre, project on the components, scale by the Zipf weight."""
    from transformers import AutoModel

    assert table.table.shape == (30522, 16)
    model = AutoModel.from_pretrained(tiny_bert).eval()
    ids = [101, 1996, 2339, 7592, 29000]
    x = torch.tensor([[101, v, 102] for v in ids])
    with torch.no_grad():
        h = model(input_ids=x, attention_mask=torch.ones_like(x)).last_hidden_state.mean(1).numpy()
    want = ((h - table.mean) @ table.components.T) * table.weights[ids, None]
    np.testing.assert_allclose(table.table[ids], want, rtol=1e-3, atol=1e-5)
    # components are orthonormal rows in the teacher's space
    np.testing.assert_allclose(table.components @ table.components.T, np.eye(16), atol=1e-5)


def test_table_cache_hit_fingerprint_and_rebuild(table, tiny_bert, tmp_path, monkeypatch):
    import distill.token_init as ti

    a = teacher_token_table(str(tiny_bert), dim=16, cache_dir=tmp_path)
    entry = tmp_path / a.fingerprint
    assert (entry / "manifest.json").is_file() and not list(tmp_path.glob(".*tmp*"))
    monkeypatch.setattr(ti, "embed_vocabulary", lambda *a, **k: pytest.fail("cache miss"))
    b = teacher_token_table(str(tiny_bert), dim=16, cache_dir=tmp_path)
    np.testing.assert_array_equal(a.table, b.table)
    monkeypatch.undo()
    c = teacher_token_table(str(tiny_bert), dim=8, sif=None, cache_dir=tmp_path)  # new params: new entry
    assert c.fingerprint != a.fingerprint and c.table.shape == (30522, 8)
    (entry / "table.npy").write_bytes(b"truncated")  # a damaged entry is rebuilt, not trusted
    d = teacher_token_table(str(tiny_bert), dim=16, cache_dir=tmp_path)
    np.testing.assert_allclose(d.table, a.table, rtol=1e-5, atol=1e-6)


def student(table=None, lattice=LATTICE, init="teacher", heads=None, seed=0):
    torch.manual_seed(seed)
    dim = 16 if table is None else table.table.shape[1]
    cfg = StandaloneConfig(vocab_size=30522, token_dim=dim, heads=heads or {"t": 32}, input_teacher="t",
                           lattice=lattice, init=init)
    return StandaloneStudent(cfg, token_table=table).eval()


def test_untrained_student_static_path_is_the_pca_table(table):
    st = student(table)
    ids = torch.tensor([[1996, 2339, 7592, 0], [5, 0, 0, 0]])
    mask = torch.tensor([[1.0, 1, 1, 0], [1, 0, 0, 0]])
    rows = torch.from_numpy(table.table)
    torch.testing.assert_close(st.static(ids, mask)[0], rows[[1996, 2339, 7592]].mean(0))
    torch.testing.assert_close(st.static(ids, mask)[1], rows[5])
    # the lattice starts as an exact zero correction, and the head maps back to the teacher space
    with torch.no_grad():
        on, off = st(ids, mask)["t"], st(ids, mask, use_lattice=False)["t"]
        torch.testing.assert_close(on, off)
        want = st.static(ids, mask) @ torch.from_numpy(table.components) + torch.from_numpy(table.mean)
        torch.testing.assert_close(off, want)
    # random init is a different table
    assert not torch.allclose(student(None, init="random").embed.weight[:100], rows[:100])


def trained_like(table, seed=0):
    """A student whose lattice is not zero, so encode == forward really covers the lattice."""
    st = student(table, heads={"t": 32, "other": 8}, seed=seed)
    with torch.no_grad():
        for n, p in st.named_parameters():
            if n.startswith("lattice."):
                p.copy_(torch.randn_like(p) * 0.3)
    return st


@pytest.fixture
def export(table, tiny_bert, tmp_path) -> Path:
    st = trained_like(table)
    run = tmp_path / "run"
    export_standalone(st, tiny_bert, run / "student")
    return run


TEXTS = ["What is AI?", "hi", "The quick brown fox jumps over the lazy dog, twice, and then it rests.",
         "Name three prime numbers.", "A cellular automaton updates every cell from its neighbours, " * 6]


def test_encode_equals_the_student_forward(export, table, tiny_bert):
    from tokenizers import Tokenizer

    enc = Encoder.from_pretrained(export)
    st = trained_like(table)
    tok = Tokenizer.from_file(str(tiny_bert / "tokenizer.json"))
    tok.no_padding()  # MiniLM's file pads to 128 and truncates there
    tok.no_truncation()
    want = []
    with torch.no_grad():
        for t in TEXTS:  # one text at a time, no padding: the plain reference
            ids = torch.tensor([tok.encode(t, add_special_tokens=False).ids])
            y = st(ids, torch.ones(ids.shape))
            want.append(torch.nn.functional.normalize(y["t"], dim=-1)[0].numpy())
    for bs in (1, 2, 64):
        got = enc.encode(TEXTS, batch_size=bs)
        assert got.shape == (5, 32) and got.dtype == np.float32
        np.testing.assert_allclose(got, np.stack(want), rtol=1e-4, atol=1e-5)
    other = enc.encode(TEXTS, space="other")
    assert other.shape == (5, 8)
    np.testing.assert_allclose(np.linalg.norm(other, axis=1), 1, rtol=1e-5)
    with pytest.raises(ValueError, match="space"):
        enc.encode(TEXTS, space="nope")
    with pytest.raises(ValueError, match="text 1: empty"):
        enc.encode(["ok", "  "])


def test_export_loads_in_a_fresh_interpreter_without_training_code(export):
    code = (
        "import sys, json\n"
        "from distill import Encoder\n"
        f"v = Encoder.from_pretrained({str(export)!r}).encode(['What is AI?', 'hi'])\n"
        "heavy = [m for m in ('accelerate', 'deepspeed', 'transformers', 'teachers', 'distill.train',\n"
        "         'distill.students.teacher', 'distill.commands', 'datasets') if m in sys.modules]\n"
        "print(json.dumps({'shape': list(v.shape), 'heavy': heavy}))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out == {"shape": [2, 32], "heavy": []}


def test_cli_encode_jsonl_and_txt_in_input_order(export, tmp_path):
    enc = Encoder.from_pretrained(export)
    jl = tmp_path / "in.jsonl"
    jl.write_text("".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(TEXTS)))
    r = run_cli(["encode", str(export), "--input", str(jl), "--output", str(tmp_path / "a.npy"),
                 "--batch-size", "2"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    np.testing.assert_allclose(np.load(tmp_path / "a.npy"), enc.encode(TEXTS), rtol=1e-5, atol=1e-6)
    txt = tmp_path / "in.txt"
    txt.write_text("\n".join(TEXTS[::-1]) + "\n")
    r = run_cli(["encode", str(export / "student"), "--input", str(txt), "--output", str(tmp_path / "b.npy"),
                 "--space", "other"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    np.testing.assert_allclose(np.load(tmp_path / "b.npy"), enc.encode(TEXTS[::-1], space="other"), rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("case", ["missing_field", "non_utf8", "empty_text", "bad_space", "no_student",
                                  "qa_student", "no_tokenizer"])
def test_cli_encode_bad_input(case, export, tmp_path):
    run = export
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "fine"}\n{"text": "also fine"}\n')
    extra = []
    want = None
    if case == "missing_field":
        src.write_text('{"text": "fine"}\n{"txt": "oops"}\n')
        want = f"{src}:2: missing 'text' field"
    elif case == "non_utf8":
        src = tmp_path / "in.txt"
        src.write_bytes(b"fine\n\xff\xfe bad\n")
        want = f"{src}:2: not valid UTF-8"
    elif case == "empty_text":
        src.write_text('{"text": "fine"}\n{"text": "   "}\n')
        want = f"{src}:2: empty text"
    elif case == "bad_space":
        extra = ["--space", "nope"]
        want = "--space: 'nope' is not one of this student's spaces (t, other)"
    elif case == "no_student":
        run = tmp_path / "emptyrun"
        run.mkdir()
        want = "no exported standalone student"
    elif case == "qa_student":
        run = tmp_path / "qarun"
        (run / "student").mkdir(parents=True)
        (run / "student" / "config.json").write_text('{"format_version": 1, "model": "Student"}')
        want = "not a standalone"
    elif case == "no_tokenizer":
        (export / "student" / "tokenizer.json").unlink()
        want = "tokenizer missing from the export"
    out = tmp_path / "out" / "o.npy"
    (tmp_path / "out").mkdir()
    before = snapshot(tmp_path / "out")
    r = run_cli(["encode", str(run), "--input", str(src), "--output", str(out), *extra], cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and want in lines[0], r.stderr
    assert snapshot(tmp_path / "out") == before


def test_lattice_path_receives_gradients_and_moves_off_zero(table):
    """The zero-initialised readout must not leave the lattice dead: one SGD step on a loss must
    give the readout weight and the cell rule non-zero gradients and make lattice-on differ from
    lattice-off (a zero rule AND a zero readout would keep every lattice gradient at zero)."""
    st = student(table).train()
    ids = torch.tensor([[1996, 2339, 7592, 2003], [2054, 2003, 9932, 0]])
    mask = torch.tensor([[1.0, 1, 1, 1], [1, 1, 1, 0]])
    loss = st(ids, mask)["t"].pow(2).sum()
    loss.backward()
    assert st.lattice.readout.proj.weight.grad.abs().sum() > 0
    opt = torch.optim.SGD(st.parameters(), lr=0.1)
    opt.step()
    opt.zero_grad()
    st(ids, mask)["t"].pow(2).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in st.lattice.rule.parameters())
    st.eval()
    with torch.no_grad():
        diff = st(ids, mask)["t"] - st(ids, mask, use_lattice=False)["t"]
    assert diff.abs().max() > 1e-6
    assert not torch.allclose(diff[0], diff[1])  # text-dependent, not a constant bias


def _pos_student(position_weights: str, max_tokens: int = 6, vocab: int = 20, pooled_mlp: int = 0) -> StandaloneStudent:
    torch.manual_seed(0)
    conf = StandaloneConfig(vocab_size=vocab, token_dim=4, heads={"t": 4}, input_teacher="t", init="random",
                            max_tokens=max_tokens, position_weights=position_weights, pooled_mlp=pooled_mlp)
    return StandaloneStudent(conf)


@pytest.mark.parametrize("kind", ["scalar", "vector"])
def test_position_weights_start_as_the_plain_mean_and_then_read_word_order(kind):
    from distill.tokens import mask_of, pad

    plain, st = _pos_student("none"), _pos_student(kind)
    st.load_state_dict({**plain.state_dict(), "position": st.position.detach()})
    ids = pad([[3, 5, 7, 9], [9, 5, 7, 3], [4], [1, 2, 3, 4, 5, 6, 7, 8]])  # 8 tokens > max_tokens 6
    x, m = ids.clamp(min=0), mask_of(ids)
    torch.testing.assert_close(st.static(x, m), plain.static(x, m))  # weight 1 everywhere: the plain mean
    torch.testing.assert_close(st.static(x, m)[0], st.static(x, m)[1])  # ... which ignores order
    with torch.no_grad():
        st.position.copy_(torch.randn_like(st.position))
    w = torch.exp(st.position)  # (6, 1 | 4): the weights are the exp of the stored logs, > 0
    e = st.embed.weight
    want0 = (w[0] * e[3] + w[1] * e[5] + w[2] * e[7] + w[3] * e[9]) / w[:4].sum(0)
    torch.testing.assert_close(st.static(x, m)[0], want0)
    # the swap moves the mean by (w_i - w_j)(e_a - e_b) / sum(w): the first and last token exchanged
    torch.testing.assert_close(st.static(x, m)[0] - st.static(x, m)[1], (w[0] - w[3]) * (e[3] - e[9]) / w[:4].sum(0))
    torch.testing.assert_close(st.static(x, m)[2], e[4])  # one token: its row, whatever its weight
    # past max_tokens every position shares the last weight; padding never counts
    want3 = (sum(w[i] * e[i + 1] for i in range(6)) + w[5] * (e[7] + e[8])) / (w.sum(0) + 2 * w[5])
    torch.testing.assert_close(st.static(x, m)[3], want3)
    torch.testing.assert_close(st.static(pad([[3, 5]]).clamp(min=0), mask_of(pad([[3, 5]])))[0],
                               st.static(x[:1, :2], m[:1, :2])[0])
    empty = torch.zeros(1, 3, dtype=torch.long)
    assert torch.equal(st.static(empty, torch.zeros(1, 3, dtype=torch.bool)), torch.zeros(1, 4))
    assert st.position.shape == (6, 1 if kind == "scalar" else 4) and not st.is_static_table and plain.is_static_table


def _mlp_student(pooled_mlp: int, vocab: int = 20) -> StandaloneStudent:
    return _pos_student("none", max_tokens=24, vocab=vocab, pooled_mlp=pooled_mlp)


def test_pooled_mlp_starts_as_the_static_path_then_mixes_the_mean_but_never_reads_order():
    from distill.tokens import mask_of, pad

    plain, st = _mlp_student(0), _mlp_student(8)
    st.load_state_dict({**st.state_dict(), **plain.state_dict()})  # the same table and head
    ids = pad([[3, 5, 7, 9], [9, 5, 7, 3], [4, 4]])
    x, m = ids.clamp(min=0), mask_of(ids)
    torch.testing.assert_close(st(x, m)["t"], plain(x, m)["t"])  # the last layer starts at zero: no change
    assert st.mlp[-1].weight.abs().sum() == 0 and not st.is_static_table and plain.is_static_table
    with torch.no_grad():
        for p in st.mlp.parameters():
            p.copy_(torch.randn_like(p))
    s = plain.static(x, m)
    ln, w1, w2 = st.mlp[0], st.mlp[1], st.mlp[3]
    want = s + w2(torch.nn.functional.gelu(w1(ln(s))))  # z = s + W2 gelu(W1 layernorm(s))
    torch.testing.assert_close(st.pooled(x, m), want)
    assert (st.pooled(x, m) - s).abs().max() > 1e-3  # the MLP moved it
    torch.testing.assert_close(st.pooled(x, m)[0], st.pooled(x, m)[1])  # a function of the mean: order-free
    # not a table: the output of two texts' mean is not the mean of their outputs ([4, 4]'s mean is row 4)
    one = lambda t: st.pooled(torch.tensor([t]), torch.ones(1, len(t), dtype=torch.bool))[0]  # noqa: E731
    assert (one([3, 4]) - (one([3]) + one([4])) / 2).abs().max() > 1e-3
    with pytest.raises(ValueError, match="pooled_mlp: must be >= 0"):
        StandaloneConfig(vocab_size=20, token_dim=4, heads={"t": 4}, input_teacher="t", pooled_mlp=-1)


def test_pooled_mlp_survives_export_and_old_exports_load_without_it(tmp_path, tiny_bert):
    from distill.tokens import mask_of, pad

    st = _mlp_student(16, vocab=30522)  # the tiny BERT's (MiniLM's) tokenizer
    with torch.no_grad():
        for p in st.mlp.parameters():
            p.copy_(torch.randn_like(p))
    st.eval()
    enc = Encoder.from_pretrained(export_standalone(st, tiny_bert, tmp_path / "s"))
    assert enc.config.pooled_mlp == 16 and torch.equal(enc.student.mlp[-1].weight, st.mlp[-1].weight)
    texts = ["the cat sat on the mat", "a dog"]
    ids = pad(enc.tokenize(texts))
    with torch.no_grad():
        want = torch.nn.functional.normalize(st(ids.clamp(min=0), mask_of(ids))["t"], dim=-1).numpy()
    np.testing.assert_allclose(enc.encode(texts), want, atol=1e-5)  # the export runs the MLP
    doc = st.config_doc()
    del doc["config"]["pooled_mlp"]  # an export written before the field existed
    old = StandaloneStudent.from_config_doc(doc)
    assert old.config.pooled_mlp == 0 and old.mlp is None


def test_position_weights_survive_export_and_old_exports_load_without_them(tmp_path, tiny_bert):
    st = _pos_student("vector", max_tokens=24, vocab=30522)  # the tiny BERT's (MiniLM's) tokenizer
    with torch.no_grad():
        st.position.copy_(torch.randn_like(st.position))
    st.eval()
    out = export_standalone(st, tiny_bert, tmp_path / "s")
    enc = Encoder.from_pretrained(out)
    assert enc.config.position_weights == "vector" and torch.equal(enc.student.position, st.position)
    texts = ["the cat sat on the mat", "the mat sat on the cat"]
    got = enc.encode(texts)
    assert float((got[0] * got[1]).sum()) < 1 - 1e-4  # order matters
    doc = st.config_doc()
    del doc["config"]["position_weights"]  # an export written before the field existed
    assert StandaloneStudent.from_config_doc(doc).config.position_weights == "none"
    with pytest.raises(ValueError, match="position_weights: 'both' is not one of none, scalar, vector"):
        StandaloneConfig(vocab_size=20, token_dim=4, heads={"t": 4}, input_teacher="t", position_weights="both")


def test_a_resume_names_a_changed_pooling_and_checkpoints_from_before_the_fields_still_resume(tiny_bert):
    from distill.checkpoint import CheckpointError, check_compatible
    from distill.config import StudentSection
    from distill.students.tokens import TokenStudent, section_config

    plain = section_config(StudentSection(input="tokens"), "t")  # what a checkpoint from before the fields holds
    assert "pooled_mlp" not in plain and "position_weights" not in plain and "bigram_buckets" not in plain
    check_compatible(plain, section_config(StudentSection(input="tokens"), "t"), Path("ck"), partial=True)
    mixed = section_config(StudentSection(input="tokens", pooled_mlp=64, position_weights="vector",
                                          bigram_buckets=4096), "t")
    with pytest.raises(CheckpointError) as err:
        check_compatible(plain, mixed, Path("ck"), partial=True)
    assert ("student.pooled_mlp: checkpoint None, config 64" in str(err.value)
            and "student.position_weights: checkpoint None, config 'vector'" in str(err.value)
            and "student.bigram_buckets: checkpoint None, config 4096" in str(err.value))
    built = TokenStudent(_mlp_student(8), tiny_bert).student_config()  # what the run's checkpoints record
    assert built["pooled_mlp"] == 8 and "position_weights" not in built


def test_a_plain_mean_export_starts_a_position_weighted_student_but_not_the_reverse(tmp_path, tiny_bert):
    import dataclasses

    from distill.schema import ConfigError
    from distill.students.tokens import load_init_from
    from distill.tokens import mask_of, pad

    plain = _pos_student("none", vocab=30522)
    with torch.no_grad():
        plain.embed.weight.copy_(torch.randn_like(plain.embed.weight))
    path = export_standalone(plain, tiny_bert, tmp_path / "plain")
    ids = pad([[3, 5, 7, 9], [9, 5, 7, 3], [4, 8]])
    x, m = ids.clamp(min=0), mask_of(ids)
    for kind in ("scalar", "vector"):
        st = load_init_from(str(path), dataclasses.replace(plain.config, position_weights=kind))
        assert torch.equal(st.embed.weight, plain.embed.weight)
        assert st.position is not None and not st.position.detach().any()  # logs 0: weight 1
        with torch.no_grad():
            torch.testing.assert_close(st(x, m)["t"], plain(x, m)["t"])  # the same student, to start
    weighted = _pos_student("vector", vocab=30522)
    wpath = export_standalone(weighted, tiny_bert, tmp_path / "weighted")
    with pytest.raises(ConfigError, match="position: in the export, not in the config's student"):
        load_init_from(str(wpath), plain.config)  # learned weights are not dropped silently


def _bigram_student(buckets: int, vocab: int = 20, max_tokens: int = 24) -> StandaloneStudent:
    torch.manual_seed(0)
    conf = StandaloneConfig(vocab_size=vocab, token_dim=4, heads={"t": 4}, input_teacher="t", init="random",
                            max_tokens=max_tokens, bigram_buckets=buckets)
    return StandaloneStudent(conf)


def test_bigram_rows_start_as_the_plain_mean_then_read_the_order_of_neighbours():
    from distill.students.tokens import BIGRAM_MULT, BIGRAM_PRIME
    from distill.tokens import mask_of, pad

    plain, st = _bigram_student(0), _bigram_student(7)
    st.load_state_dict({**st.state_dict(), **plain.state_dict()})  # the same table and head
    ids = pad([[3, 5, 7, 9], [9, 5, 7, 3], [4], [3, 5]])
    x, m = ids.clamp(min=0), mask_of(ids)
    assert not st.bigram.weight.any() and not st.is_static_table and plain.is_static_table
    torch.testing.assert_close(st(x, m)["t"], plain(x, m)["t"])  # pair rows start at 0: the plain mean
    with torch.no_grad():
        st.bigram.weight.copy_(torch.randn_like(st.bigram.weight))
    e, g = st.embed.weight, st.bigram.weight

    def pair(a: int, b: int) -> int:  # the documented hash, by hand
        return (a * BIGRAM_MULT + b) % BIGRAM_PRIME % 7

    want0 = (e[3] + e[5] + e[7] + e[9] + g[pair(3, 5)] + g[pair(5, 7)] + g[pair(7, 9)]) / 4
    torch.testing.assert_close(st.pooled(x, m)[0], want0)
    assert pair(3, 5) != pair(5, 3)  # the hash is ordered: (a, b) and (b, a) are different pairs
    assert (st.pooled(x, m)[0] - st.pooled(x, m)[1]).abs().max() > 1e-3  # the same tokens, reordered
    torch.testing.assert_close(st.pooled(x, m)[2], e[4])  # one token: no pair
    # padding makes no pair: [3, 5] padded to 4 is [3, 5] alone
    torch.testing.assert_close(st.pooled(x, m)[3], (e[3] + e[5] + g[pair(3, 5)]) / 2)
    torch.testing.assert_close(st.pooled(x[3:, :2], m[3:, :2])[0], st.pooled(x, m)[3])
    loss = st(x, m)["t"].sum()
    loss.backward()
    touched = {pair(3, 5), pair(5, 7), pair(7, 9), pair(9, 5), pair(7, 3), pair(5, 3)}
    assert {int(i) for i in st.bigram.weight.grad.abs().sum(1).nonzero()} == touched  # only the texts' pairs learn
    with pytest.raises(ValueError, match="bigram_buckets: must be >= 0"):
        StandaloneConfig(vocab_size=20, token_dim=4, heads={"t": 4}, input_teacher="t", bigram_buckets=-1)


def test_bigram_rows_survive_export_start_from_a_plain_export_and_refuse_a_model2vec_table(tmp_path, tiny_bert):
    import dataclasses

    from distill.export.m2v import refuse
    from distill.schema import ConfigError
    from distill.students.tokens import load_init_from
    from distill.tokens import mask_of, pad

    st = _bigram_student(64, vocab=30522)  # the tiny BERT's (MiniLM's) tokenizer
    with torch.no_grad():
        st.bigram.weight.copy_(torch.randn_like(st.bigram.weight))
    st.eval()
    enc = Encoder.from_pretrained(export_standalone(st, tiny_bert, tmp_path / "s"))
    assert enc.config.bigram_buckets == 64 and torch.equal(enc.student.bigram.weight, st.bigram.weight)
    texts = ["the cat sat on the mat", "the mat sat on the cat"]
    ids = pad(enc.tokenize(texts))
    with torch.no_grad():
        want = torch.nn.functional.normalize(st(ids.clamp(min=0), mask_of(ids))["t"], dim=-1).numpy()
    got = enc.encode(texts)
    np.testing.assert_allclose(got, want, atol=1e-5)  # the export runs the pair rows
    assert float((got[0] * got[1]).sum()) < 1 - 1e-4  # order matters
    assert "bigram_buckets: 64" in refuse(enc)
    doc = st.config_doc()
    del doc["config"]["bigram_buckets"]  # an export written before the field existed
    assert StandaloneStudent.from_config_doc(doc).bigram is None
    plain = _bigram_student(0, vocab=30522)
    path = export_standalone(plain, tiny_bert, tmp_path / "plain")
    grown = load_init_from(str(path), dataclasses.replace(plain.config, bigram_buckets=64))
    assert torch.equal(grown.embed.weight, plain.embed.weight) and not grown.bigram.weight.any()
    with pytest.raises(ConfigError, match="bigram.weight: in the export, not in the config's student"):
        load_init_from(str(tmp_path / "s"), plain.config)  # learned pair rows are not dropped silently
    with pytest.raises(ConfigError, match=r"bigram.weight: export \(64, 4\), config \(32, 4\)"):
        load_init_from(str(tmp_path / "s"), dataclasses.replace(plain.config, bigram_buckets=32))
