"""The de-occlusion stage's card on the web page (faceparse.ui.cards): the photo at its own size with each
face's occluded pixels replaced by the generator's output, and the occlusion mask (the pixels replaced) —
what `faceparse deocclude` writes as ``_deoccluded.png`` and ``_mask.png``. The model: the FISN bundle
(carrying its completion model) given to the page, else the one shipped with faceparse, else the registry
champion (``load_chain``'s default)."""
from __future__ import annotations

from typing import Any, Mapping

from .photo import deocclude_photo, load_chain
from ...photos import faces_json
from ...serve.imaging import read_label_png
from ...ui.cards import Answer, Card, EndpointAsk, Loaded, NoModel, Options, mask_png, plural, version_of


def load(params: dict[str, Any], name: str, ref: str | None, refs: Mapping[str, str]) -> Loaded:
    if not ref:
        raise NoModel()
    chain, versions = load_chain(params, ref)
    return Loaded(chain, chain.meta, ref, version_of(versions["fisn"]))


def run(loaded: Loaded, image, opts: Options) -> dict[str, Any]:
    res = deocclude_photo(loaded.model, image, opts.detect, what="this photo")
    faces = faces_json(res.plan) if opts.detect else None
    return answer(res.output, res.mask, faces)


def answer(output, mask, faces: list | None) -> dict[str, Any]:
    """``output``: the de-occluded photo (an array, or an endpoint's PNG); ``mask``: the pixels replaced."""
    a = Answer().image("deoccluded", "", output)
    shown = a.images[0]
    shown["caption"] = f"de-occluded, {shown['width']} × {shown['height']} px"
    a.image("mask", "occlusion mask (the pixels replaced)", mask_png(mask))
    a.extra["occluded_fraction"] = round(float((mask > 0).mean()), 4)
    a.line(f"{100 * a.extra['occluded_fraction']:.1f}% of the photo replaced by the generator's output"
           + ("" if faces is None else f" · {plural(len(faces), 'face')} de-occluded") + ".")
    return a.json()


def decode(answers: dict[str, bytes], size) -> dict[str, Any]:
    return answer(answers["png"], read_label_png(answers["mask"]) > 127, None)


CARD = Card(
    title="De-occluded face", subtitle="FISN: the occluder replaced", run=run, load=load,
    get_model="run a FISN bundle you have on photos: `faceparse deocclude PHOTOS --out DIR --model BUNDLE`",
    endpoint=EndpointAsk(("png", "mask"), decode))
