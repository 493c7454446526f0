"""Implementations of the ``distill`` subcommands (the CLI parses, these run)."""

from __future__ import annotations

import io
import json
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from distill.config import Config
from distill.errors import RunDirError
from distill.runs import load_run

logger = logging.getLogger("distill")


def precheck_resume(cfg: Config) -> None:
    """Refuse a resume onto another run's checkpoint before anything is computed or written.

    The trainer checks again, fully, once the student is built; by then the teachers may have run
    and written new target-store entries for a teacher set the checkpoint cannot use.
    """
    from distill import checkpoint as ckpt

    cks = ckpt.list_checkpoints(cfg.run_dir)
    latest = ckpt.read_latest(cfg.run_dir)
    cks = [c for c in cks if c.name == latest] + [c for c in cks if c.name != latest]
    for ck in cks:
        try:
            meta = ckpt.read_checkpoint_json(ck, "meta.json")
        except (OSError, ValueError):
            continue  # unreadable: the trainer's verification reports it and falls back
        if isinstance(meta, dict):
            ckpt.check_compatible(meta, ckpt.config_meta(cfg), ck, partial=True)
            return


def cmd_train(args) -> int:
    """One run, or every stage of a ``stages:`` config in order (:mod:`distill.stages`)."""
    from distill.stages import load_stages, stage_done

    cfgs = load_stages(args.config, args.overrides)
    for cfg in cfgs:
        if args.resume:
            precheck_resume(cfg)
    from distill.train import train

    for i, cfg in enumerate(cfgs):
        if len(cfgs) > 1:
            if args.resume and stage_done(cfg):
                logger.info("stage %d/%d (%s): finished earlier, skipped", i + 1, len(cfgs), cfg.run_dir)
                continue
            logger.info("stage %d/%d: %s", i + 1, len(cfgs), cfg.run_dir)
        status = train(cfg, resume=args.resume and cfg.run_dir.exists())
        if status:
            return status
    return 0


def cmd_embed(args) -> int:
    from distill.stages import load_stages

    for cfg in load_stages(args.config, args.overrides):
        status = _embed(cfg)
        if status:
            return status
    return 0


def _embed(cfg: Config) -> int:
    from distill.rundata import load_examples, pick_device
    from distill.targets import config_targets

    # Bad split fractions fail in load_examples, before any store entry.
    questions, answers, _ = load_examples(cfg)
    texts = cfg.data.task == "texts"
    stats: dict = {}
    targets = config_targets(cfg, questions, answers, device=pick_device(cfg), views=True, stats=stats)
    rank = int(os.environ.get("RANK", "0"))
    embedded = sum(stats.get("embedded_rows", {}).values())
    if rank != 0:  # every rank took part; one reports the result, each its own work
        print(f"rank {rank}: rows embedded now (this process): {embedded}")
        return 0
    what = "texts" if texts else "questions and answers"
    for name, d in targets.dims.items():
        print(f"{name}: {len(questions)} {what}, dim {d}, store {cfg.targets.store_dir}")
    other = sum(stats.get("other_job_rows", {}).values())
    print(f"rows embedded now (this process): {embedded}; rows already stored: "
          f"{sum(stats.get('cached_rows', {}).values())}"
          + (f"; embedded meanwhile by another job sharing the store: {other}" if other else ""))
    return 0


def load_student(run_dir: Path):
    """The run's exported student, whatever its type (:func:`distill.students.load_student`)."""
    from distill.students import load_student as load

    try:
        return load(run_dir / "student")
    except (FileNotFoundError, ValueError) as err:
        raise RunDirError(str(err)) from None


