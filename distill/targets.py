"""Teacher targets for a set of pairs, from the target store (teachers run only when needed).

The student never sees a teacher object, only these arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Targets:
    """Per-teacher question and answer embeddings of the same N pairs.

    q[name], a[name]: float32 tensors (N, d_name).
    """

    q: dict[str, torch.Tensor]
    a: dict[str, torch.Tensor]

    def select(self, idx: np.ndarray) -> Targets:
        idx_t = torch.as_tensor(idx, dtype=torch.long)
        return Targets({k: v[idx_t] for k, v in self.q.items()}, {k: v[idx_t] for k, v in self.a.items()})

    @property
    def dims(self) -> dict[str, int]:
        return {k: v.shape[1] for k, v in self.q.items()}


def teacher_input(q: dict[str, torch.Tensor], names: list[str]) -> torch.Tensor:
    """A teacher-input student's input: the named teachers' question embeddings, concatenated in
    order along the last dimension ((N, sum of their widths); one teacher: its own tensor)."""
    return q[names[0]] if len(names) == 1 else torch.cat([q[n] for n in names], dim=-1)


def compute_targets(teachers, questions: list[str], answers: list[str], store_dir: str,
                    device: str = "cpu", progress: bool = True, texts: bool = False) -> Targets:
    """Embed questions (query role) and answers (answer role) with every teacher, via the store.

    ``texts=True`` (plain-text distillation, questions and answers the same texts): the texts are
    embedded once per teacher (answer role: a text is a document) and ``q`` and ``a`` are both
    that array. Works in one process and inside a torch.distributed job (the teachers package
    shards the work and writes the store from one rank).
    """
    from teachers import TargetStore, build_targets

    store = TargetStore(store_dir)
    if texts:
        arrays = build_targets(list(teachers), {"text": questions}, store, device=device, progress=progress)
        t = {s.name: torch.from_numpy(np.array(arrays[(s.name, "text")], dtype=np.float32)) for s in teachers}
        return Targets(t, dict(t))
    arrays = build_targets(list(teachers), {"question": questions, "answer": answers}, store,
                           device=device, progress=progress)
    q = {t.name: torch.from_numpy(np.array(arrays[(t.name, "question")], dtype=np.float32)) for t in teachers}
    a = {t.name: torch.from_numpy(np.array(arrays[(t.name, "answer")], dtype=np.float32)) for t in teachers}
    return Targets(q, a)
