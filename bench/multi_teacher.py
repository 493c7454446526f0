"""Does a second teacher help? Students distilled from MiniLM alone, SmolLM2 alone, and both.

Every variant is the demo (``configs/default.yaml``: MiniLM + SmolLM2, the student reads the
MiniLM question embedding) trained through the real recipe (``distill.train``), same steps, same
batch, 3 seeds each. "alone" sets the other teacher's loss weight to 0, so the architecture, the
input, the initialisation and the evaluation are identical and only the training signal differs
(an unweighted teacher's head is never trained: its space shows the untrained student, i.e. the
identity start in MiniLM's space and a random head in SmolLM2's; compare those spaces only
between the students that trained them).

Loss variants (issue #11 item 6, PHI-S / teacher dropping): ``--norms center`` adds the three
students again with ``loss.target_norm=center`` (every term in the per-teacher centred space),
``--drops 0.5`` adds "both" with ``loss.teacher_drop=0.5``. The validation split's numbers (the
final step's, as eval.json holds them) are recorded beside the test split's, for choosing.

Reported (mean ± 95% Student-t interval over the seeds, bench/stats.py):
- each teacher space's Dolly TEST-split metrics (eval.json's ``test``; evaluated once, at the
  end), beside the identity / ridge (own question) / ridge_input (MiniLM question) baselines;
- downstream: Spearman between the STS gold score and the cosine of the student's shared
  representation (the lattice readout ``z``, before any head) of the two sentences, on a fixed
  random sample of ``../shared/data/sts_2012_2015.jsonl``; the MiniLM input embedding's own
  Spearman is the baseline (the lattice starts from it).

    python bench/multi_teacher.py                   # from the repository root
    python bench/multi_teacher.py --seeds 0 1 2 --sts-pairs 2000 --set loss.standardize=true
    python bench/multi_teacher.py --norms none center --drops 0.5 --out bench/results/multi_teacher_norm.json
    python bench/multi_teacher.py --mean-baseline   # cosine of predicting the training answers' mean

Paired differences (same seeds) are printed and stored per space: each "both" variant against
the single teacher that trained that space under the same target_norm (teacher_drop rows:
against target_norm none), against the plain "both", and every student against ridge (item 7).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.stats import paired, summarize  # noqa: E402
from distill.config import load_config  # noqa: E402
from distill.train import build_recipe, run  # noqa: E402

OUT = ROOT / "bench" / "results" / "multi_teacher.json"
# ../shared/data beside the repository (a worktree sits one level deeper: /work/wt/<name>).
STS = next((p for p in (ROOT.parent / "shared" / "data" / "sts_2012_2015.jsonl",
                        ROOT.parent.parent / "shared" / "data" / "sts_2012_2015.jsonl") if p.exists()),
           ROOT.parent / "shared" / "data" / "sts_2012_2015.jsonl")
VARIANTS = {"minilm alone": {"minilm": 1.0, "smollm2": 0.0},
            "smollm2 alone": {"minilm": 0.0, "smollm2": 1.0},
            "both (demo weights)": None}  # None: the config's weights
METRICS = ("cosine", "recall@1", "recall@10", "mrr")
BOTH = "both (demo weights)"


def variant_list(weights: list[str], norms: list[str], drops: list[float]) -> dict[str, tuple[str, list[str]]]:
    """label -> (weights variant, extra overrides): every weights variant under every target_norm
    (label suffix ", target_norm=X" unless X is none), then "both" with each teacher_drop."""
    out = {}
    for norm in norms:
        for w in weights:
            label = w if norm == "none" else f"{w}, target_norm={norm}"
            out[label] = (w, [] if norm == "none" else [f"loss.target_norm={norm}"])
    for p in drops:
        out[f"{BOTH}, teacher_drop={p}"] = (BOTH, [f"loss.teacher_drop={p}"])
    return out


def comparisons(variants: dict[str, tuple[str, list[str]]]) -> list[tuple[str, str, str]]:
    """(label a, label b, teacher space) pairs whose paired difference a - b is reported: a "both"
    variant against the single teacher of each space under the same target_norm (or none), and
    every other "both" variant against the plain one."""
    out = []
    for label, (w, extra) in variants.items():
        if w != BOTH:
            continue
        norm = next((e.split("=", 1)[1] for e in extra if e.startswith("loss.target_norm=")), "none")
        for space, single in (("minilm", "minilm alone"), ("smollm2", "smollm2 alone")):
            ref = single if norm == "none" else f"{single}, target_norm={norm}"
            if ref in variants:
                out.append((label, ref, space))
        if label != BOTH and BOTH in variants:
            out += [(label, BOTH, "minilm"), (label, BOTH, "smollm2")]
    return out


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])


def sts_inputs(cfg, n_pairs: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """MiniLM (the input teacher) embeddings of a fixed sample of STS pairs: (n, d), (n, d), gold (n,)."""
    from teachers.spec import TeacherSpec  # noqa: F401  (the config already holds built specs)
    from teachers.teacher import load_teacher

    rows = [json.loads(line) for line in STS.read_text().splitlines() if line.strip()]
    rows = random.Random(0).sample(rows, min(n_pairs, len(rows)))
    teacher = load_teacher(cfg.input_teacher(), "cpu")
    e1 = teacher.encode([r["s1"] for r in rows], "query")
    e2 = teacher.encode([r["s2"] for r in rows], "query")
    return e1, e2, np.array([float(r["score"]) for r in rows])


@torch.no_grad()
def sts_spearman(student, e1: torch.Tensor, e2: torch.Tensor, gold: np.ndarray) -> float:
    student.eval()
    z1, z2 = student.lattice(e1), student.lattice(e2)  # (n, d_lat): the shared representation
    return spearman(F.cosine_similarity(z1, z2, dim=-1).numpy(), gold)


def train_one(out_dir: Path, name: str, seed: int, weights: dict | None, extra: list[str], sts) -> dict:
    base = load_config(ROOT / "configs" / "default.yaml")
    cfg = load_config(ROOT / "configs" / "default.yaml", [
        f"run.output_dir={out_dir}", f"run.name={name}", f"run.seed={seed}",
        "logging.tensorboard=false", "logging.progress=false", "logging.image_every=0",
        "logging.histogram_every=0", f"train.save_every={base.train.max_steps}",
        f"targets.store_dir={ROOT / base.targets.store_dir}", *extra])
    if weights is not None:
        for t in cfg.teachers:
            t.weight = weights[t.name]
    t0 = time.perf_counter()
    r = build_recipe(cfg, components=None)
    assert run(r, lambda: False) == 0
    r.accelerator.end_training()
    ev = json.loads((cfg.run_dir / "eval.json").read_text())
    return {"test": ev["test"], "validation": ev["validation"], "sts_spearman": sts_spearman(r.unwrapped, *sts),
            "train_s": time.perf_counter() - t0}


def mean_answer_baseline(cfg) -> dict:
    """{split: {teacher: mean cosine}} of one constant prediction, the training answers' mean μ_k:
    how much of a space's cosine its common direction alone earns."""
    from distill.rundata import load_run_data

    d = load_run_data(cfg, progress=False)
    out = {}
    for split in ("validation", "test"):
        tg = getattr(d, split).targets.a
        out[split] = {n: float(F.cosine_similarity(d.train.a[n].mean(0, keepdim=True), tg[n], dim=-1).mean())
                      for n in tg}
    return out


