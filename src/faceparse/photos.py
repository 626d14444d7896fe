"""Parsing a photo in the wild: detect the faces, parse each one aligned, warp the label maps back.

One path for ``faceparse predict``, the Python API (``faceparse.load``) and the TorchServe handler:

* ``plan_photo`` — detection (``faceparse.detect``) and the crops (``faceparse.align``); no face at all →
  :class:`NoFaceError` (a clear answer, not a guess). A square photo holding one face already framed the
  CelebA-HQ way (``align.is_identity``) is left whole: it is parsed exactly as with ``detect=False``.
* ``parse_planned`` — each face's crop goes through the parser at the bundle's input size and is decoded
  at its own size in the output; the maps are warped back (nearest), pixels outside every face are
  background, and where two faces overlap the larger (closer) one wins, then the more confident.

Both parse functions drop specks (``faceparse.specks``: few-pixel islands of a class) from each face's map.

Output size: an aligned face (or ``detect=False``) gives ``resolution`` × ``resolution`` (default: the
bundle's input size), as before detection existed; a photo's map has the photo's aspect ratio, its long side
``resolution`` (default: the photo's own, at most ``max_side``), so it lies pixel for pixel on the photo.
Nothing here imports torch at module level.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from .specks import labels_from_logits
from .stages import bundle_stage, get_stage

# Imports inside functions here: this module is on the start-up path of the command line, the page or the
# router, so heavy libraries load on first use (tests/code/test_light_imports.py)

CROP_MAX = 1024     # a face crop is read and decoded at most this large (bounded memory for huge faces)
CROP_MIN = 16


class NoFaceError(ValueError):
    """No face was found in the photo: nothing is parsed (send an aligned face crop with detection off)."""

    def __init__(self, what: str = "the image"):
        self.what = what
        super().__init__(f"no face found in {what}: give a photo with a visible face, or turn detection off "
                         "for an aligned face crop (--no-detect / detect=False / header X-Detect: false)")


@dataclass
class Plan:
    """What to run for one photo: ``faces`` (detected, most confident first; [] with detection off),
    ``placements`` (their crops; None when the photo is parsed whole), the output ``size`` (w, h)."""
    faces: list = field(default_factory=list)
    placements: list | None = None
    size: tuple[int, int] = (0, 0)
    scale: float = 1.0      # output pixels per photo pixel (a photo parsed face by face)

    @property
    def whole(self) -> bool:
        return self.placements is None


def plan_photo(image, input_size: int, resolution: int | None = None, detect: bool = True,
               max_side: int = 4096, what: str = "the image") -> Plan:
    """Detect and place the faces of an RGB PIL photo (see the module doc); NoFaceError when there is none."""
    from .align import is_identity, placement
    from .detect import detect_faces

    if not detect:
        r = int(resolution or input_size)
        return Plan([], None, (r, r))
    faces = detect_faces(image)
    if not faces:
        raise NoFaceError(what)
    pls = [placement(f.points) for f in faces]
    w, h = image.size
    if len(faces) == 1 and is_identity(pls[0], w, h):
        r = int(resolution or input_size)
        return Plan(faces, None, (r, r))
    long_side = int(resolution or min(max(w, h), max_side))
    k = long_side / max(w, h)
    return Plan(faces, pls, (max(1, round(w * k)), max(1, round(h * k))), k)


def _crop_input(image, pl, input_size: int):
    """The face's crop as the model's input: warped at about its own pixel size, then resized to the input
    size by ``preprocess`` (bicubic, as at training time) — no aliasing from warping a large face small."""
    from .align import face_crop
    from .models import preprocess

    return preprocess(face_crop(np.asarray(image.convert("RGB"), dtype=np.uint8), pl, input_size, CROP_MAX))


def paint_order(plan: Plan) -> list[int]:
    """Faces in painting order: the smaller (farther), less confident first, so the closer one wins; a photo
    taken whole is its one crop."""
    if plan.whole or not plan.faces:
        return [0]
    return sorted(range(len(plan.faces)), key=lambda i: (plan.faces[i].size, plan.faces[i].score))


def parse_planned(net, image, plan: Plan, input_size: int) -> np.ndarray:
    """A wild photo's label map (``plan.size``), every face parsed in place. ``net(x, out_size)`` → logits."""
    device = next(net.parameters()).device
    pls = crop_placements(plan, image)
    maps = [labels_from_logits(net(_crop_input(image, pl, input_size)[None].to(device), crop_side(plan, pl)))[0]
            for pl in pls]
    return paste_maps(maps, pls, plan)


def parse_whole(net, images: list, input_size: int, resolution: int) -> np.ndarray:
    """Photos parsed whole (aligned faces / detection off), one batch: (B, R, R) uint8 label maps."""
    import torch

    from .models import preprocess

    device = next(net.parameters()).device
    x = torch.stack([preprocess(img, input_size) for img in images]).to(device)
    return labels_from_logits(net(x, resolution))


