"""Typed configuration of a :class:`~lattice.model.Lattice3D`.

Validation happens at construction: every impossible setting raises ``ValueError`` whose
message starts with the offending field name (``"steps: must be >= 1, got 0"``), so a config
loader can prefix the key path (``student.lattice.steps: ...``).

Fields backed by a registry (``neighbourhood``, ``boundary``, ``rule``, ``perceive``, ``readout``)
are typed ``str`` and checked against the live registry, so adding an entry there is enough for
configs to accept it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal, Optional

from .neighbourhood import BOUNDARIES as _BOUNDARY_REGISTRY
from .neighbourhood import NEIGHBOURHOODS as _NEIGHBOURHOOD_REGISTRY
from .perceive import PERCEIVES
from .readout import READOUTS
from .rules import RULES

# Names of the built-in choices (documentation; validation reads the registries).
Neighbourhood = Literal["von_neumann", "moore"]  # 6 or 26 neighbours
Boundary = Literal["zero", "periodic", "reflect"]
CellRule = Literal["mlp", "gated_mlp", "gru"]
Axis = Literal["z", "y", "x"]
Inject = Literal["once", "every_step"]
Norm = Literal["none", "layer", "rms"]
Impl = Literal["auto", "conv", "slice", "index"]

NEIGHBOURHOODS = tuple(_NEIGHBOURHOOD_REGISTRY)
BOUNDARIES = tuple(_BOUNDARY_REGISTRY)
CELL_RULES = tuple(RULES)
AXES = ("z", "y", "x")
INJECTS = ("once", "every_step")
NORMS = ("none", "layer", "rms")
IMPLS = ("auto", "conv", "slice", "index")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _one_of(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name}: {value!r} is not one of {', '.join(allowed)}")


@dataclass
class LatticeConfig:
    """Shape and dynamics of the lattice.

    The grid is ``depth x height x width`` cells (axes z, y, x; state tensor ``(B, D, H, W, C)``),
    each with ``channels`` state channels. ``io_axis`` picks the face pair: the input face is
    index 0 along that axis and the output face the last index. ``input_dim``/``output_dim`` are
    the vector sizes written onto / read from those faces; the student wrapper sets them from the
    teachers.
    """

    depth: int = 8
    height: int = 8
    width: int = 8
    channels: int = 16
    hidden: int = 64
    steps: int = 8
    # Inclusive range [lo, hi] for a random number of steps per training batch; None = fixed.
    steps_range: Optional[list[int]] = None
    neighbourhood: str = "von_neumann"  # von_neumann (6) | moore (26)
    boundary: str = "zero"  # zero | periodic | reflect
    rule: str = "mlp"  # mlp | gated_mlp | gru
    io_axis: Axis = "z"
    # "once": the projected input is written onto the input face before step 1; "every_step":
    # it is written again before every step (the face's input channels are clamped to it).
    inject: Inject = "once"
    # Probability that a cell applies its update at a step during training (1.0 = synchronous).
    # In eval mode every cell applies update_rate * ds (the expected update), deterministically.
    update_rate: float = 1.0
    # Normalisation of each cell's state over its channels before perceiving (pre-norm).
    norm: Norm = "none"
    # Zero-initialise the last layer of the cell rule, so the untrained lattice is the identity.
    zero_init: bool = True
    # Channels of each input-face cell the input projection writes into (None = all channels).
    face_channels: Optional[int] = None
    # Width of the vector written onto the input face; the student sets it from its input (0 = not set).
    input_dim: int = 0
    output_dim: int = 0
    # Activation checkpointing across steps (trade compute for memory).
    checkpoint: bool = False
    # torch.compile one lattice step.
    compile: bool = False
    # What a cell knows of its neighbours: gather (own + each neighbour's state, position-aware)
    # | isotropic (own state + mean of the neighbours').
    perceive: str = "gather"
    # Output face -> output vector: flatten (rows*cols*C values, linear) | mean (over cells, linear).
    readout: str = "flatten"
    # How the first layer over the perception is computed; all give the same numbers:
    # conv (3-D convolution with the layer's weight as kernel) | slice (explicit features + GEMM)
    # | index (the same features by one gather from a cached neighbour table + GEMM) | auto (per
    # call: conv for large batches of cells when the perception prefers it, else index).
    impl: Impl = "auto"

    def __post_init__(self) -> None:
        for name in ("depth", "height", "width", "channels", "hidden"):
            v = getattr(self, name)
            if not _is_int(v) or v < 1:
                raise ValueError(f"{name}: must be a positive integer, got {v!r}")
        if self.depth * self.height * self.width < 2:
            raise ValueError("depth: the lattice needs at least 2 cells")
        if not _is_int(self.steps) or self.steps < 1:
            raise ValueError(f"steps: must be an integer >= 1, got {self.steps!r}")
        if self.steps_range is not None:
            r = self.steps_range
            if (
                not isinstance(r, (list, tuple))
                or len(r) != 2
                or not all(_is_int(v) for v in r)
                or r[0] < 1
                or r[1] < r[0]
            ):
                raise ValueError(f"steps_range: must be [lo, hi] with 1 <= lo <= hi, got {r!r}")
            self.steps_range = list(r)
        _one_of("neighbourhood", self.neighbourhood, _NEIGHBOURHOOD_REGISTRY)
        _one_of("boundary", self.boundary, _BOUNDARY_REGISTRY)
        _one_of("rule", self.rule, RULES)
        _one_of("perceive", self.perceive, PERCEIVES)
        _one_of("readout", self.readout, READOUTS)
        _one_of("io_axis", self.io_axis, AXES)
        _one_of("inject", self.inject, INJECTS)
        _one_of("norm", self.norm, NORMS)
        _one_of("impl", self.impl, IMPLS)
        if self.impl == "conv" and not PERCEIVES[self.perceive].is_linear():
            raise ValueError(
                f"impl: 'conv' needs a perception linear in the neighbour states; "
                f"{self.perceive!r} is not (use auto or slice)"
            )
        min_cells = _BOUNDARY_REGISTRY[self.boundary].min_cells
        for name in ("depth", "height", "width"):
            if getattr(self, name) < min_cells:
                raise ValueError(
                    f"boundary: {self.boundary!r} needs at least {min_cells} cells along every axis, "
                    f"but {name}={getattr(self, name)} (use zero or periodic)"
                )
        if self.io_axis_length() < 2:
            raise ValueError(
                f"io_axis: the lattice has {self.io_axis_length()} cell(s) along {self.io_axis}; "
                "input and output faces need at least 2"
            )
        if isinstance(self.update_rate, bool) or not isinstance(self.update_rate, (int, float)):
            raise ValueError(f"update_rate: must be a number in (0, 1], got {self.update_rate!r}")
        if not 0.0 < float(self.update_rate) <= 1.0:
            raise ValueError(f"update_rate: must be in (0, 1], got {self.update_rate!r}")
        self.update_rate = float(self.update_rate)
        if self.face_channels is not None and (
            not _is_int(self.face_channels) or not 1 <= self.face_channels <= self.channels
        ):
            raise ValueError(
                f"face_channels: must be between 1 and channels={self.channels}, got {self.face_channels!r}"
            )
        for name in ("input_dim", "output_dim"):
            v = getattr(self, name)
            if not _is_int(v) or v < 0:
                raise ValueError(f"{name}: must be an integer >= 0 (0 = set later by the caller), got {v!r}")
        rows, cols = self.face_shape()
        capacity = rows * cols * self.input_face_channels()
        if self.input_dim > capacity:
            raise ValueError(
                f"input_dim: {self.input_dim} values do not fit on the {rows}x{cols} input face with "
                f"{self.input_face_channels()} face channel(s) per cell ({capacity} values); enlarge "
                f"the face ({'height/width' if self.io_axis == 'z' else 'the other two axes'}) or "
                "raise face_channels/channels"
            )
        for name in ("zero_init", "checkpoint", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}: must be true or false, got {getattr(self, name)!r}")

    def io_axis_length(self) -> int:
        return {"z": self.depth, "y": self.height, "x": self.width}[self.io_axis]

    def face_shape(self) -> tuple[int, int]:
        """(rows, cols) of the input/output face for the chosen axis."""
        return {
            "z": (self.height, self.width),
            "y": (self.depth, self.width),
            "x": (self.depth, self.height),
        }[self.io_axis]

    def input_face_channels(self) -> int:
        """Channels per input-face cell that the input projection writes."""
        return self.channels if self.face_channels is None else self.face_channels

    def num_cells(self) -> int:
        return self.depth * self.height * self.width

    def to_dict(self) -> dict:
        return asdict(self)
