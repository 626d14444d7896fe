"""The kfp components' params: the pipeline carries the params.yaml text, and each component turns it back
into params through ``config.load_params``."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from ..config import load_params, set_key
from ..runtime import own_process
from ..stages import for_stage


def component_params(params_yaml: str, overrides: Iterable[str] = (),
                     paths: Mapping[str, Any] | None = None, stage: str | None = None) -> dict[str, Any]:
    """params.yaml text (what the pipeline carries) + ``section.key=value`` overrides → params, through
    ``config.load_params``, resolved for the model ``stage`` (its section replaces the top-level ones);
    then ``paths`` (dotted key → artifact path) set verbatim on the resolved params."""
    params = for_stage(whole_params(params_yaml, overrides), stage)
    _set_paths(params, paths)
    return params


def whole_params(params_yaml: str, overrides: Iterable[str] = (), paths: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """As ``component_params`` but not resolved for a stage: every stage's section kept (a step that
    composes several stages' models reads each one's)."""
    own_process()   # every kfp step reads its params through here: the step's process is ours
    with tempfile.TemporaryDirectory(prefix="faceparse-params-") as tmp:
        p = Path(tmp) / "params.yaml"
        p.write_text(params_yaml)
        params = load_params(p, list(overrides or ()))
    _set_paths(params, paths)
    return params


def _set_paths(params: dict[str, Any], paths: Mapping[str, Any] | None) -> None:
    for key, value in (paths or {}).items():
        set_key(params, key, str(value) if isinstance(value, os.PathLike) else value)


def write_params(params: Mapping[str, Any], path: str | os.PathLike) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(yaml.safe_dump(dict(params), sort_keys=False))
    return p
