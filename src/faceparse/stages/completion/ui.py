"""The completion stage's card on the web page (faceparse.ui.cards): M_α (the parser's map), M_β (drawn from
the landmarks), M_γ (Algorithm 1) and the occlusion mask, each face completed in place (maps of the photo's
shape, long side ``MAP_RESOLUTION``). Without a completion bundle of its own the model is composed from the
parser and landmark models the page loaded before it."""
from __future__ import annotations

import base64
import json
from typing import Any, Mapping

import numpy as np

from .photo import complete_photo, load_completion
from ...serve.imaging import read_label_png
from ...ui.cards import MAKE_RUN, Answer, Card, EndpointAsk, Loaded, NoModel, Options

MAP_RESOLUTION = 256     # the maps' long side
CAPTIONS = {"alpha": "M_α parser", "beta": "M_β from landmarks", "gamma": "M_γ completed",
            "occlusion": "occlusion mask"}


def load(params: dict[str, Any], name: str, ref: str | None, refs: Mapping[str, str]) -> Loaded:
    if ref:
        net, meta = load_completion(params, model=ref)
        label = ref
    else:
        lacking = [s for s in ("parser", "landmarks") if not refs.get(s)]
        if lacking:
            raise NoModel(f"No {name} model here: it is composed from the parser and landmark models, and the page "
                          f"has no {' and no '.join(lacking)} model. Run {MAKE_RUN}, or give the page them "
                          "(`faceparse ui page --model parser=… --model landmarks=…`) or a completion bundle "
                          "(`--model completion=…`).")
        try:
            net, meta = load_completion(params, parser=refs["parser"], landmarks=refs["landmarks"])
        except Exception as e:  # noqa: BLE001 - said as what it is: the two models do not compose
            raise ValueError(f"cannot compose the parser and landmark models: {e}") from None
        label = "composed from the parser and landmark models above"
    parts = meta.get("composes") or {}
    version = ", ".join(f"{k}: {v.get('model_uri') or v.get('ref')}" for k, v in parts.items()) or None
    return Loaded(net.eval(), meta, label, version)


def run(loaded: Loaded, image, opts: Options) -> dict[str, Any]:
    m, _ = complete_photo(loaded.model, loaded.meta, image, MAP_RESOLUTION, opts.detect, what="this photo")
    return answer({"alpha": m.alpha, "beta": m.beta, "gamma": m.gamma, "occlusion": m.occlusion.astype(np.uint8)}, {})


def answer(maps: dict[str, np.ndarray | None], missing: dict[str, str]) -> dict[str, Any]:
    a = Answer()
    for key, caption in CAPTIONS.items():
        a.map(key, caption, maps.get(key), "mask" if key == "occlusion" else "labels",
              missing.get(key, "not available"))
    h, w = next(m.shape for m in maps.values() if m is not None)
    occ = maps.get("occlusion")
    a.extra["occluded_fraction"] = None if occ is None else round(float((occ > 0).mean()), 4)
    shares = "" if occ is None else f" · {100 * a.extra['occluded_fraction']:.1f}% of the map occluded"
    a.line(f"{w} × {h} px{shares}")
    return a.json()


def decode(answers: dict[str, bytes], size) -> dict[str, Any]:
    body = json.loads(answers["json"])
    gamma = read_label_png(base64.b64decode(body["completed_png"]))
    occ = (read_label_png(base64.b64decode(body["occlusion_png"])) > 0).astype(np.uint8)
    why = "not in the endpoint's answer (it serves M_γ and the occlusion mask)"
    return answer({"alpha": None, "beta": None, "gamma": gamma, "occlusion": occ}, {"alpha": why, "beta": why})


CARD = Card(
    title="Map completion", subtitle="M_α · M_β · M_γ · occlusion", run=run, load=load,
    default_ref=lambda params, name: None, wide=True,
    get_model="give the page a completion bundle: `faceparse ui page --model completion=BUNDLE_DIR_OR_MODELS_URI`",
    endpoint=EndpointAsk(("json",), decode, resolution=MAP_RESOLUTION))
