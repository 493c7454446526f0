"""Readouts: the output face's state after T steps -> the output vector.

A readout takes the output face ``(B, rows, cols, C)`` (the last index along ``io_axis``) and
``occupied``: ``(B, rows, cols, 1)``, 1.0 where the input face was written (a token lattice: the
cells of the text's own tokens), or None (a vector input writes every cell); it returns
``(B, output_dim)``. Readouts that pool every cell alike ignore ``occupied``. (``occupied_mean``,
the mean over the occupied cells, was retired in issue #22: one seed, no gain.)

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


READOUTS: dict[str, type[nn.Module]] = {
    "flatten": FlattenReadout,
    "mean": MeanReadout,
}
