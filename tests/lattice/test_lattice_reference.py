"""The fast Lattice3D equals the per-cell reference loop, in forward and in gradients.

The equivalence is checked in float64 to 1e-5 (both sides agree to ~1e-13 there, so any
indexing, layout or formula error shows as an O(0.1) difference). The fp32 kernels the model
really trains with (oneDNN convolution, MKL GEMM) are checked too, at 1e-4: in fp32 the two
sides sum in different orders, and a bias gradient summed over 360 cell-steps differs by ~1e-5
from rounding alone.
"""

from __future__ import annotations

import pytest
import torch

from lattice import Lattice3D, LatticeConfig

from .lattice_reference import cells_to_tensor, reference_run, reference_step, tensor_to_cells

TOL = {torch.float64: 1e-5, torch.float32: 1e-4}


def make(seed: int = 0, dtype=torch.float64, **kw) -> Lattice3D:
    """A small non-cubic lattice (3x4x5: an axis mix-up changes shapes or values) with every
    parameter random and non-zero, so no term of the computation can hide behind a zero."""
    base = dict(depth=3, height=4, width=5, channels=3, hidden=5, steps=3, input_dim=6, output_dim=4,
                face_channels=2, zero_init=False)
    base.update(kw)
    torch.manual_seed(seed)
    m = Lattice3D(LatticeConfig(**base))
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.dim() == 2:  # fan-in scaling keeps activations O(1), so fp32 rounding stays ~1e-7
                p.copy_(torch.randn_like(p) / p.shape[1] ** 0.5)
            elif name.startswith("norm."):
                p.copy_(1 + 0.3 * torch.randn_like(p))
            else:
                p.copy_(0.3 * torch.randn_like(p))
    return m.to(dtype)


def compare(m: Lattice3D, steps: int = 3, batch: int = 2, masks_seed=None):
    """Run both implementations on the same x; compare outputs, final states and all gradients."""
    dtype = m.input_proj.weight.dtype
    tol = dict(atol=TOL[dtype], rtol=TOL[dtype])
    torch.manual_seed(123)
    x = torch.randn(batch, m.config.input_dim, dtype=dtype)
    g_out = torch.randn(batch, m.config.output_dim, dtype=dtype)

    def grads(fn):
        m.zero_grad()
        xx = x.clone().requires_grad_()
        out, state = fn(xx)
        g_state = torch.linspace(-1, 1, state.numel(), dtype=dtype).view_as(state)
        ((out * g_out).sum() + (state * g_state).sum()).backward()
        return out.detach(), state.detach(), xx.grad, {k: p.grad.clone() for k, p in m.named_parameters()}

    def fast(xx):
        if masks_seed is not None:
            torch.manual_seed(masks_seed)
        r = m.run(xx, steps=steps)
        return r.output, r.state

    def slow(xx):
        masks = None
        if masks_seed is not None:  # the same draws the model makes: one (B, D, H, W, 1) per step
            torch.manual_seed(masks_seed)
            c = m.config
            masks = []
            for _ in range(steps):
                drawn = (torch.rand(batch, c.depth, c.height, c.width, 1) < c.update_rate).to(dtype)
                masks.append({k: v[0] for k, v in tensor_to_cells(drawn).items()})
        out, cells = reference_run(m, xx, steps, masks)
        return out, cells_to_tensor(cells, m)

    fo, fs, fx, fp = grads(fast)
    so, ss, sx, sp = grads(slow)
    torch.testing.assert_close(fo, so, **tol)
    torch.testing.assert_close(fs, ss, **tol)
    torch.testing.assert_close(fx, sx, **tol)
    assert fx.abs().sum() > 0  # the input reaches the output: the comparison is not vacuous
    for k in fp:
        torch.testing.assert_close(fp[k], sp[k], **tol, msg=lambda s, k=k: f"grad {k}: {s}")
        assert sp[k].abs().sum() > 0, f"{k} gets no gradient"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
@pytest.mark.parametrize("impl", ["conv", "slice", "index"])
@pytest.mark.parametrize("boundary", ["zero", "periodic", "reflect"])
@pytest.mark.parametrize("neighbourhood", ["von_neumann", "moore"])
def test_neighbourhood_boundary_matches_reference(neighbourhood, boundary, impl, dtype):
    compare(make(neighbourhood=neighbourhood, boundary=boundary, impl=impl, dtype=dtype))


@pytest.mark.parametrize("impl", ["conv", "index"])
@pytest.mark.parametrize("perceive", ["gather", "isotropic"])
@pytest.mark.parametrize("rule", ["mlp", "gated_mlp", "gru"])
def test_rule_and_perception_match_reference(rule, perceive, impl):
    compare(make(rule=rule, perceive=perceive, neighbourhood="moore", boundary="periodic", impl=impl))


@pytest.mark.parametrize(
    "kw",
    [
        dict(io_axis="y", inject="every_step", readout="mean", norm="layer"),
        dict(io_axis="x", inject="every_step", norm="rms", rule="gru", boundary="reflect"),
        dict(io_axis="x", face_channels=None, neighbourhood="moore", perceive="isotropic", impl="slice"),
    ],
    ids=["y-every_step-mean-layernorm", "x-rms-gru-reflect", "x-all-channels-isotropic"],
)
def test_faces_inject_norm_readout_match_reference(kw):
    compare(make(**kw))


def test_stochastic_update_mask_matches_reference():
    m = make(update_rate=0.5, neighbourhood="moore").train()
    compare(m, masks_seed=7)


def test_eval_applies_expected_update():
    # In eval mode with update_rate < 1 every cell moves by update_rate * ds, deterministically.
    m = make(update_rate=0.25).eval()
    compare(m)
    x = torch.randn(2, 6, dtype=torch.float64)
    torch.testing.assert_close(m(x), m(x), atol=0, rtol=0)


def test_single_step_on_random_state_matches_reference():
    # A random state everywhere (not just what the faces produce) exercises every ghost cell.
    m = make(neighbourhood="moore", boundary="reflect", norm="layer", rule="gated_mlp")
    s = torch.randn(2, 3, 4, 5, 3, dtype=torch.float64)
    ref = cells_to_tensor(reference_step(m, tensor_to_cells(s)), m)
    torch.testing.assert_close(m.step(s), ref, atol=1e-5, rtol=1e-5)
