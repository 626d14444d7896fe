"""The page's cards: what each model stage shows for a photo, declared by the stage itself.

A stage gets a card on the page by a ``ui`` module in its package (``faceparse.stages.<name>.ui``, or a
plug-in stage's ``<package>.ui``) that defines ``CARD``, a :class:`Card`: its title, how its model is loaded
in this process (``load``), how a photo is run through it and turned into what the card shows (``run``), and
optionally how a running endpoint is asked for the same (``endpoint``). The page's shared machinery
(:mod:`faceparse.ui.backends`, ``static/app.js``) knows no stage by name: it walks :func:`stage_cards`, the
registered stages in registration order (``faceparse.stages.stage_names``); a stage without a ``ui`` module
is listed with a card that says so.

What a card's ``run`` (or its endpoint ``decode``) answers is a JSON-able dict the page draws generically:

* ``images``: ``[{"key", "caption", "png": base64 PNG, "width", "height"}]`` (:func:`image_entry`);
* ``maps``: ``[{"key", "caption", "kind": "labels" | "mask", "data": base64 uint8 ids or None, "missing"}]``
  (:func:`map_entry`): label maps the page colours with the label table's palette;
* ``lines``: sentences under them;
* a card with ``layer`` ``"labels"`` adds ``labels`` / ``width`` / ``height`` / ``resolution`` / ``faces``
  (:func:`labels_layer`): the overlay beside the photo; ``"points"``: ``points`` / ``faces`` / ``image_size``
  (:func:`points_layer`): the points drawn on the photo.
"""
from __future__ import annotations

import base64
import importlib
import importlib.util
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
from PIL import Image

from ..api import NoPretrainedModel, pretrained_dir
from ..hashing import sha256_file
from ..registry import resolve_bundle
from ..serve.imaging import encode_png
from ..stages import bundle_stage, for_stage, package_of, stage_names
from ..tracking import tracking_uri

# Imports inside functions here: the page in endpoint mode never loads torch (tests/code/test_light_imports.py)

MAKE_RUN = "`make run` (it trains, registers and promotes every stage's champion)"


@dataclass(frozen=True)
class Options:
    """What the page asked for with the photo."""
    resolution: int      # the output resolution (the slider): cards that are ``resizable`` answer at it
    detect: bool = True  # find the faces (False: the photo is an aligned face crop, taken whole)


@dataclass
class Loaded:
    """A card's model in this process: ``model`` (whatever its ``run`` takes: a network, a chain…), its bundle
    ``meta``, the reference shown on the page (``ref``) and its registry version or weights hash."""
    model: Any
    meta: dict[str, Any]
    ref: str
    version: str | None = None


class NoModel(RuntimeError):
    """The card has no model here (nothing given, nothing shipped, no registry champion); the message says
    what to run to get one."""


@dataclass(frozen=True)
class EndpointAsk:
    """How a running endpoint is asked for a card: one ``POST /predictions/<model name>`` per format
    (``X-Format``), the answers decoded together (``decode(answers by format, the photo's (w, h))`` → the
    card's payload); the first answer's headers name the version and canary arm."""
    formats: tuple[str, ...]
    decode: Callable[[dict[str, bytes], tuple[int, int]], dict[str, Any]]
    resolution: int | None = None     # X-Resolution sent (a ``resizable`` card sends the page's instead)


def shipped_else_champion(params: dict[str, Any], stage: str) -> str | None:
    """The stage's model shipped with faceparse (``faceparse/pretrained``), else ``models:/<registry.model_name>
    @champion`` of the stage's params section (None without one)."""
    try:
        return str(pretrained_dir(stage))
    except NoPretrainedModel:
        pass
    try:
        return f"models:/{for_stage(params, stage)['registry']['model_name']}@champion"
    except (KeyError, TypeError, ValueError):
        return None


def load_bundle_card(params: dict[str, Any], stage: str, ref: str | None, refs: Mapping[str, str]) -> Loaded:
    """A card's default ``load``: the bundle ``ref`` names (:func:`load_bundle_ref`); NoModel without one."""
    if not ref:
        raise NoModel()
    return load_bundle_ref(params, stage, ref)


