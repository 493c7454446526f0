"""One rank of the 2-process SmolLM2 ZeRO-3 job (launched by test_smollm2.py via torchrun).
Writes its partition size and the embeddings it got to <out>/rank<r>.pt."""

import argparse
import importlib
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--texts", required=True, help="JSON list")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    import torch.distributed as dist

    from teachers import TeacherSpec, load_teacher

    spec = TeacherSpec(name="smollm2", model=args.model, pooling="last", padding_side="left", max_length=128,
                       query_prefix="Question: ", batch_size=8, shard="zero3")
    t = load_teacher(spec)
    backend = importlib.import_module("deepspeed.comm.comm").cdb  # the comm backend ZeRO-3 started
    result = {
        "shard": t.shard,
        "local": t.local_parameter_count(),
        "total": t.parameter_count(),
        "n_params": len(list(t.model.parameters())),
        "placeholders": all(p.numel() == 0 for p in t.model.parameters()),
        # Every rank passes all texts; each embeds half; all get all rows in input order.
        "emb": t.encode(json.loads(args.texts), "query", split=True),
        "forward_calls": t.forward_calls,
        # DeepSpeed's CPU shared-memory all-reduce op is never compiled (load_teacher skips it).
        "shm_op": getattr(backend, "shm_comm_op", "no backend"),
    }
    t.close()
    torch.save(result, Path(args.out) / f"rank{dist.get_rank()}.pt")
    dist.barrier()


if __name__ == "__main__":
    main()
