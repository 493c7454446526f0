"""Perception: what a cell knows about its neighbourhood before the cell rule runs.

A perception maps the channels-last state ``(B, D, H, W, C)`` to a per-cell feature vector
``(B, D, H, W, P)``. Two ways to compute the rule's first layer on it give the same numbers:

* ``slice``: build the features explicitly (pad by the boundary rule, slice one shifted view per
  offset, concatenate) and apply the first ``nn.Linear`` as one GEMM over all cells.
* ``index``: the same explicit features, gathered in one indexing op from a cached table of
  each cell's neighbour indices (built once per lattice shape by running the boundary rule on
  the cell numbers, so every boundary and neighbourhood is covered by construction). Per step it
  is ~2 tensor ops where ``slice`` is one pad per axis plus N+1 slices and a concatenation: on
  small lattices at small batch (a standalone student encoding one text) the per-op overhead,
  not arithmetic, is the cost, and ``index`` is several times faster.
* ``conv``: when the features are *linear* in the neighbour states (``stencil`` is defined), the
  first layer composed with the perception is a 3-D convolution whose kernel holds, at each
  offset, the block of the linear weight that multiplies that neighbour. The kernel is rebuilt
  from the linear weight on every call, so parameters, gradients and saved files do not depend
  on the path. Measured on the 2-core AVX-512 CPU this project targets, the oneDNN convolution
  runs at or above the MKL matmul rate and ~2.4x faster than slice+GEMM for the Moore
  neighbourhood (it never materialises the (N+1)*C-wide feature tensor, nor its gradient); see
  ``bench/lattice.py``. The face-only von Neumann stencil is split into one 3-tap line
  convolution per axis instead of a 27-tap box that would be mostly zeros.

How to add a perception: subclass :class:`Perceive`, set ``num_features`` and implement
``forward``; implement ``stencil`` too if the features are linear in the neighbour states (then
the conv path comes for free); add one line to ``PERCEIVES``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .neighbourhood import BOUNDARIES, Offset, pad


@dataclass(frozen=True)
class _ConvGroup:
    """One convolution of the conv path: which offsets it covers, where they sit in its kernel."""

    members: tuple[int, ...]  # indices into the neighbourhood's offsets
    positions: tuple[int, ...]  # each member's tap: 0..2 along the line, or 0..26 in the z,y,x box
    axis: int  # 1, 2 or 3: a 3-tap line along that state axis; 0: the 3x3x3 box


def _conv_plan(offsets: list[Offset]) -> list[_ConvGroup]:
    """Cover the offsets with as few, as small, convolutions as possible.

    If every offset moves along at most one axis (von Neumann), use one 3-tap line per axis (the
    centre goes to the first line); otherwise one 3x3x3 box.
    """
    if not all(sum(v != 0 for v in o) <= 1 for o in offsets):
        positions = tuple((dz + 1) * 9 + (dy + 1) * 3 + (dx + 1) for dz, dy, dx in offsets)
        return [_ConvGroup(tuple(range(len(offsets))), positions, 0)]
    lines: list[list[int]] = [[], [], []]
    for i, o in enumerate(offsets):
        nz = [a for a in range(3) if o[a] != 0]
        lines[nz[0] if nz else 0].append(i)
    return [
        _ConvGroup(tuple(m), tuple(offsets[i][a] + 1 for i in m), a + 1) for a, m in enumerate(lines) if m
    ]


def _line_conv(x: torch.Tensor, axis: int, kernel: torch.Tensor, bias, padding: int) -> torch.Tensor:
    """3-tap convolution along one axis of a channels-last ``x: (B, D', H', W', C)``.

    kernel: (out, C, 3). Run as a 2-D convolution with a (3, 1) kernel over a free view
    (axes before ``axis`` merged into the batch, axes after it into the columns). Unlike a
    (3, 1, 1) conv3d, this never falls to PyTorch's slow im2col path (chosen for 1-thread,
    batch < 16, kernel ending in 1x1), and one function serves all three axes.
    """
    shape = x.shape
    lead = math.prod(shape[:axis])
    rest = math.prod(shape[axis + 1 : 4])
    x2 = x.reshape(lead, shape[axis], rest, shape[4]).permute(0, 3, 1, 2)  # channels-last 2-D view
    y = F.conv2d(x2, kernel.unsqueeze(-1), bias, padding=(padding, 0))
    out_shape = list(shape[:4])
    out_shape[axis] = y.shape[2]
    return y.permute(0, 2, 3, 1).reshape(*out_shape, -1)


class Perceive(nn.Module):
    """Base class. ``offsets`` are the neighbourhood's, self first; ``boundary`` a name in
    ``BOUNDARIES``.

    Subclasses set ``num_features`` (P) and implement ``forward``; linear ones also implement
    ``stencil``. ``prefers_conv`` is what ``impl="auto"`` uses.
    """

    prefers_conv = False

    def __init__(self, offsets: list[Offset], boundary: str, channels: int):
        super().__init__()
        self.offsets = list(offsets)
        self.boundary = boundary
        self.channels = channels
        self.num_features = 0
        self._plan = _conv_plan(self.offsets)
        self._index_cache: dict = {}  # (D, H, W), device -> neighbour_index table

    # -- explicit features ----------------------------------------------------------------------
    def forward(self, state: torch.Tensor) -> torch.Tensor:
        """state: (B, D, H, W, C) -> features (B, D, H, W, P)."""
        raise NotImplementedError

    def shifted(self, state: torch.Tensor) -> list[torch.Tensor]:
        """One (B, D, H, W, C) view per offset: element [z, y, x] is the state at [z+dz, y+dy, x+dx]
        (ghost cells from the boundary rule past the edge)."""
        _, D, H, W, _ = state.shape
        p = pad(state, self.boundary)
        return [p[:, 1 + dz : 1 + dz + D, 1 + dy : 1 + dy + H, 1 + dx : 1 + dx + W] for dz, dy, dx in self.offsets]

    def neighbour_index(self, shape: tuple[int, int, int], device) -> torch.Tensor:
        """(D, H, W) -> long (D*H*W, N+1): row k lists, in offset order, the flat index + 1 of the
        cell each offset of cell k reads (0 = a zero ghost past the edge). Cached per shape/device."""
        key = (tuple(shape), str(device))
        cache = self._index_cache
        if key not in cache:
            D, H, W = shape
            # The boundary rule only copies values (or writes zeros), so padding the cell numbers
            # 1..n gives, at every ghost position, the number of the cell it copies (0 if zero).
            numbers = torch.arange(1, D * H * W + 1, dtype=torch.float64).view(1, D, H, W, 1)
            views = [v.reshape(-1) for v in self.shifted(numbers)]
            cache[key] = torch.stack(views, dim=1).round().long().to(device)
        return cache[key]

    def gathered(self, state: torch.Tensor) -> torch.Tensor:
        """state (B, D, H, W, C) -> (B, D, H, W, N+1, C): each cell's own state then each
        neighbour's (what :meth:`shifted` gives, stacked), by one indexing op."""
        B, D, H, W, C = state.shape
        idx = self.neighbour_index((D, H, W), state.device)
        flat = torch.cat([state.new_zeros(B, 1, C), state.reshape(B, D * H * W, C)], dim=1)
        return flat[:, idx].view(B, D, H, W, idx.shape[1], C)

    def features(self, state: torch.Tensor, impl: str) -> torch.Tensor:
        """The explicit features ``self(state)``, built by ``impl``: "index" or "slice"."""
        return self.from_gathered(self.gathered(state)) if impl == "index" else self(state)

    def from_gathered(self, g: torch.Tensor) -> torch.Tensor:
        """(B, D, H, W, N+1, C) neighbour states -> features (B, D, H, W, P)."""
        raise NotImplementedError

    @classmethod
    def can_gather(cls) -> bool:
        """Whether the ``index`` path is available (the subclass implements ``from_gathered``)."""
        return cls.from_gathered is not Perceive.from_gathered

    # -- linear structure -----------------------------------------------------------------------
    @classmethod
    def is_linear(cls) -> bool:
        return cls.stencil is not Perceive.stencil

    def stencil(self, weight: torch.Tensor) -> torch.Tensor:
        """weight: (out, P) of a linear layer on the features -> (out, N+1, C): the matrix that
        multiplies each offset's state, so that ``weight @ features == sum_k W_k @ state[offset_k]``."""
        raise NotImplementedError(f"{type(self).__name__} is not linear in the neighbour states")

    # -- first layer ------------------------------------------------------------------------------
    def project(self, state: torch.Tensor, linear: nn.Linear, impl: str) -> torch.Tensor:
        """``linear(self(state))`` computed by ``impl`` ("slice", "index" or "conv").

        state: (B, D, H, W, C) -> (B, D, H, W, linear.out_features).
        """
        if impl == "conv":
            return self._conv(state, linear.weight, linear.bias)
        return linear(self.features(state, impl))

    def _conv(self, state: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        per_offset = self.stencil(weight)  # (out, N+1, C)
        out_features, C = per_offset.shape[0], per_offset.shape[2]
        zeros = BOUNDARIES[self.boundary].zeros  # then the convolution pads, no copy of the state
        total = None
        for g in self._plan:
            taps = 27 if g.axis == 0 else 3
            index = torch.tensor(g.positions, device=weight.device)
            kernel = per_offset.new_zeros(out_features, taps, C).index_copy(1, index, per_offset[:, list(g.members)])
            b = bias if total is None else None
            if g.axis == 0:
                x = state if zeros else pad(state, self.boundary)
                # (B, D, H, W, C) -> (B, C, D, H, W) is a channels_last_3d view, no copy; oneDNN keeps
                # that layout, so the permute back is free too.
                kernel = kernel.view(out_features, 3, 3, 3, C).permute(0, 4, 1, 2, 3).contiguous()
                y = F.conv3d(x.permute(0, 4, 1, 2, 3), kernel, b, padding=1 if zeros else 0)
                y = y.permute(0, 2, 3, 4, 1)
            else:
                x = state if zeros else pad(state, self.boundary, (g.axis,))
                y = _line_conv(x, g.axis, kernel.permute(0, 2, 1).contiguous(), b, 1 if zeros else 0)
            total = y if total is None else total + y
        return total


class GatherPerceive(Perceive):
    """Features = the cell's own state then each neighbour's, in offset order: P = (N+1)*C.

    Position-aware: the rule's first layer holds one (hidden, C) block per neighbour.
    """

    prefers_conv = True

    def __init__(self, offsets: list[Offset], boundary: str, channels: int):
        super().__init__(offsets, boundary, channels)
        self.num_features = len(self.offsets) * channels

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return torch.cat(self.shifted(state), dim=-1)

    def from_gathered(self, g: torch.Tensor) -> torch.Tensor:
        return g.flatten(-2)

    def stencil(self, weight: torch.Tensor) -> torch.Tensor:
        return weight.view(weight.shape[0], len(self.offsets), self.channels)


class IsotropicPerceive(Perceive):
    """Features = [own state, mean of the N neighbour states]: P = 2*C.

    Blind to direction (a rotated lattice perceives the same), cheap, and its width does not grow
    with the neighbourhood. Ghost cells count in the mean (zero boundary: zeros).
    """

    prefers_conv = False  # P = 2C: the explicit features are already small

    def __init__(self, offsets: list[Offset], boundary: str, channels: int):
        super().__init__(offsets, boundary, channels)
        self.num_features = 2 * channels

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        views = self.shifted(state)
        neighbours = torch.stack(views[1:], dim=0).sum(0) / (len(views) - 1)
        return torch.cat([views[0], neighbours], dim=-1)

    def from_gathered(self, g: torch.Tensor) -> torch.Tensor:
        return torch.cat([g[..., 0, :], g[..., 1:, :].sum(-2) / (g.shape[-2] - 1)], dim=-1)

    def stencil(self, weight: torch.Tensor) -> torch.Tensor:
        own, nb = weight.view(weight.shape[0], 2, self.channels).unbind(1)
        n = len(self.offsets) - 1
        return torch.stack([own] + [nb / n] * n, dim=1)


PERCEIVES: dict[str, type[Perceive]] = {
    "gather": GatherPerceive,
    "isotropic": IsotropicPerceive,
}
