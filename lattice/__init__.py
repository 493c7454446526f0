"""Lattice3D: the cellular student network (pure PyTorch, one device).

``from lattice import Lattice3D, LatticeConfig`` is all a caller needs; the registries are
exported for extension (see README.md: how to add a rule, perception, boundary or readout).
"""

from .config import LatticeConfig
from .model import Lattice3D, LatticeOutput
from .neighbourhood import BOUNDARIES, NEIGHBOURHOODS, neighbourhood_offsets
from .perceive import PERCEIVES, Perceive
from .readout import READOUTS
from .rules import RULES, CellRule
from .tokens import OVERFLOWS, TokenLattice3D, tokens_to_face

__all__ = [
    "BOUNDARIES",
    "NEIGHBOURHOODS",
    "OVERFLOWS",
    "PERCEIVES",
    "READOUTS",
    "RULES",
    "CellRule",
    "Lattice3D",
    "LatticeConfig",
    "LatticeOutput",
    "Perceive",
    "TokenLattice3D",
    "neighbourhood_offsets",
    "tokens_to_face",
]
