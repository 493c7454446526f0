"""The model card (``README.md``) that every ``distill export`` writes, sentence-transformers style.

YAML front matter (library, pipeline tag, base model) then: how to load it, the student, the
teachers with their fingerprints, the data and its size, the recipe, the run's validation and test
tables, speed measured at export, and the commands that reproduce it. Each part comes from the run
directory (``config.yaml``, ``eval.json``); exported from a bare export directory, the card says
what it cannot know instead of guessing.

The teacher fingerprint is the sha256 of the teacher's embedding fields (model, revision, pooling,
layer, prefixes, max length, dtype, normalisation: what changes its output), canonical JSON, first 16
hex digits: two runs with the same fingerprint distilled the same teacher.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Optional

LIBRARY = {"sentence-transformers": "sentence-transformers", "model2vec": "model2vec", "onnx": "onnx"}


def teacher_fingerprint(fields: dict) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def measure_speed(enc, space: str, seconds: float = 1.0) -> Optional[float]:
    """Texts/s of ``enc.encode`` on short sentences, batch 64, this process's threads (a rough number
    for the card; ``bench/export.py`` measures properly)."""
    texts = [f"sentence number {i} about {w} and what follows from it" for i, w in
             enumerate(["bread", "rivers", "music", "lattices", "teachers", "proteins", "engines", "poems"] * 8)]
    try:
        enc.encode(texts, space=space)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            enc.encode(texts, space=space, batch_size=64)
            n += len(texts)
        return n / (time.perf_counter() - t0)
    except Exception:  # the card never fails an export
        return None


def _run_info(run_dir: Optional[Path]) -> dict:
    info: dict = {}
    if run_dir is None:
        return info
    try:
        from distill.runs import load_run

        cfg, _ = load_run(run_dir)
        info["cfg"] = cfg
    except Exception as err:
        info["cfg_error"] = str(err)
    try:
        info["eval"] = json.loads((run_dir / "eval.json").read_text())
    except (OSError, ValueError):
        pass
    try:
        info["config_text"] = (run_dir / "config.yaml").read_text()
    except OSError:
        pass
    return info


def _eval_tables(ev: dict, cfg) -> Optional[str]:
    try:
        from distill.eval.evaluator import format_splits

        splits = {k: ev[k] for k in ("validation", "test") if k in ev}
        names = cfg.input_names() if cfg is not None else ev.get("input_teacher", "")
        return format_splits(splits, ev["pairs"], names)
    except Exception:
        return None


def render(enc, fmt: str, space: str, run_dir: Optional[Path], load_lines: str, files_note: str,
           speed: Optional[float] = None) -> str:
    """The card's Markdown. ``load_lines``: the Python that loads this export; ``files_note``: what
    the directory holds."""
    info = _run_info(run_dir)
    cfg, ev = info.get("cfg"), info.get("eval")
    c = enc.config
    lattice = c.lattice is not None
    name = run_dir.name if run_dir is not None else Path(enc.path).name
    base = None
    if cfg is not None:
        try:
            base = cfg.input_teacher().model
        except Exception:
            base = None
    front = ["---", f"library_name: {LIBRARY[fmt]}", "pipeline_tag: sentence-similarity",
             "tags:", "- sentence-similarity", "- feature-extraction", "- lattice-distill", "- distillation"]
    if fmt == "sentence-transformers":
        front.append("- sentence-transformers")
    if base and ":" not in base and base.count("/") == 1 and not Path(base).exists():  # a hub id, not a path
        front.append(f"base_model: {base}")
    front.append("---")
    out = front + ["", f"# {name}: a distilled {'Lattice3D' if lattice else 'static'} text encoder ({fmt})", "",
                   f"A standalone student distilled by [lattice-distill](https://pypi.org/project/lattice-distill/) "
                   f"from its teachers into one small encoder: it needs no teacher at query time. This export "
                   f"outputs the **{space}** space ({c.heads[space]} dimensions, L2-normalised).", "",
                   "## Use it", "", "```python", load_lines.rstrip(), "```", "", files_note.rstrip(), ""]
    out += _student_section(enc, space)
    out += _run_sections(cfg, ev, info, c)
    out += ["## Evaluation", ""]
    tables = _eval_tables(ev, cfg) if ev else None
    if tables:
        out += ["The run's tables (`distill eval`): the student against the identity and ridge baselines, per "
                "teacher space. Validation chose the checkpoint; test was evaluated once, at the end.", "",
                "```text", tables.rstrip(), "```", ""]
    else:
        out += ["No `eval.json` in the run directory: not evaluated here.", ""]

    out += ["## Speed", ""]
    if speed:
        import torch

        out += [f"{speed:,.0f} texts/s through the torch `Encoder` (batch 64, short sentences, "
                f"{torch.get_num_threads()} threads) on the machine that exported it. `bench/export.py` compares "
                f"torch, ONNX Runtime and Model2Vec properly.", ""]
    else:
        out += ["Not measured at export; run `bench/export.py`.", ""]

    out += ["## Reproduce", "", "```bash", "pip install 'lattice-distill[export]'"]
    if run_dir is not None and info.get("config_text"):
        out.append(f"distill train {run_dir}/config.yaml --set run.name={name}-again   # the run's resolved config")
    out += [f"distill export {run_dir if run_dir is not None else enc.path} --format {fmt} --output DIR"
            + (f" --space {space}" if space != c.input_teacher else ""), "```", ""]
    return "\n".join(out)


def _student_section(enc, space: str) -> list[str]:
    c = enc.config
    lattice = c.lattice is not None
    out: list[str] = []
    out += ["## The student", "",
            "| | |", "|---|---|",
            f"| kind | standalone token student, lattice {'on' if lattice else 'off'} |",
            f"| token table | {c.vocab_size} x {c.token_dim} (init: {c.init}) |",
            f"| spaces (heads) | {', '.join(f'{k} ({v})' for k, v in c.heads.items())} |",
            f"| exported space | {space} |",
            f"| max tokens | {c.max_tokens} (longer texts are truncated; no special tokens) |",
            f"| static mean | {'plain' if c.position_weights == 'none' else 'weighted by token position (' + c.position_weights + ')'} |"]
    if c.bigram_buckets:
        out.append(f"| token pairs | {c.bigram_buckets} hashed buckets of adjacent tokens, added to the mean |")
    if c.pooled_mlp:
        out.append(f"| pooled MLP | residual, hidden width {c.pooled_mlp} |")
    if lattice:
        lat = c.lattice
        shape = "x".join(str(lat.get(k, "?")) for k in ("depth", "height", "width"))
        out.append(f"| lattice | {shape} cells, {lat.get('channels', '?')} channels, {lat.get('steps', '?')} steps, "
                   f"overflow {c.overflow} |")
    params = sum(p.numel() for p in enc.student.parameters())
    out += [f"| parameters | {params:,} |", ""]
    return out


def _run_sections(cfg, ev, info: dict, c) -> list[str]:
    """Teachers, data and recipe: from the run directory when it was available."""
    out: list[str] = []
    out += ["## Teachers", ""]
    if cfg is not None:
        out += ["| name | model | pooling | fingerprint |", "|---|---|---|---|"]
        for t in cfg.teachers:
            fields = t.embedding_fields()
            out.append(f"| {t.name} | `{t.model}`{' @ ' + t.revision if t.revision else ''} | {t.pooling} | "
                       f"`{teacher_fingerprint(fields)}` |")
        out += ["", "Fingerprint: sha256 of the teacher's embedding fields (model, revision, pooling, layer, "
                    "prefixes, max length, dtype, normalisation), first 16 hex digits.", ""]
    else:
        out += [f"Heads: {', '.join(c.heads)} (input teacher: {c.input_teacher}). The run directory was not "
                f"available at export, so the teachers' specs are not recorded here.", ""]

    out += ["## Data", ""]
    if cfg is not None:
        d = cfg.data
        sizes = ev.get("pairs") if ev else None
        order = ["train", "validation", "test"]
        size = (", ".join(f"{k} {sizes[k]}" for k in sorted(sizes, key=lambda k: order.index(k) if k in order else 9))
                if sizes else "not recorded")
        out += [f"- source: `{d.path}` (task: {d.task})", f"- size ({'texts' if d.task == 'texts' else 'pairs'} "
                f"per split): {size}", ""]
    else:
        out += ["Not recorded (exported from an export directory, not a run directory).", ""]

    out += ["## Recipe", ""]
    if cfg is not None:
        tr, op = cfg.train, cfg.optim
        try:
            loss = ", ".join(f"{k} {v}" for k, v in cfg.loss.terms.items())
        except Exception:
            loss = "see config"
        out += [f"- {tr.max_steps} steps, batch {tr.batch_size}, lr {op.lr}, seed {cfg.run.seed}",
                f"- loss: {loss}", f"- curriculum: {cfg.curriculum.pacing} pacing on {cfg.curriculum.difficulty}", ""]
        if info.get("config_text"):
            out += ["<details><summary>The run's resolved config.yaml</summary>", "", "```yaml",
                    info["config_text"].rstrip(), "```", "", "</details>", ""]
    else:
        out += ["Not recorded.", ""]
    return out


__all__ = ["measure_speed", "render", "teacher_fingerprint"]
