"""A small typed-config loader: plain nested dataclasses, validated key by key.

``build(cls, data)`` turns a YAML mapping into an instance of the dataclass ``cls``. It checks
every key against the dataclass fields (unknown keys suggest the nearest valid one), every value
against the field's type (``int``, ``float``, ``str``, ``bool``, ``Literal[...]``, ``Optional``,
``list[...]``, ``dict[str, ...]``, nested dataclasses), and runs each dataclass's
``__post_init__``, whose ``ValueError("field: message")`` is re-raised with the full key path.
Every failure is a :class:`ConfigError` naming the key path, e.g.
``teachers[1].pooling: 'avg' is not one of mean, cls, last, max``.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints


class ConfigError(ValueError):
    """A config value is wrong. ``str(err)`` is one line: ``<key path>: <what is wrong>``."""

    def __init__(self, path: str, message: str):
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if tp is type(None):
        return "null"
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin in (list, typing.List):  # noqa: UP006
        (inner,) = get_args(tp) or (Any,)
        return f"a list of {_type_name(inner)}"
    if origin in (dict, typing.Dict):  # noqa: UP006
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))


def _show(value: Any) -> str:
    return repr(value) if not isinstance(value, str) else f"'{value}'"


def convert(tp: Any, value: Any, path: str) -> Any:
    """Check ``value`` against the type ``tp`` and return it converted (nested dataclasses built)."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        allowed = get_args(tp)
        if not any(value == a and type(value) is type(a) for a in allowed):
            raise ConfigError(path, f"{_show(value)} is not one of {', '.join(str(a) for a in allowed)}")
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(path, f"must be {_type_name(tp)}, got null")
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return convert(arg, value, path)
            except ConfigError as err:
                errors.append(err)
        if len(errors) == 1:
            raise errors[0]
        raise ConfigError(path, f"must be {_type_name(tp)}, got {_show(value)}")
    if dataclasses.is_dataclass(tp):
        return build(tp, value, path)
    if origin in (list, typing.List):  # noqa: UP006
        if not isinstance(value, list):
            raise ConfigError(path, f"must be {_type_name(tp)}, got {_show(value)}")
        (inner,) = get_args(tp) or (Any,)
        return [convert(inner, v, join(path, i)) for i, v in enumerate(value)]
    if origin in (dict, typing.Dict) or tp is dict:  # noqa: UP006
        if not isinstance(value, dict):
            raise ConfigError(path, f"must be a mapping, got {_show(value)}")
        args = get_args(tp)
        inner = args[1] if args else Any
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigError(path, f"keys must be strings, got {_show(k)}")
            out[k] = convert(inner, v, join(path, k))
        return out
    if value is None:
        raise ConfigError(path, f"must be {_type_name(tp)}, got null")
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(path, f"must be true or false, got {_show(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, f"must be an integer, got {_show(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(path, f"must be a number, got {_show(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(path, f"must be a string, got {_show(value)}")
        return value
    raise TypeError(f"{path}: unsupported field type {tp!r}")  # a bug in a schema, not in a config


def unknown_key_error(path: str, key: str, allowed: list[str]) -> ConfigError:
    near = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    hint = f"; did you mean '{near[0]}'?" if near else ""
    return ConfigError(join(path, key), f"unknown key{hint} (allowed: {', '.join(allowed)})")


def build(cls: type, data: Any, path: str = "") -> Any:
    """Build the dataclass ``cls`` from the mapping ``data``, validating every key."""
    if data is None:
        data = {}
    if dataclasses.is_dataclass(data) and isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ConfigError(path, f"must be a mapping, got {_show(data)}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise unknown_key_error(path, str(key), list(fields))
        kwargs[key] = convert(hints[key], value, join(path, key))
    missing = [
        name
        for name, f in fields.items()
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(join(path, missing[0]), "required key is missing")
    try:
        return cls(**kwargs)
    except ValueError as err:
        raise _located(err, path, fields) from None


def _located(err: ValueError, path: str, fields: dict) -> ConfigError:
    """Turn ``ValueError("field: msg")`` from a ``__post_init__`` into a path-qualified error."""
    if isinstance(err, ConfigError):
        return ConfigError(join(path, err.path) if err.path else path, err.message)
    msg = str(err)
    head, sep, rest = msg.partition(": ")
    root = head.split(".")[0].split("[")[0]
    if sep and root in fields:
        return ConfigError(join(path, head), rest)
    return ConfigError(path, msg)


def to_dict(obj: Any) -> Any:
    """Dataclass tree -> plain dict (YAML/JSON-serialisable)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj
