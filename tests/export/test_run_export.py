"""A real tiny run (trained here, lattice off) exported in all three formats from its run directory:
each equals the run's Encoder on the run's own test questions, and the model card carries the
teachers with their fingerprints, the data sizes, the recipe, the run's tables and the commands."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from distill.cli import main
from distill.config import load_config
from distill.encoder import Encoder
from distill.modelcard import teacher_fingerprint
from distill.train import build_recipe, run
from tests.distill.e2e import tiny_setup

pytestmark = pytest.mark.slow

TOKENS = {"student.input": "tokens", "student.token_dim": 16, "student.token_lattice": False,
          "student.max_tokens": 24, "logging.tensorboard": False, "train.eval_every": 2, "train.save_every": 4,
          "curriculum.pacing": "none"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    mp = pytest.MonkeyPatch()
    mp.chdir(root)
    mp.setenv("XDG_CACHE_HOME", str(root / "cache"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = load_config(tiny_setup(root, n_pairs=48, max_steps=4, **TOKENS))
        r = build_recipe(cfg)
        assert run(r, lambda: False) == 0
        questions = [r.data.questions[i] for i in r.data.test.idx[:8]]
        yield cfg, questions
    finally:
        torch.set_num_threads(threads)
        mp.undo()


def test_run_exports_round_trip_with_a_model_card(trained, tmp_path, monkeypatch):
    import onnxruntime as ort
    from model2vec import StaticModel
    from sentence_transformers import SentenceTransformer

    cfg, texts = trained
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    enc = Encoder.from_pretrained(cfg.run_dir)
    want = enc.encode(texts)
    outs = {fmt: tmp_path / fmt for fmt in ("sentence-transformers", "model2vec", "onnx")}
    for fmt, out in outs.items():
        assert main(["export", str(cfg.run_dir), "--format", fmt, "--output", str(out)]) == 0
    np.testing.assert_allclose(SentenceTransformer(str(outs["sentence-transformers"]), device="cpu").encode(texts),
                               want, atol=1e-5, rtol=0)
    np.testing.assert_allclose(StaticModel.from_pretrained(str(outs["model2vec"])).encode(texts), want, atol=1e-5,
                               rtol=0)
    sess = ort.InferenceSession(str(outs["onnx"] / "model.onnx"), providers=["CPUExecutionProvider"])
    x, m = enc.batch_tensors(enc.tokenize(texts))
    got = sess.run(["sentence_embedding"], {"input_ids": x.numpy(), "attention_mask": m.long().numpy()})[0]
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)

    ev = json.loads((cfg.run_dir / "eval.json").read_text())
    for fmt, out in outs.items():
        card = (out / "README.md").read_text()
        assert card.startswith("---\nlibrary_name: ") and "pipeline_tag: sentence-similarity" in card
        for t in cfg.teachers:  # each teacher with its fingerprint
            assert f"| {t.name} | `{t.model}` | {t.pooling} | `{teacher_fingerprint(t.embedding_fields())}` |" in card
        assert f"train {ev['pairs']['train']}, validation {ev['pairs']['validation']}, test {ev['pairs']['test']}" in card
        assert "== validation split" in card and "== test split" in card  # the run's tables
        assert f"{cfg.train.max_steps} steps, batch {cfg.train.batch_size}" in card
        assert "texts/s through the torch `Encoder`" in card
        assert f"distill train {cfg.run_dir}/config.yaml" in card and f"--format {fmt} --output DIR" in card
