"""The standalone student: token ids in, one embedding per teacher space out, no teacher needed.

::

    ids (B, L), mask (B, L)
      e = table[ids]                                   (B, L, token_dim)   the token table
      s = sum(e * mask) / sum(mask)                    (B, token_dim)      the static path
      z = s + lattice(rms(e), mask)   (lattice on)     (B, token_dim)      tokens on the input face,
                                                                           readout zero-initialised
      y[name] = head[name](z)                          (B, dim_name)       one linear head per teacher

With ``lattice=None`` (or ``use_lattice=False`` in a forward) the model is exactly the static
path: the ablation "lattice off" uses the same table and the same heads. The lattice's readout is
zero-initialised, so an untrained student with a lattice equals the one without.

Token table init: ``init="teacher"`` (the PCA'd teacher rows of :mod:`distill.token_init`, heads
start as the inverse PCA so the untrained static path already points into the teacher's space) or
``init="random"`` (N(0, 1/token_dim), heads random; the ablation).

Pure PyTorch + ``lattice``: importing this module never imports the trainer, accelerate or
deepspeed (the exported :class:`distill.encoder.Encoder` relies on it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional

import torch
from torch import nn

from lattice import LatticeConfig
from lattice.tokens import OVERFLOWS, TokenLattice3D

FORMAT_VERSION = 1
MODEL_NAME = "StandaloneStudent"


@dataclass
class StandaloneConfig:
    """vocab_size/token_dim: the table; heads: teacher name -> embedding width (order kept);
    input_teacher: the default space; lattice: LatticeConfig fields (dict) or None (static only);
    overflow: the token-face policy for texts longer than the face; max_tokens: tokens kept per
    text (the tokenizer truncates there; the static mean sees them all)."""

    vocab_size: int
    token_dim: int
    heads: dict[str, int]
    input_teacher: str
    lattice: Optional[dict] = None
    overflow: str = "fold"
    max_tokens: int = 512
    pad_id: int = 0
    init: str = "teacher"
    # Feed the lattice unit-RMS token rows: the table's SIF weighting shrinks frequent tokens
    # (not, what, no) that the static mean should discount but composition needs to see.
    lattice_token_norm: bool = True
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.input_teacher not in self.heads:
            raise ValueError(f"input_teacher: {self.input_teacher!r} is not one of the heads {list(self.heads)}")
        if self.overflow not in OVERFLOWS:
            raise ValueError(f"overflow: {self.overflow!r} is not one of {', '.join(OVERFLOWS)}")
        if self.init not in ("teacher", "random"):
            raise ValueError(f"init: {self.init!r} is not one of teacher, random")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens: must be >= 1, got {self.max_tokens}")

    def to_dict(self) -> dict:
        return asdict(self)


class StandaloneStudent(nn.Module):
    """See the module docstring. ``forward(ids, mask) -> {teacher: (B, dim)}`` (not normalised)."""

    def __init__(self, config: StandaloneConfig, token_table=None):
        super().__init__()
        self.config = config
        c = config
        self.embed = nn.Embedding(c.vocab_size, c.token_dim)
        self.heads = nn.ModuleDict({name: nn.Linear(c.token_dim, dim) for name, dim in c.heads.items()})
        if c.lattice is not None:
            # zero_init is forced off: the readout below is zero-initialised, and a zero rule too
            # would leave the output face at zero and every lattice gradient at zero forever.
            lc = LatticeConfig(**{**c.lattice, "input_dim": 1, "output_dim": c.token_dim, "zero_init": False})
            self.lattice: Optional[TokenLattice3D] = TokenLattice3D(lc, c.token_dim, c.overflow)
            # The lattice is a correction to the static vector: it starts at exactly zero.
            for p in self.lattice.readout.parameters():
                nn.init.zeros_(p)
        else:
            self.lattice = None
        if token_table is not None:
            self.load_token_table(token_table)
        elif c.init == "random":
            nn.init.normal_(self.embed.weight, std=c.token_dim ** -0.5)

    def load_token_table(self, t) -> None:
        """Copy a :class:`distill.token_init.TokenTable` into the table; the input teacher's head
        becomes the inverse PCA (z @ components + mean), so it outputs in the teacher's space."""
        table = torch.as_tensor(t.table)
        if tuple(table.shape) != tuple(self.embed.weight.shape):
            raise ValueError(f"token table: shape {tuple(table.shape)} does not match the student's "
                             f"{tuple(self.embed.weight.shape)} (vocab_size, token_dim)")
        with torch.no_grad():
            self.embed.weight.copy_(table)
            head = self.heads[self.config.input_teacher]
            comps = torch.as_tensor(t.components)
            if tuple(head.weight.shape) == tuple(comps.T.shape):
                head.weight.copy_(comps.T)
                head.bias.copy_(torch.as_tensor(t.mean))

    def static(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """ids, mask (B, L) -> (B, token_dim) masked mean of the token rows (zeros for an empty row)."""
        e = self.embed(ids)
        m = mask.to(e.dtype).unsqueeze(-1)
        return (e * m).sum(1) / m.sum(1).clamp(min=1.0)

    def pooled(self, ids: torch.Tensor, mask: torch.Tensor, use_lattice: bool = True,
               steps: Optional[int] = None) -> torch.Tensor:
        """ids, mask (B, L) -> z (B, token_dim): the static mean plus the lattice correction."""
        e = self.embed(ids)
        m = mask.to(e.dtype)
        z = (e * m.unsqueeze(-1)).sum(1) / m.sum(1, keepdim=True).clamp(min=1.0)
        if use_lattice and self.lattice is not None:
            x = e
            if self.config.lattice_token_norm:
                x = e * torch.rsqrt(e.pow(2).mean(-1, keepdim=True) + 1e-8)
            z = z + self.lattice(x, m, steps=steps)
        return z

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, use_lattice: bool = True,
                steps: Optional[int] = None) -> dict[str, torch.Tensor]:
        z = self.pooled(ids, mask, use_lattice, steps)
        return {name: head(z) for name, head in self.heads.items()}

    # ---- save / load ------------------------------------------------------------------------
    def config_doc(self) -> dict:
        return {"format_version": FORMAT_VERSION, "model": MODEL_NAME, "config": self.config.to_dict()}

    @classmethod
    def from_config_doc(cls, doc: dict) -> StandaloneStudent:
        if doc.get("model") != MODEL_NAME:
            raise ValueError(f"model: {doc.get('model')!r} is not a {MODEL_NAME}")
        if doc.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"format_version: unsupported {doc.get('format_version')!r}")
        return cls(StandaloneConfig(**doc["config"]))


__all__ = ["FORMAT_VERSION", "MODEL_NAME", "StandaloneConfig", "StandaloneStudent"]
