"""How time and memory grow with the data: 3k, 30k, 300k and 1M question/answer pairs.

For each size N, every stage runs in its own subprocess (so each peak RSS, from
``resource.getrusage``, is that stage's alone) on a JSONL file of N pairs made by repeating the
shipped Dolly pairs (cut to ~256 characters) with a numbered suffix on each question (so all N
questions are distinct):

    load     distill.data.load_pairs on the file
    store    load + teachers' build_targets into an empty store (a tiny random BERT teacher:
             the framework's own overhead, not a real teacher's compute)
    step     load + targets from the store (cached), then training steps of the default student
             (configs/default.yaml lattice, loss and batch) on batches from the curriculum sampler
    eval     load + targets, then one ranking of the held-out split (retrieval_metrics of the
             identity predictor; `distill eval` does three per teacher space: student, identity,
             ridge) and the ridge fit on the training split
    predict  load + targets, then one question's top-10 over the training answers (the bank)

and once, the real all-MiniLM-L6-v2 teacher's time per 1k texts (Dolly questions and answers), to
estimate a real run's store-building time: teacher time x (2 N / 1000) + the tiny-teacher row.

    python bench/scale.py                          # 3k, 30k, 300k, 1M (about 25 min on 1 core)
    python bench/scale.py --sizes 3000,30000       # a quick look
Writes bench/results/scale.json. Run it with nice on a shared machine: it uses one thread.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "results" / "scale.json"
STAGES = ("load", "store", "step", "eval", "predict")
HOLDOUT = 0.2  # the default config's holdout_fraction
TINY_SPEC = dict(name="tiny", pooling="mean", max_length=64, batch_size=256)


def rss_mb() -> float:
    """Current resident set size (MiB)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def clip(text: str, chars: int = 256) -> str:
    """Cut a text to about the tiny teacher's max_length (64 tokens ~ 256 characters) at a space.

    The tokenizer tokenizes a whole text before truncating it, so Dolly's long answers would
    spend most of the store's time on tokens the teacher never sees.
    """
    return text if len(text) <= chars else text[:chars].rsplit(" ", 1)[0]


def make_pairs_file(path: Path, n: int) -> dict:
    """Write n pairs (Dolly repeated, questions made distinct by a suffix); return its sizes."""
    src = ROOT / "distill" / "builtin_data" / "dolly_open_qa.jsonl"
    base = [json.loads(line) for line in src.read_text(encoding="utf-8").splitlines() if line.strip()]
    text_bytes = 0
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for i in range(n):
            r = base[i % len(base)]
            q, a = f"{clip(r['question'])} (#{i})", clip(r["answer"])
            text_bytes += len(q.encode()) + len(a.encode())
            f.write(json.dumps({"question": q, "answer": a, "category": r["category"]}) + "\n")
    tmp.rename(path)
    return {"file_bytes": path.stat().st_size, "text_bytes": text_bytes}


def data_cfg(path: Path):
    from distill.config import DataSection

    return DataSection(path=str(path), holdout_fraction=HOLDOUT)


def tiny_teacher(work: Path):
    from teachers.spec import TeacherSpec
    from tests.teachers.tiny import build_tiny

    d = work / "tiny-bert"
    if not (d / "config.json").exists():
        build_tiny("bert", d)
    return TeacherSpec(model=str(d), **TINY_SPEC)


def load_and_targets(path: Path, work: Path, n: int):
    from distill.data import load_pairs, split_indices
    from distill.targets import compute_targets

    ds = load_pairs(data_cfg(path)).dataset
    qs, ans = ds["question"], ds["answer"]
    tr, he = split_indices(qs, HOLDOUT, 0)
    spec = tiny_teacher(work)
    t = compute_targets([spec], qs, ans, str(work / f"store_{n}"), progress=False)
    return ds, tr, he, t, spec


