"""Encode raw text with an exported standalone student: no teacher, no training code.

::

    from distill import Encoder
    enc = Encoder.from_pretrained("runs/x/student")       # or the run dir itself
    vecs = enc.encode(["a text", "another"], space=None, batch_size=64)   # (N, d), L2-normalised

The export directory (:func:`distill.students.tokens.export_standalone` writes it, atomically) holds

* ``config.json``: ``{"format_version", "model": "StandaloneStudent", "config": {...}}``;
* ``model.safetensors``: the student's weights;
* the tokenizer files of the input teacher (``tokenizer.json`` is the one read, with the
  ``tokenizers`` library; the others travel along for people who use ``transformers``);
* ``manifest.json``: size and sha256 of every file above, written last. Loading verifies it
  (:func:`distill.export.manifest.verify_export`): a truncated or altered file is refused with
  :class:`~distill.export.manifest.ExportError` naming it, before any weight is read.

Imports here are torch, safetensors, tokenizers, numpy, ``lattice``, ``fileio``, the tokenisation
leaf :mod:`distill.tokens`, the student model :mod:`distill.students.tokens` and the manifest leaf
:mod:`distill.export.manifest`: never accelerate, deepspeed, transformers, teachers or the trainer
(a test checks ``sys.modules``).

Text policy: ``encode`` takes one ``str`` or any iterable of ``str`` (a generator is read once).
An item that is not a ``str`` is refused with ``TypeError``; an empty (or all-whitespace) text, a
text that tokenises to nothing (``"\u200b"``, ``"\x00"``: an embedding of nothing is undefined),
a text with a lone surrogate (not encodable as UTF-8) and a tokenizer failure are refused with
``ValueError``; each message starts ``text I:`` and the exception's ``index`` attribute is I. A
text longer than ``max_tokens`` tokens is truncated there (the lattice folds what exceeds its
face, see ``lattice/tokens.py``). Special tokens ([CLS]/[SEP]) are not added: the student's
mean and face hold the text's own tokens only. An output row that is not finite (damaged
weights that still passed as a file) raises :class:`~distill.export.manifest.ExportError`: a
NaN row is never returned.

CLI: ``distill encode RUN_DIR --input FILE --output OUT.npy [--space NAME] [--batch-size N]``
(:func:`distill.commands.cmd_encode`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from distill.export.manifest import ExportError
from distill.students.tokens import (
    StandaloneStudent,
    export_standalone,
    find_export,
    load_standalone,
    write_standalone,
)
from distill.tokens import load_tokenizer, mask_of, pad, token_ids


class Encoder:
    """A loaded standalone student + its tokenizer. ``spaces``: the teacher spaces it can output."""

    def __init__(self, student: StandaloneStudent, tokenizer, path: Optional[Path] = None):
        self.student = student.eval()
        self.tokenizer = tokenizer
        self.path = path
        self.config = student.config
        self.spaces = list(student.config.heads)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str = "cpu") -> Encoder:
        root = find_export(path)
        tok_file = root / "tokenizer.json"
        if not tok_file.is_file():
            raise FileNotFoundError(f"{root}: the export has no tokenizer.json (tokenizer missing from the export)")
        student, root = load_standalone(root)
        tokenizer = load_tokenizer(tok_file, student.config.max_tokens)
        return cls(student.to(device), tokenizer, root)

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """texts -> token ids (no special tokens, truncated at max_tokens). Refused (the message starts
        ``text I:``, the error's ``index`` is I): a non-``str`` item (``TypeError``), an empty text, a
        text with a lone surrogate, a tokenizer failure, a text with no tokens (``ValueError``)."""
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise _indexed(TypeError, i, f"expected str, got {type(t).__name__} ({_preview(t)})")
            if not t.strip():
                raise _indexed(ValueError, i, "empty text (an embedding of nothing is undefined)")
            try:
                t.encode("utf-8")
            except UnicodeEncodeError as err:
                raise _indexed(ValueError, i, f"not valid Unicode: lone surrogate {t[err.start]!r} at "
                                              f"character {err.start}") from None
        texts = list(texts)
        try:
            ids = token_ids(self.tokenizer, texts)
        except Exception as err:  # name the text: encode one by one until the failing one
            for i, t in enumerate(texts):
                try:
                    token_ids(self.tokenizer, [t])
                except Exception as one:
                    raise _indexed(ValueError, i, f"the tokenizer failed ({one})") from None
            raise ValueError(f"the tokenizer failed ({err})") from None
        for i, x in enumerate(ids):
            if not x:
                raise _indexed(ValueError, i, f"{_preview(texts[i])} has no tokens (an embedding of nothing is "
                                              f"undefined, as for an empty text)")
        return ids

    def batch_tensors(self, ids: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """token id lists -> (ids (B, L), mask (B, L) float): padded by :func:`distill.tokens.pad`,
        the padding read as id 0 under a zero mask."""
        x = pad(ids)
        return x.clamp(min=0), mask_of(x).float()

    def get_sentence_embedding_dimension(self, space: Optional[str] = None) -> int:
        """The output width in ``space`` (default: the input teacher's), as sentence-transformers names it."""
        return self.config.heads[self.config.input_teacher if space is None else space]

    def encode(self, texts, space: Optional[str] = None, batch_size: int = 64, *,
               normalize_embeddings: bool = True, convert_to_numpy: bool = True, convert_to_tensor: bool = False,
               show_progress_bar: Optional[bool] = None, prompt: Optional[str] = None,
               precision: str = "float32", output_value: Optional[str] = "sentence_embedding",
               device: Optional[str] = None, **kwargs):
        """texts -> (N, d) float32 embeddings in ``space`` (default: the input teacher's).

        ``texts``: one ``str`` (-> one (d,) row, as sentence-transformers returns) or any iterable of
        ``str`` (read once). The keyword arguments are sentence-transformers' ``encode`` arguments, so
        retrieval code and MTEB call this as they call a ``SentenceTransformer``:
        ``normalize_embeddings`` (default True: rows are L2-normalised; False returns the head's raw
        output), ``convert_to_tensor`` (a torch tensor), ``convert_to_numpy`` (default; with both
        False, a list of 1-D tensors), ``show_progress_bar``, ``prompt`` (a string put before every
        text), ``device`` (where the tensor is returned). ``precision`` is float32 only, and
        ``output_value`` ``"sentence_embedding"`` only. Other keyword arguments (MTEB passes
        ``task_name``, ``prompt_type``, ...) are accepted and ignored. See the module docstring for the
        text policy."""
        single = isinstance(texts, str)
        if single:
            texts = [texts]
        elif isinstance(texts, np.ndarray):
            texts = texts.tolist()
        else:
            try:
                texts = list(texts)  # materialised once: a generator is read here and only here
            except TypeError:
                raise TypeError(f"texts: expected a str or an iterable of str, got {type(texts).__name__}") from None
        space = self.config.input_teacher if space is None else space
        if space not in self.config.heads:
            raise ValueError(f"space: {space!r} is not one of this student's spaces ({', '.join(self.spaces)})")
        if batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
        if precision != "float32":
            raise ValueError(f"precision: {precision!r}: this encoder returns float32 only")
        if output_value not in ("sentence_embedding", None):
            raise ValueError(f"output_value: {output_value!r}: this encoder returns sentence embeddings only")
        if prompt:
            texts = [prompt + t if isinstance(t, str) else t for t in texts]
        ids = self.tokenize(texts)
        out = np.empty((len(ids), self.config.heads[space]), dtype=np.float32)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # similar lengths pad little
        head = self.student.heads[space]
        model_device = next(self.student.parameters()).device
        starts = range(0, len(order), batch_size)
        if show_progress_bar:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="encode", unit="batch")
        with torch.inference_mode():
            for s in starts:
                idx = order[s: s + batch_size]
                x, m = self.batch_tensors([ids[i] for i in idx])
                y = head(self.student.pooled(x.to(model_device), m.to(model_device)))
                if normalize_embeddings:
                    y = torch.nn.functional.normalize(y, dim=-1)
                out[idx] = y.float().cpu().numpy()
        bad = np.flatnonzero(~np.isfinite(out).all(axis=1))
        if bad.size:
            raise ExportError(f"text {int(bad[0])}: the student's output is not finite ({bad.size} of {len(out)} "
                              f"rows): its weights are damaged ({self.path or 'in memory'}); export the run again")
        if single:
            out = out[0]
        if convert_to_tensor:
            return torch.from_numpy(out).to(device or "cpu")
        if convert_to_numpy:
            return out
        return list(torch.from_numpy(out).to(device or "cpu")) if not single else torch.from_numpy(out)


def _preview(x, n: int = 30) -> str:
    r = repr(x)
    return r if len(r) <= n else r[: n - 3] + "..."


def _indexed(cls: type[Exception], index: int, reason: str) -> Exception:
    """``cls("text INDEX: reason")`` carrying ``index`` (``distill encode`` turns it into FILE:LINE)."""
    err = cls(f"text {index}: {reason}")
    err.index = index
    err.reason = reason
    return err


__all__ = ["Encoder", "export_standalone", "find_export", "load_standalone", "load_tokenizer", "write_standalone"]