@dataclass(frozen=True)
class Frame:
    """Where a stage's training images hold a face, relative to the CelebA-HQ crop ``align.placement`` takes:
    the crop ``zoom`` times as wide, its centre moved by ``shift`` × its side (x right, y down). A photo's
    face is cropped that way for the stage, so the model sees a face framed as in training."""
    zoom: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)


# The parser, the landmark model and the stages that run them (completion, fisn) take the CelebA-HQ crop:
# the shipped parser scores 0.567 mean F1 on the four fixture photos with it, 0.429 with the painted
# faces' own framing (zoom 1.47, shift 0.066), though it was trained on those (2026-12-07).
CELEBA = Frame()
# the 3D renders (faceparse.data.synth3d), measured on their true landmarks: the crop is 0.855 of the image,
# its centre at y 0.397 — the regressor reads the face's scale and place as pose
RENDERED = Frame(1.17, (0.0, 0.12))


def frame_for(meta: dict[str, Any]) -> Frame:
    """The bundle's ``photo_frame`` ({zoom, shift}) if it records one, else its stage's training framing."""
    f = meta.get("photo_frame")
    if f:
        return Frame(float(f["zoom"]), tuple(float(v) for v in f["shift"]))
    return get_stage(bundle_stage(meta)).photo_frame or CELEBA


def crop_placements(plan: Plan, image, frame: Frame = CELEBA) -> list:
    """The crops a stage runs on: each detected face's (most confident first) framed by ``frame``, or the
    whole photo as one (an aligned face, detection off) — every stage maps its answer back through them."""
    from .align import Placement, placement

    if plan.whole:
        return [Placement.whole(*image.size)]
    pls = list(plan.placements) if plan.placements is not None else [placement(f.points) for f in plan.faces]
    return pls if frame == CELEBA else [pl.zoomed(frame.zoom, frame.shift) for pl in pls]


def crop_batch(image, plan: Plan, input_size: int, frame: Frame = CELEBA):
    """(placements, (N, 3, S, S) model inputs) of a photo's crops (``crop_placements``)."""
    import torch

    pls = crop_placements(plan, image, frame)
    return pls, torch.stack([_crop_input(image, pl, input_size) for pl in pls])


def crop_side(plan: Plan, pl) -> int:
    """The size a face's crop is decoded at so that it lies pixel for pixel on the output."""
    return int(np.clip(np.ceil(pl.side * plan.scale), CROP_MIN, CROP_MAX))


def paste_maps(maps: list[np.ndarray], pls: list, plan: Plan) -> np.ndarray:
    """Each face's map (its crop's frame, any square size) warped back onto the output (``plan.size``),
    nearest; 0 outside every face; the closer (larger, then more confident) face wins where two overlap."""
    from .align import OUTSIDE, to_photo

    w, h = plan.size
    out = np.zeros((h, w), dtype=np.uint8)
    for i in paint_order(plan):
        back = to_photo(maps[i], pls[i], w, h, plan.scale)
        fg = (back != OUTSIDE) & (back != 0)
        out[fg] = back[fg]
    return out


def paste_image(photo: np.ndarray, face: np.ndarray, mask: np.ndarray, pl, feather: float = 0.01) -> np.ndarray:
    """The photo (H, W, 3 uint8) with ``face`` (a crop, S × S × 3) put back where ``mask`` (S × S, bool or
    [0, 1]) is set: bilinear, the mask's edge softened over ``feather`` × the crop's side."""
    from .align import _cv, invert

    h, w = photo.shape[:2]
    m = invert(pl.crop_to(face.shape[0]))
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    img = cv2.warpAffine(np.ascontiguousarray(face, dtype=np.float32), _cv(m), (w, h), flags=flags,
                         borderMode=cv2.BORDER_REPLICATE)
    soft = np.asarray(mask, dtype=np.float32)
    if feather > 0:
        sigma = max(feather * soft.shape[0], 0.5)
        soft = cv2.GaussianBlur(soft, (0, 0), sigma) * (soft > 0)    # softened inside the mask only
    a = cv2.warpAffine(soft, _cv(m), (w, h), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)[..., None]
    return np.clip(photo.astype(np.float32) * (1 - a) + img.reshape(h, w, -1) * a + 0.5, 0, 255).astype(np.uint8)


def locate_points(net, image, plan: Plan, input_size: int) -> list[np.ndarray]:
    """A landmark model's (68, 2) points for each face of the plan, in the photo's own pixels: one look at
    each detected face's crop (already the trained frame), the model's own refinement for an image taken whole."""
    pls, x = crop_batch(image, plan, input_size)
    pred = (net if plan.whole else net.look)(x.to(next(net.parameters()).device)).float().cpu().numpy()
    return [pl.points_to_photo(p) for pl, p in zip(pls, pred)]


def faces_json(plan: Plan) -> list[dict[str, Any]]:
    return [f.to_dict() for f in plan.faces]
