"""Model stages: everything the train / evaluate / register / package / serve path needs to know about
one kind of model, looked up by name (params ``stage``, bundle.json ``stage``).

The path itself is model-agnostic: it asks the stage for a model, a loss, a training dataset and a
scorer. A new stage of the occlusion-robust pipeline (landmarks, map completion, FISN) registers a
``Stage`` here instead of copying the path. Only "parser" (FP-LIIF face parsing) exists so far.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from torch import nn


@dataclass(frozen=True)
class Stage:
    name: str
    summary: str
    build_model: Callable[[dict[str, Any], int], nn.Module]   # (resolved model config, num classes)
    build_loss: Callable[[dict[str, Any]], nn.Module]         # (params) → loss(outputs, targets, extras)
    dataset: Callable[..., Any]                               # training / validation Dataset factory
    scores: Callable[[np.ndarray, Any], dict[str, Any]]       # (confusion, label table) → metrics
    primary_metric: str                                        # what promotion compares


def _parser() -> Stage:
    from .losses import EdgeAwareCE
    from .metrics import scores
    from .models import build_model
    from .training.dataset import FaceParsingDataset

    def loss(params: dict[str, Any]) -> nn.Module:
        l = params["loss"]
        return EdgeAwareCE(float(l["edge_weight"]), float(l["temperature"]), int(l["edge_kernel"]))

    return Stage("parser", "FP-LIIF face parser: image → per-pixel class logits at any resolution",
                 build_model, loss, FaceParsingDataset, scores, "mean_f1")


_FACTORIES: dict[str, Callable[[], Stage]] = {"parser": _parser}


def register_stage(name: str, factory: Callable[[], Stage]) -> None:
    if name in _FACTORIES:
        raise ValueError(f"stage {name!r} is already registered")
    _FACTORIES[name] = factory


def get_stage(name: str) -> Stage:
    try:
        return _FACTORIES[name]()
    except KeyError:
        raise ValueError(f"unknown model stage {name!r}; known: {sorted(_FACTORIES)} (params `stage`)") from None
