"""Evaluation cadence (issue #14 item 6): what evaluating more often costs a demo-sized run.

Runs ``distill train <config>`` (the demo, configs/default.yaml, TensorBoard on with every view)
with the old and the new ``train.eval_every``, interleaved (old, new, old, new, ...) so the
shared machine's load hits both alike, and reports each variant's median wall time, its number
of validation points and the slow-down new/old (wall seconds of the whole ``distill train``
process); then, in one process, the median cost of one training step and of one evaluation
with its views, and the training loop's slow-down they imply (robust to the machine's load).
Evaluations read the validation split. The teachers' targets come from the store (run the demo
once first, or the first run pays for embedding).

    OMP_NUM_THREADS=1 python bench/eval_cadence.py --old 50 --new 20 --repeats 3 [--parts wall|components]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def one_run(config: str, eval_every: int, out: Path, name: str, extra: list[str]) -> float:
    """Wall seconds of one ``distill train`` run (raises with its stderr tail if it fails)."""
    cmd = [sys.executable, "-m", "distill", "train", config, "--set", f"train.eval_every={eval_every}",
           f"run.output_dir={out}", f"run.name={name}", "logging.progress=false", *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode:
        raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}:\n{r.stderr[-2000:]}")
    return wall


def component_costs(config: str, out: Path, repeats: int, steps_per_rep: int = 10) -> dict[str, float]:
    """In one process, interleaved: median seconds of one training step and of one evaluation
    (the validation split's metrics + the views it writes: baselines, examples). The wall-time
    comparison above is at the mercy of the shared machine's load; this one is not (both are
    timed under the same load within seconds of each other)."""
    sys.path.insert(0, str(ROOT))
    from distill.config import load_config
    from distill.train import build_recipe

    cfg = load_config(ROOT / config, [f"run.output_dir={out}", "run.name=components", "logging.progress=false",
                                      "logging.image_every=0", "logging.histogram_every=0"])
    r = build_recipe(cfg)
    step_s, eval_s = [], []
    r.evaluate()  # warm-up (first-call allocations), not timed
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps_per_rep):
            r.train_step(r.sampler.next_batch(), False)
        step_s.append((time.perf_counter() - t0) / steps_per_rep)
        t0 = time.perf_counter()
        r.evaluate()
        eval_s.append(time.perf_counter() - t0)
    r.monitor.close()
    r.accelerator.end_training()
    return {"step_s": statistics.median(step_s), "eval_s": statistics.median(eval_s)}


def wall_rows(args) -> list[dict]:
    """The interleaved whole-run wall times, one row per eval_every (old, new)."""
    extra = [f"train.max_steps={args.max_steps}"]
    times: dict[int, list[float]] = {args.old: [], args.new: []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = args.runs_dir or tmp
        for rep in range(args.repeats):
            for every in (args.old, args.new):  # interleaved: both variants see the same load
                times[every].append(one_run(args.config, every, Path(tmp), f"e{every}_r{rep}", extra))
                print(f"repeat {rep}: eval_every={every}: {times[every][-1]:.1f} s", flush=True)
    return [{"eval_every": e, "validation_points": points(e, args.max_steps), "median_s": statistics.median(t),
             "runs_s": t} for e, t in times.items()]


def points(every: int, max_steps: int) -> int:
    """Evaluations in a run: every multiple of eval_every, and the last step."""
    return len(set(range(every, max_steps + 1, every)) | {max_steps})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/default.yaml")
    ap.add_argument("--old", type=int, default=50, help="the old train.eval_every")
    ap.add_argument("--new", type=int, default=20, help="the new train.eval_every")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-steps", type=int, default=200, help="train.max_steps (the demo's)")
    ap.add_argument("--parts", default="wall,components",
                    help="wall (whole runs), components (in process) or both; a part not run keeps its "
                         "numbers from an existing --out")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "eval_cadence.json"))
    ap.add_argument("--runs-dir", default=None, help="keep the runs here (default: a temporary directory)")
    args = ap.parse_args(argv)
    parts = set(args.parts.split(","))
    out = Path(args.out)
    res = json.loads(out.read_text()) if out.exists() else {}
    res.update({"config": args.config, "max_steps": args.max_steps, "split": "validation",
                "threads": os.environ.get("OMP_NUM_THREADS", "unset")})
    if "wall" in parts:
        res["rows"] = wall_rows(args)
        res["repeats"] = args.repeats
        res["slowdown_new_over_old"] = res["rows"][1]["median_s"] / res["rows"][0]["median_s"]
    n_old, n_new = points(args.old, args.max_steps), points(args.new, args.max_steps)
    if "components" in parts:
        with tempfile.TemporaryDirectory() as tmp:
            comp = component_costs(args.config, Path(tmp), max(args.repeats, 5))
        train_s = args.max_steps * comp["step_s"]
        comp["estimated_slowdown"] = (train_s + n_new * comp["eval_s"]) / (train_s + n_old * comp["eval_s"])
        comp.update(old_eval_every=args.old, new_eval_every=args.new)
        res["in_process"] = comp
    print(f"\n{args.config}, train.max_steps={args.max_steps}, validation split, OMP_NUM_THREADS={res['threads']}")
    if "rows" in res:
        print(f"whole runs, {res['repeats']} interleaved repeats:")
        print(f"{'eval_every':>10} {'points':>7} {'median s':>9}  runs")
        for r in res["rows"]:
            print(f"{r['eval_every']:>10} {r['validation_points']:>7} {r['median_s']:>9.1f}  "
                  + ", ".join(f"{t:.1f}" for t in r["runs_s"]))
        print(f"slow-down new/old (median wall): {res['slowdown_new_over_old']:.3f}")
    if "in_process" in res:
        c = res["in_process"]
        print(f"in process: one training step {c['step_s'] * 1e3:.1f} ms, one evaluation with its views "
              f"{c['eval_s'] * 1e3:.1f} ms -> estimated slow-down of the training loop "
              f"({args.max_steps} steps, {n_old} -> {n_new} evaluations): {c['estimated_slowdown']:.3f}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
