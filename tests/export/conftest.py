"""Tiny standalone exports, written by the project's own export code (no mocks): lattice on and off,
with non-zero lattice weights and random heads so every path of the student is exercised."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from distill.encoder import export_standalone
from distill.students.tokens import StandaloneConfig, StandaloneStudent
from tests.teachers.tiny import build_tiny

LATTICE = {"depth": 2, "height": 3, "width": 4, "channels": 4, "hidden": 8, "steps": 2}
TEXTS = ["What is AI?", "hi", "The quick brown fox jumps over the lazy dog, twice, and then it rests.",
         "Name three prime numbers.", "A cellular automaton updates every cell from its neighbours, " * 6,
         "naïve café — déjà vu", "x"]


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A tiny random BERT with MiniLM's real WordPiece tokenizer (30522 tokens)."""
    return build_tiny("bert", tmp_path_factory.mktemp("tiny") / "bert")


def tiny_student(lattice: bool, seed: int = 0, max_tokens: int = 24, position_weights: str = "none",
                 pooled_mlp: int = 0, bigram_buckets: int = 0) -> StandaloneStudent:
    torch.manual_seed(seed)
    cfg = StandaloneConfig(vocab_size=30522, token_dim=16, heads={"t": 32, "other": 8}, input_teacher="t",
                           lattice=dict(LATTICE) if lattice else None, init="random", max_tokens=max_tokens,
                           position_weights=position_weights, pooled_mlp=pooled_mlp,
                           bigram_buckets=bigram_buckets)
    st = StandaloneStudent(cfg)
    with torch.no_grad():  # a lattice that is not the zero correction, heads that are not the identity,
        for n, p in st.named_parameters():  # position weights that are not all 1, an MLP or pair rows not 0
            if n.startswith(("lattice.", "mlp.", "bigram.")) or n == "position":
                p.copy_(torch.randn_like(p) * 0.3)
    return st.eval()


def write_export(tiny_bert: Path, out: Path, lattice: bool, seed: int = 0, position_weights: str = "none",
                 pooled_mlp: int = 0, bigram_buckets: int = 0) -> Path:
    export_standalone(tiny_student(lattice, seed, position_weights=position_weights, pooled_mlp=pooled_mlp,
                                   bigram_buckets=bigram_buckets), tiny_bert, out)
    return out


@pytest.fixture
def export_on(tiny_bert, tmp_path) -> Path:
    return write_export(tiny_bert, tmp_path / "on" / "student", lattice=True)


@pytest.fixture
def export_off(tiny_bert, tmp_path) -> Path:
    return write_export(tiny_bert, tmp_path / "off" / "student", lattice=False)
