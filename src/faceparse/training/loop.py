"""Pieces of the one training loop that stages share: the step context, device moves, autocast."""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


def autocast(device: torch.device):
    """bf16 autocast on CUDA; fp32 on CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_device(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    images = images.to(device, non_blocking=True)
    if device.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)
    return images


@dataclass
class TrainContext:
    """What a stage's ``train_step`` / ``final_artifacts`` see: the run's config, params, devices, the
    model (``step_module`` is what DDP wraps), named optimisers / schedulers and the stage's own state."""
    params: dict[str, Any]
    cfg: Any
    dd: Any
    meta: dict[str, Any]
    model: torch.nn.Module
    step_module: torch.nn.Module
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, Any]
    state: dict[str, Any] = field(default_factory=dict)

    def autocast(self):
        return autocast(self.dd.device)

    def tally(self, parts: dict[str, Any]) -> None:
        """Add one step's loss parts to the run's running sums (``tally_means`` reads them)."""
        sums = self.state.setdefault("tally", {})
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + float(v)
        sums["steps"] = sums.get("steps", 0) + 1

    def tally_means(self, prefix: str) -> dict[str, float]:
        """The loss parts' means over the steps tallied, named ``<prefix><part>`` (MLflow metrics)."""
        sums = dict(self.state.get("tally") or {})
        steps = sums.pop("steps", 0)
        return {f"{prefix}{k}": v / steps for k, v in sums.items()} if steps else {}

    def step(self, loss: torch.Tensor, optimizer: str = "model") -> torch.Tensor:
        """Backward ``loss`` into the named optimiser's parameters and step it; returns the loss."""
        opt = self.optimizers[optimizer]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss


def plain(obj):
    """numpy scalars → Python numbers (checkpoints must load with weights_only=True)."""
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return obj


def nan_to_none(obj):
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [nan_to_none(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return nan_to_none(obj.item())
    return obj