@dataclass(frozen=True)
class Card:
    """One stage's card on the page (its package's ``ui.CARD``)."""
    title: str
    # (Loaded, an RGB PIL photo, Options) → the payload (see the module doc); NoFaceError when there is no face
    run: Callable[[Loaded, Any, Options], dict[str, Any]]
    # (raw params, the stage's name, its reference (None: none given and no default), the references of the
    # stages loaded before it) → Loaded; NoModel when there is nothing to load (its message, or
    # ``missing``'s), any other error: the reference does not load
    load: Callable[[dict[str, Any], str, str | None, Mapping[str, str]], Loaded] = load_bundle_card
    # (raw params, the stage's name) → the model used when none is given (default: the one shipped with
    # faceparse, else its registry champion)
    default_ref: Callable[[dict[str, Any], str], str | None] = shipped_else_champion
    # how else to get a model when there is none, after MAKE_RUN ("run one you have: `faceparse … --model …`")
    get_model: str = ""
    endpoint: EndpointAsk | None = None
    layer: str | None = None     # "labels": the overlay beside the photo; "points": drawn on the photo
    resizable: bool = False      # answers at the page's output resolution (asked again when the slider moves)
    wide: bool = False           # a card the width of the page
    subtitle: str = ""           # a few words beside the title

    def missing(self, name: str, ref: str | None, why: str | None = None) -> str:
        """The message of a card that has no model here: what is missing and what to run."""
        have = f"{ref} is not available: {why}" if ref and why else (ref or "none given, none shipped")
        return (f"No {name} model here ({have}). Run {MAKE_RUN}"
                + (f", or {self.get_model}" if self.get_model else "") + ".")


@dataclass(frozen=True)
class StageCard:
    """A registered stage on the page: its card, or why it has none."""
    name: str
    card: Card | None
    message: str | None = None

    def info(self) -> dict[str, Any]:
        c = self.card
        return {"name": self.name, "card": c is not None, "title": c.title if c else self.name,
                "subtitle": c.subtitle if c else "", "layer": c.layer if c else None,
                "resizable": bool(c and c.resizable), "wide": bool(c and c.wide), "message": self.message}


def card_of(name: str) -> StageCard:
    """The stage's card (its package's ``ui`` module's ``CARD``), or a StageCard saying it has none."""
    module = f"{package_of(name)}.ui"
    try:
        if importlib.util.find_spec(module) is None:
            return StageCard(name, None, f"the {name} stage has no card on this page (its package has no ui "
                                         "module defining CARD: see faceparse.ui.cards)")
        card = getattr(importlib.import_module(module), "CARD", None)
    except Exception as e:  # noqa: BLE001 - a plug-in's broken ui module costs its card, not the page
        return StageCard(name, None, f"the {name} stage's card could not be loaded ({module}: "
                                     f"{type(e).__name__}: {e})")
    if not isinstance(card, Card):
        return StageCard(name, None, f"{module}.CARD is not a faceparse.ui.cards.Card: the {name} stage has no card")
    return StageCard(name, card)


def stage_cards() -> list[StageCard]:
    """Every registered stage, in registration order, with its card or why it has none."""
    return [card_of(n) for n in stage_names()]


# --- what a card answers -----------------------------------------------------------------------------------

def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def labels_b64(labels: np.ndarray) -> str:
    """A label map as base64 of its raw uint8 ids, row-major (the page colours it with the palette)."""
    return b64(np.ascontiguousarray(labels, dtype=np.uint8).tobytes())


def image_entry(key: str, caption: str, image: np.ndarray | bytes) -> dict[str, Any]:
    """An image of a card: an RGB / grey uint8 array (encoded here) or PNG bytes (an endpoint's answer)."""
    if isinstance(image, np.ndarray):
        h, w = image.shape[:2]
        data = encode_png(np.ascontiguousarray(image))
    else:
        data = bytes(image)
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
    return {"key": key, "caption": caption, "png": b64(data), "width": int(w), "height": int(h)}


def mask_png(mask: np.ndarray) -> np.ndarray:
    """A boolean mask as a 0/255 grey image."""
    return (np.asarray(mask) > 0).astype(np.uint8) * 255


