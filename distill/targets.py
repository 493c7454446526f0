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

    q[name], a[name]: float32 tensors (N, d_name), or :class:`teachers.RowView` store views read
    on demand (a corpus-scale training split: see ``distill.rundata``).
    """

    q: dict[str, torch.Tensor]
    a: dict[str, torch.Tensor]

    def select(self, idx: np.ndarray) -> Targets:
        idx_t = torch.as_tensor(idx, dtype=torch.long)

        def sel(v):  # a store view stays a view; a tensor is indexed
            return v[idx_t] if isinstance(v, torch.Tensor) else v.select(np.asarray(idx, dtype=np.int64))

        return Targets({k: sel(v) for k, v in self.q.items()}, {k: sel(v) for k, v in self.a.items()})

    def tensors(self) -> Targets:
        """The same targets with every store view read into a float32 tensor (for small splits)."""

        def t(v):
            return v if isinstance(v, torch.Tensor) else v.tensor()

        return Targets({k: t(v) for k, v in self.q.items()}, {k: t(v) for k, v in self.a.items()})

    @property
    def dims(self) -> dict[str, int]:
        return {k: v.shape[1] for k, v in self.q.items()}


def teacher_input(q: dict[str, torch.Tensor], names: list[str]) -> torch.Tensor:
    """A teacher-input student's input: the named teachers' question embeddings, concatenated in
    order along the last dimension ((N, sum of their widths); one teacher: its own tensor)."""
    return q[names[0]] if len(names) == 1 else torch.cat([q[n] for n in names], dim=-1)


def compute_targets(teachers, questions: list[str], answers: list[str], store_dir: str,
                    device: str = "cpu", progress: bool = True, texts: bool = False, *, dtype: str = "float32",
                    shard_rows: int | None = None, views: bool = False, stats: dict | None = None) -> Targets:
    """Embed questions (query role) and answers (answer role) with every teacher, via the store.

    ``texts=True`` (plain-text distillation, questions and answers the same texts): the texts are
    embedded once per teacher (answer role: a text is a document) and ``q`` and ``a`` are both
    that array. Works in one process and inside a torch.distributed job (ranks embed disjoint
    shards). ``views=True``: the values are :class:`teachers.RowView` (rows read from the store
    on demand) instead of float32 tensors in memory. ``stats``: see ``teachers.build_targets``.
    """
    from teachers import TargetStore, build_targets
    from teachers.store import DEFAULT_SHARD_ROWS

    store = TargetStore(store_dir, shard_rows=shard_rows or DEFAULT_SHARD_ROWS)
    fields = {"text": questions} if texts else {"question": questions, "answer": answers}
    arrays = build_targets(list(teachers), fields, store, device=device, progress=progress, dtype=dtype, stats=stats)

    def get(name: str, field: str):
        v = arrays[(name, field)]
        return v if views else v.tensor()

    if texts:
        t = {s.name: get(s.name, "text") for s in teachers}
        return Targets(t, dict(t))
    return Targets({t.name: get(t.name, "question") for t in teachers},
                   {t.name: get(t.name, "answer") for t in teachers})


def config_targets(cfg, questions: list[str], answers: list[str], *, device: str = "cpu",
                   progress: bool | None = None, views: bool = False, stats: dict | None = None) -> Targets:
    """:func:`compute_targets` with the config's teachers, store, dtype, shard size and task."""
    return compute_targets(cfg.teachers, questions, answers, cfg.targets.store_dir, device=device,
                           progress=cfg.logging.progress if progress is None else progress,
                           texts=cfg.data.task == "texts", dtype=cfg.targets.dtype,
                           shard_rows=cfg.targets.shard_rows, views=views, stats=stats)
