"""bench/standalone_crops.py: the spans are contiguous, 2 to 12 words, never the whole sentence; a
seed's spans are the same whichever other seeds a file lists; the file holds every text once."""

from __future__ import annotations

import gzip
import json
import random

from bench.standalone_crops import main, mix, span


def test_a_span_is_a_contiguous_run_of_two_to_twelve_words_and_never_the_whole_text():
    rng = random.Random(0)
    for n in (4, 5, 13, 30):
        words = [f"w{i}" for i in range(n)]
        text = " ".join(words)
        lengths = set()
        for _ in range(300):
            s = span(text, rng).split()
            a = words.index(s[0])
            assert s == words[a:a + len(s)]  # contiguous, in order
            assert 2 <= len(s) <= min(12, n - 1)
            lengths.add(len(s))
        assert lengths == set(range(2, min(12, n - 1) + 1))  # every allowed length occurs
    assert span("three short words", rng) is None and span("", rng) is None


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
