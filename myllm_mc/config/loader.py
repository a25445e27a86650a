"""YAML → typed Config, with dotted `--set` overrides and one-line errors.

Why hand-rolled instead of a schema library: the dataclasses in `schema.py` *are* the schema, and the error
for a bad key must name the key, the closest valid name and the fix in one line, before any process starts.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from pathlib import Path
from typing import Any, Iterable, Literal, Optional, Union

import yaml

from .errors import ConfigError
from .schema import Config
from .validate import resolve_and_validate


def _hints(cls) -> dict:
    return typing.get_type_hints(cls, include_extras=False)


def _describe(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin is Union:
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp, key: str) -> Any:
    """Return `value` as type `tp`, or raise ConfigError naming `key`."""
    origin = typing.get_origin(tp)
    if origin is Union:
        errors = []
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, key)
            except ConfigError as err:
                errors.append(err)
        raise ConfigError(f"{key}: expected {_describe(tp)}, got {value!r} — fix: set {key} to one of those")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{key}: expected null, got {value!r}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value in choices:
            return value
        close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(repr, choices))} — fix: {hint}"
                          f"set {key} to one of those")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r} — fix: --set {key}=true")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key}: expected a whole number, got {value!r} — fix: e.g. --set {key}=2")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "3e-4" as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r} — fix: e.g. --set {key}=3e-4")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r} — fix: quote it, e.g. --set {key}='{value}'")
    if tp is dict or origin is dict:
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            out = {}
            for k, v in value.items():
                out[k] = _coerce(v, float, f"{key}.{k}")
            return out
        raise ConfigError(f"{key}: expected a mapping of names to numbers, got {value!r} — fix: e.g. "
                          f"--set '{key}={{accuracy: 1.0, format: 0.2}}'")
    if tp is list or origin is list:
        if isinstance(value, list):
            return list(value)
        raise ConfigError(f"{key}: expected a list, got {value!r} — fix: e.g. --set {key}='[a, b]'")
    raise ConfigError(f"{key}: unsupported field type {tp!r}")  # a schema bug, not a user error


def _build(cls, values: dict, prefix: str):
    """Instantiate dataclass `cls` from a mapping, rejecting unknown keys with the closest valid name."""
    if not isinstance(values, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping of keys, got {values!r}")
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(f"unknown key '{dotted}' — {_hint(str(key), names, prefix)}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value or {}, f"{dotted}.")
        else:
            kwargs[key] = _coerce(value, tp, dotted)
    return cls(**kwargs)


def _all_keys(cls=Config, prefix: str = "") -> list:
    """Every dotted key of the schema, sections included: ['model', 'model.num_layers', ...]."""
    keys = []
    for f in dataclasses.fields(cls):
        keys.append(f"{prefix}{f.name}")
        tp = _hints(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            keys += _all_keys(tp, f"{prefix}{f.name}.")
    return keys


def did_you_mean(key: str, names, prefix: str = "") -> Optional[str]:
    """"did you mean 'PREFIX+NAME'?" for the closest spelling of `key` among `names`, or None (also used for the
    keys of request files: `myllm generate --prompts`)."""
    close = difflib.get_close_matches(key, list(names), n=1, cutoff=0.5)
    return f"did you mean '{prefix}{close[0]}'?" if close else None


def _hint(key: str, names: list, prefix: str) -> str:
    """For an unknown `prefix + key`: the same name in another section first (`optimizer.steps` → training.steps,
    `lr` → optimizer.lr), then a close spelling in this section, then a close spelling anywhere, else the valid keys."""
    everywhere = _all_keys()
    same = [k for k in everywhere if k.rsplit(".", 1)[-1] == key]
    if same:
        return "did you mean " + " or ".join(f"'{k}'" for k in same) + "?"
    close = did_you_mean(key, names, prefix)
    if close:
        return close
    leaves = {k.rsplit(".", 1)[-1]: k for k in reversed(everywhere)}
    close = difflib.get_close_matches(key, list(leaves), n=1, cutoff=0.8)
    if close:
        return f"did you mean '{leaves[close[0]]}'?"
    return f"valid keys: {', '.join(names)}"


def to_dict(cfg) -> dict:
    """The full config as plain data (every field, defaults included): what `myllm config show` prints."""
    return dataclasses.asdict(cfg)


def parse_override(text: str) -> tuple[list[str], Any]:
    """`parallel.tensor=2` → (['parallel', 'tensor'], 2). The value is read as YAML, so types come out right."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} has no '=' — fix: write it as --set section.key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} has an empty key — fix: write it as --set section.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict, overrides: Iterable[str]) -> dict:
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: '{part}' is a value, not a section")
            node = child
        node[path[-1]] = value
    return data


def read_yaml(path: Union[str, Path]) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} not found — fix: pass a path such as configs/tiny.yaml")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(err, 'problem', err)}) — fix the syntax") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections (model:, data:, ...)")
    return data


def from_dict(data: dict, overrides: Iterable[str] = (), world_size: Optional[int] = None) -> Config:
    """Build, override, resolve `auto` sizes against `world_size` and validate."""
    data = apply_overrides(_deep_copy(data), overrides)
    cfg = _build(Config, data, "")
    return resolve_and_validate(cfg, world_size)


def load(path: Union[str, Path], overrides: Iterable[str] = (), world_size: Optional[int] = None) -> Config:
    """The one entry point: `load('configs/tiny.yaml', ['parallel.tensor=2'], world_size=2)`."""
    return from_dict(read_yaml(path), overrides, world_size)


def dump(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=None)


def _deep_copy(data: dict) -> dict:
    return yaml.safe_load(yaml.safe_dump(data))
