"""The evaluation side of the standalone student's data-scaling curve (issue #20).

Students trained by ``distill train configs/standalone_corpus.yaml`` on the first N sentences of a
corpus (``stages[0].data.max_pairs``) are measured here, next to the MiniLM teacher and
potion-base-8M, in the same process and on the same data:

1. STS 2012-2015 (``sts_2012_2015.jsonl``): Spearman of cosine vs gold per set, and the mean over
   the 20 sets (the number to report).
2. Dolly held-out Q->A R@1 on the recipe's test split (``split_indices(questions, 0.2, 0.1, 0)`` of
   ``builtin:dolly_open_qa``, the split every stage of the runs holds out; checked against each
   run's config.yaml):
   * ``dolly_sym``: the model encodes both the questions and the answers (every model alike);
   * ``dolly_q_vs_minilm_a`` (students and MiniLM): the model's question encoding against MiniLM's
     answer embeddings, the number the run's own eval.json reports as its test recall@1;
   * asymmetric (query / answer spaces): only if the student has such spaces. A standalone
     student's ``Encoder.spaces`` are teacher spaces (``minilm``), not query / answer roles, so
     there is none; the JSON says so instead of inventing one.
3. TREC-QA dev (``trecqa_dev.jsonl``): MAP and MRR.
4. Order probe: ~1000 STS sentences, two words (whitespace-separated, different) swapped with a
   fixed seed; mean (1 - cos) between a sentence and its swap, its ratio to MiniLM's
   (``order_x_minilm``, issue #20's ``order_ratio``) and ``order_spearman``, the Spearman of the
   model's distances against MiniLM's over the sentences. A bag-of-tokens model (potion, a static
   student) scores 0 (its Spearman is of float rounding noise).
5. texts/s (1024 STS sentences), median of interleaved rounds: batch 256 on one thread (the table's
   column), batch 64 on 2 and on 1 threads, batch 1 on one thread (256 sentences); each also as a
   multiple of MiniLM's (the JSON's ``speed``).
6. N, the training-corpus size: ``stages[0].data.max_pairs`` of the run's config when the config
   has stages; a final stage dir's config has none, so the first stage of its ``init_from`` chain
   (``<run>-corpus``) gives ``data.max_pairs`` there.

    python bench/standalone_scale.py --runs 10k=/work/cache/runs/sc-10k 100k=/work/cache/runs/sc-100k \\
        300k=/work/cache/runs/sc-300k 100k-static=/work/cache/runs/sc-100k-static
        # -> bench/results/standalone_scale.json, docs/img/standalone_scale.png
    python bench/standalone_scale.py --quick --runs ...   # small subsets, smoke test (< 1 min)
    python bench/standalone_scale.py --runs two=RUN two-mpnet=RUN@mpnet two-joint=RUN@concat
        # a two-teacher student in its MiniLM space (the default: the input teacher's), its MPNet
        # head's space, and both concatenated
    python bench/standalone_scale.py --replot bench/results/standalone_scale.json   # PNG only
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import standalone_data as SD  # noqa: E402
from bench.standalone import _norm, _potion, dolly_scores, interleaved_speed, sts_scores, trec_scores  # noqa: E402

OUT = ROOT / "bench" / "results" / "standalone_scale.json"
PLOT = ROOT / "docs" / "img" / "standalone_scale.png"
QUICK_DIR = ROOT / ".cache" / "standalone_scale_quick"
MINILM, POTION = "MiniLM (teacher)", "potion-base-8M"
DOLLY_SPLIT = {"path": "builtin:dolly_open_qa", "holdout_fraction": 0.2, "validation_fraction": 0.1, "split_seed": 0}


# ------------------------------------------------------------------------------------------------
# order probe
# ------------------------------------------------------------------------------------------------
def swap_two_words(text: str, rng: random.Random) -> str | None:
    """``text`` with two of its whitespace-separated words (chosen with ``rng``, different from each
    other) exchanged; every other character, whitespace included, stays where it was. None when the
    text has fewer than two different words."""
    parts = re.split(r"(\s+)", text)
    words = [i for i, p in enumerate(parts) if p and not p.isspace()]
    if len({parts[i] for i in words}) < 2:
        return None
    while True:
        i, j = rng.sample(words, 2)
        if parts[i] != parts[j]:
            break
    parts[i], parts[j] = parts[j], parts[i]
    return "".join(parts)


def order_pairs(sentences: list[str], n: int, seed: int = 0) -> list[tuple[str, str]]:
    """n (sentence, swapped) pairs from the sorted distinct sentences with at least 4 words."""
    rng = random.Random(seed)
    pool = sorted({s.strip() for s in sentences if len(s.split()) >= 4})
    picked = rng.sample(pool, min(n, len(pool)))
    out = []
    for s in picked:
        t = swap_two_words(s, rng)
        if t is not None:
            out.append((s, t))
    return out


def order_distances(encode, pairs) -> np.ndarray:
    """(1 - cos) between each sentence and its swap, one per pair (``encode`` returns unit rows)."""
    a = encode([p[0] for p in pairs])
    b = encode([p[1] for p in pairs])
    return 1.0 - (a * b).sum(1)


def order_stats(d: np.ndarray, ref: np.ndarray) -> dict:
    """``order_ratio`` = mean(d) / mean(ref) and ``order_spearman`` = Spearman of d against ref over
    the sentences (issue #20's composition targets); ``ref`` is the teacher's distances."""
    from scipy.stats import spearmanr

    rho = spearmanr(d, ref).statistic if np.ptp(d) > 0 else float("nan")
    return {"order_ratio": float(np.mean(d) / np.mean(ref)), "order_spearman": float(rho)}


# ------------------------------------------------------------------------------------------------
# runs
# ------------------------------------------------------------------------------------------------
def run_dir_of(path: Path) -> Path:
    """A student dir (``.../student``) or a run dir -> the run (stage) dir holding config.yaml."""
    path = path.resolve()
    if path.name == "student" and (path.parent / "config.yaml").is_file():
        return path.parent
    return path


def _load_yaml(p: Path) -> dict:
    import yaml

    return yaml.safe_load(p.read_text()) or {}


def corpus_size(run: Path) -> dict:
    """{'n': records read from the corpus (max_pairs) or None, 'from': where it was read, ...}.

    A config with ``stages``: ``stages[0].data.max_pairs``. A resolved stage config (what a final
    stage dir holds): follow ``student.init_from`` back to the first stage and read its
    ``data.max_pairs``, with the train count of that stage's eval.json when there."""
    cfg_path = run / "config.yaml"
    if not cfg_path.is_file():
        return {"n": None, "from": f"{cfg_path}: missing"}
    cfg = _load_yaml(cfg_path)
    if cfg.get("stages"):
        return {"n": (cfg["stages"][0].get("data") or {}).get("max_pairs"), "from": f"{cfg_path}: stages[0].data.max_pairs"}
    chain, cur, seen = [(run, cfg)], cfg, {run}
    while (init := ((cur.get("student") or {}).get("init_from"))):
        d = run_dir_of(Path(init))
        if d in seen or not (d / "config.yaml").is_file():
            break
        seen.add(d)
        cur = _load_yaml(d / "config.yaml")
        chain.append((d, cur))
    first, fcfg = chain[-1]
    data = fcfg.get("data") or {}
    if str(data.get("path", "")).startswith("builtin:"):
        return {"n": None, "from": f"{first}: first stage reads {data.get('path')}, no corpus"}
    out = {"n": data.get("max_pairs"), "from": f"{first / 'config.yaml'}: data.max_pairs (first stage of the init_from chain)",
           "corpus": data.get("path")}
    ev = first / "eval.json"
    if ev.is_file():
        out["corpus_pairs"] = json.loads(ev.read_text()).get("pairs")
    return out


def load_encoder(path: Path, name: str):
    """(Encoder, note). An export without manifest.json (written before exports carried one, as the
    issue-#20 runs were) is copied under .cache/standalone_scale/exports/NAME and adopted there as it
    is (distill.export.manifest.write_manifest), so the run dir stays untouched."""
    import shutil

    from distill.encoder import Encoder, find_export
    from distill.export.manifest import MANIFEST_NAME, write_manifest

    src = find_export(path)
    if (src / MANIFEST_NAME).is_file():
        return Encoder.from_pretrained(src), "loaded as it is (has manifest.json)"
    dst = ROOT / ".cache" / "standalone_scale" / "exports" / name
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    write_manifest(dst)
    return Encoder.from_pretrained(dst), f"{src} has no manifest.json: copied to {dst} and adopted as it is"


def dolly_split_check(run: Path) -> dict:
    """The run's Dolly split settings vs the one measured here; 'same' False names what differs."""
    cfg_path = run / "config.yaml"
    if not cfg_path.is_file():
        return {"same": None, "note": "no config.yaml"}
    data = _load_yaml(cfg_path).get("data") or {}
    got = {k: data.get(k) for k in DOLLY_SPLIT}
    diff = {k: v for k, v in got.items() if v != DOLLY_SPLIT[k]}
    out = {"same": not diff, "run": got}
    if diff:
        out["differs"] = diff
    ev = run / "eval.json"
    if ev.is_file():
        out["eval_json_pairs"] = json.loads(ev.read_text()).get("pairs")
    return out


# ------------------------------------------------------------------------------------------------
# measurement
# ------------------------------------------------------------------------------------------------
class Data:
    def __init__(self, quick: bool):
        d = SD.dolly_splits()
        self.dolly_test = d["test"]
        self.dolly_sizes = {k: len(v[0]) for k, v in d.items()}
        sts = SD.sts()
        trec = SD.trecqa("dev")
        n_order, n_speed = 1000, 1024
        if quick:
            by: dict[str, list] = {}
            for r in sts:
                by.setdefault(r["set"], []).append(r)
            sts = [r for rs in by.values() for r in rs[:20]]
            qs = sorted({r["question"] for r in trec})[:10]
            trec = [r for r in trec if r["question"] in set(qs)]
            self.dolly_test = (self.dolly_test[0][:60], self.dolly_test[1][:60])
            n_order, n_speed = 50, 128
        self.sts, self.trec = sts, trec
        self.order = order_pairs([r["s1"] for r in SD.sts()], n_order, seed=0)
        self.speed_texts = sorted({r["s1"] for r in SD.sts()})[:n_speed]


def measure(data: Data, enc, minilm_a: np.ndarray, q_vs_minilm: bool) -> dict:
    q, a = data.dolly_test
    res = {"sts": sts_scores(enc, data.sts),
           "dolly_sym": dolly_scores(enc, q, enc(a)),
           "trec_dev": trec_scores(enc, enc, data.trec),
           "_order": order_distances(enc, data.order)}
    res["order_1_minus_cos"] = float(np.mean(res["_order"]))
    if q_vs_minilm:
        res["dolly_q_vs_minilm_a"] = dolly_scores(enc, q, minilm_a)
    return res


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["models"]
    metrics = [("STS 2012-15 mean Spearman", lambda r: r["sts"]["mean"]),
               ("Dolly test Q->A R@1 (symmetric)", lambda r: r["dolly_sym"]["r1"]),
               ("TREC-QA dev MAP", lambda r: r["trec_dev"]["map"])]
    students = {k: r for k, r in rows.items() if r["kind"] == "student" and r["corpus"]["n"]}
    series = _series(students)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    for ax, (title, get) in zip(axes, metrics):
        for i, (label, pts) in enumerate(series.items()):
            ns = sorted(pts)
            mean = [float(np.mean([get(students[k]) for k in pts[n]])) for n in ns]
            # max(0, ...): the mean of equal seeds can round past their min or max (3 x 0.1 -> 0.10000000000000002)
            lo = [max(0.0, mean[j] - min(get(students[k]) for k in pts[n])) for j, n in enumerate(ns)]
            hi = [max(0.0, max(get(students[k]) for k in pts[n]) - mean[j]) for j, n in enumerate(ns)]
            seeds = max(len(v) for v in pts.values())
            ax.errorbar(ns, mean, yerr=[lo, hi], fmt="os^vD"[i % 5] + "-", color=f"C{[0, 3, 4, 1, 5][i % 5]}",
                        capsize=3, label=label + (f" (min-max of up to {seeds} seeds)" if seeds > 1 else ""))
        ax.axhline(get(rows[MINILM]), color="k", ls="--", lw=1, label="MiniLM (teacher)")
        ax.axhline(get(rows[POTION]), color="C2", ls=":", lw=1.5, label="potion-base-8M")
        ax.set_xscale("log")
        ax.set_xlabel("corpus sentences N (stages[0].data.max_pairs)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="best")
    fig.suptitle("Standalone student vs corpus size" + (" (--quick subsets)" if results["quick"] else ""), fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _series(students: dict) -> dict[str, dict[int, list[str]]]:
    """{series label: {N: [model names]}}. A run named ``SERIES/LABEL`` (e.g. ``static/300k-s1``)
    belongs to SERIES; other names go by their lattice flag. Same series and N: seeds of one point."""
    out: dict[str, dict[int, list[str]]] = {}
    for k, r in students.items():
        label = k.split("/")[0] if "/" in k else ("student (lattice)" if r["lattice"] else "student (static)")
        out.setdefault(label, {}).setdefault(r["corpus"]["n"], []).append(k)
    return out


def speed_modes(texts: list[str]) -> dict:
    """name -> (texts, batch, threads): batch 256 on one thread (the steadiest column on a shared
    machine), and the issue's batch 64 on 2 threads, batch 64 on 1, and batch 1 (256 texts) on 1."""
    return {"b256_t1": (texts, 256, 1), "b64_t2": (texts, 64, 2), "b64_t1": (texts, 64, 1), "b1_t1": (texts[:256], 1, 1)}


def print_table(results: dict) -> None:
    head = (f"{'model':22s} {'N':>8s} {'STS mean':>9s} {'Dolly sym':>10s} {'q->MiniLM a':>12s} {'asym':>6s} "
            f"{'TREC MAP':>9s} {'TREC MRR':>9s} {'order 1-cos':>12s} {'x MiniLM':>9s} {'order rho':>9s} {'texts/s':>9s} {'x MiniLM':>9s}")
    print("\n" + head + "\n" + "-" * len(head))
    for k, r in results["models"].items():
        n = r.get("corpus", {}).get("n")
        qm = r.get("dolly_q_vs_minilm_a")
        sp = r.get("speed", {})
        n_s = f"{n:,}" if n else "-"
        qm_s = f"{qm['r1']:.4f}" if qm else "-"
        asym = "none" if r["kind"] == "student" else "-"
        print(f"{k:22s} {n_s:>8s} {r['sts']['mean']:9.4f} {r['dolly_sym']['r1']:10.4f} "
              f"{qm_s:>12s} {asym:>6s} "
              f"{r['trec_dev']['map']:9.4f} {r['trec_dev']['mrr']:9.4f} {r['order_1_minus_cos']:12.5f} "
              f"{r['order_x_minilm']:9.3f} {r.get('order_spearman', float('nan')):9.3f} "
              f"{sp.get('b256_t1', float('nan')):9.1f} "
              f"{sp.get('b256_t1_x_minilm', float('nan')):9.1f}")
    print("asym: no student has a query/answer space (Encoder.spaces are teacher spaces); see the JSON's notes")


def parse_runs(items: list[str]) -> dict[str, tuple[Path, str | None]]:
    """``NAME=PATH`` or ``NAME=PATH@SPACE`` -> {name: (path, space)}. SPACE is one of the export's
    teacher spaces (``distill encode --space``), or ``concat``: every space L2-normalised and
    concatenated, then normalised again (a several-teacher student's joint space)."""
    runs = {}
    for it in items:
        if "=" not in it:
            raise ValueError(f"--runs {it!r}: expected NAME=PATH or NAME=PATH@SPACE")
        name, path = it.split("=", 1)
        path, _, space = path.partition("@")
        if name in runs or name in (MINILM, POTION):
            raise ValueError(f"--runs: name {name!r} given twice or reserved")
        if not Path(path).is_dir():
            raise ValueError(f"--runs {name}: {path} is not a directory")
        runs[name] = (Path(path), space or None)
    return runs


def space_encoder(enc, space: str | None):
    """texts, batch_size -> (N, d) rows of ``enc`` in ``space`` (see :func:`parse_runs`)."""
    if space is not None and space != "concat" and space not in enc.spaces:
        raise ValueError(f"space {space!r} is not one of the export's spaces {list(enc.spaces)} or concat")
    if space != "concat":
        return lambda t, b=256: enc.encode(list(t), space=space, batch_size=b)

    def joint(t, b=256):
        t = list(t)
        return _norm(np.concatenate([enc.encode(t, space=s, batch_size=b) for s in enc.spaces], axis=1))

    return joint


def row_space(enc, space: str | None) -> str:
    """The space a ``--runs`` entry is measured in: its ``@SPACE``, else the export's default (its
    input teacher's, what ``Encoder.encode`` returns without ``space=``; not the first head's)."""
    return space or enc.config.input_teacher


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", nargs="+", metavar="NAME=PATH[@SPACE]",
                    help="student dirs or run dirs; @SPACE: a teacher space of the export, or concat")
    ap.add_argument("--replot", type=Path, metavar="JSON", help="only redraw the PNG (and the table) from a results JSON")
    ap.add_argument("--quick", action="store_true", help="small subsets, 1 speed round (smoke test)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved speed rounds")
    ap.add_argument("--out", type=Path, default=None, help=f"JSON (default {OUT.relative_to(ROOT)}; "
                                                           f"--quick: under {QUICK_DIR.relative_to(ROOT)})")
    ap.add_argument("--plot", type=Path, default=None, help=f"PNG (default {PLOT.relative_to(ROOT)})")
    args = ap.parse_args(argv)
    if args.replot:
        results = json.loads(args.replot.read_text())
        png = args.plot or PLOT
        plot(results, png)
        print_table(results)
        print(f"\nwrote {png}")
        return 0
    if not args.runs:
        ap.error("--runs is required (or --replot JSON)")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    try:
        runs = parse_runs(args.runs)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = args.out or (QUICK_DIR / "standalone_scale.json" if args.quick else OUT)
    png = args.plot or (QUICK_DIR / "standalone_scale.png" if args.quick else PLOT)
    t0 = time.perf_counter()
    data = Data(args.quick)
    q, a = data.dolly_test
    minilm_a = SD.teacher_embed(list(a), role="answer")
    teacher = SD.teacher()
    potion = _potion()
    if potion is None:
        print("error: potion-base-8M not loadable (model2vec or the anchor files missing)", file=sys.stderr)
        return 2
    loaded = {name: load_encoder(p, re.sub(r"[^\w.-]+", "_", name)) for name, (p, _) in runs.items()}
    try:
        fns_of = {name: space_encoder(e, runs[name][1]) for name, (e, _) in loaded.items()}
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    encs = {name: e for name, (e, _) in loaded.items()}

    def minilm_enc(t):  # cached on disk by the texts (.cache/standalone): a rerun skips MiniLM's encoding
        return SD.teacher_embed(list(t))

    def potion_enc(t):
        return _norm(potion.encode(list(t), batch_size=256, use_multiprocessing=False))

    results: dict = {
        "command": shlex.join([sys.executable.split("/")[-1], *sys.argv]) if argv is None else shlex.join(argv),
        "cwd": os.getcwd(), "quick": args.quick,
        "splits": {
            "dolly": {"file": "distill/builtin_data/dolly_open_qa.jsonl (= /work/shared/data/dolly_open_qa.jsonl)",
                      "split": "test = split_indices(questions, holdout 0.2, validation 0.1, seed 0).test: the split "
                               "configs/standalone_corpus.yaml holds out in every stage (bench/standalone_data.py)",
                      "sizes_pairs": data.dolly_sizes, "measured_pairs": len(q)},
            "sts": f"sts_2012_2015.jsonl, {len(data.sts)} rows" + (" (--quick: 20 per set)" if args.quick else " (all)"),
            "trec": f"trecqa_dev.jsonl, {len(data.trec)} rows" + (" (--quick: 10 questions)" if args.quick else " (all)"),
            "order_probe": f"{len(data.order)} distinct STS s1 sentences (>= 4 words), random.Random(0) sample, two "
                           "different whitespace-separated words swapped; mean (1 - cos)",
            "speed": f"{len(data.speed_texts)} STS sentences (batch 1: the first 256), modes b256_t1 b64_t2 b64_t1 "
                     f"b1_t1 (batch, threads), median of {1 if args.quick else args.rounds} "
                     "interleaved rounds (bench.standalone.interleaved_speed)"},
        "notes": {
            "dolly_sym": "each model encodes questions and answers; R@1 of the true answer among all test answers",
            "dolly_q_vs_minilm_a": "the model's question vs MiniLM's answer embeddings (the run's eval.json test "
                                   "recall@1 metric); for MiniLM it equals dolly_sym",
            "asymmetric": "not measured: a standalone student's Encoder.spaces are teacher spaces "
                          "(e.g. ['minilm']), there is no query or answer space",
        },
        "models": {},
    }
    rows = results["models"]
    print(f"dolly test {len(q)} pairs, sts {len(data.sts)} rows, trec dev {len(data.trec)} rows, "
          f"order pairs {len(data.order)}", flush=True)
    rows[MINILM] = {"kind": "teacher", **measure(data, minilm_enc, minilm_a, True)}
    print(MINILM, f"{time.perf_counter() - t0:.0f}s", flush=True)
    rows[POTION] = {"kind": "baseline", **measure(data, potion_enc, minilm_a, False)}
    for name, enc in encs.items():
        run = run_dir_of(runs[name][0])
        space = row_space(enc, runs[name][1])
        rows[name] = {"kind": "student", "path": str(runs[name][0]), "export": str(enc.path), "load": loaded[name][1],
                      "spaces": list(enc.spaces), "space": space, "asymmetric": None,
                      "lattice": enc.config.lattice is not None,
                      "corpus": corpus_size(run), "dolly_split_check": dolly_split_check(run),
                      # q->MiniLM a compares with MiniLM's answers: only a student's MiniLM space can
                      **measure(data, fns_of[name], minilm_a, space == "minilm")}
        print(name, f"{time.perf_counter() - t0:.0f}s", flush=True)
    ref = rows[MINILM]["_order"]
    for r in rows.values():
        st = order_stats(r.pop("_order"), ref)
        r["order_x_minilm"], r["order_spearman"] = st["order_ratio"], st["order_spearman"]

    fns = {MINILM: lambda t, b: teacher.encode(t, batch_size=b),
           POTION: lambda t, b: potion.encode(t, batch_size=b, use_multiprocessing=False)}
    fns.update({k: (lambda t, b, f=f: f(t, b)) for k, f in fns_of.items()})
    load0 = os.getloadavg()[0]
    speed = interleaved_speed(fns, data.speed_texts, [], rounds=1 if args.quick else args.rounds,
                              modes=speed_modes(data.speed_texts), reference=MINILM)
    for k, s in speed.items():
        rows[k]["speed"] = s
    results["machine_load_1min"] = {"before_speed": load0, "after_speed": os.getloadavg()[0]}
    results["wall_s"] = time.perf_counter() - t0
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=1))
    os.replace(tmp, out)
    plot(results, png)
    print_table(results)
    print(f"\nwrote {out} and {png} in {results['wall_s']:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
