"""Lattice3D throughput: forward+backward cell-updates/s, achieved GFLOP/s, and that as a fraction
of this machine's fp32 matmul rate measured in the same run; plus the per-cell reference loop
(tests/lattice/lattice_reference.py) at the small size as the baseline.

    python bench/lattice.py                 # prints a table, writes bench/results/lattice.json
    python bench/lattice.py --quick         # fewer repetitions
    python bench/lattice.py --compile       # also time torch.compile of one step
    python bench/lattice.py --threads 1     # one thread (robust when other jobs share the CPU)

FLOPs are Lattice3D.flops_per_step() (linear layers of the cell rule, 2 per multiply-add) per
cell-update, x3 for forward+backward (backward = two GEMMs per forward GEMM), as in nanoGPT's
estimate_mfu. The input projection and the readout (once per forward, not per step) are timed
but not counted. Every time is the best of several repetitions: the machine is shared, and the
best run is the closest to what it can do; the median is recorded too. Within a case, the matmul,
the variants and the reference run in turn, rep after rep (see round_robin). fraction_of_matmul
divides by the highest matmul rate seen anywhere in the run (conservative);
fraction_of_matmul_same_rounds by the matmul timed in that case's own rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fileio import write_text_atomic  # noqa: E402
from lattice import Lattice3D, LatticeConfig  # noqa: E402
from tests.lattice.lattice_reference import reference_run  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "lattice.json"


def timed(fn, reps: int, warmup: int = 2) -> tuple[float, float]:
    """(best, median) seconds of fn() over reps runs after warmup runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def round_robin(fns: dict, reps: int, warmup: int = 2) -> dict:
    """{name: (best, median)} seconds, running the functions in turn, rep after rep.

    The machine is shared with other jobs whose load comes and goes; interleaving gives every
    variant the same chances at a quiet moment, so their ratios stay fair.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: (min(v), statistics.median(v)) for k, v in times.items()}


def matmul_fn(n: int = 2048):
    a, b = torch.randn(n, n), torch.randn(n, n)
    return (lambda: a @ b), 2 * n**3


def matmul_gflops(reps: int) -> dict:
    """Best fp32 matmul rate over a few square sizes (torch.matmul -> MKL sgemm here)."""
    out = {}
    for n in (1024, 2048, 3072):
        a, b = torch.randn(n, n), torch.randn(n, n)
        best, _ = timed(lambda a=a, b=b: a @ b, reps)
        out[str(n)] = 2 * n**3 / best / 1e9
    return {"by_size": out, "best": max(out.values())}


# name, config, batch, steps
CASES = [
    ("small 8x8x12 C8 moore", dict(depth=8, height=8, width=12, channels=8, hidden=32, neighbourhood="moore"), 32, 8),
    ("small 8x8x12 C8 von_neumann",
     dict(depth=8, height=8, width=12, channels=8, hidden=32, neighbourhood="von_neumann"), 32, 8),
    ("default 8x8x8 C16 von_neumann",
     dict(depth=8, height=8, width=8, channels=16, hidden=64, neighbourhood="von_neumann"), 32, 8),
    ("large 16x16x16 C32 moore",
     dict(depth=16, height=16, width=16, channels=32, hidden=128, neighbourhood="moore"), 8, 8),
    ("large 16x16x16 C32 von_neumann",
     dict(depth=16, height=16, width=16, channels=32, hidden=128, neighbourhood="von_neumann"), 8, 8),
]
IO_DIM = 64


def fast_case(cfg_kw: dict, batch: int, steps: int, impl: str, compile_: bool = False):
    """(fwd_bwd closure, model, cell-updates per call) for the fast lattice."""
    torch.manual_seed(0)
    cfg = LatticeConfig(**cfg_kw, input_dim=IO_DIM, output_dim=IO_DIM, impl=impl, compile=compile_)
    m = Lattice3D(cfg)
    x = torch.randn(batch, IO_DIM)

    def fwd_bwd():
        m.zero_grad(set_to_none=True)
        m(x, steps=steps).square().mean().backward()

    return fwd_bwd, m, batch * cfg.num_cells() * steps


def reference_case(cfg_kw: dict, batch: int, steps: int):
    """(fwd_bwd closure, model, cell-updates per call) for the per-cell reference loop."""
    torch.manual_seed(0)
    m = Lattice3D(LatticeConfig(**cfg_kw, input_dim=IO_DIM, output_dim=IO_DIM))
    x = torch.randn(batch, IO_DIM)

    def fwd_bwd():
        m.zero_grad(set_to_none=True)
        out, _ = reference_run(m, x, steps)
        out.square().mean().backward()

    return fwd_bwd, m, batch * m.config.num_cells() * steps


def result(m: Lattice3D, updates: int, best: float, median: float, **extra) -> dict:
    return {
        **extra,
        "flops_per_cell_step": m.flops_per_step(),
        "num_parameters": m.num_parameters(),
        "best_s": best,
        "median_s": median,
        "cell_updates_per_s": updates / best,
        "gflops": 3 * m.flops_per_step() * updates / best / 1e9,
        "gflops_median": 3 * m.flops_per_step() * updates / median / 1e9,
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile of one step")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    reps = 3 if args.quick else 8

    load_before = os.getloadavg()
    mm = matmul_gflops(reps)
    print(f"fp32 matmul: {mm['best']:.1f} GFLOP/s (best of sizes {', '.join(mm['by_size'])}); "
          f"threads={torch.get_num_threads()}, load avg {load_before[0]:.2f}")
    rows = []
    mm_samples = [mm["best"]]
    header = f"{'case':32s} {'impl':>10s} {'cell-upd/s':>12s} {'GFLOP/s':>8s} {'of matmul':>9s}"
    print(header)
    print("-" * len(header))

    def show(name, r):
        frac = r["gflops"] / max(mm_samples)  # the highest matmul rate seen so far
        r["fraction_of_matmul_same_rounds"] = r["gflops"] / r["matmul_gflops_same_rounds"]
        label = r["impl"] if "reference" not in r["impl"] else "reference"
        label += "+compile" if r.get("compile") else ""
        print(f"{name:32s} {label:>10s} {r['cell_updates_per_s']:12.3e} {r['gflops']:8.1f} {frac:9.1%}", flush=True)

    mm_call, mm_flops = matmul_fn()
    refs = []
    for i, (name, kw, batch, steps) in enumerate(CASES):
        fns, meta = {"matmul": mm_call}, {}
        variants = [("conv", False), ("slice", False)] + ([("auto", True)] if args.compile else [])
        for impl, comp in variants:
            fn, m, updates = fast_case(kw, batch, steps, impl, comp)
            t0 = time.perf_counter()
            fn()  # first call: oneDNN kernel generation, or the compile
            key = impl + ("+compile" if comp else "")
            fns[key], meta[key] = fn, (m, updates, time.perf_counter() - t0, comp)
        if i < 2:
            # The reference loop at the small size: same cells and channels, batch 1 and 2 steps
            # (its rate is per cell, independent of batch and steps), in the same rounds.
            fn, m, updates = reference_case(kw, batch=1, steps=2)
            fns["reference"], meta["reference"] = fn, (m, updates, 0.0, False)
        timings = round_robin(fns, reps=reps, warmup=1)
        mm_local = mm_flops / timings["matmul"][0] / 1e9
        mm_samples.append(mm_local)
        for key, (m, updates, first, comp) in meta.items():
            best, median = timings[key]
            if key == "reference":
                r = result(m, updates, best, median, impl="reference (Python loop over cells and neighbours)",
                           batch=1, steps=2, case=name, config=kw, matmul_gflops_same_rounds=mm_local)
                refs.append(r)
            else:
                r = result(m, updates, best, median, impl=m.impl, compile=comp, batch=batch, steps=steps,
                           first_call_s=first, case=name, config=kw, matmul_gflops_same_rounds=mm_local)
                rows.append(r)
            show(name, r)
        if "reference" in fns:
            fast = max(x["cell_updates_per_s"] for x in rows if x["case"] == name)
            refs[-1]["fast_over_reference"] = fast / refs[-1]["cell_updates_per_s"]
            print(f"{'':32s} {'speed-up':>10s} {refs[-1]['fast_over_reference']:12.0f}x")

    mm_after = matmul_gflops(reps)  # the machine is shared: a second look brackets the run
    load_after = os.getloadavg()
    mm_samples.append(mm_after["best"])
    peak = max(mm_samples)
    for r in rows + refs:
        r["fraction_of_matmul"] = r["gflops"] / peak
    large = [r for r in rows if r["case"].startswith("large") and "moore" in r["case"]]
    summary = {
        "matmul_gflops_peak": peak,
        "matmul_gflops_start": mm["best"],
        "matmul_gflops_end": mm_after["best"],
        "matmul_gflops_samples": mm_samples,
        "large_moore_best_fraction_of_matmul": max(r["fraction_of_matmul"] for r in large),
        "large_von_neumann_best_fraction_of_matmul": max(
            r["fraction_of_matmul"] for r in rows if r["case"] == "large 16x16x16 C32 von_neumann"
        ),
        "small_speedup_over_reference": {r["case"]: r["fast_over_reference"] for r in refs},
    }
    print(f"matmul at end: {mm_after['best']:.1f} GFLOP/s; highest seen in this run {peak:.1f} (the JSON's "
          f"fraction_of_matmul uses it); load avg {load_after[0]:.2f}")
    doc = {
        "what": "Lattice3D forward+backward throughput vs fp32 matmul and the per-cell reference loop",
        "command": "python bench/lattice.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": {
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "load_avg_before": load_before,
            "load_avg_after": load_after,
        },
        "matmul": {"start": mm, "end": mm_after},
        "summary": summary,
        "fast": rows,
        "reference": refs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}")
    return doc


if __name__ == "__main__":
    main()
