"""Post-hoc STS tricks on a trained static standalone student (issue #20): do they pay?

Static sentence encoders are often improved after training, with no gradient step:

* **SIF re-weighting** (tokenlearn / Model2Vec apply it to a distilled table): each token row is
  scaled by ``alpha / (alpha + p(token))``, ``p`` the token's frequency in the training corpus;
* **removing the common direction** ("all-but-the-top"): subtract the mean of the outputs over
  the corpus and project out its top ``k`` principal components (``k = 0``: the mean only).

This script measures both on a student trained by ``configs/standalone_corpus.yaml``, next to
the student as it is, in one process:

* validation (the choice would be made here): 4,000 corpus sentences the student never saw (lines
  990,000-993,999 of ``corpus_1m.jsonl.gz``), ~3,000 random pairs of them: the Spearman of the
  student's pair cosines against MiniLM's (the teacher's similarity ranking, which the student
  distils) and, for the unprojected variants, the mean cosine of each sentence to MiniLM's row;
* dev, as bench/standalone_scale.py measures it: STS 2012-2015 (mean Spearman over the sets),
  Dolly test R@1 (symmetric), TREC-QA dev MAP.

    python bench/standalone_posthoc.py --run /work/cache/runs/r100k-static-s0 --train-lines 100000 \\
        --out bench/results/standalone_posthoc.json

Token frequencies come from the run's own training sentences (the first ``--train-lines`` lines
of the corpus, tokenised as the student tokenises); the projection is fitted on the student's
outputs for the first 20,000 of them.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import standalone_data as SD  # noqa: E402
from fileio import write_text_atomic  # noqa: E402

CORPUS = Path("/work/shared/data/corpus_1m.jsonl.gz")
HELD = (990_000, 994_000)  # validation lines: far past any prefix a run here trained on
FIT = 20_000
VARIANTS = [(None, None), (None, 0), (None, 1), (None, 2), (1e-3, None), (1e-4, None), (1e-5, None),
            (1e-3, 1), (1e-4, 1)]  # (SIF alpha or None, k removed components or None = no projection)


def sif_weights(counts: np.ndarray, alpha: float) -> np.ndarray:
    """counts (V,) of each token in the corpus -> (V,) ``alpha / (alpha + p)``: 1 for an unseen token,
    small for a frequent one."""
    p = counts / max(counts.sum(), 1)
    return alpha / (alpha + p)


def common_directions(x: np.ndarray, k: int | None) -> tuple[np.ndarray, np.ndarray]:
    """x (N, d) -> (mean (d,), U (d, k)): the mean and the top-k principal directions of x - mean.
    k None: no projection (a zero mean and no direction)."""
    d = x.shape[1]
    if k is None:
        return np.zeros(d, x.dtype), np.zeros((d, 0), x.dtype)
    mu = x.mean(0)
    u = np.linalg.svd(x - mu, full_matrices=False)[2][:k].T if k else np.zeros((d, 0), x.dtype)
    return mu, u


def remove(x: np.ndarray, mu: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Rows of x minus mu, with their components along u's columns removed, L2-normalised."""
    y = x - mu
    y = y - (y @ u) @ u.T
    return y / np.linalg.norm(y, axis=1, keepdims=True).clip(1e-12)


def _raw(enc, texts) -> np.ndarray:
    return enc.encode(list(texts), normalize_embeddings=False, batch_size=256)


def read_lines(path: Path, n_train: int, held: tuple[int, int]) -> tuple[list[str], list[str]]:
    train, val = [], []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i < n_train:
                train.append(json.loads(line)["text"])
            elif held[0] <= i < held[1]:
                val.append(json.loads(line)["text"])
            elif i >= max(held[1], n_train):
                break
    return train, val


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, required=True, help="a run dir (or its student export) of a static student")
    ap.add_argument("--train-lines", type=int, required=True, help="the run's corpus prefix (stages[0].data.max_pairs)")
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "standalone_posthoc.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from bench.standalone_scale import Data, measure
    from distill.encoder import Encoder

    enc = Encoder.from_pretrained(args.run)
    if not enc.student.is_static_table:
        print(f"error: {args.run}: not a static student (lattice or position weights)", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    train, val = read_lines(args.corpus, args.train_lines, HELD)
    table = enc.student.embed.weight.detach().clone()
    ids = [i for k in range(0, len(train), 4096) for row in enc.tokenize(train[k:k + 4096]) for i in row]
    counts = np.bincount(ids, minlength=table.shape[0])
    teacher_val = SD.teacher_embed(val)  # L2-normalised MiniLM rows (cached on disk)
    rng = np.random.default_rng(0)
    ia, ib = rng.integers(0, len(val), 3000), rng.integers(0, len(val), 3000)
    ia, ib = ia[ia != ib], ib[ia != ib]
    teacher_pairs = (teacher_val[ia] * teacher_val[ib]).sum(1)
    data = Data(quick=False)
    from scipy.stats import spearmanr

    results = []
    for alpha, k in VARIANTS:
        with torch.no_grad():
            w = torch.ones(table.shape[0]) if alpha is None else torch.from_numpy(sif_weights(counts, alpha)).float()
            enc.student.embed.weight.copy_(table * w[:, None])

        mu, u = common_directions(_raw(enc, train[:FIT]), k)

        def e(texts, mu=mu, u=u):
            return remove(_raw(enc, texts), mu, u)

        v = e(val)
        m = measure(data, e, None, False)  # STS, Dolly sym, TREC dev as bench/standalone_scale.py measures them
        row = {"sif_alpha": alpha, "removed_pcs": k,
               "val_pair_spearman": float(spearmanr((v[ia] * v[ib]).sum(1), teacher_pairs).correlation),
               "val_cos_to_minilm": float((v * teacher_val).sum(1).mean()) if k is None else None,
               "sts": m["sts"]["mean"], "dolly_sym_r1": m["dolly_sym"]["r1"], "trec_map": m["trec_dev"]["map"]}
        results.append(row)
        print(json.dumps(row), flush=True)
    doc = {"command": shlex.join(["python", "bench/standalone_posthoc.py", *(argv if argv is not None else sys.argv[1:])]),
           "run": str(args.run), "train_lines": args.train_lines,
           "splits": {"validation": f"corpus lines {HELD[0]}-{HELD[1] - 1}, {len(ia)} random pairs",
                      "dev": "STS 2012-2015 (all), Dolly test split (symmetric R@1), TREC-QA dev MAP"},
           "notes": {"removed_pcs": "None: no projection; 0: the mean only; k: the mean and the top-k principal "
                                    f"directions of the outputs of the first {FIT} training sentences",
                     "sif_alpha": "None: the table as trained; a: rows scaled by a / (a + p(token)), p from the "
                                  "training sentences"},
           "seconds": round(time.perf_counter() - t0, 1), "results": results}
    write_text_atomic(args.out, json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
