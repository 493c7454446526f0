"""Does a second teacher help? Students distilled from MiniLM alone, SmolLM2 alone, and both.

Every variant is the demo (``configs/default.yaml``: MiniLM + SmolLM2, the student reads both
question embeddings; ``--inputs minilm`` the MiniLM one only, as the demo did before) trained
through the real recipe (``distill.train``), same steps, same batch, 3 seeds each. "alone" sets
the other teacher's loss weight to 0, so the architecture, the input, the initialisation and the
evaluation are identical and only the training signal differs (an unweighted teacher's head is
never trained: its space shows the untrained student, i.e. the identity start in an input
teacher's space and a random head in another's; compare those spaces only between the students
that trained them).

Loss variants (issue #11 item 6, PHI-S): ``--norms center`` adds the three students again with
``loss.target_norm=center`` (every term in the per-teacher centred space). (The teacher-dropping
variant was retired with ``loss.teacher_drop`` in issue #22: it helped nowhere;
bench/results/multi_teacher_norm.json keeps its rows.) The validation split's numbers (the final
step's, as eval.json holds them) are recorded beside the test split's, for choosing.

Reported (mean ± 95% Student-t interval over the seeds, bench/stats.py):
- each teacher space's Dolly TEST-split metrics (eval.json's ``test``; evaluated once, at the
  end), beside the identity / ridge (own question) / ridge_input (what the student reads) baselines;
- downstream: Spearman between the STS gold score and the cosine of the student's shared
  representation (the lattice readout ``z``, before any head) of the two sentences, on a fixed
  random sample of ``../shared/data/sts_2012_2015.jsonl``; each input teacher's own embedding's
  Spearman is the baseline (the lattice starts from them).

``--inputs minilm minilm,smollm2`` runs every variant once per student input and pairs each with
the same variant reading the first input.

    python bench/multi_teacher.py                   # from the repository root: the demo as configured
    python bench/multi_teacher.py --seeds 0 1 2 --sts-pairs 2000 --set loss.target_norm=phis
    # (phis replaces the retired loss.standardize=true, issue #22: the same mse / smooth_l1 on
    # (x − μ)/σ, but unlike it also centres the cosine / InfoNCE terms, so it is not identical)
    # the recorded runs from before the demo's kernel skip (README "Does a second teacher help?"):
    python bench/multi_teacher.py --inputs minilm --norms none center \
        --set "student.kernel_skip.teachers=[]" --out bench/results/multi_teacher_norm.json
    python bench/multi_teacher.py --variants "both (demo weights)" --norms none center \
        --inputs minilm minilm,smollm2 --set "student.kernel_skip.teachers=[]" \
        --out bench/results/multi_teacher_inputs.json
    python bench/multi_teacher.py --mean-baseline   # cosine of predicting the training answers' mean

Paired differences (same seeds) are printed and stored per space: each "both" variant against
the single teacher that trained that space under the same target_norm, against the plain "both",
and every student against ridge (item 7).
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
from distill.eval import spearman  # noqa: E402
from distill.targets import teacher_input  # noqa: E402
from distill.train import build_recipe, run  # noqa: E402

OUT = ROOT / "bench" / "results" / "multi_teacher.json"
# ../shared/data beside the repository (a worktree sits one level deeper: /work/wt/<name>).
STS = next((p for p in (ROOT.parent / "shared" / "data" / "sts_2012_2015.jsonl",
                        ROOT.parent.parent / "shared" / "data" / "sts_2012_2015.jsonl") if p.exists()),
           ROOT.parent / "shared" / "data" / "sts_2012_2015.jsonl")
VARIANTS = {"minilm alone": {"minilm": 1.0, "smollm2": 0.0},
            "smollm2 alone": {"minilm": 0.0, "smollm2": 1.0},
            "both (demo weights)": None}  # None: the config's weights
METRICS = ("cosine", "cosine_centred", "recall@1", "recall@10", "mrr")
# Paired differences: the student against ridge (and variants against each other) on these.
PAIRED = ("cosine", "cosine_centred", "recall@1")
BOTH = "both (demo weights)"


def input_override(spec: str) -> str:
    """"minilm,smollm2" -> the student.input_teacher override reading those question embeddings."""
    return f"student.input_teacher=[{', '.join(spec.split(','))}]"


def variant_list(weights: list[str], norms: list[str],
                 inputs: list[str] | None = None) -> dict[str, tuple[str, list[str]]]:
    """label -> (weights variant, extra overrides): every weights variant under every target_norm
    (label suffix ", target_norm=X" unless X is none); all of it once per student input in ``inputs`` (comma-joined teacher names; label suffix ", input=a+b"
    when more than one input is compared)."""
    out = {}
    inputs = inputs or [None]
    for spec in inputs:
        tag = f", input={spec.replace(',', '+')}" if len(inputs) > 1 else ""  # as input_of() spells it
        over = [input_override(spec)] if spec else []
        for norm in norms:
            for w in weights:
                label = (w if norm == "none" else f"{w}, target_norm={norm}") + tag
                # always set: the config's own target_norm need not be none
                out[label] = (w, [*over, f"loss.target_norm={norm}"])
    return out


def input_of(extra: list[str]) -> str | None:
    """The input spec ("minilm+smollm2") a variant's overrides set, or None (the config's)."""
    v = next((e.split("=", 1)[1] for e in extra if e.startswith("student.input_teacher=")), None)
    return None if v is None else "+".join(x.strip() for x in v.strip("[]").split(","))


def comparisons(variants: dict[str, tuple[str, list[str]]]) -> list[tuple[str, str, str]]:
    """(label a, label b, teacher space) pairs whose paired difference a - b is reported: a "both"
    variant against the single teacher of each space under the same target_norm (or none) and
    input, every other "both" variant against the plain one, and (several inputs compared) each
    variant against the same variant reading the first input."""
    out = []
    specs = list(dict.fromkeys(input_of(e) for _, e in variants.values()))
    for label, (w, extra) in variants.items():
        spec = input_of(extra)
        tag = f", input={spec}" if len(specs) > 1 else ""
        if tag and spec != specs[0]:
            ref = label.replace(tag, f", input={specs[0]}")
            if ref in variants:  # the spaces this weights variant trains
                out += [(label, ref, t) for t in ("minilm", "smollm2") if VARIANTS[w] is None or VARIANTS[w][t]]
        if w != BOTH:
            continue
        norm = next((e.split("=", 1)[1] for e in extra if e.startswith("loss.target_norm=")), "none")
        for space, single in (("minilm", "minilm alone"), ("smollm2", "smollm2 alone")):
            ref = (single if norm == "none" else f"{single}, target_norm={norm}") + tag
            if ref in variants:
                out.append((label, ref, space))
        both = BOTH + tag
        if label != both and both in variants:
            out += [(label, both, "minilm"), (label, both, "smollm2")]
    return out


def sts_inputs(cfg, n_pairs: int, names: list[str]) -> tuple[dict, dict, np.ndarray]:
    """The named teachers' question embeddings of a fixed sample of STS pairs:
    {teacher: (n, d)} for the first and the second sentences, and the gold scores (n,)."""
    from teachers.teacher import load_teacher

    rows = [json.loads(line) for line in STS.read_text().splitlines() if line.strip()]
    rows = random.Random(0).sample(rows, min(n_pairs, len(rows)))
    specs = {t.name: t for t in cfg.teachers}
    e1, e2 = {}, {}
    for n in names:
        teacher = load_teacher(specs[n], "cpu")
        e1[n] = teacher.encode([r["s1"] for r in rows], "query")
        e2[n] = teacher.encode([r["s2"] for r in rows], "query")
    return e1, e2, np.array([float(r["score"]) for r in rows])


@torch.no_grad()
def sts_spearman(student, e1: dict, e2: dict, gold: np.ndarray) -> float:
    """Spearman of the cosine of the lattice readouts z (the shared representation, before any
    head) of the two sentences, the student reading its own input teachers' embeddings."""
    student.eval()
    z1 = student.lattice(teacher_input(e1, student.input_teachers))
    z2 = student.lattice(teacher_input(e2, student.input_teachers))
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
                                            for m in PAIRED}
        for v, (w, _) in variants.items():
            for space in first:
                if VARIANTS[w] is not None and VARIANTS[w][space] == 0:
                    continue  # an untrained space
                rs = runs[v]
                rows[f"{v} - ridge @ {space}"] = {m: paired([r[split][space]["student"][m] for r in rs],
                                                            [r[split][space]["ridge"][m] for r in rs]).to_dict()
                                                  for m in PAIRED}
        out[split] = rows
    return out


