"""One rank of a 2-process teachers job (launched by test_distributed.py via torchrun or
``accelerate launch``). Writes what it saw to <out>/rank<r>.pt for the parent to check."""

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.teachers.tiny import TEXTS  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", required=True, help="JSON {kind: dir}")
    ap.add_argument("--store", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--accelerate", action="store_true", help="let Accelerate create the process group first")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.accelerate:
        from accelerate import Accelerator

        Accelerator(cpu=True)  # the training job's situation: a process group already exists

    import numpy as np
    import torch.distributed as dist

    from teachers import TargetStore, TeacherSpec, build_targets, load_teacher

    models = json.loads(args.models)
    specs = [
        TeacherSpec(name="enc", model=models["bert"], pooling="mean", shard="zero3", batch_size=4),
        TeacherSpec(name="dec", model=models["llama"], pooling="last", padding_side="left", shard="zero3",
                    batch_size=4, query_prefix="Q: "),
    ]
    result = {"accelerate_group": dist.is_initialized()}
    if not args.accelerate:
        for spec in specs:
            t = load_teacher(spec)
            r = dist.get_rank()
            result[spec.name] = {
                "shard": t.shard,
                "local": t.local_parameter_count(),
                "total": t.parameter_count(),
                "n_params": len(list(t.model.parameters())),
                "placeholders": all(p.numel() == 0 for p in t.model.parameters()),
                # Every rank passes all 13 texts; each embeds ~half; all get all rows in order.
                "split": t.encode(TEXTS, "query", split=True),
                # Online use: each rank its own batch list of a different length (1 vs 3 batches).
                "online": t.encode(TEXTS[:3] if r == 0 else TEXTS[3:], "answer"),
                "forward_calls": t.forward_calls,
            }
            t.close()
    stats = {}
    fields = {"question": TEXTS, "answer": [x.upper() for x in TEXTS] if args.accelerate else TEXTS[::-1]}
    # Units of 4 rows: 13 texts -> 4 units per field, split over the ranks (r, r+W, ...).
    arrays = build_targets(specs, fields, TargetStore(args.store, shard_rows=4), progress=False, stats=stats)
    result["targets"] = {f"{k[0]}/{k[1]}": torch.from_numpy(np.asarray(v)) for k, v in arrays.items()}
    result["stats"] = stats
    torch.save(result, Path(args.out) / f"rank{dist.get_rank()}.pt")


if __name__ == "__main__":
    main()
