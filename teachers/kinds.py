"""Teacher kinds: how a spec's ``model`` string becomes a transformers model directory and an
identity of its weights. One registry, first match wins:

    gguf   a ``.gguf`` file, dequantised once into a cached model directory (:mod:`teachers.gguf`)
    hf     a hub id, a local directory or ``pkg:<module>`` (:mod:`teachers.source`; matches anything)

A kind is a module-level ``KIND`` with ``name``, ``matches(model)``, ``resolve(model, revision,
teacher=)`` -> a directory or hub id ``AutoModel.from_pretrained`` reads, ``identity(model,
revision, teacher=)`` -> a string that changes whenever the weights do (the target store's
fingerprint), ``hub_revision`` (spec.revision pins a hub commit of the resolved model) and
``build_on_main`` (resolving writes a shared cache: rank 0 first). Adding a kind of teacher is one
module with its ``KIND`` plus one line here, before ``hf``.
"""

from __future__ import annotations

from typing import Optional, Protocol

from . import gguf, source


class TeacherKind(Protocol):
    name: str
    hub_revision: bool
    build_on_main: bool

    def matches(self, model: str) -> bool: ...

    def resolve(self, model: str, revision: Optional[str] = None, *, teacher: str = "?") -> str: ...

    def identity(self, model: str, revision: Optional[str] = None, *, teacher: str = "?") -> str: ...


TEACHER_KINDS: dict[str, TeacherKind] = {
    "gguf": gguf.KIND,
    "hf": source.KIND,
}


def teacher_kind(model: str) -> TeacherKind:
    """The first registered kind that claims ``model``."""
    return next(k for k in TEACHER_KINDS.values() if k.matches(model))


def resolve_model_source(model: str, revision: Optional[str] = None, *, teacher: str = "?") -> str:
    """What ``AutoModel.from_pretrained`` reads for ``model``: a local directory (absolute) or a hub id."""
    return teacher_kind(model).resolve(model, revision, teacher=teacher)


def weights_identity(model: str, revision: Optional[str] = None, *, teacher: str = "?") -> str:
    """A string that changes whenever the weights (or tokenizer/config) behind ``model`` change."""
    return teacher_kind(model).identity(model, revision, teacher=teacher)
