"""Data loading in every format, bad-row reporting with locations, and the held-out split."""

import json

import datasets
import numpy as np
import pandas as pd
import pytest

from distill.config import DataSection
from distill.data import DataError, load_pairs, normalise_question, split_indices

ROWS = [
    {"question": "What is AI?", "answer": "Machines that think.", "category": "ai"},
    {"question": "what is  AI? ", "answer": "A field of study.", "category": "ai"},
    {"question": "Capital of France?", "answer": "Paris", "category": "geo"},
    {"question": "Boiling point of water?", "answer": "100 C at sea level", "category": "science"},
]


def write(tmp_path, fmt, rows=ROWS):
    if fmt == "jsonl":
        p = tmp_path / "d.jsonl"
        p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif fmt == "json":
        p = tmp_path / "d.json"
        p.write_text(json.dumps(rows))
    elif fmt == "csv":
        p = tmp_path / "d.csv"
        pd.DataFrame(rows).to_csv(p, index=False)
    elif fmt == "parquet":
        p = tmp_path / "d.parquet"
        pd.DataFrame(rows).to_parquet(p)
    else:
        p = tmp_path / "ds"
        datasets.Dataset.from_list(rows).save_to_disk(str(p))
    return p


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "parquet", "dataset"])
def test_each_format_loads_the_same_pairs(tmp_path, fmt):
    p = write(tmp_path, fmt)
    pairs = load_pairs(DataSection(path=str(p)))
    ds = pairs.dataset
    assert ds["question"] == [r["question"].strip() for r in ROWS]
    assert ds["answer"] == [r["answer"] for r in ROWS]
    assert ds["category"] == [r["category"] for r in ROWS]
    assert pairs.skipped == 0


def test_custom_field_names_and_category_filter(tmp_path):
    rows = [{"prompt": r["question"], "response": r["answer"], "topic": r["category"]} for r in ROWS]
    p = write(tmp_path, "jsonl", rows)
    ds = load_pairs(DataSection(path=str(p), question_field="prompt", answer_field="response",
                                category_field="topic", categories=["ai"])).dataset
    assert len(ds) == 2 and set(ds["category"]) == {"ai"}
    with pytest.raises(DataError, match=r"d\.jsonl: no question/answer pairs after keeping only categories"):
        load_pairs(DataSection(path=str(p), question_field="prompt", answer_field="response",
                               category_field="topic", categories=["nope"]))


def test_builtin_data_ships_with_notice():
    ds = load_pairs(DataSection(path="builtin:chatterbot_english")).dataset
    assert len(ds) > 1000
    from distill.data import BUILTIN_DIR

    notice = (BUILTIN_DIR / "NOTICE.md").read_text()
    assert "BSD-3-Clause" in notice and "CC BY-SA 3.0" in notice and "Gunther Cox" in notice
    with pytest.raises(DataError, match="unknown built-in data 'builtin:nope'"):
        load_pairs(DataSection(path="builtin:nope"))


def bad_jsonl(tmp_path):
    p = tmp_path / "bad.jsonl"
    lines = [
        json.dumps(ROWS[0]),
        "{not json",
        json.dumps({"question": "Q?", "answer": "   "}),
        json.dumps({"question": "Q2?"}),
        json.dumps(ROWS[2]),
    ]
    p.write_text("\n".join(lines) + "\n")
    return p


def test_bad_rows_stop_with_file_and_line(tmp_path):
    p = bad_jsonl(tmp_path)
    with pytest.raises(DataError, match=r"bad\.jsonl:2: not valid JSON"):
        load_pairs(DataSection(path=str(p)))


def test_bad_rows_skipped_with_count(tmp_path):
    p = bad_jsonl(tmp_path)
    pairs = load_pairs(DataSection(path=str(p), on_error="skip"))
    assert pairs.skipped == 3
    assert pairs.dataset["question"] == [ROWS[0]["question"], ROWS[2]["question"]]
    assert pairs.dataset["row"] == [1, 5]


@pytest.mark.parametrize(
    "content, pattern",
    [
        (json.dumps({"question": "Q?", "answer": ""}) + "\n", r"d\.jsonl:1: field 'answer' is empty"),
        ("\n" + json.dumps({"q": "Q?", "answer": "A"}) + "\n", r"d\.jsonl:2: missing field 'question'"),
        (json.dumps({"question": 3, "answer": "A"}) + "\n", r"d\.jsonl:1: field 'question' must be text"),
        (json.dumps([1, 2]) + "\n", r"d\.jsonl:1: a record must be an object"),
    ],
)
def test_bad_row_messages(tmp_path, content, pattern):
    p = tmp_path / "d.jsonl"
    p.write_text(content)
    with pytest.raises(DataError, match=pattern):
        load_pairs(DataSection(path=str(p)))


