"""bench/standalone_crops.py: a seed's spans are the same whichever other seeds a file lists, and the
same texts ``data.spans`` gives a run on those sentences (distill.data.text_span, tested in
tests/distill/test_data.py); the file holds every text once."""

from __future__ import annotations

import gzip
import json

from bench.standalone_crops import main, mix
from distill.data import extra_texts


def test_a_seeds_spans_do_not_depend_on_the_other_seeds_listed():
    sents = [f"sentence {i} has a few more words in it" for i in range(200)] + ["too short"]
    one, two = mix(sents, [0]), mix(sents, [0, 1])
    spans = lambda rows: [t for t, k in rows if k == "span"]  # noqa: E731
    assert sorted(t for t, k in one if k == "sentence") == sorted(sents)  # every sentence, once
    assert len(spans(one)) == 200 and len(spans(two)) == 400  # "too short" gives none
    assert set(spans(one)) <= set(spans(two))  # seed 0's spans again: their stored targets are reused
    assert [t for t, _ in one] != sorted(t for t, _ in one)  # shuffled together
    assert mix(sents, []) and all(k == "sentence" for _, k in mix(sents, []))


def test_the_cli_writes_the_first_n_sentences_and_their_spans(tmp_path):
    corpus = tmp_path / "c.jsonl.gz"
    with gzip.open(corpus, "wt") as f:
        for i in range(10):
            f.write(json.dumps({"text": f"line {i} of the little test corpus"}) + "\n")
    out = tmp_path / "o" / "mix.jsonl.gz"
    assert main(["--corpus", str(corpus), "--n", "6", "--span-seeds", "0", "3", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in gzip.open(out, "rt")]
    assert sorted(r["text"] for r in rows if r["kind"] == "sentence") == sorted(
        f"line {i} of the little test corpus" for i in range(6))
    assert sum(r["kind"] == "span" for r in rows) == 12


def test_the_files_spans_are_the_ones_data_spans_gives_a_run():
    # The 300k runs read either this script's file or the corpus with data.spans: the same span
    # texts, so one store fill serves both.
    sents = [f"sentence {i} has {'a few more ' * (i % 4)}words in it" for i in range(300)] + ["too short"]
    bench = [t for t, k in mix(sents, [0, 1]) if k == "span"]
    run, src = extra_texts(sents, spans=2)
    assert sorted(bench) == sorted(run) and len(run) == 600
    assert [sents[i] for i in src[:3]] == sents[:3]
