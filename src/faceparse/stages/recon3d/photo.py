"""`faceparse reconstruct`: 3D faces from photos with the recon3d stage's model, optionally de-occluded first.

Model: ``model`` (default: the one shipped with faceparse, else ``models:/<recon3d.registry.model_name>@champion``;
a bundle dir too). With
``deocclude``, each photo first goes through the de-occlusion chain (landmarks → parser → Algorithm 1 → FISN,
faceparse.stages.fisn.photo) of ``fisn`` (default: the fisn stage's registry champion), as Zhao & Qi feed the
regressor I_out.

Per photo ``<stem>`` in ``out_dir``: ``<stem>.obj`` — the mesh (cm, per-vertex shaded colours);
``_coeffs.json`` — identity, expression, albedo, SH, pose (f, angles in degrees too) and the 68 projected
landmark vertices in the photo's pixels; ``_overlay.png`` — the render over the photo (at its own size);
``_deoccluded.png`` — what the regressor saw, when de-occluded. ``reconstruct.json``: the models' references,
registry versions and weights hashes, and one entry per photo.

Fitting (``recon3d.fit``, on by default; issue #32): each face's coefficients are then refined against the
shipped landmark model's 68 points, the shipped parser's outline and visible skin (faceparse.stages.recon3d.
fitting) — the regressor alone stays at the mean face. Each photo's entry records the fit's seconds per face.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ...api import shipped_or_champion
from ...photos import NoFaceError, crop_batch, faces_json, frame_for, paint_order, plan_photo
from ...tracking import tracking_uri
from .. import bundle_input_size, for_stage

# Imports inside functions here: this module is on the start-up path of the command line, the page or the
# router, so heavy libraries load on first use (tests/code/test_light_imports.py)


def default_model(own: dict[str, Any]) -> str:
    """The shipped 3D model when this faceparse has one, else ``models:/<registry name>@champion``."""
    return shipped_or_champion("recon3d", own["registry"]["model_name"])


def load_recon3d(params: dict[str, Any], model: str | None = None):
    """(network, meta, version entry) of ``model`` (default: the one shipped with faceparse, else the recon3d
    registry champion)."""
    from ...bundle import WEIGHTS, load_bundle
    from ...hashing import sha256_file
    from ...registry import resolve_bundle

    own = for_stage(params, "recon3d")
    ref = str(model or default_model(own))
    bdir, info = resolve_bundle(ref, tracking_uri=tracking_uri(own) if ref.startswith(("models:/", "runs:/")) else None)
    net, meta = load_bundle(bdir)
    if meta.get("stage") != "recon3d":
        raise ValueError(f"{ref} is a {meta.get('stage', 'parser')!r} model, not a 3D reconstruction (recon3d) one")
    return net, meta, {"ref": ref, "model_uri": info.get("uri") if info.get("version") else None,
                       "version": info.get("version"), "bundle_sha256": sha256_file(Path(bdir) / WEIGHTS)}


def reconstruct_images(params: dict[str, Any], inputs, out_dir: str | os.PathLike, model: str | None = None,
                       deocclude: bool = False, fisn: str | None = None, progress: bool = True,
                       detect: bool = True, fit: bool | None = None) -> dict[str, Any]:
    """Reconstruct every input photo; {"models", "results": [{"input", "ok", files...} | {"ok": False, "error"}]},
    also written to ``out_dir/reconstruct.json``. ``fit``: refine each face by fitting (None: ``recon3d.fit.enabled``)."""
    from ...predict import each_photo, expand_inputs

    paths = expand_inputs(inputs)
    if not paths:
        raise ValueError(f"no input images found in {inputs}")
    net, meta, entry = load_recon3d(params, model)
    versions: dict[str, Any] = {"recon3d": entry}
    fitter = load_fitter(params, fit)
    if fitter is not None:
        versions["fit"] = {**fitter[0].to_dict(), "models": fitter[1].versions}
    chain = None
    if deocclude:
        from ..fisn.photo import load_chain

        chain, chain_versions = load_chain(params, fisn)
        versions.update(chain_versions)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = each_photo(paths, "reconstruct", progress,
                         lambda path, stem, img: _write_one(out, stem, path, img, net, meta, chain, entry, detect, fitter))
    record = {"models": versions, "deoccluded": bool(deocclude), "fitted": fitter is not None, "results": results}
    (out / "reconstruct.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def load_fitter(params: dict[str, Any], fit: bool | None = None):
    """(FitConfig, FitInputs) for the photo path, or None when fitting is off (``fit`` False, or None and
    ``recon3d.fit.enabled`` false)."""
    from .fitting import FitInputs, fit_config

    if fit is False:
        return None
    own = for_stage(params, "recon3d")
    cfg = fit_config({**own, "fit": {**(own.get("fit") or {}), "enabled": True}} if fit else own)
    return None if cfg is None else (cfg, FitInputs.load(own))


OVERLAY_MAX = 512       # px: the render over the photo (each face drawn at most this large)


def crop_px(pl) -> int:
    """About how many photo pixels a face's crop spans (its side)."""
    a, b = pl.points_to_photo(np.array([[0.0, 0.0], [1.0, 0.0]]))
    return int(round(float(np.linalg.norm(b - a))))


