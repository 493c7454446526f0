"""A frozen Hugging Face encoder built from a ``TeacherSpec``, and a pool of them.

    t = load_teacher(spec, device="cpu")
    emb = t.encode(texts, role="query")        # (N, t.dim) float32 on CPU, input order

Loading uses the Auto classes (``AutoModel`` gives a decoder LLM's base model, whose hidden
states we pool), then freezes the model: eval mode, ``requires_grad=False``, and ``Teacher`` is
not an ``nn.Module``, so its weights cannot end up in a student's optimizer by accident.

Encoding tokenises every text once (no padding), sorts by token length (longest first, so
memory peaks on the first batch), pads each batch only to its own longest text, and writes the
pooled rows back in input order.

Sharding (only in a job with more than one process; a single process always gets a plain model):

* ``zero3``: the model is built inside DeepSpeed ZeRO-3's ``zero.Init`` (via transformers'
  ``HfDeepSpeedConfig``), so every rank only ever holds ~1/world of each parameter; rank 0
  reads the checkpoint one layer at a time and the layer is scattered. Forward passes gather one
  layer at a time. ZeRO-3 forwards are collective: every rank runs the same number of forwards
  in the same order, so ranks with fewer texts run padding forwards (see ``encode``).
* ``replicate``: a full copy per rank (no collectives in the forward).
* ``auto``: ``zero3`` when the weights in the spec's dtype take at least ``AUTO_ZERO3_MIN_BYTES``
  (1 GiB, e.g. a 0.5B-parameter model in fp16/bf16); ``replicate`` otherwise, since a small
  model runs faster replicated than with an all-gather per layer.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import importlib
import inspect
import json
import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Optional, Union

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import distributed as tdist
from .errors import TeacherSourceError
from .inspect import is_causal_type
from .kinds import teacher_kind
from .pooling import pool
from .source import hub_commit, is_local
from .spec import TeacherSpec

log = logging.getLogger(__name__)

ROLES = ("query", "answer")
TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
AUTO_ZERO3_MIN_BYTES = 2**30
# ZeRO-3 inference settings; configs/deepspeed/zero3_inference.json holds the same, as a file to
# copy and tune. A persistence threshold of 0 partitions every parameter (the default 1e5 would
# keep small ones whole on every rank).
ZERO3_INFERENCE_CONFIG: dict[str, Any] = {
    "train_micro_batch_size_per_gpu": 1,
    "gradient_accumulation_steps": 1,
    "zero_optimization": {
        "stage": 3,
        "stage3_param_persistence_threshold": 0,
        "stage3_prefetch_bucket_size": 50_000_000,
        "stage3_max_live_parameters": 1_000_000_000,
    },
    "steps_per_print": 2**31 - 1,
    "wall_clock_breakdown": False,
}


def zero3_inference_config(dtype: str, base: Union[None, str, Path, dict] = None) -> dict:
    """The DeepSpeed config for a ZeRO-3 teacher: ``base`` (a dict, a JSON path, or the built-in
    default) with the fp16/bf16 switches set from the teacher's dtype -- ``zero.Init`` casts
    parameters to the config's dtype, so a mismatch would silently change the weights."""
    if base is None:
        cfg = copy.deepcopy(ZERO3_INFERENCE_CONFIG)
    elif isinstance(base, dict):
        cfg = copy.deepcopy(base)
    else:
        cfg = json.loads(Path(base).read_text())
    cfg.setdefault("zero_optimization", {})["stage"] = 3
    cfg["bf16"] = {"enabled": dtype == "bfloat16"}
    cfg["fp16"] = {"enabled": dtype == "float16"}
    return cfg


@contextlib.contextmanager
def _hf_deepspeed(ds_config: Optional[dict]) -> Iterator[None]:
    """Make transformers' ``from_pretrained`` load under ZeRO-3 (``ds_config``) or explicitly not
    (``None``), for the duration of the block only.

    ``HfDeepSpeedConfig`` works through a process-global weakref that every later
    ``from_pretrained`` consults; we restore whatever was there before, so neither a training
    job's own DeepSpeed setup leaks into a replicated teacher nor ours into the student.
    """
    from transformers.integrations import deepspeed as hf_ds

    previous = getattr(hf_ds, "_hf_deepspeed_config_weak_ref", None)
    holder = None
    try:
        if ds_config is None:
            hf_ds._hf_deepspeed_config_weak_ref = None
        else:
            holder = hf_ds.HfDeepSpeedConfig(ds_config)  # keeps the weakref alive while in the block
        yield
    finally:
        hf_ds._hf_deepspeed_config_weak_ref = previous
        del holder


