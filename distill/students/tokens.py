"""The token-input (standalone) student, ``student.input: tokens``: token ids in, one embedding per
teacher space out, no teacher needed.

::

    ids (B, L), mask (B, L)
      e = table[ids]                                   (B, L, token_dim)   the token table
      s = sum(w * e * mask) / sum(w * mask)            (B, token_dim)      the static path (w = 1:
                                                                           the plain mean)
      s = s + sum(g[pair(ids)] * mask2) / sum(mask)    (bigram_buckets)    hashed rows of adjacent
                                                                           token pairs, zero-initialised
      z = s + lattice(rms(e), mask)   (lattice on)     (B, token_dim)      tokens on the input face,
                                                                           readout zero-initialised
      z = z + mlp(z)                  (pooled_mlp)     (B, token_dim)      a residual MLP on the mean,
                                                                           last layer zero-initialised
      y[name] = head[name](z)                          (B, dim_name)       one linear head per teacher

``position_weights`` (``none`` | ``scalar`` | ``vector``): ``w`` is 1, or a learned weight per
token position (one scalar, or one per dimension, for positions ``0 .. max_tokens - 1``; stored
as its log, so it stays positive), starting at 1 (= the plain mean). A position-weighted mean
reads word order at the static path's cost: a swap of the tokens at positions i and j moves ``s``
by ``(w[i] - w[j]) (e_a - e_b) / sum(w)``.

``bigram_buckets`` (0 = none): a second table of that many rows, one per hashed pair of adjacent
tokens (fastText's word n-grams): ``pair(a, b) = ((a * 1000003 + b) mod 4294967291) mod buckets``,
for every two neighbouring kept tokens. Their rows are summed and divided by the token count, so a
text's vector is ``(sum of its token rows + sum of its pair rows) / its token count``. The rows
start at zero (the plain mean, exactly), and a swap of two words changes the pairs around them:
the cheapest reading of local word order.

With ``lattice=None`` (or ``use_lattice=False`` in a forward) the model is exactly the static
path: the ablation "lattice off" uses the same table and the same heads. The lattice's readout is
zero-initialised, so an untrained student with a lattice equals the one without.

Token table init: ``init="teacher"`` (the PCA'd teacher rows of :mod:`distill.token_init`, heads
start as the inverse PCA so the untrained static path already points into the teacher's space) or
``init="random"`` (N(0, 1/token_dim), heads random; the ablation).

Here: the model (:class:`StandaloneStudent`), its export format (``config.json`` +
``model.safetensors`` + the tokenizer files + ``manifest.json``, :mod:`distill.export.manifest`:
:func:`write_standalone`, :func:`load_standalone`, which verifies the manifest),
the recipe's view of it (:class:`TokenStudent`: x (B, L) ids, ``distill.tokens.PAD`` padded) and
its registry entry (:class:`TokenInputType`: build from config + data, load an export).

Pure PyTorch + ``lattice`` at import: importing this module never imports the trainer,
accelerate or deepspeed (the exported :class:`distill.encoder.Encoder` relies on it); building a
student for training imports what it needs inside :class:`TokenInputType`.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from distill.export.manifest import verify_export, write_manifest
from distill.tokens import mask_of
from fileio import write_dir_atomic
from lattice import LatticeConfig
from lattice.tokens import OVERFLOWS, TokenLattice3D

NAME = "tokens"
FORMAT_VERSION = 1
MODEL_NAME = "StandaloneStudent"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
POSITION_WEIGHTS = ("none", "scalar", "vector")
# bigram_buckets' hash of a token pair (a, b): ((a * BIGRAM_MULT + b) % BIGRAM_PRIME) % buckets. Part of
# the export format: changing either constant changes every bigram student's output.
BIGRAM_MULT = 1_000_003
BIGRAM_PRIME = 4_294_967_291
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


@dataclass
class StandaloneConfig:
    """vocab_size/token_dim: the table; heads: teacher name -> embedding width (order kept);
    input_teacher: the default space; lattice: LatticeConfig fields (dict) or None (static only);
    overflow: the token-face policy for texts longer than the face; max_tokens: tokens kept per
    text (the tokenizer truncates there; the static mean sees them all)."""

    vocab_size: int
    token_dim: int
    heads: dict[str, int]
    input_teacher: str
    lattice: Optional[dict] = None
    overflow: str = "fold"
    max_tokens: int = 512
    pad_id: int = 0  # unused (padding is distill.tokens.PAD under a mask); kept: exports record it
    init: str = "teacher"
    # Feed the lattice unit-RMS token rows: the table's SIF weighting shrinks frequent tokens
    # (not, what, no) that the static mean should discount but composition needs to see.
    lattice_token_norm: bool = True
    # The static path's mean: plain (none) or weighted by a learned weight per token position
    # (scalar, or vector: one per dimension). Exports from before the field read as none.
    position_weights: str = "none"
    # The hidden width of the residual MLP on the pooled vector (0 = none). Exports from before the
    # field read as 0.
    pooled_mlp: int = 0
    # Hashed adjacent-token-pair rows added to the static mean (0 = none). Exports from before the
    # field read as 0.
    bigram_buckets: int = 0
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.input_teacher not in self.heads:
            raise ValueError(f"input_teacher: {self.input_teacher!r} is not one of the heads {list(self.heads)}")
        if self.overflow not in OVERFLOWS:
            raise ValueError(f"overflow: {self.overflow!r} is not one of {', '.join(OVERFLOWS)}")
        if self.init not in ("teacher", "random"):
            raise ValueError(f"init: {self.init!r} is not one of teacher, random")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens: must be >= 1, got {self.max_tokens}")
        if self.position_weights not in POSITION_WEIGHTS:
            raise ValueError(f"position_weights: {self.position_weights!r} is not one of {', '.join(POSITION_WEIGHTS)}")
        if self.pooled_mlp < 0:
            raise ValueError(f"pooled_mlp: must be >= 0 (0 = none), got {self.pooled_mlp}")
        if self.bigram_buckets < 0:
            raise ValueError(f"bigram_buckets: must be >= 0 (0 = none), got {self.bigram_buckets}")

    def to_dict(self) -> dict:
        return asdict(self)


class StandaloneStudent(nn.Module):
    """See the module docstring. ``forward(ids, mask) -> {teacher: (B, dim)}`` (not normalised)."""

    def __init__(self, config: StandaloneConfig, token_table=None):
        super().__init__()
        self.config = config
        c = config
        self.embed = nn.Embedding(c.vocab_size, c.token_dim)
        self.heads = nn.ModuleDict({name: nn.Linear(c.token_dim, dim) for name, dim in c.heads.items()})
        # (max_tokens, 1 | token_dim): the log of the static mean's weight per token position (a
        # weight stays > 0, so a row's weights never sum to 0), 0 = weight 1 at the start.
        self.position: Optional[nn.Parameter] = None
        if c.position_weights != "none":
            width = 1 if c.position_weights == "scalar" else c.token_dim
            self.position = nn.Parameter(torch.zeros(c.max_tokens, width))
        # z + W2 gelu(W1 layernorm(z)) on the pooled vector; W2 and its bias start at zero, so an
        # untrained MLP leaves the static path exactly as it is.
        self.mlp: Optional[nn.Sequential] = None
        if c.pooled_mlp:
            self.mlp = nn.Sequential(nn.LayerNorm(c.token_dim), nn.Linear(c.token_dim, c.pooled_mlp), nn.GELU(),
                                     nn.Linear(c.pooled_mlp, c.token_dim))
            nn.init.zeros_(self.mlp[-1].weight)
            nn.init.zeros_(self.mlp[-1].bias)
        # (bigram_buckets, token_dim): the hashed token-pair rows, all 0 at the start (the plain mean).
        self.bigram: Optional[nn.Embedding] = None
        if c.bigram_buckets:
            self.bigram = nn.Embedding(c.bigram_buckets, c.token_dim)
            nn.init.zeros_(self.bigram.weight)
        if c.lattice is not None:
            # zero_init is forced off: the readout below is zero-initialised, and a zero rule too
            # would leave the output face at zero and every lattice gradient at zero forever.
            lc = LatticeConfig(**{**c.lattice, "input_dim": 1, "output_dim": c.token_dim, "zero_init": False})
            self.lattice: Optional[TokenLattice3D] = TokenLattice3D(lc, c.token_dim, c.overflow)
            # The lattice is a correction to the static vector: it starts at exactly zero.
            for p in self.lattice.readout.parameters():
                nn.init.zeros_(p)
        else:
            self.lattice = None
        if token_table is not None:
            self.load_token_table(token_table)
        elif c.init == "random":
            nn.init.normal_(self.embed.weight, std=c.token_dim ** -0.5)

    def load_token_table(self, t) -> None:
        """Copy a :class:`distill.token_init.TokenTable` into the table; the input teacher's head
        becomes the inverse PCA (z @ components + mean), so it outputs in the teacher's space."""
        table = torch.as_tensor(t.table)
        if tuple(table.shape) != tuple(self.embed.weight.shape):
            raise ValueError(f"token table: shape {tuple(table.shape)} does not match the student's "
                             f"{tuple(self.embed.weight.shape)} (vocab_size, token_dim)")
        with torch.no_grad():
            self.embed.weight.copy_(table)
            head = self.heads[self.config.input_teacher]
            comps = torch.as_tensor(t.components)
            if tuple(head.weight.shape) == tuple(comps.T.shape):
                head.weight.copy_(comps.T)
                head.bias.copy_(torch.as_tensor(t.mean))

    @property
    def is_static_table(self) -> bool:
        """Whether the student is one row per token, averaged (no lattice, no position weights, no
        bigram rows, no pooled MLP): what a Model2Vec or a sentence-transformers StaticEmbedding
        model can hold."""
        return self.lattice is None and self.position is None and self.mlp is None and self.bigram is None

    def mean(self, e: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """e (B, L, token_dim), m (B, L) float mask -> (B, token_dim): the masked mean of the rows,
        position-weighted under ``position_weights`` (zeros for an empty row)."""
        if self.position is None:
            return (e * m.unsqueeze(-1)).sum(1) / m.sum(1, keepdim=True).clamp(min=1.0)
        pos = torch.arange(e.shape[1], device=e.device).clamp(max=self.position.shape[0] - 1)
        w = m.unsqueeze(-1) * torch.exp(self.position[pos]).to(e.dtype)  # (B, L, 1 | token_dim), > 0
        den = w.sum(1)
        return (e * w).sum(1) / torch.where(den > 0, den, torch.ones_like(den))  # an empty row: 0

    def pair_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, L) -> (B, L - 1) the bigram bucket of each adjacent token pair (see BIGRAM_MULT)."""
        a, b = ids[:, :-1].long(), ids[:, 1:].long()
        return (a * BIGRAM_MULT + b) % BIGRAM_PRIME % self.config.bigram_buckets

    def bigram_sum(self, ids: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """ids, m (B, L) float mask -> (B, token_dim): the pair rows of neighbouring kept tokens,
        summed, over the text's token count (zeros for a text of fewer than two tokens)."""
        pm = (m[:, :-1] * m[:, 1:]).unsqueeze(-1)
        g = self.bigram(self.pair_ids(ids)).to(m.dtype)
        return (g * pm).sum(1) / m.sum(1, keepdim=True).clamp(min=1.0)

    def static_from(self, ids: torch.Tensor, e: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """ids (B, L), their rows e (B, L, token_dim), m (B, L) float mask -> (B, token_dim): the
        static path, the masked (position-weighted) mean of the rows plus the pair rows under
        ``bigram_buckets``. The one place it is computed (the ONNX graph calls it too)."""
        z = self.mean(e, m)
        if self.bigram is not None:
            z = z + self.bigram_sum(ids, m)
        return z

    def static(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """ids, mask (B, L) -> (B, token_dim): the static path (:meth:`static_from`)."""
        e = self.embed(ids)
        return self.static_from(ids, e, mask.to(e.dtype))

    def pooled(self, ids: torch.Tensor, mask: torch.Tensor, use_lattice: bool = True,
               steps: Optional[int] = None) -> torch.Tensor:
        """ids, mask (B, L) -> z (B, token_dim): the static mean plus the lattice correction."""
        e = self.embed(ids)
        m = mask.to(e.dtype)
        z = self.static_from(ids, e, m)
        if use_lattice and self.lattice is not None:
            x = e
            if self.config.lattice_token_norm:
                x = e * torch.rsqrt(e.pow(2).mean(-1, keepdim=True) + 1e-8)
            z = z + self.lattice(x, m, steps=steps)
        if self.mlp is not None:
            z = z + self.mlp(z)
        return z

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, use_lattice: bool = True,
                steps: Optional[int] = None) -> dict[str, torch.Tensor]:
        z = self.pooled(ids, mask, use_lattice, steps)
        return {name: head(z) for name, head in self.heads.items()}

    # ---- save / load ------------------------------------------------------------------------
    def config_doc(self) -> dict:
        return {"format_version": FORMAT_VERSION, "model": MODEL_NAME, "config": self.config.to_dict()}

    @classmethod
    def from_config_doc(cls, doc: dict) -> StandaloneStudent:
        if doc.get("model") != MODEL_NAME:
            raise ValueError(f"model: {doc.get('model')!r} is not a {MODEL_NAME}")
        if doc.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"format_version: unsupported {doc.get('format_version')!r}")
        return cls(StandaloneConfig(**doc["config"]))



