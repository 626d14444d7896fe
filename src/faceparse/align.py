"""Face alignment: where a face's square crop lies in the photo, the crop itself, and the way back.

The crop is CelebA-HQ's (Karras et al. 2018, appendix C; FFHQ reuses it): from the eye centre ``e``, the
eye-to-eye vector ``ee`` and the eye-to-mouth vector ``em``, the crop's half-width vector is
``x = ee − rot90(em)`` scaled to ``max(2 |ee|, 1.8 |em|)`` and its centre ``e + 0.1 em``; ``y = rot90(x)``.
So the rotation comes from the eyes (and the mouth), and the margin is the one the CelebAMask-HQ images —
the parser's training framing — have: run on those images it gives back their own frame within a few per
cent (centre ±4 px, side 0.95–1.02 × 1024, angle < 1.3° on the four shared samples), and ``is_identity``
then keeps the photo as it is, so an already aligned face is parsed exactly as without detection.

Geometry is continuous, pixel (i, j) covering [j, j + 1) × [i, i + 1); ``_cv`` converts a map to OpenCV's
pixel-centre convention. Labels travel with nearest-neighbour sampling (class ids are not averaged); 255
marks "outside the crop" on the way back.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

OUTSIDE = 255   # label value of photo pixels no crop covers (never a class id: tables have < 255 classes)


@dataclass(frozen=True)
class Placement:
    """A square crop in the photo: its top-left corner and its two side vectors (photo pixels)."""
    origin: np.ndarray
    ax: np.ndarray   # the crop's top edge, left → right
    ay: np.ndarray   # its left edge, top → bottom

    @classmethod
    def whole(cls, width: float, height: float) -> "Placement":
        """The whole image as the crop (an aligned face, or a photo taken whole)."""
        return cls(origin=np.zeros(2), ax=np.array([float(width), 0.0]), ay=np.array([0.0, float(height)]))

    @property
    def side(self) -> float:
        return float(np.hypot(*self.ax))

    @property
    def angle(self) -> float:
        """Rotation of the crop in degrees (0: upright)."""
        return float(np.degrees(np.arctan2(self.ax[1], self.ax[0])))

    @property
    def centre(self) -> np.ndarray:
        return self.origin + (self.ax + self.ay) / 2

    def crop_to(self, size: int, k: float = 1.0) -> np.ndarray:
        """2×3 map from the crop's pixels (``size``²) to the photo's scaled by ``k``."""
        return np.column_stack([self.ax * k / size, self.ay * k / size, self.origin * k])

    def zoomed(self, k: float, shift=(0.0, 0.0)) -> "Placement":
        """The same crop ``k`` times as wide about its centre moved by ``shift`` × its side (a loose framing)."""
        c = self.centre + np.asarray(shift, np.float64) * self.side
        return Placement(origin=c - k * (self.ax + self.ay) / 2, ax=k * self.ax, ay=k * self.ay)

    def points_to_crop(self, points: np.ndarray, size: int = 1) -> np.ndarray:
        """Photo points (…, 2) → the crop's (``size``²; 1: normalised to [0, 1]²), continuous coordinates."""
        return apply(invert(self.crop_to(size)), points)

    def points_to_photo(self, points: np.ndarray, size: int = 1) -> np.ndarray:
        """The crop's points (``size``² pixels; 1: normalised) → the photo's pixels."""
        return apply(self.crop_to(size), points)


def placement(points: np.ndarray, margin: float = 1.0) -> Placement:
    """The CelebA-HQ crop of a face from its five points (eye, eye, nose, mouth corner, mouth corner; either
    left-right order). ``margin`` > 1 widens it about the same centre."""
    p = np.asarray(points, dtype=np.float64)
    eyes, mouth = p[:2][np.argsort(p[:2, 0])], p[3:5]
    e = eyes.mean(0)
    ee, em = eyes[1] - eyes[0], mouth.mean(0) - e
    x = ee - np.array([-em[1], em[0]])            # ee − rot90(em): the face's horizontal axis
    x *= max(np.hypot(*ee) * 2.0, np.hypot(*em) * 1.8) * margin / max(np.hypot(*x), 1e-9)
    y = np.array([-x[1], x[0]])                   # rot90(x): pointing down the face
    c = e + 0.1 * em
    return Placement(origin=c - x - y, ax=2 * x, ay=2 * y)


