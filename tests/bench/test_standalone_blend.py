"""bench/standalone_blend.py: the blended export is alpha * final + (1 - alpha) * start tensor by
tensor, loads as a student (alpha 0 and 1 encode as the two runs), and a mismatch is refused."""

from __future__ import annotations

import pytest
import torch

from bench.standalone_blend import blend, main
from distill.encoder import Encoder, export_standalone
from distill.students.tokens import StandaloneConfig, StandaloneStudent
from tests.teachers.tiny import build_tiny


def _run(root, tok, seed: int, token_dim: int = 8):
    torch.manual_seed(seed)
    conf = StandaloneConfig(vocab_size=30522, token_dim=token_dim, heads={"t": 6}, input_teacher="t", init="random",
                            max_tokens=16)
    export_standalone(StandaloneStudent(conf), tok, root / "student")
    (root / "config.yaml").write_text(f"run: {{name: {root.name}}}\n")
    return root


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    """A tiny BERT with MiniLM's tokenizer, built once for the module."""
    return build_tiny("bert", tmp_path_factory.mktemp("tiny") / "bert")


def test_a_blend_is_the_weighted_sum_and_its_ends_are_the_two_runs(tmp_path, tok):
    from safetensors.torch import load_file

    start, final = _run(tmp_path / "start", tok, 0), _run(tmp_path / "final", tok, 1)
    texts = ["what is a lattice", "cells run one network"]
    want = {a: Encoder.from_pretrained(r).encode(texts) for a, r in ((0.0, start), (1.0, final))}
    s, f = (load_file(str(r / "student" / "model.safetensors")) for r in (start, final))
    for alpha in (0.0, 0.3, 1.0):
        out = tmp_path / f"blend{alpha}"
        assert main(["--start", str(start), "--final", str(final), "--alpha", str(alpha), "--out", str(out)]) == 0
        got = load_file(str(out / "student" / "model.safetensors"))
        for k in f:
            torch.testing.assert_close(got[k], alpha * f[k] + (1 - alpha) * s[k])
        assert (out / "config.yaml").read_text() == (final / "config.yaml").read_text()
        enc = Encoder.from_pretrained(out).encode(texts)  # the manifest was rewritten: it loads
        if alpha in want:
            torch.testing.assert_close(torch.from_numpy(enc), torch.from_numpy(want[alpha]))
    assert not torch.allclose(torch.from_numpy(want[0.0]), torch.from_numpy(want[1.0]))


def test_different_networks_or_a_bad_alpha_are_refused(tmp_path, capsys, tok):
    start, final = _run(tmp_path / "start", tok, 0), _run(tmp_path / "final", tok, 1, token_dim=4)
    with pytest.raises(SystemExit, match="embed.weight: shape"):
        main(["--start", str(start), "--final", str(final), "--alpha", "0.5", "--out", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()
    with pytest.raises(SystemExit):
        main(["--start", str(start), "--final", str(start), "--alpha", "1.5", "--out", str(tmp_path / "o")])
    assert "--alpha must be in [0, 1]" in capsys.readouterr().err
    with pytest.raises(ValueError, match="different tensors"):
        blend({"a": torch.zeros(2)}, {"b": torch.zeros(2)}, 0.5)
