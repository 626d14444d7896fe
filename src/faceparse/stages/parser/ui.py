"""The parser's card on the web page (faceparse.ui.cards): the label map drawn over the photo, at the page's
output resolution (the slider re-asks it alone), with the faces found."""
from __future__ import annotations

from typing import Any

from ...photos import faces_json, parse_planned, parse_whole, plan_photo
from ...serve.imaging import read_label_png
from ...ui.cards import Answer, Card, EndpointAsk, Loaded, Options, labels_layer, plural
from .. import bundle_input_size


def run(loaded: Loaded, image, opts: Options) -> dict[str, Any]:
    """The photo's faces found, aligned and parsed in place (faceparse.photos), as predict and the API do;
    ``detect`` False: the photo is an aligned face crop, parsed whole."""
    net, size = loaded.model, bundle_input_size(loaded.meta)
    plan = plan_photo(image, size, int(opts.resolution), detect=opts.detect, what="this photo")
    labels = (parse_whole(net, [image], size, plan.size[0])[0] if plan.whole else parse_planned(net, image, plan, size))
    return answer(labels, faces_json(plan) if opts.detect else None)


def answer(labels, faces: list[dict[str, Any]] | None) -> dict[str, Any]:
    h, w = labels.shape
    a = Answer(extra=labels_layer(labels, faces))
    a.line(f"A {w} × {h} px label map, drawn over the photo above (the classes toggled in its legend)"
           + ("" if faces is None else f"; {plural(len(faces), 'face')} found") + ".")
    return a.json()


def decode(answers: dict[str, bytes], size) -> dict[str, Any]:
    return answer(read_label_png(answers["png"]), None)


CARD = Card(
    title="Face parsing", subtitle="FP-LIIF, any output resolution", run=run, layer="labels",
    resizable=True, get_model="give the page one: `faceparse ui page --model parser=BUNDLE_DIR_OR_MODELS_URI`",
    endpoint=EndpointAsk(("png",), decode))
