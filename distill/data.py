"""Question→answer pairs: loading from files, validation with locations, train/validation/test splits.

``load_pairs(cfg.data)`` reads JSONL, JSON, CSV, Parquet or a saved ``datasets`` directory
(or ``builtin:<name>``, the shipped demo data) into a ``datasets.Dataset`` with the columns
``question``, ``answer``, ``category`` and ``row`` (the 1-based line of JSONL/CSV files, the
record index otherwise). Every bad row is reported as ``FILE:LINE: problem``; ``on_error``
decides between stopping at the first one and skipping them with a count.

``split_indices`` splits the *distinct* questions (case- and whitespace-insensitive) into
train / validation / test, so no question is in two splits, the same on every run and every
rank for the same data and seed.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)
BUILTIN_DIR = Path(__file__).resolve().parent / "builtin_data"
SUFFIX_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet",
                  ".txt": "txt"}
TXT_FIELD = "text"  # the one field of a .txt record


class DataError(ValueError):
    """Bad data. ``str(err)`` names the file and, where there is one, the line or row."""


@dataclass
class Pairs:
    """Loaded pairs plus what was skipped."""

    dataset: datasets.Dataset  # noqa: F821 (imported lazily: datasets is slow to import)
    skipped: int
    source: str


def resolve_data_path(path: str) -> Path:
    if path.startswith("builtin:"):
        name = path.split(":", 1)[1]
        p = BUILTIN_DIR / f"{name}.jsonl"
        if not p.is_file():
            known = ", ".join(sorted(f"builtin:{q.stem}" for q in BUILTIN_DIR.glob("*.jsonl")))
            raise DataError(f"data.path: unknown built-in data '{path}' (known: {known})")
        return p
    return Path(path).expanduser()


def _suffix(p: Path) -> str:
    """The format suffix, looking through a ``.gz`` compression suffix."""
    return Path(p.stem).suffix.lower() if p.suffix.lower() == ".gz" else p.suffix.lower()


def _open(p: Path):
    """A binary file object; ``.gz`` files are decompressed as they are read (never whole)."""
    if p.suffix.lower() == ".gz":
        import gzip

        return gzip.open(p, "rb")
    return open(p, "rb")


def detect_format(p: Path, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    if p.is_dir():
        return "dataset"
    fmt = SUFFIX_FORMATS.get(_suffix(p))
    if fmt is None:
        raise DataError(
            f"{p}: cannot tell the format from the suffix '{p.suffix}'; set data.format to one of "
            "jsonl, json, csv, parquet, dataset (each may be gzip-compressed: .jsonl.gz)"
        )
    if p.suffix.lower() == ".gz" and fmt == "parquet":
        raise DataError(f"{p}: Parquet is compressed inside the file; a .parquet.gz cannot be read")
    return fmt


def _decode(p: Path) -> str:
    with _open(p) as f:
        raw = f.read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(f"{p}:{line}: not valid UTF-8 ({err.reason}, byte 0x{raw[err.start]:02x})") from None


def _jsonl_lines(p: Path):
    """Yield (line number, text) of a JSONL file, read and decoded one line at a time.

    Streaming keeps memory to one line, where decoding the whole file first held the raw bytes,
    the decoded text and its split lines at once (three copies of the file before any record).
    Lines end at "\n" only (a "\r\n" ending is whitespace to JSON), as an editor counts them.
    """
    import gzip
    import zlib

    try:
        with _open(p) as f:
            for lineno, raw in enumerate(f, start=1):
                try:
                    # utf-8-sig on line 1: a byte-order mark is not part of the first record.
                    yield lineno, raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
                except UnicodeDecodeError as err:
                    raise DataError(f"{p}:{lineno}: not valid UTF-8 ({err.reason}, "
                                    f"byte 0x{raw[err.start]:02x})") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise DataError(f"{p}: not a readable gzip file ({err})") from None


def _records(p: Path, fmt: str):
    """Yield (row, record-or-DataError) in file order."""
    if fmt == "jsonl":
        for lineno, line in _jsonl_lines(p):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                yield lineno, DataError(f"{p}:{lineno}: not valid JSON ({err.msg} at column {err.colno})")
                continue
            yield lineno, rec
    elif fmt == "txt":
        # One text per line; an empty line is an empty text (an error, not a separator).
        for lineno, line in _jsonl_lines(p):
            yield lineno, {TXT_FIELD: line.rstrip("\r\n")}
    elif fmt == "json":
        text = _decode(p)
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"{p}:{err.lineno}: not valid JSON ({err.msg} at column {err.colno})") from None
        if isinstance(obj, dict) and isinstance(obj.get("data"), list):
            obj = obj["data"]
        if not isinstance(obj, list):
            raise DataError(f"{p}: a JSON data file must hold a list of records (or {{\"data\": [...]}})")
        for i, rec in enumerate(obj, start=1):
            yield i, rec
    elif fmt == "csv":
        text = _decode(p)
        reader = csv.DictReader(io.StringIO(text, newline=""))
        try:
            for rec in reader:
                # The header is line 1; reader.line_num is the line the record ended on.
                yield reader.line_num, rec
        except csv.Error as err:
            raise DataError(f"{p}:{reader.line_num}: not valid CSV ({err})") from None
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(p)
        except Exception as err:  # pyarrow raises several types for a bad file
            raise DataError(f"{p}: cannot read Parquet file ({err})") from None
        for i, rec in enumerate(table.to_pylist(), start=1):
            yield i, rec
    elif fmt == "dataset":
        import datasets

        try:
            ds = datasets.load_from_disk(str(p))
        except Exception as err:
            raise DataError(f"{p}: cannot load a saved datasets directory ({err})") from None
        if isinstance(ds, datasets.DatasetDict):
            if "train" not in ds:
                raise DataError(f"{p}: a DatasetDict needs a 'train' split (has: {', '.join(ds)})")
            ds = ds["train"]
        for i, rec in enumerate(ds, start=1):
            yield i, rec
    else:  # pragma: no cover - the schema only allows the formats above
        raise DataError(f"{p}: unknown format {fmt!r}")


def _text(rec: dict, field: str, where: str) -> str:
    if field not in rec:
        raise DataError(f"{where}: missing field '{field}' (fields: {', '.join(map(str, rec)) or 'none'})")
    v = rec[field]
    if not isinstance(v, str):
        raise DataError(f"{where}: field '{field}' must be text, got {type(v).__name__}")
    v = v.strip()
    if not v:
        raise DataError(f"{where}: field '{field}' is empty")
    return v


@dataclass
class Texts:
    """Plain texts (data.task=texts): ``texts`` in file order, ``group[i]`` the record text i came
    from (a record with several text_fields gives several texts), ``keys[g]`` record g's first text
    (what the split is by)."""

    texts: list[str]
    group: np.ndarray
    keys: list[str]
    skipped: int
    source: str


class _Skips:
    """Bad rows skipped under ``on_error: skip``: how many, and the first one's error."""

    def __init__(self):
        self.count, self.first = 0, None

    def report(self, path: Path) -> int:
        if self.count:
            logger.warning("skipped %d bad row(s) in %s (first: %s)", self.count, path, self.first)
        return self.count


