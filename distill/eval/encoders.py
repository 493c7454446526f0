"""Any run's student as text -> embedding functions, and ``distill eval RUN --sts/--retrieval``.

A token (standalone) student encodes text itself (:class:`distill.encoder.Encoder`); a
teacher-input student reads its input teachers' query embeddings, so those teachers are loaded
(candidates of a retrieval file are the space teacher's answer embeddings, as in training).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from distill.data import DataError

Encode = Callable[[list[str]], np.ndarray]


def read_rows(path: str | Path, fields: tuple[str, ...]) -> list[dict]:
    """A JSONL file whose every line is an object holding ``fields``; ``DataError`` names FILE:LINE."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    rows = []
    for lineno, line in enumerate(p.read_text(encoding="utf-8", errors="strict").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as err:
            raise DataError(f"{p}:{lineno}: not valid JSON ({err})") from None
        if not isinstance(rec, dict) or (missing := [f for f in fields if f not in rec]):
            raise DataError(f"{p}:{lineno}: needs the fields {', '.join(fields)}"
                            + (f" (missing {', '.join(missing)})" if isinstance(rec, dict) else ""))
        rows.append(rec)
    if not rows:
        raise DataError(f"{p}: no rows")
    return rows


def run_encoders(cfg, run_dir: Path, student, space: str | None = None) -> tuple[str, Encode, Encode]:
    """(space, encode_query, encode_text) for the run's student. ``student``: the loaded student
    (:func:`distill.students.load_student`); ``space``: a teacher space (default: the input teacher's)."""
    space = space or student.input_teacher
    if space not in student.teacher_dims:
        raise DataError(f"space: {space!r} is not one of the student's spaces ({', '.join(student.teacher_dims)})")
    from distill.students import student_type

    if not student_type(student.input_mode).reads_teacher_input:  # it reads text: its own encoder
        from distill.encoder import Encoder

        enc = Encoder.from_pretrained(run_dir / "student")

        def encode(texts: list[str]) -> np.ndarray:
            return enc.encode(texts, space=space)

        return space, encode, encode
    from distill.targets import teacher_input
    from teachers import load_teacher

    specs = {t.name: t for t in cfg.teachers}
    loaded: dict = {}

    def teacher(name: str):
        if name not in loaded:
            loaded[name] = load_teacher(specs[name], device="cpu")
        return loaded[name]

    @torch.no_grad()
    def encode_query(texts: list[str]) -> np.ndarray:
        x = teacher_input({n: teacher(n).encode(texts, role="query") for n in student.input_teachers},
                          student.input_teachers)
        return student.eval()(x)[space].float().numpy()

    def encode_text(texts: list[str]) -> np.ndarray:
        return teacher(space).encode(texts, role="answer").float().numpy()

    return space, encode_query, encode_text


def eval_encoder(cfg, run_dir: Path, student, sts: str | None, retrieval: str | None) -> dict:
    """``distill eval --sts FILE --retrieval FILE``: the results by file kind."""
    from distill.eval import evaluate_pairs, evaluate_retrieval

    space, encode_query, encode_text = run_encoders(cfg, run_dir, student)
    out: dict = {"space": space}
    if sts:
        out["sts"] = {"file": str(sts), **evaluate_pairs(encode_query, read_rows(sts, ("s1", "s2", "score")))}
    if retrieval:
        rows = read_rows(retrieval, ("question", "answer", "label"))
        out["retrieval"] = {"file": str(retrieval), **evaluate_retrieval(encode_query, encode_text, rows)}
    return out


def format_encoder_results(res: dict) -> str:
    lines = [f"== encoder evaluation ({res['space']} space) =="]
    if "sts" in res:
        s = res["sts"]
        lines.append(f"  pair similarity ({s['pairs']} pairs): Spearman {s['spearman']:.4f}")
        if len(s["sets"]) > 1:
            lines += [f"    {name:<20} {v:.4f}" for name, v in s["sets"].items()]
    if "retrieval" in res:
        r = res["retrieval"]
        lines.append(f"  retrieval ({r['questions']} questions, {r['skipped']} without both labels skipped): "
                     f"MAP {r['map']:.4f}  MRR {r['mrr']:.4f}")
    return "\n".join(lines) + "\n"
