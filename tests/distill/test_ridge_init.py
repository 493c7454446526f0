"""Ridge-initialised skips and the same-input ridge baseline (issue #11 item 7).

The untrained ridge-initialised student must predict exactly what the evaluator's ``ridge_input``
baseline predicts (ridge from the input teacher's question embedding), in every teacher space:
a forgotten identity correction in the residual space, an unzeroed head or a transposed weight
would each make them differ.
"""

from __future__ import annotations

import torch

from distill.eval.evaluator import Evaluator
from distill.eval.qa import fit_ridge, retrieval_metrics
from distill.students.teacher import Student
from distill.targets import Targets
from lattice import LatticeConfig


def _data(n: int, seed: int) -> Targets:
    g = torch.Generator().manual_seed(seed)
    qa = torch.randn(n, 6, generator=g)
    # Answers depend linearly (plus noise) on the input teacher's question, so ridge is non-trivial.
    mix_a, mix_b = torch.randn(6, 6, generator=g), torch.randn(6, 9, generator=g)
    return Targets(q={"a": qa, "b": torch.randn(n, 9, generator=g)},
                   a={"a": qa @ mix_a + 0.1 * torch.randn(n, 6, generator=g) + 2.0,
                      "b": qa @ mix_b + 0.1 * torch.randn(n, 9, generator=g) - 1.0})


def _student(residual: bool) -> Student:
    torch.manual_seed(0)
    return Student({"a": 6, "b": 9}, "a", LatticeConfig(depth=3, height=2, width=2, channels=4, hidden=8, steps=3),
                   residual=residual, skip=True)


def test_untrained_ridge_student_equals_same_input_ridge():
    train, test = _data(200, 0), _data(50, 1)
    for residual in (True, False):
        st = _student(residual)
        st.init_skips_from_ridge(train.q["a"], train.a, lam=0.5)
        with torch.no_grad():
            out = st.eval()(test.q["a"])
        for name in ("a", "b"):
            w, b = fit_ridge(train.q["a"], train.a[name], 0.5)
            want = (test.q["a"].double() @ w + b).float()
            torch.testing.assert_close(out[name], want, atol=1e-4, rtol=1e-4)


def test_ridge_init_still_trains_the_heads():
    # Zeroed heads must still get gradients (the lattice path is not switched off).
    train = _data(64, 0)
    st = _student(True)
    st.init_skips_from_ridge(train.q["a"], train.a, lam=1.0)
    loss = sum((y - train.a[n]).pow(2).mean() for n, y in st(train.q["a"]).items())
    loss.backward()
    assert all(st.heads[n].net[-1].weight.grad.abs().sum() > 0 for n in ("a", "b"))
    assert all(p.grad is not None for p in st.skips.parameters())


def test_frozen_ridge_skips_get_no_gradient_and_keep_the_map():
    train = _data(64, 0)
    st = _student(True)
    st.init_skips_from_ridge(train.q["a"], train.a, lam=1.0, freeze=True)
    before = {k: v.clone() for k, v in st.skips.state_dict().items()}
    opt = torch.optim.AdamW([p for p in st.parameters() if p.requires_grad], lr=0.1)
    sum((y - train.a[n]).pow(2).mean() for n, y in st(train.q["a"]).items()).backward()
    opt.step()
    assert all(p.grad is None for p in st.skips.parameters())
    assert all(torch.equal(before[k], v) for k, v in st.skips.state_dict().items())
    assert st.heads["b"].net[-1].weight.abs().sum() > 0  # the heads did move


def test_evaluator_adds_ridge_input_for_the_other_teachers_only():
    train, split = _data(200, 0), _data(60, 2)
    ev = Evaluator(split.q["a"], split, train, (1, 5), 1.0, 32, input_teacher="a")
    assert "ridge_input" not in ev.baselines["a"]  # the same map as "ridge" there
    w, b = fit_ridge(train.q["a"], train.a["b"], 1.0)
    want = retrieval_metrics((split.q["a"].double() @ w + b).float(), split.a["b"], (1, 5),
                             center=train.a["b"].double().mean(0))
    assert "cosine_centred" in want
    assert ev.baselines["b"]["ridge_input"] == want
    assert ev.baselines["b"]["ridge_input"] != ev.baselines["b"]["ridge"]  # b's own question differs
    # The untrained ridge-initialised student scores exactly the ridge_input baseline.
    st = _student(True)
    st.init_skips_from_ridge(train.q["a"], train.a, lam=1.0)
    got = ev.evaluate(st)["b"]["student"]
    for k, v in want.items():
        assert abs(got[k] - v) < 1e-6, k
    # Without an input teacher (online mode or token input) there is no such row.
    assert "ridge_input" not in Evaluator(split.q["a"], split, train, (1,), 1.0, 32).baselines["b"]
