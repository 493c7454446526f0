"""Standalone student benchmark: (a) MiniLM, (b) potion-base-8M, (c) teacher-derived init untrained,
(d) trained student with the lattice off, (e) full standalone student (token face lattice).

Reported sets (never tuned on): Dolly held-out (the project's split; student encodes questions,
MiniLM's answer embeddings are the bank; R@1 among all held-out answers), STS 2012-2015
(Spearman of cosine vs gold per set, then the mean), TREC-QA dev (MAP, MRR).
Tuning sets: Dolly validation (10% of train questions) and TREC-QA train.

Training (a compact loop; phase 2 moves it onto the recipe), both stages for (d) and (e) alike:

1. corpus distillation: texts = corpus_sentences.jsonl WITHOUT every sentence that occurs in
   sts_2012_2015.jsonl, plus the Dolly train questions; loss = 1 - cos(student(x), MiniLM(x)) +
   w_nce * InfoNCE(student(x) vs the batch's MiniLM(x));
2. Q->A: Dolly train, InfoNCE(student(q) vs the batch's MiniLM(a)) + w_keep * (1 - cos(student(q),
   MiniLM(q))).

    python bench/standalone.py                  # 3 seeds, table + bench/results/standalone.json
    python bench/standalone.py --trial '{...}'  # one config, 1 seed, validation numbers only

The shipped recipe's runs (`distill train configs/standalone.yaml`, no training here), several
seeds per variant (mean ± sd, paired on - off), speed on each variant's first run:

    python bench/standalone.py --recipe-on 'runs/st-on-s*' --recipe-off 'runs/st-off-s*' \
        [--variant LABEL RUN [RUN ...]]     # -> bench/results/standalone_recipe.json
    python bench/standalone.py --recipe RUN_ON [RUN_OFF]   # the one-run form
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import standalone_data as SD  # noqa: E402
from distill.eval import evaluate_pairs, evaluate_retrieval  # noqa: E402
from distill.eval.qa import retrieval_metrics  # noqa: E402
from distill.students.tokens import StandaloneConfig, StandaloneStudent  # noqa: E402
from distill.token_init import teacher_token_table  # noqa: E402
from fileio import write_text_atomic  # noqa: E402

OUT = ROOT / "bench" / "results" / "standalone.json"
TRIALS = ROOT / "bench" / "results" / "standalone_trials.json"
POTION = ROOT.parent / "shared" / "anchors" / "potion-base-8M"
if not POTION.is_dir():
    POTION = Path("/work/shared/anchors/potion-base-8M")

DEFAULT = {
    "token_dim": 256,
    # Chosen by the trials in bench/results/standalone_trials.json (T6): one row of 32 token cells,
    # 3 deep, 4 steps (a token's output cell sees +-2 neighbours), mean readout.
    "lattice": {"depth": 3, "height": 1, "width": 32, "channels": 16, "hidden": 32, "steps": 4,
                "neighbourhood": "von_neumann", "readout": "mean", "rule": "mlp"},
    "overflow": "fold",
    "train_max_tokens": 64,
    "batch": 128,
    "stage1_epochs": 6,
    "stage2_epochs": 6,
    "lr_table": 3e-3,
    "lr": 1e-3,
    "w_nce": 0.5,
    "tau": 0.05,
    "w_keep": 0.5,
    "token_dropout": 0.1,
    "weight_decay": 0.0,
}


# ------------------------------------------------------------------------------------------------
# metrics
# ------------------------------------------------------------------------------------------------
def sts_scores(encode, rows) -> dict:
    """encode: texts -> (N, d). -> {'mean': ..., set: spearman} (distill.eval.pairs: ties averaged)."""
    res = evaluate_pairs(encode, rows)
    return {**res["sets"], "mean": res["spearman"]}


def trec_scores(encode_q, encode_a, rows) -> dict:
    """MAP and MRR over questions with >= 1 positive and >= 1 negative candidate (distill.eval.retrieval)."""
    res = evaluate_retrieval(encode_q, encode_a, rows)
    return {"map": res["map"], "mrr": res["mrr"], "questions": res["questions"]}


def dolly_scores(encode_q, questions, answer_emb) -> dict:
    m = retrieval_metrics(torch.from_numpy(encode_q(questions)), torch.from_numpy(answer_emb), (1, 5))
    return {"r1": m["recall@1"], "r5": m["recall@5"], "cosine": m["cosine"]}


# ------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------
class Tok:
    """The input teacher's tokenizer (tokenizers library), no special tokens."""

    def __init__(self, source: str):
        from tokenizers import Tokenizer

        self.dir = source
        self.t = Tokenizer.from_file(str(Path(source) / "tokenizer.json"))
        self.t.no_padding()
        self.t.no_truncation()

    def ids(self, texts, max_tokens=512):
        return [e.ids[:max_tokens] for e in self.t.encode_batch(list(texts), add_special_tokens=False)]


