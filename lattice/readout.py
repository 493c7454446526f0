"""Readouts: the output face's state after T steps -> the output vector.

A readout takes the output face ``(B, rows, cols, C)`` (the last index along ``io_axis``) and
``occupied``: ``(B, rows, cols, 1)``, 1.0 where the input face was written (a token lattice: the
cells of the text's own tokens), or None (a vector input writes every cell); it returns
``(B, output_dim)``. Readouts that pool every cell alike ignore ``occupied``.

How to add a readout: subclass ``nn.Module`` with ``__init__(rows, cols, channels, output_dim)``
and ``forward(face, occupied=None) -> (B, output_dim)``, and add one line to ``READOUTS``.
"""

from __future__ import annotations

import torch
from torch import nn


class FlattenReadout(nn.Module):
    """Linear map of every value on the face: rows*cols*C -> output_dim.

    Keeps where on the face a feature sits (the default; the face is a learned spatial code).
    """

    def __init__(self, rows: int, cols: int, channels: int, output_dim: int):
        super().__init__()
        self.proj = nn.Linear(rows * cols * channels, output_dim)

    def forward(self, face: torch.Tensor, occupied: torch.Tensor | None = None) -> torch.Tensor:
        return self.proj(face.flatten(1))


class MeanReadout(nn.Module):
    """Mean over the face's cells, then C -> output_dim: few parameters, position-blind."""

    def __init__(self, rows: int, cols: int, channels: int, output_dim: int):
        super().__init__()
        self.proj = nn.Linear(channels, output_dim)

    def forward(self, face: torch.Tensor, occupied: torch.Tensor | None = None) -> torch.Tensor:
        return self.proj(face.mean(dim=(1, 2)))


class OccupiedMeanReadout(MeanReadout):
    """Mean over the cells whose input cell was written, then C -> output_dim.

    ``forward(face, occupied)`` with ``occupied`` (B, rows, cols, 1), 1.0 where the input face got
    a value (a token face: the text's own positions); a row with none falls back to zeros before
    the projection. Without ``occupied`` (a vector input writes every cell) it is the plain mean.
    Why: an all-cells mean scales a token face's signal by ~L / cells, so a short text's lattice
    output would shrink with its length; this pools over the text like the static mean does.
    """

    def forward(self, face: torch.Tensor, occupied: torch.Tensor | None = None) -> torch.Tensor:
        if occupied is None:
            return super().forward(face)
        w = occupied.to(face.dtype)
        pooled = (face * w).sum(dim=(1, 2)) / w.sum(dim=(1, 2)).clamp(min=1.0)
        return self.proj(pooled)


READOUTS: dict[str, type[nn.Module]] = {
    "flatten": FlattenReadout,
    "mean": MeanReadout,
    "occupied_mean": OccupiedMeanReadout,
}
