"""The standalone student through the training recipe (student.input: tokens): it trains, resumes
exactly, exports the standalone format whose Encoder equals the student's forward, chains runs
with init_from, and `distill predict` on it loads no teacher."""

from __future__ import annotations

import json

import pytest
import torch

from distill.config import load_config
from distill.train import build_recipe, run
from tests.distill.e2e import tiny_setup

LATTICE = {"depth": 2, "height": 1, "width": 8, "channels": 4, "hidden": 8, "steps": 2, "readout": "mean"}
TOKENS = {"student.input": "tokens", "student.token_dim": 16, "student.lattice": LATTICE,
          "student.max_tokens": 24, "logging.tensorboard": False, "train.eval_every": 2, "train.save_every": 2,
          "curriculum.pacing": "none"}


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path
    torch.set_num_threads(threads)


def _cfg(root, **over):
    return load_config(tiny_setup(root, n_pairs=64, max_steps=4, **{**TOKENS, **over}))


def params(r) -> list[torch.Tensor]:
    return [p.detach().clone() for p in r.model.parameters()]


def test_token_run_trains_exports_and_the_encoder_equals_the_forward(root):
    from distill.encoder import Encoder

    cfg = _cfg(root, **{"logging.image_every": 2, "logging.histogram_every": 2, "logging.tensorboard": True})
    r = build_recipe(cfg)
    st = r.unwrapped
    assert st.model.lattice is not None and st.teacher_dims == {"bert-mean": 32, "bert-cls": 32}
    # The untrained student's input-teacher head starts as the teacher-derived table's inverse PCA
    # (not a random linear map): the table came from the teacher through the store's token_tables.
    assert any((root / "store" / "token_tables").iterdir())
    before = params(r)
    assert run(r, lambda: False) == 0
    assert any(not torch.equal(a, b) for a, b in zip(before, params(r)))
    export = cfg.run_dir / "student"
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in export.iterdir()}
    enc = Encoder.from_pretrained(cfg.run_dir)
    texts = [r.data.questions[i] for i in r.data.test.idx[:6]]
    got = enc.encode(texts, space="bert-cls", batch_size=4)
    with torch.no_grad():
        want = torch.nn.functional.normalize(st(r.data.test.x[:6])["bert-cls"], dim=-1).numpy()
    assert got.shape == (6, 32)
    torch.testing.assert_close(torch.from_numpy(got), torch.from_numpy(want), atol=1e-5, rtol=1e-5)


def test_token_run_resume_is_exact(root):
    cfg = _cfg(root)
    r = build_recipe(cfg)
    for _ in range(2):
        r.train_step(r.sampler.next_batch(), preempted=False)
    r.save()
    r.train_step(r.sampler.next_batch(), preempted=False)
    uninterrupted = params(r)
    again = build_recipe(cfg, resume=True)
    again.train_step(again.sampler.next_batch(), preempted=False)
    for a, b in zip(uninterrupted, params(again)):
        assert torch.allclose(a, b, atol=1e-7)


def test_lattice_off_is_the_static_path(root):
    r = build_recipe(_cfg(root, **{"student.token_lattice": False}))
    assert r.unwrapped.model.lattice is None
    x = r.data.test.x[:3]
    m = r.unwrapped.model
    with torch.no_grad():
        z = m.static(x.clamp(min=0), x >= 0)
        torch.testing.assert_close(r.unwrapped(x)["bert-mean"], m.heads["bert-mean"](z))


