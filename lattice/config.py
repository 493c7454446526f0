"""Typed configuration of a :class:`~lattice.model.Lattice3D`.

Validation happens at construction: every impossible setting raises ``ValueError`` whose
message starts with the offending field name (``"steps: must be >= 1, got 0"``), so a config
loader can prefix the key path (``student.lattice.steps: ...``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal, Optional

Neighbourhood = Literal["von_neumann", "moore"]  # 6 or 26 neighbours
Boundary = Literal["zero", "periodic", "reflect"]
CellRule = Literal["mlp", "gated_mlp", "gru"]
Axis = Literal["z", "y", "x"]
Inject = Literal["once", "every_step"]
Norm = Literal["none", "layer", "rms"]

NEIGHBOURHOODS = ("von_neumann", "moore")
BOUNDARIES = ("zero", "periodic", "reflect")
CELL_RULES = ("mlp", "gated_mlp", "gru")
AXES = ("z", "y", "x")


@dataclass
class LatticeConfig:
    """Shape and dynamics of the lattice.

    The grid is ``depth x height x width`` cells (axes z, y, x), each with ``channels``
    state channels. ``io_axis`` picks the face pair: the input face is index 0 along that
    axis and the output face the last index. ``input_dim``/``output_dim`` are the vector
    sizes written onto / read from those faces; the student wrapper sets them from the
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
    neighbourhood: Neighbourhood = "von_neumann"
    boundary: Boundary = "zero"
    rule: CellRule = "mlp"
    io_axis: Axis = "z"
    inject: Inject = "once"
    # Probability that a cell applies its update at a step during training (1.0 = synchronous).
    update_rate: float = 1.0
    norm: Norm = "none"
    # Zero-initialise the last layer of the cell rule, so the untrained lattice is the identity.
    zero_init: bool = True
    # Channels of each input-face cell the input projection writes into (None = all channels).
    face_channels: Optional[int] = None
    input_dim: int = 0
    output_dim: int = 0
    # Activation checkpointing across steps (trade compute for memory).
    checkpoint: bool = False
    # torch.compile one lattice step.
    compile: bool = False
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("depth", "height", "width", "channels", "hidden"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}: must be a positive integer, got {v!r}")
        if self.depth * self.height * self.width < 2:
            raise ValueError("depth: the lattice needs at least 2 cells")
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps: must be >= 1, got {self.steps!r}")
        if self.steps_range is not None:
            r = self.steps_range
            if len(r) != 2 or not all(isinstance(v, int) for v in r) or r[0] < 1 or r[1] < r[0]:
                raise ValueError(f"steps_range: must be [lo, hi] with 1 <= lo <= hi, got {r!r}")
        if self.neighbourhood not in NEIGHBOURHOODS:
            raise ValueError(f"neighbourhood: {self.neighbourhood!r} is not one of {', '.join(NEIGHBOURHOODS)}")
        if self.boundary not in BOUNDARIES:
            raise ValueError(f"boundary: {self.boundary!r} is not one of {', '.join(BOUNDARIES)}")
        if self.rule not in CELL_RULES:
            raise ValueError(f"rule: {self.rule!r} is not one of {', '.join(CELL_RULES)}")
        if self.io_axis not in AXES:
            raise ValueError(f"io_axis: {self.io_axis!r} is not one of {', '.join(AXES)}")
        if self.io_axis_length() < 2:
            raise ValueError(
                f"io_axis: the lattice has {self.io_axis_length()} cell(s) along {self.io_axis}; "
                "input and output faces need at least 2"
            )
        if not 0.0 < float(self.update_rate) <= 1.0:
            raise ValueError(f"update_rate: must be in (0, 1], got {self.update_rate!r}")
        if self.face_channels is not None and not 1 <= self.face_channels <= self.channels:
            raise ValueError(
                f"face_channels: must be between 1 and channels={self.channels}, got {self.face_channels!r}"
            )
        if self.input_dim < 0 or self.output_dim < 0:
            raise ValueError("input_dim: must be >= 0")

    def io_axis_length(self) -> int:
        return {"z": self.depth, "y": self.height, "x": self.width}[self.io_axis]

    def face_shape(self) -> tuple[int, int]:
        """(rows, cols) of the input/output face for the chosen axis."""
        return {
            "z": (self.height, self.width),
            "y": (self.depth, self.width),
            "x": (self.depth, self.height),
        }[self.io_axis]

    def num_cells(self) -> int:
        return self.depth * self.height * self.width

    def to_dict(self) -> dict:
        return asdict(self)