def _skip_cpu_shm_comm_build() -> None:
    """On a CPU job, keep DeepSpeed from compiling its shared-memory all-reduce op.

    DeepSpeed's comm backend, when it starts on the CPU accelerator, JIT-compiles
    ``deepspeed_shm_comm`` with the system C++ compiler (``build_shm_op``): about two minutes of
    g++ on a 2-core machine the first time, and an error on a machine without a compiler. Only
    ``inference_all_reduce`` (DeepSpeed-Inference's tensor parallelism) calls that op; a ZeRO-3
    teacher all-gathers its parameters through ``torch.distributed``, and with no op every
    collective takes that path (DeepSpeed guards each use of it with ``is None``). GPU
    accelerators build nothing here, so they are left alone.
    """
    from deepspeed.accelerator import get_accelerator

    if get_accelerator().device_name() != "cpu":
        return
    # importlib, not `import deepspeed.comm.torch as m`: the package's `torch` attribute is torch itself.
    backend = importlib.import_module("deepspeed.comm.torch")
    if callable(getattr(backend, "build_shm_op", None)):
        backend.build_shm_op = lambda: None


def _is_causal(config) -> bool:
    """Decoder-only families (GPT-2, Llama, Qwen, Mistral, ...): causal LM, not masked LM."""
    return is_causal_type(getattr(config, "model_type", ""))


def _param_bytes(spec: TeacherSpec, config) -> int:
    """Size of the teacher's weights in its dtype, from a meta-device instance (no memory)."""
    from transformers import AutoModel

    with torch.device("meta"):
        model = AutoModel.from_config(config, trust_remote_code=spec.trust_remote_code)
    n = sum(p.numel() for p in model.parameters())
    return n * torch.finfo(TORCH_DTYPES[spec.dtype]).bits // 8


def choose_shard(spec: TeacherSpec, world_size: int, param_bytes: Optional[int] = None) -> str:
    """``"eager"`` (one process), ``"replicate"`` or ``"zero3"``; see the module docstring for ``auto``."""
    if world_size <= 1:
        return "eager"
    if spec.shard != "auto":
        return spec.shard
    return "zero3" if (param_bytes or 0) >= AUTO_ZERO3_MIN_BYTES else "replicate"


