"""The 3D face model: ICT-FaceKit's face region (MIT; ``faceparse/assets/ict_facekit``) as torch buffers, plus
an albedo model built here (the Light model has none) and a face-part label per vertex.

Geometry (centimetres, x to the subject's left = image right, y up, z towards the camera):
``shape = mean + id_basis · α + exp_basis · β`` — 100 identity modes (α ~ N(0, 1), as ICT samples them) and
53 ARKit-style expression blendshapes (β in [0, 1]). The mean is re-centred on the centroid of its 68
landmark vertices, so rotations turn the face about its middle.

Albedo (per vertex, linear RGB in [0, 1]): ``albedo = mean_albedo + E · a`` where ``mean_albedo`` is a
skin tone with lips, brows and eyelids painted from the landmark polygons of the mean face, and ``E`` holds
the ``n_albedo`` lowest-frequency eigenvectors of the cotangent mesh Laplacian (generalised problem
L e = λ M e with the lumped vertex areas M): smooth functions over the surface, scaled to unit RMS per
vertex, one coefficient per eigenvector and colour channel (``a`` is (n_albedo, 3)). A smooth basis stands
in for a learned texture model: it spans skin-tone shifts and blotches, not pores or make-up.

Part labels (CelebAMask-HQ ids): skin, nose, eyes (the eyelid rims), brows, upper / lower lip from the
mean face's landmark polygons seen from the front, and neck below the jaw line; rendering them gives the
parsing map the renderer knows (the pixel loss's attention, the synthetic set's label maps).
"""
from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from matplotlib.path import Path as MPath
from scipy.sparse.linalg import eigsh
from torch import nn

from ..labels import CELEBAMASK_HQ

ASSET = Path(__file__).resolve().parents[1] / "assets" / "ict_facekit" / "face_model.npz"
N_ID, N_EXP, N_ALBEDO, N_SH = 100, 53, 16, 27
POSE_NAMES = ("pitch", "yaw", "roll", "log_scale", "tx", "ty")
SKIN = np.array([0.78, 0.58, 0.47], np.float32)
# iBUG 68 polygons (0-based); the side convention of faceparse.data.synth: l_* = subject's left = image right
PARTS = {"nose": [27, 31, 32, 33, 34, 35], "r_eye": list(range(36, 42)), "l_eye": list(range(42, 48)),
         "u_lip": [48, 49, 50, 51, 52, 53, 54, 64, 63, 62, 61, 60],
         "l_lip": [54, 55, 56, 57, 58, 59, 48, 60, 67, 66, 65, 64]}
BROWS = {"r_brow": list(range(17, 22)), "l_brow": list(range(22, 27))}
TINTS = {"u_lip": ([0.62, 0.32, 0.33], 0.7), "l_lip": ([0.66, 0.34, 0.35], 0.7), "r_brow": ([0.18, 0.12, 0.09], 0.6),
         "l_brow": ([0.18, 0.12, 0.09], 0.6), "r_eye": ([0.5, 0.36, 0.3], 0.35), "l_eye": ([0.5, 0.36, 0.3], 0.35)}


def asset_sha256() -> str:
    return hashlib.sha256(ASSET.read_bytes()).hexdigest()


@lru_cache(maxsize=4)
def model_arrays(n_albedo: int = N_ALBEDO) -> dict[str, np.ndarray]:
    """The face model's arrays (read once per process): centred mean, bases, albedo model, part labels."""
    with np.load(ASSET) as z:
        raw = {k: z[k] for k in ("mean", "id_basis", "exp_basis", "triangles", "landmarks68")}
    mean = raw["mean"].astype(np.float64)
    mean -= mean[raw["landmarks68"]].mean(0)
    tri = raw["triangles"].astype(np.int64)
    parts = part_labels(mean, raw["landmarks68"], CELEBAMASK_HQ.index)
    albedo = np.tile(SKIN, (len(mean), 1))
    for name, (colour, weight) in TINTS.items():
        sel = parts == CELEBAMASK_HQ.index(name)
        albedo[sel] = (1 - weight) * albedo[sel] + weight * np.asarray(colour, np.float32)
    return {"mean": mean.astype(np.float32), "id_basis": raw["id_basis"], "exp_basis": raw["exp_basis"],
            "triangles": tri, "landmarks": raw["landmarks68"].astype(np.int64), "parts": parts,
            "albedo_mean": albedo.astype(np.float32), "albedo_basis": laplacian_basis(mean, tri, n_albedo)}


def _inside(pts: np.ndarray, poly: np.ndarray) -> np.ndarray:
    return MPath(poly).contains_points(pts)


