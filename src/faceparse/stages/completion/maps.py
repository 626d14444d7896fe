"""The completion stage's model: the parser and the landmark network as one module, and the maps it makes."""
from __future__ import annotations

import torch

from .algorithm import complete

METHODS = ("alpha", "beta", "gamma", "gamma_gt")   # gamma_gt: Algorithm 1 with ground-truth landmarks
REGIONS = ("occluded", "face")


class CompletionModel(torch.nn.Module):
    """The two networks as one module (one state dict, one bundle): images → (M_α labels, points)."""
    def __init__(self, parser: torch.nn.Module, landmarks: torch.nn.Module, landmark_size: int):
        super().__init__()
        self.parser, self.landmarks, self.landmark_size = parser, landmarks, int(landmark_size)

    def forward(self, x: torch.Tensor, out_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` at the parser's input size → labels (B, out, out) and points (B, 68, 2) in [0, 1]."""
        labels = self.parser(x, out_size).argmax(1)
        if x.shape[-1] != self.landmark_size:
            x = torch.nn.functional.interpolate(x, size=(self.landmark_size,) * 2, mode="bicubic",
                                                align_corners=False, antialias=True).clamp_(-1, 1)
        return labels, self.landmarks(x)


def run_maps(model: CompletionModel, settings, tensors: torch.Tensor, out_size: int) -> list:
    """Model inputs (B, 3, S, S) → one ``completion.Maps`` per image at ``out_size``²."""
    with torch.inference_mode():
        labels, points = model(tensors, out_size)
    labels = labels.to(torch.uint8).cpu().numpy()
    points = points.float().cpu().numpy() * out_size          # normalised → pixels of the output map
    return [complete(lab, pts, settings) for lab, pts in zip(labels, points)]
