"""The landmark stage's dataset: canonical-layout samples → model input, 68 normalised points, visibility.

Seeding is stateless as in ``faceparse.training.dataset``: sample ``i`` of epoch ``e`` draws its
augmentation from seeds derived from ``(seed, e, i)`` only, so any rank / worker / resumed run sees the
same sample.

Coordinates: the stored landmarks (``landmarks/<id>.npy``, (68, 2) float32 (x, y)) are continuous pixel
coordinates of the image's own resolution (the image spans [0, W]; see ``faceparse.ibug68``); items carry
them normalised (x / S, y / S). albumentations puts pixel centres on integers (its keypoint flip is
x → W − 1 − x), so points are shifted by ``ALBU_OFFSET`` into its convention and back around each call.

Framing (``framing``): ``image`` feeds the whole stored image; ``face`` feeds the crop the photo path
takes of a detected face (``faceparse.align.placement`` of five points: eye centres, nose tip, mouth
corners), here read off the true points with Gaussian noise of ``jitter`` × the inter-ocular distance — a
detector's error, drawn per (seed, epoch, index) in training and fixed per index at evaluation — so the
model learns the frame it is given at inference, not the synthetic images' own layout. A share ``loose`` of
training frames is zoomed out and moved (``LOOSE_ZOOM``, ``LOOSE_SHIFT``): the first look the model's
refinement pass starts from may be a whole image (``models.mobilenetv3.MobileNetV3Landmarks.refine``).

No point leaves the image silently: a geometric draw (affine + flip) that puts any point outside [0, S) is
redrawn with the next derived seed, up to ``GEOMETRIC_TRIES`` times, after which the sample keeps its
geometry (photometric augmentation still applies).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import albumentations as A
import cv2
import numpy as np
import torch
from PIL import Image

from ...align import face_crop, five_points, placement
from ...defaults import fill_defaults
from ...ibug68 import ALBU_OFFSET, IBUG_FLIP, NUM_POINTS, inter_ocular
from ...images import open_image, read_image
from ...models import preprocess
from ...training.dataset import EpochSeeded, _range, derive_seed
from .params import LandmarkAugment

GEOMETRIC_TRIES = 10
AUGMENT_KEYS = {"enabled", "rotate", "scale", "shift", "brightness", "contrast", "saturation", "hue", "blur",
                "flip", "p"}
_GEO_TAG, _PHOTO_TAG, _FRAME_TAG = 0x6E0, 0xC01, 0xF4A
FRAMINGS = ("image", "face")
LOOSE_ZOOM, LOOSE_SHIFT = (1.0, 1.6), 0.08   # a loose frame: up to 1.6× as wide, moved ±8 % of its side


def _prob(cfg: Mapping[str, Any], key: str) -> float:
    v = float(cfg[key])
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"augment.{key} must be a probability in [0, 1], got {v}")
    return v


def build_landmark_augment(cfg: Mapping[str, Any] | None):
    """(geometric, photometric) albumentations Composes, or None when disabled.

    Geometric: HorizontalFlip (probability ``flip``), then Affine (probability ``p``: rotate ±``rotate``°,
    scale in ``scale``, shift ±``shift`` of the side) keeping the S × S frame. Photometric: ColorJitter
    (probability ``p``) and GaussianBlur (probability ``blur``)."""
    cfg = dict(cfg or {})
    unknown = set(cfg) - AUGMENT_KEYS
    if unknown:
        raise ValueError(f"unknown landmark augment keys {sorted(unknown)} (known: {sorted(AUGMENT_KEYS)})")
    cfg = fill_defaults(LandmarkAugment, cfg)   # keys left out: their defaults
    if not cfg["enabled"]:
        return None
    p, shift = _prob(cfg, "p"), float(cfg["shift"])
    hue = cfg["hue"]
    hue = (-float(hue), float(hue)) if isinstance(hue, (int, float)) else _range(hue, "hue")
    kp = A.KeypointParams(format="xy", remove_invisible=False)
    geometric = A.Compose([
        A.HorizontalFlip(p=_prob(cfg, "flip")),
        A.Affine(scale=_range(cfg["scale"], "scale"), rotate=_range(cfg["rotate"], "rotate"),
                 translate_percent=(-shift, shift), interpolation=cv2.INTER_LINEAR,
                 border_mode=cv2.BORDER_CONSTANT, fill=0, p=p),
    ], keypoint_params=kp, save_applied_params=True, seed=0)
    photometric = A.Compose([
        A.ColorJitter(brightness=_range(cfg["brightness"], "brightness"), contrast=_range(cfg["contrast"], "contrast"),
                      saturation=_range(cfg["saturation"], "saturation"), hue=hue, p=p),
        A.GaussianBlur(blur_limit=(3, 5), p=_prob(cfg, "blur")),
    ], seed=0)
    return geometric, photometric


def _size_of(row_w, row_h, image_path: str) -> tuple[int, int]:
    if row_w is not None and row_h is not None and not (np.isnan(row_w) or np.isnan(row_h)):
        return int(row_w), int(row_h)

    return open_image(image_path).size


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """To size × size as the parser's dataset resizes (INTER_AREA down, INTER_CUBIC up; per axis)."""
    if image.shape[:2] == (size, size):
        return image
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if image.shape[0] > size else cv2.INTER_CUBIC)


