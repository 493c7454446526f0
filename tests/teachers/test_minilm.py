"""The bundled all-MiniLM-L6-v2 teacher against a plain transformers mean-pooling reference."""

import json
from pathlib import Path

import pytest
import torch
import yaml

from teachers import TeacherSpec, load_teacher

ROOT = Path(__file__).resolve().parents[2]


def shipped_texts(n: int) -> list[str]:
    candidates = sorted((ROOT / "distill" / "builtin_data").glob("*.jsonl")) or [
        ROOT.parent / "shared" / "data" / "chatterbot_english.jsonl"]
    texts = []
    for path in candidates:
        for line in path.read_text().splitlines():
            row = json.loads(line)
            texts += [row["question"], row["answer"]]
    if not texts:
        pytest.skip("no shipped texts found")
    # Spread over the file so short and long texts (some over 256 tokens) are both in.
    step = max(1, len(texts) // n)
    return texts[::step][:n]


def plain_reference(model_dir: str, texts: list[str]) -> torch.Tensor:
    """The model card's recipe: tokenizer padding, mean over the attention mask, L2 norm."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    out = []
    for i in range(0, len(texts), 16):
        enc = tok(texts[i:i + 16], padding=True, truncation=True, max_length=256, return_tensors="pt")
        with torch.no_grad():
            h = model(**enc).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).float()
        out.append(torch.nn.functional.normalize((h * m).sum(1) / m.sum(1).clamp(min=1e-9), dim=-1))
    return torch.cat(out)


def test_bundled_minilm_equals_plain_transformers():
    preset = yaml.safe_load((ROOT / "configs" / "teachers" / "minilm.yaml").read_text())
    t = load_teacher(TeacherSpec(name="minilm", **preset))
    texts = shipped_texts(96)
    emb = t.encode(texts, role="answer")
    assert emb.shape == (len(texts), 384) and t.dim == 384
    ref = plain_reference(t.source, texts)
    torch.testing.assert_close(emb, ref, atol=1e-5, rtol=0)
    # Not a trivially small difference bound: different texts give clearly different vectors.
    assert (emb @ emb.T).fill_diagonal_(0).max() < 0.999


def test_bundled_minilm_equals_sentence_transformers():
    st = pytest.importorskip("sentence_transformers")
    preset = yaml.safe_load((ROOT / "configs" / "teachers" / "minilm.yaml").read_text())
    t = load_teacher(TeacherSpec(name="minilm", **preset))
    texts = shipped_texts(48)
    ref = st.SentenceTransformer(t.source, device="cpu").encode(texts, convert_to_tensor=True)
    torch.testing.assert_close(t.encode(texts), ref.cpu().float(), atol=1e-5, rtol=0)
