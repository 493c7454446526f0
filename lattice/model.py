"""Lattice3D: a D x H x W grid of cells that all run one small shared network for T steps.

One forward pass::

    x (B, input_dim) --input projection--> input face (index 0 along io_axis)
    state (B, D, H, W, C): zeros, then the face's first face_channels channels := projection
    repeat T times (synchronously, all cells at once):
        [inject="every_step": write the input face again]
        ds    = rule(norm(state), perceive)            # one shared network, batched over cells
        state = state + mask * ds                      # mask: per-cell Bernoulli(update_rate)
    output face (last index along io_axis) --readout--> y (B, output_dim)

The state stays channels-last, so every layer of the rule is one GEMM (or one convolution for
the first) over all B*D*H*W cells: there is no Python loop over cells anywhere.

Information moves at most one cell per step, and the two faces are L-1 cells apart (L = length of
``io_axis``), so with a zero or reflect boundary the output depends on the input only once
``T >= L - 1``; a periodic boundary along ``io_axis`` makes the faces neighbours.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .config import LatticeConfig
from .neighbourhood import neighbourhood_offsets
from .perceive import PERCEIVES
from .readout import READOUTS
from .rules import RULES

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1
_AXIS_DIM = {"z": 1, "y": 2, "x": 3}
# impl "auto": below this many cells in a batch (B*D*H*W) the index gather is used even where the
# perception prefers the convolution. Measured (1 thread, bench/lattice_impls.py): 96 cells
# (a 3x1x32 token lattice at batch 1) index 443 us / slice 668 / conv 2613 per forward; 6144 cells
# index 11.9 ms ~ conv 12.3 ms; 12288 cells training conv 61 ms / index 82 ms.
AUTO_CONV_MIN_CELLS = 4096


@dataclass
class LatticeOutput:
    """output: (B, output_dim); state: (B, D, H, W, C) after the last step; trace: step -> detached
    (B, D, H, W, C) state after that many steps (0 = the initial state with the input written);
    steps: the T used."""

    output: torch.Tensor
    state: torch.Tensor
    trace: dict[int, torch.Tensor] = field(default_factory=dict)
    steps: int = 0


class Lattice3D(nn.Module):
    """The lattice student. See the module docstring for the computation.

    Parameters (state_dict keys): ``input_proj`` (input_dim -> rows*cols*face_channels), ``norm``
    (if any), ``rule.*`` (the cell network), ``readout.*``. The perception has no parameters.
    """

    def __init__(self, config: LatticeConfig):
        super().__init__()
        if config.input_dim < 1 or config.output_dim < 1:
            bad = "input_dim" if config.input_dim < 1 else "output_dim"
            raise ValueError(f"{bad}: must be > 0 to build a Lattice3D (the caller sets it), got 0")
        self.config = config
        c = config
        rows, cols = c.face_shape()
        self.io_dim = _AXIS_DIM[c.io_axis]
        self.face_channels = c.input_face_channels()

        self.input_proj = nn.Linear(c.input_dim, rows * cols * self.face_channels)
        if c.norm == "layer":
            self.norm: nn.Module = nn.LayerNorm(c.channels)
        elif c.norm == "rms":
            self.norm = nn.RMSNorm(c.channels)
        else:
            self.norm = nn.Identity()
        self.perceive = PERCEIVES[c.perceive](neighbourhood_offsets(c.neighbourhood), c.boundary, c.channels)
        self.rule = RULES[c.rule](self.perceive.num_features, c.channels, c.hidden)
        self.readout = READOUTS[c.readout](rows, cols, c.channels, c.output_dim)
        if c.zero_init:
            for layer in self.rule.last_layers():
                nn.init.zeros_(layer.weight)
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)

        # impl "auto" is resolved per call (_impl_for): the best path depends on the batch.
        self.impl = c.impl
        self._compiled_step = None

    # ------------------------------------------------------------------------------------------
    # pieces
    # ------------------------------------------------------------------------------------------
    def _impl_for(self, state: torch.Tensor) -> str:
        """The first layer's path for this state: the configured one, or for "auto" the
        convolution on large batches of cells when the perception prefers it, else ``index``
        (few cells: per-op overhead dominates, and one gather beats the convolutions' kernel
        rebuilds; numbers: ``bench/lattice_impls.py``)."""
        if self.impl != "auto":
            return self.impl
        if self.perceive.prefers_conv and self.perceive.is_linear() and state[..., 0].numel() >= AUTO_CONV_MIN_CELLS:
            return "conv"
        return "index" if self.perceive.can_gather() else "slice"

    def _project(self, state: torch.Tensor, linear: nn.Linear) -> torch.Tensor:
        return self.perceive.project(state, linear, self._impl_for(state))

    def _step(self, state: torch.Tensor, mask: Optional[torch.Tensor], scale: float) -> torch.Tensor:
        ds = self.rule(self.norm(state), self._project)
        if mask is not None:
            ds = ds * mask
        elif scale != 1.0:
            ds = ds * scale
        return state + ds

    def step(self, state: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """One synchronous update of every cell (no face writing).

        state: (B, D, H, W, C); mask: optional (B, D, H, W, 1) 0/1 tensor of the cells that update.
        Without a mask: in training mode with update_rate < 1 a random mask is drawn; in eval mode
        every cell applies update_rate * ds.
        """
        mask, scale = self._mask(state, mask)
        return self._step(state, mask, scale)

    def _mask(self, state: torch.Tensor, mask: Optional[torch.Tensor]) -> tuple[Optional[torch.Tensor], float]:
        rate = self.config.update_rate
        if mask is not None or rate >= 1.0:
            return mask, 1.0
        if self.training:
            # Drawn outside the (possibly checkpointed / compiled) step, so a recomputation in the
            # backward pass sees the same mask.
            shape = state.shape[:4] + (1,)
            return (torch.rand(shape, device=state.device) < rate).to(state.dtype), 1.0
        return None, rate

    def write_face(self, state: torch.Tensor, face: torch.Tensor) -> torch.Tensor:
        """Return ``state`` with the input face's first face_channels channels replaced by ``face``.

        state: (B, D, H, W, C); face: (B, rows, cols, face_channels).
        """
        state = state.clone()
        state.select(self.io_dim, 0)[..., : self.face_channels] = face
        return state

    def output_face(self, state: torch.Tensor) -> torch.Tensor:
        """state: (B, D, H, W, C) -> the output face (B, rows, cols, C)."""
        return state.select(self.io_dim, state.shape[self.io_dim] - 1)

    def initial_state(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, input_dim) -> (state (B, D, H, W, C) with the input written, face (B, rows, cols, fc))."""
        if x.dim() != 2 or x.shape[1] != self.config.input_dim:
            raise ValueError(f"x: expected shape (B, {self.config.input_dim}), got {tuple(x.shape)}")
        c = self.config
        rows, cols = c.face_shape()
        face = self.input_proj(x).view(x.shape[0], rows, cols, self.face_channels)
        # The state keeps the parameters' dtype even under autocast, so the residual sum over T
        # steps accumulates in full precision.
        dtype = self.input_proj.weight.dtype
        state = torch.zeros(x.shape[0], c.depth, c.height, c.width, c.channels, device=x.device, dtype=dtype)
        return self.write_face(state, face.to(dtype)), face.to(dtype)

    def sample_steps(self) -> int:
        """T for the next forward: random in ``steps_range`` in training mode, else ``steps``."""
        r = self.config.steps_range
        if self.training and r is not None:
            return int(torch.randint(r[0], r[1] + 1, ()).item())
        return self.config.steps

    # ------------------------------------------------------------------------------------------
    # forward
    # ------------------------------------------------------------------------------------------
    def run(
        self, x: torch.Tensor, steps: Optional[int] = None, trace_steps: Iterable[int] = ()
    ) -> LatticeOutput:
        """x: (B, input_dim) -> LatticeOutput (see there). ``trace_steps``: steps in [0, T] whose
        state to return (others are ignored, so a fixed list works with a random T)."""
        T = self.sample_steps() if steps is None else int(steps)
        if T < 0:
            raise ValueError(f"steps: must be >= 0, got {T}")
        state, face = self.initial_state(x)
        return self._run_from(state, face, T, trace_steps)

    def _run_from(self, state: torch.Tensor, face: torch.Tensor, T: int, trace_steps: Iterable[int],
                  occupied: Optional[torch.Tensor] = None) -> LatticeOutput:
        """The T steps and the readout, from a state with the input already written; ``occupied``
        (B, rows, cols, 1) or None goes to the readout (see lattice/readout.py)."""
        wanted = set(trace_steps)
        trace = {0: state.detach().clone()} if 0 in wanted else {}
        step_fn = self._step_fn()
        use_ckpt = self.config.checkpoint and torch.is_grad_enabled()
        for t in range(1, T + 1):
            if t > 1 and self.config.inject == "every_step":
                state = self.write_face(state, face)
            mask, scale = self._mask(state, None)
            if use_ckpt:
                state = checkpoint(step_fn, state, mask, scale, use_reentrant=False)
            else:
                state = step_fn(state, mask, scale)
            if t in wanted:
                trace[t] = state.detach().clone()
        output = self.readout(self.output_face(state), occupied)
        return LatticeOutput(output=output, state=state, trace=trace, steps=T)

    def forward(self, x: torch.Tensor, steps: Optional[int] = None) -> torch.Tensor:
        """x: (B, input_dim) -> (B, output_dim)."""
        return self.run(x, steps=steps).output

    def _step_fn(self):
        if not self.config.compile:
            return self._step
        if self._compiled_step is None:
            # One step, not the T loop: T varies per batch and an unrolled loop would recompile.
            self._compiled_step = torch.compile(self._step, dynamic=False)
        return self._compiled_step

    # ------------------------------------------------------------------------------------------
    # accounting
    # ------------------------------------------------------------------------------------------
    def flops_per_step(self) -> int:
        """Forward FLOPs of one cell for one step: the cell rule's linear layers, 2 per multiply-add.

        Elementwise work (activations, gates, norm, residual, neighbour means) is not counted, nor
        the once-per-forward input projection and readout. Independent of ``impl``: the conv path
        does the same multiply-adds (plus, for von Neumann, a few on zero taps, not counted).
        Forward + backward is ~3x this.
        """
        return self.rule.flops()

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ------------------------------------------------------------------------------------------
    # save / load
    # ------------------------------------------------------------------------------------------
    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Write ``path/config.json`` and ``path/model.safetensors`` atomically.

        Files go to a temporary sibling directory first, which is renamed into place, so a reader
        never sees a half-written model; an existing ``path`` is replaced.
        """
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            tensors = {k: v.detach().to("cpu").contiguous() for k, v in self.state_dict().items()}
            save_file(tensors, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
            doc = {"format_version": FORMAT_VERSION, "model": "Lattice3D", "config": self.config.to_dict()}
            with open(tmp / CONFIG_NAME, "w") as f:
                json.dump(doc, f, indent=2, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            old = None
            if path.exists():
                old = path.parent / f".{path.name}.old-{uuid.uuid4().hex}"
                os.replace(path, old)
            os.replace(tmp, path)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return path

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> Lattice3D:
        """Load a model written by :meth:`save_pretrained` (needs only torch and safetensors)."""
        from safetensors.torch import load_file

        path = Path(path)
        with open(path / CONFIG_NAME) as f:
            doc = json.load(f)
        if doc.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path / CONFIG_NAME}: unsupported format_version {doc.get('format_version')!r}")
        model = cls(LatticeConfig(**doc["config"]))
        model.load_state_dict(load_file(str(path / WEIGHTS_NAME)), strict=True)
        return model.to(device)


__all__ = ["Lattice3D", "LatticeOutput"]