def paired_table(runs: dict[str, list[dict]], variants: dict, first: dict) -> dict:
    """{split: {"a - b @ space": {metric: paired summary}}} for ``comparisons`` and, per trained
    space, every student - ridge (issue #11 item 7: >= 0 on cosine and R@1 at once)."""
    out: dict = {}
    for split in ("validation", "test"):
        rows = {}
        for a, b, space in comparisons(variants):
            rows[f"{a} - {b} @ {space}"] = {m: paired([r[split][space]["student"][m] for r in runs[a]],
                                                      [r[split][space]["student"][m] for r in runs[b]]).to_dict()
                                            for m in ("cosine", "recall@1")}
        for v, (w, _) in variants.items():
            for space in first:
                if VARIANTS[w] is not None and VARIANTS[w][space] == 0:
                    continue  # an untrained space
                rs = runs[v]
                rows[f"{v} - ridge @ {space}"] = {m: paired([r[split][space]["student"][m] for r in rs],
                                                            [r[split][space]["ridge"][m] for r in rs]).to_dict()
                                                  for m in ("cosine", "recall@1")}
        out[split] = rows
    return out


def print_paired(table: dict) -> None:
    for split, rows in table.items():
        print(f"\npaired differences, {split} split (mean ± 95% interval over the same seeds):")
        for name, vals in rows.items():
            c, r1 = vals["cosine"], vals["recall@1"]
            print(f"  {name:<78} cosine {c['mean']:+.4f} ± {c['half_width']:.4f}   "
                  f"R@1 {r1['mean']:+.4f} ± {r1['half_width']:.4f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--sts-pairs", type=int, default=2000)
    ap.add_argument("--set", nargs="*", default=[], help="extra config overrides for every variant")
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), help="weights variants")
    ap.add_argument("--norms", nargs="*", default=["none"], help="loss.target_norm values to run each variant with")
    ap.add_argument("--drops", type=float, nargs="*", default=[], help="loss.teacher_drop values to run 'both' with")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--mean-baseline", action="store_true",
                    help="only print the constant mean-answer prediction's cosine per space and split")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(ROOT / "configs" / "default.yaml", args.set)
    if args.mean_baseline:
        for split, row in mean_answer_baseline(cfg).items():
            print(f"{split}: " + ", ".join(f"{n} {v:.4f}" for n, v in row.items()))
        return 0
    sts = sts_inputs(cfg, args.sts_pairs)
    variants = variant_list(args.variants, args.norms, args.drops)
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:  # seeds outermost: the variants are interleaved against machine load
            for i, (v, (w, extra)) in enumerate(variants.items()):
                runs[v].append(train_one(Path(tmp), f"v{i}-{seed}", seed, VARIANTS[w], [*args.set, *extra], sts))
                print(f"seed {seed} {v}: {runs[v][-1]['train_s']:.0f} s", flush=True)
    first = runs[next(iter(variants))][0]["test"]
    table: dict = {"baselines": {t: {b: {m: rows[b][m] for m in METRICS} for b in rows if b != "student"}
                                 for t, rows in first.items()},
                   "students": {}}
    table["baselines"]["sts_spearman"] = {"minilm input embedding": spearman(
        F.cosine_similarity(sts[0], sts[1], dim=-1).numpy(), sts[2])}
    for v, rs in runs.items():
        row = {t: {m: summarize([r["test"][t]["student"][m] for r in rs]).__dict__ for m in METRICS}
               for t in first}
        row["sts_spearman"] = summarize([r["sts_spearman"] for r in rs]).__dict__
        row["validation"] = {t: {m: summarize([r["validation"][t]["student"][m] for r in rs]).__dict__
                                 for m in METRICS} for t in first}
        table["students"][v] = row
    table["paired"] = paired_table(runs, variants, first)
    print(f"Dolly test split, {cfg.train.max_steps} steps, seeds {args.seeds}, overrides {args.set or 'none'}; "
          f"mean ± 95% interval")
    for t in first:
        print(f"\nteacher space: {t}")
        print(f"  {'predictor':<22}" + "".join(f"{m:>18}" for m in METRICS))
        for b, vals in table["baselines"][t].items():
            print(f"  {b:<22}" + "".join(f"{vals[m]:>18.4f}" for m in METRICS))
        for v, row in table["students"].items():
            print(f"  {v:<22}" + "".join(f"{row[t][m]['mean']:>10.4f} ± {row[t][m]['half_width']:.4f}"
                                          for m in METRICS))
    print(f"\nSTS Spearman ({len(sts[2])} pairs of {STS.name}, lattice readout z of the MiniLM input):")
    print(f"  {'minilm input embedding':<22}{table['baselines']['sts_spearman']['minilm input embedding']:>10.4f}")
    for v, row in table["students"].items():
        s = row["sts_spearman"]
        print(f"  {v:<22}{s['mean']:>10.4f} ± {s['half_width']:.4f}")
    print_paired(table["paired"])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"config": "configs/default.yaml trained by distill.train's recipe",
                               "split": "test (students.<v>.validation: the validation split)",
                               "overrides": args.set, "seeds": args.seeds,
                               "variants": {v: {"weights": w, "overrides": e} for v, (w, e) in variants.items()},
                               "sts_pairs": len(sts[2]), **table,
                               "per_seed": {v: [{"test": {t: r["test"][t]["student"] for t in r["test"]},
                                                 "validation": {t: r["validation"][t]["student"] for t in r["test"]},
                                                 "sts_spearman": r["sts_spearman"], "train_s": r["train_s"]}
                                                for r in rs] for v, rs in runs.items()}}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
