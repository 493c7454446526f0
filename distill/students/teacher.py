"""The teacher-input student (``student.input: teacher``): Lattice3D → one head per teacher.

    question embedding (B, d_in)  ──▶  Lattice3D  ──▶  z (B, d_lat)  ──head_k──▶  (B, d_k)

With ``skip: true`` each head also gets a linear map of the input itself (``skip_k(x)``), so every
teacher space has at least a linear (ridge-like) path from the question and the lattice learns
the non-linear rest.

The input is a teacher's question embedding, or several teachers' concatenated
(``input_teacher: [a, b]``). A token-input student (standalone: no teacher at query time) is
:mod:`distill.students.tokens`. With ``residual: true`` each input
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

NAME = "teacher"
CONFIG_FILE = "student.json"
WEIGHTS_FILE = "student.safetensors"
# Fields exports and checkpoints from before issue #22 recorded that a teacher-input student never
# used (the token fields) or no longer has (head_hidden; 0 = a linear head, as every head is now).
RETIRED_FIELDS = ("head_hidden", "vocab_size", "token_dim", "pad_id")


class Head(nn.Module):
    """Lattice readout (B, d_lat) -> teacher space (B, d_k): one linear map (``net[0]``)."""

    def __init__(self, d_in: int, d_out: int, zero_init: bool = False):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, d_out))  # a Sequential: the weights' names of every export
        if zero_init:
            nn.init.zeros_(self.net[-1].weight)
            nn.init.zeros_(self.net[-1].bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def section_config(section, input_teacher: str | list[str]) -> dict:
    """The student's fields from the config's ``student`` section (a ``StudentSection``), as the
    student records them: the lattice without the sizes only the data fixes. This is also what a
    resume must match, as far as the config tells. ``input_teacher``: a name, or several (a
    one-name list is that name)."""
    names = [input_teacher] if isinstance(input_teacher, str) else list(input_teacher)
    input_teacher = names[0] if len(names) == 1 else names
    lattice = section.lattice.to_dict()
    lattice.pop("input_dim", None)
    lattice.pop("output_dim", None)
    ks = section.kernel_skip
    # Recorded only when used, so runs from before kernel skips resume unchanged.
    kernel = {"kernel_skip": {"teachers": list(ks.teachers), "features": ks.features, "gamma": ks.gamma}} \
        if ks.teachers else {}
    return {"input_teacher": input_teacher, "input_mode": NAME, "residual": section.residual,
            "skip": section.skip, "lattice": lattice, **kernel}


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
    """Predicts every teacher's answer embedding from a question embedding.

    Args:
        teacher_dims: {teacher name: embedding dimension}, in config order.
        input_teacher: the teacher whose question embedding is the input, or a list of teachers
            whose question embeddings are concatenated in that order (``input_teachers``;
            ``input_teacher`` is the first). x: (B, sum of their widths).
        lattice: the lattice config; input_dim/output_dim are filled in here.

    The defaults are the config's (``distill.config.StudentSection``); the trainer builds a
    student with :meth:`from_section`, and ``student.json`` is :meth:`student_config`.
    """

    input_mode = NAME  # its name in distill.students.STUDENT_TYPES

    def __init__(
        self,
        teacher_dims: dict[str, int],
        input_teacher: str | list[str],
        lattice: LatticeConfig,
        residual: bool = True,
        skip: bool = True,
        kernel_skip: dict | None = None,
    ):
        super().__init__()
        self.teacher_dims = dict(teacher_dims)
        self.input_teachers = [input_teacher] if isinstance(input_teacher, str) else list(input_teacher)
        self.input_teacher = self.input_teachers[0]
        if unknown := [n for n in self.input_teachers if n not in self.teacher_dims]:
            raise ValueError(f"input_teacher: {unknown} not among the teachers {list(self.teacher_dims)}")
        # Where each input teacher's question embedding sits in the (concatenated) input.
        offsets = [0]
        for n in self.input_teachers:
            offsets.append(offsets[-1] + self.teacher_dims[n])
        self.input_slices = {n: slice(lo, hi) for n, lo, hi in zip(self.input_teachers, offsets, offsets[1:])}
        self.residual, self.skip = residual, skip
        d_in = offsets[-1]
        d_lat = lattice.output_dim or d_in
        self.lattice_config = replace(lattice, input_dim=d_in, output_dim=d_lat)
        self.lattice = Lattice3D(self.lattice_config)
        self.kernel_skip = dict(kernel_skip) if kernel_skip else None
        kernel_names = list(self.kernel_skip["teachers"]) if self.kernel_skip else []
        if unknown := [n for n in kernel_names if n not in self.teacher_dims]:
            raise ValueError(f"kernel_skip: {unknown} not among the teachers {list(self.teacher_dims)}")
        if kernel_names and not skip:
            raise ValueError("kernel_skip: needs skip=True")
        # A kernel-skip space gets no residual: its skip predicts the answer itself.
        self.residual_spaces = [n for n in self.input_teachers if self.residual and n not in kernel_names]
        self.heads = nn.ModuleDict({name: Head(d_lat, d, zero_init=name in self.residual_spaces or name in kernel_names)
                                    for name, d in teacher_dims.items()})
        if skip:
            # Zero-initialised so the untrained residual student is exactly the identity baseline.
            self.skips = nn.ModuleDict({name: Head(d_in, d, zero_init=True) for name, d in teacher_dims.items()
                                        if name not in kernel_names})
        self.kernel_skips = nn.ModuleDict()
        for name in kernel_names:  # own question if it is an input, else the whole input
            part = self.input_slices.get(name, slice(0, d_in))
            self.kernel_skips[name] = KernelSkip(part.start, part.stop, teacher_dims[name],
                                                 self.kernel_skip["features"], self.kernel_skip["gamma"])

    @classmethod
    def from_section(cls, section, teacher_dims: dict[str, int], input_teacher: str | list[str]) -> Student:
        """Build from the config's ``student`` section (a ``StudentSection``) plus what only the
        data knows: the teachers' dimensions."""
        conf = section_config(section, input_teacher)
        return cls(teacher_dims=teacher_dims, lattice=section.lattice,
                   **{k: v for k, v in conf.items() if k not in ("lattice", "input_mode")})

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

        if not self.skip:
            raise ValueError("skip_init: ridge needs skip: true")
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

    def forward(self, x: torch.Tensor, steps: int | None = None) -> dict[str, torch.Tensor]:
        """x: (B, d_input) -> {teacher: (B, d_teacher)}."""
        h = x
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
            return self.lattice.run(x, trace_steps=tuple(trace_steps)).trace
        finally:
            self.train(was_training)

    def head_weights(self) -> dict[str, torch.Tensor]:
        """{teacher: the last linear map's weight (d_k, d_lat)}, for the histograms."""
        return {n: head.net[-1].weight for n, head in self.heads.items()}

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
            "lattice": self.lattice_config.to_dict(),
            **({"kernel_skip": self.kernel_skip} if self.kernel_skip else {}),
        }

    def save_pretrained(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(path / WEIGHTS_FILE))
        (path / CONFIG_FILE).write_text(json.dumps(self.student_config(), indent=2))

    @classmethod
    def from_config(cls, conf: dict) -> Student:
        """From a student.json; the fields exports before issue #22 also wrote (the token fields a
        teacher-input student never used, ``head_hidden``) must hold their unused defaults."""
        conf = dict(conf)
        if conf.get("head_hidden", 0):
            raise ValueError(f"student.json: head_hidden={conf['head_hidden']} (an MLP head) is no longer supported")
        for key in (*RETIRED_FIELDS, "input_mode"):
            conf.pop(key, None)
        lattice = LatticeConfig(**conf.pop("lattice"))
        return cls(lattice=lattice, **conf)

    @classmethod
    def from_pretrained(cls, path: str | Path) -> Student:
        path = Path(path)
        model = cls.from_config(json.loads((path / CONFIG_FILE).read_text()))
        model.load_state_dict(load_file(str(path / WEIGHTS_FILE)))
        return model.eval()


