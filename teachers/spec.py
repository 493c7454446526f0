"""Typed teacher specification: everything that changes a teacher's output lives here.

Validation happens at construction and raises ``ValueError`` whose message starts with the
field name (``"pooling: 'avg' is not one of mean, cls, last, max"``) so the config loader can
prefix the key path (``teachers[1].pooling: ...``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal, Optional

from .pooling import POOLERS

# Documentation only: the pooling field is validated against the registry in teachers/pooling.py,
# so adding a pooling there needs no change here.
Pooling = Literal["mean", "cls", "last", "max"]
Shard = Literal["zero3", "replicate", "auto"]
DType = Literal["float32", "float16", "bfloat16"]

POOLINGS = tuple(POOLERS)
SHARDS = ("zero3", "replicate", "auto")
DTYPES = ("float32", "float16", "bfloat16")

# Fields that do not change the embeddings a teacher produces (excluded from fingerprints).
NON_EMBEDDING_FIELDS = frozenset({"name", "weight", "batch_size", "shard"})


@dataclass
class TeacherSpec:
    """One frozen teacher. ``model`` is a hub id or a local directory."""

    name: str
    model: str
    revision: Optional[str] = None
    # A name in teachers.pooling.POOLERS: mean | cls | last | max.
    pooling: str = "mean"
    # Hidden layer to pool: -1 = last layer; 0 = embeddings output; k = output of block k.
    layer: int = -1
    query_prefix: str = ""
    answer_prefix: str = ""
    max_length: int = 256
    dtype: DType = "float32"
    normalize: bool = True
    batch_size: int = 64
    # Weight of this teacher in the combined distillation loss (does not affect embeddings).
    weight: float = 1.0
    shard: Shard = "auto"
    # Padding side used for tokenisation; None = the tokenizer's own default.
    padding_side: Optional[Literal["left", "right"]] = None
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or not all(c.isalnum() or c in "-_." for c in self.name):
            raise ValueError(f"name: must be a non-empty string of letters, digits, '-', '_' or '.', got {self.name!r}")
        if not isinstance(self.model, str) or not self.model.strip():
            raise ValueError("model: must be a hub id or a local directory, got an empty value")
        if self.revision is not None and (not isinstance(self.revision, str) or not self.revision.strip()):
            raise ValueError(f"revision: must be a branch, tag or commit string, or null, got {self.revision!r}")
        if self.pooling not in POOLERS:
            raise ValueError(f"pooling: {self.pooling!r} is not one of {', '.join(POOLERS)}")
        if isinstance(self.layer, bool) or not isinstance(self.layer, int) or self.layer < -1:
            raise ValueError(f"layer: must be -1 (last layer) or a hidden-state index >= 0, got {self.layer!r}")
        for field_name in ("query_prefix", "answer_prefix"):
            if not isinstance(getattr(self, field_name), str):
                raise ValueError(f"{field_name}: must be a string, got {getattr(self, field_name)!r}")
        if self.shard not in SHARDS:
            raise ValueError(f"shard: {self.shard!r} is not one of {', '.join(SHARDS)}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype: {self.dtype!r} is not one of {', '.join(DTYPES)}")
        if not isinstance(self.max_length, int) or self.max_length < 1:
            raise ValueError(f"max_length: must be a positive integer, got {self.max_length!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size: must be a positive integer, got {self.batch_size!r}")
        if not float(self.weight) >= 0.0:
            raise ValueError(f"weight: must be >= 0, got {self.weight!r}")
        if self.padding_side not in (None, "left", "right"):
            raise ValueError(f"padding_side: {self.padding_side!r} is not one of left, right, null")
        if not isinstance(self.trust_remote_code, bool):
            raise ValueError(f"trust_remote_code: must be true or false, got {self.trust_remote_code!r}")
        if not isinstance(self.normalize, bool):
            raise ValueError(f"normalize: must be true or false, got {self.normalize!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    def embedding_fields(self) -> dict:
        """The spec fields that change the embeddings (input to the store fingerprint)."""
        return {k: v for k, v in asdict(self).items() if k not in NON_EMBEDDING_FIELDS}
