"""Implementations of the ``distill`` subcommands (the CLI parses, these run)."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from pathlib import Path

import torch

from distill.config import Config, load_config, load_yaml
from distill.errors import RunDirError

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
    from distill.targets import compute_targets

    # Bad split fractions fail in load_examples, before any store entry.
    questions, answers, _ = load_examples(cfg)
    texts = cfg.data.task == "texts"
    targets = compute_targets(cfg.teachers, questions, answers, cfg.targets.store_dir, device=pick_device(cfg),
                              progress=cfg.logging.progress, texts=texts)
    if int(os.environ.get("RANK", "0")) != 0:  # every rank took part; one reports
        return 0
    what = "texts" if texts else "questions and answers"
    for name, d in targets.dims.items():
        print(f"{name}: {len(questions)} {what}, dim {d}, store {cfg.targets.store_dir}")
    return 0


def load_run(run_dir: str | Path) -> tuple[Config, Path]:
    """The resolved config of a trained run, validated; errors name the run directory."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"run directory {run_dir} does not exist")
    cfg_file = run_dir / "config.yaml"
    if not cfg_file.is_file():
        raise RunDirError(f"{run_dir} is not a run directory (no config.yaml)")
    if not any((run_dir / "student" / f).is_file() for f in ("student.json", "config.json")):
        raise RunDirError(f"{run_dir} has no exported student (training has not finished)")
    data = load_yaml(cfg_file)
    cfg = load_config(data=data)
    # The run directory may have moved: point the config at where it is now.
    cfg.run = replace(cfg.run, output_dir=str(run_dir.parent), name=run_dir.name)
    return cfg, run_dir


def load_student(run_dir: Path):
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
    student = load_student(run_dir)
    if getattr(args, "sts", None) or getattr(args, "retrieval", None):
        return _eval_encoder(args, cfg, run_dir, student)
    from distill.eval.evaluator import Evaluator, format_splits
    from distill.rundata import load_run_data

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


def _eval_encoder(args, cfg: Config, run_dir: Path, student) -> int:
    """``distill eval RUN --sts FILE --retrieval FILE``: the run's encoder on pair similarity and
    retrieval files; prints the results and writes them as JSON."""
    from distill.checkpoint import write_json_atomic
    from distill.eval.encoders import eval_encoder, format_encoder_results

    res = eval_encoder(cfg, run_dir, student, args.sts, args.retrieval)
    print(format_encoder_results(res), end="")
    out = Path(args.out) if args.out else run_dir / "eval_encoder.json"
    write_json_atomic(out, res)
    print(f"wrote {out}")
    return 0


def _other_data(cfg: Config, student, path: str):
    """``distill eval --data FILE``: every pair of another file, its targets through the store."""
    from distill.data import load_pairs
    from distill.rundata import token_inputs
    from distill.targets import compute_targets, teacher_input

    data_cfg = replace(cfg.data, path=path, format="auto", categories=None, max_pairs=None)
    texts = cfg.data.task == "texts"
    if texts:  # a text run is evaluated on texts: every text's own teacher embeddings are the answers
        from distill.data import load_texts

        eq = ea = load_texts(data_cfg).texts
    else:
        other = load_pairs(data_cfg).dataset
        eq, ea = list(other["question"]), list(other["answer"])
    eval_t = compute_targets(cfg.teachers, eq, ea, cfg.targets.store_dir, progress=cfg.logging.progress,
                             texts=texts)
    x = token_inputs(cfg, eq)[0] if student.input_mode == "tokens" else teacher_input(eval_t.q, student.input_teachers)
    return x, eval_t, len(eq)


def cmd_predict(args) -> int:
    cfg, run_dir = load_run(args.run_dir)
    if args.top_k < 1:
        raise RunDirError(f"--top-k must be >= 1, got {args.top_k}")
    from distill.eval.qa import topk_cosine
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

        student = load_student(run_dir)
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
