"""Poolings: one token-level hidden state per text -> one vector per text.

Every pooling has the same signature::

    pool(hidden: (B, L, H) float, mask: (B, L) 0/1) -> (B, H)

``mask`` is the tokenizer's attention mask, so the functions are right for left and right
padding alike and never look at the token ids (a pad token that doubles as eos stays a real
token wherever the tokenizer says it is one). Padded positions are masked with ``where`` rather
than multiplied by zero: a fully masked row in an attention layer may hold NaN or inf there, and
``nan * 0`` is still NaN.

Adding a pooling: write the function here and add one line to ``POOLERS``; ``TeacherSpec``
validates against this registry. Bump ``POOLING_CODE_VERSION`` whenever a change here alters
any embedding, so the target store recomputes instead of reusing stale entries.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# Part of every target-store fingerprint: bump when pooling/normalisation code changes results.
POOLING_CODE_VERSION = 1


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average of the real tokens' states. (B, L, H), (B, L) -> (B, H)."""
    keep = mask.unsqueeze(-1).bool()
    summed = torch.where(keep, hidden, 0.0).sum(dim=1)
    # clamp as sentence-transformers does: an all-padding row gives 0, not NaN.
    count = mask.sum(dim=1, keepdim=True).to(hidden.dtype).clamp(min=1e-9)
    return summed / count


def max_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Element-wise maximum over the real tokens. (B, L, H), (B, L) -> (B, H)."""
    keep = mask.unsqueeze(-1).bool()
    return torch.where(keep, hidden, torch.finfo(hidden.dtype).min).amax(dim=1)


def first_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the first real token per row (0 under right padding). (B, L) -> (B,)."""
    # argmax returns the first maximum.
    return mask.int().argmax(dim=1)


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last real token per row (L-1 under left padding). (B, L) -> (B,)."""
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    return torch.where(mask.bool(), positions, -1).amax(dim=1).clamp(min=0)


def cls_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """State of the first real token ([CLS] for BERT-style encoders). (B, L, H), (B, L) -> (B, H)."""
    idx = first_token_index(mask)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), idx]


def last_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """State of the last real token: the one that has seen the whole text in a causal decoder.

    (B, L, H), (B, L) -> (B, H). Correct under left and right padding alike.
    """
    idx = last_token_index(mask)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), idx]


POOLERS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "mean": mean_pool,
    "cls": cls_pool,
    "last": last_pool,
    "max": max_pool,
}


def pool(name: str, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Apply the registered pooling ``name``. (B, L, H), (B, L) -> (B, H)."""
    try:
        fn = POOLERS[name]
    except KeyError:
        raise ValueError(f"pooling: {name!r} is not one of {', '.join(POOLERS)}") from None
    return fn(hidden, mask)