def five_points(points68: np.ndarray) -> np.ndarray:
    """The detector's five points (eye centres, nose tip, mouth corners) read off 68 iBUG points, in the
    detector's order (image-left eye first): what ``placement`` frames a face with when its points are known."""
    p = np.asarray(points68, dtype=np.float64)
    return np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]])


def similarity_fit(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2×3 similarity (rotation, uniform scale, shift) taking points ``src`` closest to ``dst`` in the
    least-squares sense (Umeyama 1991, without reflection)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    u, sig, vt = np.linalg.svd(b.T @ a)
    d = np.diag([1.0, np.sign(np.linalg.det(u @ vt))])
    rot = u @ d @ vt
    scale = np.trace(np.diag(sig) @ d) / max((a ** 2).sum(), 1e-12)
    return np.column_stack([scale * rot, md - scale * rot @ ms])


def apply(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """A 2×3 affine map applied to points (…, 2)."""
    p = np.asarray(points, dtype=np.float64)
    return p @ m[:, :2].T + m[:, 2]


def is_identity(pl: Placement, width: int, height: int, tol: float = 0.12, max_angle: float = 5.0) -> bool:
    """The crop is (nearly) the photo itself: a square photo of one face already aligned the CelebA-HQ way."""
    if abs(width - height) > 0.01 * max(width, height):
        return False
    centre_off = np.abs(pl.centre - np.array([width, height]) / 2).max() / width
    return abs(pl.side / width - 1) <= tol and centre_off <= tol / 2 and abs(pl.angle) <= max_angle


def invert(m: np.ndarray) -> np.ndarray:
    lin = np.linalg.inv(m[:, :2])
    return np.column_stack([lin, -lin @ m[:, 2]])


def _cv(m: np.ndarray) -> np.ndarray:
    """A continuous-coordinate map (dst → src) in OpenCV's pixel-centre convention."""
    return np.column_stack([m[:, :2], m[:, :2] @ [0.5, 0.5] + m[:, 2] - 0.5])


def to_crop(array: np.ndarray, pl: Placement, size: int, nearest: bool = False) -> np.ndarray:
    """The crop (``size``², rotated upright) of a photo-sized array: an RGB image (bilinear; mirrored past the
    photo's edge, so an edge face keeps plausible surroundings) or a label map (``nearest``: 255 outside)."""
    flags = (cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR) | cv2.WARP_INVERSE_MAP
    border = dict(borderMode=cv2.BORDER_CONSTANT, borderValue=OUTSIDE) if nearest else \
        dict(borderMode=cv2.BORDER_REFLECT_101)
    return cv2.warpAffine(np.ascontiguousarray(array), _cv(pl.crop_to(size)), (size, size), flags=flags, **border)


def face_crop(image: np.ndarray, pl: Placement, size: int, max_side: int = 1024) -> np.ndarray:
    """A face's crop as a model sees it, ``size``² uint8 RGB: warped at about its own pixel size (at most
    ``max_side``), then resized bicubic as ``models.preprocess`` resizes — no aliasing from warping a large
    face small; the one crop of training (landmarks) and of every stage's photo inference."""
    side = int(np.clip(round(pl.side), size, max(size, max_side)))
    crop = to_crop(np.asarray(image, dtype=np.uint8), pl, side)
    return crop if side == size else np.asarray(Image.fromarray(crop).resize((size, size), Image.BICUBIC))


def to_photo(labels: np.ndarray, pl: Placement, width: int, height: int, k: float = 1.0) -> np.ndarray:
    """A crop's label map (any square size) back onto the photo scaled by ``k`` (``width`` × ``height``
    pixels): nearest neighbour, ``OUTSIDE`` where the crop does not reach."""
    m = invert(pl.crop_to(labels.shape[0], k))   # photo (scaled) → crop pixels
    return cv2.warpAffine(np.ascontiguousarray(labels, dtype=np.uint8), _cv(m), (width, height),
                          flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=OUTSIDE)