def pad(ids_list, drop: float = 0.0, rng=None):
    width = max(1, max(len(x) for x in ids_list))
    ids = np.zeros((len(ids_list), width), dtype=np.int64)
    mask = np.zeros((len(ids_list), width), dtype=np.float32)
    for j, x in enumerate(ids_list):
        ids[j, : len(x)] = x
        mask[j, : len(x)] = 1.0
    if drop > 0 and rng is not None:
        keep = rng.random(mask.shape) >= drop
        keep[np.arange(len(ids_list)), 0] = True  # never an empty text
        mask *= keep
    return torch.from_numpy(ids), torch.from_numpy(mask)


# ------------------------------------------------------------------------------------------------
# training
# ------------------------------------------------------------------------------------------------
def build_student(cfg: dict, table, lattice: bool, vocab: int, seed: int) -> StandaloneStudent:
    torch.manual_seed(seed)
    sc = StandaloneConfig(vocab_size=vocab, token_dim=cfg["token_dim"], heads={"minilm": 384},
                          input_teacher="minilm", lattice=dict(cfg["lattice"]) if lattice else None,
                          overflow=cfg["overflow"], lattice_token_norm=cfg.get("lattice_token_norm", True))
    return StandaloneStudent(sc, token_table=table)


def info_nce(pred, target, tau):
    p, t = F.normalize(pred, dim=-1), F.normalize(target, dim=-1)
    logits = p @ t.T / tau
    return F.cross_entropy(logits, torch.arange(len(p)))


def train(student, cfg, stage1, stage2, seed: int, log=None) -> dict:
    """stage1: (ids list, targets (N, 384)); stage2: (q ids list, a targets, q targets)."""
    rng = np.random.default_rng(seed)
    # Sparse gradients for the (V, token_dim) table: a batch touches a few thousand of its 30k
    # rows, and a dense Adam step over all of them dominated the step time.
    student.embed.sparse = True
    other = [p for n, p in student.named_parameters() if n != "embed.weight"]
    opt_table = torch.optim.SparseAdam([student.embed.weight], lr=cfg["lr_table"])
    opt = torch.optim.AdamW([{"params": other, "lr": cfg["lr"], "weight_decay": cfg["weight_decay"]}])
    bs, t0 = cfg["batch"], time.perf_counter()
    plan = [("s1", e) for e in range(cfg["stage1_epochs"])] + [("s2", e) for e in range(cfg["stage2_epochs"])]
    total = sum(math.ceil(len(stage1[0] if s == "s1" else stage2[0]) / bs) for s, _ in plan)
    groups = opt.param_groups + opt_table.param_groups
    base = [g["lr"] for g in groups]
    step = 0
    student.train()
    for stage, _ in plan:
        n = len(stage1[0]) if stage == "s1" else len(stage2[0])
        perm = rng.permutation(n)
        for s in range(0, n - bs + 1, bs):
            idx = perm[s: s + bs]
            f = 0.5 * (1 + math.cos(math.pi * step / total))  # cosine decay
            for g, b in zip(groups, base):
                g["lr"] = b * max(0.05, f)
            if stage == "s1":
                ids, m = pad([stage1[0][i] for i in idx], cfg["token_dropout"], rng)
                y = student(ids, m)["minilm"]
                tgt = torch.from_numpy(stage1[1][idx])
                loss = (1 - F.cosine_similarity(y, tgt)).mean() + cfg["w_nce"] * info_nce(y, tgt, cfg["tau"])
            else:
                ids, m = pad([stage2[0][i] for i in idx], cfg["token_dropout"], rng)
                y = student(ids, m)["minilm"]
                a, q = torch.from_numpy(stage2[1][idx]), torch.from_numpy(stage2[2][idx])
                loss = info_nce(y, a, cfg["tau"]) + cfg["w_keep"] * (1 - F.cosine_similarity(y, q)).mean()
            opt.zero_grad(set_to_none=True)
            opt_table.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(other, 1.0)
            opt.step()
            opt_table.step()
            step += 1
    student.embed.sparse = False
    student.eval()
    return {"steps": step, "train_s": time.perf_counter() - t0}


