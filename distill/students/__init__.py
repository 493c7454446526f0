"""Student types: one protocol, one registry. The trainer, the commands and the checkpoint code
ask the registry; none of them branches on the type.

A student *type* (an entry of :data:`STUDENT_TYPES`, named by ``student.input`` in the config)
builds, describes and loads one kind of student:

    name                  the config's ``student.input`` value, recorded as ``input_mode``
    reads_teacher_input   x is the input teachers' question embeddings (else the type makes x from
                          text: :meth:`text_inputs`); the evaluator adds the same-input ridge then
    reads_text            can train on plain texts (``data.task: texts``)
    starts_from_export    can start from an earlier run's export (``student.init_from``)
    export_file           the file that marks its export directory
    section_config(section, input_names) -> dict   what a resume must match, from the config alone
    face_width(cfg) -> (width | None, what)        what the lattice's input face must hold
    text_inputs(cfg, texts) -> (N, ...) | None     the student's inputs of these texts (None: the
                                                   input teachers' question embeddings)
    build(cfg, data) -> student                    from the config and the run data
    load(export_dir) -> student                    an export, in eval mode

A *student* (what ``build``/``load`` return) is an ``nn.Module`` with

    forward(x, steps=None) -> {teacher: (B, d_teacher)}
    trace(x, trace_steps) -> {step: (B, D, H, W, C)}   lattice states, for TensorBoard
    head_weights() -> {teacher: weight}                 for the histograms
    student_config() -> dict                            export config / checkpoint meta
    save_pretrained(path)                               the export (loads without training code)
    teacher_dims, input_teacher, input_teachers, input_mode, lattice_config (None: no lattice)

Adding a student type: write ``distill/students/<name>.py`` with the student and a type object
``STUDENT_TYPE``, add one line to :data:`STUDENT_TYPES` and the name to ``StudentSection.input``'s
choices (a test checks the two agree). Entries are module paths, imported on first use, so the
query-time ``Encoder`` (which imports :mod:`distill.students.tokens`) loads no other type.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Protocol


class StudentType(Protocol):
    name: str
    reads_teacher_input: bool
    reads_text: bool
    starts_from_export: bool
    export_file: str

    def section_config(self, section, input_teacher: str | list[str]) -> dict: ...

    def face_width(self, cfg) -> tuple[int | None, str]: ...

    def text_inputs(self, cfg, texts: list[str]) -> Any: ...

    def build(self, cfg, data) -> Any: ...

    def load(self, export_dir: str | Path) -> Any: ...


# The registry: student.input name -> the module holding that type's STUDENT_TYPE.
STUDENT_TYPES: dict[str, str] = {
    "teacher": "distill.students.teacher",
    "tokens": "distill.students.tokens",
}


def student_type(name: str) -> StudentType:
    """The registered type called ``name`` (``student.input``, or a student's ``input_mode``)."""
    if name not in STUDENT_TYPES:
        raise ValueError(f"student.input: {name!r} is not one of {', '.join(STUDENT_TYPES)}")
    return importlib.import_module(STUDENT_TYPES[name]).STUDENT_TYPE


def student_types() -> dict[str, StudentType]:
    """Every registered type, by name."""
    return {name: student_type(name) for name in STUDENT_TYPES}


def section_config(section, input_teacher: str | list[str]) -> dict:
    """The configured student's fields as its type records them (what a resume must match)."""
    return student_type(section.input).section_config(section, input_teacher)


def load_student(export_dir: str | Path):
    """The student exported in ``export_dir``, whatever its type (found by its export file)."""
    export_dir = Path(export_dir)
    types = student_types().values()
    for t in types:
        if (export_dir / t.export_file).is_file():
            return t.load(export_dir)
    raise FileNotFoundError(f"{export_dir}: no exported student (none of {', '.join(t.export_file for t in types)})")


__all__ = ["STUDENT_TYPES", "StudentType", "load_student", "section_config", "student_type", "student_types"]
