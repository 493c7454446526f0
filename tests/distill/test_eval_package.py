"""distill.eval: pair similarity (Spearman with ties), retrieval (MAP/MRR), centred cosine and
``distill eval RUN --sts/--retrieval``, each against values computed by hand below."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from distill.eval import average_precision, average_ranks, evaluate_pairs, evaluate_retrieval, spearman
from distill.eval.qa import centred_cosine, retrieval_metrics

# 2-D unit vectors: a text's embedding is looked up here, so every cosine below is known exactly.
VEC = {"a": (1.0, 0.0), "b": (0.0, 1.0), "c": (0.6, 0.8), "d": (-1.0, 0.0),
       "q1": (1.0, 0.0), "x1": (0.9, math.sqrt(1 - 0.81)), "x2": (0.8, 0.6), "x3": (0.1, math.sqrt(0.99)),
       "q2": (0.0, 1.0), "y1": (0.6, 0.8), "y2": (-0.6, 0.8), "q3": (1.0, 0.0), "z1": (1.0, 0.0)}


def lookup(texts):
    return np.array([VEC[t] for t in texts])


def test_average_ranks_share_ties():
    assert average_ranks([3, 1, 3]).tolist() == [2.5, 1.0, 2.5]
    assert average_ranks([2, 2, 2, 0]).tolist() == [3.0, 3.0, 3.0, 1.0]


def test_spearman_counts_ties():
    # ranks (1, 2.5, 2.5, 4) and (1, 3, 2, 4); centred (-1.5, 0, 0, 1.5) and (-1.5, .5, -.5, 1.5):
    # rho = 4.5 / sqrt(4.5 * 5) = sqrt(0.9). Ranking ties by position instead gives 0.8.
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(math.sqrt(0.9), abs=1e-12)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_pairs_file_spearman_per_set_and_mean():
    # cosines (a,a)=1, (a,c)=0.6, (a,b)=0, (a,d)=-1 against gold 5, 3, 3, 0: sqrt(0.9) as above.
    rows = [{"s1": "a", "s2": "a", "score": 5}, {"s1": "a", "s2": "c", "score": 3},
            {"s1": "a", "s2": "b", "score": 3}, {"s1": "d", "s2": "a", "score": 0}]
    res = evaluate_pairs(lookup, rows)
    assert res["spearman"] == pytest.approx(math.sqrt(0.9)) and res["pairs"] == 4
    # two sets: {1, 0.6} vs {5, 3} -> 1; {0, -1} vs {0, 3} -> -1; the mean is 0
    two = [dict(r, set=s) for r, s in zip(rows, ["x", "x", "y", "y"])]
    two[3]["score"] = 9
    res = evaluate_pairs(lookup, two)
    assert res["sets"] == {"x": pytest.approx(1.0), "y": pytest.approx(-1.0)}
    assert res["spearman"] == pytest.approx(0.0)


def test_retrieval_map_mrr_by_hand():
    # q1: x1 0.9 (0), x2 0.8 (1), x3 0.1 (1) -> ranked 0 1 1: AP = (1/2 + 2/3) / 2 = 7/12, RR = 1/2
    # q2: y1 0.8 (1), y2 0.8 (0), a tie broken against the relevant one -> 0 1: AP = 1/2, RR = 1/2
    # q3: only relevant candidates -> skipped
    rows = [{"question": "q1", "answer": "x1", "label": 0}, {"question": "q1", "answer": "x2", "label": 1},
            {"question": "q1", "answer": "x3", "label": 1}, {"question": "q2", "answer": "y1", "label": 1},
            {"question": "q2", "answer": "y2", "label": 0}, {"question": "q3", "answer": "z1", "label": 1}]
    res = evaluate_retrieval(lookup, lookup, rows)
    assert res == {"map": pytest.approx((7 / 12 + 1 / 2) / 2), "mrr": pytest.approx(0.5), "questions": 2,
                   "skipped": 1}
    assert average_precision(np.array([1, 0, 1])) == pytest.approx((1 + 2 / 3) / 2)


def test_centred_cosine_scores_the_mean_at_zero():
    # answers share one dominant direction: predicting their mean wins raw cosine, not centred.
    g = torch.Generator().manual_seed(0)
    answers = torch.tensor([20.0, 0, 0]) + torch.randn(50, 3, generator=g)
    mean = answers.double().mean(0)
    pred = mean.expand(50, 3)  # float64: exactly the mean, so centred it is the zero vector
    m = retrieval_metrics(pred, answers, (1,), center=mean)
    assert m["cosine"] > 0.99 and m["cosine_centred"] == pytest.approx(0.0, abs=1e-6)
    # by hand: centre (1, 1); pred (2, 1) -> (1, 0), answer (1, 2) -> (0, 1): cos 0
    got = centred_cosine(torch.tensor([[2.0, 1.0]]), torch.tensor([[1.0, 2.0]]), torch.tensor([1.0, 1.0]))
    assert got.item() == pytest.approx(0.0)
    assert "cosine_centred" not in retrieval_metrics(pred, answers, (1,))


def test_cli_eval_sts_and_retrieval(tmp_path, monkeypatch, capsys):
    from distill import commands
    from distill.cli import main
    from distill.eval import encoders

    sts, ret = tmp_path / "sts.jsonl", tmp_path / "qa.jsonl"
    sts.write_text("".join(json.dumps(r) + "\n" for r in [
        {"s1": "a", "s2": "a", "score": 5}, {"s1": "a", "s2": "c", "score": 3},
        {"s1": "a", "s2": "b", "score": 3}, {"s1": "d", "s2": "a", "score": 0}]))
    ret.write_text("".join(json.dumps({"question": q, "answer": a, "label": la}) + "\n" for q, a, la in [
        ("q1", "x1", 0), ("q1", "x2", 1), ("q1", "x3", 1), ("q2", "y1", 1), ("q2", "y2", 0)]))
    monkeypatch.setattr(commands, "load_run", lambda d: (None, tmp_path))
    monkeypatch.setattr(commands, "load_student", lambda d: None)
    monkeypatch.setattr(encoders, "run_encoders", lambda cfg, run_dir, student, space=None: ("t", lookup, lookup))
    assert main(["eval", str(tmp_path), "--sts", str(sts), "--retrieval", str(ret)]) == 0
    assert "Spearman 0.9487" in capsys.readouterr().out
    res = json.loads((tmp_path / "eval_encoder.json").read_text())
    assert res["sts"]["spearman"] == pytest.approx(math.sqrt(0.9))
    assert res["retrieval"]["map"] == pytest.approx(13 / 24) and res["retrieval"]["mrr"] == pytest.approx(0.5)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"s1": "a", "s2": "b"}\n')
    assert main(["eval", str(tmp_path), "--sts", str(bad)]) == 2
    assert "bad.jsonl:1" in capsys.readouterr().err