def test_init_from_chains_runs_and_refuses_other_shapes(root):
    from distill.schema import ConfigError

    first = _cfg(root)
    r1 = build_recipe(first)
    assert run(r1, lambda: False) == 0
    trained = {k: v.clone() for k, v in r1.unwrapped.state_dict().items()}
    second = _cfg(root, **{"run.name": "second", "student.init_from": str(first.run_dir / "student"),
                           "student.token_init": "random"})
    r2 = build_recipe(second)
    got = r2.unwrapped.state_dict()
    assert set(got) == set(trained)
    for k, v in trained.items():
        assert torch.equal(got[k], v), k
    with pytest.raises(ConfigError, match=r"student.init_from.*embed.weight: export \(\d+, 16\), config \(\d+, 8\)"):
        build_recipe(_cfg(root, **{"run.name": "third", "student.init_from": str(first.run_dir),
                                   "student.token_dim": 8}))
    with pytest.raises(ConfigError, match="student.init_from"):
        build_recipe(_cfg(root, **{"run.name": "fourth", "student.init_from": str(root / "nowhere")}))


def test_predict_and_eval_on_a_standalone_run_load_no_teacher(root, monkeypatch, capsys):
    import argparse
    import json

    import teachers
    from distill import commands

    cfg = _cfg(root)
    assert run(build_recipe(cfg), lambda: False) == 0

    def refuse(*a, **k):
        raise AssertionError("a teacher was loaded")

    monkeypatch.setattr(teachers, "load_teacher", refuse)
    monkeypatch.setattr(teachers, "TeacherPool", refuse)
    capsys.readouterr()
    q = "what is your favourite book?"
    assert commands.cmd_predict(argparse.Namespace(run_dir=str(cfg.run_dir), question=q, top_k=3)) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["question"] == q and [h["rank"] for h in out["answers"]] == [1, 2, 3]
    scores = [h["score"] for h in out["answers"]]
    assert scores == sorted(scores, reverse=True)
    assert commands.cmd_eval(argparse.Namespace(run_dir=str(cfg.run_dir), data=None, out=None)) == 0
    ev = json.loads((cfg.run_dir / "eval.json").read_text())
    assert ev["test"]["bert-mean"]["student"]["recall@1"] >= 0
    assert "cosine_centred" in ev["test"]["bert-mean"]["ridge"]
    # --sts / --retrieval on the run's own encoder equal the same numbers computed here directly.
    import numpy as np
    from scipy.stats import spearmanr

    from distill.encoder import Encoder

    texts = ["what is your name", "how are you", "tell me a joke", "what time is it", "do you like books"]
    sts = [{"s1": a, "s2": b, "score": float(i % 3)} for i, (a, b) in enumerate(zip(texts, texts[1:] + texts[:1]))]
    (root / "sts.jsonl").write_text("".join(json.dumps(x) + "\n" for x in sts))
    assert commands.cmd_eval(argparse.Namespace(run_dir=str(cfg.run_dir), data=None, out=None,
                                                sts=str(root / "sts.jsonl"), retrieval=None)) == 0
    got = json.loads((cfg.run_dir / "eval_encoder.json").read_text())["sts"]["spearman"]
    enc = Encoder.from_pretrained(cfg.run_dir)
    cos = [float(np.dot(*enc.encode([x["s1"], x["s2"]]))) for x in sts]
    assert got == pytest.approx(spearmanr(cos, [x["score"] for x in sts]).correlation, abs=1e-6)


# ---- data.task: texts --------------------------------------------------------------------------

def _texts(root, n=40):
    from distill.config import DataSection
    from distill.data import load_pairs

    ds = load_pairs(DataSection(path="builtin:chatterbot_english", max_pairs=n)).dataset
    return list(dict.fromkeys(ds["question"]))


def test_text_task_loads_txt_jsonl_parquet_alike(root):
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from distill.config import DataSection
    from distill.data import load_texts

    texts = _texts(root)
    (root / "t.txt").write_text("\n".join(texts) + "\n")
    (root / "t.jsonl").write_text("".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(texts)))
    pq.write_table(pa.table({"text": texts}), root / "t.parquet")
    for name in ("t.txt", "t.jsonl", "t.parquet"):
        got = load_texts(DataSection(path=str(root / name), task="texts"))
        assert got.texts == texts and got.keys == texts and list(got.group) == list(range(len(texts))), name
    # Several fields: a record's texts stay together (group), the first is the split key.
    two = load_texts(DataSection(path="builtin:chatterbot_english", task="texts", text_fields=["question", "answer"],
                                 max_pairs=5))
    assert len(two.texts) == 10 and list(two.group) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert two.keys == two.texts[::2]


