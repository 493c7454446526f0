"""The Model2Vec export (lattice off only): a directory ``StaticModel.from_pretrained(DIR)`` loads.

A lattice-off student is a mean of token rows and a linear head; the head is folded into the rows
(:func:`distill.export.st.folded_table`), so the export is a plain Model2Vec table (``embeddings``
in ``model.safetensors``) with the student's ``tokenizer.json``, ``normalize: true`` and
``max_length`` = the student's ``max_tokens``.

Two things Model2Vec does that the Encoder does not, both outside what a round-trip test can hide:
it drops the tokenizer's unknown token (``[UNK]``) from the mean, and it cuts a text at
``max_length x median token length`` characters before tokenising. On texts with no unknown token
and within that length the two agree to float32 rounding.
"""

from __future__ import annotations

import logging
import os

from distill.encoder import Encoder
from distill.export.manifest import ExportError
from distill.export.st import folded_table


def refuse(enc: Encoder) -> str | None:
    """Why this student cannot be a Model2Vec model (None: it can)."""
    if enc.student.lattice is not None:
        return ("a Model2Vec model is a static table (a mean of token rows), and this student's lattice composes "
                "tokens, which a table cannot express; export it as sentence-transformers or onnx")
    if enc.student.position is not None:
        return (f"a Model2Vec model is a static table (a plain mean of token rows), and this student weights tokens "
                f"by position (position_weights: {enc.config.position_weights}), which a table cannot express; "
                "export it as sentence-transformers or onnx")
    if enc.student.mlp is not None:
        return (f"a Model2Vec model is a static table (a plain mean of token rows), and this student runs an MLP on "
                f"the mean (pooled_mlp: {enc.config.pooled_mlp}), which a table cannot express; "
                "export it as sentence-transformers or onnx")
    if enc.student.bigram is not None:
        return (f"a Model2Vec model is a static table (a plain mean of token rows), and this student adds rows of "
                f"adjacent token pairs (bigram_buckets: {enc.config.bigram_buckets}), which a table cannot express; "
                "export it as sentence-transformers or onnx, or train with student.bigram_buckets: 0")
    return None


def write(enc: Encoder, out: str | os.PathLike, space: str) -> None:
    if why := refuse(enc):
        raise ExportError(f"--format model2vec: {why}")
    try:
        from model2vec import StaticModel
    except ImportError:
        raise ImportError("the model2vec format needs model2vec: pip install 'lattice-distill[export]'") from None
    from distill.encoder import load_tokenizer

    tokenizer = load_tokenizer(enc.path / "tokenizer.json", enc.config.max_tokens)
    model = StaticModel(folded_table(enc, space), tokenizer, config={"model_type": "model2vec",
                                                                      "architectures": ["StaticModel"],
                                                                      "hidden_dim": enc.config.heads[space]},
                        normalize=True, max_length=enc.config.max_tokens)
    log = logging.getLogger("model2vec")  # "Saved model to <the temporary directory>": not where it ends up
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        model.save_pretrained(out)
    finally:
        log.setLevel(level)


__all__ = ["refuse", "write"]