def map_entry(key: str, caption: str, labels: np.ndarray | None, kind: str = "labels",
              missing: str = "") -> dict[str, Any]:
    """A label map (``kind`` "labels": class ids, "mask": 0 / 1) of a card, or None with why it is missing."""
    h, w = (None, None) if labels is None else labels.shape[:2]
    return {"key": key, "caption": caption, "kind": kind, "data": None if labels is None else labels_b64(labels),
            "width": w, "height": h, "missing": missing if labels is None else ""}


def labels_layer(labels: np.ndarray, faces: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The overlay beside the photo: a label map of the photo's aspect; ``faces`` the detected faces (photo
    pixels), None when the answer does not say (an endpoint's PNG)."""
    h, w = labels.shape
    return {"resolution": int(max(h, w)), "width": int(w), "height": int(h), "labels": labels_b64(labels),
            "faces": faces}


def points_layer(points: list[np.ndarray], size: tuple[int, int]) -> dict[str, Any]:
    """Points drawn on the photo: the most confident face's (``points``) and every face's (``faces``)."""
    faces = [np.round(np.asarray(p, dtype=np.float64), 2).tolist() for p in points]
    return {"points": faces[0], "faces": faces, "image_size": list(size)}


@dataclass
class Answer:
    """A card's payload built up: ``Answer().image(...).line(...).json()``."""
    images: list[dict[str, Any]] = field(default_factory=list)
    maps: list[dict[str, Any]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def image(self, key: str, caption: str, image) -> "Answer":
        self.images.append(image_entry(key, caption, image))
        return self

    def map(self, key: str, caption: str, labels, kind: str = "labels", missing: str = "") -> "Answer":
        self.maps.append(map_entry(key, caption, labels, kind, missing))
        return self

    def line(self, text: str) -> "Answer":
        self.lines.append(text)
        return self

    def json(self) -> dict[str, Any]:
        return {**self.extra, "images": self.images, "maps": self.maps, "lines": self.lines}


def load_bundle_ref(params: dict[str, Any], stage: str, ref: str) -> Loaded:
    """A card's model from a bundle reference (bundle dir, ``models:/`` / ``runs:/`` URI, checkpoint), refused
    when it is another stage's; its version: the registry's, else :func:`local_version`."""
    from ..bundle import WEIGHTS, load_bundle   # (here: it brings torch, which the page in endpoint mode never needs)

    uri = tracking_uri(for_stage(params, stage)) if str(ref).startswith(("models:/", "runs:/")) else None
    bdir, info = resolve_bundle(ref, tracking_uri=uri)
    net, meta = load_bundle(bdir)
    if bundle_stage(meta) != stage:
        raise ValueError(f"it is a {meta.get('stage', 'parser')!r} model, not a {stage!r} one")
    version = info.get("uri") if info.get("version") else local_version(params, stage, Path(bdir) / WEIGHTS)
    return Loaded(net.eval(), meta, str(ref), version)


def local_version(params: dict[str, Any], stage: str, weights: Path) -> str:
    """A local bundle's (its ``weights`` file's) registry version when `register` recorded the same weights (the stage's
    ``registry.registered_file``), else its weights' hash: never a version it does not have."""
    sha = sha256_file(weights)
    try:
        reg = Path(str(for_stage(params, stage)["registry"]["registered_file"]))
        rec = json.loads(reg.read_text()) if reg.is_file() else {}
    except (KeyError, TypeError, ValueError, OSError):
        rec = {}
    if rec.get("bundle_sha256") == sha and rec.get("uri"):
        return f"{rec['uri']} (same weights)"
    return f"unregistered (weights sha256 {sha[:12]})"


def version_of(entry: dict[str, Any]) -> str:
    """The version line of a model entry as the photo commands record them (``ref``, ``model_uri``,
    ``bundle_sha256``)."""
    if entry.get("model_uri"):
        return str(entry["model_uri"])
    sha = entry.get("bundle_sha256")
    return f"unregistered (weights sha256 {sha[:12]})" if sha else "unregistered"


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"