# ---- the export: weights, config.json, tokenizer files ------------------------------------------
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


def export_standalone(student: StandaloneStudent, tokenizer_dir: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Write ``student`` + the tokenizer files of ``tokenizer_dir`` to ``path`` atomically."""

    def fill(tmp: Path) -> None:
        tmp.mkdir()
        write_standalone(student, tokenizer_dir, tmp)

    path = Path(path)
    write_dir_atomic(path, fill)
    return path


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


# ---- the recipe's view: x (B, L) ids, PAD padded -------------------------------------------------
class TokenStudent(nn.Module):
    """A StandaloneStudent with the recipe's interface (:class:`distill.students.StudentType`'s
    student): ``forward(x)`` with x (B, L) token ids, ``distill.tokens.PAD`` padded ->
    {teacher: (B, dim)}. ``tokenizer_dir``: where the export's tokenizer files come from."""

    input_mode = NAME

    def __init__(self, model: StandaloneStudent, tokenizer_dir: str | Path):
        super().__init__()
        self.model = model
        self.tokenizer_dir = str(tokenizer_dir)
        self.teacher_dims = dict(model.config.heads)
        self.input_teacher = model.config.input_teacher
        self.input_teachers = [self.input_teacher]

    def forward(self, x: torch.Tensor, steps: int | None = None) -> dict[str, torch.Tensor]:
        """x: (B, L) token ids, PAD padded -> {teacher: (B, d_teacher)} (not normalised)."""
        return self.model(x.clamp(min=0), mask_of(x), steps=steps)

    def head_weights(self) -> dict[str, torch.Tensor]:
        """{teacher: its linear head's weight (d_k, token_dim)}, for the histograms."""
        return {n: h.weight for n, h in self.model.heads.items()}

    @property
    def lattice_config(self):
        """The token lattice's config (None with the lattice off)."""
        lat = self.model.lattice
        return lat.config if lat is not None else None

    @torch.no_grad()
    def trace(self, x: torch.Tensor, trace_steps) -> dict[int, torch.Tensor]:
        """Lattice states (B, D, H, W, C) at the chosen steps (eval mode; no RNG drawn). With the
        lattice off, the pooled vector stands in as a (B, 1, 1, 1, token_dim) state."""
        was_training = self.training
        self.eval()
        try:
            mask, ids = mask_of(x), x.clamp(min=0)
            m = self.model
            if m.lattice is None:
                z = m.pooled(ids, mask).view(x.shape[0], 1, 1, 1, -1)
                return {int(t): z for t in trace_steps}
            e = m.embed(ids)
            if m.config.lattice_token_norm:
                e = e * torch.rsqrt(e.pow(2).mean(-1, keepdim=True) + 1e-8)
            return m.lattice.run_tokens(e, mask.to(e.dtype), steps=m.lattice.config.steps,
                                        trace_steps=tuple(trace_steps)).trace
        finally:
            self.train(was_training)

    def student_config(self) -> dict:
        """What a resume must match (checkpoint meta); the keys of :func:`section_config` plus what
        the data fixed (vocabulary size, the teachers' dimensions)."""
        c = self.model.config
        return {"teacher_dims": self.teacher_dims, "input_teacher": c.input_teacher, "input_mode": NAME,
                "token_dim": c.token_dim, "token_init": c.init, "token_lattice": c.lattice is not None,
                "overflow": c.overflow, "max_tokens": c.max_tokens, "vocab_size": c.vocab_size,
                "lattice": c.lattice, **pooling_fields(c.position_weights, c.pooled_mlp, c.bigram_buckets)}

    def save_pretrained(self, path: str | Path) -> None:
        """The standalone export (weights, config.json, tokenizer files) into the directory ``path``."""
        Path(path).mkdir(parents=True, exist_ok=True)
        write_standalone(self.model, self.tokenizer_dir, path)


