"""Encode raw text with an exported standalone student: no teacher, no training code.

::

    from distill import Encoder
    enc = Encoder.from_pretrained("runs/x/student")       # or the run dir itself
    vecs = enc.encode(["a text", "another"], space=None, batch_size=64)   # (N, d), L2-normalised

The export directory (:func:`export_standalone` writes it, atomically) holds

* ``config.json``: ``{"format_version", "model": "StandaloneStudent", "config": {...}}``;
* ``model.safetensors``: the student's weights;
* the tokenizer files of the input teacher (``tokenizer.json`` is the one read, with the
  ``tokenizers`` library; the others travel along for people who use ``transformers``);
* ``manifest.json``: size and sha256 of every file above, written last. Loading verifies it
  (:func:`distill.export.manifest.verify_export`): a truncated or altered file is refused with
  :class:`~distill.export.manifest.ExportError` naming it, before any weight is read.

Imports here are torch, safetensors, tokenizers, numpy and ``lattice``: never accelerate,
deepspeed, transformers, teachers or the trainer (a test checks ``sys.modules``).

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
(:func:`cmd_encode`).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from distill.export.manifest import ExportError, verify_export, write_manifest
from distill.standalone import MODEL_NAME, StandaloneStudent

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def export_standalone(student: StandaloneStudent, tokenizer_dir: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Write ``student`` + the tokenizer files of ``tokenizer_dir`` to ``path`` atomically."""
    from distill.checkpoint import write_dir_atomic  # light: no training code is imported

    def fill(tmp: Path) -> None:
        tmp.mkdir()
        write_standalone(student, tokenizer_dir, tmp)

    path = Path(path)
    write_dir_atomic(path, fill)
    return path


def write_standalone(student: StandaloneStudent, tokenizer_dir: str | os.PathLike, out: str | os.PathLike) -> None:
    """Write the export's files (weights, config.json, tokenizer files) into the existing directory
    ``out`` (the caller makes it atomic: :func:`export_standalone`, or the trainer's run export)."""
    from safetensors.torch import save_file

    out, src = Path(out), Path(tokenizer_dir)
    if not (src / "tokenizer.json").is_file():
        raise FileNotFoundError(f"{src}: no tokenizer.json to export with the student")
    tensors = {k: v.detach().cpu().contiguous() for k, v in student.state_dict().items()}
    save_file(tensors, str(out / WEIGHTS_NAME), metadata={"format": "pt"})
    with open(out / CONFIG_NAME, "w") as f:
        json.dump(student.config_doc(), f, indent=2)  # heads keep their order
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, out / name)
    write_manifest(out)  # last: it covers every file above


