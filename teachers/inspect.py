"""Looking at a teacher's model directory before loading it: its config, width, family and code.

:func:`check_teacher` is what config validation calls: a local model directory must exist, hold a
Hugging Face ``config.json``, not run custom code unasked, and suit the spec's pooling and layer.
Hub ids and ``pkg:`` models are checked when they load. Errors are :class:`TeacherSpecError`
naming the spec's field; nothing here imports torch or transformers except :func:`is_causal_type`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import TeacherSpecError
from .spec import TeacherSpec

DIM_KEYS = ("hidden_size", "n_embd", "d_model", "dim")


def looks_local(model: str) -> bool:
    return model.startswith(("/", "./", "../", "~")) or os.path.isabs(model)


def local_model_config(spec: TeacherSpec) -> dict | None:
    """The config.json of a teacher in a local directory (None for hub ids and pkg: models)."""
    if spec.model.startswith("pkg:"):
        return None
    model = os.path.expanduser(spec.model)
    if looks_local(spec.model) and not os.path.isdir(model):
        raise TeacherSpecError("model", f"local model directory '{spec.model}' does not exist")
    if not os.path.isdir(model):
        return None  # a hub id: checked when it is loaded
    cfg_file = Path(model) / "config.json"
    if not cfg_file.is_file():
        raise TeacherSpecError("model", f"'{spec.model}' has no config.json: not a Hugging Face model directory")
    try:
        hf = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise TeacherSpecError("model", f"{cfg_file} is not valid JSON: {err}") from None
    if not isinstance(hf, dict):
        raise TeacherSpecError("model", f"{cfg_file} does not hold a JSON object")
    return hf


def custom_code(spec: TeacherSpec, hf: dict) -> list[str]:
    """The auto_map entries (custom Python code) a local model directory asks transformers to run."""
    found = []
    for name, obj in (("config.json", hf), ("tokenizer_config.json", None)):
        if obj is None:
            try:
                obj = json.loads((Path(os.path.expanduser(spec.model)) / name).read_text(encoding="utf-8"))
            except (OSError, ValueError, UnicodeDecodeError):
                continue
        auto_map = obj.get("auto_map") if isinstance(obj, dict) else None
        if auto_map:
            found += [f"{name}: {k}" for k in (sorted(auto_map) if isinstance(auto_map, dict) else [str(auto_map)])]
    return found


def is_causal_type(model_type: str) -> bool:
    """Decoder-only families (GPT-2, Llama, Qwen, Mistral, ...): causal LM, not masked LM."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    return model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def teacher_dim(spec: TeacherSpec) -> int | None:
    """A local teacher's embedding width from its config.json (None when it cannot be told)."""
    try:
        hf = local_model_config(spec)
    except TeacherSpecError:
        return None
    for key in DIM_KEYS:
        v = (hf or {}).get(key)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return None


def check_teacher(spec: TeacherSpec) -> None:
    """Raise :class:`TeacherSpecError` when a local teacher cannot work as specified."""
    hf = local_model_config(spec)
    if hf is None:
        return
    code = custom_code(spec, hf)
    if code and not spec.trust_remote_code:
        raise TeacherSpecError(
            "trust_remote_code",
            f"'{spec.model}' ships its own Python code ({'; '.join(code)}), which loading it would run; "
            "set trust_remote_code: true for this teacher only if you trust that code",
        )
    model_type = str(hf.get("model_type", ""))
    if spec.pooling == "cls" and is_causal_type(model_type):
        raise TeacherSpecError(
            "pooling",
            f"'cls' pools the first token, which the causal decoder '{model_type}' computes without seeing "
            "the rest of the text; use last or mean",
        )
    layers = hf.get("num_hidden_layers", hf.get("n_layer"))
    if isinstance(layers, int) and not -layers - 1 <= spec.layer <= layers:
        raise TeacherSpecError("layer", f"{spec.layer} is out of range for a model with {layers} layers")