def print_paired(table: dict) -> None:
    for split, rows in table.items():
        print(f"\npaired differences, {split} split (mean ± 95% interval over the same seeds):")
        for name, vals in rows.items():
            print(f"  {name:<78} " + "   ".join(f"{m} {vals[m]['mean']:+.4f} ± {vals[m]['half_width']:.4f}"
                                                   for m in PAIRED))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--sts-pairs", type=int, default=2000)
    ap.add_argument("--set", nargs="*", default=[], help="extra config overrides for every variant")
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), help="weights variants")
    ap.add_argument("--norms", nargs="*", default=None,
                    help="loss.target_norm values to run each variant with (default: the config's)")
    ap.add_argument("--inputs", nargs="*", default=None,
                    help="student inputs to run every variant with, each comma-joined teacher names "
                         "(e.g. minilm minilm,smollm2); default: the config's student.input_teacher")
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
    variants = variant_list(args.variants, args.norms or [cfg.loss.target_norm], args.inputs)
    needed = list(dict.fromkeys(n for spec in (args.inputs or [",".join(cfg.input_names())]) for n in spec.split(",")))
    sts = sts_inputs(cfg, args.sts_pairs, needed)
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
    # ridge_input reads what the student reads: one row per input compared
    for v, (_, extra) in variants.items():
        spec = input_of(extra)
        for t, rows in runs[v][0]["test"].items():
            if spec is not None and "ridge_input" in rows:
                table["baselines"][t].pop("ridge_input", None)
                table["baselines"][t][f"ridge_input {spec}"] = {m: rows["ridge_input"][m] for m in METRICS}
    table["baselines"]["sts_spearman"] = {f"{n} input embedding": spearman(
        F.cosine_similarity(sts[0][n], sts[1][n], dim=-1).numpy(), sts[2]) for n in sts[0]}
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
        print(f"  {'predictor':<60}" + "".join(f"{m:>18}" for m in METRICS))
        for b, vals in table["baselines"][t].items():
            print(f"  {b:<60}" + "".join(f"{vals[m]:>18.4f}" for m in METRICS))
        for v, row in table["students"].items():
            print(f"  {v:<60}" + "".join(f"{row[t][m]['mean']:>10.4f} ± {row[t][m]['half_width']:.4f}"
                                          for m in METRICS))
    print(f"\nSTS Spearman ({len(sts[2])} pairs of {STS.name}, the lattice readout z of the student's input):")
    for b, val in table["baselines"]["sts_spearman"].items():
        print(f"  {b:<60}{val:>10.4f}")
    for v, row in table["students"].items():
        s = row["sts_spearman"]
        print(f"  {v:<60}{s['mean']:>10.4f} ± {s['half_width']:.4f}")
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
