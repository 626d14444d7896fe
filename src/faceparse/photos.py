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

import numpy as np

from .specks import labels_from_logits

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
    from PIL import Image

    from .align import to_crop
    from .models import preprocess

    side = int(np.clip(round(pl.side), input_size, CROP_MAX))
    crop = to_crop(np.asarray(image.convert("RGB"), dtype=np.uint8), pl, side)
    return preprocess(Image.fromarray(crop), input_size)


def _order(plan: Plan) -> list[int]:
    """Faces in painting order: the smaller (farther), less confident first, so the closer one wins."""
    return sorted(range(len(plan.faces)), key=lambda i: (plan.faces[i].size, plan.faces[i].score))


def parse_planned(net, image, plan: Plan, input_size: int) -> np.ndarray:
    """A wild photo's label map (``plan.size``), every face parsed in place. ``net(x, out_size)`` → logits."""
    from .align import OUTSIDE, to_photo

    device = next(net.parameters()).device
    w, h = plan.size
    out = np.zeros((h, w), dtype=np.uint8)
    for i in _order(plan):
        pl = plan.placements[i]
        x = _crop_input(image, pl, input_size)[None].to(device)
        res = int(np.clip(np.ceil(pl.side * plan.scale), CROP_MIN, CROP_MAX))
        lab = labels_from_logits(net(x, res))[0]
        back = to_photo(lab, pl, w, h, plan.scale)
        fg = (back != OUTSIDE) & (back != 0)      # a face's background never covers another face
        out[fg] = back[fg]
    return out


def parse_whole(net, images: list, input_size: int, resolution: int) -> np.ndarray:
    """Photos parsed whole (aligned faces / detection off), one batch: (B, R, R) uint8 label maps."""
    import torch

    from .models import preprocess

    device = next(net.parameters()).device
    x = torch.stack([preprocess(img, input_size) for img in images]).to(device)
    return labels_from_logits(net(x, resolution))


def faces_json(plan: Plan) -> list[dict[str, Any]]:
    return [f.to_dict() for f in plan.faces]