@pytest.mark.parametrize("name,content,message", [
    ("missing.jsonl", b'{"text": "fine"}\n{"txt": "typo"}\n', "missing.jsonl:2: missing field 'text'"),
    ("empty.txt", b"one\n\nthree\n", "empty.txt:2: field 'text' is empty"),
    ("latin.txt", b"one\ncaf\xe9\n", "latin.txt:2: not valid UTF-8"),
])
def test_text_task_bad_input_is_one_error_line_exit_2(root, name, content, message):
    from tests.conftest import run_cli

    (root / name).write_bytes(content)
    cfg = tiny_setup(root, **TOKENS, **{"data.path": str(root / name), "data.task": "texts"})
    r = run_cli(["train", str(cfg)], cwd=root)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], r.stderr
    assert not (root / "runs").exists()


def test_text_task_needs_a_token_student(root):
    from distill.schema import ConfigError

    (root / "t.txt").write_text("\n".join(_texts(root)) + "\n")
    with pytest.raises(ConfigError, match="data.task: texts.*student.input=tokens"):
        load_config(tiny_setup(root, **{"data.path": str(root / "t.txt"), "data.task": "texts"}))


def test_text_task_trains_on_each_texts_own_teacher_embedding(root):
    from teachers import TargetStore

    texts = _texts(root, 160)
    (root / "t.txt").write_text("\n".join(texts) + "\n")
    cfg = _cfg(root, **{"data.path": str(root / "t.txt"), "data.task": "texts"})
    r = build_recipe(cfg)
    d = r.data
    # Questions and answers are the texts; the targets are each teacher's embedding of the text.
    assert d.questions == d.answers == texts
    for n in ("bert-mean", "bert-cls"):
        assert torch.equal(d.test.targets.q[n], d.test.targets.a[n])
    # Split by distinct text: no held-out text is trained on.
    held = {texts[i] for i in list(d.validation.idx) + list(d.test.idx)}
    assert held and not held & {texts[i] for i in d.train_idx}
    # Embedded once per teacher: one store space per teacher, none for a second role.
    assert len(TargetStore(str(root / "store")).spaces()) == 2
    res = r.evaluate(log=False)
    assert set(res["bert-mean"]) == {"student"}  # no baseline: it would be the target itself
    assert run(r, lambda: False) == 0


def test_spans_and_sentences_add_training_texts_with_their_own_targets(root):
    """data.spans / data.sentences: extra texts of the training records only, each with the teacher's
    embedding of the extra text itself; validation and test are the plain run's, text for text."""
    from distill.data import extra_texts
    from distill.rundata import load_examples

    texts = [f"{q} It was asked. The answer is {i}." for i, q in enumerate(_texts(root, 160))]
    (root / "t.txt").write_text("\n".join(texts) + "\n")
    plain_cfg = _cfg(root, **{"data.path": str(root / "t.txt"), "data.task": "texts"})
    plain_q, _, plain = load_examples(plain_cfg)
    cfg = _cfg(root, **{"data.path": str(root / "t.txt"), "data.task": "texts", "data.spans": 1,
                        "data.sentences": True})
    info: dict = {}
    q, _, split = load_examples(cfg, info)
    assert q[:len(texts)] == plain_q == texts
    for name in ("validation", "test"):
        assert list(getattr(split, name)) == list(getattr(plain, name))  # held-out splits unchanged
    train_records = {texts[i] for i in plain.train}
    ex, src = extra_texts(texts, spans=1, sentences=True)
    want = [e for e, i in zip(ex, src) if texts[i] in train_records]
    assert q[len(texts):] == want and info["extra_texts"] == len(want) > len(plain.train)
    assert set(split.train) == set(plain.train) | set(range(len(texts), len(q)))
    r = build_recipe(cfg)
    d = r.data
    assert d.questions == q and len(d.train_idx) == len(split.train)
    # An extra text's target is the teacher's embedding of that text, not its record's: the rows of
    # "It was asked." (the same sentence of every record that ends its question with . ! or ?) are
    # all equal and differ from the records'.
    pos = {int(i): k for k, i in enumerate(d.train_idx)}
    asked = [pos[i] for i in range(len(texts), len(q)) if q[i] == "It was asked."]
    rec = pos[int(plain.train[0])]
    for n in ("bert-mean", "bert-cls"):
        rows = d.train.a[n].tensor()
        assert len(asked) > 3
        assert torch.allclose(rows[asked], rows[asked[0]].expand(len(asked), -1))
        assert not torch.allclose(rows[asked[0]], rows[rec], atol=1e-3)
    assert run(r, lambda: False) == 0


