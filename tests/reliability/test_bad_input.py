"""Bad input, tried broadly, through the real CLI (`python -m distill ...` in a process of its own).

Every case must end with exit status 2, exactly one ``error:`` line on stderr that names the
problem (the key path, file and line, run directory or checkpoint), no traceback, and no new or
changed file anywhere: not in the case's own directory (where its run directory would go), not
in the shared target store, teacher or data, not in the trained run some cases point at.

Every case has its own directory, so a file a case wrote is attributed to it. A case's process is
forked from one interpreter that imported torch and the CLI once (tests/forkrun.py): start-up was
most of a case's time. ``test_forked_cases_match_a_fresh_interpreter`` runs some cases again as
plain ``python -m distill`` subprocesses and checks that they end the same way.
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.conftest import snapshot
from tests.distill.e2e import distill_cmd, run
from tests.forkrun import ForkRunner
from tests.reliability.conftest import THREADS
from tests.reliability.test_safety import make_custom_code_model

pytestmark = pytest.mark.slow


@dataclass
class Case:
    id: str
    expect: list[str]  # substrings of the one error line ({case}, {shared}, {baseline} filled in)
    sets: list[str] = field(default_factory=list)  # --set overrides for `train CONFIG`
    edit: Callable[[dict], None] | None = None  # edits the case's config before it is written
    config_text: str | bytes | None = None  # the config file's raw content instead
    args: list[str] | None = None  # the whole CLI argument list instead of `train CONFIG --set ...`
    setup: Callable[[Path, Path], None] | None = None  # (case dir, shared dir) -> None


def _set(path: str, value):
    def edit(cfg: dict) -> None:
        node = cfg
        keys = path.split(".")
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node.setdefault(k, {})
        if isinstance(node, list):
            node[int(keys[-1])] = value
        else:
            node[keys[-1]] = value

    return edit


def _delete(path: str):
    def edit(cfg: dict) -> None:
        *head, last = path.split(".")
        node = cfg
        for k in head:
            node = node[int(k)] if isinstance(node, list) else node[k]
        del node[last]

    return edit


def _copy_run(finished: bool = True, corrupt_all: bool = False):
    """Put a copy of the baseline's trained run where the case's config puts its run."""

    def setup(case: Path, shared: Path) -> None:
        dst = case / "runs" / "tiny"
        shutil.copytree(shared / "trained-run", dst)
        if not finished:
            shutil.rmtree(dst / "student")
        if corrupt_all:
            for f in dst.glob("checkpoints/step_*/accelerate/model.safetensors"):
                f.write_bytes(f.read_bytes()[:100])

    return setup


def _data(name: str) -> str:
    return "data.path={shared}/data/" + name


CASES = [
    # ---- config: keys, types, values ----
    Case("unknown top-level key", ["trainer: unknown key; did you mean 'train'?"],
         edit=_set("trainer", {"max_steps": 3})),
    Case("unknown nested key", ["train.max_step: unknown key; did you mean 'max_steps'?"],
         sets=["train.max_step=3"]),
    Case("wrong type: integer", ["train.max_steps: must be an integer, got 'ten'"], sets=["train.max_steps=ten"]),
    Case("wrong type: boolean", ["logging.tensorboard: must be true or false, got 'maybe'"],
         sets=["logging.tensorboard=maybe"]),
    Case("wrong type: teachers not a list", ["teachers: must be a list of teacher entries"],
         edit=_set("teachers", {"name": "x", "model": "y"})),
    Case("negative batch size", ["train.batch_size: must be >= 1, got -8"], sets=["train.batch_size=-8"]),
    Case("negative lattice size", ["student.lattice.depth: must be a positive integer, got -3"],
         sets=["student.lattice.depth=-3"]),
    Case("holdout fraction out of range", ["data.holdout_fraction: must be in (0, 1), got 1.5"],
         sets=["data.holdout_fraction=1.5"]),
    Case("split fractions sum to 1", ["data.validation_fraction: holdout_fraction + validation_fraction must be < 1",
                                      "got 0.5 + 0.5"],
         sets=["data.holdout_fraction=0.5", "data.validation_fraction=0.5"]),
    Case("validation split empty", ["data.validation_fraction: 0.001 of", "leaves that split empty"],
         sets=["data.validation_fraction=0.001"]),
    Case("validation split smaller than recall@k", ["data.validation_fraction: the validation split has",
                                                    "recall@50 (eval.recall_at)"],
         sets=["eval.recall_at=[1,50]"]),
    Case("batch not divisible by accumulation", ["train.batch_size: 8 is not divisible by grad_accum=3"],
         sets=["train.grad_accum=3"]),
    Case("enum value", ["train.mixed_precision: 'fp8' is not one of no, fp16, bf16, auto"],
         sets=["train.mixed_precision=fp8"]),
    Case("run name with a slash", ["run.name: must be a plain directory name, got 'a/b'"], sets=["run.name=a/b"]),
    # ---- config: teachers ----
    Case("missing teacher path", ["teachers[0].model: local model directory '/nonexistent/model' does not exist"],
         sets=["teachers[0].model=/nonexistent/model"]),
    Case("teacher dir that is not a model", ["teachers[0].model:", "has no config.json"],
         sets=["teachers[0].model={shared}/empty-dir"]),
    Case("teacher model key missing", ["teachers[1].model: required key is missing"], edit=_delete("teachers.1.model")),
    Case("teacher name duplicated", ["teachers[1].name: 'bert-mean' is already used by teachers[0]"],
         sets=["teachers[1].name=bert-mean"]),
    Case("unknown pooling", ["teachers[0].pooling: 'avg' is not one of mean, cls, last, max"],
         sets=["teachers[0].pooling=avg"]),
    Case("pooling the model cannot do", ["teachers[0].pooling: 'cls' pools the first token",
                                         "causal decoder 'gpt2'"],
         sets=["teachers[0].model={shared}/fake-gpt2", "teachers[0].pooling=cls"]),
    Case("layer out of range", ["teachers[0].layer: 9 is out of range for a model with 2 layers"],
         sets=["teachers[0].layer=9"]),
    Case("custom code without opt-in", ["teachers[1].trust_remote_code:", "ships its own Python code"],
         sets=["teachers[1].model={shared}/custom-model"]),
    Case("input teacher that does not exist", ["student.input_teacher: 'bert-max' is not a teacher"],
         sets=["student.input_teacher=bert-max"]),
    Case("a retired key (issue #22)", ["curriculum.teacher_ramp: retired (issue #22)", "teachers[i].weight"],
         edit=_set("curriculum.teacher_ramp", {"bert-max": [0, 10]})),
    Case("lattice face smaller than the input teacher",
         ["student.lattice: input face too small", "32 values do not fit on the 2x2 input face",
          "input teacher 'bert-mean' embeds in 32 dimensions"],
         sets=["student.lattice.height=2", "student.lattice.width=2", "student.lattice.channels=4"]),
    Case("init_from on a teacher-input student",
         ["student.init_from: only a token-input (standalone) student starts from an export"],
         sets=["student.init_from=runs/x/student"]),
    # ---- config: files and --set ----
    Case("config file missing", ["config file not found:", "nope.yaml"], args=["train", "{case}/nope.yaml"]),
    Case("config not YAML", ["run.yaml: line 3, column 1: invalid YAML"], config_text="run:\n  name: [unclosed\n"),
    Case("config not UTF-8", ["not valid UTF-8"], config_text=b"run:\n  name: caf\xe9\n"),
    Case("--set without '='", ["--set: 'train.max_steps' is not of the form key.path=value"],
         sets=["train.max_steps"]),
    Case("--set of an unknown section", ["trian: unknown key; did you mean 'train'?"], sets=["trian.max_steps=3"]),
    # ---- data ----
    Case("data file missing", ["data.path: file not found:", "missing.jsonl"], sets=[_data("missing.jsonl")]),
    Case("data: wrong field names", ["wrong_fields.jsonl:1: missing field 'question' (fields: q, a)"],
         sets=[_data("wrong_fields.jsonl")]),
    Case("data: empty text", ["empty_text.jsonl:2: field 'question' is empty"], sets=[_data("empty_text.jsonl")]),
    Case("data: invalid UTF-8", ["bad_utf8.jsonl:2: not valid UTF-8"], sets=[_data("bad_utf8.jsonl")]),
    Case("data: a line that is not JSON", ["not_json.jsonl:3: not valid JSON"], sets=[_data("not_json.jsonl")]),
    Case("data: zero rows after filtering", ["no question/answer pairs after keeping only categories ['nope']"],
         sets=["data.categories=[nope]"]),
    Case("data: every row bad, skipped", ["all_bad.jsonl: no question/answer pairs (4 bad rows skipped)"],
         sets=[_data("all_bad.jsonl"), "data.on_error=skip"]),
    Case("data: one distinct question", ["1 distinct question(s); train/validation/test splits need at least 3"],
         sets=[_data("one_question.jsonl")]),
    # .txt is a format now (one text per line), for the texts task only
    Case("data: text file for a pairs task", ["a text file holds one text per line, not question/answer pairs; "
                                               "set data.task=texts"], sets=[_data("pairs.txt")]),
    Case("data: CSV without the column", ["no_column.csv:2: missing field 'question'"],
         sets=[_data("no_column.csv")]),
    # ---- CLI: run directories and checkpoints ----
    Case("eval of an unknown run dir", ["run directory {case}/runs/none does not exist"],
         args=["eval", "{case}/runs/none"]),
    Case("eval of a dir that is not a run", ["{case} is not a run directory (no config.yaml)"], args=["eval", "{case}"]),
    Case("eval of an unfinished run", ["has no exported student (training has not finished)"],
         args=["eval", "{case}/runs/tiny"], setup=_copy_run(finished=False)),
    Case("eval --data of a missing file", ["data.path: file not found:", "missing.jsonl"],
         args=["eval", "{case}/runs/tiny", "--data", "{case}/missing.jsonl"], setup=_copy_run()),
    Case("predict with top-k 0", ["--top-k must be >= 1, got 0"],
         args=["predict", "{case}/runs/tiny", "What is AI?", "-k", "0"], setup=_copy_run()),
    Case("train over an existing run without --resume", ["run directory {case}/runs/tiny already exists; pass --resume"],
         setup=_copy_run()),
    Case("resume: checkpoint of another lattice shape",
         ["cannot resume from {case}/runs/tiny/checkpoints/step_00000012:", "student.lattice.depth: checkpoint 3, config 4"],
         sets=["student.lattice.depth=4", "--resume"], setup=_copy_run()),
    Case("resume: checkpoint of another teacher set",
         ["cannot resume from", "teachers: checkpoint has ['bert-cls', 'bert-mean'], config has ['bert-mean']"],
         edit=lambda cfg: cfg["teachers"].pop(), sets=["--resume"], setup=_copy_run()),
    Case("resume: a teacher changed", ["cannot resume from", "teacher 'bert-cls' differs in pooling"],
         sets=["teachers[1].pooling=max", "--resume"], setup=_copy_run()),
    Case("resume: other data", ["cannot resume from", "data.max_pairs: checkpoint None, config 40"],
         sets=["data.max_pairs=40", "--resume"], setup=_copy_run()),
    Case("resume: every checkpoint corrupt", ["no checkpoint passed verification; refusing to start over it"],
         sets=["--resume"], setup=_copy_run(corrupt_all=True)),
    Case("unknown subcommand", ["invalid choice: 'trian'"], args=["trian", "{case}/run.yaml"]),
    Case("missing argument", ["the following arguments are required: run_dir"], args=["eval"]),
]


def _write_shared(shared: Path, baseline) -> None:
    d = shared / "data"
    d.mkdir(parents=True)
    (d / "wrong_fields.jsonl").write_text('{"q": "What is AI?", "a": "A field."}\n')
    (d / "empty_text.jsonl").write_text('{"question": "Hi?", "answer": "Hello."}\n{"question": "  ", "answer": "x"}\n')
    (d / "bad_utf8.jsonl").write_bytes(b'{"question": "Hi?", "answer": "Hello."}\n{"question": "caf\xe9?", "answer": "x"}\n')
    (d / "not_json.jsonl").write_text('{"question": "A?", "answer": "a"}\n{"question": "B?", "answer": "b"}\n'
                                      "this is not json\n")
    (d / "all_bad.jsonl").write_text('{"q": 1}\n{"question": ""}\nnot json\n{"answer": "x"}\n')
    (d / "one_question.jsonl").write_text('{"question": "Same?", "answer": "a"}\n' * 5)
    (d / "pairs.txt").write_text("question answer\n")
    (d / "no_column.csv").write_text("q,answer\nWhat?,That.\n")
    (shared / "empty-dir").mkdir()
    (shared / "fake-gpt2").mkdir()
    (shared / "fake-gpt2" / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_embd": 32, "n_layer": 2}))
    make_custom_code_model(shared, shared / "PWNED")
    shutil.copytree(baseline.run_dir, shared / "trained-run")


def _fill(text: str, case: Path, shared: Path, baseline) -> str:
    return text.replace("{case}", str(case)).replace("{shared}", str(shared)).replace("{baseline}", str(baseline.root))


def _case_args(c: Case, root: Path, shared: Path, baseline, base_cfg: dict) -> tuple[Path, list[str]]:
    """Make the case's directory (its config, its setup) and return it with the CLI arguments."""
    case = root / c.id.replace(" ", "_").replace("'", "").replace(":", "").replace("/", "")
    case.mkdir()
    cfg = copy.deepcopy(base_cfg)
    cfg["run"]["output_dir"] = str(case / "runs")
    if c.edit:
        c.edit(cfg)
    cfg_path = case / "run.yaml"
    if c.config_text is None:
        cfg_path.write_text(yaml.safe_dump(cfg))
    elif isinstance(c.config_text, bytes):
        cfg_path.write_bytes(c.config_text)
    else:
        cfg_path.write_text(c.config_text)
    if c.setup:
        c.setup(case, shared)
    if c.args is not None:
        args = [_fill(a, case, shared, baseline) for a in c.args]
    else:
        sets = [_fill(s, case, shared, baseline) for s in c.sets if s != "--resume"]
        args = ["train", str(cfg_path)] + (["--set", *sets] if sets else []) + (["--resume"] if "--resume" in c.sets else [])
    return case, args


