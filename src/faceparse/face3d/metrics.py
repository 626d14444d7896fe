"""Reconstruction metrics: vertex errors after rigid alignment, in millimetres, and landmark NME.

Alignment: the similarity transform (scale, rotation, translation; Umeyama 1991) that best maps the
predicted mesh onto the true one in the least-squares sense — so pose and overall size, which a single
photo under scaled orthographic projection does not fix, are not counted; what remains is the shape error.
Vertex correspondence is exact (both meshes are the same model's topology). The scored vertices are the
face's (every part but the neck: ``FaceModel.parts``). ICT units are cm: errors × 10 → mm. Per face: the
mean and the 90th percentile of its vertex errors ("average 90 % largest error" in Zhao & Qi's MICC table
is the same family); a split's numbers are the means over its faces.
"""
from __future__ import annotations

import numpy as np

from ..ibug68 import inter_ocular

CM_TO_MM = 10.0


def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """(s, R, t) minimising Σ‖s R src_i + t − dst_i‖² (src, dst: (N, 3)); R a proper rotation."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    cov = b.T @ a / len(src)
    u, d, vt = np.linalg.svd(cov)
    sign = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[2, 2] = -1.0
    rot = u @ sign @ vt
    var = (a ** 2).sum() / len(src)
    s = float(np.trace(np.diag(d) @ sign) / var) if var > 0 else 1.0
    return s, rot, mu_d - s * rot @ mu_s


def aligned_errors_mm(pred: np.ndarray, true: np.ndarray, vertices: np.ndarray | None = None) -> np.ndarray:
    """Per-vertex distances (mm) after aligning ``pred`` onto ``true`` (both (N, 3) cm) over ``vertices``."""
    sel = slice(None) if vertices is None else vertices
    s, rot, t = umeyama(pred[sel], true[sel])
    moved = s * np.asarray(pred, np.float64)[sel] @ rot.T + t
    return np.linalg.norm(moved - np.asarray(true, np.float64)[sel], axis=1) * CM_TO_MM


def face_errors(pred: np.ndarray, true: np.ndarray, vertices: np.ndarray | None = None) -> dict[str, float]:
    e = aligned_errors_mm(pred, true, vertices)
    return {"mean_mm": float(e.mean()), "p90_mm": float(np.percentile(e, 90))}


def landmark_nme(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Per face: mean point distance over the inter-ocular distance (outer eye corners) of the truth."""
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    return np.linalg.norm(pred - true, axis=-1).mean(-1) / np.maximum(inter_ocular(true), 1e-9)
