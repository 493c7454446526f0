"""The sentence-transformers export: a directory ``SentenceTransformer(DIR)`` loads.

Lattice off, the student is a mean of token rows followed by a linear head, and a linear map
commutes with the mean (``head(mean(e_i)) = mean(head(e_i))``: the weights of a mean sum to one), so
the head is folded into the table once, ``T = E @ W.T + b`` (vocab, d), and the export is plain
sentence-transformers modules, ``StaticEmbedding(T)`` + ``Normalize``: it loads with no project
code at all.

Lattice on, the first module is :class:`LatticeStudentModule` (``distill.export.st``, declared in
``modules.json``): the standalone export (with its manifest, verified on load) in
``0_LatticeStudentModule/``, run through :class:`distill.encoder.Encoder`'s own student, then
``Normalize``. Loading it needs this package installed, and sentence-transformers >= 6 imports a
module class from outside its own namespace only with ``trust_remote_code=True`` (it runs
installed code here, nothing is downloaded)::

    SentenceTransformer(DIR)                          # lattice off
    SentenceTransformer(DIR, trust_remote_code=True)  # lattice on, with lattice-distill installed

Both tokenise as the Encoder does (the export's ``tokenizer.json``, no special tokens, truncated at
``max_tokens``) and equal ``Encoder.encode`` to float32 rounding.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import torch

from distill.encoder import Encoder, write_standalone

MODULE_CONFIG = "st_module.json"  # not config.json: that name is the standalone export's

try:  # sentence-transformers >= 6; 5.x kept the modules in sentence_transformers.models
    from sentence_transformers.base.modules.input_module import InputModule as _Base
except ImportError:  # pragma: no cover - depends on the installed version
    try:
        from sentence_transformers.models import InputModule as _Base
    except ImportError:
        _Base = torch.nn.Module


def folded_table(enc: Encoder, space: str) -> np.ndarray:
    """(vocab, d) float32: every token row through ``space``'s head (a static table only: no lattice,
    no position weights)."""
    st = enc.student
    head = st.heads[space]
    with torch.no_grad():
        t = st.embed.weight.double() @ head.weight.double().T + head.bias.double()
    return t.float().numpy()


class LatticeStudentModule(_Base):
    """A sentence-transformers input module wrapping a standalone student that is not a plain table
    (its lattice on, or position weights).

    ``preprocess(texts) -> {"input_ids": (B, L) int64, "attention_mask": (B, L) int64}`` (the
    Encoder's tokenisation and text policy); ``forward`` puts the ``space`` head's output (not
    normalised: a ``Normalize`` module follows) into ``features["sentence_embedding"]``."""

    save_in_root = False
    config_file_name = MODULE_CONFIG

    def __init__(self, encoder: Encoder, space: str | None = None):
        super().__init__()
        self.student = encoder.student
        self._encoder = encoder  # tokenizer, text policy and where the tokenizer files come from
        self.space = encoder.config.input_teacher if space is None else space
        if self.space not in encoder.config.heads:
            raise ValueError(f"space: {self.space!r} is not one of this student's spaces ({', '.join(encoder.spaces)})")

    @property
    def modalities(self) -> list[str]:
        return ["text"]

    @property
    def max_seq_length(self) -> int:
        return self._encoder.config.max_tokens

    def get_sentence_embedding_dimension(self) -> int:
        return self._encoder.config.heads[self.space]

    get_embedding_dimension = get_sentence_embedding_dimension

    def preprocess(self, inputs, prompt: str | None = None, **kwargs) -> dict[str, torch.Tensor]:
        texts = list(inputs)
        if prompt:
            texts = [prompt + t for t in texts]
        ids, mask = self._encoder.batch_tensors(self._encoder.tokenize(texts))
        return {"input_ids": ids, "attention_mask": mask.long()}

    def tokenize(self, texts, **kwargs) -> dict[str, torch.Tensor]:  # sentence-transformers < 5.2
        return self.preprocess(texts, **kwargs)

    def forward(self, features: dict, **kwargs) -> dict:
        ids, mask = features["input_ids"], features["attention_mask"]
        z = self.student.pooled(ids, mask.to(self.student.embed.weight.dtype))
        features["sentence_embedding"] = self.student.heads[self.space](z)
        return features

    def save(self, output_path: str, *args, **kwargs) -> None:
        out = Path(output_path)
        out.mkdir(parents=True, exist_ok=True)
        (out / MODULE_CONFIG).write_text(json.dumps({"space": self.space}, indent=2))
        write_standalone(self.student, self._encoder.path, out)  # its manifest last, over both

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", **kwargs) -> LatticeStudentModule:
        path = Path(model_name_or_path) / subfolder
        if not path.is_dir() and hasattr(cls, "load_dir_path"):  # a hub id: sentence-transformers fetches it
            hub = {k: kwargs[k] for k in ("token", "cache_folder", "revision", "local_files_only") if k in kwargs}
            path = Path(cls.load_dir_path(model_name_or_path, subfolder=subfolder, **hub))
        space = json.loads((path / MODULE_CONFIG).read_text())["space"]
        return cls(Encoder.from_pretrained(path), space)


def write(enc: Encoder, out: str | os.PathLike, space: str) -> None:
    """Write the sentence-transformers directory for ``space`` into the new directory ``out``."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ImportError("the sentence-transformers format needs sentence-transformers: "
                          "pip install 'lattice-distill[export]'") from None
    try:
        from sentence_transformers.base.modules.normalize import Normalize
        from sentence_transformers.sentence_transformer.modules import StaticEmbedding
    except ImportError:  # pragma: no cover - sentence-transformers 5.x
        from sentence_transformers.models import Normalize, StaticEmbedding
    from distill.encoder import load_tokenizer

    if enc.student.is_static_table:
        tokenizer = load_tokenizer(enc.path / "tokenizer.json", enc.config.max_tokens)
        first = StaticEmbedding(tokenizer, embedding_weights=torch.from_numpy(folded_table(enc, space)))
    else:
        first = LatticeStudentModule(enc, space)
    model = SentenceTransformer(modules=[first, Normalize()], device="cpu")
    log = logging.getLogger("sentence_transformers")  # "Saving model to <the temporary directory>"
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        model.save(str(out), create_model_card=False)
    finally:
        log.setLevel(level)


__all__ = ["LatticeStudentModule", "folded_table", "write"]