def _checked_records(p: Path, fmt: str, fields: list[str], on_error: str, skips: _Skips):
    """``(row, record, [text of each field])`` of every good record of ``p``; a bad one raises its
    ``DataError`` (FILE:LINE for line formats, else the record number) or, with ``on_error:
    skip``, is counted in ``skips``."""
    for row, rec in _records(p, fmt):
        where = f"{p}:{row}" if fmt in ("jsonl", "csv", "txt") else f"{p}: record {row}"
        try:
            if isinstance(rec, DataError):
                raise rec
            if not isinstance(rec, dict):
                raise DataError(f"{where}: a record must be an object with fields, got {type(rec).__name__}")
            got = [_text(rec, f, where) for f in fields]
        except DataError as err:
            if on_error == "stop":
                raise
            skips.count += 1
            skips.first = skips.first or err
            continue
        yield row, rec, got


def load_texts(cfg) -> Texts:
    """Load the texts described by a :class:`distill.config.DataSection` with ``task: texts``.

    A missing field, an empty text or a non-UTF-8 line is a ``DataError`` naming FILE:LINE (JSONL,
    CSV, TXT) or the record; ``on_error: skip`` skips the record instead. ``max_pairs`` caps records.
    """
    p = resolve_data_path(cfg.path)
    if not p.exists():
        raise DataError(f"data.path: file not found: {p}")
    fmt = detect_format(p, cfg.format)
    fields = [TXT_FIELD] if fmt == "txt" else list(cfg.text_fields)
    texts, group, keys = [], [], []
    skips = _Skips()
    for _row, _rec, got in _checked_records(p, fmt, fields, cfg.on_error, skips):
        texts.extend(got)
        group.extend([len(keys)] * len(got))
        keys.append(got[0])
        if cfg.max_pairs is not None and len(keys) >= cfg.max_pairs:
            break
    skipped = skips.report(p)
    if not keys:
        raise DataError(f"{p}: no texts" + (f" ({skipped} bad rows skipped)" if skipped else ""))
    return Texts(texts, np.asarray(group, dtype=np.int64), keys, skipped, str(p))


