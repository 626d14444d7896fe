"""What a served model stage answers, and how the canary compares two versions' answers.

A codec per model stage, in the stage's package (``faceparse.stages.<name>.codec``, ``CODEC``): the formats it
answers (the first is the default), one batched model run that encodes each item's response, and the
agreement between two versions' answers to one mirrored request, in [0, 1] (label maps: mean IoU; points: 1 −
the mean point distance normalised by the inter-ocular distance, as NME) with the least mean agreement a canary
needs (``min_agreement``) and what it measures (``agreement_measure``). What codecs share lives here. The router
imports the codecs for the agreement only: no codec imports torch at module level.
"""
from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..ibug68 import inter_ocular
from ..stages import package_of, stage_names
from . import imaging


@dataclass
class Item:
    """One image of a request: where its answer goes (request index, KServe instance index or None), the
    decoded photo, its model input and the request's options."""
    request: int
    instance: int | None
    image: Any
    tensor: Any
    options: imaging.Options
    plan: Any = None    # parser: the photo's faces and crops (faceparse.photos.Plan); None: parsed whole


def by_resolution(items: list[Item]) -> dict[int, list[int]]:
    """Item indices grouped by requested output size (one forward each)."""
    out: dict[int, list[int]] = {}
    for k, it in enumerate(items):
        out.setdefault(it.options.resolution, []).append(k)
    return out


def label_agreement(a: bytes, b: bytes) -> float | None:
    """Mean IoU of two label-map PNGs (None: either one undecodable)."""
    try:
        return imaging.mean_iou(imaging.read_label_png(a), imaging.read_label_png(b))
    except Exception:  # noqa: BLE001 - an undecodable shadow answer counts as no agreement sample
        return None


def points_agreement(a: bytes, b: bytes, key: str) -> float | None:
    """1 − the NME between two JSON answers' points under ``key`` (None: not two such answers)."""
    try:
        pa, pb = (np.asarray(json.loads(x)[key], dtype=np.float64) for x in (a, b))
        return max(0.0, 1.0 - float(np.linalg.norm(pa - pb, axis=-1).mean() / inter_ocular(pa)))
    except Exception:  # noqa: BLE001 - as above
        return None


def _codec_module(stage: str):
    """The stage package's ``codec`` module, or None when the stage is unknown or serves nothing."""
    try:
        name = f"{package_of(stage)}.codec"
        return importlib.import_module(name)
    except ValueError:
        return None
    except ModuleNotFoundError as e:
        if e.name != name:
            raise
        return None


def served_stages() -> list[str]:
    return [s for s in stage_names() if _codec_module(s) is not None]


def codec_for(stage: str | None):
    """The serving codec of a registered stage (its package's ``codec.CODEC``)."""
    module = _codec_module(stage or "parser")
    if module is None:
        raise ValueError(f"no serving codec for model stage {stage!r}; known: {sorted(served_stages())}")
    return module.CODEC
