"""The 3D reconstruction stage's card on the web page (faceparse.ui.cards): what `faceparse reconstruct`
makes of a photo — the render over the photo (``_overlay.png``: every face found, at the photo's size) and
the most confident face's shaded mesh rendered alone (a preview of ``<stem>.obj``), with its pose."""
from __future__ import annotations

import json
from typing import Any

import numpy as np

from .. import for_stage
from .photo import load_fitter, load_recon3d
from ...ui.cards import Answer, Card, EndpointAsk, Loaded, NoModel, Options, image_entry, plural, version_of

# Imports inside functions here: the page in endpoint mode never loads torch (tests/code/test_light_imports.py)


def load(params: dict[str, Any], name: str, ref: str | None, refs) -> Loaded:
    """The bundle with the per-face fit after its regressor (``recon3d.fit``, as `faceparse reconstruct`)."""
    # imported here: the mesh code brings torch, which the page in endpoint mode never loads
    from .api import Reconstructor

    if not ref:
        raise NoModel()
    net, meta, entry = load_recon3d(params, ref)
    return Loaded(Reconstructor(net.eval(), meta, ref, load_fitter(for_stage(params, name))), meta, ref,
                  version_of(entry))


def run(loaded: Loaded, image, opts: Options) -> dict[str, Any]:
    import torch    # (in-process only, as above)

    with torch.inference_mode(False):           # the fit takes the renderer's gradients
        rec = loaded.model(image, detect=opts.detect)
    rend = rec.crops
    rgb = rend.image[0].detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    alpha = rend.mask[0][0].detach().cpu().numpy()[..., None]
    mesh = np.round(255 * (rgb * alpha + (1 - alpha))).astype(np.uint8)    # on white
    a = answer(rec.render, rec.meshes[0].coefficients, [f.to_dict() for f in rec.faces] if opts.detect else None)
    a["images"].append(image_entry("mesh", f"the fitted mesh rendered alone, {mesh.shape[1]} × {mesh.shape[0]} px "
                                           f"({len(rec.meshes[0].vertices)} vertices)", mesh))
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