class Teacher:
    """A frozen encoder. ``encode(texts, role) -> (N, dim)`` float32 CPU tensor in input order.

    Attributes: ``spec``, ``dim`` (embedding width), ``shard`` (``eager`` | ``replicate`` |
    ``zero3``), ``forward_calls`` (model forwards run so far, padding forwards included),
    ``source`` (resolved directory or hub id), ``revision`` (the revision actually loaded).
    """

    def __init__(self, spec: TeacherSpec, model, tokenizer, *, device: torch.device, shard: str,
                 source: str, revision: Optional[str], engine=None):
        self.spec = spec
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.shard = shard
        self.source = source
        self.revision = revision
        self.forward_calls = 0
        self._engine = engine
        self._forward = engine if engine is not None else model
        config = model.config
        self.causal = _is_causal(config)
        accepted = set(inspect.signature(model.forward).parameters)
        self._input_keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in accepted]
        # Under left padding a causal model's default positions would count the pads; positions
        # counted from each text's first real token make a text embed the same under either
        # padding side (absolute-position models such as GPT-2 need it; RoPE is shift-invariant).
        # Encoders keep their own rule (RoBERTa derives positions from the pad id itself).
        self._left_positions = tokenizer.padding_side == "left" and self.causal and "position_ids" in accepted
        n_layers = getattr(config, "num_hidden_layers", None)
        if spec.layer != -1 and n_layers is not None and spec.layer > n_layers:
            raise ValueError(
                f"layer: {spec.layer} is out of range for teacher {spec.name!r} with {n_layers} layers "
                f"(allowed -1 or 0..{n_layers})"
            )
        dim = getattr(config, "hidden_size", None)
        self.dim = int(dim) if dim is not None else self._probe_dim()

    # -- tokenisation -------------------------------------------------------------------------
    def prefix(self, role: str) -> str:
        if role not in ROLES:
            raise ValueError(f"role: {role!r} is not one of {', '.join(ROLES)}")
        return self.spec.query_prefix if role == "query" else self.spec.answer_prefix

    def _tokenize(self, texts: Sequence[str]) -> dict[str, list[list[int]]]:
        enc = self.tokenizer(list(texts), truncation=True, max_length=self.spec.max_length, padding=False,
                             return_attention_mask=True)
        return {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}

    def _collate(self, enc: dict[str, list[list[int]]], idx: Sequence[int]) -> dict[str, torch.Tensor]:
        """Pad the rows ``idx`` to their longest one. -> dict of (b, L) long tensors."""
        width = max(1, max(len(enc["input_ids"][i]) for i in idx))  # all-empty texts still make a batch
        left = self.tokenizer.padding_side == "left"
        pad_values = {"input_ids": self.tokenizer.pad_token_id, "attention_mask": 0, "token_type_ids": 0}
        batch = {}
        for key, values in enc.items():
            out = torch.full((len(idx), width), pad_values[key], dtype=torch.long)
            for j, i in enumerate(idx):
                seq = values[i]
                if left:
                    out[j, width - len(seq):] = torch.as_tensor(seq)
                else:
                    out[j, : len(seq)] = torch.as_tensor(seq)
            batch[key] = out
        return batch

    # -- forward ------------------------------------------------------------------------------
    def _embed_batch(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """One model forward on a padded batch -> (b, dim) float32 pooled (and normalised) rows."""
        mask = batch["attention_mask"].to(self.device)
        inputs = {k: v.to(self.device) for k, v in batch.items() if k in self._input_keys}
        if self._left_positions:
            inputs["position_ids"] = (mask.cumsum(dim=1) - 1).clamp(min=0)
        want_layer = self.spec.layer != -1
        with self._grad_off():
            out = self._forward(**inputs, output_hidden_states=want_layer, return_dict=True)
        self.forward_calls += 1
        hidden = out.hidden_states[self.spec.layer] if want_layer else out.last_hidden_state
        # Pool in float32: a bf16 sum over hundreds of tokens loses digits.
        emb = pool(self.spec.pooling, hidden.float(), mask)
        if self.spec.normalize:
            emb = F.normalize(emb, dim=-1)
        return emb.float().cpu()

    def _grad_off(self):
        # ZeRO-3 re-partitions parameters after each forward by writing to them; tensors created
        # under inference_mode may not be modified outside it, so the sharded path uses no_grad.
        return torch.no_grad() if self.shard == "zero3" else torch.inference_mode()

    def _probe_dim(self) -> int:
        enc = self._tokenize(["."])
        return int(self._embed_batch(self._collate(enc, [0])).shape[1])

    def _encode_local(self, texts: Sequence[str], *, sync: bool, batch_size: int, progress: bool,
                      desc: str) -> torch.Tensor:
        """Embed this rank's texts. With ``sync``, run as many forwards as the busiest rank
        (every rank must call), padding with throw-away forwards on a one-token text."""
        n = len(texts)
        out = torch.empty((n, self.dim), dtype=torch.float32)
        enc = self._tokenize(texts) if n else {}
        order = sorted(range(n), key=lambda i: -len(enc["input_ids"][i])) if n else []
        batches = [order[i: i + batch_size] for i in range(0, n, batch_size)]
        total = tdist.all_reduce_max(len(batches)) if sync else len(batches)
        bar = tqdm(total=n, desc=desc, unit="text", disable=not (progress and tdist.is_main()))
        try:
            for idx in batches:
                out[idx] = self._embed_batch(self._collate(enc, idx))
                bar.update(len(idx))
            if total > len(batches):
                dummy = self._collate(self._tokenize(["."]), [0])
                for _ in range(total - len(batches)):
                    self._embed_batch(dummy)
        finally:
            bar.close()
        return out

    def encode(self, texts: Iterable[str], role: str = "query", *, split: bool = False,
               batch_size: Optional[int] = None, progress: bool = False) -> torch.Tensor:
        """Embed ``texts`` (the role picks the prefix). -> (N, dim) float32 CPU tensor, input order.

        In a multi-process job:

        * ``split=False`` (online use): each rank passes its own texts (any number, zero
          included) and gets its own embeddings. For a ``zero3`` teacher this is collective:
          every rank must call it, the same number of times, in the same order.
        * ``split=True``: every rank passes the *same* texts; rank r embeds texts r, r+W, ...,
          the slices are all-gathered and every rank gets all N rows in input order. Collective
          for every shard mode.
        """
        prefix = self.prefix(role)
        texts = [prefix + t for t in texts]
        bs = batch_size or self.spec.batch_size
        desc = f"{self.spec.name}:{role}"
        distributed = tdist.is_distributed()
        sync = distributed and self.shard == "zero3"
        if not (split and distributed):
            return self._encode_local(texts, sync=sync, batch_size=bs, progress=progress, desc=desc)
        world, r, n = tdist.world_size(), tdist.rank(), len(texts)
        # Round-robin slices: every rank gets a similar mix of lengths, so the collective forwards
        # of a zero3 teacher wait little for the slowest rank.
        local = self._encode_local(texts[r::world], sync=sync, batch_size=bs, progress=progress, desc=desc)
        parts = tdist.all_gather_rows(local, rows=math.ceil(n / world))
        out = torch.empty((n, self.dim), dtype=torch.float32)
        for src, part in enumerate(parts):
            out[src::world] = part[: len(range(src, n, world))]
        return out

    def local_parameter_count(self) -> int:
        """Parameter elements held by this rank (its ZeRO-3 partition, or the whole model)."""
        total = 0
        for p in self.model.parameters():
            part = getattr(p, "ds_tensor", None)
            total += part.numel() if part is not None else p.numel()
        return total

    def parameter_count(self) -> int:
        """Parameter elements of the whole model, however it is sharded."""
        return sum(getattr(p, "ds_numel", p.numel()) for p in self.model.parameters())

    def close(self) -> None:
        """Free the model (and the DeepSpeed engine) now rather than at garbage collection."""
        if self._engine is not None and hasattr(self._engine, "destroy"):
            self._engine.destroy()
        self._engine = self._forward = self.model = None
        gc.collect()

    def __repr__(self) -> str:
        return f"Teacher({self.spec.name!r}, source={self.source!r}, dim={self.dim}, shard={self.shard!r})"


def _resolve_device(device: Union[str, torch.device]) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        import os

        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return dev


def load_teacher(spec: TeacherSpec, device: Union[str, torch.device] = "cpu", *,
                 ds_config: Union[None, str, Path, dict] = None) -> Teacher:
    """Build the frozen teacher ``spec`` describes. Collective under ``zero3`` (every rank calls).

    ``device`` is used by ``eager``/``replicate`` teachers (``"cuda"`` means this rank's
    LOCAL_RANK GPU); a ``zero3`` teacher lives on DeepSpeed's device for this rank.
    ``ds_config`` overrides the built-in ZeRO-3 inference config (dict or JSON path).
    Raises ``TeacherSourceError`` (naming the teacher and the model) when it cannot be loaded.
    """
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    distributed = tdist.ensure_process_group()
    kind = teacher_kind(spec.model)
    if kind.build_on_main:
        # Rank 0 builds the shared cache entry once; the others then read it (or, on a node that
        # does not share the cache directory, build their own copy).
        source = tdist.run_on_main(kind.resolve, spec.model, spec.revision, teacher=spec.name)
        if not Path(source).is_dir():
            source = kind.resolve(spec.model, spec.revision, teacher=spec.name)
    else:
        source = kind.resolve(spec.model, spec.revision, teacher=spec.name)
    revision = spec.revision if kind.hub_revision else None
    if not is_local(source):
        try:
            revision = hub_commit(source, spec.revision)  # pin: the store fingerprints this commit
        except OSError:
            pass  # from_pretrained below gives the user-facing error (or finds it in the cache)
    common = {"revision": revision, "trust_remote_code": spec.trust_remote_code}
    try:
        config = AutoConfig.from_pretrained(source, **common)
        tokenizer = AutoTokenizer.from_pretrained(source, **common)
    except (OSError, ValueError) as err:
        raise TeacherSourceError(
            f"teacher {spec.name!r}: cannot load model {spec.model!r} (revision {spec.revision or 'main'}): {err}"
        ) from err
    if config.is_encoder_decoder:
        raise ValueError(f"model: teacher {spec.name!r} ({spec.model}) is an encoder-decoder model; "
                         "use an encoder-only or decoder-only model")
    _prepare_tokenizer(tokenizer, spec, config)

    world = tdist.world_size()
    needs_size = distributed and spec.shard == "auto"
    shard = choose_shard(spec, world, _param_bytes(spec, config) if needs_size else None)
    dtype = TORCH_DTYPES[spec.dtype]
    engine = None
    try:
        if shard == "zero3":
            import deepspeed

            _skip_cpu_shm_comm_build()
            deepspeed.init_distributed()  # reuses the process group created above / by Accelerate
            cfg = zero3_inference_config(spec.dtype, ds_config)
            with _hf_deepspeed(cfg):
                model = AutoModel.from_pretrained(source, dtype=dtype, **common)
            model.eval().requires_grad_(False)
            engine = deepspeed.initialize(model=model, config=cfg)[0]
            engine.eval()
            dev = torch.device(engine.device)
        else:
            dev = _resolve_device(device)
            with _hf_deepspeed(None):
                model = AutoModel.from_pretrained(source, dtype=dtype, **common)
            model.to(dev)
    except OSError as err:
        raise TeacherSourceError(
            f"teacher {spec.name!r}: cannot load model {spec.model!r} (revision {spec.revision or 'main'}): {err}"
        ) from err
    model.eval().requires_grad_(False)
    teacher = Teacher(spec, model, tokenizer, device=dev, shard=shard, source=source, revision=revision,
                      engine=engine)
    if tdist.is_main():
        log.info("teacher %r: %s, dim %d, %s, %s on %d process(es)", spec.name, source, teacher.dim,
                 spec.dtype, shard, world)
    return teacher


def _prepare_tokenizer(tokenizer, spec: TeacherSpec, config) -> None:
    """Padding side from the spec; a usable pad token; a max length the model can take."""
    if spec.padding_side is not None:
        tokenizer.padding_side = spec.padding_side
    vocab = getattr(config, "vocab_size", None)

    def usable(token_id) -> bool:
        return token_id is not None and (vocab is None or 0 <= token_id < vocab)

    if not usable(tokenizer.pad_token_id):
        # Decoder LLM tokenizers often have no pad token (or one outside the model's vocab).
        # Reuse eos: pads are masked by the attention mask, never by their id, so a real eos
        # still counts as text -- and the embedding matrix is never resized.
        for candidate in ("eos_token", "unk_token", "bos_token"):
            token = getattr(tokenizer, candidate, None)
            if token is not None and usable(tokenizer.convert_tokens_to_ids(token)):
                tokenizer.pad_token = token
                break
        else:
            raise ValueError(f"model: the tokenizer of teacher {spec.name!r} has no pad, eos, unk or bos "
                             "token inside the model's vocabulary to pad with")
    limit = getattr(config, "max_position_embeddings", None)
    if tokenizer.model_max_length and tokenizer.model_max_length < 10**7:
        limit = min(limit or tokenizer.model_max_length, tokenizer.model_max_length)
    if limit is not None and spec.max_length > limit:
        raise ValueError(f"max_length: {spec.max_length} exceeds what teacher {spec.name!r} ({spec.model}) "
                         f"can take ({limit}); allowed 1..{limit}")


class TeacherPool:
    """Several teachers at once, each with its own tokenizer and dimension (online use).

    ``encode(texts, role) -> {name: (N, dim_name)}``; teachers run in spec order, which keeps
    the collective forwards of zero3 teachers in the same order on every rank.
    """

    def __init__(self, specs: Sequence[TeacherSpec], device: Union[str, torch.device] = "cpu", *,
                 ds_config: Union[None, str, Path, dict] = None):
        names = [s.name for s in specs]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"teachers: names must be unique, repeated: {', '.join(dupes)}")
        self.teachers: dict[str, Teacher] = {}
        for spec in specs:
            self.teachers[spec.name] = load_teacher(spec, device, ds_config=ds_config)

    @property
    def dims(self) -> dict[str, int]:
        return {name: t.dim for name, t in self.teachers.items()}

    def encode(self, texts: Sequence[str], role: str = "query", *, split: bool = False,
               progress: bool = False) -> dict[str, torch.Tensor]:
        return {name: t.encode(texts, role, split=split, progress=progress) for name, t in self.teachers.items()}

    def __getitem__(self, name: str) -> Teacher:
        return self.teachers[name]

    def __iter__(self) -> Iterator[Teacher]:
        return iter(self.teachers.values())

    def __len__(self) -> int:
        return len(self.teachers)

    def close(self) -> None:
        for t in self.teachers.values():
            t.close()
        self.teachers.clear()
