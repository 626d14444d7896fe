"""iBUG 68-point conventions and the field's landmark metrics (numpy only: serving and data tools import it).

Coordinates: continuous pixel coordinates — the image spans [0, W] × [0, H] and pixel (col i, row j) has
its centre at (i + 0.5, j + 0.5) — so normalising is x / W, y / H and a horizontal flip is x → W − x.
albumentations (2.0.8) places pixel centres on integers instead (its keypoint flip is x → W − 1 − x); the
landmark dataset shifts by 0.5 px around albumentations calls (``ALBU_OFFSET``).

Metrics follow 300-W: per-image NME = mean point-to-point error / inter-ocular distance of the ground
truth (outer eye corners 36 and 45); AUC and failure rate of the per-image NME at 0.08.
"""
from __future__ import annotations

from typing import Any

import numpy as np

NUM_POINTS = 68
ALBU_OFFSET = 0.5   # continuous coordinate − albumentations/cv2 coordinate

REGIONS: dict[str, range] = {
    "jaw": range(0, 17), "brows": range(17, 27), "nose": range(27, 36), "eyes": range(36, 48),
    "mouth": range(48, 68),
}


def _flip_permutation() -> np.ndarray:
    """Index i of a flipped face takes the point that was its mirror partner: jaw i ↔ 16 − i, brows
    i ↔ 43 − i, nose bridge 27-30 on the axis, nostrils i ↔ 66 − i, eyes (corners and lids, each eye's
    contour runs clockwise from the outer/inner corner), outer lip, inner lip."""
    pairs = [(i, 16 - i) for i in range(8)] + [(i, 43 - i) for i in range(17, 22)] + [(31, 35), (32, 34)]
    pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
    pairs += [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]
    pairs += [(60, 64), (61, 63), (65, 67)]
    perm = np.arange(NUM_POINTS)
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return perm


IBUG_FLIP: np.ndarray = _flip_permutation()
IBUG_FLIP.setflags(write=False)


def flip_points(points: np.ndarray, width: float) -> np.ndarray:
    """Mirror (…, 68, 2) continuous pixel points across the vertical axis (x → width − x) and reorder them
    with ``IBUG_FLIP`` so that index 36 is again the image-left outer eye corner."""
    pts = np.array(points, dtype=np.result_type(np.asarray(points).dtype, np.float32))
    if pts.shape[-2:] != (NUM_POINTS, 2):
        raise ValueError(f"points must be (..., {NUM_POINTS}, 2), got {pts.shape}")
    pts[..., 0] = width - pts[..., 0]
    return pts[..., IBUG_FLIP, :]


def inter_ocular(points: np.ndarray) -> np.ndarray:
    """Distance between the outer eye corners 36 and 45 (300-W's normaliser), per shape (…,)."""
    pts = np.asarray(points, dtype=np.float64)
    return np.linalg.norm(pts[..., 36, :] - pts[..., 45, :], axis=-1)


def _check(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, truth = np.asarray(pred, np.float64), np.asarray(truth, np.float64)
    if truth.ndim != 3 or truth.shape[1:] != (NUM_POINTS, 2) or pred.shape != truth.shape:
        raise ValueError(f"pred and truth must both be (N, {NUM_POINTS}, 2), got {pred.shape} and {truth.shape}")
    if len(truth) == 0:
        raise ValueError("no images to score")
    return pred, truth


def point_errors(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(N, 68) point-to-point errors in units of each image's ground-truth inter-ocular distance."""
    pred, truth = _check(pred, truth)
    iod = inter_ocular(truth)
    if not np.all(iod > 0):
        raise ValueError(f"ground truth of image(s) {np.flatnonzero(~(iod > 0)).tolist()} has no inter-ocular distance")
    return np.linalg.norm(pred - truth, axis=-1) / iod[:, None]


def auc_failure(nme: np.ndarray, threshold: float = 0.08, step: float = 1e-4) -> tuple[float, float]:
    """Area under the cumulative error distribution of per-image NME on [0, threshold], divided by the
    threshold (1 = every image perfect), with Simpson's rule on a ``step`` grid as in the 300-W evaluation
    code (``scipy.integrate.simps``); and the failure rate = share of images with NME > threshold."""
    nme = np.asarray(nme, np.float64)
    n = int(round(threshold / step))
    n += n % 2                                    # Simpson needs an even number of intervals
    x = np.linspace(0.0, threshold, n + 1)
    ced = (nme[None, :] <= x[:, None]).mean(1)
    w = np.ones(n + 1)
    w[1:-1:2], w[2:-1:2] = 4.0, 2.0
    auc = float((w * ced).sum() * (x[1] - x[0]) / 3.0 / threshold)
    return auc, float((nme > threshold).mean())


def landmark_metrics(pred: np.ndarray, truth: np.ndarray, visible: np.ndarray | None = None,
                     mean_shape: np.ndarray | None = None, threshold: float = 0.08) -> dict[str, Any]:
    """The field's metrics over N images ((N, 68, 2), same units): ``nme``, ``nme_<region>``,
    ``auc_<t>``, ``failure_rate_<t>``; with ``visible`` (N, 68) bool: ``nme_occluded`` / ``nme_visible``
    (pooled over all hidden / visible points; None when there are none) and ``n_occluded_points``; with
    ``mean_shape`` (68, 2): ``mean_shape_nme``, the NME of predicting it for every image (the baseline)."""
    err = point_errors(pred, truth)
    per_image = err.mean(1)
    out: dict[str, Any] = {"nme": float(per_image.mean()), "n_images": int(len(err))}
    for name, idx in REGIONS.items():
        out[f"nme_{name}"] = float(err[:, list(idx)].mean(1).mean())
    auc, fail = auc_failure(per_image, threshold)
    out[f"auc_{threshold:g}"], out[f"failure_rate_{threshold:g}"] = auc, fail
    if visible is not None:
        vis = np.asarray(visible, bool)
        if vis.shape != err.shape:
            raise ValueError(f"visible must be {err.shape}, got {vis.shape}")
        out["n_occluded_points"] = int((~vis).sum())
        out["nme_occluded"] = float(err[~vis].mean()) if (~vis).any() else None
        out["nme_visible"] = float(err[vis].mean()) if vis.any() else None
    if mean_shape is not None:
        truth = np.asarray(truth, np.float64)
        base = np.broadcast_to(np.asarray(mean_shape, np.float64), truth.shape)
        out["mean_shape_nme"] = float(point_errors(base, truth).mean())
    return out