# -- the registry entry (distill.students.STUDENT_TYPES) ------------------------------------------


class TeacherInputType:
    """``student.input: teacher``: reads the input teachers' question embeddings (a Q→A mapper)."""

    name = NAME
    reads_teacher_input = True  # x is the input teachers' concatenated question embeddings
    reads_text = False
    starts_from_export = False  # student.init_from: every weight from an earlier run's export
    export_file = CONFIG_FILE

    section_config = staticmethod(section_config)

    @staticmethod
    def face_width(cfg) -> tuple[int | None, str]:
        """The input width the lattice's input face must hold, when the config tells (local teachers)."""
        from teachers import teacher_dim

        specs = {t.name: t for t in cfg.teachers}
        dims = [teacher_dim(specs[n]) for n in cfg.input_names()]
        what = ", ".join(f"input teacher '{n}' embeds in {d}" for n, d in zip(cfg.input_names(), dims))
        what += " dimensions" + (f" ({sum(dims)} in all)" if len(dims) > 1 and None not in dims else "")
        return (None if None in dims else sum(dims)), what

    @staticmethod
    def text_inputs(cfg, texts: list[str]) -> None:
        """The student reads teacher embeddings, not text: None."""
        return None

    @staticmethod
    def build(cfg, data) -> Student:
        """From the ``student`` section and the teachers' widths; skips ridge-initialised (and kernel
        skips fitted) on the training split when the run holds it (store mode)."""
        from distill.schema import ConfigError
        from distill.targets import teacher_input

        try:
            student = Student.from_section(cfg.student, data.dims, cfg.input_names())
        except ValueError as err:  # a shape only known once the teachers' widths are (e.g. a hub teacher)
            raise ConfigError("student.lattice", str(err)) from None
        s, train = cfg.student, data.train
        # Ridge-initialised skips (issue #11 item 7): a zero skip starts a non-input teacher's space
        # far below ridge and cosine + InfoNCE never climbs back to it within the run's steps.
        if train is None:  # online mode: no training targets to fit on
            return student
        x = teacher_input(train.q, student.input_teachers)  # what the student reads, training split
        if s.skip_init != "zero" and s.skip:
            student.init_skips_from_ridge(x, train.a, cfg.eval.ridge_lambda, freeze=s.skip_init == "ridge_frozen")
        if student.kernel_skips:  # (config validation: store mode only)
            student.init_kernel_skips(x, train.a, s.kernel_skip.ridge_lambda)
        return student

    @staticmethod
    def load(export_dir: str | Path) -> Student:
        return Student.from_pretrained(export_dir)


STUDENT_TYPE = TeacherInputType()