def part_labels(mean: np.ndarray, lmk: np.ndarray, index) -> np.ndarray:
    """uint8 (N,) CelebAMask-HQ id per vertex, from the frontal (x, y) of the mean face's landmark polygons."""
    xy, pts = mean[:, :2], mean[lmk, :2]
    out = np.full(len(mean), index("skin"), np.uint8)
    jaw = pts[:17]
    below = (xy[:, 1] < np.interp(xy[:, 0], jaw[:, 0], jaw[:, 1])) & (np.abs(xy[:, 0]) < jaw[:, 0].max())
    out[below | (xy[:, 1] < jaw[:, 1].min())] = index("neck")
    nose = pts[PARTS["nose"]] * [1.25, 1.0]     # the wings reach past the nostril points
    out[_inside(xy, nose - nose.mean(0) * [0.25, 0.0])] = index("nose")
    for name in ("r_eye", "l_eye", "u_lip", "l_lip"):
        poly = pts[PARTS[name]]
        if name.endswith("eye"):   # the mesh has a hole at the eye: take its rim, the eyelids
            c = poly.mean(0)
            poly = c + (poly - c) * 1.35
        out[_inside(xy, poly)] = index(name)
    side = np.abs(xy[:, 0]) > np.abs(jaw[:, 0]).max()      # past the jaw line, beside the eyes / nose: the ears
    ears = (side & (mean[:, 2] < mean[lmk, 2].min()) & (xy[:, 1] > pts[33, 1] - 1.5)
            & (xy[:, 1] < pts[PARTS["l_eye"], 1].max() + 2.0))
    left = np.sign(pts[PARTS["l_eye"], 0].mean())                       # the subject's left: l_eye's side
    out[ears & (np.sign(xy[:, 0]) == left)] = index("l_ear")
    out[ears & (np.sign(xy[:, 0]) != left)] = index("r_ear")
    for name, idx in BROWS.items():
        line = pts[idx]
        d = np.min(np.linalg.norm(xy[:, None] - np.stack([np.interp(np.linspace(0, 4, 17), np.arange(5), line[:, k])
                                                          for k in (0, 1)], 1)[None], axis=-1), axis=1)
        out[(d < 0.45) & (xy[:, 1] > line[:, 1].min() - 0.6)] = index(name)
    return out


def laplacian_basis(verts: np.ndarray, tri: np.ndarray, k: int) -> np.ndarray:
    """(N, k) float32: the k lowest eigenvectors of the cotangent Laplacian (lumped mass), unit RMS per
    vertex, each signed so that its largest-magnitude entry is positive (deterministic across runs)."""
    n = len(verts)
    if k <= 0:
        return np.zeros((n, 0), np.float32)
    rows, cols, vals = [], [], []
    area = np.zeros(n)
    for a, b, c in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):       # the angle at c weighs edge (a, b)
        u, v = verts[tri[:, a]] - verts[tri[:, c]], verts[tri[:, b]] - verts[tri[:, c]]
        cross = np.linalg.norm(np.cross(u, v), axis=1)
        cot = np.clip((u * v).sum(1) / np.maximum(cross, 1e-12), -50.0, 50.0) * 0.5
        rows += [tri[:, a], tri[:, b]]
        cols += [tri[:, b], tri[:, a]]
        vals += [-cot, -cot]
        np.add.at(area, tri[:, a], cross / 6.0)
    w = sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)).tocsr()
    lap = w - sp.diags(np.asarray(w.sum(1)).ravel())
    mass = sp.diags(np.maximum(area, 1e-8))
    _, vecs = eigsh(lap.tocsc(), k=k, M=mass.tocsc(), sigma=-1e-4, which="LM", v0=np.ones(n))
    vecs = vecs / np.sqrt((vecs ** 2).mean(0, keepdims=True))
    sign = np.sign(vecs[np.abs(vecs).argmax(0), np.arange(k)])
    return (vecs * sign).astype(np.float32)


class FaceModel(nn.Module):
    """Coefficients → vertices (cm) and per-vertex albedo. Buffers are not persistent: a bundle stores the
    network, and its meta the asset's sha256."""

    def __init__(self, n_id: int = N_ID, n_exp: int = N_EXP, n_albedo: int = N_ALBEDO):
        super().__init__()
        a = model_arrays(int(n_albedo))
        if not (1 <= n_id <= a["id_basis"].shape[1] and 0 <= n_exp <= a["exp_basis"].shape[1]):
            raise ValueError(f"face model: n_id must be 1..{a['id_basis'].shape[1]}, n_exp 0..{a['exp_basis'].shape[1]}")
        self.n_id, self.n_exp, self.n_albedo = int(n_id), int(n_exp), int(n_albedo)
        for name, arr in (("mean", a["mean"]), ("id_basis", a["id_basis"][:, :n_id]),
                          ("exp_basis", a["exp_basis"][:, :n_exp]), ("albedo_mean", a["albedo_mean"]),
                          ("albedo_basis", a["albedo_basis"]), ("triangles", a["triangles"]),
                          ("landmarks", a["landmarks"]), ("parts", a["parts"].astype(np.int64))):
            self.register_buffer(name, torch.from_numpy(np.ascontiguousarray(arr)), persistent=False)

    @property
    def sizes(self) -> dict[str, int]:
        """Coefficient groups in the order of the regressed vector."""
        return {"id": self.n_id, "exp": self.n_exp, "albedo": 3 * self.n_albedo, "sh": N_SH, "pose": len(POSE_NAMES)}

    @property
    def num_coeffs(self) -> int:
        return sum(self.sizes.values())

    def split(self, y: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(zip(self.sizes, torch.split(y, list(self.sizes.values()), dim=-1)))

    def vertices(self, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        """(B, n_id), (B, n_exp) → (B, N, 3) cm."""
        off = alpha @ self.id_basis.T + (beta @ self.exp_basis.T if self.n_exp else 0.0)
        return self.mean + off.view(alpha.shape[0], -1, 3)

    def albedo(self, a: torch.Tensor) -> torch.Tensor:
        """(B, 3·n_albedo) → (B, N, 3) linear RGB (not clamped: the loss sees what the coefficients say)."""
        coef = a.view(a.shape[0], self.n_albedo, 3)
        return self.albedo_mean + torch.einsum("nk,bkc->bnc", self.albedo_basis, coef)
