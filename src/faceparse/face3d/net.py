"""The reconstruction network: a ResNet regressing the face model's coefficient vector, with the face model
and renderer it is read through (their buffers are not in the state dict: the bundle stores the network)."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..models.resnet import build_resnet
from .model import POSE_NAMES, FaceModel
from .render import F0, SH_AMBIENT, Render, Renderer, project


class Recon3dNet(nn.Module):
    """images (B, 3, S, S) in [-1, 1] → coefficients (B, K) (``face.sizes`` order)."""

    def __init__(self, cfg: dict[str, Any], input_size: int):
        super().__init__()

        # the basis sizes the config names; FaceModel's defaults (the full ICT-FaceKit sets) otherwise
        self.face = FaceModel(**{k: int(cfg[k]) for k in ("n_id", "n_exp", "n_albedo") if cfg.get(k) is not None})
        self.backbone = build_resnet(cfg, self.face.num_coeffs)
        self.renderer = Renderer(self.face, input_size)
        self.input_size = int(input_size)
        self.register_buffer("head_scale", head_scale(self.face, cfg.get("head_scale")), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x) * self.head_scale

    def render(self, y: torch.Tensor, size: int | None = None) -> Render:
        return self.renderer(y, size)

    def landmarks(self, y: torch.Tensor) -> torch.Tensor:
        """(B, 68, 2) projected landmark vertices in [0, 1] image units (no rasterisation)."""
        c = self.face.split(y)
        verts = self.face.vertices(c["id"], c["exp"])[:, self.face.landmarks]
        return project(verts, c["pose"], 1)[0]


def head_scale(face: FaceModel, spec: dict[str, float] | None) -> torch.Tensor:
    """(K,) factor per coefficient: the head's raw output times its group's ``spec`` value (default 1).

    Why: Adam moves every weight of the zero-initialised head by about ``lr`` per step whatever its
    gradient's size, and the pooled features it multiplies are all positive, so each output moves by about
    ``lr · (1 + Σ features)`` per step in its own units — for every group alike. A factor below 1 shrinks
    that step for a group (the same as a lower learning rate for its rows of the head)."""
    spec = dict(spec or {})
    unknown = set(spec) - set(face.sizes)
    if unknown:
        raise ValueError(f"recon3d.model.head_scale: unknown groups {sorted(unknown)} (known: {list(face.sizes)})")
    return torch.cat([torch.full((n,), float(spec.get(g, 1.0))) for g, n in face.sizes.items()])


def describe(face: FaceModel, y: np.ndarray) -> dict[str, Any]:
    """One coefficient vector → the JSON-able groups, with the pose spelt out (angles in degrees too)."""
    c = {k: v.tolist() for k, v in face.split(torch.as_tensor(y, dtype=torch.float32)).items()}
    pose = dict(zip(POSE_NAMES, c["pose"]))
    return {"identity": c["id"], "expression": c["exp"], "albedo": c["albedo"], "sh": c["sh"],
            "pose": {**pose, "f": F0 * float(np.exp(pose["log_scale"])),
                     "degrees": {k: float(np.degrees(pose[k])) for k in ("pitch", "yaw", "roll")}},
            "layout": {"identity": "ICT-FaceKit identity modes (weights ~ N(0, 1))",
                       "expression": "ICT-FaceKit ARKit blendshapes (weights ~ [0, 1])",
                       "albedo": f"{face.n_albedo} mesh-Laplacian eigenvectors × RGB (eigenvector-major)",
                       "sh": f"9 SH bands × RGB (band-major); {SH_AMBIENT:.4f} added to band 0",
                       "pose": "pitch, yaw, roll (rad), log_scale (f = F0·exp), tx, ty (normalised image units, y up)",
                       "units": "cm, x = subject's left, y up, z towards the camera"}}
