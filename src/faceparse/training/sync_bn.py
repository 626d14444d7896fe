"""Batch statistics over the GLOBAL batch under DDP, on CPU too.

``torch.nn.SyncBatchNorm`` refuses CPU modules ("SyncBatchNorm layers only work with GPU modules"), so under
gloo each rank would normalise its half-batch by its own statistics and an N-process run would no longer
compute what the 1-process run on the same global batch computes. ``GlobalBatchNorm2d`` all-reduces the
per-channel sums (autograd-aware: torch.distributed.nn) so the forward AND the gradient are those of the
global batch; running statistics are updated as BatchNorm2d does (unbiased variance). Same parameters and
buffers as BatchNorm2d: ``sync_batchnorm`` swaps the class in place, state dicts are unchanged.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.nn.functional import all_reduce


class GlobalBatchNorm2d(nn.BatchNorm2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)

        c = x.shape[1]
        count = torch.tensor([x.numel() / c], dtype=x.dtype, device=x.device)
        stats = all_reduce(torch.cat([x.sum((0, 2, 3)), (x * x).sum((0, 2, 3)), count]))
        n = stats[-1]
        mean = stats[:c] / n
        var = stats[c:2 * c] / n - mean * mean          # biased, as BatchNorm normalises with
        with torch.no_grad():
            self.num_batches_tracked += 1
            m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
            self.running_var.mul_(1 - m).add_(var.detach() * n / (n - 1), alpha=m)
        y = (x - mean[None, :, None, None]) * torch.rsqrt(var[None, :, None, None] + self.eps)
        return y * self.weight[None, :, None, None] + self.bias[None, :, None, None] if self.affine else y


def sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm2d computes global-batch statistics under DDP: torch's SyncBatchNorm on CUDA, the
    class above on CPU. In place; the model is returned."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for m in model.modules():
        if type(m) is nn.BatchNorm2d:
            m.__class__ = GlobalBatchNorm2d
    return model