def load_tokenizer(tokenizer_file: str | os.PathLike, max_tokens: int):
    """The ``tokenizers`` tokenizer as the student uses it: no padding, truncation at ``max_tokens``
    (the trainer tokenizes with this too, so training inputs and ``encode`` agree exactly)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_tokens)
    return tokenizer


def load_standalone(path: str | os.PathLike) -> tuple[StandaloneStudent, Path]:
    """An export (or run dir) -> (the student with its weights, in eval mode; the export dir)."""
    from safetensors.torch import load_file

    root = find_export(path)
    if not (root / WEIGHTS_NAME).is_file():
        raise FileNotFoundError(f"{root}: the export has no {WEIGHTS_NAME}")
    verify_export(root)
    doc = json.loads((root / CONFIG_NAME).read_text())
    student = StandaloneStudent.from_config_doc(doc)
    student.load_state_dict(load_file(str(root / WEIGHTS_NAME)), strict=True)
    return student.eval(), root


def find_export(path: str | os.PathLike) -> Path:
    """A run dir (with ``student/``) or an export dir -> the export dir; ``FileNotFoundError`` /
    ``ValueError`` with the reason when there is no standalone student there."""
    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(f"{p}: no such directory")
    for cand in (p, p / "student"):
        cfg = cand / CONFIG_NAME
        if cfg.is_file():
            try:
                doc = json.loads(cfg.read_text())
            except (OSError, ValueError) as err:
                raise ValueError(f"{cfg}: not readable JSON ({err})") from err
            if doc.get("model") == MODEL_NAME:
                return cand
            if cand == p / "student":
                raise ValueError(
                    f"{cand}: the exported student is not a standalone (token-input) student "
                    f"(model {doc.get('model')!r}); it needs its teacher at query time"
                )
    raise FileNotFoundError(f"{p}: no exported standalone student (expected {p / 'student' / CONFIG_NAME})")


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
            encodings = self.tokenizer.encode_batch(texts, add_special_tokens=False)
        except Exception as err:  # name the text: encode one by one until the failing one
            for i, t in enumerate(texts):
                try:
                    self.tokenizer.encode(t, add_special_tokens=False)
                except Exception as one:
                    raise _indexed(ValueError, i, f"the tokenizer failed ({one})") from None
            raise ValueError(f"the tokenizer failed ({err})") from None
        ids = [e.ids for e in encodings]
        for i, x in enumerate(ids):
            if not x:
                raise _indexed(ValueError, i, f"{_preview(texts[i])} has no tokens (an embedding of nothing is "
                                              f"undefined, as for an empty text)")
        return ids

    def batch_tensors(self, ids: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """token id lists -> (ids (B, L), mask (B, L)) right-padded with the pad id."""
        width = max(1, max(len(x) for x in ids))
        out = np.full((len(ids), width), self.config.pad_id, dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.float32)
        for j, x in enumerate(ids):
            out[j, : len(x)] = x
            mask[j, : len(x)] = 1.0
        return torch.from_numpy(out), torch.from_numpy(mask)

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


# ------------------------------------------------------------------------------------------------
# CLI: distill encode
# ------------------------------------------------------------------------------------------------
def read_texts(path: str | os.PathLike) -> list[str]:
    """A .jsonl file (``text`` field) or a text file (one text per line) -> texts in order.

    Raises ``distill.data.DataError`` naming ``FILE:LINE`` for a non-UTF-8 line, a line that is
    not JSON, a missing/non-string ``text`` field or an empty text.
    """
    from distill.data import DataError

    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    jsonl = p.suffix.lower() in (".jsonl", ".ndjson")
    texts = []
    with open(p, "rb") as f:
        raw_lines = f.read().split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()
    for lineno, raw in enumerate(raw_lines, start=1):
        try:
            line = raw.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as err:
            raise DataError(f"{p}:{lineno}: not valid UTF-8 ({err.reason} at byte {err.start})") from None
        if jsonl:
            if not line.strip():
                raise DataError(f"{p}:{lineno}: empty line (every line must be a JSON object with a 'text' field)")
            try:
                rec = json.loads(line)
            except ValueError as err:
                raise DataError(f"{p}:{lineno}: not valid JSON ({err})") from None
            if not isinstance(rec, dict) or "text" not in rec:
                raise DataError(f"{p}:{lineno}: missing 'text' field")
            text = rec["text"]
            if not isinstance(text, str):
                raise DataError(f"{p}:{lineno}: 'text' must be a string, got {type(text).__name__}")
        else:
            text = line
        if not text.strip():
            raise DataError(f"{p}:{lineno}: empty text")
        texts.append(text)
    if not texts:
        raise DataError(f"{p}: no texts")
    return texts


def cmd_encode(args) -> int:
    from distill.data import DataError
    from distill.errors import RunDirError

    if args.batch_size < 1:
        raise DataError(f"--batch-size: must be >= 1, got {args.batch_size}")
    out = Path(args.output)
    if out.suffix != ".npy":
        raise DataError(f"--output: {out} must end in .npy")
    try:
        enc = Encoder.from_pretrained(args.run_dir)
    except (FileNotFoundError, ValueError) as err:
        raise RunDirError(str(err)) from None
    if args.space is not None and args.space not in enc.spaces:
        raise DataError(f"--space: {args.space!r} is not one of this student's spaces ({', '.join(enc.spaces)})")
    texts = read_texts(args.input)
    try:
        vecs = enc.encode(texts, space=args.space, batch_size=args.batch_size)
    except ExportError as err:
        raise RunDirError(str(err)) from None
    except (TypeError, ValueError) as err:  # a text the encoder refuses: one text per line, so FILE:LINE
        if getattr(err, "index", None) is None:
            raise
        raise DataError(f"{args.input}:{err.index + 1}: {err.reason}") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex}.npy"
    try:
        np.save(tmp, vecs)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    print(f"wrote {out}: {vecs.shape[0]} x {vecs.shape[1]} ({args.space or enc.config.input_teacher} space)")
    return 0


__all__ = ["Encoder", "cmd_encode", "export_standalone", "find_export", "load_standalone", "load_tokenizer",
           "read_texts", "write_standalone"]
