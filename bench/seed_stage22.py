"""Reproduce the prototype's Stage 2.2 protocol with a real student, and report it honestly.

45 dialogue pairs (../shared/data/seed_stage22_pairs.jsonl, never shipped), 36/9 split by
question, 10 epochs. The prototype reported a held-out Q->A "similarity" of 31.89% with
DistilBERT from a student with no trainable parameters (so: the teacher's own Q-A cosine). Here
the teacher is the bundled all-MiniLM-L6-v2, and the trained student is printed beside the
identity baseline (the question's own embedding, i.e. what the prototype measured) and ridge.

    python bench/seed_stage22.py            # from the repository root
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "experiments" / "seed_stage22.yaml"
DATA = ROOT.parent / "shared" / "data" / "seed_stage22_pairs.jsonl"
OUT = ROOT / "bench" / "results" / "seed_stage22.json"


def main() -> int:
    if not DATA.is_file():
        print(f"{DATA} not found: this benchmark reads the prototype's pairs from ../shared/data/", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "distill", "train", str(CONFIG), "--set", f"run.output_dir={tmp}",
               f"data.path={DATA}"]
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if r.returncode != 0:
            print(r.stdout[-2000:], r.stderr[-4000:], file=sys.stderr)
            return r.returncode
        wall = time.perf_counter() - t0
        payload = json.loads((Path(tmp) / "seed_stage22" / "eval.json").read_text())
    res = payload["results"]["minilm"]
    rows = [("student (trained)", res["student"]), ("identity (prototype's number)", res["identity"]),
            ("ridge", res["ridge"])]
    print("Stage 2.2 protocol: 45 pairs, 36 train / 9 held out, 10 epochs, teacher all-MiniLM-L6-v2")
    print(f"{'predictor':<32}{'Q->A cosine':>12}{'R@1':>8}{'R@5':>8}{'MRR':>8}")
    for name, m in rows:
        print(f"{name:<32}{m['cosine']:>12.4f}{m['recall@1']:>8.3f}{m['recall@5']:>8.3f}{m['mrr']:>8.3f}")
    print(f"prototype report: 0.3189 (DistilBERT, untrained student); wall time {wall:.0f} s")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"protocol": "seed_stage22: 45 pairs, 36/9 split, 10 epochs",
                               "teacher": "all-MiniLM-L6-v2 (bundled)", "heldout": res,
                               "prototype_reported_cosine": 0.3189, "wall_s": wall}, indent=2))
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
