"""Which first-layer path is fastest where: ``impl`` conv / slice / index (and what ``auto`` picks),
per forward at inference and per forward+backward in training, from one text to a training batch.

    python bench/lattice_impls.py [--threads 1] [--rounds 5]   # table + bench/results/lattice_impls.json

All three paths give the same numbers (tests/lattice/test_lattice_reference.py); only time differs.
Variants run in interleaved rounds (bench/lattice.py's round_robin; the machine is shared) and
the median is reported. The cases:
the standalone student's 3x1x32 token lattice (configs/standalone.yaml) encoding 1 and 64 texts and
training on 128, the demo's 4x8x8 lattice at batch 1 and training on 128, and a Moore/periodic
lattice at batch 64 (the conv path's best case). This is what ``lattice.model.AUTO_CONV_MIN_CELLS``
rests on.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.lattice import round_robin  # noqa: E402
from lattice import Lattice3D, LatticeConfig  # noqa: E402

OUT = ROOT / "bench" / "results" / "lattice_impls.json"
TOKEN = dict(depth=3, height=1, width=32, channels=16, hidden=32, steps=4, readout="mean")
DEMO = dict(depth=4, height=8, width=8, channels=16, hidden=64, steps=6)
MOORE = dict(DEMO, neighbourhood="moore", boundary="periodic")
# name, lattice, batch, training (forward+backward) or inference (forward under inference_mode)
CASES = [("token lattice, 1 text", TOKEN, 1, False), ("token lattice, 64 texts", TOKEN, 64, False),
         ("token lattice, training batch 128", TOKEN, 128, True), ("demo lattice, 1 input", DEMO, 1, False),
         ("demo lattice, training batch 128", DEMO, 128, True), ("moore/periodic, 64 inputs", MOORE, 64, False)]
IMPLS = ("conv", "slice", "index")


def case_fn(kw: dict, impl: str, batch: int, training: bool):
    torch.manual_seed(0)
    m = Lattice3D(LatticeConfig(input_dim=256, output_dim=64, impl=impl, zero_init=False, **kw))
    x = torch.randn(batch, 256)
    if training:
        m.train()

        def fn():
            m.zero_grad(set_to_none=True)
            m(x).sum().backward()
    else:
        m.eval()

        def fn():
            with torch.inference_mode():
                m(x)
    return m, x, fn


def repeated(fn, min_time: float = 0.3):
    """(fn called n times in a row, n): n from one timed call so that a round takes ~min_time
    (one forward at batch 1 is well under a millisecond, too short to time alone)."""
    fn()
    t0 = time.perf_counter()
    fn()
    n = max(1, math.ceil(min_time / max(time.perf_counter() - t0, 1e-9)))

    def run():
        for _ in range(n):
            fn()
    return run, n


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    print(f"{'case':36s} {'cells':>7s} " + " ".join(f"{i + ' ms':>10s}" for i in IMPLS) + "   auto picks")
    for name, kw, batch, training in CASES:
        reps = {impl: repeated(case_fn(kw, impl, batch, training)[2]) for impl in IMPLS}
        # bench/lattice.py's interleaving: the paths take turns, round after round.
        times = round_robin({impl: run for impl, (run, _) in reps.items()}, args.rounds, warmup=1)
        med = {impl: times[impl][1] / reps[impl][1] * 1e3 for impl in IMPLS}
        auto, x, _ = case_fn(kw, "auto", batch, training)
        state, _ = auto.initial_state(x)
        pick = auto._impl_for(state)
        cells = batch * kw["depth"] * kw["height"] * kw["width"]
        rows.append({"case": name, "batch": batch, "cells": cells, "training": training, "lattice": kw,
                     "ms_median": med, "auto": pick, "fastest": min(med, key=med.get)})
        print(f"{name:36s} {cells:7d} " + " ".join(f"{med[i]:10.3f}" for i in IMPLS) + f"   {pick}"
              f"{'' if pick == rows[-1]['fastest'] else ' (fastest: ' + rows[-1]['fastest'] + ')'}")
    res = {"threads": args.threads, "rounds": args.rounds, "load_1min": os.getloadavg()[0], "rows": rows,
           "command": "python bench/lattice_impls.py " + " ".join(argv or sys.argv[1:])}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {args.out}")
    return res


if __name__ == "__main__":
    main()
