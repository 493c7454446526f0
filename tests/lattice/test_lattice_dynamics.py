"""How information moves, what zero-init / masks / step sampling / tracing / checkpointing do, and
the FLOP and parameter counts."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from lattice import Lattice3D, LatticeConfig

from .lattice_reference import flops_reference, offsets, wrap


def random_model(**kw) -> Lattice3D:
    # GRU rule by default: tanh/sigmoid have no flat regions, so a dependency that exists is never
    # hidden by a ReLU whose units are all inactive at that cell (which would be genuine, but
    # would make "this cell changed" tests depend on the random draw).
    base = dict(depth=5, height=3, width=4, channels=4, hidden=8, steps=3, input_dim=5, output_dim=3,
                zero_init=False, rule="gru")
    base.update(kw)
    torch.manual_seed(0)
    m = Lattice3D(LatticeConfig(**base))
    with torch.no_grad():  # the zero-initialised last layer would make every dependency vanish
        for p in m.parameters():
            p.copy_(torch.randn_like(p) / (p.shape[-1] ** 0.5 if p.dim() == 2 else 3))
    return m


def input_gradient(m: Lattice3D, steps: int) -> torch.Tensor:
    x = torch.randn(2, m.config.input_dim, requires_grad=True)
    (g,) = torch.autograd.grad(m(x, steps=steps).sum(), x)
    return g


# --- information flow --------------------------------------------------------------------------


@pytest.mark.parametrize("impl", ["conv", "slice", "index"])
@pytest.mark.parametrize("neighbourhood", ["von_neumann", "moore"])
@pytest.mark.parametrize("boundary", ["zero", "reflect"])
@pytest.mark.parametrize("io_axis", ["z", "x"])
def test_output_depends_on_input_exactly_when_light_cone_reaches(io_axis, boundary, neighbourhood, impl):
    # The faces are L-1 cells apart and a step moves information by one cell: T <= L-2 steps give
    # an output that does not depend on the input at all (gradient exactly zero, not just small),
    # T = L-1 steps give one that does.
    m = random_model(io_axis=io_axis, boundary=boundary, neighbourhood=neighbourhood, impl=impl)
    L = m.config.io_axis_length()
    for T in range(0, L - 1):
        assert torch.count_nonzero(input_gradient(m, T)) == 0, f"T={T} < L-1={L - 1} leaked the input"
    for T in (L - 1, L, L + 2):
        assert input_gradient(m, T).abs().min() > 0, f"T={T} >= L-1 should reach the output face"


def test_periodic_boundary_wraps_faces_together():
    # Along a periodic io_axis the last index neighbours index 0: one step suffices.
    assert torch.count_nonzero(input_gradient(random_model(boundary="zero"), 1)) == 0
    assert input_gradient(random_model(boundary="periodic"), 1).abs().min() > 0


@pytest.mark.parametrize("impl", ["conv", "slice", "index"])
@pytest.mark.parametrize("neighbourhood", ["von_neumann", "moore"])
@pytest.mark.parametrize("boundary", ["zero", "periodic", "reflect"])
def test_one_step_influence_is_the_neighbourhood(boundary, neighbourhood, impl):
    # Perturb one cell; exactly the cells that see it (per the neighbourhood and boundary rule,
    # wrapped/mirrored by plain index arithmetic) change after one step, and no other.
    m = random_model(boundary=boundary, neighbourhood=neighbourhood, impl=impl)
    c = m.config
    dims = (c.depth, c.height, c.width)
    s = torch.randn(1, *dims, c.channels, dtype=torch.float64)
    m = m.double()
    for q in [(0, 0, 0), (1, 2, 3), (4, 1, 0)]:
        s2 = s.clone()
        s2[(0, *q)] += 1.0
        changed = (m.step(s2) - m.step(s)).abs().amax(-1)[0] > 0
        expected = torch.zeros(dims, dtype=torch.bool)
        for p in itertools.product(*(range(n) for n in dims)):
            for o in offsets(neighbourhood):
                seen = tuple(wrap(i + d, n, boundary) for i, d, n in zip(p, o, dims))
                if seen == q:
                    expected[p] = True
        assert torch.equal(changed, expected), f"perturbing {q}"


# --- initialisation, masks, steps ----------------------------------------------------------------


@pytest.mark.parametrize("rule", ["mlp", "gated_mlp", "gru"])
def test_zero_init_is_identity(rule):
    cfg = LatticeConfig(depth=4, height=3, width=3, channels=4, hidden=8, rule=rule, norm="layer",
                        neighbourhood="moore", input_dim=5, output_dim=3, zero_init=True)
    torch.manual_seed(0)
    m = Lattice3D(cfg)
    s = torch.randn(2, 4, 3, 3, 4)
    assert torch.equal(m.step(s), s)
    x = torch.randn(2, 5)
    out = m.run(x, steps=6)
    assert torch.equal(out.state, m.initial_state(x)[0])
    # ...and the identity is only the starting point: one gradient step moves away from it.
    out.output.sum().backward()
    assert m.rule.fc_out.weight.grad is not None
    cfg.zero_init = False
    torch.manual_seed(0)
    assert not torch.equal(Lattice3D(cfg).step(s), s)


def test_stochastic_update_masks_whole_cells():
    m = random_model(update_rate=0.5, depth=8, height=8, width=8).train()
    s = torch.randn(4, 8, 8, 8, 4)
    changed = m.step(s) != s  # (B, D, H, W, C)
    per_cell = changed.any(-1)
    assert torch.equal(per_cell, changed.all(-1)), "a cell updates all its channels or none"
    frac = per_cell.float().mean().item()
    assert 0.4 < frac < 0.6, frac
    assert not torch.equal(m.step(s), m.step(s)), "training updates are random"
    m.eval()
    torch.testing.assert_close(m.step(s), m.step(s), atol=0, rtol=0)
    full = random_model(update_rate=1.0, depth=8, height=8, width=8).eval().step(s)
    torch.testing.assert_close(m.step(s) - s, 0.5 * (full - s))  # expected update in eval


def test_steps_sampled_in_training_fixed_in_eval_explicit_wins():
    m = random_model(steps=4, steps_range=[1, 3], depth=2, height=2, width=2, impl="slice")
    x = torch.randn(1, 5)
    m.train()
    seen = {m.run(x).steps for _ in range(40)}
    assert seen == {1, 2, 3}  # P(missing one) = 3 * (2/3)^40 < 1e-6
    m.eval()
    assert {m.run(x).steps for _ in range(5)} == {4}
    m.train()
    assert m.run(x, steps=7).steps == 7
    torch.testing.assert_close(m.eval()(x, steps=7), m.run(x, steps=7).output)


def test_every_step_injection_clamps_the_input_face():
    m = random_model(inject="every_step", face_channels=2)
    x = torch.randn(2, 5)
    _, face = m.initial_state(x)
    once = random_model(inject="once", face_channels=2).run(x, steps=4).state
    state = m.run(x, steps=4).state
    # After the last update the face has moved once since its last write; the step before, it
    # held the input: check through the trace of a T-1 run followed by a write.
    before = m.run(x, steps=3).state
    torch.testing.assert_close(m.write_face(before, face)[:, 0, :, :, :2], face)
    assert not torch.allclose(state, once), "re-injection changes the dynamics"


def test_trace_returns_detached_states_at_requested_steps():
    m = random_model()
    x = torch.randn(2, 5)
    out = m.run(x, steps=4, trace_steps=(0, 2, 4, 9))
    assert sorted(out.trace) == [0, 2, 4]  # 9 > T is skipped
    assert all(not t.requires_grad for t in out.trace.values())
    torch.testing.assert_close(out.trace[0], m.initial_state(x)[0].detach())
    torch.testing.assert_close(out.trace[2], m.run(x, steps=2).state.detach())
    torch.testing.assert_close(out.trace[4], out.state.detach())
    assert out.trace[4].shape == (2, 5, 3, 4, 4)


@pytest.mark.parametrize("update_rate", [1.0, 0.6])
def test_checkpointing_gives_same_values_and_gradients(update_rate):
    def run(checkpoint):
        m = random_model(checkpoint=checkpoint, update_rate=update_rate, neighbourhood="moore").train()
        torch.manual_seed(5)
        y = m(torch.ones(3, 5), steps=4)
        y.square().sum().backward()
        return y.detach(), [p.grad for p in m.parameters()]

    y0, g0 = run(False)
    y1, g1 = run(True)
    torch.testing.assert_close(y0, y1, atol=0, rtol=0)
    for a, b in zip(g0, g1):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


@pytest.mark.slow
def test_compiled_step_matches_eager():
    eager = random_model(neighbourhood="moore", norm="rms", rule="gated_mlp")
    compiled = random_model(neighbourhood="moore", norm="rms", rule="gated_mlp", compile=True)
    x = torch.randn(2, 5)
    y0, y1 = eager(x, steps=3), compiled(x, steps=3)
    torch.testing.assert_close(y0, y1, atol=1e-5, rtol=1e-5)
    y1.sum().backward()
    y0.sum().backward()
    torch.testing.assert_close(eager.rule.fc_in.weight.grad, compiled.rule.fc_in.weight.grad, atol=1e-5, rtol=1e-4)


# --- accounting --------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", ["mlp", "gated_mlp", "gru"])
@pytest.mark.parametrize("perceive,neighbourhood", [("gather", "von_neumann"), ("gather", "moore"),
                                                    ("isotropic", "moore")])
def test_flops_per_step_matches_hand_count_and_flop_counter(rule, perceive, neighbourhood):
    m = random_model(rule=rule, perceive=perceive, neighbourhood=neighbourhood, impl="slice")
    assert m.flops_per_step() == flops_reference(m.config)
    # torch's own FLOP counter over one step of the whole lattice (it counts matmul/conv FLOPs,
    # the same convention), divided by the number of cells.
    s = torch.randn(2, 5, 3, 4, 4)
    with FlopCounterMode(display=False) as counter:
        m.step(s)
    assert counter.get_total_flops() == m.flops_per_step() * 2 * 5 * 3 * 4
    if perceive == "gather" and neighbourhood == "moore":  # the conv path does the same work
        m.impl = "conv"
        with FlopCounterMode(display=False) as counter:
            m.step(s)
        assert counter.get_total_flops() == m.flops_per_step() * 2 * 5 * 3 * 4


def test_num_parameters_counts_every_layer():
    c = dict(depth=4, height=3, width=5, channels=6, hidden=10, input_dim=7, output_dim=2, face_channels=2)
    m = Lattice3D(LatticeConfig(**c, neighbourhood="moore", rule="gru", norm="layer"))
    face = 3 * 5
    expected = (
        7 * face * 2 + face * 2  # input projection
        + 2 * 6  # layer norm
        + 27 * 6 * (10 + 6) + (10 + 6)  # fc_in over the gathered perception
        + 6 * 10  # fc_reset
        + 10 * 12 + 12  # fc_out
        + face * 6 * 2 + 2  # flatten readout
    )
    assert m.num_parameters() == expected
