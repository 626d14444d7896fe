"""Real photos with occluders pasted at known masks: what the occlusion stages are scored with on real faces.

Each labelled photo (``<stem>.jpg`` beside its class-id map ``<stem>.png``, e.g. the four CelebAMask-HQ
fixtures) gets four occluders, one at a time, placed from its own label map so the same faces always get the
same masks: a dark bar over the eyes, a coloured bar over the mouth, a skin-textured palm over a cheek, and
another photo's eye patch over the nose. The photo as it was is the truth for de-occlusion (faceparse.stages.
fisn.pasted), its label map for map completion (faceparse.stages.completion.pasted); scores are taken inside the
occluder where the label map holds a face class (the synthetic benchmark's region), at the label map's size.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from .images import read_label
from .labels import CELEBAMASK_HQ

KINDS = ("eye_bar", "mouth_bar", "palm", "face_patch")
EYES, NOSE, MOUTH, SKIN = (4, 5), (2,), (10, 11, 12), (1,)
# the face classes (skin and features: no hair, ears, neck, cloth, background) — completion's Settings().face_ids()
FACE_IDS = tuple(CELEBAMASK_HQ.index(n) for n in ("skin", "nose", "l_eye", "r_eye", "l_brow", "r_brow", "u_lip",
                                                  "l_lip", "mouth"))


@dataclass
class Pasted:
    """One photo with one occluder, at the label map's size: ``photo`` (occluded), ``clean`` (as it was),
    ``occluder`` (bool: the pasted pixels), ``region`` (bool: the occluder over a face class)."""

    name: str
    kind: str
    photo: np.ndarray
    clean: np.ndarray
    occluder: np.ndarray
    region: np.ndarray
    labels: np.ndarray      # the photo's class ids as it was (its label map)


@dataclass
class Face:
    image: np.ndarray    # (S, S, 3) uint8 at the label map's size
    labels: np.ndarray   # (S, S) class ids
    eyes: np.ndarray     # (2, 2) the two eye centroids (x, y)
    mouth: np.ndarray    # (2,)
    nose: np.ndarray     # (2,)

    @property
    def iod(self) -> float:
        return float(np.linalg.norm(self.eyes[1] - self.eyes[0]))

    @property
    def angle(self) -> float:
        d = self.eyes[1] - self.eyes[0]
        return float(np.degrees(np.arctan2(d[1], d[0])))


def _centroid(labels: np.ndarray, ids, what: str) -> np.ndarray:
    ys, xs = np.nonzero(np.isin(labels, ids))
    if not len(xs):
        raise ValueError(f"{what}: the label map has none of classes {list(ids)}: cannot place the occluders")
    return np.array([xs.mean(), ys.mean()])


def read_face(photo: Path, label: Path) -> Face:
    labels = read_label(label)
    h, w = labels.shape
    image = np.asarray(Image.open(photo).convert("RGB").resize((w, h), Image.LANCZOS))
    eyes = np.stack([_centroid(labels, (i,), str(label)) for i in EYES])
    eyes = eyes[np.argsort(eyes[:, 0])]
    return Face(image, labels, eyes, _centroid(labels, MOUTH, str(label)), _centroid(labels, NOSE, str(label)))


def _bar(shape, centre, length: float, height: float, angle: float) -> np.ndarray:
    box = cv2.boxPoints(((float(centre[0]), float(centre[1])), (length, height), angle)).astype(np.int32)
    m = np.zeros(shape, np.uint8)
    cv2.fillPoly(m, [box], 1)
    return m > 0


def _palm(shape, centre, iod: float, angle: float) -> np.ndarray:
    """An ellipse (the palm) and four rounded fingers pointing up the face."""
    m = np.zeros(shape, np.uint8)
    c = (int(centre[0]), int(centre[1]))
    cv2.ellipse(m, c, (int(0.42 * iod), int(0.5 * iod)), angle, 0, 360, 1, -1)
    for k, dx in enumerate((-0.3, -0.1, 0.1, 0.3)):
        base = (int(centre[0] + dx * iod), c[1])
        tip = (base[0], int(centre[1] - (0.95 + 0.12 * (k in (1, 2))) * iod))
        cv2.line(m, base, tip, 1, max(2, int(0.17 * iod)))
    return m > 0


def _skin_texture(donor: Face, shape) -> np.ndarray:
    """The donor's forehead skin (a square half an eye distance wide above the eyes) stretched over the frame,
    shaded darker toward the bottom as a palm held up to a face is."""
    cx, cy = donor.eyes.mean(0) - np.array([0.0, 0.55 * donor.iod])
    r = max(4, int(0.25 * donor.iod))
    patch = donor.image[max(0, int(cy) - r):int(cy) + r, max(0, int(cx) - r):int(cx) + r]
    tex = cv2.GaussianBlur(cv2.resize(patch, shape[::-1], interpolation=cv2.INTER_CUBIC), (0, 0), 3.0)
    shade = np.linspace(1.05, 0.8, shape[0])[:, None, None]
    return np.clip(tex * shade, 0, 255).astype(np.uint8)


def _shifted(donor: Face, src: np.ndarray, dst: np.ndarray, scale: float, shape) -> np.ndarray:
    """The donor photo moved (and scaled) so that its point ``src`` lands on ``dst``."""
    a = np.array([[scale, 0, dst[0] - scale * src[0]], [0, scale, dst[1] - scale * src[1]]], np.float32)
    return cv2.warpAffine(donor.image, a, shape[::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def occlude(face: Face, donor: Face, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(occluded photo, occluder mask) for one kind; ``donor`` (another photo) lends skin or an eye."""
    shape, iod = face.labels.shape, face.iod
    if kind == "eye_bar":
        mask = _bar(shape, face.eyes.mean(0), 2.3 * iod, 0.38 * iod, face.angle)
        fill = np.full_like(face.image, (24, 24, 28))
    elif kind == "mouth_bar":
        mask = _bar(shape, face.mouth, 1.7 * iod, 0.3 * iod, face.angle + 8)
        fill = np.full_like(face.image, (40, 80, 170))
    elif kind == "palm":
        centre = face.mouth + np.array([0.55 * iod, -0.15 * iod])
        mask = _palm(shape, centre + np.array([0, 0.35 * iod]), iod, face.angle)
        fill = _skin_texture(donor, shape)
    elif kind == "face_patch":
        mask = _bar(shape, face.nose, 0.9 * iod, 0.55 * iod, face.angle)
        fill = _shifted(donor, donor.eyes[0], face.nose, iod / donor.iod, shape)
    else:
        raise ValueError(f"occluder kind must be one of {KINDS}, got {kind!r}")
    return np.where(mask[..., None], fill, face.image).astype(np.uint8), mask


def pasted_cases(pairs: list[tuple[Path, Path]]) -> list[Pasted]:
    """Every photo × every kind; the donor of photo k is photo k + 1 (itself when alone)."""
    faces = [read_face(p, lab) for p, lab in pairs]
    face_ids = list(FACE_IDS)
    cases = []
    for k, ((photo, _), face) in enumerate(zip(pairs, faces)):
        donor = faces[(k + 1) % len(faces)]
        for kind in KINDS:
            occluded, mask = occlude(face, donor, kind)
            region = mask & np.isin(face.labels, face_ids)
            cases.append(Pasted(photo.name, kind, occluded, face.image, mask, region, face.labels))
    return cases


def mask_iou(pred: np.ndarray, truth: np.ndarray) -> float:
    union = int((pred | truth).sum())
    return float((pred & truth).sum()) / union if union else 1.0
