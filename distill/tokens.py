"""Tokenisation, in one place: the tokenizer a standalone student reads, and one padding rule.

Training (``distill.rundata``), the token student and the query-time ``Encoder`` all tokenise
through here, so a text becomes the same ids everywhere:

* the input teacher's ``tokenizer.json`` read with the ``tokenizers`` library, no special tokens
  ([CLS]/[SEP]: the student's mean and face hold the text's own tokens only), truncated at
  ``max_tokens``;
* padded with ``PAD = -1`` (never a real id, so no token is ever mistaken for padding); the mask is
  ``ids >= 0`` and a model reads ``ids.clamp(min=0)`` under it.

A leaf module: numpy, torch and (when a tokenizer is loaded) ``tokenizers``; nothing of this project.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

PAD = -1


def load_tokenizer(tokenizer_file: str | os.PathLike, max_tokens: int):
    """The ``tokenizers`` tokenizer as the student uses it: no padding, truncation at ``max_tokens``."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_tokens)
    return tokenizer


def token_ids(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """texts -> token id lists (no special tokens, truncated where the tokenizer says)."""
    return [e.ids for e in tokenizer.encode_batch(list(texts), add_special_tokens=False)]


def vocab_size(tokenizer) -> int:
    return tokenizer.get_vocab_size(with_added_tokens=True)


def pad(ids: Sequence[Sequence[int]]) -> torch.Tensor:
    """id lists -> (B, L) int64, right-padded with PAD (L >= 1, so an empty list is one PAD)."""
    width = max(1, max((len(x) for x in ids), default=1))
    out = np.full((len(ids), width), PAD, dtype=np.int64)
    for i, x in enumerate(ids):
        out[i, : len(x)] = x
    return torch.from_numpy(out)


def mask_of(ids: torch.Tensor) -> torch.Tensor:
    """(B, L) padded ids -> (B, L) bool, True on real tokens."""
    return ids >= 0


def tokenize(tokenizer, texts: Sequence[str]) -> torch.Tensor:
    """texts -> (N, L) PAD-padded ids."""
    return pad(token_ids(tokenizer, texts))
