"""Issue #21 item 4: what `Encoder.encode` accepts, and how it refuses the rest (index and type named)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from distill.encoder import Encoder
from tests.conftest import run_cli
from tests.export.conftest import TEXTS


@pytest.fixture
def enc(export_on, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return Encoder.from_pretrained(export_on)


def test_any_iterable_is_read_once(enc):
    want = enc.encode(list(TEXTS))
    reads = []

    def gen():
        for t in TEXTS:
            reads.append(t)
            yield t

    np.testing.assert_array_equal(enc.encode(gen()), want)
    assert reads == TEXTS  # one pass
    np.testing.assert_array_equal(enc.encode(tuple(TEXTS)), want)
    np.testing.assert_array_equal(enc.encode(np.array(TEXTS)), want)
    np.testing.assert_allclose(enc.encode(iter(TEXTS), batch_size=2), want, atol=1e-6)  # other batches: rounding
    assert enc.encode([]).shape == (0, 32)


@pytest.mark.parametrize("item,kind", [(5, "int"), (None, "NoneType"), (b"abc", "bytes"), (["a"], "list")])
def test_non_strings_are_refused_naming_index_and_type(enc, item, kind):
    with pytest.raises(TypeError, match=rf"^text 2: expected str, got {kind} ") as err:
        enc.encode(["ok", "fine", item])
    assert err.value.index == 2


@pytest.mark.parametrize("text", ["\u200b", "\x00", "\u200b\u200b \x00"])
def test_texts_without_tokens_are_refused_like_empty_texts(enc, text):
    assert enc.tokenizer.encode(text, add_special_tokens=False).ids == []
    with pytest.raises(ValueError, match=r"^text 1: .* has no tokens \(an embedding of nothing is undefined"):
        enc.encode(["ok", text])
    with pytest.raises(ValueError, match=r"^text 1: empty text"):
        enc.encode(["ok", " \n"])


def test_lone_surrogate_is_a_clear_error(enc):
    with pytest.raises(ValueError, match=r"^text 1: not valid Unicode: lone surrogate '\\ud800' at character 3"):
        enc.encode(["ok", "abc\ud800def"])


def test_sentence_transformers_arguments(enc):
    want = enc.encode(TEXTS)
    one = enc.encode("What is AI?")
    assert one.shape == (32,)
    np.testing.assert_allclose(one, want[0], atol=1e-6)
    t = enc.encode(TEXTS, convert_to_tensor=True, show_progress_bar=True, batch_size=3)
    assert isinstance(t, torch.Tensor) and t.shape == (len(TEXTS), 32)
    np.testing.assert_allclose(t.numpy(), want, atol=1e-6)
    rows = enc.encode(TEXTS, convert_to_numpy=False)
    assert isinstance(rows, list) and len(rows) == len(TEXTS) and rows[0].shape == (32,)
    raw = enc.encode(TEXTS, normalize_embeddings=False)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1)
    np.testing.assert_allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), want, atol=1e-6)
    # what MTEB and retrieval code pass along is accepted
    np.testing.assert_array_equal(enc.encode(TEXTS, task_name="STSBenchmark", prompt_type=None), want)
    np.testing.assert_allclose(enc.encode(["query: hi"]), enc.encode(["hi"], prompt="query: "), atol=1e-7)
    assert enc.get_sentence_embedding_dimension() == 32
    with pytest.raises(ValueError, match="precision"):
        enc.encode(TEXTS, precision="int8")


@pytest.mark.slow
def test_cli_encode_names_the_line_of_a_text_without_tokens(export_on, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("fine\nalso fine\n\u200b\n")
    r = run_cli(["encode", str(export_on), "--input", str(src), "--output", str(tmp_path / "v.npy")], cwd=tmp_path,
                env={"XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {src}:3: '\\u200b' has no tokens"), r.stderr
    assert not (tmp_path / "v.npy").exists()


@pytest.mark.slow
@pytest.mark.parametrize("entry", ["console script", "python -m"])
def test_sigusr1_prints_every_threads_stack_and_the_command_goes_on(export_on, tmp_path, entry):
    """`distill` and `python -m distill` register faulthandler on SIGUSR1 (how a stuck rank is asked
    where it waits): the stacks go to stderr and the command finishes; without it SIGUSR1 ends the
    process (as it did to the console script when only `python -m distill` registered it)."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    out = tmp_path / "v.npy"
    script = Path(sys.executable).parent / "distill"
    cmd = [str(script)] if entry == "console script" else [sys.executable, "-m", "distill"]
    assert entry != "console script" or script.is_file(), f"{script}: the console script is not installed"
    p = subprocess.Popen([*cmd, "encode", str(export_on), "--input", "-",
                          "--output", str(out)], cwd=tmp_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "c")))
    try:
        time.sleep(5)  # far past the registration (the first statement of distill.cli.main)
        assert p.poll() is None, p.communicate()
        p.send_signal(signal.SIGUSR1)
        time.sleep(1)
        stdout, stderr = p.communicate("\n".join(TEXTS) + "\n", timeout=120)
    finally:
        p.kill()
    assert p.returncode == 0, stderr
    assert "Current thread" in stderr and 'distill/cli.py", line' in stderr, stderr
    np.testing.assert_allclose(np.load(out), Encoder.from_pretrained(export_on).encode(TEXTS), atol=1e-6)
