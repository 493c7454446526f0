"""Exports of a run's standalone student where embeddings are used.

``distill export RUN_DIR --format sentence-transformers|model2vec|onnx --output DIR``
(:func:`distill.export.cli.cmd_export`). One module per format, each a ``write(encoder, out, space)``
registered in :data:`distill.export.cli.FORMATS`:

* :mod:`distill.export.st`: a ``SentenceTransformer`` directory (plain ``StaticEmbedding`` +
  ``Normalize`` with the lattice off; :class:`distill.export.st.LatticeStudentModule` with it on);
* :mod:`distill.export.m2v`: a Model2Vec ``StaticModel`` directory (lattice off only);
* :mod:`distill.export.onnx`: ``model.onnx`` (``input_ids``, ``attention_mask`` -> ``sentence_embedding``).

Every export holds a model card (``README.md``, :mod:`distill.modelcard`) and a ``manifest.json``
(:mod:`distill.export.manifest`). Nothing here is imported by ``import distill``: the format
libraries (sentence-transformers, model2vec, onnx) load only when their format is asked for.
"""
