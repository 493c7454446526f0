"""Perception: what a cell knows about its neighbourhood before the cell rule runs.

A perception maps the channels-last state ``(B, D, H, W, C)`` to a per-cell feature vector
``(B, D, H, W, P)``. Two ways to compute the rule's first layer on it give the same numbers:

* ``slice``: build the features explicitly (pad by the boundary rule, slice one shifted view per
  offset, concatenate) and apply the first ``nn.Linear`` as one GEMM over all cells.
* ``conv``: when the features are *linear* in the neighbour states (``stencil`` is defined), the
  first layer composed with the perception is a 3-D convolution whose kernel holds, at each
  offset, the block of the linear weight that multiplies that neighbour. The kernel is rebuilt
  from the linear weight on every call, so parameters, gradients and saved files do not depend
  on the path. Measured on the 2-core AVX-512 CPU this project targets, the oneDNN convolution
  runs at or above the MKL matmul rate and ~2.4x faster than slice+GEMM for the Moore
  neighbourhood (it never materialises the (N+1)*C-wide feature tensor, nor its gradient); see
  ``bench/lattice.py``. The face-only von Neumann stencil is split into one 1-D convolution per
  axis (3 taps each) instead of a 27-tap box that would be mostly zeros.

How to add a perception: subclass :class:`Perceive`, set ``num_features`` and implement
``forward``; implement ``stencil`` too if the features are linear in the neighbour states (then
the conv path comes for free); add one line to ``PERCEIVES``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .neighbourhood import BOUNDARIES, Offset, pad


@dataclass(frozen=True)
class _ConvGroup:
    """One convolution of the conv path: which offsets it covers and on which axes it pads."""

    members: tuple[int, ...]  # indices into the neighbourhood's offsets
    positions: tuple[int, ...]  # flat position of each member inside the kernel (z, y, x order)
    kernel: tuple[int, int, int]
    axes: tuple[int, ...]  # state axes (1=D, 2=H, 3=W) padded by one ghost cell for this group


def _conv_plan(offsets: list[Offset]) -> list[_ConvGroup]:
    """Cover the offsets with as few, as small, convolutions as possible.

    If every offset moves along at most one axis (von Neumann), use one 3-tap line per axis (the
    centre goes to the first line); otherwise one 3x3x3 box.
    """
    axial = all(sum(v != 0 for v in o) <= 1 for o in offsets)
    lines: list[list[int]] = [[], [], []]
    if axial:
        for i, o in enumerate(offsets):
            nz = [a for a in range(3) if o[a] != 0]
            lines[nz[0] if nz else 0].append(i)
    groups = []
    if axial:
        for a, members in enumerate(lines):
            if not members:
                continue
            kernel = tuple(3 if b == a else 1 for b in range(3))
            positions = tuple(offsets[i][a] + 1 for i in members)
            groups.append(_ConvGroup(tuple(members), positions, kernel, (a + 1,)))
    else:
        positions = tuple((dz + 1) * 9 + (dy + 1) * 3 + (dx + 1) for dz, dy, dx in offsets)
        groups.append(_ConvGroup(tuple(range(len(offsets))), positions, (3, 3, 3), (1, 2, 3)))
    return groups


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
        """``linear(self(state))`` computed by ``impl`` ("slice" or "conv").

        state: (B, D, H, W, C) -> (B, D, H, W, linear.out_features).
        """
        if impl == "slice":
            return linear(self(state))
        return self._conv(state, linear.weight, linear.bias)

    def _conv(self, state: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        per_offset = self.stencil(weight)  # (out, N+1, C)
        out_features, C = per_offset.shape[0], per_offset.shape[2]
        total = None
        for g in self._plan:
            taps = g.kernel[0] * g.kernel[1] * g.kernel[2]
            members = per_offset[:, list(g.members)]  # (out, m, C)
            index = torch.tensor(g.positions, device=weight.device)
            kernel = per_offset.new_zeros(out_features, taps, C).index_copy(1, index, members)
            kernel = kernel.view(out_features, *g.kernel, C).permute(0, 4, 1, 2, 3)
            # (B, D', H', W', C) -> (B, C, D', H', W'): a channels_last_3d view, no copy; oneDNN
            # keeps that layout, so the permute back is free too.
            if BOUNDARIES[self.boundary].zeros:
                x, padding = state, tuple(k // 2 for k in g.kernel)
            else:
                x, padding = pad(state, self.boundary, g.axes), 0
            x = x.permute(0, 4, 1, 2, 3)
            b = bias if total is None else None
            y = F.conv3d(x, kernel.contiguous(), b, padding=padding).permute(0, 2, 3, 4, 1)
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

    def stencil(self, weight: torch.Tensor) -> torch.Tensor:
        own, nb = weight.view(weight.shape[0], 2, self.channels).unbind(1)
        n = len(self.offsets) - 1
        return torch.stack([own] + [nb / n] * n, dim=1)


PERCEIVES: dict[str, type[Perceive]] = {
    "gather": GatherPerceive,
    "isotropic": IsotropicPerceive,
}
