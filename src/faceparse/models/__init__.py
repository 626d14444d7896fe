"""Model builders. A model config is the resolved ``model`` section of params.yaml
(``faceparse.config.model_config``)."""
from __future__ import annotations

from typing import Any

from torch import nn

from .fpliif import FPLIIF, check_images, check_out_size
from .liif import make_coord
from .preprocess import preprocess, to_tensor_batch

__all__ = ["FPLIIF", "build_model", "check_images", "check_out_size", "make_coord", "count_params", "preprocess", "to_tensor_batch"]


def build_model(cfg: dict[str, Any], num_classes: int) -> FPLIIF:
    return FPLIIF(num_classes=num_classes, **{k: v for k, v in cfg.items() if k != "preset"})


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
