"""Evaluation, in one package: every number a run or a bench reports comes from here.

* :mod:`distill.eval.qa`: Q→A retrieval metrics (raw and centred cosine, recall@k, MRR) with
  identity and ridge baselines, blocked so memory stays O(N * block).
* :mod:`distill.eval.evaluator`: the trainer's per-split evaluator (baselines computed once).
* :mod:`distill.eval.pairs`: pair similarity, STS-style (Spearman with ties).
* :mod:`distill.eval.retrieval`: candidate retrieval, TREC-style (MAP, MRR).
* :mod:`distill.eval.encoders`: any run's student as text -> embedding functions
  (``distill eval RUN --sts FILE --retrieval FILE``).

This module imports only the numpy-level evaluators; the evaluator and the encoders (which read
targets, runs and teachers) are imported from their modules.
"""

from distill.eval.pairs import average_ranks, evaluate_pairs, spearman
from distill.eval.retrieval import average_precision, evaluate_retrieval, rank_labels, reciprocal_rank

__all__ = ["average_precision", "average_ranks", "evaluate_pairs", "evaluate_retrieval", "rank_labels",
           "reciprocal_rank", "spearman"]
