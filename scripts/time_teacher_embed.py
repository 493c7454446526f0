#!/usr/bin/env python
"""Project a teacher's embedding time on the whole Dolly demo data from a timed subset.

    python scripts/time_teacher_embed.py [--n 200] [--threads 1] [--spec smollm2@128 ...]

For each ``preset@max_length``: embeds ``--n`` evenly spread Dolly pairs (question with the query
prefix, answer with the answer prefix) through ``Teacher.encode``, measures process CPU seconds
(what survives a shared, loaded machine) and wall seconds, and scales the CPU time by the ratio
of (truncated) token counts, full data / subset. Teacher loading is not included.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from teachers import TeacherSpec, load_teacher  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--spec", nargs="+", default=["smollm2@128", "smollm2@256", "minilm@256"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = [json.loads(line) for line in (ROOT / "distill" / "builtin_data" / "dolly_open_qa.jsonl").open()]
    sub = rows[:: max(1, len(rows) // args.n)][: args.n]
    out = {}
    for item in args.spec:
        name, _, ml = item.partition("@")
        preset = yaml.safe_load((ROOT / "configs" / "teachers" / f"{name}.yaml").read_text())
        if ml:
            preset["max_length"] = int(ml)
        t = load_teacher(TeacherSpec(name=name, **preset))

        def tokens(rs, spec=t.spec, tok=t.tokenizer):
            texts = [spec.query_prefix + r["question"] for r in rs] + [spec.answer_prefix + r["answer"] for r in rs]
            return sum(min(len(ids), spec.max_length) for ids in tok(texts)["input_ids"])

        c0, w0 = time.process_time(), time.perf_counter()
        t.encode([r["question"] for r in sub], "query")
        t.encode([r["answer"] for r in sub], "answer")
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        full, part = tokens(rows), tokens(sub)
        out[item] = {"pairs": len(sub), "cpu_s": round(cpu, 1), "wall_s": round(wall, 1), "tokens": part,
                     "full_pairs": len(rows), "full_tokens": full, "projected_full_cpu_s": round(cpu * full / part)}
        print(item, json.dumps(out[item]), flush=True)
        t.close()


if __name__ == "__main__":
    main()
