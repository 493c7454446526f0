"""A slow, obviously-correct Lattice3D: explicit Python loops over batch, cells and neighbours.

It shares no code with ``lattice`` beyond reading the model's config and parameter tensors by
name, so the fast model (padding, slicing, convolution kernels assembled from linear weights,
channels-last layouts, face selection) is checked against plain index arithmetic and per-cell
matrix-vector products. Used by the tests and by ``bench/lattice.py`` (as the per-cell baseline).
"""

from __future__ import annotations

import itertools

import torch


def offsets(neighbourhood: str) -> list[tuple[int, int, int]]:
    """Self first, then the neighbours in lexicographic (dz, dy, dx) order (the documented layout)."""
    others = [o for o in itertools.product((-1, 0, 1), repeat=3) if o != (0, 0, 0)]
    if neighbourhood == "von_neumann":
        others = [o for o in others if abs(o[0]) + abs(o[1]) + abs(o[2]) == 1]
    elif neighbourhood != "moore":
        raise ValueError(neighbourhood)
    return [(0, 0, 0)] + others


def wrap(i: int, n: int, boundary: str):
    """Index of the cell seen at position i along an axis of n cells; None = a zero ghost."""
    if 0 <= i < n:
        return i
    if boundary == "zero":
        return None
    if boundary == "periodic":
        return i % n
    if boundary == "reflect":  # mirror without repeating the edge: -1 -> 1, n -> n-2
        return -i if i < 0 else 2 * (n - 1) - i
    raise ValueError(boundary)


def face_cell(axis: str, index: int, r: int, c: int) -> tuple[int, int, int]:
    """(z, y, x) of face position (r, c) on the face at ``index`` along ``axis``."""
    return {"z": (index, r, c), "y": (r, index, c), "x": (r, c, index)}[axis]


def norm_cell(v: torch.Tensor, kind: str, p: dict) -> torch.Tensor:
    if kind == "none":
        return v
    if kind == "layer":
        mean = v.mean()
        var = ((v - mean) ** 2).mean()
        return (v - mean) / torch.sqrt(var + 1e-5) * p["norm.weight"] + p["norm.bias"]
    if kind == "rms":
        eps = torch.finfo(v.dtype).eps  # nn.RMSNorm's default eps
        return v / torch.sqrt((v * v).mean() + eps) * p["norm.weight"]
    raise ValueError(kind)


def rule_cell(kind: str, perception: torch.Tensor, s: torch.Tensor, p: dict, hidden: int) -> torch.Tensor:
    """The cell rule for ONE cell: perception (P,), own normalised state s (C,) -> ds (C,)."""
    a = p["rule.fc_in.weight"] @ perception + p["rule.fc_in.bias"]
    if kind == "mlp":
        h = torch.clamp(a, min=0)
        return p["rule.fc_out.weight"] @ h + p["rule.fc_out.bias"]
    if kind == "gated_mlp":
        g, v = a[:hidden], a[hidden:]
        h = g * torch.sigmoid(g) * v
        return p["rule.fc_out.weight"] @ h + p["rule.fc_out.bias"]
    if kind == "gru":
        C = s.shape[0]
        u, r = a[:hidden], torch.sigmoid(a[hidden:])
        h = torch.tanh(u + p["rule.fc_reset.weight"] @ (r * s))
        o = p["rule.fc_out.weight"] @ h + p["rule.fc_out.bias"]
        return torch.sigmoid(o[:C]) * torch.tanh(o[C:])
    raise ValueError(kind)


