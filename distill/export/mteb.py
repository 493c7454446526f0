"""Run MTEB on the student: :func:`for_mteb` wraps an :class:`~distill.encoder.Encoder` in MTEB's
encoder protocol (MTEB >= 2 calls ``encode(DataLoader of {"text": [...]} batches, task_metadata=...,
hf_split=..., hf_subset=..., prompt_type=...)`` on an object that carries ``mteb_model_meta``)::

    import mteb
    from distill import Encoder
    from distill.export.mteb import for_mteb

    model = for_mteb(Encoder.from_pretrained("runs/my_student"))
    results = mteb.evaluate(model, mteb.get_tasks(tasks=["STSBenchmark"]))

A sentence-transformers export needs no wrapper: ``mteb.evaluate(SentenceTransformer(DIR), tasks)``
(MTEB wraps it itself). MTEB < 2 calls ``encode(sentences, **kwargs)``, which
:meth:`Encoder.encode <distill.encoder.Encoder.encode>` takes as it is.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from distill.encoder import Encoder


def for_mteb(encoder: Encoder, space: Optional[str] = None, name: Optional[str] = None, batch_size: int = 64):
    """``encoder`` (outputting ``space``, default the input teacher's) as an MTEB ``EncoderProtocol``."""
    from mteb.models import ModelMeta
    from mteb.models.abs_encoder import AbsEncoder
    from mteb.models.model_meta import ScoringFunction

    space = encoder.config.input_teacher if space is None else space
    if space not in encoder.config.heads:
        raise ValueError(f"space: {space!r} is not one of this student's spaces ({', '.join(encoder.spaces)})")

    class StudentForMTEB(AbsEncoder):
        """MTEB's view of the student: texts of each batch in, L2-normalised rows out, cosine similarity."""

        def __init__(self) -> None:
            self.encoder, self.space = encoder, space
            label = name or f"lattice-distill/{encoder.path.parent.name if encoder.path else 'student'}-{space}"
            # model_copy(update=...) does not validate: the enum, not "cosine"
            self.mteb_model_meta = ModelMeta.create_empty(overwrites=dict(
                name=label, revision="local", embed_dim=encoder.config.heads[space],
                max_tokens=encoder.config.max_tokens, similarity_fn_name=ScoringFunction.COSINE, framework=["PyTorch"],
                n_parameters=sum(p.numel() for p in encoder.student.parameters()), open_weights=True,
                modalities=["text"]))

        def encode(self, inputs, *, task_metadata=None, hf_split=None, hf_subset=None, prompt_type=None,
                   **kwargs: Any) -> np.ndarray:
            texts = [t for batch in inputs for t in batch["text"]]
            return self.encoder.encode(texts, space=self.space, batch_size=kwargs.get("batch_size", batch_size),
                                       show_progress_bar=kwargs.get("show_progress_bar", False))

    return StudentForMTEB()


__all__ = ["for_mteb"]
