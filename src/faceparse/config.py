"""The one loader of params.yaml, shared by the CLI, the DVC stages and the kfp components.

Overrides use dotted keys with YAML values: ``train.epochs=3``, ``model.overrides.norm=batch``.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Iterable

import yaml

from .schema import SchemaError, check_params

DEFAULT_PARAMS = "params.yaml"


class ConfigError(ValueError):
    """A params file or override is malformed; the message names the file / key."""


def find_params(path: str | os.PathLike | None = None) -> Path:
    """The params file: the given path, $FACEPARSE_PARAMS, or ./params.yaml."""
    p = Path(path or os.environ.get("FACEPARSE_PARAMS", DEFAULT_PARAMS))
    if not p.is_file():
        raise ConfigError(f"params file not found: {p.resolve()} (pass --params or set FACEPARSE_PARAMS)")
    return p


def load_params(path: str | os.PathLike | None = None, overrides: Iterable[str] = ()) -> dict[str, Any]:
    """params file (+ its ``extends`` chain) + overrides, each checked against ``faceparse.schema``:
    an unknown or mistyped key is a ConfigError naming the file or override and the nearest known key."""
    p = find_params(path)
    try:
        params = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from None
    if not isinstance(params, dict):
        raise ConfigError(f"{p}: top level must be a mapping, got {type(params).__name__}")
    base = params.pop("extends", None)
    if base:  # a variant file names its base (relative to itself) and holds only what differs
        params = deep_merge(load_params(p.parent / base), params)
    _check(params, str(p))
    overrides = list(overrides)
    if overrides:
        params = apply_overrides(params, overrides)
        _check(params, "--set " + " --set ".join(overrides))
    return params


def _check(params: dict[str, Any], source: str) -> None:
    try:
        check_params(params)
    except SchemaError as e:
        raise ConfigError(f"{source}: " + "; ".join(e.problems)) from None


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def apply_overrides(params: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    out = copy.deepcopy(params)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: value is not valid YAML: {e}") from None
        set_key(out, key.strip(), value)
    return out


def set_key(params: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``section.key`` in place to ``value`` as given (no YAML parsing), creating sections."""
    parts = dotted.split(".")
    node = params
    for part in parts[:-1]:
        nxt = node.setdefault(part, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"cannot set {dotted}: {part!r} is a value, not a section")
        node = nxt
    node[parts[-1]] = value


def section(params: dict[str, Any], name: str) -> dict[str, Any]:
    try:
        sec = params[name]
    except KeyError:
        raise ConfigError(f"params has no {name!r} section") from None
    if not isinstance(sec, dict):
        raise ConfigError(f"params section {name!r} must be a mapping")
    return sec


def require(sec: dict[str, Any], key: str, where: str) -> Any:
    if key not in sec:
        raise ConfigError(f"params: missing {where}.{key}")
    return sec[key]


def model_config(params: dict[str, Any]) -> dict[str, Any]:
    """Resolve ``model.preset`` + ``model.overrides`` into one flat model config."""
    m = section(params, "model")
    preset = require(m, "preset", "model")
    presets = require(m, "presets", "model")
    if preset not in presets:
        raise ConfigError(f"params: model.preset={preset!r} is not one of {sorted(presets)}")
    cfg = copy.deepcopy(presets[preset])
    unknown = set(m.get("overrides") or {}) - set(cfg)
    if unknown:
        raise ConfigError(f"params: model.overrides has unknown keys {sorted(unknown)}; known: {sorted(cfg)}")
    cfg.update(m.get("overrides") or {})
    cfg["preset"] = preset
    return cfg