def overlay_size(meta: dict[str, Any], placements) -> int:
    """The render drawn over the photo at the size its faces take there (up to OVERLAY_MAX): the model's 128²
    render, scaled up, shows every pixel step of the silhouette."""
    return min(OVERLAY_MAX, max(bundle_input_size(meta), max(crop_px(pl) for pl in placements)))


def reconstruct_photo(net, meta: dict[str, Any], img, plan, fitter=None, info: dict | None = None,
                      overlay: bool = False):
    """(coefficients (N, K), Render, placements) of each face of ``plan`` (a photo's faces, or the whole image),
    cropped as the 3D training faces were framed (``photos.frame_for``). ``fitter`` (``load_fitter``): each
    face's coefficients fitted after the regressor; ``info`` gets the fit's seconds per face. One render: at
    the model's input size, or with ``overlay`` at the size the faces take in the photo (``overlay_size``)."""
    import torch

    pls, x = crop_batch(img, plan, bundle_input_size(meta), frame_for(meta))
    with torch.no_grad():
        y = net(x).float()
    if fitter is not None:
        from .fitting import fit_each

        cfg, seen = fitter
        y, secs = fit_each(net, x, y, cfg, seen.observe(x))
        if info is not None:
            info["fit_seconds"] = [round(s, 4) for s in secs]
    with torch.no_grad():
        rend = net.render(y.float(), overlay_size(meta, pls) if overlay else x.shape[-1])
    return y.float().cpu().numpy(), rend, pls


def _write_one(out: Path, stem: str, path: Path, img, net, meta, chain, entry, detect: bool = True,
               fitter=None) -> dict[str, Any]:
    """The most confident face's mesh and coefficients (landmarks in the photo's pixels), every face's render
    over the photo (de-occluded first with ``chain``). No face: named, nothing written."""
    from PIL import Image

    from ...face3d.io import coeffs_json, landmarks_in_photo, mesh_obj, overlay_faces
    from ...log import console

    size = bundle_input_size(meta)
    try:
        plan = plan_photo(img, size, detect=detect, what=str(path))
    except NoFaceError as e:
        console.print(f"[bold red]error:[/] {e}")
        return {"input": str(path), "ok": False, "error": str(e), "no_face": True}
    files = {"obj": out / f"{stem}.obj", "coeffs": out / f"{stem}_coeffs.json", "overlay": out / f"{stem}_overlay.png"}
    photo = img
    if chain is not None:
        from ..fisn.photo import deocclude_photo

        photo = Image.fromarray(deocclude_photo(chain, img, detect, what=str(path)).output)
        files["deoccluded"] = out / f"{stem}_deoccluded.png"
        photo.save(files["deoccluded"])
    info: dict[str, Any] = {}
    y, rend, pls = reconstruct_photo(net, meta, photo, plan, fitter, info, overlay=True)
    version = str(entry.get("model_uri") or entry["ref"])
    files["obj"].write_text(mesh_obj(net.face, rend, 0, f"faceparse recon3d: {version}\nsource: {path}"))
    drawn = rend.image.shape[-1]
    files["coeffs"].write_bytes(coeffs_json(net.face, y[0], landmarks_in_photo(rend, 0, pls[0], drawn), img.size,
                                            version))
    Image.fromarray(overlay_faces(np.asarray(photo.convert("RGB")), rend.image, rend.mask, pls,
                                  paint_order(plan))).save(files["overlay"])
    return {"input": str(path), "ok": True, **{k: str(v) for k, v in files.items()}, "size": list(img.size),
            "faces": faces_json(plan), **info}
