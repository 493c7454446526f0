"""Retrieval: for each question, how high an encoder ranks its relevant candidates.

A file of ``{"question": ..., "answer": ..., "label": 0|1}`` lines; the lines of one question are
its candidate list (TREC-QA style). Candidates are ranked by the cosine of the question's query
embedding with the candidate's embedding. Per question with at least one relevant and one
irrelevant candidate (the others rank nothing):

    AP  = mean over the relevant candidates of precision at their rank
    RR  = 1 / rank of the first relevant candidate

MAP and MRR are their means. Ties are broken against the relevant candidates (an irrelevant one
scoring the same ranks first), so a constant encoder gets no credit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def rank_labels(scores: Sequence[float], labels: Sequence[int]) -> np.ndarray:
    """The 0/1 labels in ranked order: best score first, ties with the irrelevant first."""
    s, lab = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.int64)
    order = np.lexsort((lab, -s))  # last key is primary: descending score, then label 0 before 1
    return lab[order]


def average_precision(ranked: np.ndarray) -> float:
    """ranked: 0/1 labels in ranked order (at least one 1) -> AP."""
    hits = np.cumsum(ranked)
    prec = hits / np.arange(1, len(ranked) + 1)
    return float((prec * ranked).sum() / ranked.sum())


def reciprocal_rank(ranked: np.ndarray) -> float:
    return 1.0 / (1 + int(np.argmax(ranked)))


def evaluate_retrieval(encode_query: Callable[[list[str]], np.ndarray],
                       encode_text: Callable[[list[str]], np.ndarray], rows: Sequence[dict]) -> dict:
    """rows: ``{"question", "answer", "label"}`` -> ``{"map", "mrr", "questions", "skipped"}``.
    ``encode_query``/``encode_text``: texts -> (n, d) for the questions and the candidates."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["question"], []).append(r)
    qs, cands = list(groups), sorted({r["answer"] for r in rows})
    eq = _unit(encode_query(qs))
    ec = _unit(encode_text(cands))
    cpos = {c: i for i, c in enumerate(cands)}
    aps, rrs, skipped = [], [], 0
    for qi, q in enumerate(qs):
        labels = [int(r["label"]) for r in groups[q]]
        if min(labels) == max(labels):
            skipped += 1
            continue
        ranked = rank_labels(ec[[cpos[r["answer"]] for r in groups[q]]] @ eq[qi], labels)
        aps.append(average_precision(ranked))
        rrs.append(reciprocal_rank(ranked))
    if not aps:
        raise ValueError("retrieval: no question has both a relevant and an irrelevant candidate")
    return {"map": float(np.mean(aps)), "mrr": float(np.mean(rrs)), "questions": len(aps), "skipped": skipped}


def _unit(e) -> np.ndarray:
    e = np.asarray(e, dtype=np.float64)
    return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
