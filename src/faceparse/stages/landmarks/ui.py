"""The landmark stage's card on the web page (faceparse.ui.cards): 68 points per face, drawn on the photo in
its own pixels (framed as the parser's faces are)."""
from __future__ import annotations

import json
from typing import Any

import numpy as np

from .. import get_stage
from ...ui.cards import Answer, Card, EndpointAsk, Loaded, Options, plural, points_layer


def run(loaded: Loaded, image, opts: Options) -> dict[str, Any]:
    pts, _ = get_stage("landmarks").predict_photo(loaded.model, loaded.meta, image, detect=opts.detect,
                                                  what="this photo")
    return answer(pts, image.size)


def answer(points: list, size) -> dict[str, Any]:
    a = Answer(extra=points_layer(points, size))
    a.line(f"{plural(len(points), 'face')}, {len(points[0])} points each (iBUG 68), drawn on the photo above in "
           "the photo's own pixels.")
    return a.json()


def decode(answers: dict[str, bytes], size) -> dict[str, Any]:
    body = json.loads(answers["json"])
    faces = [f["points68"] for f in body.get("faces") or []] or [body["points"]]
    return answer([np.asarray(f, dtype=np.float64) for f in faces], tuple(body.get("image_size") or size))


CARD = Card(
    title="68 landmarks", subtitle="iBUG 68 points", run=run, layer="points",
    get_model="give the page one: `faceparse ui page --model landmarks=BUNDLE_DIR_OR_MODELS_URI`",
    endpoint=EndpointAsk(("json",), decode))
