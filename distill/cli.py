"""The ``distill`` command line: train, embed, store, eval, predict, encode, export, launch.

Exit status: 0 success, 2 bad input (config, data, arguments, run directory), 1 a failure while
running (a failed write, diverged training), 75 training pre-empted by SIGTERM after a clean
checkpoint.
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import signal
import sys

EXIT_BAD_INPUT = 2

logger = logging.getLogger("distill")


def _add_overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set", dest="overrides", action="append", nargs="+", default=[], metavar="KEY=VALUE",
        help="override a config key, e.g. --set train.max_steps=200 teachers[0].max_length=128 (repeatable)",
    )


def build_parser(launch_options: bool = False) -> argparse.ArgumentParser:
    """The parser; ``launch_options`` adds ``distill launch``'s own options (only parsed for it)."""
    parser = argparse.ArgumentParser(
        prog="distill",
        description="Distributed multi-teacher distillation into a Lattice3D student.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("train", help="train a student (embeds targets first when needed)",
                       description="Train a Lattice3D student on the teachers' targets.")
    p.add_argument("config", help="run config YAML")
    _add_overrides(p)
    p.add_argument("--resume", action="store_true", help="resume from the run's latest complete checkpoint")
    p.set_defaults(func="distill.commands:cmd_train")

    p = sub.add_parser("embed", help="teachers only: build the target store",
                       description="Compute and store every teacher's embeddings of the run's data.")
    p.add_argument("config", help="run config YAML")
    _add_overrides(p)
    p.set_defaults(func="distill.commands:cmd_embed")

    _add_store(sub)

    p = sub.add_parser("eval", help="evaluate a trained run against the baselines",
                       description="Metrics table per teacher space, with identity and ridge baselines; with --sts "
                                   "and/or --retrieval, those evaluations of the run's encoder instead.")
    p.add_argument("run_dir", help="a run directory (runs/<name>)")
    p.add_argument("--data", help="evaluate this pairs file (a texts file for a data.task=texts run) as a test split instead of the run's validation and test splits")
    p.add_argument("--sts", metavar="FILE", help="pair similarity: a JSONL of {s1, s2, score[, set]} lines; "
                   "reports Spearman (ties averaged) of the student's cosine against the score")
    p.add_argument("--retrieval", metavar="FILE", help="retrieval: a JSONL of {question, answer, label} lines "
                   "(a question's lines are its candidates); reports MAP and MRR")
    p.add_argument("--out", help="write the JSON here (default: RUN_DIR/eval.json, or RUN_DIR/eval_encoder.json "
                   "with --sts/--retrieval)")
    p.set_defaults(func="distill.commands:cmd_eval")

    p = sub.add_parser("predict", help="nearest answers from the training answer bank",
                       description="Top-k answers from the run's training answer bank for a question.")
    p.add_argument("run_dir", help="a run directory (runs/<name>)")
    p.add_argument("question", help="the question text")
    p.add_argument("-k", "--top-k", type=int, default=5, help="how many answers (default 5)")
    p.set_defaults(func="distill.commands:cmd_predict")

    _add_standalone(sub)

    p = sub.add_parser("launch", help="compose and run accelerate launch for local, multi-node or SLURM runs",
                       description="Compose the accelerate launch command(s) for a run and run them.")
    p.add_argument("config", help="run config YAML")
    p.set_defaults(func="launch.cli:cmd_launch", launch_parser=p)
    if launch_options:
        from launch.cli import add_launch_arguments

        add_launch_arguments(p)
    return parser


def _add_store(sub) -> None:
    """``distill store ls|verify|gc``."""
    p = sub.add_parser("store", help="list, verify or clean a target store",
                       description="Inspect and maintain a target store (targets.store_dir).")
    ssub = p.add_subparsers(dest="store_command", metavar="ACTION")
    ssub.required = True
    q = ssub.add_parser("ls", help="spaces (teacher x prompt role) with rows, bytes, last use; legacy entries")
    q.add_argument("store_dir", help="the store directory (targets.store_dir)")
    q.add_argument("--json", action="store_true", help="print JSON instead of a table")
    q.set_defaults(func="distill.commands:cmd_store")
    q = ssub.add_parser("verify", help="check every shard's sha256 (exit 1 if any is corrupt)")
    q.add_argument("store_dir", help="the store directory (targets.store_dir)")
    q.set_defaults(func="distill.commands:cmd_store")
    q = ssub.add_parser("gc", help="remove leftovers and (with --keep) what no kept config uses; dry run by default",
                        description="Remove temporaries and claims of dead writers and format-1 entries; with "
                                    "--keep, also spaces and shards that none of the given configs use. Lists "
                                    "what would go unless --apply.")
    q.add_argument("store_dir", help="the store directory (targets.store_dir)")
    q.add_argument("--keep", nargs="+", default=None, metavar="CONFIG",
                   help="run configs whose targets stay (every stage of each); everything else may go")
    q.add_argument("--apply", action="store_true", help="remove (default: only list)")
    q.set_defaults(func="distill.commands:cmd_store")


