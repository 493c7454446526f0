"""Short spans of corpus sentences as extra training texts (issue #20, "Short spans").

Writes a JSONL.gz of the first N corpus sentences plus one random contiguous word span of each per
``--span-seeds`` seed (2 to 12 whitespace-separated words, never the whole sentence; sentences
under 4 words give none), shuffled together so that any prefix is a random sample of both. A seed's
spans are the same in every file that lists it, so a second seed adds spans whose targets are new
and reuses the first seed's stored rows. Each record is
``{"text": ..., "kind": "sentence" | "span"}``; ``distill embed`` / ``distill train`` read it as
the corpus stage's ``data.path`` and give every span its own MiniLM target, as any text.

    python bench/standalone_crops.py --n 100000 --span-seeds 0 --out .cache/spans/mix100k.jsonl.gz

Benchmark data only (../shared/data/corpus_1m.jsonl.gz by default): never shipped.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.standalone_data import SHARED, read_corpus  # noqa: E402
from distill.data import text_span  # noqa: E402
from fileio import write_bytes_atomic  # noqa: E402


def mix(sentences: list[str], seeds: list[int]) -> list[tuple[str, str]]:
    """[(text, kind)]: the sentences and one span of each per seed (each seed's spans drawn from its
    own RNG, ``distill.data.text_span``: the spans ``data.spans`` gives a run on the same sentences),
    shuffled with the first seed's RNG."""
    first = random.Random(seeds[0]) if seeds else random.Random(0)
    spans = []
    for i, seed in enumerate(seeds):
        rng = first if i == 0 else random.Random(seed)
        spans += [s for t in sentences if (s := text_span(t, rng)) is not None]
    out = [(t, "sentence") for t in sentences] + [(s, "span") for s in spans]
    first.shuffle(out)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=SHARED / "corpus_1m.jsonl.gz")
    ap.add_argument("--n", type=int, required=True, help="the first N corpus sentences")
    ap.add_argument("--span-seeds", type=int, nargs="*", default=[0],
                    help="one random span per sentence per seed (none: the sentences alone)")
    ap.add_argument("--out", type=Path, required=True, help="the JSONL.gz to write (atomically)")
    args = ap.parse_args(argv)
    if args.n < 1 or len(set(args.span_seeds)) != len(args.span_seeds):
        ap.error("--n must be >= 1 and the --span-seeds distinct")
    sentences = read_corpus(args.corpus, args.n)
    if len(sentences) < args.n:
        raise SystemExit(f"error: {args.corpus} has {len(sentences)} sentences, fewer than --n {args.n}")
    rows = mix(sentences, args.span_seeds)
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as f:
        for text, kind in rows:
            f.write((json.dumps({"text": text, "kind": kind}) + "\n").encode("utf-8"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(args.out, buf.getvalue())
    spans = sum(k == "span" for _, k in rows)
    print(f"wrote {args.out}: {len(rows) - spans} sentences + {spans} spans")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