def lattice_fields(section) -> dict | None:
    """The lattice fields a token student is built with (the sizes the data would fix dropped)."""
    if not section.token_lattice:
        return None
    d = section.lattice.to_dict()
    d.pop("input_dim", None)
    d.pop("output_dim", None)
    return d


def pooling_fields(position_weights: str, pooled_mlp: int, bigram_buckets: int = 0) -> dict:
    """The pooling fields a resume must match, each only when it is not its default: a checkpoint
    written before the field existed (plain mean, no MLP, no bigram rows) still resumes."""
    out = {}
    if bigram_buckets:
        out["bigram_buckets"] = bigram_buckets
    if position_weights != "none":
        out["position_weights"] = position_weights
    if pooled_mlp:
        out["pooled_mlp"] = pooled_mlp
    return out


def section_config(section, input_teacher: str | list[str]) -> dict:
    """The token student's fields as the config gives them (a subset of ``student_config``)."""
    name = input_teacher if isinstance(input_teacher, str) else input_teacher[0]
    return {"input_teacher": name, "input_mode": NAME, "token_dim": section.token_dim,
            "token_init": section.token_init, "token_lattice": section.token_lattice,
            "overflow": section.overflow, "max_tokens": section.max_tokens, "lattice": lattice_fields(section),
            **pooling_fields(section.position_weights, section.pooled_mlp, section.bigram_buckets)}