def test_invalid_utf8_names_the_line(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_bytes(json.dumps(ROWS[0]).encode() + b"\n" + b'{"question": "caf\xe9?", "answer": "x"}\n')
    with pytest.raises(DataError, match=r"d\.jsonl:2: not valid UTF-8"):
        load_pairs(DataSection(path=str(p)))


def test_csv_bad_row_line_number(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text('question,answer\n"Q1?","A1"\n"Q2?",""\n')
    with pytest.raises(DataError, match=r"d\.csv:3: field 'answer' is empty"):
        load_pairs(DataSection(path=str(p)))


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_pairs(DataSection(path=str(tmp_path / "nope.jsonl")))
    p = tmp_path / "d.tsv"
    p.write_text("x")
    with pytest.raises(DataError, match="cannot tell the format"):
        load_pairs(DataSection(path=str(p)))


def test_three_splits_share_no_question_and_are_stable():
    ds = load_pairs(DataSection(path="builtin:chatterbot_english")).dataset
    qs = list(ds["question"])
    sp = split_indices(qs, 0.2, 0.1, seed=0)
    sets = [{normalise_question(qs[i]) for i in idx} for idx in (sp.train, sp.validation, sp.test)]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    rows = np.concatenate([sp.train, sp.validation, sp.test])
    assert len(rows) == len(qs) and len(set(rows.tolist())) == len(qs)
    n_distinct = len(set().union(*sets))
    assert len(sets[2]) == round(0.2 * n_distinct) and len(sets[1]) == round(0.1 * n_distinct)
    # Same split on every run, and independent of row order.
    again = split_indices(qs, 0.2, 0.1, seed=0)
    assert all((a == b).all() for a, b in zip((sp.train, sp.validation, sp.test),
                                               (again.train, again.validation, again.test)))
    rev = qs[::-1]
    sp_rev = split_indices(rev, 0.2, 0.1, seed=0)
    assert {normalise_question(rev[i]) for i in sp_rev.validation} == sets[1]
    assert {normalise_question(rev[i]) for i in sp_rev.test} == sets[2]
    # Another seed gives another split; the test split does not depend on the validation fraction.
    assert {normalise_question(qs[i]) for i in split_indices(qs, 0.2, 0.1, seed=1).test} != sets[2]
    assert {normalise_question(qs[i]) for i in split_indices(qs, 0.2, 0.3, seed=0).test} == sets[2]


def test_a_split_left_empty_is_an_error_naming_the_fraction():
    from distill.schema import ConfigError

    qs = [f"q{i}?" for i in range(10)]
    with pytest.raises(ConfigError, match=r"data.validation_fraction: 0.01 of 10 distinct questions leaves"):
        split_indices(qs, 0.2, 0.01, seed=0)
    with pytest.raises(ConfigError, match=r"data.holdout_fraction: 0.01 of 10"):
        split_indices(qs, 0.01, 0.2, seed=0)
    with pytest.raises(ConfigError, match=r"data.validation_fraction: .* leaves the training split empty"):
        split_indices(qs, 0.5, 0.46, seed=0)


def test_duplicate_questions_stay_together():
    qs = ["What is AI?", "what is  ai?", "B?", "C?", "D?"]
    for seed in range(10):
        sp = split_indices(qs, 0.2, 0.2, seed)
        assert any({0, 1} <= set(idx.tolist()) for idx in (sp.train, sp.validation, sp.test))


def test_jsonl_line_endings_bom_and_unicode_separators(tmp_path):
    # Lines end at "\n" only: U+2028 inside a text is not a line break; "\r\n" and a BOM are fine.
    p = tmp_path / "d.jsonl"
    rec1 = '{"question": "Q1?", "answer": "a\u2028b"}'
    p.write_bytes(b"\xef\xbb\xbf" + rec1.encode() + b"\r\n" + json.dumps(ROWS[0]).encode() + b"\r\n")
    ds = load_pairs(DataSection(path=str(p))).dataset
    assert ds["answer"][:] == ["a\u2028b", ROWS[0]["answer"]]
    assert ds["row"][:] == [1, 2]


LOAD_MEMORY_SCRIPT = """
import json, os, resource, sys
from pathlib import Path
import datasets  # noqa: F401  (imports are the baseline)
from distill.config import DataSection
from distill.data import load_pairs

path, n = Path(sys.argv[1]), 200_000
text_bytes = 0
with open(path, "w") as f:
    for i in range(n):
        q, a = f"Question number {i}: what is the answer?", "An answer that is a bit longer. " * 4 + str(i)
        text_bytes += len(q) + len(a)
        f.write(json.dumps({"question": q, "answer": a, "category": "c"}) + "\\n")
base = int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
# The peak of loading alone: reset the high-water mark here (Linux >= 4.0), so a peak of the
# imports above cannot count. Measured against ru_maxrss (imports included) it once read 10x under
# pytest-xdist; our guess, not checked: RSS shrank after the imports. Without clear_refs: ru_maxrss.
try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    reset = True
except OSError:
    reset = False
ds = load_pairs(DataSection(path=str(path))).dataset
if reset:
    hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    peak = int(hwm.split()[1]) * 1024
else:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
assert len(ds) == n and ds["answer"][n - 1].endswith(str(n - 1))
print(json.dumps({"peak_over_base": peak - base, "text_bytes": text_bytes,
                  "arrow_bytes": ds.data.nbytes, "file_bytes": path.stat().st_size}))
"""


def test_loading_holds_the_texts_about_once(tmp_path):
    # 200k pairs, ~38 MB of text. Decoding the whole file, splitting its lines, building Python
    # lists and letting datasets fingerprint the table by pickling it peaked at 8.8x the texts'
    # size here; streaming lines into Arrow chunks measures 2.4x (the Arrow table is 1.1x).
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-c", LOAD_MEMORY_SCRIPT, str(tmp_path / "big.jsonl")], env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["arrow_bytes"] < 1.3 * r["text_bytes"]  # the texts once, packed, plus offsets
    assert r["peak_over_base"] < 4 * r["text_bytes"], r


def test_gzipped_inputs_stream_like_the_plain_files(tmp_path):
    """`.jsonl.gz` and `.txt.gz` (a corpus as users have it) read exactly as their plain files."""
    import gzip

    from distill.data import load_texts

    texts = [f"sentence {i} with caf\u00e9 and \u00fcml\u00e4uts" for i in range(50)]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    (tmp_path / "c.txt").write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    for name in ("c.jsonl", "c.txt"):
        with gzip.open(tmp_path / (name + ".gz"), "wb") as f:
            f.write((tmp_path / name).read_bytes())
    got = {}
    for name in ("c.jsonl", "c.jsonl.gz", "c.txt", "c.txt.gz"):
        got[name] = load_texts(DataSection(path=str(tmp_path / name), task="texts", text_fields=["text"],
                                           max_pairs=40)).texts
    assert got["c.jsonl"] == texts[:40]  # max_pairs: the first N records
    assert got["c.jsonl.gz"] == got["c.txt.gz"] == got["c.txt"] == got["c.jsonl"]
    # A bad line inside a .gz is FILE:LINE like any other.
    with gzip.open(tmp_path / "bad.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write(json.dumps({"text": "fine"}) + "\n" + "{not json\n")
    with pytest.raises(DataError, match=r"bad\.jsonl\.gz:2"):
        load_texts(DataSection(path=str(tmp_path / "bad.jsonl.gz"), task="texts", text_fields=["text"]))


def test_a_span_is_a_contiguous_run_of_two_to_twelve_words_and_never_the_whole_text():
    import random

    from distill.data import text_span

    rng = random.Random(0)
    for n in (4, 5, 13, 30):
        words = [f"w{i}" for i in range(n)]
        text = " ".join(words)
        lengths = set()
        for _ in range(300):
            s = text_span(text, rng).split()
            a = words.index(s[0])
            assert s == words[a:a + len(s)]  # contiguous, in order
            assert 2 <= len(s) <= min(12, n - 1)
            lengths.add(len(s))
        assert lengths == set(range(2, min(12, n - 1) + 1))  # every allowed length occurs
    assert text_span("three short words", rng) is None and text_span("", rng) is None


def test_sentences_split_after_end_marks_and_keep_three_words_or_more():
    from distill.data import text_sentences

    assert text_sentences("Paris is the capital. It is large! Is it old? Yes it is.   Very.") == [
        "Paris is the capital.", "It is large!", "Is it old?", "Yes it is."]
    assert text_sentences("One sentence only, no split.") == []  # the text itself is not an extra
    # A mark needs whitespace after it (3.14 stays whole); an abbreviation splits like a sentence end,
    # and a piece under 3 words ("e.g.") is dropped.
    assert text_sentences("Pi is 3.14 exactly. e.g. this is split") == ["Pi is 3.14 exactly.", "this is split"]
    assert text_sentences("Same words here. Same words here.") == ["Same words here."]


def test_extra_texts_are_reproducible_and_a_prefix_gets_the_same_spans():
    from distill.data import extra_texts

    texts = [f"text {i} with {'some more words ' * (i % 3)}in it. And a second sentence here." for i in range(50)]
    ex, src = extra_texts(texts, spans=2, sentences=True)
    again, asrc = extra_texts(texts, spans=2, sentences=True)
    assert again == ex and list(asrc) == list(src)
    sents = [e for e, i in zip(ex, src) if e.endswith("here.") and e.startswith("And")]
    assert len(sents) == 50  # every text's second sentence
    spans = ex[100:]
    assert len(spans) == 100 and all(e in texts[i] for e, i in zip(ex, src))  # every extra is from its text
    assert spans[:50] != spans[50:]  # round 1 is drawn from its own seed, not round 0 again
    pre, psrc = extra_texts(texts[:20], spans=2)
    assert pre[:20] == spans[:20] and pre[20:] == spans[50:70] and list(psrc[:20]) == list(range(20))
    none, nsrc = extra_texts(texts)
    assert none == [] and len(nsrc) == 0


@pytest.mark.parametrize("over,message", [
    ({"task": "texts", "spans": -1}, "spans: must be >= 0"),
    ({"task": "pairs", "spans": 1}, "spans: extra texts need task: texts"),
    ({"task": "pairs", "sentences": True}, "sentences: extra texts need task: texts"),
])
def test_extra_texts_config_errors(over, message):
    with pytest.raises(ValueError, match=message):
        DataSection(**over)
    DataSection(task="texts", spans=2, sentences=True)  # fine on a texts stage
