"""The student: input adapter → Lattice3D → one head per teacher.

    question embedding (B, d_in)  ──adapter──▶  Lattice3D  ──▶  z (B, d_lat)  ──head_k──▶  (B, d_k)

With ``skip: true`` each head also gets a linear map of the input itself (``skip_k(x)``), so every
teacher space has at least a linear (ridge-like) path from the question and the lattice learns
the non-linear rest.

The input is a teacher's question embedding (``input: teacher``), or several teachers'
concatenated (``input_teacher: [a, b]``). A token-input student (``input: tokens``, standalone: no
teacher at query time) is :mod:`distill.token_student`. With ``residual: true`` each input
teacher's question embedding is added to the prediction in its own space and that head starts at
zero, so the untrained student *is* the identity baseline there and training can only move it
from there.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from lattice import Lattice3D, LatticeConfig


class Head(nn.Module):
    """Lattice readout (B, d_lat) -> teacher space (B, d_k): linear, or a one-hidden-layer MLP."""

    def __init__(self, d_in: int, d_out: int, hidden: int = 0, zero_init: bool = False):
        super().__init__()
        if hidden:
            self.net = nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, d_out))
        else:
            self.net = nn.Sequential(nn.Linear(d_in, d_out))
        if zero_init:
            nn.init.zeros_(self.net[-1].weight)
            nn.init.zeros_(self.net[-1].bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class TeacherInput(nn.Module):
    """input: teacher -- x is the input teacher's question embedding (B, d_teacher), or several
    input teachers' concatenated in order (B, sum of their widths), used as is."""

    def __init__(self, student: Student):
        super().__init__()
        self.dim = sum(student.teacher_dims[n] for n in student.input_teachers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


# The student's input modes (``student.input`` in the config). A new mode is one class plus one line.
INPUT_ADAPTERS: dict[str, type[nn.Module]] = {"teacher": TeacherInput}


def section_config(section, input_teacher: str | list[str]) -> dict:
    """The student's fields from the config's ``student`` section (a ``StudentSection``), as the
    student records them: residual applies to teacher input only; the lattice without the sizes
    only the data fixes. This is also what a resume must match, as far as the config tells.
    ``input_teacher``: a name, or several (teacher input only; a one-name list is that name)."""
    names = [input_teacher] if isinstance(input_teacher, str) else list(input_teacher)
    input_teacher = names[0] if len(names) == 1 else names
    if section.input == "tokens":
        from distill import token_student

        return token_student.section_config(section, names[0])
    lattice = section.lattice.to_dict()
    lattice.pop("input_dim", None)
    lattice.pop("output_dim", None)
    ks = section.kernel_skip
    # Recorded only when used, so runs from before kernel skips resume unchanged.
    kernel = {"kernel_skip": {"teachers": list(ks.teachers), "features": ks.features, "gamma": ks.gamma}} \
        if ks.teachers else {}
    return {"input_teacher": input_teacher, "input_mode": section.input,
            "residual": section.residual and section.input == "teacher", "skip": section.skip,
            "head_hidden": section.head_hidden, "token_dim": section.token_dim, "lattice": lattice, **kernel}


class KernelSkip(nn.Module):
    """A frozen random-feature kernel ridge map from a slice of the input to one teacher space.

    phi(x) = sqrt(2 / D) cos(normalize(x[lo:hi]) @ W + b), W ~ N(0, 2 gamma), b ~ U(0, 2 pi): random
    Fourier features of the RBF kernel exp(-gamma |x - x'|^2) (Rahimi & Recht 2007); the readout
    is fitted in closed form (:meth:`Student.init_kernel_skips`). W and b are buffers drawn from
    the torch RNG at construction (seeded by run.seed), saved with the student; nothing here trains.
    """

    def __init__(self, lo: int, hi: int, d_out: int, features: int, gamma: float):
        super().__init__()
        self.lo, self.hi = lo, hi
        self.register_buffer("w", torch.randn(hi - lo, features) * (2.0 * gamma) ** 0.5)
        self.register_buffer("b", torch.rand(features) * 2.0 * torch.pi)
        self.readout = nn.Linear(features, d_out)
        nn.init.zeros_(self.readout.weight)
        nn.init.zeros_(self.readout.bias)
        self.readout.requires_grad_(False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        # float32 even under bf16/fp16 autocast: cos of a phase rounded to 3 digits is noise
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = nn.functional.normalize(x[:, self.lo:self.hi].float(), dim=-1)
            return (2.0 / self.w.shape[1]) ** 0.5 * torch.cos(x @ self.w.float() + self.b.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.features(x))


class Student(nn.Module):
    """Predicts every teacher's answer embedding from a question.

    Args:
        teacher_dims: {teacher name: embedding dimension}, in config order.
        input_teacher: the teacher whose question embedding (or tokenizer) is the input; for
            input_mode "teacher" also a list of teachers whose question embeddings are
            concatenated in that order (``input_teachers``; ``input_teacher`` is the first).
        input_mode: "teacher" (x: (B, d_input) float) or "tokens" (x: (B, L) token ids, pad_id padded).
        lattice: the lattice config; input_dim/output_dim are filled in here.

    The defaults are the config's (``distill.config.StudentSection``); the trainer builds a
    student with :meth:`from_section`, and ``student.json`` is :meth:`student_config`.
    """

    def __init__(
        self,
        teacher_dims: dict[str, int],
        input_teacher: str | list[str],
        lattice: LatticeConfig,
        input_mode: str = "teacher",
        residual: bool = True,
        skip: bool = True,
        head_hidden: int = 0,
        vocab_size: int = 0,
        token_dim: int = 128,
        pad_id: int = 0,
        kernel_skip: dict | None = None,
    ):
        super().__init__()
        self.teacher_dims = dict(teacher_dims)
        self.input_teachers = [input_teacher] if isinstance(input_teacher, str) else list(input_teacher)
        self.input_teacher = self.input_teachers[0]
        self.input_mode = input_mode
        if len(self.input_teachers) > 1 and input_mode != "teacher":
            raise ValueError(f"input_teacher: several input teachers need input mode 'teacher', not {input_mode!r}")
        if unknown := [n for n in self.input_teachers if n not in self.teacher_dims]:
            raise ValueError(f"input_teacher: {unknown} not among the teachers {list(self.teacher_dims)}")
        # Where each input teacher's question embedding sits in the (concatenated) input.
        offsets = [0]
        for n in self.input_teachers:
            offsets.append(offsets[-1] + self.teacher_dims[n])
        self.input_slices = {n: slice(lo, hi) for n, lo, hi in zip(self.input_teachers, offsets, offsets[1:])}
        self.residual = residual and input_mode == "teacher"
        self.skip = skip
        self.head_hidden = head_hidden
        self.vocab_size = vocab_size
        self.token_dim = token_dim
        self.pad_id = pad_id
        if input_mode not in INPUT_ADAPTERS:
            raise ValueError(f"input: unknown input mode {input_mode!r}; choose from {sorted(INPUT_ADAPTERS)}")
        self.adapter = INPUT_ADAPTERS[input_mode](self)
        d_in = self.adapter.dim
        d_lat = lattice.output_dim or d_in
        self.lattice_config = replace(lattice, input_dim=d_in, output_dim=d_lat)
        self.lattice = Lattice3D(self.lattice_config)
        self.kernel_skip = dict(kernel_skip) if kernel_skip else None
        kernel_names = list(self.kernel_skip["teachers"]) if self.kernel_skip else []
        if unknown := [n for n in kernel_names if n not in self.teacher_dims]:
            raise ValueError(f"kernel_skip: {unknown} not among the teachers {list(self.teacher_dims)}")
        if kernel_names and not (skip and input_mode == "teacher"):
            raise ValueError("kernel_skip: needs skip=True and input mode 'teacher'")
        # A kernel-skip space gets no residual: its skip predicts the answer itself.
        self.residual_spaces = [n for n in self.input_teachers if self.residual and n not in kernel_names]
        self.heads = nn.ModuleDict(
            {
                name: Head(d_lat, d, head_hidden, zero_init=name in self.residual_spaces or name in kernel_names)
                for name, d in teacher_dims.items()
            }
        )
        if skip:
            # Zero-initialised so the untrained residual student is exactly the identity baseline.
            self.skips = nn.ModuleDict({name: Head(d_in, d, 0, zero_init=True) for name, d in teacher_dims.items()
                                        if name not in kernel_names})
        self.kernel_skips = nn.ModuleDict()
        for name in kernel_names:  # own question if it is an input, else the whole input
            part = self.input_slices.get(name, slice(0, d_in))
            lo, hi = part.start, part.stop
            self.kernel_skips[name] = KernelSkip(lo, hi, teacher_dims[name], self.kernel_skip["features"],
                                                 self.kernel_skip["gamma"])

    @classmethod
    def from_section(cls, section, teacher_dims: dict[str, int], input_teacher: str | list[str], vocab_size: int = 0,
                     pad_id: int = 0) -> Student:
        """Build from the config's ``student`` section (a ``StudentSection``) plus what only the
        data knows: the teachers' dimensions and, for token input, the tokenizer's size and pad id."""
        conf = section_config(section, input_teacher)
        return cls(teacher_dims=teacher_dims, lattice=section.lattice, vocab_size=vocab_size, pad_id=pad_id,
                   **{k: v for k, v in conf.items() if k != "lattice"})

    @torch.no_grad()
    def init_skips_from_ridge(self, train_x: torch.Tensor, train_a: dict[str, torch.Tensor], lam: float,
                              freeze: bool = False) -> None:
        """Start every skip at the ridge map input -> that teacher's answers and zero every head's
        last layer, so the untrained student predicts exactly the same-input ridge baseline.

        train_x: (N, d_in) the training split's student inputs; train_a: {teacher: (N, d_k)} its
        answers. A residual input teacher's skip gets W minus the identity on that teacher's slice
        of the input, since its question embedding is added back.
        ``freeze``: the skips keep the ridge map (no gradients); the lattice and heads still train.
        """
        from distill.eval.qa import fit_ridge  # the same solver as the evaluator's baseline

        if not self.skip or self.input_mode != "teacher":
            raise ValueError("skip_init: ridge needs skip: true and input: teacher")
        for name, head in self.heads.items():
            if name in self.kernel_skips:  # fitted by init_kernel_skips
                continue
            nn.init.zeros_(head.net[-1].weight)
            nn.init.zeros_(head.net[-1].bias)
            w, b = fit_ridge(train_x.float(), train_a[name].float(), lam)  # (d_in, d_k), (d_k,)
            if name in self.residual_spaces:
                w[self.input_slices[name]] -= torch.eye(w.shape[1], dtype=w.dtype)
            lin = self.skips[name].net[-1]
            lin.weight.copy_(w.T.to(lin.weight.dtype))
            lin.bias.copy_(b.to(lin.bias.dtype))
        self.skips.requires_grad_(not freeze)

    @torch.no_grad()
    def init_kernel_skips(self, train_x: torch.Tensor, train_a: dict[str, torch.Tensor], lam: float) -> None:
        """Fit every kernel skip's readout in closed form: ridge (bias not penalised) from the
        random features of the training inputs to that teacher's training answers, solved in the
        dual (an N x N system) when there are fewer pairs than features. The head of that space
        is zeroed, so the untrained student predicts exactly this map there.

        train_x: (N, d_in) the training split's student inputs; train_a: {teacher: (N, d_k)}.
        """
        from distill.eval.qa import fit_ridge_wide

        for name, ks in self.kernel_skips.items():
            head = self.heads[name]
            nn.init.zeros_(head.net[-1].weight)
            nn.init.zeros_(head.net[-1].bias)
            phi = torch.cat([ks.features(train_x[i:i + 4096]) for i in range(0, len(train_x), 4096)]).double()
            w, b = fit_ridge_wide(phi, train_a[name].double(), lam)
            ks.readout.weight.copy_(w.T.to(ks.readout.weight.dtype))
            ks.readout.bias.copy_(b.to(ks.readout.bias.dtype))

    def encode_input(self, x: torch.Tensor) -> torch.Tensor:
        return self.adapter(x)

    def forward(self, x: torch.Tensor, steps: int | None = None) -> dict[str, torch.Tensor]:
        """x: (B, d_input) or (B, L) token ids -> {teacher: (B, d_teacher)}."""
        h = self.encode_input(x)
        z = self.lattice(h, steps=steps)
        out = {name: head(z) for name, head in self.heads.items()}
        if self.skip:
            out = {name: y + (self.kernel_skips[name](h) if name in self.kernel_skips else self.skips[name](h))
                   for name, y in out.items()}
        if self.residual:
            for name in self.residual_spaces:
                out[name] = out[name] + x[:, self.input_slices[name]].to(out[name].dtype)
        return out

    @torch.no_grad()
    def trace(self, x: torch.Tensor, trace_steps) -> dict[int, torch.Tensor]:
        """Lattice states (B, D, H, W, C) at the chosen steps, for images and histograms.

        Runs in eval mode (fixed T, no stochastic updates): logging never draws from the RNG, so
        it cannot change the training run it observes.
        """
        was_training = self.training
        self.eval()
        try:
            return self.lattice.run(self.encode_input(x), trace_steps=tuple(trace_steps)).trace
        finally:
            self.train(was_training)

    # -- export: loads with torch + safetensors + lattice, no training code ------------------------

    def student_config(self) -> dict:
        """The export's student.json: the config section's fields (resolved), the teacher
        dimensions, the tokenizer facts and the built lattice's full config."""
        return {
            "teacher_dims": self.teacher_dims,
            "input_teacher": self.input_teacher if len(self.input_teachers) == 1 else self.input_teachers,
            "input_mode": self.input_mode,
            "residual": self.residual,
            "skip": self.skip,
            "head_hidden": self.head_hidden,
            "vocab_size": self.vocab_size,
            "token_dim": self.token_dim,
            "pad_id": self.pad_id,
            "lattice": self.lattice_config.to_dict(),
            **({"kernel_skip": self.kernel_skip} if self.kernel_skip else {}),
        }

    def save_pretrained(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(path / "student.safetensors"))
        (path / "student.json").write_text(json.dumps(self.student_config(), indent=2))

    @classmethod
    def from_config(cls, conf: dict) -> Student:
        conf = dict(conf)
        lattice = LatticeConfig(**conf.pop("lattice"))
        return cls(lattice=lattice, **conf)

    @classmethod
    def from_pretrained(cls, path: str | Path) -> Student:
        path = Path(path)
        model = cls.from_config(json.loads((path / "student.json").read_text()))
        state = load_file(str(path / "student.safetensors"))
        # Exports from before the input adapters held the token embedding at the top level.
        state = {("adapter." + k if k.startswith("embed.") else k): v for k, v in state.items()}
        model.load_state_dict(state)
        return model.eval()
