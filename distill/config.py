"""The run configuration: one YAML file per run, validated against this typed schema.

Sections: run, data, teachers, student, targets, loss, curriculum, optim, train, eval, logging.
Each component owns its own small config dataclass (``lattice.LatticeConfig``,
``teachers.TeacherSpec``, ``distill.losses.LossConfig``, ``distill.curriculum.CurriculumConfig``);
this module composes them and adds the checks that span sections (teacher names unique, the
input teacher exists, local model directories exist, a pooling the model can do).

    cfg = load_config("configs/default.yaml", overrides=["train.max_steps=200"])

A teacher entry may pull its fields from a preset file: ``preset: minilm`` reads
``configs/teachers/minilm.yaml`` (searched beside the run config, then in the project's
``configs/teachers/``), and the entry's own keys override the preset's.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from distill.curriculum import CurriculumConfig
from distill.errors import RunDirError
from distill.losses import LossConfig
from distill.schema import ConfigError, build, join, to_dict, unknown_key_error
from lattice.config import LatticeConfig
from teachers.spec import TeacherSpec

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PRESET_DIRS = [PROJECT_ROOT / "configs" / "teachers"]
DATA_FORMATS = ("auto", "jsonl", "json", "csv", "parquet", "dataset")

# Keys retired in issue #22 (no shipped config or benchmark row rested on them): key path ->
# (the value that meant "off", what to do instead). A config holding the "off" value (a run
# directory's saved config.yaml from before) loads with the key dropped; any other value stops the
# run naming the key. (loss.standardize, folded into loss.target_norm, has its own rule:
# ``_drop_standardize``.)
RETIRED_KEYS = {
    "student.head_hidden": (0, "every teacher head is linear; remove the key"),
    "loss.teacher_drop": (0.0, "it helped nowhere it was measured; remove the key"),
    "loss.ema": (0.9, "it only served loss.weighting=inverse_loss (retired); remove the key"),
    "curriculum.teacher_ramp": ({}, "give the teacher a smaller teachers[i].weight instead; remove the key"),
    "curriculum.num_stages": (4, "it only served curriculum.pacing=step (retired); remove the key"),
}
RETIRED_VALUES = {
    ("student.lattice.readout", "occupied_mean"): "one seed, no gain; use flatten (the default) or mean",
    ("loss.weighting", "uncertainty"): "nothing moved with it; use loss.weighting=fixed and teachers[i].weight",
    ("loss.weighting", "inverse_loss"): "nothing moved with it; use loss.weighting=fixed and teachers[i].weight",
    ("curriculum.pacing", "geometric"): "no result rested on it; use linear or root",
    ("curriculum.pacing", "step"): "no result rested on it; use linear or root",
}


def _parent(data: dict, key: str) -> tuple[dict | None, str]:
    """The mapping holding the dotted ``key``'s last part (None where the path is absent), and that part."""
    *path, name = key.split(".")
    node = data
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    return (node if isinstance(node, dict) else None), name


STANDARDIZE_FOLDED = (
    "folded into loss.target_norm (issue #22); `target_norm: phis` computes mse/smooth_l1 on (x − μ)/σ "
    "as `standardize: true` did, and also computes the cosine/InfoNCE terms on centred vectors; "
    "remove the key")


def _drop_standardize(loss: Any) -> None:
    """``loss.standardize`` (issue #22): dropped where it had no effect, ``ConfigError`` otherwise.

    Its old default was true, so every saved run config holds it. It only ever acted with
    target_norm none, on an mse / smooth_l1 term of weight > 0 (``loss`` is the merged section a
    stage runs with, so a stage's own terms are what count)."""
    if not isinstance(loss, dict) or "standardize" not in loss:
        return
    terms = loss.get("terms")  # absent: the schema default, which holds neither mse nor smooth_l1
    acted = isinstance(terms, dict) and any(
        isinstance(terms.get(n), (int, float)) and not isinstance(terms[n], bool) and terms[n] > 0
        for n in ("mse", "smooth_l1"))
    if acted and loss["standardize"] is not False and loss.get("target_norm", "none") == "none":
        raise ConfigError("loss.standardize", STANDARDIZE_FOLDED)
    del loss["standardize"]


