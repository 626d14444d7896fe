"""The completion stage in the Python API: ``faceparse.load("completion")`` (``Stage.open``) → a
:class:`Completer`; call it on a photo for every face's maps at the photo's size."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from ... import plots
from ...api import as_image
from ...labels import CELEBAMASK_HQ
from .photo import complete_photo


@dataclass
class CompletionResult:
    """`faceparse.load("completion")(photo)`: the maps of every face, warped back at the photo's size."""
    maps: Any               # faceparse.stages.completion.algorithm.Maps: alpha, beta, gamma (class ids), occlusion
    faces: list             # detected faces (photo pixels), most confident first; [] with detection off
    image: Any              # the photo (RGB PIL image)

    @property
    def completed(self) -> np.ndarray:
        return self.maps.gamma

    @property
    def occlusion(self) -> np.ndarray:
        return self.maps.occlusion

    @property
    def overlay(self):
        """The completed map's colours over the photo (the occluded pixels included)."""
        photo = np.asarray(self.image.resize(self.maps.gamma.shape[::-1]), dtype=np.uint8)
        return Image.fromarray(plots.overlay(photo, self.maps.gamma, CELEBAMASK_HQ.palette()))


class Completer:
    """A loaded completion bundle (``Stage.open``); call it on a photo (path, PIL image, uint8 RGB array)."""

    def __init__(self, net, meta: dict[str, Any], source: str):
        self.net, self.meta, self.source = net, meta, source

    def __repr__(self) -> str:
        return f"Completer({self.source!r}, input_size={self.meta.get('input_size')})"

    def __call__(self, image, detect: bool = True, resolution: int | None = None) -> CompletionResult:
        """The maps of ``image``'s faces at its own size (``resolution``: the maps' long side instead);
        ``detect=False``: the image is one framed face. NoFaceError when detection finds no face."""
        img, what = as_image(image)
        with torch.inference_mode():
            maps, plan = complete_photo(self.net, self.meta, img, resolution or max(img.size), detect, what)
        return CompletionResult(maps, plan.faces, img)
