"""Does the lattice matter? The default student against the same student without its lattice path.

Both variants train through the real recipe (``distill.train``) on the default config restricted
to its input teacher (all-MiniLM-L6-v2, targets from the store) with uniform sampling: the
default loss (cosine + 0.25 InfoNCE), lattice, optimiser, batch and step count. "no lattice"
zeroes and freezes the lattice heads, so only the residual and the linear skip train. Dolly
test-split metrics (eval.json's ``test``: evaluated once, at the end; the run's decisions read
validation) are printed beside the identity and ridge baselines computed on the same split.

    python bench/student_ablation.py        # from the repository root (fills the store if needed)
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from distill.config import load_config  # noqa: E402
from distill.train import Components, build_recipe, default_student, run  # noqa: E402

OUT = ROOT / "bench" / "results" / "student_ablation.json"


def no_lattice(r):
    st = default_student(r)
    for p in st.heads.parameters():
        torch.nn.init.zeros_(p)
        p.requires_grad_(False)
    return st


def train_variant(out_dir: Path, name: str, components: Components) -> dict:
    base = load_config(ROOT / "configs" / "default.yaml")
    cfg = load_config(ROOT / "configs" / "default.yaml", [
        f"run.output_dir={out_dir}", f"run.name={name}", "curriculum.difficulty=none", "curriculum.pacing=none",
        "logging.tensorboard=false", "logging.progress=false", f"train.eval_every={base.train.max_steps}",
        f"train.save_every={base.train.max_steps}", f"targets.store_dir={ROOT / base.targets.store_dir}"])
    # the first input teacher alone, reading its own question (the demo may read several)
    cfg.teachers = [cfg.input_teacher()]
    cfg.student.input_teacher = cfg.teachers[0].name
    cfg.student.kernel_skip.teachers = [n for n in cfg.student.kernel_skip.teachers if n == cfg.teachers[0].name]
    t0 = time.perf_counter()
    r = build_recipe(cfg, components=components)
    assert run(r, lambda: False) == 0
    r.accelerator.end_training()
    res = json.loads((cfg.run_dir / "eval.json").read_text())["test"][cfg.input_teacher().name]
    res["student"]["train_s"] = time.perf_counter() - t0
    res["student"]["trainable_parameters"] = sum(p.numel() for p in r.params)
    return res


def main() -> int:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        full = train_variant(Path(tmp), "full", Components())
        ablated = train_variant(Path(tmp), "no-lattice", Components(student=no_lattice))
    rows = {"identity": full["identity"], "ridge": full["ridge"],
            "student (lattice + skip + residual)": full["student"],
            "no lattice (skip + residual only)": ablated["student"]}
    cfg = load_config(ROOT / "configs" / "default.yaml")
    print(f"test split of {cfg.data.path}, teacher space {cfg.input_teacher().name}, {cfg.train.max_steps} steps, "
          f"batch {cfg.train.batch_size}")
    print(f"{'predictor':<38}{'cosine':>8}{'R@1':>8}{'R@5':>8}{'MRR':>8}")
    for k, m in rows.items():
        print(f"{k:<38}{m['cosine']:>8.4f}{m['recall@1']:>8.4f}{m['recall@5']:>8.4f}{m['mrr']:>8.4f}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"config": "configs/default.yaml (input teacher only, uniform sampling), "
                                         "trained by distill.train's recipe", "split": "test",
                               "results": rows}, indent=2))
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
