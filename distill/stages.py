"""Multi-stage runs: one config file, several trainings in a row (``stages:`` in the YAML).

::

    run: {name: standalone, ...}          # the base config: every section as usual
    ...
    stages:                               # run in order by one `distill train FILE`
      - name: texts                       # each stage: a name + section overrides (deep-merged)
        data: {task: texts, text_fields: [question, answer]}
        train: {max_steps: 3000}
      - name: qa
        data: {task: pairs}

Stage k trains the run ``<run.name>-<stage name>``; the last stage is the run ``<run.name>``
itself (the product: ``distill encode runs/<name>``). Every stage after the first starts from the
previous stage's exported student (``student.init_from``, unless the stage sets it). ``--set``
overrides apply to the base, before a stage's own keys; ``--set stages[i].key=value`` sets a key
of stage i (e.g. ``stages[0].data.path=corpus.jsonl.gz``). Every stage's config is validated before
the first one trains. ``--resume`` skips the stages that finished (their export and eval.json
exist) and resumes the one that was interrupted.
"""

from __future__ import annotations

import copy
from pathlib import Path

from distill.config import Config, apply_override, load_config, load_yaml, parse_override
from distill.schema import ConfigError, join


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_stages(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> list[Config]:
    """The config file's runs in order: one (no ``stages:``) or one per stage."""
    data = load_yaml(path)
    if not isinstance(data, dict) or "stages" not in data:
        return [load_config(path, overrides)]
    if not isinstance(data["stages"], list) or not data["stages"]:
        raise ConfigError("stages", "must be a non-empty list of {name: ..., <section>: {...}} mappings")
    for text in overrides:  # `--set stages[0].data.path=...` reaches one stage; other keys the base
        parts, value = parse_override(text)
        apply_override(data, parts, value)
    stages = data.pop("stages")
    run = data.setdefault("run", {})
    base_name = run.get("name", "demo")
    names, cfgs = [], []
    for i, st in enumerate(stages):
        where = join("stages", i)
        if not isinstance(st, dict) or not isinstance(st.get("name"), str) or not st["name"]:
            raise ConfigError(where, "each stage is a mapping with a 'name' (text) and section overrides")
        if st["name"] in names:
            raise ConfigError(join(where, "name"), f"'{st['name']}' is already a stage name")
        names.append(st["name"])
        over = {k: v for k, v in st.items() if k != "name"}
        merged = _merge(data, over)
        merged["run"] = {**merged.get("run", {}),
                         "name": base_name if i == len(stages) - 1 else f"{base_name}-{st['name']}"}
        if i > 0 and not (over.get("student") or {}).get("init_from"):
            merged.setdefault("student", {})["init_from"] = str(cfgs[-1].run_dir / "student")
        try:
            cfgs.append(load_config(data=merged, config_dir=Path(path).resolve().parent))
        except ConfigError as err:
            raise ConfigError(f"{where} ({st['name']})", str(err)) from None
    return cfgs


def stage_done(cfg: Config) -> bool:
    """A finished stage: its export and its eval.json exist (written last, atomically)."""
    return (cfg.run_dir / "eval.json").is_file() and (cfg.run_dir / "student").is_dir()
