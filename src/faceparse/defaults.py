"""Params defaults: each lives on its field of a pydantic section (``faceparse.schema``, a stage's ``params``
module) and reaches the plain params dicts the commands read through :func:`fill_defaults`
(``faceparse.stages.for_stage`` runs it with the stage's resolved model; a function that takes a section from
its caller runs it on that section).

Only what a dict leaves out is filled, and only with a non-None default; a section it leaves out stays out
(its readers say what a missing section means); the values it holds keep their YAML form."""
from __future__ import annotations

import copy
import typing
from typing import Any

from pydantic import BaseModel


def section_type(annotation: Any) -> Any:
    """The BaseModel inside an Optional[...] / dict[str, ...] annotation (None for plain values)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for a in typing.get_args(annotation):
        t = section_type(a)
        if t is not None:
            return t
    return None


def is_map(annotation: Any) -> bool:
    return typing.get_origin(annotation) is dict or any(is_map(a) for a in typing.get_args(annotation))


def section_defaults(model: type[BaseModel]) -> dict[str, Any]:
    """Every field of the section ``model`` → its default (None included; sub-sections: None), by params key."""
    return {f.alias or n: copy.deepcopy(f.default) for n, f in model.model_fields.items()}


def fill_defaults(model: type[BaseModel], values: dict[str, Any] | None) -> dict[str, Any]:
    """A copy of ``values`` (None: {}) with the non-None default of every field of ``model`` it leaves out,
    recursing into the sub-sections (and map entries, ``model.presets.<name>``) it holds."""
    out = copy.deepcopy(dict(values or {}))
    for n, f in model.model_fields.items():
        key, sub = f.alias or n, section_type(f.annotation)
        if key not in out:
            if f.default is not None:
                out[key] = copy.deepcopy(f.default)
        elif sub is not None and isinstance(out[key], dict):
            if is_map(f.annotation):
                out[key] = {k: fill_defaults(sub, v) if isinstance(v, dict) else v for k, v in out[key].items()}
            else:
                out[key] = fill_defaults(sub, out[key])
    return out