def test_text_task_reads_training_targets_from_the_store_batch_by_batch(root):
    """A corpus-scale text run never holds its training targets: they stay store views, each batch
    gathers its rows, and the stats equal those of the materialised targets."""
    import numpy as np

    from distill.losses import compute_target_stats
    from teachers import RowView

    texts = _texts(root, 160)
    # Two bad (empty) lines, skipped and counted under on_error: skip; eval.json records the count.
    (root / "t.txt").write_text("\n".join(texts[:50] + [""] + texts[50:100] + [" "] + texts[100:]) + "\n")
    cfg = _cfg(root, **{"data.path": str(root / "t.txt"), "data.task": "texts", "data.on_error": "skip"})
    r = build_recipe(cfg)
    d = r.data
    assert d.questions == texts and d.skipped_records == 2
    for n in ("bert-mean", "bert-cls"):
        view = d.train.a[n]
        assert isinstance(view, RowView) and len(view) == len(d.train_idx)
        assert isinstance(d.test.targets.a[n], torch.Tensor)  # held-out splits are small: tensors
        full = view.tensor()
        idx = np.array([5, 0, len(view) - 1, 5])
        x, t = d.source.batch(idx)
        assert torch.equal(t[n], full[torch.as_tensor(idx)]) and torch.equal(x, d.source.train_x[torch.as_tensor(idx)])
        a, b = compute_target_stats(view), compute_target_stats(full)
        torch.testing.assert_close(a.mean, b.mean, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(torch.as_tensor(a.std), torch.as_tensor(b.std), rtol=1e-12, atol=1e-12)
    assert run(r, lambda: False) == 0
    assert json.loads((cfg.run_dir / "eval.json").read_text())["skipped_records"] == 2


# ---- stages ------------------------------------------------------------------------------------

def test_stages_run_in_order_each_from_the_previous_export(root):
    import argparse

    import yaml

    from distill import commands
    from distill.encoder import load_standalone
    from distill.schema import ConfigError
    from distill.stages import load_stages

    cfg_path = tiny_setup(root, **TOKENS)
    data = yaml.safe_load(cfg_path.read_text())
    data["stages"] = [{"name": "texts", "data": {"task": "texts", "text_fields": ["question", "answer"]},
                       "train": {"max_steps": 2}},
                      {"name": "qa", "train": {"max_steps": 2}}]
    cfg_path.write_text(yaml.safe_dump(data))
    cfgs = load_stages(cfg_path)
    assert [c.run.name for c in cfgs] == ["tiny-texts", "tiny"]
    assert [c.data.task for c in cfgs] == ["texts", "pairs"]
    assert cfgs[0].student.init_from is None and cfgs[1].student.init_from == str(cfgs[0].run_dir / "student")
    # --set applies to the base; a stage's own keys win.
    over = load_stages(cfg_path, ["train.max_steps=7", "optim.lr=0.01"])
    assert [c.train.max_steps for c in over] == [2, 2] and [c.optim.lr for c in over] == [0.01, 0.01]

    args = argparse.Namespace(config=str(cfg_path), overrides=[], resume=False)
    assert commands.cmd_train(args) == 0
    first, _ = load_standalone(cfgs[0].run_dir)
    assert (cfgs[1].run_dir / "student" / "config.json").is_file()
    # --resume: both stages finished, nothing retrains (the exports stay byte-identical).
    before = (cfgs[1].run_dir / "student" / "model.safetensors").read_bytes()
    assert commands.cmd_train(argparse.Namespace(config=str(cfg_path), overrides=[], resume=True)) == 0
    assert (cfgs[1].run_dir / "student" / "model.safetensors").read_bytes() == before
    assert first.config.token_dim == 16

    data["stages"] = [{"name": "a"}, {"name": "a"}]
    cfg_path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"stages\[1\].name: 'a' is already"):
        load_stages(cfg_path)
    data["stages"] = [{"name": "a", "data": {"task": "nope"}}]
    cfg_path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"stages\[0\] \(a\).*data.task"):
        load_stages(cfg_path)