def cmd_eval(args) -> int:
    """The run's validation and test splits (as training reported them), or ``--data FILE``
    evaluated as a test split; baselines fitted on the run's training split."""
    cfg, run_dir = load_run(args.run_dir)
    student = load_student(run_dir)
    if getattr(args, "sts", None) or getattr(args, "retrieval", None):
        return _eval_encoder(args, cfg, run_dir, student)
    from distill.eval.evaluator import Evaluator, format_splits
    from distill.rundata import load_run_data
    from distill.students import student_type

    data = load_run_data(cfg, cfg.logging.progress, mode="store")
    if args.data:
        x, split_t, n = _other_data(cfg, student, args.data)
        splits, pairs = {"test": (x, split_t)}, {"test": n}
    else:
        splits = {s: (getattr(data, s).x, getattr(data, s).targets) for s in ("validation", "test")}
        pairs = {s: len(getattr(data, s).idx) for s in ("validation", "test")}
    ev = (tuple(cfg.eval.recall_at), cfg.eval.ridge_lambda, cfg.eval.batch_size, cfg.data.task == "pairs")
    it = student.input_teachers if student_type(student.input_mode).reads_teacher_input else None
    results = {s: Evaluator(x, t, data.train, *ev, input_teacher=it).evaluate(student, "cpu")
               for s, (x, t) in splits.items()}
    print(format_splits(results, pairs, it or student.input_teacher))
    out = Path(args.out) if args.out else run_dir / "eval.json"
    from fileio import write_json_atomic

    write_json_atomic(out, {"data": str(args.data) if args.data else cfg.data.path, "pairs": pairs,
                            "input_teacher": student.input_teacher, **results, "results": results["test"]})
    print(f"wrote {out}")
    return 0


def _eval_encoder(args, cfg: Config, run_dir: Path, student) -> int:
    """``distill eval RUN --sts FILE --retrieval FILE``: the run's encoder on pair similarity and
    retrieval files; prints the results and writes them as JSON."""
    from distill.eval.encoders import eval_encoder, format_encoder_results
    from fileio import write_json_atomic

    res = eval_encoder(cfg, run_dir, student, args.sts, args.retrieval)
    print(format_encoder_results(res), end="")
    out = Path(args.out) if args.out else run_dir / "eval_encoder.json"
    write_json_atomic(out, res)
    print(f"wrote {out}")
    return 0


def _other_data(cfg: Config, student, path: str):
    """``distill eval --data FILE``: every pair of another file, its targets through the store."""
    from distill.data import load_pairs
    from distill.students import student_type
    from distill.targets import config_targets, teacher_input

    data_cfg = replace(cfg.data, path=path, format="auto", categories=None, max_pairs=None, spans=0,
                       sentences=False)
    texts = cfg.data.task == "texts"
    if texts:  # a text run is evaluated on texts: every text's own teacher embeddings are the answers
        from distill.data import load_texts

        eq = ea = load_texts(data_cfg).texts
    else:
        other = load_pairs(data_cfg).dataset
        eq, ea = list(other["question"]), list(other["answer"])
    eval_t = config_targets(cfg, eq, ea)
    x = student_type(student.input_mode).text_inputs(cfg, eq)
    if x is None:  # the student reads its input teachers' question embeddings
        x = teacher_input(eval_t.q, student.input_teachers)
    return x, eval_t, len(eq)


def cmd_predict(args) -> int:
    cfg, run_dir = load_run(args.run_dir)
    if args.top_k < 1:
        raise RunDirError(f"--top-k must be >= 1, got {args.top_k}")
    from distill.eval.encoders import run_encoders
    from distill.eval.qa import topk_cosine
    from distill.rundata import load_run_data

    # A standalone student embeds the question itself (no teacher is loaded); a teacher-input
    # student reads its input teachers' embeddings of it.
    student = load_student(run_dir)
    try:
        space, encode_query, _ = run_encoders(cfg, run_dir, student)
        pred = torch.from_numpy(np.asarray(encode_query([args.question]), dtype=np.float32))
    except (FileNotFoundError, ValueError) as err:
        raise RunDirError(str(err)) from None
    data = load_run_data(cfg, progress=False, mode="store", inputs=False)
    # The answer bank is the training split's answers, searched in blocks (no N x N scores).
    values, indices = topk_cosine(pred, data.train.a[space], args.top_k)
    answers = [data.answers[i] for i in data.train_idx]
    hits = [{"rank": r, "score": s, "answer": answers[i]}
            for r, (s, i) in enumerate(zip(values[0].tolist(), indices[0].tolist()), start=1)]
    print(f"question: {args.question}")
    for h in hits:
        print(f"{h['rank']:>2}. [{h['score']:.3f}] {h['answer']}")
    print(json.dumps({"question": args.question, "answers": hits}))
    return 0


