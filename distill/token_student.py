"""The standalone student inside the training recipe (``student.input: tokens``).

:class:`TokenStudent` wraps a :class:`distill.standalone.StandaloneStudent` so the recipe (loss,
evaluator, checkpointer, monitor) drives it like the teacher-input :class:`distill.student.Student`:

    x (B, L) token ids, -1 where padded  ->  {teacher: (B, dim)}

The ids come from the input teacher's ``tokenizer.json`` through the same ``tokenizers`` setup as
:class:`distill.encoder.Encoder` (no special tokens, truncated at ``student.max_tokens``), so the
run's export (``runs/<name>/student/``: the standalone export, :func:`distill.encoder.write_standalone`)
encodes raw text exactly as the student saw it in training. Padding is -1, not the tokenizer's pad
id, so no real token can ever be mistaken for padding.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from distill.standalone import StandaloneConfig, StandaloneStudent

PAD = -1


class _HeadView:
    """Gives a linear head the ``head.net[-1]`` shape the monitor reads from Student's heads."""

    def __init__(self, linear: nn.Linear):
        self.net = [linear]


class TokenStudent(nn.Module):
    """A StandaloneStudent with the recipe's interface. ``tokenizer_dir``: where the export's
    tokenizer files come from (the input teacher's model directory)."""

    input_mode = "tokens"

    def __init__(self, model: StandaloneStudent, tokenizer_dir: str | Path):
        super().__init__()
        self.model = model
        self.tokenizer_dir = str(tokenizer_dir)
        self.teacher_dims = dict(model.config.heads)
        self.input_teacher = model.config.input_teacher

    def forward(self, x: torch.Tensor, steps: int | None = None) -> dict[str, torch.Tensor]:
        """x: (B, L) token ids, PAD (-1) padded -> {teacher: (B, d_teacher)} (not normalised)."""
        mask = x >= 0
        return self.model(x.clamp(min=0), mask, steps=steps)

    @property
    def heads(self) -> dict[str, _HeadView]:
        return {n: _HeadView(h) for n, h in self.model.heads.items()}

    @property
    def lattice_config(self):
        lat = self.model.lattice
        return lat.config if lat is not None else SimpleNamespace(steps=0)

    @torch.no_grad()
    def trace(self, x: torch.Tensor, trace_steps) -> dict[int, torch.Tensor]:
        """Lattice states (B, D, H, W, C) at the chosen steps (eval mode; no RNG drawn). With the
        lattice off, the pooled vector stands in as a (B, 1, 1, 1, token_dim) state."""
        was_training = self.training
        self.eval()
        try:
            mask, ids = x >= 0, x.clamp(min=0)
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
        """What a resume must match (checkpoint meta); the keys of :func:`section_config` for tokens
        plus what the data fixed (vocabulary size, the teachers' dimensions)."""
        c = self.model.config
        return {"teacher_dims": self.teacher_dims, "input_teacher": c.input_teacher, "input_mode": "tokens",
                "token_dim": c.token_dim, "token_init": c.init, "token_lattice": c.lattice is not None,
                "overflow": c.overflow, "max_tokens": c.max_tokens, "vocab_size": c.vocab_size,
                "lattice": c.lattice}

    def save_pretrained(self, path: str | Path) -> None:
        """The standalone export (weights, config.json, tokenizer files) into the directory ``path``."""
        from distill.encoder import write_standalone

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


def section_config(section, input_teacher: str) -> dict:
    """The token student's fields as the config gives them (a subset of ``student_config``)."""
    return {"input_teacher": input_teacher, "input_mode": "tokens", "token_dim": section.token_dim,
            "token_init": section.token_init, "token_lattice": section.token_lattice,
            "overflow": section.overflow, "max_tokens": section.max_tokens, "lattice": lattice_fields(section)}


def tokenizer_file(spec) -> Path:
    """The input teacher's tokenizer.json (the standalone student's tokenizer)."""
    from teachers import resolve_model_source

    src = Path(resolve_model_source(spec.model))
    f = src / "tokenizer.json"
    if not f.is_file():
        from distill.schema import ConfigError

        raise ConfigError("student.input", f"tokens: the input teacher '{spec.name}' has no tokenizer.json in "
                                           f"{src} (the standalone student reads the fast tokenizer's file)")
    return f


def tokenize(spec, texts: list[str], max_tokens: int) -> tuple[torch.Tensor, int]:
    """texts -> ((N, L) token ids, PAD-padded; the vocabulary size), as the Encoder tokenizes."""
    from distill.encoder import load_tokenizer

    tok = load_tokenizer(tokenizer_file(spec), max_tokens)
    enc = tok.encode_batch(list(texts), add_special_tokens=False)
    width = max(1, max((len(e.ids) for e in enc), default=1))
    ids = np.full((len(texts), width), PAD, dtype=np.int64)
    for i, e in enumerate(enc):
        ids[i, : len(e.ids)] = e.ids
    return torch.from_numpy(ids), tok.get_vocab_size(with_added_tokens=True)


def build_token_student(cfg, dims: dict[str, int], vocab_size: int) -> TokenStudent:
    """The configured standalone student: token table from the input teacher (cached by fingerprint
    under ``<targets.store_dir>/token_tables``) or random, or every weight from ``init_from``."""
    from distill.schema import ConfigError

    s, spec = cfg.student, cfg.input_teacher()
    tok_dir = tokenizer_file(spec).parent
    conf = StandaloneConfig(vocab_size=vocab_size, token_dim=s.token_dim, heads=dict(dims),
                            input_teacher=spec.name, lattice=lattice_fields(s), overflow=s.overflow,
                            max_tokens=s.max_tokens, init=s.token_init)
    if s.init_from:
        return TokenStudent(load_init_from(s.init_from, conf), tok_dir)
    table = None
    if s.token_init == "teacher":
        from distill.token_init import teacher_token_table

        table = teacher_token_table(spec.model, dim=s.token_dim, cache_dir=Path(cfg.targets.store_dir) / "token_tables")
        if table.table.shape[0] != vocab_size:
            raise ConfigError("student.token_init", f"teacher: the token table has {table.table.shape[0]} rows but "
                                                    f"the tokenizer {vocab_size} tokens")
    return TokenStudent(StandaloneStudent(conf, token_table=table), tok_dir)


def load_init_from(path: str, conf: StandaloneConfig) -> StandaloneStudent:
    """A student built as ``conf`` with every weight from the export at ``path``; ``ConfigError``
    naming student.init_from when the export is missing or its shapes differ."""
    from distill.encoder import load_standalone
    from distill.schema import ConfigError

    try:
        old, root = load_standalone(path)
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError("student.init_from", str(err)) from None
    new = StandaloneStudent(conf)
    have, want = old.state_dict(), new.state_dict()
    diffs = [f"{k}: export {tuple(have[k].shape) if k in have else 'missing'}, config {tuple(v.shape)}"
             for k, v in want.items() if k not in have or have[k].shape != v.shape]
    diffs += [f"{k}: in the export, not in the config's student" for k in have if k not in want]
    if diffs:
        raise ConfigError("student.init_from", f"{root} does not match the configured student ("
                          + "; ".join(diffs[:4]) + (f"; {len(diffs) - 4} more" if len(diffs) > 4 else "")
                          + "); set student.token_dim / lattice / teachers as in that run")
    new.load_state_dict(have)
    return new