def test_both_sides_trains_on_the_students_own_answer_encodings(root):
    """loss.both_sides: the training batches carry each question's and its answer's token ids, the
    student encodes both, and the both_sides terms read the answer side (a pairs task with a token
    student only; anything else is one ConfigError naming loss.both_sides)."""
    import numpy as np

    from distill.schema import ConfigError
    from distill.students import student_type

    both = {"loss.both_sides": {"infonce": 1.0, "cosine": 1.0}, "student.token_lattice": False}
    cfg = _cfg(root, **both)
    r = build_recipe(cfg)
    d = r.data
    x, t = d.source.batch(np.array([3, 0]))
    assert x.shape[:2] == (2, 2)
    ans = student_type("tokens").text_inputs(cfg, [d.answers[d.train_idx[i]] for i in (3, 0)])
    qs = student_type("tokens").text_inputs(cfg, [d.questions[d.train_idx[i]] for i in (3, 0)])
    w = ans.shape[1]
    assert torch.equal(x[:, 1, :w], ans) and (x[:, 1, w:] < 0).all()
    assert torch.equal(x[:, 0, :qs.shape[1]], qs) and (x[:, 0, qs.shape[1]:] < 0).all()
    fb = r.forward_backward(np.arange(8), 0)
    assert {"bert-mean/both_sides.infonce", "bert-mean/both_sides.cosine"} <= set(fb["per_term"])
    # The answer side is the student's encoding of the answer ids: the same question ids with the
    # other answer's ids change the both_sides terms, and their value is the student's own.
    with torch.no_grad():
        out = r.model(x, t)
        swapped = r.model(torch.stack([x[:, 0], x.flip(0)[:, 1]], dim=1), t)
        pa = r.unwrapped(x[:, 1])["bert-mean"]
    assert out.per_term["bert-mean/both_sides.cosine"] != pytest.approx(swapped.per_term["bert-mean/both_sides.cosine"])
    want = (1 - torch.nn.functional.cosine_similarity(pa, t["bert-mean"], dim=-1)).mean().item()
    assert out.per_term["bert-mean/both_sides.cosine"] == pytest.approx(want, rel=1e-5)
    assert run(r, lambda: False) == 0
    (root / "t.txt").write_text("\n".join(_texts(root)) + "\n")
    with pytest.raises(ConfigError, match="loss.both_sides: .*data.task is texts"):
        _cfg(root, **both, **{"data.path": str(root / "t.txt"), "data.task": "texts"})
    with pytest.raises(ConfigError, match="loss.both_sides: .*student.input=teacher"):
        load_config(tiny_setup(root, n_pairs=64, max_steps=4, **{"loss.both_sides": {"cosine": 1.0}}))
