"""Implementations of the ``distill`` subcommands (the CLI parses, these run)."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from pathlib import Path

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
    print(f"rows embedded now (this process): {embedded}; rows already stored: "
          f"{sum(stats.get('cached_rows', {}).values())}")
    return 0


def _student(run_dir: Path, cfg: Config | None = None):
    """The run's exported student: a standalone export (config.json) loads as a TokenStudent."""
    if (run_dir / "student" / "config.json").is_file():
        from distill.encoder import load_standalone
        from distill.token_student import TokenStudent

        try:
            model, root = load_standalone(run_dir / "student")
        except (FileNotFoundError, ValueError) as err:
            raise RunDirError(str(err)) from None
        return TokenStudent(model, root)
    from distill.student import Student

    return Student.from_pretrained(run_dir / "student")


def cmd_eval(args) -> int:
    """The run's validation and test splits (as training reported them), or ``--data FILE``
    evaluated as a test split; baselines fitted on the run's training split."""
    cfg, run_dir = load_run(args.run_dir)
    from distill.evaluator import Evaluator, format_splits
    from distill.rundata import load_run_data

    student = _student(run_dir)
    data = load_run_data(cfg, cfg.logging.progress, mode="store")
    if args.data:
        x, split_t, n = _other_data(cfg, student, args.data)
        splits, pairs = {"test": (x, split_t)}, {"test": n}
    else:
        splits = {s: (getattr(data, s).x, getattr(data, s).targets) for s in ("validation", "test")}
        pairs = {s: len(getattr(data, s).idx) for s in ("validation", "test")}
    ev = (tuple(cfg.eval.recall_at), cfg.eval.ridge_lambda, cfg.eval.batch_size, cfg.data.task == "pairs")
    it = student.input_teachers if student.input_mode == "teacher" else None
    results = {s: Evaluator(x, t, data.train, *ev, input_teacher=it).evaluate(student, "cpu")
               for s, (x, t) in splits.items()}
    print(format_splits(results, pairs, it or student.input_teacher))
    out = Path(args.out) if args.out else run_dir / "eval.json"
    from distill.checkpoint import write_json_atomic

    write_json_atomic(out, {"data": str(args.data) if args.data else cfg.data.path, "pairs": pairs,
                            "input_teacher": student.input_teacher, **results, "results": results["test"]})
    print(f"wrote {out}")
    return 0


def _other_data(cfg: Config, student, path: str):
    """``distill eval --data FILE``: every pair of another file, its targets through the store."""
    from distill.data import load_pairs
    from distill.rundata import token_inputs
    from distill.targets import config_targets, teacher_input

    data_cfg = replace(cfg.data, path=path, format="auto", categories=None, max_pairs=None)
    texts = cfg.data.task == "texts"
    if texts:  # a text run is evaluated on texts: every text's own teacher embeddings are the answers
        from distill.data import load_texts

        eq = ea = load_texts(data_cfg).texts
    else:
        other = load_pairs(data_cfg).dataset
        eq, ea = list(other["question"]), list(other["answer"])
    eval_t = config_targets(cfg, eq, ea)
    x = token_inputs(cfg, eq)[0] if student.input_mode == "tokens" else teacher_input(eval_t.q, student.input_teachers)
    return x, eval_t, len(eq)


def cmd_predict(args) -> int:
    cfg, run_dir = load_run(args.run_dir)
    if args.top_k < 1:
        raise RunDirError(f"--top-k must be >= 1, got {args.top_k}")
    from distill.evaluate import topk_cosine
    from distill.rundata import load_run_data

    if (run_dir / "student" / "config.json").is_file():
        # Standalone: the Encoder (tokenizer + student) embeds the question; no teacher is loaded.
        from distill.encoder import Encoder

        try:
            enc = Encoder.from_pretrained(run_dir / "student")
            pred = torch.from_numpy(enc.encode([args.question]))
        except (FileNotFoundError, ValueError) as err:
            raise RunDirError(str(err)) from None
        space = enc.config.input_teacher
        data = load_run_data(cfg, progress=False, mode="store", inputs=False)
    else:
        from teachers import load_teacher

        student = _student(run_dir)
        data = load_run_data(cfg, progress=False, mode="store", inputs=False)
        space = student.input_teacher
        specs = {t.name: t for t in cfg.teachers}
        x = torch.cat([load_teacher(specs[n], device="cpu").encode([args.question], role="query")
                       for n in student.input_teachers], dim=-1)  # the input teachers' embeddings, in order
        with torch.no_grad():
            pred = student(x)[space]
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


def _kept_spaces(configs: list[str]) -> dict:
    """{space id: content keys} every stage of every kept config uses (no teacher is loaded)."""
    import numpy as np

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
