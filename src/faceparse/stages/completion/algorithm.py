"""Face-parsing map completion (Zhao & Qi's "Face Parsing Map Plus", Algorithm 1), the occlusion mask, and
the benchmark's region metrics. numpy only: serving, the CLI and evaluation import it.

M_α is the parser's map (an occluder shows as whatever the parser calls it: background, hair, ...), M_β is
drawn from the 68 landmarks (:mod:`faceparse.landmark_map`), M_γ = Algorithm 1 (M_α, M_β).

Algorithm 1, two raster passes over pixels i (O = skin, S = facial features):
1. C_i = A_i if A_i ∈ O; else B_i if B_i ∈ O; else A_i
2. C_i = A_i if A_i ∈ S; else B_i if B_i ∈ S; else A_i
Read literally, pass 2's last branch copies A again and undoes pass 1's skin fill. ``reading="sequential"``
(the default, the sensible reading) runs pass 2 on pass 1's output: its tests still read A and B as
written, but its last branch keeps pass 1's C (so A's features survive where B draws skin, and the skin
fill survives where neither has a feature); ``"literal"`` keeps the text as written (tests show where
they differ). S holds brows, eyes, nose, upper / lower lip, and the inner
mouth when ``mouth_is_feature`` (M_β draws the inner mouth; without it an occluded open mouth stays a hole).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ...labels import CELEBAMASK_HQ
from ...landmark_map import draw_map

SKIN = ("skin",)
FEATURES = ("l_brow", "r_brow", "l_eye", "r_eye", "nose", "u_lip", "l_lip")
READINGS = ("sequential", "literal")


@dataclass(frozen=True)
class Settings:
    """What a completion bundle fixes besides the two models (params ``completion.model``)."""
    reading: str = "sequential"
    mouth_is_feature: bool = True
    brow_band: float = 0.08

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "Settings":
        d = {k: v for k, v in (d or {}).items() if k != "preset"}
        s = cls(**d)
        if s.reading not in READINGS:
            raise ValueError(f"completion reading must be one of {READINGS}, got {s.reading!r}")
        return s

    def skin_ids(self) -> np.ndarray:
        return _ids(SKIN)

    def feature_ids(self) -> np.ndarray:
        return _ids(FEATURES + (("mouth",) if self.mouth_is_feature else ()))

    def face_ids(self) -> np.ndarray:
        return np.concatenate([self.skin_ids(), self.feature_ids()])


def _ids(names) -> np.ndarray:
    return np.array([CELEBAMASK_HQ.index(n) for n in names], dtype=np.uint8)


def _fill(base: np.ndarray, a: np.ndarray, b: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """One pass of Algorithm 1: A where A ∈ ids, else B where B ∈ ids, else ``base``."""
    return np.where(np.isin(a, ids), a, np.where(np.isin(b, ids), b, base))


def plus(a: np.ndarray, b: np.ndarray, settings: Settings = Settings()) -> np.ndarray:
    """Algorithm 1: M_γ from M_α (``a``) and M_β (``b``), both (H, W) CelebAMask-HQ ids."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"M_alpha and M_beta differ in size: {a.shape} vs {b.shape}")
    c = _fill(a, a, b, settings.skin_ids())
    return _fill(a if settings.reading == "literal" else c, a, b, settings.feature_ids())


def occlusion_mask(gamma: np.ndarray, alpha: np.ndarray, settings: Settings = Settings()) -> np.ndarray:
    """Pixels the completed map calls face (skin or a feature) and the parser does not: the occluder."""
    face = settings.face_ids()
    return np.isin(gamma, face) & ~np.isin(alpha, face)


@dataclass
class Maps:
    alpha: np.ndarray       # the parser's map
    beta: np.ndarray        # the landmark-drawn map
    gamma: np.ndarray       # Algorithm 1
    occlusion: np.ndarray   # bool


def complete(alpha: np.ndarray, points: np.ndarray, settings: Settings = Settings()) -> Maps:
    """All maps for one image: ``points`` (68, 2) in continuous pixel coordinates of ``alpha``."""
    beta = draw_map(points, alpha.shape, brow_width=settings.brow_band)
    gamma = plus(alpha, beta, settings)
    return Maps(alpha, beta, gamma, occlusion_mask(gamma, alpha, settings))


# --------------------------------------------------------------------------------------- the benchmark
class RegionScores:
    """Confusion matrices of one map kind inside a region, summed over images; F1 / IoU over face classes."""

    def __init__(self, face_ids: np.ndarray, num_classes: int = CELEBAMASK_HQ.num_classes):
        self.face_ids, self.n = face_ids, num_classes
        self.matrix = np.zeros((num_classes, num_classes), np.int64)

    def update(self, pred: np.ndarray, truth: np.ndarray, region: np.ndarray | None = None) -> None:
        p, t = np.asarray(pred), np.asarray(truth)
        if region is not None:
            p, t = p[region], t[region]
        idx = t.astype(np.int64).ravel() * self.n + p.astype(np.int64).ravel()
        self.matrix += np.bincount(idx, minlength=self.n * self.n).reshape(self.n, self.n)

    def compute(self) -> dict[str, Any]:
        """Mean F1 / mIoU over the face classes present in truth or prediction (0/0 classes left out)."""
        m = self.matrix.astype(np.float64)
        tp, gt, pr = np.diag(m), m.sum(1), m.sum(0)
        f1, iou = {}, {}
        for i in self.face_ids:
            den = gt[i] + pr[i]
            if den > 0:
                name = CELEBAMASK_HQ.classes[i]
                f1[name], iou[name] = 2 * tp[i] / den, tp[i] / (den - tp[i])
        mean = (lambda d: float(np.mean(list(d.values()))) if d else None)
        return {"f1": mean(f1), "miou": mean(iou), "pixels": int(gt[self.face_ids].sum()), "per_class_f1": f1}


class MaskIoU:
    def __init__(self):
        self.inter = self.union = 0

    def update(self, pred: np.ndarray, truth: np.ndarray) -> None:
        self.inter += int((pred & truth).sum())
        self.union += int((pred | truth).sum())

    def compute(self) -> float | None:
        return self.inter / self.union if self.union else None
