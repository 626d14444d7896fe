"""Model bundle: the unit the registry stores and serving packages — weights (safe to load with
``torch.load(weights_only=True)``) plus a JSON description. No pickle of Python objects."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from .models.int8 import apply_precision, check_precision
from .stages import BUNDLE_INPUT_SIZE, bundle_stage, get_stage
from .staging import staging_dir

WEIGHTS, META = "weights.pt", "bundle.json"


def save_bundle(directory: str | os.PathLike, model: torch.nn.Module, meta: dict[str, Any]) -> Path:
    """Write atomically: a temp dir beside the target, renamed into place (an existing bundle is replaced
    only once the new one is complete)."""
    stage = get_stage(bundle_stage(meta))
    for key in ("model_config", *stage.meta_keys):
        if key not in meta:
            raise ValueError(f"bundle meta of a {stage.name} model is missing {key!r}")
    d = Path(directory)
    d.parent.mkdir(parents=True, exist_ok=True)
    tmp = staging_dir(d)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    torch.save(state, tmp / WEIGHTS)
    full = {"input_size": BUNDLE_INPUT_SIZE, "stage": "parser", **meta}
    (tmp / META).write_text(json.dumps(full, indent=2, default=str))
    if d.exists():
        old = d.with_name(f".{d.name}.old")
        if old.exists():
            shutil.rmtree(old)
        d.rename(old)
        tmp.rename(d)
        shutil.rmtree(old)
    else:
        tmp.rename(d)
    return d


def read_meta(directory: str | os.PathLike) -> dict[str, Any]:
    p = Path(directory) / META
    if not p.is_file():
        raise FileNotFoundError(f"not a model bundle (no {META}): {Path(directory).resolve()}")
    return json.loads(p.read_text())


def load_bundle(directory: str | os.PathLike, map_location: str = "cpu",
                precision: str | None = None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The model (eval mode) and its meta. ``precision``: fp32 | int8 (default: the bundle's ``precision``,
    fp32 when it has none); int8 needs the calibration ``faceparse quantize`` records (faceparse.models.int8).
    The returned meta's ``precision`` is the one the model runs in."""
    meta = read_meta(directory)

    model = get_stage(bundle_stage(meta)).build_model(meta)
    state = torch.load(Path(directory) / WEIGHTS, map_location=map_location, weights_only=True)
    model.load_state_dict(state)
    model.eval()
    want = precision or meta.get("precision")
    if want is None:
        return model, meta

    want = check_precision(want)
    return apply_precision(model, meta, want), {**meta, "precision": want}