def student_encoder(student, tok: Tok, use_lattice=True, static_only=False, bs=256):
    def enc(texts):
        ids = tok.ids(texts, 512)
        out = []
        with torch.inference_mode():
            for s in range(0, len(ids), bs):
                x, m = pad(ids[s: s + bs])
                if static_only:
                    y = student.static(x, m)
                else:
                    y = student(x, m, use_lattice=use_lattice)["minilm"]
                out.append(F.normalize(y, dim=-1).numpy())
        return np.concatenate(out)

    return enc


class Env:
    """Everything loaded once: sets, teacher embeddings, tokenised training data, the token table."""

    def __init__(self, token_dim: int):
        S = SD.all_sets()
        self.S = S
        d = S["dolly"]
        self.tok = Tok(teacher_token_table(dim=token_dim).source)
        self.table = teacher_token_table(dim=token_dim)
        self.vocab = self.table.table.shape[0]
        te = SD.teacher_embed
        self.dolly_a = {k: te(d[k][1], role="answer") for k in d}
        self.dolly_q = {k: te(d[k][0]) for k in d}
        corpus = S["corpus"]
        texts1 = corpus + d["train"][0]
        t1 = np.concatenate([te(corpus), self.dolly_q["train"]])
        self.stage1_texts = texts1
        self.stage1 = (self.tok.ids(texts1, 64), t1.astype(np.float32))
        self.stage2 = (self.tok.ids(d["train"][0], 64), self.dolly_a["train"], self.dolly_q["train"])
        self.n_corpus = len(corpus)
        self._tcache: dict = {}

    def teacher_enc(self, texts):
        return SD.teacher_embed(list(texts))


def evaluate(env: Env, enc_q, enc_a=None, split="val", own_bank=False) -> dict:
    """split 'val': Dolly val + TREC-QA train (tuning); 'test': Dolly held-out, STS, TREC-QA dev.

    Dolly's answer bank is MiniLM's answer embeddings, except with ``own_bank`` (a model in
    another space: potion, the PCA-space init), where the model embeds the answers itself."""
    enc_a = enc_a or enc_q
    d = env.S["dolly"]

    def bank(k):
        return enc_a(d[k][1]) if own_bank else env.dolly_a[k]

    if split == "val":
        return {"dolly_val": dolly_scores(enc_q, d["val"][0], bank("val")),
                "trec_train": trec_scores(enc_q, enc_a, env.S["trec_train"])}
    return {"dolly_test": dolly_scores(enc_q, d["test"][0], bank("test")),
            "sts": sts_scores(enc_q, env.S["sts"]),
            "trec_dev": trec_scores(enc_q, enc_a, env.S["trec_dev"])}


def run_trial(env: Env, cfg: dict, seed: int, lattice: bool, split="val") -> tuple[dict, StandaloneStudent]:
    st = build_student(cfg, env.table, lattice, env.vocab, seed)
    info = train(st, cfg, env.stage1, env.stage2, seed)
    res = evaluate(env, student_encoder(st, env.tok), split=split)
    res["train"] = info
    return res, st