SPAN_WORDS = (2, 12)  # a span's length in words, at most the text's length - 1
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def text_span(text: str, rng: random.Random) -> str | None:
    """A random contiguous span of 2 to min(12, n - 1) of the text's n whitespace-separated words
    (None under 4 words): two draws of ``rng``."""
    w = text.split()
    if len(w) < 4:
        return None
    n = rng.randint(SPAN_WORDS[0], min(SPAN_WORDS[1], len(w) - 1))
    a = rng.randint(0, len(w) - n)
    return " ".join(w[a:a + n])


def text_sentences(text: str) -> list[str]:
    """The text's sentences (split after . ! ? and whitespace) of 3 words or more, each once; none
    when the text is a single sentence."""
    parts = list(dict.fromkeys(s.strip() for s in _SENTENCE_END.split(text.strip())))
    parts = [s for s in parts if len(s.split()) >= 3]
    return [] if len(parts) == 1 and parts[0] == text.strip() else parts


def extra_texts(texts: list[str], spans: int = 0, sentences: bool = False) -> tuple[list[str], np.ndarray]:
    """(extra texts, the index in ``texts`` each came from): every text's sentences
    (``sentences``), then ``spans`` rounds of one span per text, round k drawn in order from
    ``random.Random(k)`` over ALL of ``texts`` (so a text's spans depend only on the texts before it:
    a prefix of a file gets the same spans whatever follows, and a run gets the same ones every time).
    A text's extras never repeat the text itself."""
    out: list[str] = []
    src: list[int] = []
    if sentences:
        for i, t in enumerate(texts):
            for s in text_sentences(t):
                out.append(s)
                src.append(i)
    for k in range(spans):
        rng = random.Random(k)
        for i, t in enumerate(texts):
            s = text_span(t, rng)
            if s is not None:
                out.append(s)
                src.append(i)
    return out, np.asarray(src, dtype=np.int64)


def load_pairs(cfg) -> Pairs:
    """Load the pairs described by a :class:`distill.config.DataSection`."""
    import datasets
    from datasets.table import InMemoryTable

    p = resolve_data_path(cfg.path)
    if not p.exists():
        raise DataError(f"data.path: file not found: {p}")
    fmt = detect_format(p, cfg.format)
    if fmt == "txt":
        raise DataError(f"{p}: a text file holds one text per line, not question/answer pairs; set data.task=texts")
    wanted = set(cfg.categories) if cfg.categories is not None else None
    cols = _ArrowColumns()
    skips = _Skips()
    fields = [cfg.question_field, cfg.answer_field]
    for row, rec, (q, a) in _checked_records(p, fmt, fields, cfg.on_error, skips):
        cat = rec.get(cfg.category_field)
        cat = "" if cat is None else str(cat)
        if wanted is not None and cat not in wanted:
            continue
        cols.add(q, a, cat, row)
        if cfg.max_pairs is not None and len(cols) >= cfg.max_pairs:
            break
    skipped = skips.report(p)
    if not len(cols):
        why = f" after keeping only categories {sorted(wanted)}" if wanted is not None else ""
        raise DataError(f"{p}: no question/answer pairs{why}" + (f" ({skipped} bad rows skipped)" if skipped else ""))
    # An explicit fingerprint: without one, datasets hashes the whole table by pickling it, which
    # peaked at 4x the texts' size for a 1M-pair file (bench/scale.py). Data and settings name it.
    st = p.stat()
    fp = hashlib.sha256(repr((str(p.resolve()), st.st_size, st.st_mtime_ns, fmt, cfg.question_field,
                              cfg.answer_field, cfg.category_field, cfg.categories, cfg.on_error,
                              cfg.max_pairs)).encode()).hexdigest()[:16]
    ds = datasets.Dataset(InMemoryTable(cols.table()), fingerprint=fp)
    return Pairs(dataset=ds, skipped=skipped, source=str(p))


