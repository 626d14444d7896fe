"""How the recon3d stage scores a face: vertex errors after alignment, per face and over a split."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from ...face3d.metrics import face_errors, landmark_nme
from ...labels import CELEBAMASK_HQ
from ...training.loop import to_device


class MeshEvaluator:
    """Per validation face: aligned vertex errors (mean, p90 in mm) and landmark NME; gathered across ranks."""

    def __init__(self):
        self.rows: list[tuple[float, float, float, float]] = []   # mean_mm, p90_mm, nme, p90 of the mean face

    def update(self, model, batch, device, autocast) -> None:
        with autocast:
            y = model(to_device(batch["image"], device)).float()
        self.rows += face_rows(model, y, batch["coeffs"].to(device), batch["points"].to(device))

    def reduce(self, dd=None) -> None:
        if dd is not None and dd.active and dd.world_size > 1:
            gathered: list = [None] * dd.world_size
            dist.all_gather_object(gathered, self.rows)
            self.rows = [r for g in gathered for r in g]

    def compute(self) -> dict[str, Any]:
        a = np.asarray(self.rows, np.float64).reshape(-1, 4)
        nan = float("nan")
        return {"mean_mm": float(a[:, 0].mean()) if len(a) else nan, "p90_mm": float(a[:, 1].mean()) if len(a) else nan,
                "lmk_nme": float(a[:, 2].mean()) if len(a) else nan,
                "p90_mm_mean_face": float(a[:, 3].mean()) if len(a) else nan, "n_faces": int(len(a))}


@torch.no_grad()
def face_rows(model, y: torch.Tensor, coeffs: torch.Tensor, points: torch.Tensor) -> list[tuple[float, ...]]:
    """(mean_mm, p90_mm, landmark NME, mean face's p90_mm) per face of a batch with true coefficients."""
    face = model.face
    if coeffs.shape[-1] != face.num_coeffs:
        raise ValueError(f"the dataset's coefficients have {coeffs.shape[-1]} values, the model's face model "
                         f"{face.num_coeffs}: the metrics need the synthetic 3D set made with the same face model")
    c, t = face.split(y), face.split(coeffs.float())
    pred = face.vertices(c["id"], c["exp"]).cpu().numpy()
    true = face.vertices(t["id"], t["exp"]).cpu().numpy()
    sel = scored_vertices(face)
    nme = landmark_nme(model.landmarks(y).cpu().numpy(), points.cpu().numpy())
    mean_face = face.mean.cpu().numpy()
    out = []
    for p, g, n in zip(pred, true, nme):
        e, base = face_errors(p, g, sel), face_errors(mean_face, g, sel)
        out.append((e["mean_mm"], e["p90_mm"], float(n), base["p90_mm"]))
    return out


def scored_vertices(face) -> np.ndarray:
    return np.flatnonzero(face.parts.cpu().numpy() != CELEBAMASK_HQ.index("neck"))
