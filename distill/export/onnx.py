"""The ONNX export: ``model.onnx``, the token-id -> embedding graph, and the tokenizer that feeds it.

::

    input_ids       (batch, length) int64   token ids of tokenizer.json, no special tokens,
                                            truncated at max_tokens, right-padded with anything
    attention_mask  (batch, length) int64   1 for a real token, 0 for padding
    -> sentence_embedding (batch, d) float32, L2-normalised (one teacher space)

Batch and length are dynamic. The graph is the student's own forward, exported with
``torch.onnx.export(dynamo=True)``, except where the lattice's token fold branches on the length
(``L <= rows*cols``): here the fold is a matmul with a one-hot (length, cells) matrix built from
``arange(length) % cells``, the same sum and mean for every length, so one graph serves all.
``onnxruntime`` runs it (the round-trip test), equal to ``Encoder.encode`` to 1e-4.

The directory also holds the tokenizer files and ``onnx_config.json`` (the inputs' contract: space,
dimension, ``max_tokens``, pad id, no special tokens).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import os
import shutil
import warnings
from pathlib import Path

import torch
from torch import nn

from distill.encoder import Encoder, load_tokenizer
from distill.students.tokens import TOKENIZER_FILES, StandaloneStudent

MODEL_FILE = "model.onnx"
CONFIG_FILE = "onnx_config.json"
OPSET = 18


def fold_tokens(tokens: torch.Tensor, mask: torch.Tensor, rows: int, cols: int,
                overflow: str) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`lattice.tokens.tokens_to_face` without a branch on the length: tokens (B, L, C), mask
    (B, L) float -> (face (B, rows, cols, C), occupied (B, rows, cols, 1))."""
    n = rows * cols
    pos = torch.arange(tokens.shape[1], device=tokens.device)
    onehot = nn.functional.one_hot(pos % n, n).to(tokens.dtype)  # (L, n): token i -> cell i mod n
    if overflow == "truncate":
        onehot = onehot * (pos < n).to(tokens.dtype).unsqueeze(-1)
    summed = torch.einsum("blc,ln->bnc", tokens * mask.unsqueeze(-1), onehot)
    count = (mask @ onehot).unsqueeze(-1)  # (B, n, 1)
    face = summed / count.clamp(min=1.0)
    occupied = (count > 0).to(tokens.dtype)
    B = tokens.shape[0]
    return face.reshape(B, rows, cols, -1), occupied.reshape(B, rows, cols, 1)


class SentenceGraph(nn.Module):
    """(input_ids, attention_mask) -> the L2-normalised embedding in one space: what is exported."""

    def __init__(self, student: StandaloneStudent, space: str):
        super().__init__()
        student = copy.deepcopy(student).eval()
        lat = student.lattice
        if lat is not None:  # one plain graph: no compiled step, no batch-size dependent choice of kernel
            lat.config = dataclasses.replace(lat.config, compile=False, checkpoint=False)
            lat.impl = "index" if lat.perceive.can_gather() else "slice"
        self.student = student
        self.head = student.heads[space]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        st = self.student
        e = st.embed(input_ids)
        m = attention_mask.to(e.dtype)
        z = st.static_from(input_ids, e, m)
        lat = st.lattice
        if lat is not None:
            x = e
            if st.config.lattice_token_norm:
                x = e * torch.rsqrt(e.pow(2).mean(-1, keepdim=True) + 1e-8)
            c = lat.config
            rows, cols = c.face_shape()
            face_tokens, occupied = fold_tokens(x, m, rows, cols, lat.overflow)
            face = lat.input_proj(face_tokens) * occupied
            state = face.new_zeros(input_ids.shape[0], c.depth, c.height, c.width, c.channels)
            state = lat.write_face(state, face)
            z = z + lat._run_from(state, face, c.steps, (), occupied=occupied).output
        if st.mlp is not None:
            z = z + st.mlp(z)
        return nn.functional.normalize(self.head(z), dim=-1)


@contextlib.contextmanager
def _quiet():
    """The exporter's notes (torchvision ops skipped, axis names, optimiser passes) are not the user's."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "onnx_ir", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def write(enc: Encoder, out: str | os.PathLike, space: str) -> None:
    try:
        import onnx  # noqa: F401  (torch.onnx.export needs onnx and onnxscript)
        import onnxscript  # noqa: F401
    except ImportError:
        raise ImportError("the onnx format needs onnx and onnxscript: pip install 'lattice-distill[export]'") from None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    graph = SentenceGraph(enc.student.cpu(), space).eval()
    ids = torch.tensor([[1996, 2003, 1037, 3231, 1012], [7592, 2088, 0, 0, 0]]) % enc.config.vocab_size
    mask = (torch.arange(5) < torch.tensor([[5], [2]])).long()
    batch, length = torch.export.Dim("batch"), torch.export.Dim("length")
    with torch.no_grad(), _quiet():
        program = torch.onnx.export(graph, (ids, mask), dynamo=True, opset_version=OPSET,
                                    input_names=["input_ids", "attention_mask"], output_names=["sentence_embedding"],
                                    dynamic_shapes={"input_ids": {0: batch, 1: length},
                                                    "attention_mask": {0: batch, 1: length}},
                                    verbose=False)
    program.save(str(out / MODEL_FILE))
    tokenizer = load_tokenizer(enc.path / "tokenizer.json", enc.config.max_tokens)
    tokenizer.save(str(out / "tokenizer.json"))  # with the Encoder's truncation, no padding
    for name in TOKENIZER_FILES:
        if name != "tokenizer.json" and (enc.path / name).is_file():
            shutil.copyfile(enc.path / name, out / name)
    (out / CONFIG_FILE).write_text(json.dumps({
        "inputs": {"input_ids": "int64 (batch, length)", "attention_mask": "int64 (batch, length)"},
        "output": "sentence_embedding", "space": space, "dim": enc.config.heads[space], "normalized": True,
        "max_tokens": enc.config.max_tokens, "pad_id": enc.config.pad_id, "add_special_tokens": False,
        "opset": OPSET,
    }, indent=2))


__all__ = ["SentenceGraph", "fold_tokens", "write"]