# ---- the registry entry (distill.students.STUDENT_TYPES) -----------------------------------------
class TokenInputType:
    """``student.input: tokens``: reads the text through the input teacher's tokenizer; exports an
    encoder that needs no teacher."""

    name = NAME
    reads_teacher_input = False
    reads_text = True  # can train on plain texts (data.task: texts)
    starts_from_export = True  # student.init_from: every weight from an earlier run's export
    export_file = CONFIG_NAME

    section_config = staticmethod(section_config)

    @staticmethod
    def face_width(cfg) -> tuple[int | None, str]:
        # Tokens are written one per face cell (lattice/tokens.py): no vector has to fit the face.
        return 1, "token input"

    @staticmethod
    def tokenizer_file(spec) -> Path:
        """The input teacher's tokenizer.json (the standalone student's tokenizer)."""
        from distill.schema import ConfigError
        from teachers import resolve_model_source

        src = Path(resolve_model_source(spec.model))
        f = src / "tokenizer.json"
        if not f.is_file():
            raise ConfigError("student.input", f"tokens: the input teacher '{spec.name}' has no tokenizer.json in "
                                               f"{src} (the standalone student reads the fast tokenizer's file)")
        return f

    @classmethod
    def text_inputs(cls, cfg, texts: list[str]) -> torch.Tensor:
        """(N, L) token ids of the texts on the input teacher's tokenizer, PAD padded."""
        from distill.tokens import load_tokenizer, tokenize

        return tokenize(load_tokenizer(cls.tokenizer_file(cfg.input_teacher()), cfg.student.max_tokens), texts)

    @classmethod
    def build(cls, cfg, data) -> TokenStudent:
        """The configured standalone student: token table from the input teacher (cached by
        fingerprint under ``<targets.store_dir>/token_tables``) or random, or every weight from
        ``student.init_from``."""
        from distill.schema import ConfigError
        from distill.tokens import load_tokenizer, vocab_size

        s, spec = cfg.student, cfg.input_teacher()
        tok_file = cls.tokenizer_file(spec)
        vocab = vocab_size(load_tokenizer(tok_file, s.max_tokens))
        conf = StandaloneConfig(vocab_size=vocab, token_dim=s.token_dim, heads=dict(data.dims),
                                input_teacher=spec.name, lattice=lattice_fields(s), overflow=s.overflow,
                                max_tokens=s.max_tokens, init=s.token_init, position_weights=s.position_weights,
                                pooled_mlp=s.pooled_mlp, bigram_buckets=s.bigram_buckets)
        if s.init_from:
            return TokenStudent(load_init_from(s.init_from, conf), tok_file.parent)
        table = None
        if s.token_init == "teacher":
            from distill.token_init import teacher_token_table

            table = teacher_token_table(spec.model, dim=s.token_dim,
                                        cache_dir=Path(cfg.targets.store_dir) / "token_tables")
            if table.table.shape[0] != vocab:
                raise ConfigError("student.token_init", f"teacher: the token table has {table.table.shape[0]} rows "
                                                        f"but the tokenizer {vocab} tokens")
        return TokenStudent(StandaloneStudent(conf, token_table=table), tok_file.parent)

    @staticmethod
    def load(export_dir: str | Path) -> TokenStudent:
        model, root = load_standalone(export_dir)
        return TokenStudent(model, root)