def resize_points(points: np.ndarray, from_wh: tuple[int, int], size: int) -> np.ndarray:
    """Continuous pixel points of a W × H image → those of its size × size resize (per-axis scaling)."""
    return (np.asarray(points, np.float64) * [size / from_wh[0], size / from_wh[1]]).astype(np.float32)


def load_points(path: str) -> np.ndarray:
    pts = np.load(path).astype(np.float32)
    if pts.shape != (NUM_POINTS, 2) or not np.isfinite(pts).all():
        raise ValueError(f"{path}: landmarks must be finite ({NUM_POINTS}, 2), got {pts.shape}")
    return pts


def visibility(points: np.ndarray, mask_path: Path, image_wh: tuple[int, int]) -> np.ndarray:
    """(68,) bool: False where the occlusion mask (0/255 PNG) is set at the pixel under the point (floor of
    its continuous coordinates, mask scaled to the image); all True when there is no mask."""
    if not mask_path.is_file():
        return np.ones(len(points), bool)

    mask = np.asarray(Image.open(mask_path).convert("L")) > 127
    mh, mw = mask.shape
    cols = np.clip(np.floor(points[:, 0] * mw / image_wh[0]).astype(int), 0, mw - 1)
    rows = np.clip(np.floor(points[:, 1] * mh / image_wh[1]).astype(int), 0, mh - 1)
    return ~mask[rows, cols]


def _inside(points: np.ndarray, size: int) -> bool:
    return bool(np.all((points >= 0.0) & (points < size)))


