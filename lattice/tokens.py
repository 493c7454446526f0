"""Token sequences through the lattice: one token per input-face cell, in reading order.

A text's token vectors ``(B, L, C_tok)`` are laid out on the ``rows x cols`` input face row by
row (token i -> cell ``(i // cols, i % cols)``), each projected by one shared linear map to the
cell's ``face_channels``. Tokens that are neighbours in the text are neighbours on the face (left /
right), and tokens ``cols`` apart are neighbours up / down, so the cellular steps compose nearby
tokens while the state climbs towards the output face.

Texts longer than the face (``L > rows*cols``), the ``overflow`` policy:

* ``"fold"`` (default): token i goes to cell ``i mod (rows*cols)``; a cell holding several tokens
  gets their mean. Every token counts; a long text wraps around the face like lines of a page
  written over each other.
* ``"truncate"``: tokens from index ``rows*cols`` on are dropped.

Padding (``mask == 0``) never reaches the state: a padded position is left out of the fold mean,
and a cell with no real token is written with zeros (not the projection's bias), so a text gives
the same output however much padding its batch carries. Everything is tensor ops over the whole
batch; no Python loop over tokens or cells.

The light cone: a token's cell is ``depth-1`` steps below the output face (io_axis z), so the
output cannot depend on a token before step ``D-1``; a specific output cell ``(r', c')`` sees the
token at ``(r, c)`` from step ``D-1 + |r-r'| + |c-c'|`` (von Neumann) or
``max(D-1, |r-r'|, |c-c'|)`` (Moore) with a zero boundary.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Optional

import torch
from torch import nn

from .config import LatticeConfig
from .model import Lattice3D, LatticeOutput

OVERFLOWS = ("fold", "truncate")


def tokens_to_face(
    tokens: torch.Tensor, mask: torch.Tensor, rows: int, cols: int, overflow: str = "fold"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lay tokens on a face in reading order.

    tokens: (B, L, C); mask: (B, L) 1 for real tokens, 0 for padding.
    -> (face (B, rows, cols, C) with each cell's token or mean of folded tokens, zero where empty;
        occupied (B, rows, cols, 1) 1.0 where at least one real token landed, else 0.0).
    """
    if tokens.dim() != 3 or mask.shape != tokens.shape[:2]:
        raise ValueError(f"tokens: expected (B, L, C) with mask (B, L), got {tuple(tokens.shape)} / {tuple(mask.shape)}")
    if overflow not in OVERFLOWS:
        raise ValueError(f"overflow: {overflow!r} is not one of {', '.join(OVERFLOWS)}")
    B, L, C = tokens.shape
    n = rows * cols
    m = mask.to(tokens.dtype)
    if overflow == "truncate" or L <= n:
        tokens, m = tokens[:, :n], m[:, :n]
        k = 1
    else:
        k = -(-L // n)  # pages of n tokens
    pad = k * n - tokens.shape[1]
    if pad:
        tokens = torch.cat([tokens, tokens.new_zeros(B, pad, C)], dim=1)
        m = torch.cat([m, m.new_zeros(B, pad)], dim=1)
    x = (tokens * m.unsqueeze(-1)).view(B, k, n, C).sum(1)  # (B, n, C)
    count = m.view(B, k, n).sum(1).unsqueeze(-1)  # (B, n, 1)
    face = x / count.clamp(min=1.0)
    occupied = (count > 0).to(tokens.dtype)
    return face.view(B, rows, cols, C), occupied.view(B, rows, cols, 1)


class TokenLattice3D(Lattice3D):
    """A :class:`Lattice3D` whose input is a token sequence written onto the input face.

    ``config.input_dim`` is ignored (the per-cell ``input_proj`` maps ``token_dim`` to
    ``face_channels``); ``config.output_dim`` is the readout width.
    """

    def __init__(self, config: LatticeConfig, token_dim: int, overflow: str = "fold"):
        if overflow not in OVERFLOWS:
            raise ValueError(f"overflow: {overflow!r} is not one of {', '.join(OVERFLOWS)}")
        if token_dim < 1:
            raise ValueError(f"token_dim: must be > 0, got {token_dim}")
        # The base class sizes input_proj for a vector input; a 1-wide one is built and replaced.
        super().__init__(dataclasses.replace(config, input_dim=1))
        self.token_dim = token_dim
        self.overflow = overflow
        self.input_proj = nn.Linear(token_dim, self.face_channels)

    def capacity(self) -> int:
        rows, cols = self.config.face_shape()
        return rows * cols

    def initial_state_tokens(self, tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (B, L, token_dim), mask (B, L) -> (state (B, D, H, W, C), face (B, rows, cols, fc))."""
        state, face, _ = self._initial(tokens, mask)
        return state, face

    def _initial(self, tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """As :meth:`initial_state_tokens`, plus occupied (B, rows, cols, 1): 1.0 where a token landed."""
        if tokens.dim() != 3 or tokens.shape[-1] != self.token_dim:
            raise ValueError(f"tokens: expected shape (B, L, {self.token_dim}), got {tuple(tokens.shape)}")
        c = self.config
        rows, cols = c.face_shape()
        dtype = self.input_proj.weight.dtype
        face_tokens, occupied = tokens_to_face(tokens.to(dtype), mask, rows, cols, self.overflow)
        # Projecting after the fold equals folding the projections (the map is affine and the fold
        # a mean); empty cells are zeroed so padding leaves no bias on the face.
        face = self.input_proj(face_tokens) * occupied
        state = torch.zeros(tokens.shape[0], c.depth, c.height, c.width, c.channels, device=tokens.device, dtype=dtype)
        return self.write_face(state, face), face, occupied

    def run_tokens(
        self, tokens: torch.Tensor, mask: torch.Tensor, steps: Optional[int] = None, trace_steps: Iterable[int] = ()
    ) -> LatticeOutput:
        """tokens (B, L, token_dim), mask (B, L) -> LatticeOutput (output (B, output_dim), ...)."""
        T = self.sample_steps() if steps is None else int(steps)
        if T < 0:
            raise ValueError(f"steps: must be >= 0, got {T}")
        state, face, occupied = self._initial(tokens, mask)
        return self._run_from(state, face, T, trace_steps, occupied=occupied)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor, steps: Optional[int] = None) -> torch.Tensor:  # type: ignore[override]
        """tokens (B, L, token_dim), mask (B, L) -> (B, output_dim)."""
        return self.run_tokens(tokens, mask, steps=steps).output


__all__ = ["OVERFLOWS", "TokenLattice3D", "tokens_to_face"]
