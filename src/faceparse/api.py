"""The Python API: two lines from a photo to its face parsing, its faces' 68 landmarks, or any stage's answer.

    import faceparse
    parser = faceparse.load()                                  # the model shipped in faceparse/pretrained/
    parser = faceparse.load("models:/faceparse-fpliif@champion")   # or the registry, a bundle dir, a .pt
    result = parser("group.jpg", resolution=512)
    result.labels      # (H, W) uint8 class ids, the photo's aspect ratio
    result.masks       # {class name: (H, W) bool}
    result.overlay     # PIL image: the class colours over the photo
    result.faces       # detected faces: box, score, five points (photo pixels)
    result.classes     # class names, index = class id

    landmarks = faceparse.load("landmarks")                    # the landmark model shipped beside it
    found = landmarks("group.jpg")
    found.points       # [(68, 2) iBUG points per face, most confident first], the photo's pixels
    found.overlay      # PIL image: the points over the photo

    faceparse.load("completion")("photo.jpg").completed        # M_γ, the face under its occluder (H, W)
    faceparse.load("fisn")("photo.jpg").output                 # the photo de-occluded (H, W, 3)
    faceparse.load("recon3d")("photo.jpg").meshes[0].obj()     # a fitted 3D mesh per face
    faceparse.load_chain()("photo.jpg")                        # all of it in one call (faceparse.chain)

Faces are detected, aligned, parsed and warped back onto the photo (``faceparse.photos``); a photo without a
face raises :class:`faceparse.NoFaceError`; ``detect=False`` parses an already aligned face crop whole.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .labels import get_table
from .plots import overlay
from .stages import bundle_input_size, bundle_stage, get_stage, stage_names
from .stages.landmarks.photo import draw_points

# Imports inside functions here: `import faceparse` stays light; torch loads with the first model
# (tests/code/test_light_imports.py)

PRETRAINED = Path(__file__).resolve().parent / "pretrained"
# the stages whose bundles the whole chain (faceparse.chain.load_chain) loads — here, where the page can read
# it without torch; completion: the one the de-occluder carries unless given
CHAIN_STAGES = ("fisn", "recon3d", "completion")


class NoPretrainedModel(FileNotFoundError):
    """``faceparse.load()`` found no bundle in the package's ``pretrained/`` folder."""


@dataclass
class ParseResult:
    labels: np.ndarray
    classes: list[str]
    faces: list = field(default_factory=list)
    image: Any = None            # the photo (RGB PIL image) as it was read
    palette: np.ndarray | None = field(default=None, repr=False)
    aligned: bool = False        # True: parsed whole (an aligned face, or detect=False)

    @property
    def masks(self) -> dict[str, np.ndarray]:
        """One boolean (H, W) mask per class of the label table."""
        return {name: self.labels == c for c, name in enumerate(self.classes)}

    @property
    def overlay(self):
        """The class colours blended over the photo resized to the label map (background left as is)."""
        from PIL import Image

        h, w = self.labels.shape
        base = np.asarray(self.image.convert("RGB").resize((w, h), Image.BICUBIC), dtype=np.uint8)
        return Image.fromarray(overlay(base, self.labels, self.palette))

    def present(self) -> list[str]:
        """Names of the classes found in the map."""
        return [self.classes[c] for c in np.unique(self.labels).tolist() if c < len(self.classes)]


class Parser:
    """A loaded parser bundle; call it on a photo (path, PIL image or uint8 RGB array)."""

    def __init__(self, net, meta: dict[str, Any], source: str):
        if bundle_stage(meta) != "parser":
            raise ValueError(f"{source} is a {meta['stage']} bundle, not a face parser")
        self.net, self.meta, self.source = net, meta, source
        self.table = get_table(meta["label_table"])
        self.input_size = bundle_input_size(meta)

    @property
    def classes(self) -> list[str]:
        return list(self.table.classes)

    def __repr__(self) -> str:
        return f"Parser({self.source!r}, input_size={self.input_size}, classes={len(self.classes)})"

    def __call__(self, image, resolution: int | None = None, detect: bool = True) -> ParseResult:
        """Parse ``image``; ``resolution``: the label map's long side (default: the photo's own; an aligned
        face: the model's input size). Raises NoFaceError when detection finds no face."""
        import torch

        from .models import check_out_size
        from .photos import parse_planned, parse_whole, plan_photo

        img, what = as_image(image)
        if resolution is not None:
            check_out_size(int(resolution))
        plan = plan_photo(img, self.input_size, resolution, detect=detect, what=what)
        with torch.inference_mode():
            if plan.whole:
                labels = parse_whole(self.net, [img], self.input_size, plan.size[0])[0]
            else:
                labels = parse_planned(self.net, img, plan, self.input_size)
        return ParseResult(labels, self.classes, plan.faces, img, self.table.palette(), plan.whole)