# ------------------------------------------------------------------------------------------------
# speed
# ------------------------------------------------------------------------------------------------
def texts_per_s(fn, texts, batch, threads, reps=3) -> float:
    torch.set_num_threads(threads)
    fn(texts[: min(len(texts), 2 * batch)], batch)  # warm-up
    best = []
    for _ in range(reps):
        t = time.perf_counter()
        fn(texts, batch)
        best.append(time.perf_counter() - t)
    return len(texts) / statistics.median(best)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trial", help="JSON overrides of DEFAULT; run one seed, validation numbers only")
    ap.add_argument("--lattice", choices=["on", "off", "both"], default="both")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for training")
    ap.add_argument("--name", default=None)
    ap.add_argument("--speed-only", action="store_true", help="re-measure speed on the last run's exports")
    ap.add_argument("--recipe", nargs="+", metavar="RUN",
                    help="evaluate runs of `distill train configs/standalone.yaml`: RUN_ON [RUN_OFF] (lattice on / "
                         "--set student.token_lattice=false) on the test sets, with speed; no training here")
    ap.add_argument("--recipe-on", nargs="+", metavar="RUN", help="recipe runs with the lattice (seeds; globs ok)")
    ap.add_argument("--recipe-off", nargs="+", metavar="RUN", help="recipe runs with token_lattice=false (seeds)")
    ap.add_argument("--variant", nargs="+", action="append", metavar="LABEL RUN",
                    help="another recipe variant: LABEL RUN [RUN ...] (repeatable)")
    ap.add_argument("--speed-rounds", type=int, default=3, help="interleaved speed rounds (--recipe modes)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.recipe or args.recipe_on or args.recipe_off or args.variant:
        try:
            variants = recipe_variants(args)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return recipe_bench(variants, rounds=args.speed_rounds)
    cfg = {**DEFAULT}
    if args.trial:
        over = json.loads(args.trial)
        if "lattice" in over:
            over["lattice"] = {**DEFAULT["lattice"], **over["lattice"]}
        cfg.update(over)
    env = Env(cfg["token_dim"])
    if args.speed_only:  # re-measure speed on the exports of the last full run, keep its quality rows
        from model2vec import StaticModel

        results = json.loads(OUT.read_text())
        measure_speed(env, results, SD.teacher(), StaticModel.from_pretrained(str(POTION)))
        write_text_atomic(OUT, json.dumps(results, indent=1))
        print_table(results)
        return 0
    print(f"corpus: {env.n_corpus} sentences after removing every STS sentence "
          f"({len(env.S['sts_sentences'])}); stage-1 texts {len(env.stage1[0])}, Dolly train {len(env.stage2[0])}, "
          f"val {len(env.S['dolly']['val'][0])}, test {len(env.S['dolly']['test'][0])}", flush=True)

    if args.trial:
        rows = []
        for lat in (["on", "off"] if args.lattice == "both" else [args.lattice]):
            res, _ = run_trial(env, cfg, 0, lat == "on", "val")
            row = {"name": args.name, "lattice": lat, "config": cfg, "val": res}
            rows.append(row)
            print(json.dumps({"name": args.name, "lattice": lat, "dolly_val_r1": res["dolly_val"]["r1"],
                              "trec_train_map": res["trec_train"]["map"], "trec_train_mrr": res["trec_train"]["mrr"],
                              "train_s": round(res["train"]["train_s"], 1)}), flush=True)
        old = json.loads(TRIALS.read_text()) if TRIALS.exists() else []
        write_text_atomic(TRIALS, json.dumps(old + rows, indent=1))
        return 0
    return full_bench(env, cfg, args)


def full_bench(env: Env, cfg: dict, args) -> int:
    from model2vec import StaticModel

    results: dict = {"config": cfg, "splits": {
        "dolly": "project split (holdout 0.2, split_seed 0); reported = held-out; tuned on 10% of train (seed 1)",
        "sts": "sts_2012_2015.jsonl, all rows; its sentences were removed from the distillation corpus",
        "trec": "tuned on trecqa_train, reported on trecqa_dev"},
        "corpus_sentences_after_sts_removal": env.n_corpus, "rows": {}}
    tok = env.tok
    teacher = SD.teacher()
    potion = StaticModel.from_pretrained(str(POTION))
    t_enc = lambda texts: SD.teacher_embed(list(texts))  # noqa: E731
    p_enc = lambda texts: potion.encode(list(texts), batch_size=256, use_multiprocessing=False)  # noqa: E731
    init_st = build_student(cfg, env.table, False, env.vocab, 0).eval()
    rows = {
        "(a) MiniLM teacher": [evaluate(env, t_enc, split="test")],
        "(b) potion-base-8M": [evaluate(env, lambda t: _norm(p_enc(t)), split="test", own_bank=True)],
        "(c) teacher-derived init, untrained (static, PCA space)":
            [evaluate(env, student_encoder(init_st, tok, static_only=True), split="test", own_bank=True)],
        "(c') same, through the inverse-PCA head (MiniLM space)":
            [evaluate(env, student_encoder(init_st, tok, use_lattice=False), split="test")],
    }
    trained = {"(d) trained, lattice off": [], "(e) trained, lattice on": []}
    students = {}
    for seed in range(args.seeds):
        for key, lat in (("(d) trained, lattice off", False), ("(e) trained, lattice on", True)):
            res, st = run_trial(env, cfg, seed, lat, "test")
            trained[key].append(res)
            students[key] = st
            print(key, seed, _brief(res), flush=True)
    rows.update(trained)
    results["rows"] = {k: _summ(v) for k, v in rows.items()}
    results["per_seed"] = {k: v for k, v in trained.items()}

    exp = ROOT / ".cache" / "standalone" / "export_e"
    from distill.encoder import export_standalone

    export_standalone(students["(e) trained, lattice on"], tok.dir, exp)
    export_standalone(students["(d) trained, lattice off"], tok.dir, exp.with_name("export_d"))
    measure_speed(env, results, teacher, potion)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(OUT, json.dumps(results, indent=1))
    print_table(results)
    return 0


class _RecipeEnv:
    """What ``evaluate(split="test")`` reads, without the distillation corpus (the recipe trained)."""

    def __init__(self):
        self.S = SD.all_sets()
        d = self.S["dolly"]
        self.dolly_a = {"test": SD.teacher_embed(d["test"][1], role="answer")}


def expand_runs(patterns: list[str]) -> list[str]:
    """Run directories from paths or glob patterns (sorted per pattern, order of patterns kept).
    A pattern matching nothing, or a path that is not a directory: ValueError naming it."""
    import glob

    runs: list[str] = []
    for pat in patterns:
        hits = sorted(glob.glob(pat)) if any(c in pat for c in "*?[") else [pat]
        if not hits:
            raise ValueError(f"{pat}: no run directory matches")
        for h in hits:
            if not Path(h).is_dir():
                raise ValueError(f"{h}: not a run directory")
            runs.append(h)
    return runs


def recipe_variants(args) -> dict[str, list[str]]:
    """Row label -> run directories, from ``--recipe RUN_ON [RUN_OFF]`` (the old form, one run
    each), ``--recipe-on/--recipe-off RUN...`` and repeatable ``--variant LABEL RUN...``."""
    on, off = list(args.recipe_on or []), list(args.recipe_off or [])
    if args.recipe:
        if len(args.recipe) > 2:
            raise ValueError(f"--recipe: takes RUN_ON [RUN_OFF], got {len(args.recipe)} runs "
                             "(several seeds: --recipe-on RUN... --recipe-off RUN...)")
        on += args.recipe[:1]
        off += args.recipe[1:2]
    variants: dict[str, list[str]] = {}
    if on:
        variants["(e) recipe, lattice on"] = expand_runs(on)
    if off:
        variants["(d) recipe, lattice off"] = expand_runs(off)
    for label, *runs in args.variant or []:
        if not runs:
            raise ValueError(f"--variant {label}: no run given (--variant LABEL RUN [RUN ...])")
        variants[f"recipe, {label}"] = expand_runs(runs)
    if not variants:
        raise ValueError("--recipe: no runs given")
    return variants


def _validation_r1(run: str) -> float | None:
    """Dolly validation R@1 of the run's own eval.json (the recipe's tuning number), if there."""
    f = Path(run) / "eval.json"
    if not f.exists():
        return None
    doc = json.loads(f.read_text())
    try:
        return float(doc["validation"][doc["input_teacher"]]["student"]["recall@1"])
    except (KeyError, TypeError, ValueError):
        return None


def _paired_diffs(per_run: dict[str, list[dict]], a: str, b: str) -> dict:
    """a - b on the same seeds (run i of both), mean ± 95% t interval, for Dolly R@1 and STS."""
    from bench.stats import paired

    ra, rb = per_run[a], per_run[b]
    out = {}
    for m, (x, y) in {"dolly_r1": ("dolly_test", "r1"), "sts": ("sts", "mean"), "trec_map": ("trec_dev", "map")}.items():
        out[m] = paired([r[x][y] for r in ra], [r[x][y] for r in rb]).to_dict()
    return out


def recipe_bench(variants: dict[str, list[str]], rounds: int = 3) -> int:
    """Exports of `distill train configs/standalone.yaml` runs (shipped data only) on the phase-1
    test sets, each variant over its runs (seeds): mean ± sd; with on and off on the same number of
    runs, the paired difference on - off. Speed once per variant (its first run's export),
    interleaved with MiniLM (and potion-base-8M when model2vec is installed) in the same run."""
    from distill.encoder import Encoder

    env = _RecipeEnv()
    teacher = SD.teacher()
    encs = {k: [Encoder.from_pretrained(r) for r in runs] for k, runs in variants.items()}
    per_run: dict[str, list[dict]] = {}
    for k, es in encs.items():
        per_run[k] = []
        for run, enc in zip(variants[k], es):
            res = evaluate(env, lambda t, enc=enc: enc.encode(list(t), batch_size=256), split="test")
            res["run"], res["dolly_val_r1"] = run, _validation_r1(run)
            per_run[k].append(res)
            print(k, run, _brief(res), "val R@1", res["dolly_val_r1"], flush=True)
    summ = {"(a) MiniLM teacher": _summ([evaluate(env, lambda t: SD.teacher_embed(list(t)), split="test")])}
    potion = _potion()
    if potion is not None:
        p_enc = lambda t: _norm(potion.encode(list(t), batch_size=256, use_multiprocessing=False))  # noqa: E731
        summ["(b) potion-base-8M"] = _summ([evaluate(env, p_enc, split="test", own_bank=True)])
    for k, runs in per_run.items():
        summ[k] = _summ(runs)
        vals = [r["dolly_val_r1"] for r in runs if r["dolly_val_r1"] is not None]
        if vals:
            summ[k]["dolly_val_r1"] = {"mean": float(np.mean(vals)), "sd": float(np.std(vals, ddof=1)) if len(vals) > 1
                                       else 0.0, "n": len(vals)}
    results: dict = {"runs": variants, "rows": summ, "per_run": {k: v for k, v in per_run.items()},
                     "splits": "Dolly held-out (project split, = the recipe's test split), STS 2012-2015, "
                               "TREC-QA dev; the recipe never saw any of them; dolly_val_r1 = each run's own "
                               "eval.json validation table (the tuning number)"}
    off = "(d) recipe, lattice off"
    results["paired_on_minus_off"] = {}
    for k in per_run:
        if k != off and off in per_run and len(per_run[k]) == len(per_run[off]) > 1:
            results["paired_on_minus_off"][k] = _paired_diffs(per_run, k, off)
    sents = sorted({r["s1"] for r in env.S["sts"]})[:512]
    fns = {"(a) MiniLM teacher": lambda t, b: teacher.encode(t, batch_size=b)}
    if potion is not None:
        fns["(b) potion-base-8M"] = lambda t, b: potion.encode(t, batch_size=b, use_multiprocessing=False)
    fns.update({k: (lambda t, b, enc=es[0]: enc.encode(t, batch_size=b)) for k, es in encs.items()})
    load0 = os.getloadavg()[0]
    results["speed_texts_per_s"] = interleaved_speed(fns, sents, sents[:128], rounds=rounds)
    results["speed_texts"] = (f"512 STS sentences (batch 64; 2 and 1 threads) / 128 of them (batch 1, 1 thread); "
                              f"median of {rounds} interleaved rounds; each variant's first run's export")
    results["machine_load_1min"] = {"before_speed": load0, "after_speed": os.getloadavg()[0]}
    out = OUT.with_name("standalone_recipe.json")
    write_text_atomic(out, json.dumps(results, indent=1))
    print_table(results)
    for k, d in results["paired_on_minus_off"].items():
        print(f"paired {k} - lattice off: " + ", ".join(
            f"{m} {v['mean'] * 100:+.2f} ± {v['half_width'] * 100:.2f} pts" for m, v in d.items()))
    return 0


def _potion():
    """potion-base-8M as a model2vec StaticModel, or None (model2vec or the files missing)."""
    try:
        from model2vec import StaticModel
    except ImportError:
        return None
    return StaticModel.from_pretrained(str(POTION)) if POTION.is_dir() else None


def interleaved_speed(fns: dict, batch_texts: list[str], single_texts: list[str], rounds: int,
                      modes: dict | None = None, reference: str = "(a) MiniLM teacher") -> dict:
    """texts/s of each ``fns[name](texts, batch_size)`` at batch 64 on 2 and 1 threads and batch 1
    on 1 thread, in interleaved rounds (median), plus each mode's ratio to the MiniLM teacher.
    ``modes`` (name -> (texts, batch, threads)) replaces those three; ``reference`` names the
    entry of ``fns`` the ratios divide by."""
    if modes is None:
        modes = {"b64_t2": (batch_texts, 64, 2), "b64_t1": (batch_texts, 64, 1), "b1_t1": (single_texts, 1, 1)}
    speed: dict = {k: {m: [] for m in modes} for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            for m, (texts, b, th) in modes.items():
                speed[k][m].append(texts_per_s(fn, texts, b, th, reps=1))
    speed = {k: {m: statistics.median(v) for m, v in d.items()} for k, d in speed.items()}
    for k in speed:
        for m in modes:
            speed[k][m + "_x_minilm"] = speed[k][m] / speed[reference][m]
    return speed


def measure_speed(env: Env, results: dict, teacher, potion) -> None:
    """texts/s of (a), (b), (d), (e) on the same texts, interleaved rounds; (d)/(e) through the
    exported Encoder (.cache/standalone/export_d, export_e). Adds b64 at 1 thread: on this shared,
    oversubscribed 2-core machine 2 intra-op threads stall on each other (see the README)."""
    from distill.encoder import Encoder

    sents = sorted({r["s1"] for r in env.S["sts"]})[:1024]
    one = sents[:256]
    exp = ROOT / ".cache" / "standalone" / "export_e"
    enc_e, enc_d = Encoder.from_pretrained(exp), Encoder.from_pretrained(exp.with_name("export_d"))
    fns = {
        "(a) MiniLM teacher": lambda t, b: teacher.encode(t, batch_size=b),
        "(b) potion-base-8M": lambda t, b: potion.encode(t, batch_size=b, use_multiprocessing=False),
        "(d) trained, lattice off": lambda t, b: enc_d.encode(t, batch_size=b),
        "(e) trained, lattice on": lambda t, b: enc_e.encode(t, batch_size=b),
    }
    results["speed_texts_per_s"] = interleaved_speed(fns, sents, one, rounds=3)
    results["speed_texts"] = ("1024 STS sentences (batch 64; 2 and 1 threads) / 256 of them (batch 1, 1 thread); "
                              "median of 3 interleaved rounds")
    results["machine_load_1min"] = os.getloadavg()[0]


def _norm(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)


def _brief(res):
    return {"dolly_r1": round(res["dolly_test"]["r1"], 4), "sts": round(res["sts"]["mean"], 4),
            "trec_map": round(res["trec_dev"]["map"], 4)}


def _summ(runs: list[dict]) -> dict:
    keys = {"dolly_r1": ("dolly_test", "r1"), "dolly_cos": ("dolly_test", "cosine"), "sts": ("sts", "mean"),
            "trec_map": ("trec_dev", "map"), "trec_mrr": ("trec_dev", "mrr")}
    out = {}
    for k, (a, b) in keys.items():
        v = [r[a][b] for r in runs]
        out[k] = {"mean": float(np.mean(v)), "sd": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, "n": len(v)}
    out["sts_per_set"] = {s: float(np.mean([r["sts"][s] for r in runs])) for s in runs[0]["sts"]}
    return out


def print_table(results):
    rows, speed = results["rows"], results["speed_texts_per_s"]
    print(f"\n{'model':58s} {'Dolly R@1':>14s} {'STS Spearman':>14s} {'TREC MAP':>14s} {'TREC MRR':>14s} "
          f"{'b64/2t x':>9s} {'b64/1t x':>9s} {'b1/1t x':>8s}")
    for k, r in rows.items():
        cells = []
        for m in ("dolly_r1", "sts", "trec_map", "trec_mrr"):
            v = r[m]
            cells.append(f"{v['mean']:.4f}±{v['sd']:.4f}" if v["n"] > 1 else f"{v['mean']:.4f}")
        s = speed.get(k)
        sp = (f"{s['b64_t2_x_minilm']:9.1f} {s.get('b64_t1_x_minilm', float('nan')):9.1f} {s['b1_t1_x_minilm']:8.1f}"
              if s else "")
        print(f"{k:58s} " + " ".join(f"{c:>14s}" for c in cells) + " " + sp)
    print("\ntexts/s:", json.dumps({k: {m: round(v, 1) for m, v in d.items() if "_x_" not in m} for k, d in speed.items()}))


if __name__ == "__main__":
    sys.exit(main())