def stage(name: str, n: int, work: Path) -> dict:
    """Run one stage in this process; returns its timings (seconds) and memory (MiB)."""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    path = work / f"pairs_{n}.jsonl"
    import datasets  # noqa: F401  (the imports' own memory is the baseline, not the stage's)

    import distill.data  # noqa: F401
    import distill.eval.qa  # noqa: F401
    import distill.targets  # noqa: F401
    import teachers  # noqa: F401

    base = rss_mb()
    out: dict = {"stage": name, "n": n, "baseline_rss_mb": base}
    if name == "load":
        from distill.data import load_pairs

        t0 = time.perf_counter()
        ds = load_pairs(data_cfg(path)).dataset
        out["seconds"] = time.perf_counter() - t0
        out["rss_after_mb"] = rss_mb()
        assert len(ds) == n
    elif name == "store":
        from distill.data import load_pairs
        from distill.targets import compute_targets

        shutil.rmtree(work / f"store_{n}", ignore_errors=True)
        spec = tiny_teacher(work)
        ds = load_pairs(data_cfg(path)).dataset
        qs, ans = ds["question"], ds["answer"]
        t0 = time.perf_counter()
        t = compute_targets([spec], qs, ans, str(work / f"store_{n}"), progress=False)
        out["seconds"] = time.perf_counter() - t0
        out["texts"] = 2 * n
        assert t.q["tiny"].shape[0] == n
    elif name == "step":
        from distill.config import load_config
        from distill.curriculum import CurriculumConfig, CurriculumSampler
        from distill.losses import MultiTeacherLoss, compute_target_stats
        from distill.students.teacher import Student

        cfg = load_config(ROOT / "configs" / "default.yaml")
        _, tr, _, t, spec = load_and_targets(path, work, n)
        q, a = t.q[spec.name][torch.as_tensor(tr)], t.a[spec.name][torch.as_tensor(tr)]
        torch.manual_seed(0)
        t0 = time.perf_counter()
        st = Student({spec.name: q.shape[1]}, spec.name, cfg.student.lattice, residual=True, skip=cfg.student.skip)
        loss = MultiTeacherLoss(cfg.loss, [spec.name], {spec.name: 1.0}, stats={spec.name: compute_target_stats(a)})
        params = [p for p in list(st.parameters()) + list(loss.parameters()) if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg.optim.lr)
        steps = 30
        sampler = CurriculumSampler(np.zeros(len(tr)), CurriculumConfig(difficulty="none", pacing="none"),
                                    steps, cfg.train.batch_size, seed=0)
        out["setup_seconds"] = time.perf_counter() - t0
        times = []
        for _ in range(steps):
            s0 = time.perf_counter()
            idx = torch.as_tensor(sampler.next_batch())
            res = loss(st(q[idx]), {spec.name: a[idx]})
            opt.zero_grad()
            res.total.backward()
            opt.step()
            times.append(time.perf_counter() - s0)
        out["seconds"] = float(np.median(times[5:]))  # the first steps warm up allocators
        out["batch"] = cfg.train.batch_size
    elif name == "eval":
        from distill.eval.qa import fit_ridge, retrieval_metrics

        _, tr, he, t, spec = load_and_targets(path, work, n)
        k = spec.name
        qh, ah = t.q[k][torch.as_tensor(he)], t.a[k][torch.as_tensor(he)]
        t0 = time.perf_counter()
        m = retrieval_metrics(qh, ah)  # one ranking: `distill eval` does 3 per space (student, identity, ridge)
        out["rank_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        fit_ridge(t.q[k][torch.as_tensor(tr)], t.a[k][torch.as_tensor(tr)])
        out["ridge_seconds"] = time.perf_counter() - t0
        out["seconds"] = out["rank_seconds"] + out["ridge_seconds"]
        out["heldout"] = len(he)
        out["recall@1_identity"] = m["recall@1"]
    elif name == "predict":
        from distill.eval.qa import topk_cosine

        ds, tr, _, t, spec = load_and_targets(path, work, n)
        query = t.q[spec.name][:1]
        t0 = time.perf_counter()
        for _ in range(5):
            topk_cosine(query, t.a[spec.name], 10, rows=tr)
        out["seconds"] = (time.perf_counter() - t0) / 5
        out["bank"] = len(tr)
    else:
        raise ValueError(f"unknown stage {name!r}")
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def minilm_per_1k() -> dict:
    """The real teacher's time to embed 1000 Dolly texts (500 questions, 500 answers), 1 thread."""
    import torch

    torch.set_num_threads(1)
    from distill.config import load_config
    from distill.data import load_pairs
    from teachers import load_teacher

    cfg = load_config(ROOT / "configs" / "default.yaml")
    spec = cfg.input_teacher()
    ds = load_pairs(cfg.data).dataset
    teacher = load_teacher(spec, "cpu")
    teacher.encode(ds["question"][:64], role="query")  # warm-up
    t0 = time.perf_counter()
    teacher.encode(ds["question"][:500], role="query")
    teacher.encode(ds["answer"][:500], role="answer")
    return {"seconds_per_1k_texts": time.perf_counter() - t0, "teacher": spec.model,
            "max_length": spec.max_length, "threads": 1}


def run_child(args: list[str], timeout: float) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def per_item(r: dict) -> str:
    """The stage's cost per unit of the thing it scales with, in microseconds."""
    n = r["n"]
    if r["stage"] == "load":
        return f"{r['seconds'] / n * 1e6:.1f} us/pair"
    if r["stage"] == "store":
        return f"{r['seconds'] / r['texts'] * 1e6:.1f} us/text"
    if r["stage"] == "step":
        return f"{r['seconds'] / r['batch'] * 1e6:.0f} us/sample"
    if r["stage"] == "eval":  # a ranking scores h predictions against h answers: h^2 scores
        return f"{r['rank_seconds'] / r['heldout'] ** 2 * 1e9:.2f} ns/score + ridge {r['ridge_seconds'] / n * 1e6:.1f} us/pair"
    return f"{r['seconds'] / r['bank'] * 1e9:.1f} ns/bank-row"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="3000,30000,300000,1000000")
    ap.add_argument("--stages", default=",".join(STAGES))
    ap.add_argument("--work", default=None, help="scratch directory (default: a temporary one, removed)")
    ap.add_argument("--no-minilm", action="store_true", help="skip the real-teacher timing")
    ap.add_argument("--stage", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.stage:  # child process: one stage, one JSON line
        import logging

        logging.disable(logging.WARNING)
        r = minilm_per_1k() if args.stage == "minilm" else stage(args.stage, args.n, Path(args.work))
        print(json.dumps(r))
        return 0
    import tempfile

    sizes = [int(s) for s in args.sizes.split(",")]
    stages = args.stages.split(",")
    work = Path(args.work or tempfile.mkdtemp(prefix="distill-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    results, files = [], {}
    try:
        for n in sizes:
            path = work / f"pairs_{n}.jsonl"
            files[n] = make_pairs_file(path, n)
            for s in stages:
                r = run_child(["--stage", s, "--n", str(n), "--work", str(work)], timeout=3600)
                r.update(files[n])
                results.append(r)
                print(f"  N={n:>8} {s:<8} {r['seconds']:9.3f} s  peak {r['peak_rss_mb']:7.0f} MiB  {per_item(r)}",
                      flush=True)
            path.unlink()
            shutil.rmtree(work / f"store_{n}", ignore_errors=True)
        minilm = None if args.no_minilm else run_child(["--stage", "minilm", "--work", str(work)], timeout=1800)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(f"{'pairs':>9} {'file MiB':>9} {'stage':<8} {'seconds':>9} {'peak RSS MiB':>13} {'over base':>10}  per item")
    for r in results:
        print(f"{r['n']:>9} {r['file_bytes'] / 2**20:>9.1f} {r['stage']:<8} {r['seconds']:>9.3f} "
              f"{r['peak_rss_mb']:>13.0f} {r['peak_rss_mb'] - r['baseline_rss_mb']:>10.0f}  {per_item(r)}")
    if minilm:
        print(f"\nreal teacher {minilm['teacher']} (max_length {minilm['max_length']}, 1 CPU thread): "
              f"{minilm['seconds_per_1k_texts']:.1f} s per 1k texts; a store of N pairs embeds 2N texts")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"command": "python bench/scale.py --sizes " + args.sizes,
                               "holdout_fraction": HOLDOUT, "tiny_teacher": TINY_SPEC, "threads": 1,
                               "results": results, "minilm": minilm}, indent=2))
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
