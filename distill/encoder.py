"""Encode raw text with an exported standalone student: no teacher, no training code.

::

    from distill import Encoder
    enc = Encoder.from_pretrained("runs/x/student")       # or the run dir itself
    vecs = enc.encode(["a text", "another"], space=None, batch_size=64)   # (N, d), L2-normalised

The export directory (:func:`distill.students.tokens.export_standalone` writes it, atomically) holds

* ``config.json``: ``{"format_version", "model": "StandaloneStudent", "config": {...}}``;
* ``model.safetensors``: the student's weights;
* the tokenizer files of the input teacher (``tokenizer.json`` is the one read, with the
  ``tokenizers`` library; the others travel along for people who use ``transformers``).

Imports here are torch, safetensors, tokenizers, numpy, ``lattice``, ``fileio``, the tokenisation
leaf :mod:`distill.tokens` and the student model :mod:`distill.students.tokens`: never accelerate,
deepspeed, transformers, teachers or the trainer (a test checks ``sys.modules``).

Text policy: an empty (or all-whitespace) text is refused (``ValueError`` naming its index); a
text longer than ``max_tokens`` tokens is truncated there (the lattice folds what exceeds its
face, see ``lattice/tokens.py``). Special tokens ([CLS]/[SEP]) are not added: the student's
mean and face hold the text's own tokens only.

CLI: ``distill encode RUN_DIR --input FILE --output OUT.npy [--space NAME] [--batch-size N]``
(:func:`distill.commands.cmd_encode`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from distill.students.tokens import (
    StandaloneStudent,
    export_standalone,
    find_export,
    load_standalone,
    write_standalone,
)
from distill.tokens import load_tokenizer, mask_of, pad, token_ids


class Encoder:
    """A loaded standalone student + its tokenizer. ``spaces``: the teacher spaces it can output."""

    def __init__(self, student: StandaloneStudent, tokenizer, path: Optional[Path] = None):
        self.student = student.eval()
        self.tokenizer = tokenizer
        self.path = path
        self.config = student.config
        self.spaces = list(student.config.heads)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str = "cpu") -> Encoder:
        root = find_export(path)
        tok_file = root / "tokenizer.json"
        if not tok_file.is_file():
            raise FileNotFoundError(f"{root}: the export has no tokenizer.json (tokenizer missing from the export)")
        student, root = load_standalone(root)
        tokenizer = load_tokenizer(tok_file, student.config.max_tokens)
        return cls(student.to(device), tokenizer, root)

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """texts -> token ids (no special tokens, truncated at max_tokens). Empty texts are refused."""
        for i, t in enumerate(texts):
            if not isinstance(t, str) or not t.strip():
                raise ValueError(f"text {i}: empty text (an embedding of nothing is undefined)")
        return token_ids(self.tokenizer, texts)

    def batch_tensors(self, ids: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """token id lists -> (ids (B, L), mask (B, L) float): padded by :func:`distill.tokens.pad`,
        the padding read as id 0 under a zero mask."""
        x = pad(ids)
        return x.clamp(min=0), mask_of(x).float()

    def encode(self, texts: Sequence[str], space: Optional[str] = None, batch_size: int = 64) -> np.ndarray:
        """texts -> (N, d) float32, L2-normalised, in ``space`` (default: the input teacher's)."""
        if isinstance(texts, str):
            raise TypeError("texts: pass a list of strings, not one string")
        space = self.config.input_teacher if space is None else space
        if space not in self.config.heads:
            raise ValueError(f"space: {space!r} is not one of this student's spaces ({', '.join(self.spaces)})")
        if batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
        ids = self.tokenize(texts)
        out = np.empty((len(ids), self.config.heads[space]), dtype=np.float32)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # similar lengths pad little
        head = self.student.heads[space]
        with torch.inference_mode():
            for s in range(0, len(order), batch_size):
                idx = order[s: s + batch_size]
                x, m = self.batch_tensors([ids[i] for i in idx])
                y = torch.nn.functional.normalize(head(self.student.pooled(x, m)), dim=-1)
                out[idx] = y.numpy()
        return out


__all__ = ["Encoder", "export_standalone", "find_export", "load_standalone", "load_tokenizer", "write_standalone"]
