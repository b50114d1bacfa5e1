"""Typed configs loaded from YAML, with `key=value` overrides checked against the dataclass fields.

A config is a tree of dataclasses. `load_config(cls, path, overrides)` reads a preset, applies the
overrides and returns an instance; an unknown key or a value of the wrong type is a `ConfigError`
naming the key and the file it came from.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from .errors import AttnreproError


class ConfigError(AttnreproError, ValueError):
    """A config file or override that does not fit the config's fields."""


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(value: Any, hint: Any, key: str, where: str) -> Any:
    """Check `value` against the annotation `hint`; ints are accepted where floats are expected."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0])
    if origin is typing.Literal:
        if value not in typing.get_args(hint):
            raise ConfigError(f"{where}: '{key}' must be one of {list(typing.get_args(hint))}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: '{key}' must be a list, got {value!r}")
        (item_hint, *_) = typing.get_args(hint) or (Any,)
        return [_coerce(v, item_hint, f"{key}[{i}]", where) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: '{key}' must be a mapping, got {value!r}")
        key_hint, value_hint = typing.get_args(hint) or (Any, Any)
        return {_coerce(k, key_hint, f"{key}.{k}", where): _coerce(v, value_hint, f"{key}.{k}", where)
                for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: '{key}' is a section; give a mapping, got {value!r}")
        return from_dict(hint, value, where, prefix=f"{key}.")
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", value):
        return float(value)  # YAML 1.1 reads 1e-6 (no dot) as a string; a user means the number
    if hint is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}: '{key}' must be true or false, got {value!r}")
    if isinstance(hint, type) and not isinstance(value, hint):
        raise ConfigError(f"{where}: '{key}' must be {hint.__name__}, got {value!r}")
    return value


def from_dict(cls: type, data: dict, where: str = "config", prefix: str = "") -> Any:
    """Build dataclass `cls` from `data`; keys absent from `data` keep their defaults."""
    types_ = _field_types(cls)
    unknown = sorted(set(data) - set(types_))
    if unknown:
        known = ", ".join(sorted(types_))
        raise ConfigError(f"{where}: unknown config key '{prefix}{unknown[0]}' (known here: {known})")
    values = {name: _coerce(v, types_[name], prefix + name, where) for name, v in data.items()}
    return cls(**values)


def validate(cfg: Any) -> Any:
    """Run every section's `validate()` (checks that span several keys), once all values are in; -> cfg."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            validate(value)
    if hasattr(cfg, "validate"):
        cfg.validate()
    return cfg


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def _set_dotted(data: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override '{dotted}': '{part}' is not a section")
    node[leaf] = value


def parse_override(text: str) -> tuple[str, Any]:
    """`model.hidden=512` -> ("model.hidden", 512); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key=value, e.g. train.max_epochs=3")
    key, raw = text.split("=", 1)
    return key.strip(), yaml.safe_load(raw) if raw.strip() else None


def load_config(cls: type, path: Path | None = None, overrides: list[str] | tuple = ()) -> Any:
    """Defaults of `cls`, then the YAML at `path`, then `overrides`; checked at every level."""
    data: dict = {}
    where = "config"
    if path is not None:
        where = str(path)
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"{path} is not valid YAML: {err}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path} must hold a mapping of config keys")
        data = loaded or {}
    return with_overrides(from_dict(cls, data, where), overrides)


def with_overrides(cfg: Any, overrides: list[str] | tuple) -> Any:
    """A new config of `cfg`'s class: `cfg` with `key=value` overrides applied, each checked on its own so that
    its error names it."""
    data = to_dict(cfg)
    for text in overrides:
        key, value = parse_override(text)
        _set_dotted(data, key, value)
        cfg = from_dict(type(cfg), data, f"--set {text}")
    return validate(cfg)


def load_yaml(cls: type, path: Path | str, what: str | None = None) -> Any:
    """Any YAML settings file (a plan, a board, SLURM settings, paper_results.yaml) as the dataclass `cls`:
    the same key and type checks as the presets, so an unknown key is one error naming the file and the key."""
    path = Path(path)
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{what or 'file'} {path} does not exist") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path} must hold a mapping of {what or 'settings'} keys")
    return from_dict(cls, loaded, str(path))
