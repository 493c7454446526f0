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
best run is the closest to what it can do; the median is recorded too.
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


def bench_fast(cfg_kw: dict, batch: int, steps: int, impl: str, reps: int, compile_: bool = False) -> dict:
    torch.manual_seed(0)
    cfg = LatticeConfig(**cfg_kw, input_dim=IO_DIM, output_dim=IO_DIM, impl=impl, compile=compile_)
    m = Lattice3D(cfg)
    x = torch.randn(batch, IO_DIM)

    def fwd_bwd():
        m.zero_grad(set_to_none=True)
        m(x, steps=steps).square().mean().backward()

    t0 = time.perf_counter()
    fwd_bwd()  # first call: oneDNN kernel generation, or the compile
    first = time.perf_counter() - t0
    best, median = timed(fwd_bwd, reps)
    updates = batch * cfg.num_cells() * steps
    return {
        "impl": m.impl,
        "compile": compile_,
        "batch": batch,
        "steps": steps,
        "flops_per_cell_step": m.flops_per_step(),
        "num_parameters": m.num_parameters(),
        "first_call_s": first,
        "best_s": best,
        "median_s": median,
        "cell_updates_per_s": updates / best,
        "gflops": 3 * m.flops_per_step() * updates / best / 1e9,
        "gflops_median": 3 * m.flops_per_step() * updates / median / 1e9,
    }


def bench_reference(cfg_kw: dict, batch: int, steps: int, reps: int) -> dict:
    torch.manual_seed(0)
    m = Lattice3D(LatticeConfig(**cfg_kw, input_dim=IO_DIM, output_dim=IO_DIM))
    x = torch.randn(batch, IO_DIM)

    def fwd_bwd():
        m.zero_grad(set_to_none=True)
        out, _ = reference_run(m, x, steps)
        out.square().mean().backward()

    best, median = timed(fwd_bwd, reps, warmup=1)
    updates = batch * m.config.num_cells() * steps
    return {
        "impl": "reference (Python loop over cells and neighbours)",
        "batch": batch,
        "steps": steps,
        "flops_per_cell_step": m.flops_per_step(),
        "best_s": best,
        "median_s": median,
        "cell_updates_per_s": updates / best,
        "gflops": 3 * m.flops_per_step() * updates / best / 1e9,
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
    reps = 3 if args.quick else 6

    load_before = os.getloadavg()
    mm = matmul_gflops(reps)
    print(f"fp32 matmul: {mm['best']:.1f} GFLOP/s (best of sizes {', '.join(mm['by_size'])}); "
          f"threads={torch.get_num_threads()}, load avg {load_before[0]:.2f}")
    rows = []
    header = f"{'case':32s} {'impl':>10s} {'cell-upd/s':>12s} {'GFLOP/s':>8s} {'of matmul':>9s}"
    print(header)
    print("-" * len(header))

    def show(name, r):
        frac = r["gflops"] / mm["best"]
        r["fraction_of_matmul"] = frac
        label = r["impl"] if "reference" not in r["impl"] else "reference"
        label += "+compile" if r.get("compile") else ""
        print(f"{name:32s} {label:>10s} {r['cell_updates_per_s']:12.3e} {r['gflops']:8.1f} {frac:9.1%}", flush=True)

    for name, kw, batch, steps in CASES:
        for impl in ("conv", "slice"):
            r = bench_fast(kw, batch, steps, impl, reps)
            r.update(case=name, config=kw)
            show(name, r)
            rows.append(r)
        if args.compile:
            r = bench_fast(kw, batch, steps, "auto", reps, compile_=True)
            r.update(case=name, config=kw)
            show(name, r)
            rows.append(r)

    # The reference loop at the small size: same cells and channels, batch 1 and 2 steps (it runs
    # ~1e4 cell-updates/s; the rate does not depend on batch or steps, it is per cell).
    refs = []
    for name, kw, _, _ in CASES[:2]:
        r = bench_reference(kw, batch=1, steps=2, reps=1 if args.quick else 2)
        r.update(case=name, config=kw)
        show(name, r)
        refs.append(r)
        fast = max(x["cell_updates_per_s"] for x in rows if x["case"] == name)
        r["fast_over_reference"] = fast / r["cell_updates_per_s"]
        print(f"{'':32s} {'speed-up':>10s} {r['fast_over_reference']:12.0f}x")

    mm_after = matmul_gflops(reps)  # the machine is shared: a second look brackets the run
    load_after = os.getloadavg()
    peak = max(mm["best"], mm_after["best"])
    for r in rows + refs:
        r["fraction_of_matmul"] = r["gflops"] / peak
    large = [r for r in rows if r["case"].startswith("large") and "moore" in r["case"]]
    summary = {
        "matmul_gflops_peak": peak,
        "matmul_gflops_start": mm["best"],
        "matmul_gflops_end": mm_after["best"],
        "large_moore_best_fraction_of_matmul": max(r["fraction_of_matmul"] for r in large),
        "large_von_neumann_best_fraction_of_matmul": max(
            r["fraction_of_matmul"] for r in rows if r["case"] == "large 16x16x16 C32 von_neumann"
        ),
        "small_speedup_over_reference": {r["case"]: r["fast_over_reference"] for r in refs},
    }
    print(f"matmul at end: {mm_after['best']:.1f} GFLOP/s; fractions above use the higher of the two "
          f"({peak:.1f}); load avg {load_after[0]:.2f}")
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
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")
    return doc


if __name__ == "__main__":
    main()
