"""The 3D reconstruction stage's card on the web page (faceparse.ui.cards): what `faceparse reconstruct`
makes of a photo — the render over the photo (``_overlay.png``: every face found, at the photo's size) and
the most confident face's shaded mesh rendered alone (a preview of ``<stem>.obj``), with its pose."""
from __future__ import annotations

import json
from typing import Any

import numpy as np

from .photo import load_recon3d, reconstruct_photo
from ...photos import faces_json, paint_order, plan_photo
from ...ui.cards import Answer, Card, EndpointAsk, Loaded, NoModel, Options, image_entry, plural, version_of


def load(params: dict[str, Any], name: str, ref: str | None, refs) -> Loaded:
    if not ref:
        raise NoModel()
    net, meta, entry = load_recon3d(params, ref)
    return Loaded(net.eval(), meta, ref, version_of(entry))


def run(loaded: Loaded, image, opts: Options) -> dict[str, Any]:
    # (imported here: faceparse.face3d brings torch, which the page in endpoint mode never needs)
    from ...face3d.io import overlay_faces
    from ...face3d.net import describe

    net, meta = loaded.model, loaded.meta
    plan = plan_photo(image, int(meta.get("input_size", 128)), detect=opts.detect, what="this photo")
    y, rend, pls = reconstruct_photo(net, meta, image, plan)
    over = overlay_faces(np.asarray(image.convert("RGB")), rend.image, rend.mask, pls, paint_order(plan))
    rgb = rend.image[0].clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    alpha = rend.mask[0][0].cpu().numpy()[..., None]
    mesh = np.round(255 * (rgb * alpha + (1 - alpha))).astype(np.uint8)    # on white
    a = answer(over, describe(net.face, y[0]), faces_json(plan) if opts.detect else None)
    a["images"].append(image_entry("mesh", f"the mesh rendered alone, {mesh.shape[1]} × {mesh.shape[0]} px "
                                           f"({rend.vertices.shape[1]} vertices)", mesh))
    return a


def answer(overlay, coeffs: dict[str, Any], faces: list | None) -> dict[str, Any]:
    """``overlay``: the render over the photo (an array, or an endpoint's PNG); ``coeffs``: the most
    confident face's (``faceparse.face3d.net.describe``)."""
    a = Answer().image("overlay", "", overlay)
    shown = a.images[0]
    shown["caption"] = f"the 3D face rendered over the photo, {shown['width']} × {shown['height']} px"
    deg = (coeffs.get("pose") or {}).get("degrees") or {}
    if deg:
        a.extra["pose_degrees"] = {k: round(float(v), 1) for k, v in deg.items()}
        a.line("pose " + ", ".join(f"{k} {float(v):+.1f}°" for k, v in deg.items())
               + ("" if faces is None else f" · {plural(len(faces), 'face')} reconstructed") + ".")
    return a.json()


def decode(answers: dict[str, bytes], size) -> dict[str, Any]:
    return answer(answers["overlay"], json.loads(answers["json"]), None)


CARD = Card(
    title="3D reconstruction", subtitle="mesh, pose, render", run=run, load=load,
    get_model="run a recon3d bundle you have on photos: `faceparse reconstruct PHOTOS --out DIR --model BUNDLE`",
    endpoint=EndpointAsk(("overlay", "json"), decode))
