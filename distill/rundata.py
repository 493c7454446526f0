"""One place that turns a config into the run's data: pairs, split, student inputs and targets.

Training, ``distill eval``, ``distill predict`` and the benches all call :func:`load_run_data`, so
they agree on the split and the targets by construction.

Targets reach the training loop through a :class:`TargetSource`: ``StoredTargets`` (every pair's
targets computed up front through the target store) or ``OnlineTargets`` (teachers inside the job,
each step's targets computed on the fly).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from distill.config import Config
from distill.data import Split, load_pairs, normalise_question, split_indices
from distill.schema import ConfigError
from distill.students import student_type
from distill.targets import Targets, config_targets, teacher_input
from distill.tokens import PAD

ONLINE_STATS_SAMPLE = 1024  # training answers embedded at start for the standardisation statistics


def pick_device(cfg: Config) -> str:
    """Where teachers and eval run outside Accelerate: CUDA if present and not forced to CPU."""
    return "cuda" if (torch.cuda.is_available() and not cfg.train.cpu) else "cpu"


class TargetSource(Protocol):
    def batch(self, idx: np.ndarray) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """idx: positions in the training split -> (student input (B, ...), {teacher: (B, d)})."""
        ...


class StoredTargets:
    """Targets of every training pair, computed up front through the target store."""

    def __init__(self, train_x: torch.Tensor, train: Targets):
        self.train_x, self.train = train_x, train

    def batch(self, idx: np.ndarray) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        t = torch.as_tensor(idx, dtype=torch.long)
        return self.train_x[t], {n: a[t] if isinstance(a, torch.Tensor) else torch.from_numpy(a.rows(idx))
                                 for n, a in self.train.a.items()}


class OnlineTargets:
    """Teachers inside the job: each step's targets are computed on the fly.

    Every rank calls every teacher once per step in config order with the same number of texts
    (its slice of the global batch), so ZeRO-3's collective forwards line up.
    """

    def __init__(self, pool, questions: list[str], answers: list[str], input_names: list[str],
                 token_ids: torch.Tensor | None = None):
        self.pool, self.questions, self.answers = pool, questions, answers
        self.input_names, self.token_ids = input_names, token_ids

    def batch(self, idx: np.ndarray) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        answers = self.pool.encode([self.answers[i] for i in idx], role="answer")
        if self.token_ids is not None:
            x = self.token_ids[torch.as_tensor(idx, dtype=torch.long)]
        else:
            texts = [self.questions[i] for i in idx]
            x = teacher_input({n: self.pool[n].encode(texts, role="query") for n in self.input_names},
                              self.input_names)
        return x, answers


@dataclass
class EvalSplit:
    """One evaluated split: row indices into the pairs, teacher targets, student inputs (N, ...)."""

    idx: np.ndarray
    targets: Targets
    x: torch.Tensor


@dataclass
class RunData:
    """Everything about the pairs a run needs, identical on every rank.

    validation: what the run's decisions read; test: evaluated once, at the end, and reported.
    """

    questions: list[str]
    answers: list[str]
    train_idx: np.ndarray
    train: Targets | None  # teacher targets of the training split (None in online mode)
    validation: EvalSplit
    test: EvalSplit
    stats_answers: dict[str, torch.Tensor]  # answer targets the standardisation statistics come from
    source: TargetSource
    skipped_records: int = 0  # bad records skipped under data.on_error: skip (eval.json records it)

    @property
    def dims(self) -> dict[str, int]:
        return self.test.targets.dims


def split_pairs(cfg: Config, questions: list[str]) -> Split:
    """The run's three splits, refused (``ConfigError`` naming the fraction, before any teacher runs
    or anything is written) when a split is empty or too small for the largest recall@k."""
    split = split_indices(questions, cfg.data.holdout_fraction, cfg.data.validation_fraction, cfg.data.split_seed,
                          cfg.data.holdout_max, cfg.data.validation_max)
    k = max(cfg.eval.recall_at)
    for key, name, idx in (("data.validation_fraction", "validation", split.validation),
                           ("data.holdout_fraction", "test", split.test)):
        if len(idx) < k:
            raise ConfigError(key, f"the {name} split has {len(idx)} pairs, fewer than the {k} that "
                                   f"recall@{k} (eval.recall_at) ranks among; raise the fraction")
    return split


def load_examples(cfg: Config, info: dict | None = None) -> tuple[list[str], list[str], Split]:
    """(questions, answers, split) of the configured data. ``data.task: texts``: questions and
    answers are the same texts (the student's input and the text whose teacher embedding is the
    target), split by record (a record's texts share a split)."""
    if cfg.data.task == "texts":
        from distill.data import extra_texts, load_texts

        t = load_texts(cfg.data)
        if info is not None:
            info["skipped_records"] = t.skipped
        by_record = split_pairs(cfg, t.keys)
        labels = np.zeros(len(t.keys), dtype=np.int64)
        labels[by_record.validation], labels[by_record.test] = 1, 2
        per_text = labels[t.group]
        texts = t.texts
        if cfg.data.spans or cfg.data.sentences:
            # data.spans / data.sentences: extra texts of the training records only (validation and
            # test stay the records' own texts), appended after them.
            extra, src = extra_texts(t.texts, cfg.data.spans, cfg.data.sentences)
            keep = np.flatnonzero(per_text[src] == 0)
            texts = t.texts + [extra[i] for i in keep]
            per_text = np.concatenate([per_text, np.zeros(len(keep), dtype=np.int64)])
            if info is not None:
                info["extra_texts"] = len(keep)
        # A text held out through one record (an answer shared by two questions) is not trained on
        # through another: split by distinct text too.
        norm = [normalise_question(x) for x in texts]
        held = {norm[i] for i in np.flatnonzero(per_text > 0)}
        per_text[[i for i in np.flatnonzero(per_text == 0) if norm[i] in held]] = -1
        split = Split(*(np.flatnonzero(per_text == k).astype(np.int64) for k in (0, 1, 2)))
        return texts, texts, split
    loaded = load_pairs(cfg.data)
    if info is not None:
        info["skipped_records"] = loaded.skipped
    pairs = loaded.dataset
    questions, answers = list(pairs["question"]), list(pairs["answer"])
    return questions, answers, split_pairs(cfg, questions)


def load_run_data(cfg: Config, progress: bool = True, mode: str | None = None, inputs: bool = True) -> RunData:
    """Pairs, split and targets: from the store, or (online mode) from teachers inside the job.

    ``mode`` overrides ``cfg.targets.mode`` (eval and predict always read the store).
    ``inputs=False``: skip tokenizing the texts for a token student (predict needs only the answer
    bank); the splits' inputs are then the input teacher's question embeddings.
    """
    info: dict = {}
    questions, answers, split = load_examples(cfg, info)
    # The student type makes its own inputs from text (token ids), or None: it reads the input
    # teachers' question embeddings.
    stype = student_type(cfg.student.input)
    token_ids = stype.text_inputs(cfg, questions) if inputs else None
    # loss.both_sides: the training source hands the student each question's and its answer's ids.
    train_ids = None
    if token_ids is not None and cfg.loss.encodes_answers:
        train = torch.as_tensor(split.train)
        train_ids = both_sides_ids(token_ids[train], stype.text_inputs(cfg, [answers[i] for i in split.train]))
    load = _stored if (mode or cfg.targets.mode) == "store" else _online
    train_t, evals, stats_answers, source = load(cfg, questions, answers, split, token_ids, progress, train_ids)
    return RunData(questions, answers, split.train, train_t, evals["validation"], evals["test"], stats_answers,
                   source, info.get("skipped_records", 0))


def both_sides_ids(q: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """(N, Lq) question and (N, La) answer token ids, PAD padded -> (N, 2, max(Lq, La)): [:, 0] the
    question, [:, 1] its answer (what the student reads under ``loss.both_sides``)."""
    width = max(q.shape[1], a.shape[1])
    pad_to = lambda x: torch.nn.functional.pad(x, (0, width - x.shape[1]), value=PAD)  # noqa: E731
    return torch.stack([pad_to(q), pad_to(a)], dim=1)


def _stored(cfg: Config, questions, answers, split: Split, token_ids, progress: bool, train_ids=None):
    # A token student distilling plain texts (the corpus case) reads its training targets from the
    # store batch by batch: a million 384-d rows stay on disk, not in memory. Every other run
    # holds them as tensors (a teacher-input student's inputs are teacher rows; the Q->A
    # evaluator's ridge baseline is fitted on the training split).
    views = token_ids is not None and cfg.data.task == "texts"
    targets = config_targets(cfg, questions, answers, device=pick_device(cfg), progress=progress, views=views)
    inputs = token_ids if token_ids is not None else teacher_input(targets.q, cfg.input_names())
    train_t = targets.select(split.train)
    evals = {name: EvalSplit(idx, targets.select(idx).tensors(), inputs[torch.as_tensor(idx)])
             for name, idx in (("validation", split.validation), ("test", split.test))}
    train_x = train_ids if train_ids is not None else inputs[torch.as_tensor(split.train)]
    return train_t, evals, train_t.a, StoredTargets(train_x, train_t)


def _online(cfg: Config, questions, answers, split: Split, token_ids, progress: bool, train_ids=None):
    from teachers import TeacherPool

    pool = TeacherPool(cfg.teachers, device=pick_device(cfg))
    input_names = cfg.input_names()
    evals = {}
    for name, idx in (("validation", split.validation), ("test", split.test)):
        t = Targets(pool.encode([questions[i] for i in idx], role="query", split=True, progress=progress),
                    pool.encode([answers[i] for i in idx], role="answer", split=True, progress=progress))
        x = token_ids[torch.as_tensor(idx)] if token_ids is not None else teacher_input(t.q, input_names)
        evals[name] = EvalSplit(idx, t, x)
    train_q, train_a = [questions[i] for i in split.train], [answers[i] for i in split.train]
    sample = np.random.default_rng(cfg.run.seed).permutation(len(split.train))[:ONLINE_STATS_SAMPLE]
    stats_answers = pool.encode([train_a[i] for i in sample], role="answer", split=True)
    if train_ids is None and token_ids is not None:
        train_ids = token_ids[torch.as_tensor(split.train)]
    source = OnlineTargets(pool, train_q, train_a, input_names, train_ids)
    return None, evals, stats_answers, source