def _run_case(c: Case, root: Path, shared: Path, baseline, base_cfg: dict, runner: ForkRunner):
    case, args = _case_args(c, root, shared, baseline, base_cfg)
    before = snapshot(case)
    r = runner.run(args, cwd=case, timeout=300)
    return case, before, snapshot(case), r


@pytest.fixture(scope="module")
def results(baseline, tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-input")
    shared = root / "shared"
    _write_shared(shared, baseline)
    base_cfg = yaml.safe_load(baseline.config.read_text())
    watched = {"shared": shared, "baseline": baseline.root}
    before = {k: snapshot(p) for k, p in watched.items()}
    with ForkRunner(env=THREADS) as runner:
        out = {c.id: _run_case(c, root, shared, baseline, base_cfg, runner) for c in CASES}
    after = {k: snapshot(p) for k, p in watched.items()}
    return out, before, after, shared


STORE_BOOKKEEPING = {"last_used", "verified.json"}


def _diff(before: dict, after: dict) -> list[str]:
    return sorted({k for k in set(before) | set(after) if before.get(k) != after.get(k)})


def test_there_are_at_least_30_cases():
    assert len(CASES) >= 30 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_bad_input_exits_2_with_one_clear_message_and_writes_nothing(results, c, baseline):
    out, before, after, shared = results
    case, case_before, case_after, r = out[c.id]
    where = f"\nstdout: {r.stdout[-1500:]}\nstderr: {r.stderr[-3000:]}"
    assert r.returncode == 2, where
    assert "Traceback" not in r.stderr, where
    errors = [line for line in r.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, where
    for s in c.expect:
        assert _fill(s, case, shared, baseline) in errors[0], f"missing {s!r} in {errors[0]!r}"
    assert _diff(case_before, case_after) == [], "the case wrote files"
    # Shared inputs (store, teacher, data, the trained run) are read at most. The store's own
    # bookkeeping of a read is allowed: `last_used` (gc's clock) and `verified.json` (the shards
    # whose checksums were checked); no shard, space.json or FORMAT may change.
    for k in before:
        changed = [p for p in _diff(before[k], after[k]) if Path(p).name not in STORE_BOOKKEEPING]
        assert changed == [], f"files changed under {k}"
    assert not (shared / "PWNED").exists()  # the custom-code teacher's code never ran


# One case of each kind: a config value, a teacher, a data file, a checkpoint, argparse.
FRESH = ["wrong type: integer", "missing teacher path", "data: invalid UTF-8",
         "resume: checkpoint of another lattice shape", "unknown subcommand"]


@pytest.mark.parametrize("case_id", FRESH)
def test_forked_cases_match_a_fresh_interpreter(results, case_id, baseline, tmp_path):
    """The fork server is the CLI as a user runs it: the same case in a new `python -m distill`
    process exits with the same status and prints the same error line."""
    out, _, _, shared = results
    forked = out[case_id][3]
    c = next(c for c in CASES if c.id == case_id)
    case, args = _case_args(c, tmp_path, shared, baseline, yaml.safe_load(baseline.config.read_text()))
    fresh = run(distill_cmd(*args), cwd=case, timeout=300, env=THREADS)

    def error_lines(r, case_dir: Path) -> list[str]:  # the case's own directory written as {case}
        return [line.replace(str(case_dir), "{case}") for line in r.stderr.splitlines() if "error:" in line]

    assert ((fresh.returncode, error_lines(fresh, case))
            == (forked.returncode, error_lines(forked, out[case_id][0]))), fresh.stderr[-3000:]