def read_texts(path: str | os.PathLike) -> list[str]:
    """A .jsonl file (``text`` field), a text file (one text per line) or ``-`` (standard input,
    one text per line) -> texts in order.

    Raises ``distill.data.DataError`` naming ``FILE:LINE`` for a non-UTF-8 line, a line that is
    not JSON, a missing/non-string ``text`` field or an empty text.
    """
    from distill.data import DataError

    if str(path) == "-":  # standard input, one text per line
        p, jsonl = "<stdin>", False
        raw_lines = sys.stdin.buffer.read().split(b"\n")
    else:
        p = Path(path)
        if not p.exists() or p.is_dir():  # a pipe (/dev/stdin, a FIFO) reads like a file
            raise DataError(f"{p}: no such file")
        jsonl = p.suffix.lower() in (".jsonl", ".ndjson")
        with open(p, "rb") as f:
            raw_lines = f.read().split(b"\n")
    texts = []
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
    from distill.encoder import Encoder
    from distill.export.manifest import ExportError
    from fileio import write_bytes_atomic

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
    buf = io.BytesIO()
    np.save(buf, vecs)
    write_bytes_atomic(out, buf.getvalue())
    print(f"wrote {out}: {vecs.shape[0]} x {vecs.shape[1]} ({args.space or enc.config.input_teacher} space)")
    return 0


def _kept_spaces(configs: list[str]) -> dict:
    """{space id: content keys} every stage of every kept config uses (no teacher is loaded)."""
    from distill.rundata import load_examples
    from distill.stages import load_stages
    from teachers.store import request_spaces

    keep: dict = {}
    for path in configs:
        for cfg in load_stages(path):
            questions, answers, _ = load_examples(cfg)
            fields = {"text": questions} if cfg.data.task == "texts" else {"question": questions, "answer": answers}
            for sid, keys in request_spaces(cfg.teachers, fields, cfg.targets.dtype).items():
                keep[sid] = np.concatenate([keep[sid], keys]) if sid in keep else keys
    return keep


def _human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def cmd_store(args) -> int:
    """``distill store ls|verify|gc STORE_DIR``."""
    from teachers.store import TargetStore, describe, gc_apply, gc_plan, verify

    root = Path(args.store_dir)
    if not root.is_dir():
        raise RunDirError(f"store directory {root} does not exist")
    store = TargetStore(root)
    if args.store_command == "ls":
        d = describe(store)
        if getattr(args, "json", False):
            print(json.dumps(d, indent=2))
            return 0
        print(f"{'space':<14}{'teacher':<12}{'role':<8}{'dim':>5} {'dtype':<8}{'shards':>7}{'rows':>10}"
              f"{'bytes':>11}  last used")
        for s in d["spaces"]:
            print(f"{s['space'][:12]:<14}{s['teacher']:<12}{s['role']:<8}{s['dim'] or '?':>5} {s['dtype'] or '?':<8}"
                  f"{s['shards']:>7}{s['rows']:>10}{_human(s['bytes']):>11}  {s['last_used'] or 'never'}")
        for e in d["legacy"]:
            print(f"legacy format-1 entry {e['entry'][:12]} ({_human(e['bytes'])}): not read; "
                  "`distill store gc --apply` removes it")
        if not d["spaces"] and not d["legacy"]:
            print(f"{root}: empty store")
        return 0
    if args.store_command == "verify":
        bad = verify(store)
        n = sum(len(sp.shard_names()) for sp in store.spaces())
        for sid, shard, why in bad:
            print(f"corrupt: space {sid[:12]} shard {shard}: {why}")
        print(f"{n} shards checked, {len(bad)} corrupt" + (" (the next run that needs them re-embeds them)"
                                                           if bad else ""))
        return 1 if bad else 0
    keep = _kept_spaces(args.keep) if args.keep else None
    plan = gc_plan(store, keep)
    for path, why in plan:
        print(f"{'remove' if args.apply else 'would remove'}: {path} ({why})")
    if args.apply:
        freed = gc_apply(plan)
        print(f"{len(plan)} removed, {_human(freed)} freed")
    else:
        print(f"{len(plan)} to remove; dry run, nothing removed (add --apply)")
    return 0