def _add_standalone(sub) -> None:
    """``distill encode`` and ``distill export`` (standalone students)."""
    # --- encode (standalone students; distill/encoder.py) ---
    p = sub.add_parser("encode", help="embed texts with an exported standalone student (no teacher)",
                       description="Embed texts with a run's exported standalone student; writes an (N, d) "
                                   "float32 .npy of L2-normalised rows in input order.")
    p.add_argument("run_dir", help="a run directory (runs/<name>) or an exported student directory")
    p.add_argument("--input", required=True, help="JSONL with a 'text' field per line, a text file with one text "
                   "per line, or - for standard input (one text per line)")
    p.add_argument("--output", required=True, help="the .npy to write (atomically)")
    p.add_argument("--space", default=None, help="teacher space to output (default: the input teacher's)")
    p.add_argument("--batch-size", type=int, default=64, help="texts per forward (default 64)")
    p.set_defaults(func="distill.commands:cmd_encode")
    # --- end encode ---
    # --- export (standalone students; distill/export/) ---
    p = sub.add_parser("export", help="export a standalone student for sentence-transformers, Model2Vec or ONNX",
                       description="Write a run's standalone student as a sentence-transformers directory, a "
                                   "Model2Vec model (lattice off only) or an ONNX graph, with a model card and a "
                                   "manifest.")
    p.add_argument("run_dir", help="a run directory (runs/<name>) or an exported student directory")
    p.add_argument("--format", required=True, choices=["sentence-transformers", "model2vec", "onnx"],
                   help="the export format")
    p.add_argument("--output", required=True, help="the directory to write (written aside, renamed into place)")
    p.add_argument("--space", default=None, help="teacher space to export (default: the input teacher's)")
    p.add_argument("--force", action="store_true", help="replace an existing --output directory")
    p.set_defaults(func="distill.export.cli:cmd_export")
    # --- end export ---


def _resolve(spec: str):
    import importlib

    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def main(argv: list[str] | None = None) -> int:
    """The ``distill`` console script and ``python -m distill``. As a process's entry (``argv`` None)
    it first registers ``faulthandler`` on SIGUSR1: ``kill -USR1 PID`` then prints every thread's
    Python stack to stderr and the command goes on (where a rank that seems stuck waits, without a
    debugger; SIGUSR1's default would end the process)."""
    if argv is None and hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, all_threads=True, chain=False)
    argv = list(sys.argv[1:] if argv is None else argv)
    # `launch` forwards unknown options and everything after `--` to its own parser.
    parser = build_parser(launch_options=bool(argv) and argv[0] == "launch")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if hasattr(args, "overrides"):
        args.overrides = [o for group in args.overrides for o in group]
    from distill.errors import TrainingDiverged, UserError

    try:
        return int(_resolve(args.func)(args) or 0)
    except TrainingDiverged as err:
        return _fail(err, 1)
    except UserError as err:
        return _fail(err, EXIT_BAD_INPUT)
    except OSError as err:  # a failed write (disk full, permissions): say what failed, exit 1
        return _fail(err, 1)
    except Exception as err:
        # A teacher that cannot be loaded (wrong model id or path, custom code not opted in) is
        # bad input. Matched by module so the CLI never imports the teachers (torch) itself.
        errors = sys.modules.get("teachers.errors")
        if errors is not None and isinstance(err, errors.TeacherSourceError):
            return _fail(err, EXIT_BAD_INPUT)
        raise


def _fail(err: BaseException, status: int) -> int:
    """Print the error as one line (library messages can span several) and return ``status``."""
    text = " ".join(str(err).split()) or type(err).__name__
    print(f"error: {text}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