# Parameters whose fresh value leaves the student's output as it is (position logs 0 = weight 1, pair
# rows 0): a plain-mean export may start a student that has them.
ZERO_START = ("position", "bigram.weight")


def load_init_from(path: str, conf: StandaloneConfig) -> StandaloneStudent:
    """A student built as ``conf`` with every weight from the export at ``path``; ``ConfigError``
    naming student.init_from when the export is missing or its shapes differ.

    One exception: a plain-mean export starts a position-weighted or a bigram student (its
    ``position`` logs and ``bigram`` rows keep their start, 0, so the new student computes what the
    export did). A later stage can so learn position weights or pair rows on top of a plain-mean
    stage."""
    from distill.schema import ConfigError

    try:
        old, root = load_standalone(path)
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError("student.init_from", str(err)) from None
    new = StandaloneStudent(conf)
    have, want = old.state_dict(), new.state_dict()
    for k in ZERO_START:  # what the export lacks of these starts where it leaves the student unchanged
        if k in want and k not in have:
            have[k] = want[k]
    diffs = [f"{k}: export {tuple(have[k].shape) if k in have else 'missing'}, config {tuple(v.shape)}"
             for k, v in want.items() if k not in have or have[k].shape != v.shape]
    diffs += [f"{k}: in the export, not in the config's student" for k in have if k not in want]
    if diffs:
        raise ConfigError("student.init_from", f"{root} does not match the configured student ("
                          + "; ".join(diffs[:4]) + (f"; {len(diffs) - 4} more" if len(diffs) > 4 else "")
                          + "); set student.token_dim / lattice / teachers as in that run")
    new.load_state_dict(have)
    return new


STUDENT_TYPE = TokenInputType()