def drop_retired(data: dict) -> None:
    """Remove retired keys holding their "off" value; ``ConfigError`` naming any other use."""
    _drop_standardize(data.get("loss"))
    for key, (off, instead) in RETIRED_KEYS.items():
        node, name = _parent(data, key)
        if node is not None and name in node:
            if node[name] != off:
                raise ConfigError(key, f"retired (issue #22): {instead}")
            del node[name]
    for (key, value), instead in RETIRED_VALUES.items():
        node, name = _parent(data, key)
        if node is not None and node.get(name) == value:
            raise ConfigError(key, f"'{value}' is retired (issue #22): {instead}")


@dataclass
class RunSection:
    # Run name: the run directory is <output_dir>/<name>.
    name: str = "demo"
    output_dir: str = "runs"
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.name or any(c in self.name for c in "/\\") or self.name in (".", ".."):
            raise ValueError(f"name: must be a plain directory name, got {self.name!r}")


@dataclass
class DataSection:
    # A JSONL / JSON / CSV / Parquet file, a saved `datasets` directory, or builtin:<name>
    # for the shipped demo data (builtin:dolly_open_qa, builtin:chatterbot_english).
    path: str = "builtin:dolly_open_qa"
    format: Literal["auto", "jsonl", "json", "csv", "parquet", "dataset", "txt"] = "auto"
    # pairs: question -> answer (the target is every teacher's embedding of the answer); texts:
    # plain-text distillation (the target is every teacher's embedding of the same text, embedded
    # once per teacher; needs student.input=tokens).
    task: Literal["pairs", "texts"] = "pairs"
    # texts: the field(s) each record contributes texts from (a .txt file: one text per line).
    # Several fields (e.g. [question, answer] of a pairs file) keep a record's texts in one split,
    # split by the first field, so a texts stage and a pairs stage on the same file and seed hold
    # out the same questions.
    text_fields: list[str] = field(default_factory=lambda: ["text"])
    question_field: str = "question"
    answer_field: str = "answer"
    category_field: str = "category"
    # Keep only these categories (None = all).
    categories: Optional[list[str]] = None
    # Three splits by distinct question, the same on every rank and run: the test split
    # (holdout_fraction), evaluated once at the end and reported; the validation split
    # (validation_fraction), which every decision of the run reads (early stopping, best
    # checkpoint, plateau LR); training gets the rest.
    holdout_fraction: float = 0.2
    validation_fraction: float = 0.1
    # Caps on the test / validation splits (distinct questions or records; None = no cap): a
    # corpus of a million texts needs a few thousand held out, not 20%.
    holdout_max: Optional[int] = None
    # The cap on the validation split, as holdout_max is on the test split.
    validation_max: Optional[int] = None
    split_seed: int = 0
    # Bad rows (empty text, missing field, unparsable line): stop with an error, or skip and count.
    on_error: Literal["stop", "skip"] = "stop"
    # Use at most this many pairs (None = all), taken after filtering, before the split.
    max_pairs: Optional[int] = None
    # task: texts. Extra training texts: this many random contiguous spans of each training record's
    # texts (2 to 12 words, never a whole text; texts under 4 words give none), each with the
    # teacher's embedding of the span itself; held-out records get none. Span k comes from its own
    # fixed seed k, drawn in file order: a run gets the same spans every time and reuses their rows.
    spans: int = 0
    # task: texts. Extra training texts: the sentences (split after . ! ?, 3 words or more) of each
    # training record's texts that hold several, each with its own teacher targets.
    sentences: bool = False

    def __post_init__(self) -> None:
        if not self.path:
            raise ValueError("path: must name a data file, a datasets directory or builtin:<name>")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction: must be in (0, 1), got {self.holdout_fraction!r}")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError(f"validation_fraction: must be in (0, 1), got {self.validation_fraction!r}")
        for key in ("holdout_max", "validation_max"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise ValueError(f"{key}: must be >= 1 (or null for no cap), got {getattr(self, key)!r}")
        if self.holdout_fraction + self.validation_fraction >= 1.0:
            raise ValueError(f"validation_fraction: holdout_fraction + validation_fraction must be < 1 (training "
                             f"gets the rest), got {self.holdout_fraction!r} + {self.validation_fraction!r}")
        if self.max_pairs is not None and self.max_pairs < 2:
            raise ValueError(f"max_pairs: must be >= 2, got {self.max_pairs!r}")
        if not self.text_fields or len(set(self.text_fields)) != len(self.text_fields):
            raise ValueError(f"text_fields: must list at least one field, each once, got {self.text_fields!r}")
        if self.question_field == self.answer_field:
            raise ValueError("answer_field: must differ from question_field")
        if self.spans < 0:
            raise ValueError(f"spans: must be >= 0, got {self.spans!r}")
        if (self.spans or self.sentences) and self.task != "texts":
            key = "spans" if self.spans else "sentences"
            raise ValueError(f"{key}: extra texts need task: texts, got task: {self.task!r}")


@dataclass
class KernelSkipSection:
    # Teachers whose skip is a random-feature kernel ridge map instead of the linear one: fitted in
    # closed form on the training split (store mode), frozen, reading that teacher's own question
    # embedding when it is an input teacher (else the whole input); that space's head starts at
    # zero and it gets no residual, so the untrained student there IS random-feature kernel ridge.
    # [] = none. For an anisotropic space (SmolLM2's last token) where the mean cosine rewards
    # E[answer | question] (docs/benchmarks/demo.md "Reaching ridge in the SmolLM2 space").
    teachers: list[str] = field(default_factory=list)
    # Random Fourier features of the RBF kernel exp(-gamma |x - x'|^2) on the L2-normalised input.
    # gamma and ridge_lambda: among the settings whose validation cosine and R@1 both beat ridge in
    # the demo's SmolLM2 space, the best validation R@1 (docs/benchmarks/demo.md "Reaching ridge in the SmolLM2 space").
    features: int = 8192
    # The RBF kernel's gamma: larger = a narrower, more local kernel.
    gamma: float = 1.0
    # Ridge regulariser of the closed-form fit (on the features).
    ridge_lambda: float = 0.3

    def __post_init__(self) -> None:
        if self.features < 1:
            raise ValueError(f"features: must be >= 1, got {self.features!r}")
        if self.gamma <= 0:
            raise ValueError(f"gamma: must be > 0, got {self.gamma!r}")
        if self.ridge_lambda <= 0:
            raise ValueError(f"ridge_lambda: must be > 0, got {self.ridge_lambda!r}")


@dataclass
class StudentSection:
    # Where the student's input comes from: a teacher's question embedding ("teacher"), or the
    # student's own token embedding over a teacher's tokenizer ("tokens", a standalone student).
    input: Literal["teacher", "tokens"] = "teacher"
    # The teacher whose question embedding (or tokenizer, for input=tokens) feeds the student;
    # None = the first teacher. input=teacher may list several: their question embeddings are
    # concatenated in that order (the first is the default space, e.g. for eval.metric).
    input_teacher: Union[str, list[str], None] = None
    # Width of the token embedding for input=tokens.
    token_dim: int = 128
    # input=tokens: where the token table starts: the input teacher's own token embeddings
    # (Model2Vec-style, PCA'd to token_dim; cached by fingerprint under targets.store_dir) or random.
    token_init: Literal["teacher", "random"] = "teacher"
    # input=tokens: run the lattice over the tokens on its input face and add its readout to the
    # static mean (true), or the static mean of the token table alone (false, the ablation).
    token_lattice: bool = True
    # input=tokens: the static path's mean over the token rows: plain (none), or weighted by a learned
    # weight per token position, one scalar (scalar) or one per dimension (vector), each starting at
    # 1. It reads word order at the static path's speed (docs/benchmarks/standalone.md).
    position_weights: Literal["none", "scalar", "vector"] = "none"
    # input=tokens: the hidden width of a residual MLP on the pooled vector, before the heads
    # (z + W2 gelu(W1 layernorm(z)), W2 starting at zero: a deep-averaging network); 0 = none, the
    # heads read the mean directly (a static table). It reads which tokens occur together, not order.
    pooled_mlp: int = 0
    # input=tokens: rows for hashed pairs of adjacent tokens (fastText's word bigrams), this many
    # buckets, added to the mean (their sum over the token count), each starting at 0; they read
    # local word order at a static student's cost. 0 = none.
    bigram_buckets: int = 0
    # input=tokens: texts longer than the input face: fold (wrap around, cells average) | truncate.
    overflow: Literal["fold", "truncate"] = "fold"
    # input=tokens: tokens kept per text (longer texts are truncated there, in training and encode).
    max_tokens: int = 256
    # input=tokens: start from an earlier run's exported student (runs/X/student or runs/X); the
    # shapes must match. null = start from token_init.
    init_from: Optional[str] = None
    # Add the input back to the prediction in the input teacher's space (each input teacher's
    # own question embedding to its space), so an untrained student starts at the identity baseline.
    residual: bool = True
    # Give each head a linear path from the input too (a skip around the lattice).
    skip: bool = True
    # How the skips start: "ridge" = the closed-form ridge map (eval.ridge_lambda) from the input
    # teacher's training questions to each teacher's training answers, with every head zeroed, so
    # the untrained student *is* the same-input ridge baseline; "zero" = zero skips (the residual
    # student starts at the identity baseline). Ridge needs the training targets (store mode).
    # "ridge_frozen": ridge, and the skips are not trained (AdamW's per-weight steps of ~lr scramble
    # a d x d closed-form map within a few hundred steps; the lattice and heads learn the rest).
    skip_init: Literal["zero", "ridge", "ridge_frozen"] = "zero"
    # Random-feature kernel ridge skips for the listed teachers (see KernelSkipSection).
    kernel_skip: KernelSkipSection = field(default_factory=KernelSkipSection)
    lattice: LatticeConfig = field(default_factory=LatticeConfig)

    def __post_init__(self) -> None:
        if self.token_dim < 1:
            raise ValueError(f"token_dim: must be >= 1, got {self.token_dim!r}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens: must be >= 1, got {self.max_tokens!r}")
        if self.pooled_mlp < 0:
            raise ValueError(f"pooled_mlp: must be >= 0 (0 = none), got {self.pooled_mlp!r}")
        if self.bigram_buckets < 0:
            raise ValueError(f"bigram_buckets: must be >= 0 (0 = none), got {self.bigram_buckets!r}")
        from distill.students import student_type

        if self.init_from is not None and not student_type(self.input).starts_from_export:
            raise ValueError("init_from: only a token-input (standalone) student starts from an export; "
                             "set student.input=tokens")
        if self.position_weights != "none" and student_type(self.input).reads_teacher_input:
            raise ValueError(f"position_weights: {self.position_weights!r} weights token positions, and only a "
                             "token-input (standalone) student reads tokens; set student.input=tokens")
        if self.pooled_mlp and student_type(self.input).reads_teacher_input:
            raise ValueError(f"pooled_mlp: {self.pooled_mlp!r} is an MLP on the mean of the token rows, and only a "
                             "token-input (standalone) student has one; set student.input=tokens or pooled_mlp=0")
        if self.bigram_buckets and student_type(self.input).reads_teacher_input:
            raise ValueError(f"bigram_buckets: {self.bigram_buckets!r} are rows of token pairs, and only a "
                             "token-input (standalone) student reads tokens; set student.input=tokens or "
                             "bigram_buckets=0")


@dataclass
class TargetsSection:
    # store: teacher embeddings computed once and cached; online: teachers run inside the job.
    mode: Literal["store", "online"] = "store"
    # Where the target store lives (shared by runs, stages and corpora: a text is embedded once
    # per teacher and prompt; see docs/concepts/target-store.md).
    store_dir: str = ".cache/targets"
    # How stored rows are kept: float32, or float16 (half the disk; rows read back as float32).
    dtype: Literal["float32", "float16"] = "float32"
    # Rows per shard: the most a killed embedding loses per rank, and the unit ranks split.
    shard_rows: int = 16384

    def __post_init__(self):
        if self.shard_rows < 1:
            raise ValueError(f"shard_rows: must be >= 1, got {self.shard_rows!r}")


@dataclass
class OptimSection:
    lr: float = 1e-3
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    # Linear warmup steps, then the schedule.
    warmup_steps: int = 50
    schedule: Literal["cosine", "constant", "plateau"] = "cosine"
    # The cosine schedule decays to lr * min_lr_ratio.
    min_lr_ratio: float = 0.05
    # reduce-on-plateau (schedule: plateau): factor and patience in evaluations.
    plateau_factor: float = 0.5
    plateau_patience: int = 2
    # Gradient clipping by global norm (0 = off).
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ValueError(f"lr: must be > 0, got {self.lr!r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay: must be >= 0, got {self.weight_decay!r}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas: must be two numbers in [0, 1), got {self.betas!r}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps: must be >= 0, got {self.warmup_steps!r}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio: must be in [0, 1], got {self.min_lr_ratio!r}")
        if not 0.0 < self.plateau_factor < 1.0:
            raise ValueError(f"plateau_factor: must be in (0, 1), got {self.plateau_factor!r}")
        if self.grad_clip < 0:
            raise ValueError(f"grad_clip: must be >= 0, got {self.grad_clip!r}")


@dataclass
class TrainSection:
    max_steps: int = 1000
    # Global batch size (summed over processes and accumulation steps).
    batch_size: int = 64
    grad_accum: int = 1
    # no | fp16 | bf16 | auto (bf16 where the device supports it, else no).
    mixed_precision: Literal["no", "fp16", "bf16", "auto"] = "auto"
    # Force CPU even where an accelerator exists.
    cpu: bool = False
    # Validation every N steps: 10 points over the default max_steps, so the curves are curves
    # (an evaluation costs a few percent of a run; bench/eval_cadence.py measures it).
    eval_every: int = 100
    save_every: int = 200
    # Keep the last K checkpoints.
    keep_last: int = 2
    log_every: int = 10
    # Stop when the evaluation metric has not improved for this many evaluations (0 = off).
    early_stopping_patience: int = 0
    # Stop training after this many consecutive non-finite losses or gradients.
    max_nonfinite: int = 5

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size", "grad_accum", "eval_every", "save_every", "keep_last",
                     "log_every", "max_nonfinite"):
            v = getattr(self, name)
            if v < 1:
                raise ValueError(f"{name}: must be >= 1, got {v!r}")
        if self.early_stopping_patience < 0:
            raise ValueError(f"early_stopping_patience: must be >= 0, got {self.early_stopping_patience!r}")
        if self.batch_size % self.grad_accum:
            raise ValueError(
                f"batch_size: {self.batch_size} is not divisible by grad_accum={self.grad_accum}"
            )


