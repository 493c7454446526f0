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
    cfg = load_config(args.config, args.overrides)
    if args.resume:
        precheck_resume(cfg)
    from distill.train import train

    return train(cfg, resume=args.resume)


def cmd_embed(args) -> int:
    cfg = load_config(args.config, args.overrides)
    from distill.data import load_pairs
    from distill.targets import compute_targets

    pairs = load_pairs(cfg.data).dataset
    device = "cuda" if (torch.cuda.is_available() and not cfg.train.cpu) else "cpu"
    targets = compute_targets(cfg.teachers, list(pairs["question"]), list(pairs["answer"]),
                              cfg.targets.store_dir, device=device, progress=cfg.logging.progress)
    if int(os.environ.get("RANK", "0")) != 0:  # every rank took part; one reports
        return 0
    for name, d in targets.dims.items():
        print(f"{name}: {len(pairs)} questions and answers, dim {d}, store {cfg.targets.store_dir}")
    return 0


def load_run(run_dir: str | Path) -> tuple[Config, Path]:
    """The resolved config of a trained run, validated; errors name the run directory."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"run directory {run_dir} does not exist")
    cfg_file = run_dir / "config.yaml"
    if not cfg_file.is_file():
        raise RunDirError(f"{run_dir} is not a run directory (no config.yaml)")
    if not (run_dir / "student" / "student.json").is_file():
        raise RunDirError(f"{run_dir} has no exported student (training has not finished)")
    data = load_yaml(cfg_file)
    cfg = load_config(data=data)
    # The run directory may have moved: point the config at where it is now.
    cfg.run = replace(cfg.run, output_dir=str(run_dir.parent), name=run_dir.name)
    return cfg, run_dir


def _run_pairs(cfg: Config, progress: bool):
    """The run's pairs, its train/held-out split and every pair's targets (through the store)."""
    from distill.data import load_pairs, split_indices
    from distill.targets import compute_targets

    pairs = load_pairs(cfg.data).dataset
    qs, ans = list(pairs["question"]), list(pairs["answer"])
    train_idx, held_idx = split_indices(qs, cfg.data.holdout_fraction, cfg.data.split_seed)
    targets = compute_targets(cfg.teachers, qs, ans, cfg.targets.store_dir, progress=progress)
    return qs, ans, train_idx, held_idx, targets


def _student(run_dir: Path):
    from distill.student import Student

    return Student.from_pretrained(run_dir / "student")


def _student_inputs(cfg: Config, student, questions: list[str], targets) -> torch.Tensor:
    if student.input_mode == "tokens":
        from distill.train import token_inputs

        return token_inputs(cfg, questions)[0]
    return targets.q[student.input_teacher]


def cmd_eval(args) -> int:
    cfg, run_dir = load_run(args.run_dir)
    from distill.data import load_pairs
    from distill.evaluate import evaluate_spaces, format_table
    from distill.targets import compute_targets
    from distill.train import predict_all

    student = _student(run_dir)
    qs, ans, train_idx, held_idx, all_t = _run_pairs(cfg, cfg.logging.progress)
    train_t = all_t.select(train_idx)
    if args.data:
        data_cfg = replace(cfg.data, path=args.data, format="auto", categories=None, max_pairs=None)
        other = load_pairs(data_cfg).dataset
        eq, ea = list(other["question"]), list(other["answer"])
        eval_t = compute_targets(cfg.teachers, eq, ea, cfg.targets.store_dir, progress=cfg.logging.progress)
        split = str(args.data)
    else:
        eq = [qs[i] for i in held_idx]
        eval_t = all_t.select(held_idx)
        split = "heldout"
    x = _student_inputs(cfg, student, eq, eval_t)
    preds = predict_all(student, x, cfg.eval.batch_size, "cpu")
    results = evaluate_spaces(preds, eval_t.q, eval_t.a, train_t.q, train_t.a, ks=tuple(cfg.eval.recall_at),
                              ridge_lambda=cfg.eval.ridge_lambda)
    print(format_table(results, student.input_teacher))
    out = Path(args.out) if args.out else run_dir / "eval.json"
    from distill.checkpoint import write_json_atomic

    write_json_atomic(out, {"split": split, "pairs": len(eq), "input_teacher": student.input_teacher,
                            "results": results})
    print(f"wrote {out}")
    return 0


def cmd_predict(args) -> int:
    cfg, run_dir = load_run(args.run_dir)
    if args.top_k < 1:
        raise RunDirError(f"--top-k must be >= 1, got {args.top_k}")
    from distill.evaluate import topk_cosine

    student = _student(run_dir)
    _, ans, train_idx, _, targets = _run_pairs(cfg, progress=False)
    space = student.input_teacher
    if student.input_mode == "tokens":
        x = _student_inputs(cfg, student, [args.question], None)
    else:
        from teachers import load_teacher

        spec = next(t for t in cfg.teachers if t.name == space)
        x = load_teacher(spec, device="cpu").encode([args.question], role="query")
    with torch.no_grad():
        pred = student(x)[space]
    # The answer bank is the training split's answers, searched in blocks (no N-row copy).
    values, indices = topk_cosine(pred, targets.a[space], args.top_k, rows=train_idx)
    top = torch.return_types.topk((values[0], indices[0]))
    answers = [ans[i] for i in train_idx]
    print(f"question: {args.question}")
    for rank, (s, i) in enumerate(zip(top.values.tolist(), top.indices.tolist()), start=1):
        print(f"{rank:>2}. [{s:.3f}] {answers[i]}")
    print(json.dumps({"question": args.question, "answers": [
        {"rank": r, "score": s, "answer": answers[i]}
        for r, (s, i) in enumerate(zip(top.values.tolist(), top.indices.tolist()), start=1)]}))
    return 0
