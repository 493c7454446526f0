"""Tokens on the input face: layout, overflow policy, padding, and the light cone of each token."""

from __future__ import annotations

import pytest
import torch

from lattice import LatticeConfig, TokenLattice3D, tokens_to_face


def reference_face(tokens, mask, rows, cols, overflow):
    """Per-token loop: token i of each text goes to cell (i // cols, i % cols) (mod the face for
    fold, dropped past the face for truncate); a cell is the mean of its real tokens."""
    B, L, C = tokens.shape
    n = rows * cols
    face = torch.zeros(B, rows, cols, C, dtype=torch.float64)
    count = torch.zeros(B, rows, cols, dtype=torch.float64)
    for b in range(B):
        for i in range(L):
            if mask[b, i] == 0 or (overflow == "truncate" and i >= n):
                continue
            cell = i % n
            face[b, cell // cols, cell % cols] += tokens[b, i].double()
            count[b, cell // cols, cell % cols] += 1
    occupied = (count > 0).double().unsqueeze(-1)
    return face / count.clamp(min=1).unsqueeze(-1), occupied


@pytest.mark.parametrize("overflow", ["fold", "truncate"])
@pytest.mark.parametrize("L", [5, 12, 29])
def test_face_equals_per_token_reference(overflow, L):
    torch.manual_seed(L)
    rows, cols = 3, 4
    tokens = torch.randn(3, L, 6)
    mask = (torch.rand(3, L) > 0.3).float()
    mask[:, 0] = 1
    mask[2, L // 2:] = 0  # a right-padded text
    face, occ = tokens_to_face(tokens, mask, rows, cols, overflow)
    ref_face, ref_occ = reference_face(tokens, mask, rows, cols, overflow)
    torch.testing.assert_close(face.double(), ref_face, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(occ.double(), ref_occ)


def test_reading_order_and_policies_differ_on_long_text():
    rows, cols = 2, 3
    tokens = torch.arange(8, dtype=torch.float32).view(1, 8, 1)  # token i has value i
    mask = torch.ones(1, 8)
    fold, _ = tokens_to_face(tokens, mask, rows, cols, "fold")
    trunc, _ = tokens_to_face(tokens, mask, rows, cols, "truncate")
    # reading order: row 0 holds tokens 0,1,2, row 1 tokens 3,4,5
    assert trunc[0, :, :, 0].tolist() == [[0, 1, 2], [3, 4, 5]]
    # tokens 6 and 7 fold onto cells 0 and 1: means (0+6)/2, (1+7)/2
    assert fold[0, :, :, 0].tolist() == [[3, 4, 2], [3, 4, 5]]


def model(**kw) -> TokenLattice3D:
    overflow = kw.pop("overflow", "fold")
    base = dict(depth=3, height=4, width=5, channels=4, hidden=8, steps=3, output_dim=3, zero_init=False,
                rule="gru")
    base.update(kw)
    torch.manual_seed(0)
    m = TokenLattice3D(LatticeConfig(**base), token_dim=6, overflow=overflow).double()
    with torch.no_grad():  # random weights everywhere, so every dependency that exists shows
        for p in m.parameters():
            p.copy_(torch.randn_like(p) / (p.shape[-1] ** 0.5 if p.dim() == 2 else 3))
    return m.eval()


@pytest.mark.parametrize("neighbourhood", ["von_neumann", "moore"])
def test_light_cone_per_output_cell(neighbourhood):
    """d(output-face cell (r', c')) / d(token at (r, c)) is exactly zero before the step the
    neighbourhood allows and non-zero from that step on."""
    m = model(neighbourhood=neighbourhood)
    D, H, W = 3, 4, 5
    L = H * W
    pos = 7  # token 7 sits at face cell (1, 2)
    r, c = divmod(pos, W)
    for T in range(0, 7):
        tokens = torch.randn(1, L, 6, dtype=torch.float64, requires_grad=True)
        out = m.run_tokens(tokens, torch.ones(1, L), steps=T)
        face = m.output_face(out.state)  # (1, H, W, C)
        for rr in range(H):
            for cc in range(W):
                (g,) = torch.autograd.grad(face[0, rr, cc].sum(), tokens, retain_graph=True)
                dist = abs(rr - r) + abs(cc - c) if neighbourhood == "von_neumann" else max(abs(rr - r), abs(cc - c))
                first = (D - 1) + dist if neighbourhood == "von_neumann" else max(D - 1, dist)
                reached = g[0, pos].abs().max().item() > 0
                assert reached == (T >= first), (T, rr, cc, first)


def test_light_cone_of_readout():
    """The readout depends on a token iff T >= depth - 1 (the faces are depth-1 cells apart)."""
    m = model()
    for T in range(0, 5):
        tokens = torch.randn(2, 9, 6, dtype=torch.float64, requires_grad=True)
        (g,) = torch.autograd.grad(m(tokens, torch.ones(2, 9), steps=T).sum(), tokens)
        if T < 2:
            assert torch.count_nonzero(g) == 0
        else:
            assert torch.all(g[:, :9].abs().sum(-1) > 0)


@pytest.mark.parametrize("overflow", ["fold", "truncate"])
def test_padding_has_no_effect(overflow):
    m = model(overflow=overflow)
    torch.manual_seed(1)
    tokens = torch.randn(2, 7, 6, dtype=torch.float64)
    mask = torch.ones(2, 7)
    mask[1, 4:] = 0
    y = m(tokens, mask)
    # add 30 padding positions full of garbage: same output
    junk = torch.randn(2, 30, 6, dtype=torch.float64) * 100
    y_pad = m(torch.cat([tokens, junk], 1), torch.cat([mask, torch.zeros(2, 30)], 1))
    torch.testing.assert_close(y, y_pad)
    # and text 1 alone, unpadded, gives the same row
    torch.testing.assert_close(m(tokens[1:, :4], torch.ones(1, 4))[0], y[1])
    # the padded positions really are inert: changing them changes nothing, changing a real one does
    t2 = tokens.clone()
    t2[1, 5] += 5.0
    torch.testing.assert_close(m(t2, mask), y)
    t2[1, 2] += 5.0
    assert not torch.allclose(m(t2, mask)[1], y[1])


def test_fold_makes_overflow_tokens_count_and_truncate_drops_them():
    for overflow, counts in (("fold", True), ("truncate", False)):
        m = model(overflow=overflow)
        L = 4 * 5 + 3  # 3 tokens past the face
        tokens = torch.randn(1, L, 6, dtype=torch.float64, requires_grad=True)
        (g,) = torch.autograd.grad(m(tokens, torch.ones(1, L), steps=4).sum(), tokens)
        assert (g[0, -1].abs().sum() > 0) == counts


def test_token_lattice_validates():
    with pytest.raises(ValueError, match="overflow"):
        TokenLattice3D(LatticeConfig(output_dim=2), token_dim=4, overflow="wrap")
    m = TokenLattice3D(LatticeConfig(depth=2, height=2, width=2, output_dim=2), token_dim=4)
    with pytest.raises(ValueError, match="tokens"):
        m(torch.randn(1, 3, 5), torch.ones(1, 3))