def reference_step(model, cells: dict, masks=None, scale: float = 1.0) -> dict:
    """One synchronous step. cells: {(b, z, y, x): state (C,)}; masks: {(b, z, y, x): 0/1} or None."""
    cfg = model.config
    p = dict(model.named_parameters())
    dims = (cfg.depth, cfg.height, cfg.width)
    offs = offsets(cfg.neighbourhood)
    normed = {key: norm_cell(v, cfg.norm, p) for key, v in cells.items()}
    zero = torch.zeros(cfg.channels, dtype=next(iter(cells.values())).dtype)
    new = {}
    for (b, z, y, x), s in cells.items():
        seen = []
        for d in offs:
            idx = [wrap(i + di, n, cfg.boundary) for i, di, n in zip((z, y, x), d, dims)]
            seen.append(zero if None in idx else normed[(b, *idx)])
        if cfg.perceive == "gather":
            perception = torch.cat(seen)
        elif cfg.perceive == "isotropic":
            perception = torch.cat([seen[0], sum(seen[1:]) / (len(seen) - 1)])
        else:
            raise ValueError(cfg.perceive)
        ds = rule_cell(cfg.rule, perception, normed[(b, z, y, x)], p, cfg.hidden)
        m = scale if masks is None else masks[(b, z, y, x)]
        new[(b, z, y, x)] = s + m * ds
    return new


def reference_run(model, x: torch.Tensor, steps: int, masks=None):
    """x: (B, input_dim) -> (output (B, output_dim), final cells dict). masks: per step list or None."""
    cfg = model.config
    p = dict(model.named_parameters())
    B = x.shape[0]
    rows, cols = cfg.face_shape()
    fc = cfg.channels if cfg.face_channels is None else cfg.face_channels
    L = {"z": cfg.depth, "y": cfg.height, "x": cfg.width}[cfg.io_axis]
    proj = [p["input_proj.weight"] @ x[b] + p["input_proj.bias"] for b in range(B)]

    cells = {
        (b, z, y, xx): torch.zeros(cfg.channels, dtype=x.dtype)
        for b in range(B)
        for z in range(cfg.depth)
        for y in range(cfg.height)
        for xx in range(cfg.width)
    }

    def write(cells):
        cells = dict(cells)
        for b in range(B):
            for r in range(rows):
                for c in range(cols):
                    key = (b, *face_cell(cfg.io_axis, 0, r, c))
                    value = proj[b][(r * cols + c) * fc : (r * cols + c + 1) * fc]
                    cells[key] = torch.cat([value, cells[key][fc:]])
        return cells

    cells = write(cells)
    scale = 1.0 if model.training else cfg.update_rate
    for t in range(steps):
        if t > 0 and cfg.inject == "every_step":
            cells = write(cells)
        cells = reference_step(model, cells, None if masks is None else masks[t], scale)

    outputs = []
    for b in range(B):
        face = [cells[(b, *face_cell(cfg.io_axis, L - 1, r, c))] for r in range(rows) for c in range(cols)]
        if cfg.readout == "flatten":
            feat = torch.cat(face)
        elif cfg.readout == "mean":
            feat = sum(face) / len(face)
        else:
            raise ValueError(cfg.readout)
        outputs.append(p["readout.proj.weight"] @ feat + p["readout.proj.bias"])
    return torch.stack(outputs), cells


def cells_to_tensor(cells: dict, model) -> torch.Tensor:
    """{(b, z, y, x): (C,)} -> (B, D, H, W, C)."""
    cfg = model.config
    B = 1 + max(k[0] for k in cells)
    out = torch.zeros(B, cfg.depth, cfg.height, cfg.width, cfg.channels, dtype=next(iter(cells.values())).dtype)
    for (b, z, y, x), v in cells.items():
        out[b, z, y, x] = v
    return out


def tensor_to_cells(state: torch.Tensor) -> dict:
    B, D, H, W, _ = state.shape
    return {(b, z, y, x): state[b, z, y, x] for b in range(B) for z in range(D) for y in range(H) for x in range(W)}


def flops_reference(cfg) -> int:
    """FLOPs of one cell-step forward counted by hand (2 per multiply-add, linear layers only)."""
    n = len(offsets(cfg.neighbourhood))
    P = n * cfg.channels if cfg.perceive == "gather" else 2 * cfg.channels
    C, h = cfg.channels, cfg.hidden
    return {
        "mlp": 2 * (P * h + h * C),
        "gated_mlp": 2 * (P * 2 * h + h * C),
        "gru": 2 * (P * (h + C) + C * h + h * 2 * C),
    }[cfg.rule]