def check_new_run_dir(run_dir: Path) -> None:
    """A run without --resume must not write over an existing run directory."""
    if run_dir.exists() and any(run_dir.iterdir()):
        raise RunDirError(f"run directory {run_dir} already exists; pass --resume to continue it, "
                          "or choose another run.name")


def check_world(train: TrainSection, world: int) -> str | None:
    """Why ``world`` processes cannot split the global batch (each rank takes batch_size/world
    examples, in grad_accum micro-batches), or None. Shared by the trainer and ``distill launch``."""
    if train.batch_size % (world * train.grad_accum):
        return f"{train.batch_size} is not divisible by {world} processes x train.grad_accum {train.grad_accum}"
    return None


@dataclass
class EvalSection:
    # Recall@k cut-offs.
    recall_at: list[int] = field(default_factory=lambda: [1, 5, 10])
    # Ridge-regression baseline regulariser.
    ridge_lambda: float = 1.0
    batch_size: int = 256
    # The metric that picks the best checkpoint and drives early stopping: <teacher>/<metric>,
    # or <metric> for the input teacher's space.
    metric: str = "cosine"

    def __post_init__(self) -> None:
        if not self.recall_at or any(k < 1 for k in self.recall_at):
            raise ValueError(f"recall_at: must be positive integers, got {self.recall_at!r}")
        if self.ridge_lambda < 0:
            raise ValueError(f"ridge_lambda: must be >= 0, got {self.ridge_lambda!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1, got {self.batch_size!r}")


