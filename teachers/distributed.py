"""Thin torch.distributed helpers for the teachers (no Accelerate here, by design).

A training job launched by Accelerate (or torchrun) may already hold a process group; it is
reused as is. Otherwise, when the environment describes a multi-process job (``WORLD_SIZE`` > 1
with ``RANK``, ``MASTER_ADDR``, ``MASTER_PORT``), one is created from it: NCCL when CUDA is
available, gloo otherwise. A plain single process never creates one.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

import torch
import torch.distributed as dist


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def ensure_process_group() -> bool:
    """Reuse or create the job's process group. Returns True when running with > 1 process."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    if env_world_size() <= 1 or not dist.is_available():
        return False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    kwargs = {}
    if timeout := os.environ.get("DISTILL_DIST_TIMEOUT_S"):
        # Set by `distill launch --timeout`: a frozen peer fails collectives in bounded time.
        import datetime

        kwargs["timeout"] = datetime.timedelta(seconds=float(timeout))
    dist.init_process_group(backend=backend, **kwargs)
    return dist.get_world_size() > 1


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def comm_device() -> torch.device:
    """Where collective tensors must live: the current GPU for NCCL, the CPU otherwise."""
    if is_distributed() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_max(value: int) -> int:
    """The maximum of an integer over all ranks (every rank must call)."""
    if not is_distributed():
        return value
    t = torch.tensor([value], dtype=torch.long, device=comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (picklable objects; every rank must call)."""
    if not is_distributed():
        return obj
    box = [obj if rank() == src else None]
    dist.broadcast_object_list(box, src=src, device=comm_device() if comm_device().type == "cuda" else None)
    return box[0]


def all_gather_object(obj: Any) -> list[Any]:
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def all_gather_rows(local: torch.Tensor, rows: int) -> list[torch.Tensor]:
    """Gather a (n_r, D) tensor from every rank; ``rows`` >= every n_r is the common padded size.

    Returns one (rows, D) CPU tensor per rank, padding rows included (callers trim).
    """
    if not is_distributed():
        return [local]
    dev = comm_device()
    padded = torch.zeros((rows, local.shape[1]), dtype=local.dtype, device=dev)
    padded[: local.shape[0]] = local.to(dev)
    out = [torch.empty_like(padded) for _ in range(world_size())]
    dist.all_gather(out, padded)
    return [t.cpu() for t in out]


def run_on_main(fn, *args, **kwargs) -> Any:
    """Run ``fn`` on rank 0 and give every rank its result; an exception there is raised on
    every rank (instead of leaving the others waiting in a collective)."""
    result, error = None, None
    if is_main():
        try:
            result = fn(*args, **kwargs)
        except Exception as err:  # re-raised below, on every rank
            error = err
            if is_distributed():
                try:
                    pickle.dumps(err)
                except Exception:
                    error = RuntimeError(f"{type(err).__name__}: {err}")
    result, error = broadcast_object((result, error))
    if error is not None:
        raise error
    return result
