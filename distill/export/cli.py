"""``distill export RUN_DIR --format sentence-transformers|model2vec|onnx --output DIR``.

One error line and exit 2 for: a run (or export directory) without a standalone student, a damaged
export, an existing ``DIR`` without ``--force``, a ``DIR`` that holds the run itself, an unknown
``--space``, a format that cannot express the student (model2vec with the lattice on) or whose
library is not installed. The directory is written beside ``DIR`` and renamed into place (a killed
export leaves only ``.tmp-*``, removed by the next one), with a model card (``README.md``) and a
``manifest.json`` over every file.

Adding a format: one module with ``write(encoder, out_dir, space)``, one line in :data:`FORMATS`
and its load line in :data:`LOAD`.
"""

from __future__ import annotations

import importlib
from pathlib import Path

FORMATS = {
    "sentence-transformers": "distill.export.st:write",
    "model2vec": "distill.export.m2v:write",
    "onnx": "distill.export.onnx:write",
}

# How to load each export (the model card and the CLI print it); {dir}: the output directory.
LOAD = {
    ("sentence-transformers", False): (
        "from sentence_transformers import SentenceTransformer\n\n"
        "model = SentenceTransformer(\"{dir}\")   # plain StaticEmbedding + Normalize: no project code\n"
        "vecs = model.encode([\"How do I bake bread?\", \"Flour, water, yeast.\"])",
        "Files: `modules.json`, `model.safetensors` (the token table with the head folded in), `tokenizer.json`, "
        "`1_Normalize/`, `manifest.json` (sha256 of every file)."),
    ("sentence-transformers", True): (
        "from sentence_transformers import SentenceTransformer\n\n"
        "# needs `pip install lattice-distill` (the module class is distill.export.st.LatticeStudentModule);\n"
        "# sentence-transformers >= 6 imports a class outside its own package only with trust_remote_code=True\n"
        "model = SentenceTransformer(\"{dir}\", trust_remote_code=True)\n"
        "vecs = model.encode([\"How do I bake bread?\", \"Flour, water, yeast.\"])",
        "Files: `modules.json`, `0_LatticeStudentModule/` (the standalone export, verified against its manifest "
        "on load; `distill.Encoder.from_pretrained` reads it too), `1_Normalize/`, `manifest.json`. Without "
        "lattice-distill installed, loading fails with `No module named 'distill'`: `pip install lattice-distill`."),
    ("model2vec", False): (
        "from model2vec import StaticModel\n\n"
        "model = StaticModel.from_pretrained(\"{dir}\")\n"
        "vecs = model.encode([\"How do I bake bread?\", \"Flour, water, yeast.\"])",
        "Files: `model.safetensors` (`embeddings`: the token table with the head folded in), `tokenizer.json`, "
        "`config.json` (normalize: true), `manifest.json`. Model2Vec drops the unknown token ([UNK]) from the "
        "mean and cuts texts at max_length x the median token length in characters; elsewhere it equals "
        "`distill.Encoder` to float32 rounding."),
    ("onnx", None): (
        "import numpy as np, onnxruntime as ort\n"
        "from tokenizers import Tokenizer\n\n"
        "tok = Tokenizer.from_file(\"{dir}/tokenizer.json\")        # truncation as the student's; no padding\n"
        "sess = ort.InferenceSession(\"{dir}/model.onnx\")\n"
        "enc = tok.encode_batch([\"How do I bake bread?\", \"Flour, water, yeast.\"], add_special_tokens=False)\n"
        "width = max(len(e.ids) for e in enc)\n"
        "ids = np.array([e.ids + [0] * (width - len(e.ids)) for e in enc], dtype=np.int64)\n"
        "mask = np.array([[1] * len(e.ids) + [0] * (width - len(e.ids)) for e in enc], dtype=np.int64)\n"
        "vecs = sess.run([\"sentence_embedding\"], {{\"input_ids\": ids, \"attention_mask\": mask}})[0]",
        "Files: `model.onnx` (inputs `input_ids`, `attention_mask`: int64, dynamic batch and length; output "
        "`sentence_embedding`, L2-normalised), `tokenizer.json`, `onnx_config.json`, `manifest.json`."),
}


def load_lines(fmt: str, composes: bool, out: str) -> tuple[str, str]:
    """``composes``: the student is not a plain token table (a lattice, or position weights), so a
    sentence-transformers export needs the project's module."""
    code, note = LOAD.get((fmt, composes)) or LOAD[(fmt, None)]
    return code.replace("{dir}", out).replace("{{", "{").replace("}}", "}"), note


def cmd_export(args) -> int:
    from distill.checkpoint import write_dir_atomic
    from distill.encoder import Encoder
    from distill.errors import RunDirError
    from distill.export.manifest import ExportError, write_manifest
    from distill.modelcard import measure_speed, render

    fmt, out = args.format, Path(args.output)
    if out.exists() and not args.force:
        raise RunDirError(f"--output: {out} exists (pass --force to replace it)")
    try:
        enc = Encoder.from_pretrained(args.run_dir)
    except (FileNotFoundError, ValueError) as err:
        raise RunDirError(str(err)) from None
    src = Path(enc.path).resolve()
    if out.resolve() == src or out.resolve() in src.parents:
        raise RunDirError(f"--output: {out} holds the student being exported ({enc.path}); choose another directory")
    space = args.space or enc.config.input_teacher
    if space not in enc.config.heads:
        raise RunDirError(f"--space: {space!r} is not one of this student's spaces ({', '.join(enc.spaces)})")
    lattice = enc.student.lattice is not None
    composes = not enc.student.is_static_table  # lattice, position weights, pair rows or MLP
    module, _, name = FORMATS[fmt].partition(":")
    try:
        mod = importlib.import_module(module)
    except ImportError as err:
        raise ExportError(f"--format {fmt}: {err}") from None
    write, refuse = getattr(mod, name), getattr(mod, "refuse", None)
    if refuse is not None and (why := refuse(enc)):
        raise ExportError(f"--format {fmt}: {why}")
    run_dir = Path(args.run_dir) if (Path(args.run_dir) / "config.yaml").is_file() else None
    code, note = load_lines(fmt, composes, str(out))
    card = render(enc, fmt, space, run_dir, code, note, speed=measure_speed(enc, space))

    def fill(tmp: Path) -> None:
        tmp.mkdir()
        try:
            write(enc, tmp, space)
        except ImportError as err:
            raise ExportError(f"--format {fmt}: {err}") from None
        (tmp / "README.md").write_text(card, encoding="utf-8")
        write_manifest(tmp)  # last: it covers every file, the card included

    write_dir_atomic(out, fill)
    print(f"wrote {out}: {fmt}, {space} space ({enc.config.heads[space]} dimensions), lattice "
          f"{'on' if lattice else 'off'}, position weights {enc.config.position_weights}"
          + (f", pooled MLP {enc.config.pooled_mlp}" if enc.config.pooled_mlp else "")
          + (f", bigram buckets {enc.config.bigram_buckets}" if enc.config.bigram_buckets else ""))
    print("load it with:\n" + "\n".join("    " + line for line in code.splitlines()))
    return 0


__all__ = ["FORMATS", "LOAD", "cmd_export", "load_lines"]