@dataclass
class LoggingSection:
    tensorboard: bool = True
    # Images of the lattice state every N steps (0 = off).
    image_every: int = 200
    histogram_every: int = 200
    progress: bool = True


@dataclass
class Config:
    run: RunSection = field(default_factory=RunSection)
    data: DataSection = field(default_factory=DataSection)
    teachers: list[TeacherSpec] = field(default_factory=list)
    student: StudentSection = field(default_factory=StudentSection)
    targets: TargetsSection = field(default_factory=TargetsSection)
    loss: LossConfig = field(default_factory=LossConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    optim: OptimSection = field(default_factory=OptimSection)
    train: TrainSection = field(default_factory=TrainSection)
    eval: EvalSection = field(default_factory=EvalSection)
    logging: LoggingSection = field(default_factory=LoggingSection)

    def to_dict(self) -> dict:
        return to_dict(self)

    @property
    def run_dir(self) -> Path:
        return Path(self.run.output_dir) / self.run.name

    def input_names(self) -> list[str]:
        """The teachers whose question embeddings (concatenated in this order) the student reads;
        for input=tokens, the one whose tokenizer it reads."""
        it = self.student.input_teacher
        if it is None:
            return [self.teachers[0].name]
        return [it] if isinstance(it, str) else list(it)

    def input_teacher(self) -> TeacherSpec:
        """The (first) input teacher: the default space of metrics, tables and ``distill encode``."""
        name = self.input_names()[0]
        return next(t for t in self.teachers if t.name == name)


# ---------------------------------------------------------------------------------------------
# Loading


def load_yaml(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise ConfigError("", f"config file not found: {path}")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError("", f"{path}: not valid UTF-8 ({err.reason} at byte {err.start})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError("", f"{path}:{where}: invalid YAML: {problem}") from None


def parse_override(text: str) -> tuple[list[str | int], Any]:
    """``"a.b[0].c=value"`` -> (["a", "b", 0, "c"], parsed YAML value)."""
    if "=" not in text:
        raise ConfigError("--set", f"'{text}' is not of the form key.path=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    parts: list[str | int] = []
    for piece in key.split("."):
        name, _, rest = piece.partition("[")
        if name:
            parts.append(name)
        while rest:
            idx, _, rest = rest.partition("]")
            if not idx.isdigit():
                raise ConfigError("--set", f"bad index in '{key}'")
            parts.append(int(idx))
            rest = rest.lstrip("[")
    if not parts or any(p == "" for p in parts):
        raise ConfigError("--set", f"'{text}' has an empty key path")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return parts, value


def apply_override(data: dict, parts: list[str | int], value: Any) -> None:
    node: Any = data
    path = ""
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                size = len(node) if isinstance(node, list) else 0
                raise ConfigError(join(path, part), f"no such list item (the list has {size})")
        elif not isinstance(node, dict):
            raise ConfigError(path, f"is not a mapping, cannot set '{part}'")
        if last:
            node[part] = value
        else:
            nxt = node[part] if isinstance(part, int) else node.get(part)
            if nxt is None:
                nxt = {}
                node[part] = nxt
            node = nxt
        path = join(path, part)


def find_preset(name: str, config_dir: Path | None) -> Path:
    candidates = []
    if config_dir is not None:
        candidates += [config_dir / "teachers", config_dir]
    candidates += PRESET_DIRS
    for d in candidates:
        for ext in (".yaml", ".yml"):
            p = d / f"{name}{ext}"
            if p.is_file():
                return p
    known = sorted({p.stem for d in candidates if d.is_dir() for p in d.glob("*.y*ml")})
    raise FileNotFoundError(f"preset '{name}' not found (known presets: {', '.join(known) or 'none'})")


def expand_teachers(data: dict, config_dir: Path | None) -> None:
    """Replace ``preset: NAME`` in each teacher entry by the preset's keys (entry keys win)."""
    teachers = data.get("teachers")
    if teachers is None:
        return
    if not isinstance(teachers, list):
        raise ConfigError("teachers", f"must be a list of teacher entries, got {teachers!r}")
    for i, entry in enumerate(teachers):
        path = join("teachers", i)
        if not isinstance(entry, dict):
            raise ConfigError(path, f"must be a mapping, got {entry!r}")
        if "preset" not in entry:
            continue
        name = entry["preset"]
        if not isinstance(name, str):
            raise ConfigError(join(path, "preset"), f"must be a preset name, got {name!r}")
        try:
            preset_path = find_preset(name, config_dir)
        except FileNotFoundError as err:
            raise ConfigError(join(path, "preset"), str(err)) from None
        preset = load_yaml(preset_path)
        if not isinstance(preset, dict):
            raise ConfigError(join(path, "preset"), f"{preset_path} does not hold a mapping")
        merged = dict(preset)
        merged.update({k: v for k, v in entry.items() if k != "preset"})
        teachers[i] = merged


def check_cross_section(cfg: Config, config_dir: Path | None) -> None:
    """Checks that span sections or look at the file system."""
    if not cfg.teachers:
        raise ConfigError("teachers", "at least one teacher is needed")
    from distill.students import student_type, student_types

    stype = student_type(cfg.student.input)
    if cfg.data.task == "texts" and not stype.reads_text:
        readers = " or ".join(f"student.input={n}" for n, t in student_types().items() if t.reads_text)
        raise ConfigError("data.task", f"texts: plain-text distillation trains a standalone student; set "
                                       f"{readers} (a teacher-input student would map a text's embedding to itself)")
    if cfg.loss.encodes_answers and (cfg.data.task != "pairs" or not stype.reads_text):
        why = ("data.task is texts: a text is its own answer" if cfg.data.task != "pairs" else
               f"student.input={cfg.student.input} reads teacher embeddings, not text")
        raise ConfigError("loss.both_sides", f"the student encodes the answers too only for question -> answer "
                                             f"pairs and a student that reads text; here {why}. Remove both_sides")
    seen: dict[str, int] = {}
    for i, t in enumerate(cfg.teachers):
        if t.name in seen:
            raise ConfigError(join(join("teachers", i), "name"), f"'{t.name}' is already used by teachers[{seen[t.name]}]")
        seen[t.name] = i
        check_teacher_source(t, join("teachers", i))
    check_input_teachers(cfg, seen)
    check_kernel_skip(cfg, seen)
    if cfg.targets.mode == "online" and cfg.curriculum.difficulty in ("qa_distance", "teacher_disagreement"):
        raise ConfigError(
            "curriculum.difficulty",
            f"'{cfg.curriculum.difficulty}' needs every example's stored targets; with targets.mode: online "
            "use none, length or student_loss",
        )
    check_input_face(cfg)
    check_token_table_width(cfg)
    if cfg.train.eval_every > cfg.train.max_steps and cfg.train.early_stopping_patience:
        raise ConfigError("train.early_stopping_patience", "needs eval_every <= max_steps to ever evaluate")


def check_input_teachers(cfg: Config, seen: dict[str, int]) -> None:
    """student.input_teacher: teachers of this config, each once; several only for teacher input."""
    it = cfg.student.input_teacher
    if it is None:
        return
    key, names = "student.input_teacher", ", ".join(seen)
    listed = [it] if isinstance(it, str) else it
    if not listed:
        raise ConfigError(key, f"an empty list; name a teacher, several, or null for the first (teachers: {names})")
    for i, name in enumerate(listed):
        where = key if isinstance(it, str) else join(key, i)
        if name not in seen:
            raise ConfigError(where, f"'{name}' is not a teacher (teachers: {names})")
        if name in listed[:i]:
            raise ConfigError(where, f"'{name}' is listed twice")
    from distill.students import student_type

    if len(listed) > 1 and not student_type(cfg.student.input).reads_teacher_input:
        raise ConfigError(key, f"several input teachers need student.input=teacher; input={cfg.student.input} "
                               "reads one teacher's tokenizer")


def check_kernel_skip(cfg: Config, seen: dict[str, int]) -> None:
    """student.kernel_skip.teachers: teachers of this config, each once; needs a teacher-input
    student with skips and stored targets (the map is fitted on the training split)."""
    ks, key = cfg.student.kernel_skip, "student.kernel_skip.teachers"
    for i, name in enumerate(ks.teachers):
        if name not in seen:
            raise ConfigError(join(key, i), f"'{name}' is not a teacher (teachers: {', '.join(seen)})")
        if name in ks.teachers[:i]:
            raise ConfigError(join(key, i), f"'{name}' is listed twice")
    if not ks.teachers:
        return
    from distill.students import student_type

    if not student_type(cfg.student.input).reads_teacher_input or not cfg.student.skip:
        raise ConfigError(key, "a kernel skip needs student.input=teacher and student.skip=true")
    if cfg.targets.mode != "store":
        raise ConfigError(key, "a kernel skip is fitted on the stored training targets; set targets.mode=store")


def check_input_face(cfg: Config) -> None:
    """The student's input must fit on the lattice's input face (known for a token input, or a
    teacher in a local directory): caught here, not after the teachers have run."""
    from distill.students import student_type

    dim, what = student_type(cfg.student.input).face_width(cfg)
    if dim is None:
        return
    try:  # the student sets input_dim to this width, whatever the config says
        replace(cfg.student.lattice, input_dim=dim)
    except ValueError as err:
        msg = str(err).partition(": ")[2] or str(err)
        raise ConfigError("student.lattice", f"input face too small: {msg} ({what})") from None


def check_token_table_width(cfg: Config) -> None:
    """token_init: teacher PCA's the input teacher's token embeddings, so the table can be at most
    that teacher's width (known for a teacher in a local directory): caught here, not mid-run."""
    from distill.students import student_type
    from teachers import resolve_model_source, teacher_dim, teacher_kind

    if student_type(cfg.student.input).reads_teacher_input or cfg.student.token_init != "teacher":
        return
    spec = cfg.input_teacher()
    width = teacher_dim(spec)
    if width is None and spec.model.startswith("pkg:") and teacher_kind(spec.model).name == "hf":
        # a model shipped in a Python package (the MiniLM preset): its directory's config.json (a
        # package lookup; a GGUF kind would dequantise to resolve, so it is left to load time)
        width = teacher_dim(replace(spec, model=resolve_model_source(spec.model, teacher=spec.name)))
    if width is not None and cfg.student.token_dim > width:
        raise ConfigError("student.token_dim", f"{cfg.student.token_dim} is wider than the input teacher "
                                               f"'{spec.name}' ({width} dimensions), whose token embeddings "
                                               f"token_init: teacher reduces by PCA; use at most {width}, "
                                               "or token_init: random")


def check_teacher_source(t: TeacherSpec, path: str) -> None:
    """The teacher's own checks of its model directory (:func:`teachers.check_teacher`), reported
    under the teacher's key path."""
    from teachers import TeacherSpecError, check_teacher

    try:
        check_teacher(t)
    except TeacherSpecError as err:
        raise ConfigError(join(path, err.field), err.message) from None


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
                data: dict | None = None, config_dir: Path | None = None) -> Config:
    """Load, override, expand presets, validate. Raises :class:`ConfigError` on any problem.
    ``config_dir``: where presets resolve for ``data`` given directly (a file's own directory
    otherwise)."""
    if path is not None:
        data = load_yaml(path)
        config_dir = Path(path).resolve().parent
    data = copy.deepcopy(data) if data is not None else {}
    if not isinstance(data, dict):
        raise ConfigError("", f"{path}: the top level must be a mapping of sections")
    known = [f for f in Config.__dataclass_fields__]
    for key in data:
        if key not in known:
            raise unknown_key_error("", str(key), known)
    for text in overrides:
        parts, value = parse_override(text)
        if isinstance(parts[0], str) and parts[0] not in known:
            raise unknown_key_error("", parts[0], known)
        apply_override(data, parts, value)
    drop_retired(data)
    expand_teachers(data, config_dir)
    cfg = build(Config, data)
    check_cross_section(cfg, config_dir)
    return cfg


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False, allow_unicode=True)
