"""The reconstruction loss, eq. 16: λ3·L_lmk + λ4·L_pix + λ5·L_reg + λ6·L_fea (Zhao & Qi; the seed's
weights 1.6e-3, 1.4, 3.7e-4, 0.2).

- eq. 12 ``landmark``: mean squared distance between the 68 target points and the projected landmark
  vertices, in pixels of a 224² image whatever the input size (the weight 1.6e-3 was set for 224²
  pixels, Deng et al.'s convention);
- eq. 13 ``pixel``: Σ_i P_i ‖I_i − I'_i‖₂ / Σ_i P_i over the reprojected face region (RGB in [0, 1]), the
  occlusion attention P_i = 1 where the parsing map M_α holds a face class (skin, brows, eyes, nose, lips,
  inner mouth: ``attention: face``; ``features``: the features without skin) and 0.1 elsewhere;
- eq. 14 ``reg``: ω_α‖α‖² + ω_β(‖β‖² + ‖albedo‖²), ω_α = 1, ω_β = 1.75e-3 (the notes read β as expression
  and texture);
- eq. 15 ``face``: 1 − cos(φ(I), φ(I')) with φ a face-recognition network — only when ``face_net`` names a
  TorchScript file (images in [-1, 1] at its input size → embeddings). No such weights exist offline (every
  PyPI package downloads them at run time), so it is off by default and its weight is then not applied.
"""
from __future__ import annotations

from typing import Any

import torch

from ..labels import CELEBAMASK_HQ as T

DEFAULTS = {"w_lmk": 1.6e-3, "w_pix": 1.4, "w_reg": 3.7e-4, "w_face": 0.2, "w_shape": 0.0, "w_id": 1.0, "w_exp": 1.75e-3,
            "attention": "face", "attention_low": 0.1, "face_net": None, "face_net_size": 112}
FACE_CLASSES = ("skin", "nose", "l_eye", "r_eye", "l_brow", "r_brow", "mouth", "u_lip", "l_lip")
LMK_SCALE = 224.0


def attention(parse: torch.Tensor, mode: str = "face", low: float = 0.1) -> torch.Tensor:
    """(B, H, W) CelebAMask-HQ ids → (B, 1, H, W) P: 1 on the face (or its features), ``low`` elsewhere."""
    names = FACE_CLASSES if mode == "face" else FACE_CLASSES[1:] if mode == "features" else None
    if names is None:
        raise ValueError(f"recon3d.loss.attention must be face or features, got {mode!r}")
    ids = torch.tensor([T.index(n) for n in names], device=parse.device)
    return torch.where(torch.isin(parse, ids), 1.0, float(low)).unsqueeze(1)


def landmark_loss(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Both (B, 68, 2) in [0, 1] image units."""
    return ((pred - true) * LMK_SCALE).square().sum(-1).mean()


def pixel_loss(render: torch.Tensor, mask: torch.Tensor, image: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    w = mask * p
    err = (render - image).square().sum(1, keepdim=True).add(1e-8).sqrt()
    return (w * err).sum() / w.sum().clamp_min(1e-6)


def reg_loss(c: dict[str, torch.Tensor], w_id: float, w_exp: float) -> torch.Tensor:
    return (w_id * c["id"].square().sum(-1) + w_exp * (c["exp"].square().sum(-1) + c["albedo"].square().sum(-1))).mean()


class FaceFeatureLoss(torch.nn.Module):
    """Eq. 15 with a user-supplied TorchScript face-recognition network (frozen)."""

    def __init__(self, path: str, size: int):
        super().__init__()
        self.net = torch.jit.load(str(path), map_location="cpu").eval()
        for p in self.net.parameters():    # frozen (a ScriptModule has no requires_grad_)
            p.requires_grad_(False)
        self.size = int(size)

    def forward(self, image: torch.Tensor, render: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        def embed(x):
            x = torch.nn.functional.interpolate(x * 2 - 1, size=(self.size,) * 2, mode="bilinear", align_corners=False)
            return torch.nn.functional.normalize(self.net(x).flatten(1), dim=1)

        composite = render * mask + image * (1 - mask)     # the render in the photo: the network sees a face
        return (1 - (embed(image) * embed(composite)).sum(1)).mean()


def shape_loss(face, c: dict[str, torch.Tensor], true: torch.Tensor) -> torch.Tensor:
    """Mean squared vertex distance (cm²) between the predicted and the true mesh (identity + expression):
    supervision only synthetic data can give (its true coefficients ``true``, (B, K))."""
    t = face.split(true)
    return (face.vertices(c["id"], c["exp"]) - face.vertices(t["id"], t["exp"])).square().sum(-1).mean()


def total_loss(weights: dict[str, Any], c: dict[str, torch.Tensor], out, image01: torch.Tensor,
               points: torch.Tensor, parse: torch.Tensor, size: int, face_loss: FaceFeatureLoss | None = None,
               shape=None):
    """(eq. 16 total, its parts detached); ``image01`` (B, 3, S, S) in [0, 1], ``points`` in [0, 1] units;
    ``shape``: (face model, true coefficients) adds ``w_shape`` · shape_loss when w_shape > 0."""
    w = {**DEFAULTS, **weights}
    parts = {"lmk": landmark_loss(out.landmarks / size, points),
             "pix": pixel_loss(out.image, out.mask, image01, attention(parse, str(w["attention"]), float(w["attention_low"]))),
             "reg": reg_loss(c, float(w["w_id"]), float(w["w_exp"]))}
    total = float(w["w_lmk"]) * parts["lmk"] + float(w["w_pix"]) * parts["pix"] + float(w["w_reg"]) * parts["reg"]
    if face_loss is not None:
        parts["face"] = face_loss(image01, out.image, out.mask)
        total = total + float(w["w_face"]) * parts["face"]
    if float(w["w_shape"]) > 0 and shape is not None:
        parts["shape"] = shape_loss(shape[0], c, shape[1])
        total = total + float(w["w_shape"]) * parts["shape"]
    return total, {k: v.detach() for k, v in parts.items()}