class LandmarkDataset(EpochSeeded):
    """Items: ``image`` (3, S, S) float in [-1, 1], ``points`` (68, 2) float32 (x / S, y / S),
    ``visible`` (68,) bool (False where the sample's occlusion mask covers the point), ``index``."""

    def __init__(self, frame, input_size: int, augment: Mapping[str, Any] | None = None, seed: int = 0,
                 framing: str = "image", jitter: float = 0.0, loose: float = 0.0):
        if framing not in FRAMINGS:
            raise ValueError(f"framing must be one of {FRAMINGS}, got {framing!r}")
        self.framing, self.jitter, self.loose = framing, float(jitter), float(loose)
        self.image_paths = [str(p) for p in frame["image_path"]]
        self.landmark_paths = list(frame["landmarks_path"])
        missing = [str(i) for i, p in zip(frame["id"], self.landmark_paths) if p is None]
        if missing:
            raise ValueError(f"samples without landmarks: {missing[:10]} (the landmark stage needs landmarks/)")
        self.ids = [str(i) for i in frame["id"]]
        self.mask_paths = [Path(p).parent.parent / "occlusion" / f"{i}.png" for p, i in zip(self.image_paths, self.ids)]
        ws = frame["width"] if "width" in frame else [None] * len(self.ids)
        hs = frame["height"] if "height" in frame else [None] * len(self.ids)
        self.sizes = [_size_of(w, h, p) for w, h, p in zip(ws, hs, self.image_paths)]
        self.input_size = int(input_size)
        self.augment = build_landmark_augment(augment) if augment is not None else None
        self.seed = int(seed)
        self.epoch = 0

    def stored(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """The sample as stored (image uint8 RGB, points (68, 2) continuous pixels of it)."""
        return np.asarray(read_image(self.image_paths[i]), dtype=np.uint8), load_points(self.landmark_paths[i])

    def framed(self, i: int, image: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A stored sample in the model's frame: S × S uint8 RGB and its points in those pixels."""
        if self.framing == "image":
            wh = (image.shape[1], image.shape[0])
            return resize_image(image, self.input_size), resize_points(points, wh, self.input_size)
        rng = np.random.default_rng(derive_seed(self.seed, self.epoch, i, _FRAME_TAG))
        five = five_points(points) + rng.normal(0.0, self.jitter * float(inter_ocular(points)), (5, 2))
        pl = placement(five)
        if rng.random() < self.loose:     # a loose frame, as a whole image or a poor detection gives
            pl = pl.zoomed(rng.uniform(*LOOSE_ZOOM), rng.uniform(-LOOSE_SHIFT, LOOSE_SHIFT, 2))
        return face_crop(image, pl, self.input_size), pl.points_to_crop(points, self.input_size).astype(np.float32)

    def raw(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Unaugmented (image S × S uint8 RGB, points (68, 2) continuous pixels of it): for plots."""
        return self.framed(i, *self.stored(i))

    def visible(self, i: int) -> np.ndarray:
        return visibility(load_points(self.landmark_paths[i]), self.mask_paths[i], self.sizes[i])

    def _geometric(self, i: int, image: np.ndarray, points: np.ndarray, visible: np.ndarray):
        """First draw (of GEOMETRIC_TRIES) that keeps every point on the image, else the input unchanged."""
        geometric = self.augment[0]
        for attempt in range(GEOMETRIC_TRIES):
            geometric.set_random_seed(derive_seed(self.seed, self.epoch, i, _GEO_TAG, attempt))
            out = geometric(image=image, keypoints=points - ALBU_OFFSET)
            moved = np.asarray(out["keypoints"], np.float32)[:, :2] + ALBU_OFFSET
            if _inside(moved, self.input_size):
                if any(name == "HorizontalFlip" for name, _ in out["applied_transforms"]):
                    moved, visible = moved[IBUG_FLIP], visible[IBUG_FLIP]
                return out["image"], moved, visible
        return image, points, visible

    def __getitem__(self, i: int) -> dict[str, Any]:
        image, points, visible = self.cached(i, lambda: (*self.stored(i), self.visible(i)))
        image, points = self.framed(i, image, points)
        if self.augment is not None:
            image, points, visible = self._geometric(i, image, points, visible)
            self.augment[1].set_random_seed(derive_seed(self.seed, self.epoch, i, _PHOTO_TAG))
            image = self.augment[1](image=image)["image"]
        return {"image": preprocess(np.ascontiguousarray(image)),
                "points": torch.from_numpy((points / self.input_size).astype(np.float32)),
                "visible": torch.from_numpy(np.array(visible)), "index": i}


def mean_shape(frame, input_size: int, framing: str = "image") -> np.ndarray:
    """(68, 2) mean of the frame's points as the dataset gives them (normalised, unaugmented, framed without
    jitter): the baseline and ``MobileNetV3Landmarks.set_mean_shape``'s start. (With continuous coordinates
    the normalised points do not depend on ``input_size``; it is taken for symmetry with the dataset.)"""
    ds = LandmarkDataset(frame, input_size, framing=framing)
    if len(ds) == 0:
        raise ValueError("mean_shape of an empty split")
    pts = [framed_points(load_points(ds.landmark_paths[i]), ds.sizes[i], ds.input_size, framing)
           for i in range(len(ds))]
    return (np.mean(pts, axis=0) / ds.input_size).astype(np.float32)


def framed_points(points: np.ndarray, wh: tuple[int, int], size: int, framing: str) -> np.ndarray:
    """A stored sample's points in the model's unjittered frame (``size``² pixels), without its image."""
    if framing == "image":
        return resize_points(points, wh, size)
    return placement(five_points(points)).points_to_crop(points, size)
