"""M_β: a face-parsing map drawn from the 68 iBUG landmarks, in the CelebAMask-HQ scheme (Zhao & Qi).

Regions: skin (the jaw line 0–16 closed over the brows, raised by a brow band so the forehead strip the
brows sit in is skin), brows (17–21, 22–26 as filled bands), eyes (36–41, 42–47), nose (the hull of 27–35),
upper / lower lip and the inner mouth (48–67). The project's l/r convention: ``l_*`` is the person's left
= image right, so points 36–41 (image left) are ``r_eye`` and 17–21 ``r_brow``.

Points are continuous pixel coordinates (pixel i spans [i, i+1)); the map is drawn directly at the target
resolution, a pixel taking a region's class when its centre lies inside the region's polygon (exact
point-in-polygon in float, matplotlib.path): sub-pixel accurate at any output size.
"""
from __future__ import annotations

import cv2
import numpy as np

from .labels import CELEBAMASK_HQ

BROW_BAND = 0.08                        # brow thickness, fraction of the inter-ocular distance
_C = CELEBAMASK_HQ.index

# (class, point indices) painted in this order (later on top), as CelebAMask-HQ paints its parts
REGIONS: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("nose", tuple(range(27, 36))),
    ("r_eye", tuple(range(36, 42))),
    ("l_eye", tuple(range(42, 48))),
    ("u_lip", (*range(48, 55), 64, 63, 62, 61, 60)),
    ("l_lip", (54, 55, 56, 57, 58, 59, 48, 60, 67, 66, 65, 64)),
    ("mouth", tuple(range(60, 68))),
)
BROWS = (("r_brow", tuple(range(17, 22))), ("l_brow", tuple(range(22, 27))))


def _fill(canvas: np.ndarray, poly: np.ndarray, value: int) -> None:
    """Set every pixel whose centre lies inside the polygon (no outline added: a region's pixel count is its
    area at any resolution, so small parts do not swell at low output sizes)."""
    from matplotlib.path import Path    # (here: matplotlib takes 0.3 s to import; a bundle loads without it)

    poly = np.asarray(poly, np.float64)
    h, w = canvas.shape
    x0, y0 = np.clip(np.floor(poly.min(0)).astype(int), 0, [w, h])
    x1, y1 = np.clip(np.ceil(poly.max(0)).astype(int) + 1, 0, [w, h])
    if x1 <= x0 or y1 <= y0:
        return
    ys, xs = np.mgrid[y0:y1, x0:x1]
    inside = Path(poly).contains_points(np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5], 1))
    canvas[y0:y1, x0:x1][inside.reshape(ys.shape)] = value


def _hull(points: np.ndarray) -> np.ndarray:
    return cv2.convexHull(np.asarray(points, np.float32)).reshape(-1, 2)


def brow_band(points: np.ndarray, thickness: float) -> np.ndarray:
    """The brow polyline and the same line moved down by ``thickness`` (towards the eyes), as one polygon."""
    down = np.array([0.0, thickness])
    return np.concatenate([points, points[::-1] + down])


def draw_map(landmarks: np.ndarray, size: int | tuple[int, int], scale: float = 1.0,
             brow_width: float = BROW_BAND) -> np.ndarray:
    """(H, W) uint8 CelebAMask-HQ class ids drawn from ``landmarks`` (68, 2) given in pixels of an image
    ``scale`` times smaller than the output (e.g. points of a 256² image, map at 512²: scale 2);
    ``brow_width``: brow thickness as a fraction of the inter-ocular distance."""
    pts = np.asarray(landmarks, np.float64) * float(scale)
    if pts.shape != (68, 2) or not np.isfinite(pts).all():
        raise ValueError(f"landmarks must be finite (68, 2), got {pts.shape}")
    h, w = (size, size) if isinstance(size, int) else size
    out = np.zeros((h, w), np.uint8)
    iod = float(np.linalg.norm(pts[36] - pts[45]))
    band = float(brow_width) * iod
    # skin: jaw, then up over the brows (raised by the band, so the brows lie inside the face)
    _fill(out, np.concatenate([pts[0:17], pts[26:16:-1] - [0.0, band]]), _C("skin"))
    for name, idx in BROWS:
        _fill(out, brow_band(pts[list(idx)], band), _C(name))
    for name, idx in REGIONS:
        poly = _hull(pts[list(idx)]) if name == "nose" else pts[list(idx)]
        _fill(out, poly, _C(name))
    return out
