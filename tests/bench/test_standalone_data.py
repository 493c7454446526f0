"""bench/standalone_data.py: read_corpus takes the first N records, of the listed sources only when
asked, in file order."""

from __future__ import annotations

import gzip
import json

from bench.standalone_data import read_corpus


def test_read_corpus_takes_the_first_n_of_the_listed_sources_in_order(tmp_path):
    corpus = tmp_path / "c.jsonl.gz"
    rows = [{"text": f"t{i}", "source": ["wikipedia", "gutenberg", "bbc"][i % 3]} for i in range(12)]
    with gzip.open(corpus, "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    assert read_corpus(corpus, 4) == ["t0", "t1", "t2", "t3"]
    assert read_corpus(corpus, 3, {"gutenberg"}) == ["t1", "t4", "t7"]
    assert read_corpus(corpus, 5, {"wikipedia", "bbc"}) == ["t0", "t2", "t3", "t5", "t6"]
    assert read_corpus(corpus, 100, {"gutenberg"}) == ["t1", "t4", "t7", "t10"]  # fewer when the file is shorter
    assert read_corpus(corpus, 5, {"imdb"}) == []
    plain = tmp_path / "c.jsonl"  # not compressed: read as text
    plain.write_text("".join(json.dumps(r) + "\n" for r in rows[:2]))
    assert read_corpus(plain, 5, {"gutenberg"}) == ["t1"]
