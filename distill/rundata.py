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
from distill.data import load_pairs, split_indices
from distill.targets import Targets, compute_targets

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
        return self.train_x[t], {n: a[t] for n, a in self.train.a.items()}


class OnlineTargets:
    """Teachers inside the job: each step's targets are computed on the fly.

    Every rank calls every teacher once per step in config order with the same number of texts
    (its slice of the global batch), so ZeRO-3's collective forwards line up.
    """

    def __init__(self, pool, questions: list[str], answers: list[str], input_teacher: str,
                 token_ids: torch.Tensor | None = None):
        self.pool, self.questions, self.answers = pool, questions, answers
        self.input_teacher, self.token_ids = input_teacher, token_ids

    def batch(self, idx: np.ndarray) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        answers = self.pool.encode([self.answers[i] for i in idx], role="answer")
        if self.token_ids is not None:
            x = self.token_ids[torch.as_tensor(idx, dtype=torch.long)]
        else:
            x = self.pool[self.input_teacher].encode([self.questions[i] for i in idx], role="query")
        return x, answers


@dataclass
class RunData:
    """Everything about the pairs a run needs, identical on every rank."""

    questions: list[str]
    answers: list[str]
    train_idx: np.ndarray
    held_idx: np.ndarray
    train: Targets | None  # teacher targets of the training split (None in online mode)
    held: Targets  # teacher targets of the held-out split
    stats_answers: dict[str, torch.Tensor]  # answer targets the standardisation statistics come from
    source: TargetSource
    held_x: torch.Tensor  # student inputs of the held-out split
    vocab_size: int = 0  # tokenizer size and pad id, for a token-input student
    pad_id: int = 0

    @property
    def dims(self) -> dict[str, int]:
        return self.held.dims


def token_inputs(cfg: Config, questions: list[str]) -> tuple[torch.Tensor, int, int]:
    """(N, L) token ids of the questions on the input teacher's tokenizer, plus vocab size and pad id."""
    from transformers import AutoTokenizer

    from teachers import resolve_model_source

    spec = cfg.input_teacher()
    tok = AutoTokenizer.from_pretrained(resolve_model_source(spec.model), revision=spec.revision,
                                        trust_remote_code=spec.trust_remote_code)
    pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    enc = tok([spec.query_prefix + q for q in questions], truncation=True, max_length=min(spec.max_length, 128),
              add_special_tokens=False)
    width = max(1, max(len(ids) for ids in enc["input_ids"]))
    ids = torch.full((len(questions), width), pad, dtype=torch.long)
    for i, row in enumerate(enc["input_ids"]):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return ids, len(tok), pad


def load_run_data(cfg: Config, progress: bool = True, mode: str | None = None) -> RunData:
    """Pairs, split and targets: from the store, or (online mode) from teachers inside the job.

    ``mode`` overrides ``cfg.targets.mode`` (eval and predict always read the store).
    """
    pairs = load_pairs(cfg.data).dataset
    questions, answers = list(pairs["question"]), list(pairs["answer"])
    train_idx, held_idx = split_indices(questions, cfg.data.holdout_fraction, cfg.data.split_seed)
    device = pick_device(cfg)
    token_ids, vocab_size, pad_id = None, 0, 0
    if cfg.student.input == "tokens":
        token_ids, vocab_size, pad_id = token_inputs(cfg, questions)
    input_name = cfg.input_teacher().name
    if (mode or cfg.targets.mode) == "store":
        targets = compute_targets(cfg.teachers, questions, answers, cfg.targets.store_dir, device=device,
                                  progress=progress)
        train_t, held_t = targets.select(train_idx), targets.select(held_idx)
        inputs = token_ids if token_ids is not None else targets.q[input_name]
        source = StoredTargets(inputs[torch.as_tensor(train_idx)], train_t)
        stats_answers = train_t.a
        held_x = inputs[torch.as_tensor(held_idx)]
    else:
        from teachers import TeacherPool

        pool = TeacherPool(cfg.teachers, device=device)
        held_q, held_a = [questions[i] for i in held_idx], [answers[i] for i in held_idx]
        held_t = Targets(pool.encode(held_q, role="query", split=True, progress=progress),
                         pool.encode(held_a, role="answer", split=True, progress=progress))
        train_q, train_a = [questions[i] for i in train_idx], [answers[i] for i in train_idx]
        sample = np.random.default_rng(cfg.run.seed).permutation(len(train_idx))[:ONLINE_STATS_SAMPLE]
        stats_answers = pool.encode([train_a[i] for i in sample], role="answer", split=True)
        train_t = None
        source = OnlineTargets(pool, train_q, train_a, input_name,
                               token_ids[torch.as_tensor(train_idx)] if token_ids is not None else None)
        held_x = token_ids[torch.as_tensor(held_idx)] if token_ids is not None else held_t.q[input_name]
    return RunData(questions, answers, train_idx, held_idx, train_t, held_t, stats_answers, source, held_x,
                   vocab_size, pad_id)