class _ArrowColumns:
    """The pairs' columns, moved into Arrow every ``chunk`` rows.

    Python holds at most one chunk of str objects (each ~50 bytes of overhead plus the text, and
    a freed str often keeps its memory in the process); the Arrow buffers hold the texts once,
    packed. Building the Dataset from full Python lists held every text twice at the end.
    """

    SCHEMA_FIELDS = (("question", "string"), ("answer", "string"), ("category", "string"), ("row", "int64"))

    def __init__(self, chunk: int = 16384):
        import pyarrow as pa

        self.schema = pa.schema([(k, getattr(pa, t)()) for k, t in self.SCHEMA_FIELDS])
        self.chunk = chunk
        self.batches = []
        self.n = 0
        self._cols: tuple[list, list, list, list] = ([], [], [], [])

    def __len__(self) -> int:
        return self.n

    def add(self, question: str, answer: str, category: str, row: int) -> None:
        for col, v in zip(self._cols, (question, answer, category, row)):
            col.append(v)
        self.n += 1
        if len(self._cols[0]) >= self.chunk:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self._cols[0]:
            self.batches.append(pa.record_batch(list(self._cols), schema=self.schema))
            self._cols = ([], [], [], [])

    def table(self):
        import pyarrow as pa

        self._flush()
        return pa.Table.from_batches(self.batches, schema=self.schema)


_space = re.compile(r"\s+")


def normalise_question(q: str) -> str:
    return _space.sub(" ", q.strip().casefold())


@dataclass
class Split:
    """Row indices of the three splits; no normalised question is in two of them."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


def split_indices(questions: list[str], test_fraction: float, validation_fraction: float, seed: int,
                  test_max: int | None = None, validation_max: int | None = None) -> Split:
    """Train / validation / test row indices, by distinct question.

    The distinct normalised questions are sorted and permuted with ``seed``; the first
    ``round(test_fraction * n)`` (at most ``test_max``) are the test split, the next
    ``round(validation_fraction * n)`` (at most ``validation_max``) the validation split, the rest training: the split depends only on the set of questions and
    the seed, never on file order or on the process. A split left empty is an error naming the
    fraction (``ConfigError``).
    """
    from distill.schema import ConfigError

    norm = [normalise_question(q) for q in questions]
    distinct = sorted(set(norm))
    n = len(distinct)
    if n < 3:
        raise DataError(f"the data has {n} distinct question(s); train/validation/test splits need at least 3")
    n_test, n_val = round(test_fraction * n), round(validation_fraction * n)
    n_test = n_test if test_max is None else min(n_test, test_max)
    n_val = n_val if validation_max is None else min(n_val, validation_max)
    for key, count, fraction in (("data.holdout_fraction", n_test, test_fraction),
                                 ("data.validation_fraction", n_val, validation_fraction)):
        if count < 1:
            raise ConfigError(key, f"{fraction!r} of {n} distinct questions leaves that split empty")
    if n - n_test - n_val < 1:
        raise ConfigError("data.validation_fraction", f"{test_fraction!r} test + {validation_fraction!r} "
                          f"validation of {n} distinct questions leaves the training split empty")
    perm = np.random.default_rng(seed).permutation(n)
    which = {}
    for rank, i in enumerate(perm):
        which[distinct[i]] = 2 if rank < n_test else (1 if rank < n_test + n_val else 0)
    labels = np.array([which[q] for q in norm], dtype=np.int64)
    return Split(*(np.flatnonzero(labels == k).astype(np.int64) for k in (0, 1, 2)))
