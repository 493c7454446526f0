"""bench/standalone_scale.py: the order probe's swap, where N (the corpus size) is read from, and the
--runs space selector (a teacher space or the concatenated one)."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest
import yaml

import bench.standalone_scale as SS
from bench.standalone_scale import corpus_size, order_pairs, swap_two_words


def _words(t):
    return [p for p in re.split(r"(\s+)", t) if p and not p.isspace()]


def test_swap_exchanges_exactly_two_different_words_and_nothing_else():
    rng = random.Random(0)
    text = "The  quick brown\tfox jumps over the lazy dog."
    for _ in range(50):
        out = swap_two_words(text, rng)
        assert len(out) == len(text)
        # the whitespace runs stay where they were
        assert re.findall(r"\s+", out) == re.findall(r"\s+", text)
        a, b = _words(text), _words(out)
        diff = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
        assert len(diff) == 2
        i, j = diff
        assert (b[i], b[j]) == (a[j], a[i])


def test_no_swap_without_two_different_words():
    rng = random.Random(0)
    assert swap_two_words("hello", rng) is None
    assert swap_two_words("no no  no", rng) is None
    assert swap_two_words("a a b", rng) in ("b a a", "a b a")


def test_order_pairs_fixed_seed():
    sents = [f"sentence number {i} has five words" for i in range(40)] + ["too short"]
    p1, p2 = order_pairs(sents, 10, seed=0), order_pairs(sents, 10, seed=0)
    assert p1 == p2 and len(p1) == 10
    assert all(s != t and sorted(s.split()) == sorted(t.split()) for s, t in p1)
    assert order_pairs(sents, 10, seed=1) != p1


def _stage(path, data, init_from=None):
    path.mkdir()
    cfg = {"data": data, "student": {"init_from": str(init_from) if init_from else None}}
    (path / "config.yaml").write_text(yaml.safe_dump(cfg))
    (path / "student").mkdir()
    return path


def test_order_distances_and_stats_against_the_teachers():
    pairs = [("a b", "b a"), ("c d", "d c"), ("e f", "f e")]
    vec = {"a b": [1, 0], "b a": [1, 0], "c d": [1, 0], "d c": [0, 1], "e f": [0, 1], "f e": [0.6, 0.8]}
    d = SS.order_distances(lambda ts: np.array([vec[t] for t in ts], dtype=float), pairs)
    np.testing.assert_allclose(d, [0.0, 1.0, 0.2])
    ref = np.array([0.1, 0.4, 0.3])
    st = SS.order_stats(d, ref)
    assert st["order_ratio"] == pytest.approx(np.mean(d) / np.mean(ref))  # 0.4 / 0.2667 = 1.5
    assert st["order_spearman"] == pytest.approx(1.0)  # same ranking, not the same values
    assert SS.order_stats(np.array([1.0, 0.0, 0.2]), ref)["order_spearman"] == pytest.approx(-1.0)  # reversed ranks
    assert np.isnan(SS.order_stats(np.zeros(3), ref)["order_spearman"])  # a bag of tokens: no ranking
    assert SS.order_stats(np.zeros(3), ref)["order_ratio"] == 0.0


def test_corpus_size_follows_init_from_back_to_the_corpus_stage(tmp_path):
    c = _stage(tmp_path / "r-corpus", {"path": "corpus.jsonl.gz", "max_pairs": 12345})
    d = _stage(tmp_path / "r-dolly", {"path": "builtin:dolly_open_qa", "max_pairs": None}, c / "student")
    f = _stage(tmp_path / "r", {"path": "builtin:dolly_open_qa", "max_pairs": None}, d / "student")
    got = corpus_size(f)
    assert got["n"] == 12345 and "r-corpus" in got["from"]


def test_corpus_size_reads_stages0_when_the_config_has_stages(tmp_path):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(
        {"data": {"path": "builtin:dolly_open_qa"}, "stages": [{"data": {"max_pairs": 777}}, {"data": {}}]}))
    assert corpus_size(tmp_path)["n"] == 777


def test_no_corpus_stage_gives_none(tmp_path):
    f = _stage(tmp_path / "r", {"path": "builtin:dolly_open_qa", "max_pairs": None})
    assert corpus_size(f)["n"] is None


def test_runs_take_an_optional_space(tmp_path):
    runs = SS.parse_runs([f"a={tmp_path}", f"b={tmp_path}@mpnet", f"c={tmp_path}@concat"])
    assert runs == {"a": (tmp_path, None), "b": (tmp_path, "mpnet"), "c": (tmp_path, "concat")}
    with pytest.raises(ValueError, match="given twice"):
        SS.parse_runs([f"a={tmp_path}", f"a={tmp_path}@x"])


def test_concat_space_joins_the_normalised_spaces():
    class Enc:
        spaces = ["minilm", "mpnet"]

        def encode(self, texts, space=None, batch_size=64):
            v = {"minilm": [[3.0, 4.0]], "mpnet": [[0.0, 0.0, 2.0]]}[space or "minilm"]
            return SS._norm(np.array(v * len(texts)))

    joint = SS.space_encoder(Enc(), "concat")(["x"])
    assert np.allclose(joint, [[0.6 / 2 ** 0.5, 0.8 / 2 ** 0.5, 0, 0, 1 / 2 ** 0.5]])
    assert np.allclose(SS.space_encoder(Enc(), "mpnet")(["x"]), [[0, 0, 1]])
    with pytest.raises(ValueError, match="not one of the export's spaces"):
        SS.space_encoder(Enc(), "bge")


def test_a_run_without_space_is_measured_in_its_input_teachers_space():
    class Enc:  # a two-head student that reads MPNet's tokens: its heads list MiniLM's first
        spaces = ["minilm", "mpnet"]
        config = type("C", (), {"input_teacher": "mpnet"})()

    assert SS.row_space(Enc(), None) == "mpnet"
    assert SS.row_space(Enc(), "minilm") == "minilm"
    assert SS.row_space(Enc(), "concat") == "concat"


def test_the_plot_draws_seeds_whose_mean_rounds_past_their_range(tmp_path):
    pytest.importorskip("matplotlib")
    row = lambda v: {"sts": {"mean": v}, "dolly_sym": {"r1": v}, "trec_dev": {"map": v}}  # noqa: E731
    models = {SS.MINILM: {"kind": "teacher", **row(0.8)}, SS.POTION: {"kind": "anchor", **row(0.6)}}
    for s in range(3):  # three equal seeds: np.mean([0.1] * 3) = 0.10000000000000002 > max
        models[f"static/s{s}"] = {"kind": "student", "corpus": {"n": 1000}, "lattice": False, **row(0.1)}
    SS.plot({"models": models, "quick": False}, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 1000
