"""Weight blending of the qa stage (issue #20): does a student between the Dolly-text stage's and the
qa stage's weights keep the one's STS and the other's Dolly R@1?

The recipe's last stage (Q->A) trades STS for Dolly R@1 (docs/benchmarks/standalone.md). Fine-tuned
weights interpolated with their starting point often keep most of both (WiSE-FT, Wortsman et al.,
2022). This script writes such a student: a copy of the FINAL stage's run dir whose exported weights
are ``alpha * FINAL + (1 - alpha) * START`` tensor by tensor (START: the stage it started from, its
``student.init_from``), so bench/standalone_scale.py measures it like any run:

    python bench/standalone_blend.py --start RUNS/r300k-base-s0-dolly --final RUNS/r300k-base-s0 \\
        --alpha 0.5 --out .cache/blend/r300k-base-s0-a50

A static student's output is linear in its head but not in (table, head) together, so alpha 0.5 is
not the mean of the two students' outputs. The two exports must be the same network (the same
tensors and shapes); the new export is written aside and renamed into place, with its manifest.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from fileio import write_dir_atomic  # noqa: E402

WEIGHTS = "model.safetensors"


def blend(start: dict, final: dict, alpha: float) -> dict:
    """``alpha * final + (1 - alpha) * start`` for every floating tensor (others from ``final``);
    a ValueError when the two are not the same network."""
    if start.keys() != final.keys():
        raise ValueError(f"the exports hold different tensors: {sorted(start.keys() ^ final.keys())}")
    out = {}
    for k, f in final.items():
        if start[k].shape != f.shape:
            raise ValueError(f"{k}: shape {tuple(start[k].shape)} in --start, {tuple(f.shape)} in --final")
        out[k] = (alpha * f + (1 - alpha) * start[k]).to(f.dtype) if f.is_floating_point() else f
    return out


def write_blend(start_run: Path, final_run: Path, alpha: float, out: Path) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from distill.export.manifest import MANIFEST_NAME, write_manifest

    src = final_run / "student" / WEIGHTS
    with safe_open(str(src), "pt") as h:
        meta = h.metadata()
    new = blend(load_file(str(start_run / "student" / WEIGHTS)), load_file(str(src)), alpha)

    def fill(tmp: Path) -> None:
        tmp.mkdir()
        for name in ("config.yaml", "eval.json"):  # what bench/standalone_scale.py reads of a run dir
            if (final_run / name).is_file():
                shutil.copy2(final_run / name, tmp / name)
        shutil.copytree(final_run / "student", tmp / "student")
        save_file(new, str(tmp / "student" / WEIGHTS), metadata=meta)
        (tmp / "student" / MANIFEST_NAME).unlink(missing_ok=True)
        write_manifest(tmp / "student")

    write_dir_atomic(out, fill)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--start", type=Path, required=True, help="the run (stage) dir the final stage started from")
    ap.add_argument("--final", type=Path, required=True, help="the final stage's run dir")
    ap.add_argument("--alpha", type=float, required=True, help="weight of --final (0 = --start, 1 = --final)")
    ap.add_argument("--out", type=Path, required=True, help="the run dir to write (replaced if it exists)")
    args = ap.parse_args(argv)
    if not 0.0 <= args.alpha <= 1.0:
        ap.error(f"--alpha must be in [0, 1], got {args.alpha}")
    for flag, run in (("--start", args.start), ("--final", args.final)):
        if not (run / "student" / WEIGHTS).is_file():
            ap.error(f"{flag}: {run / 'student' / WEIGHTS} not found (a finished run dir holds student/{WEIGHTS})")
    try:
        write_blend(args.start, args.final, args.alpha, args.out)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    print(f"wrote {args.out}: {args.alpha} x {args.final} + {1 - args.alpha:g} x {args.start}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
