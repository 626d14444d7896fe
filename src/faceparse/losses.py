"""The paper's loss: cross-entropy + λ · edge-aware cross-entropy, on logits / τ."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def check_labels(labels: torch.Tensor, num_classes: int) -> None:
    if labels.is_floating_point():
        raise ValueError(f"labels must be an integer tensor of class ids, got dtype {labels.dtype}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"labels must be in 0..{num_classes - 1}, got values in "
                         f"{int(labels.min())}..{int(labels.max())}")


def edge_mask(labels: torch.Tensor, kernel: int = 3) -> torch.Tensor:
    """(B, H, W) bool: pixels whose kernel×kernel neighbourhood holds more than one class.

    A fixed max/min window over the label map (borders replicated, so the image border is no edge)."""
    if kernel < 2:
        raise ValueError(f"loss.edge_kernel must be ≥ 2, got {kernel}")
    x = labels.unsqueeze(1).float()
    lo, hi = (kernel - 1) // 2, kernel // 2
    x = F.pad(x, (lo, hi, lo, hi), mode="replicate")
    mx = F.max_pool2d(x, kernel, stride=1)
    mn = -F.max_pool2d(-x, kernel, stride=1)
    return (mx != mn)[:, 0]


class EdgeAwareCE(torch.nn.Module):
    """loss = CE(z/τ, y) + λ · mean over edge pixels of CE(z/τ, y).

    logits: (B, C, ...) and labels (B, ...) of matching trailing shape, dense maps or sampled query sets;
    edges: matching bool mask, computed from dense labels when not given."""

    def __init__(self, edge_weight: float = 10.0, temperature: float = 0.5, edge_kernel: int = 3):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"loss.temperature must be > 0, got {temperature}")
        self.edge_weight = float(edge_weight)
        self.temperature = float(temperature)
        self.edge_kernel = int(edge_kernel)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor, edges: torch.Tensor | None = None) -> torch.Tensor:
        check_labels(labels, logits.shape[1])
        if edges is None:
            if labels.dim() != 3:
                raise ValueError("edges must be given for sampled (non-2D) labels")
            edges = edge_mask(labels, self.edge_kernel)
        ce = F.cross_entropy(logits.float() / self.temperature, labels.long(), reduction="none")
        loss = ce.mean()
        if self.edge_weight:
            e = edges.to(ce.dtype)
            loss = loss + self.edge_weight * (ce * e).sum() / e.sum().clamp_min(1.0)
        return loss