@dataclass
class LandmarkResult:
    points: list[np.ndarray]     # (68, 2) per face, most confident first, the photo's pixels
    faces: list = field(default_factory=list)
    image: Any = None

    @property
    def overlay(self):
        """The points drawn over the photo."""
        from PIL import Image

        return Image.fromarray(draw_points(self.image, self.points))


class Landmarker:
    """A loaded landmark bundle; call it on a photo (path, PIL image or uint8 RGB array)."""

    def __init__(self, net, meta: dict[str, Any], source: str):
        self.net, self.meta, self.source = net, meta, source

    def __repr__(self) -> str:
        return f"Landmarker({self.source!r}, input_size={self.meta.get('input_size')})"

    def __call__(self, image, detect: bool = True) -> LandmarkResult:
        """68 points per face found in ``image`` (``detect=False``: the image is one framed face). Raises
        NoFaceError when detection finds no face."""
        import torch

        img, what = as_image(image)
        with torch.inference_mode():
            points, plan = get_stage("landmarks").predict_photo(self.net, self.meta, img, detect=detect, what=what)
        return LandmarkResult(points, plan.faces, img)


def as_image(image):
    """(RGB PIL image, how to name it in messages) of a path, a PIL image or a uint8 RGB array."""
    from PIL import Image

    if isinstance(image, (str, os.PathLike)):
        from .images import read_image

        return read_image(Path(image)), str(image)
    if isinstance(image, Image.Image):
        return image.convert("RGB"), "the image"
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"image must be a path, a PIL image or uint8 RGB (H, W, 3), got {arr.dtype} {arr.shape}")
    return Image.fromarray(arr), "the image"


def pretrained_dir(stage: str = "parser") -> Path:
    """A stage's bundle folder shipped in the package (the parser: ``faceparse/pretrained/``, another stage:
    ``faceparse/pretrained/<stage>/``); NoPretrainedModel when absent."""
    from .bundle import META

    folder = PRETRAINED if stage == "parser" else PRETRAINED / stage
    if (folder / META).is_file():
        return folder
    shipped = sorted(s for s in stage_names() if (PRETRAINED if s == "parser" else PRETRAINED / s).joinpath(META).is_file())
    raise NoPretrainedModel(
        f"no {stage} model ships with this faceparse (no {META} in {folder}; shipped: {', '.join(shipped) or 'none'}). "
        "Pass one: faceparse.load('models:/faceparse-fpliif@champion') (the MLflow registry that `make run` "
        "fills), a bundle directory (weights.pt + bundle.json) or a training checkpoint .pt — or copy a "
        f"bundle's two files into {folder}.")


def shipped_or_champion(stage: str, registry_name: str) -> str:
    """The bundle shipped for ``stage`` when this faceparse has one, else ``models:/<registry_name>@champion``
    (the default model of the commands that run a stage on photos)."""
    folder = PRETRAINED if stage == "parser" else PRETRAINED / stage
    return str(folder) if (folder / "bundle.json").is_file() else f"models:/{registry_name}@champion"


def shipped_ref(model: str | os.PathLike | None, stage: str | None = None) -> str | os.PathLike:
    """``model`` as given, or the shipped bundle it names: None (``stage``'s, default the parser's), or a bare
    stage name such as ``"landmarks"`` that is no path here."""
    if model is None:
        return pretrained_dir(stage or "parser")
    if str(model) in stage_names() and not Path(model).exists():
        return pretrained_dir(str(model))
    return model


def load(model: str | os.PathLike | None = None, device: str | None = None,
         tracking_uri: str | None = None):
    """The loaded model of a bundle, ready to call on a photo — a :class:`Parser`, a :class:`Landmarker`, or
    what the bundle's stage answers with (``Stage.open``: the completion's ``Completer``, the de-occluder's
    ``Deoccluder``, the 3D stage's ``Reconstructor``). ``model``: None → the parser shipped in
    ``faceparse/pretrained/``; a stage name (``"landmarks"``, ``"recon3d"``, …) → that stage's shipped model;
    ``models:/name@alias`` / ``models:/name/<version>`` (tracking URI: given, else $MLFLOW_TRACKING_URI /
    params.yaml), a bundle directory or a training checkpoint ``.pt``."""
    from .bundle import load_bundle
    from .evaluate import pick_device
    from .registry import resolve_bundle

    ref = shipped_ref(model)
    bdir, info = resolve_bundle(ref, tracking_uri=tracking_uri)
    net, meta = load_bundle(bdir)
    stage = get_stage(bundle_stage(meta))
    try:
        return stage.open(net.to(pick_device(device)), meta, str(info.get("uri") or ref))
    except NotImplementedError:
        raise ValueError(f"{ref} is a {stage.name} bundle: the Python API has no loader for that stage; use "
                         f"`faceparse {stage.info.verb or 'predict'}` for it") from None
