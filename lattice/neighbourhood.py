"""Neighbourhoods (which cells a cell sees) and boundaries (what it sees past the edge).

Offsets are ``(dz, dy, dx)`` over the state axes ``(D, H, W)``. Every neighbourhood lists the cell
itself first, ``(0, 0, 0)``, then its neighbours in a fixed order: that order is the layout of the
``gather`` perception vector and so of the first layer's weight, and must never change once models
are saved.

How to add a neighbourhood: write a function returning its offsets (radius 1, self first) and add
one line to ``NEIGHBOURHOODS``. How to add a boundary: write ``pad(state, axis) -> state`` that pads
one axis of a channels-last state by one cell on each side, and add one line to ``BOUNDARIES``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

Offset = tuple[int, int, int]


def von_neumann() -> list[Offset]:
    """The 6 face neighbours."""
    return [(0, 0, 0)] + [
        o for o in itertools.product((-1, 0, 1), repeat=3) if sum(abs(v) for v in o) == 1
    ]


def moore() -> list[Offset]:
    """The 26 face, edge and corner neighbours."""
    return [(0, 0, 0)] + [o for o in itertools.product((-1, 0, 1), repeat=3) if o != (0, 0, 0)]


NEIGHBOURHOODS: dict[str, Callable[[], list[Offset]]] = {
    "von_neumann": von_neumann,
    "moore": moore,
}


def neighbourhood_offsets(name: str) -> list[Offset]:
    """Offsets of neighbourhood ``name``, self first: ``[(0,0,0), (dz,dy,dx), ...]``."""
    return NEIGHBOURHOODS[name]()


# --- boundaries -------------------------------------------------------------------------------
# Each pads ONE spatial axis (1, 2 or 3 of a (B, D, H, W, C) tensor) by one cell on each side.
# Padding axis by axis composes correctly for corner neighbours: padding z then y then x fills
# the corner ghost cells with the boundary rule applied on each axis in turn.


def _pad_zero(s: torch.Tensor, axis: int) -> torch.Tensor:
    pad = [0, 0] * (s.dim() - axis)  # F.pad lists (lo, hi) pairs from the last dim backwards
    pad[-2:] = [1, 1]
    return F.pad(s, pad)


def _pad_periodic(s: torch.Tensor, axis: int) -> torch.Tensor:
    n = s.shape[axis]
    return torch.cat([s.narrow(axis, n - 1, 1), s, s.narrow(axis, 0, 1)], dim=axis)


def _pad_reflect(s: torch.Tensor, axis: int) -> torch.Tensor:
    # Mirror without repeating the edge cell (numpy/torch "reflect"): the ghost of index -1 is
    # index 1 and the ghost of index n is index n-2. Needs n >= 2 along the axis.
    n = s.shape[axis]
    return torch.cat([s.narrow(axis, 1, 1), s, s.narrow(axis, n - 2, 1)], dim=axis)


@dataclass(frozen=True)
class Boundary:
    pad: Callable[[torch.Tensor, int], torch.Tensor]
    # Fewest cells an axis needs for this rule to be defined (reflect mirrors the second cell).
    min_cells: int = 1
    # Ghost cells are zeros: a convolution can pad by itself instead of copying the state.
    zeros: bool = False


BOUNDARIES: dict[str, Boundary] = {
    "zero": Boundary(_pad_zero, zeros=True),
    "periodic": Boundary(_pad_periodic),
    "reflect": Boundary(_pad_reflect, min_cells=2),
}


def pad(state: torch.Tensor, boundary: str, axes: tuple[int, ...] = (1, 2, 3)) -> torch.Tensor:
    """Pad ``state: (B, D, H, W, C)`` by one ghost cell on each side of each of ``axes``."""
    fn = BOUNDARIES[boundary].pad
    for axis in axes:
        state = fn(state, axis)
    return state
