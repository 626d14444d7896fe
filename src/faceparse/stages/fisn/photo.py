"""`faceparse deocclude`: the whole chain on photos — landmarks → parser → Algorithm 1 (the completion model)
→ FISN — and what each step made.

Models: the FISN bundle (``model``: default ``models:/<fisn.registry.model_name>@champion``; a bundle dir or
checkpoint too) and the completion model it carries (the chain it was trained and registered with);
``completion`` (a completion bundle or ``models:/faceparse-completion@...``) runs another one instead.

A photo's faces are found and cropped as the parser's (``deocclude_photo``); a photo without a face is named
and skipped. Per photo ``<stem>`` in ``out_dir``: ``<stem>_deoccluded.png`` — the photo at its own size with
each face's occluded pixels replaced by the generator's output (the mask's edge blended; the photo
elsewhere); ``_mask.png`` — those pixels (0/255, the photo's size); for the most confident face, in its crop's
frame: ``_raw.png`` — the generator's whole output at its size; ``_alpha.png`` / ``_beta.png`` /
``_gamma.png`` — M_α, M_β, M_γ (palette PNGs of CelebAMask-HQ ids); ``_sheet.png`` — all of them side by side. ``deocclude.json``: each model's reference,
registry version and weights hash (FISN, completion, and the parser and landmark versions the completion
composes), and one entry per photo.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ...align import face_crop
from ...api import as_image, shipped_or_champion
from ...hashing import sha256_file
from ...labels import CELEBAMASK_HQ
from ...photos import (
    NoFaceError,
    Plan,
    crop_placements,
    faces_json,
    frame_for,
    paint_order,
    paste_image,
    paste_maps,
    plan_photo,
)
from ...registry import resolve_bundle
from ...tracking import tracking_uri
from .. import bundle_input_size, for_stage
from ..completion.photo import write_label

# Imports inside functions here: this module is on the start-up path of the command line, the page or the
# router, so heavy libraries load on first use (tests/code/test_light_imports.py)


@dataclass
class Answer:
    maps: Any               # faceparse.stages.completion.algorithm.Maps at the generator's size
    raw: np.ndarray         # uint8 (S, S, 3): the generator's output
    output: np.ndarray      # uint8 (H, W, 3): the photo with the occluded region replaced
    mask: np.ndarray        # bool (S, S): the pixels replaced (the occlusion head's, else the maps')


@dataclass
class Chain:
    fisn: Any
    meta: dict[str, Any]
    completion: Any
    settings: Any
    completion_size: int

    @property
    def size(self) -> int:
        return bundle_input_size(self.meta)

    @classmethod
    def of(cls, fisn, meta=None, completion=None, completion_meta=None) -> "Chain":
        """The bundle's own completion model unless ``completion`` (with its meta) is given; ``meta``: the
        FISN bundle's (default: what ``build_model`` attached to the model)."""
        from ..completion.algorithm import Settings

        meta = meta if meta is not None else fisn.chain_info
        if completion is None:
            if getattr(fisn, "completion", None) is None:
                raise ValueError("this FISN bundle carries no completion model (trained with fisn.carry.completion: "
                                 "null): give a completion model (--completion); it cannot be served alone")
            completion, completion_meta = fisn.completion, meta["completion"]
        return cls(fisn, meta, completion, Settings.from_dict(completion_meta["model_config"]),
                   bundle_input_size(completion_meta))

    def run(self, images: list, tensors=None) -> list[Answer]:
        """RGB PIL photos → one Answer each (``tensors``: their generator inputs, when already made)."""
        import torch

        from ...models import preprocess
        from ..completion.maps import run_maps
        from .model import to_uint8

        size = self.size
        with torch.inference_mode():
            x = torch.stack([preprocess(im, self.completion_size) for im in images])
            maps = run_maps(self.completion, self.settings, x, size)
            g_in = tensors if tensors is not None else torch.stack([preprocess(im, size) for im in images])
            src = torch.from_numpy(np.stack([m.alpha for m in maps]).astype(np.int64))
            tgt = torch.from_numpy(np.stack([m.gamma for m in maps]).astype(np.int64))
            head = self.fisn.occlusion_mask(g_in)
            if head is not None:
                head = head & ~torch.from_numpy(seen_features(maps, self.settings)).to(head.device)
            raw = to_uint8(self.fisn(g_in, src, tgt, head).float().cpu())
        masks = [m.occlusion for m in maps] if head is None else list(head.cpu().numpy())
        return [Answer(m, r, paste(im, r, k), k) for im, r, m, k in zip(images, raw, maps, masks)]


def seen_features(maps, settings) -> np.ndarray:
    """(B, S, S) bool: where the parser sees an eye, brow, nose, lip or the mouth (M_α). The occlusion head
    takes dark features of real faces for occluders now and then (it learned on synthetic ones); what the parser
    sees as a face feature is not painted over."""
    return np.isin(np.stack([m.alpha for m in maps]), settings.feature_ids())


@dataclass
class PhotoAnswer:
    output: np.ndarray      # uint8 (H, W, 3): the photo with each face's occluded pixels replaced
    mask: np.ndarray        # bool (H, W): the occluded pixels, in the photo's
    faces: list             # one Answer per face (its crop's frame), most confident first
    plan: Any               # faceparse.photos.Plan


def deocclude_photo(chain: Chain, img, detect: bool = True, what: str = "the image", plan=None) -> PhotoAnswer:
    """The chain on each face of a photo: found and cropped as the parser's (``faceparse.photos``), de-occluded,
    and only its occluded pixels put back into the photo (bilinear, the mask's edge softened); the photo's own
    size. An aligned face or ``detect=False``: the image whole. NoFaceError when detection finds no face.
    ``plan``: the photo's faces when already found (``photos.plan_photo``)."""
    plan = plan or plan_photo(img, chain.size, detect=detect, what=what)
    if plan.whole:
        ans = chain.run([img])[0]
        mask = np.asarray(Image.fromarray(ans.mask.astype(np.uint8)).resize(img.size, Image.NEAREST)) > 0
        return PhotoAnswer(ans.output, mask, [ans], plan)
    photo = np.asarray(img.convert("RGB"), dtype=np.uint8)
    pls = crop_placements(plan, img, frame_for(chain.meta))
    side = max(chain.size, chain.completion_size)
    answers = chain.run([Image.fromarray(face_crop(photo, pl, side)) for pl in pls])
    out = photo
    for i in paint_order(plan):
        out = paste_image(out, answers[i].raw, answers[i].mask, pls[i])
    full = Plan(plan.faces, pls, img.size)
    mask = paste_maps([a.mask.astype(np.uint8) for a in answers], pls, full) > 0
    return PhotoAnswer(out, mask, answers, plan)


def paste(photo, raw: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The photo (its own size) with ``raw`` (bicubic up) where ``mask`` (nearest up) is set."""
    img = np.asarray(photo.convert("RGB") if hasattr(photo, "convert") else photo, dtype=np.uint8)
    h, w = img.shape[:2]
    up = np.asarray(Image.fromarray(raw).resize((w, h), Image.BICUBIC))
    m = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((w, h), Image.NEAREST)) > 127
    return np.where(m[..., None], up, img).astype(np.uint8)


def default_model(own: dict[str, Any]) -> str:
    """The shipped de-occluder when this faceparse has one, else ``models:/<registry name>@champion``."""
    return shipped_or_champion("fisn", own["registry"]["model_name"])


def load_chain(params: dict[str, Any], model: str | None = None, completion: str | None = None):
    """(Chain, versions): the FISN bundle (default: the one shipped in ``faceparse/pretrained/fisn/``, else the
    registry champion) and the completion model it carries or ``completion``; versions names each model
    (reference, registry version, weights hash)."""
    from ...bundle import WEIGHTS, load_bundle

    own = for_stage(params, "fisn")
    ref = str(model or default_model(own))

    def resolve(r):
        return resolve_bundle(r, tracking_uri=tracking_uri(own) if r.startswith(("models:/", "runs:/")) else None)

    def entry(r, bdir, info):
        return {"ref": r, "model_uri": info.get("uri") if info.get("version") else None,
                "version": info.get("version"), "bundle_sha256": sha256_file(Path(bdir) / WEIGHTS)}

    bdir, info = resolve(ref)
    net, meta = load_bundle(bdir)
    if meta.get("stage") != "fisn":
        raise ValueError(f"{ref} is a {meta.get('stage', 'parser')!r} model, not a de-occlusion (fisn) one")
    versions: dict[str, Any] = {"fisn": entry(ref, bdir, info)}
    if completion:
        cdir, cinfo = resolve(str(completion))
        cnet, cmeta = load_bundle(cdir)
        if cmeta.get("stage") != "completion":
            raise ValueError(f"{completion} is a {cmeta.get('stage', 'parser')!r} model, not a completion bundle")
        chain = Chain.of(net, meta, cnet, cmeta)
        versions["completion"] = {**entry(str(completion), cdir, cinfo), "carried": False}
        composes = cmeta.get("composes") or {}
    else:
        chain = Chain.of(net, meta)
        carried = dict((meta.get("carries") or {}).get("completion") or {})
        composes = carried.pop("composes", None) or meta["completion"].get("composes") or {}
        versions["completion"] = {**carried, "carried": True}
    for name in ("parser", "landmarks"):
        if composes.get(name):
            versions[name] = composes[name]
    return chain, versions


def deocclude_images(params: dict[str, Any], inputs, out_dir: str | os.PathLike, model: str | None = None,
                     completion: str | None = None, progress: bool = True, detect: bool = True) -> dict[str, Any]:
    """De-occlude every input photo; {"models": versions, "results": [{"input", "ok", files...} or
    {"input", "ok": False, "error"}]}, also written to ``out_dir/deocclude.json``."""
    from ...predict import each_photo, expand_inputs

    paths = expand_inputs(inputs)
    if not paths:
        raise ValueError(f"no input images found in {inputs}")
    chain, versions = load_chain(params, model, completion)
    palette = CELEBAMASK_HQ.palette()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = each_photo(paths, "deocclude", progress,
                         lambda path, stem, img: _write_one(out, stem, path, img, chain, palette, detect))
    record = {"models": versions, "results": results}
    (out / "deocclude.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def _write_one(out: Path, stem: str, path: Path, img, chain, palette, detect: bool = True) -> dict[str, Any]:
    """The chain on one photo → the de-occluded photo and its mask (the photo's size); the most confident
    face's raw generator output and maps (its crop's frame); a sheet. No face: named, nothing written."""
    from ...log import console
    from .evaluate import contact_sheet

    try:
        res = deocclude_photo(chain, img, detect, what=str(path))
    except NoFaceError as e:
        console.print(f"[bold red]error:[/] {e}")
        return {"input": str(path), "ok": False, "error": str(e), "no_face": True}
    ans = res.faces[0]
    files = {k: out / f"{stem}_{k}.png" for k in ("deoccluded", "raw", "alpha", "beta", "gamma", "mask", "sheet")}
    Image.fromarray(res.output).save(files["deoccluded"])
    Image.fromarray(ans.raw).save(files["raw"])
    for k in ("alpha", "beta", "gamma"):
        write_label(files[k], getattr(ans.maps, k), palette)
    Image.fromarray(res.mask.astype(np.uint8) * 255, "L").save(files["mask"])
    small = (lambda a: np.asarray(Image.fromarray(a).resize((chain.size, chain.size), Image.BICUBIC)))
    contact_sheet([{"input": small(np.asarray(img.convert("RGB"))), "alpha": ans.maps.alpha, "beta": ans.maps.beta,
                    "map": ans.maps.gamma, "mask": ans.mask, "output": ans.raw, "title": path.name}],
                  files["sheet"])
    return {"input": str(path), "ok": True, **{k: str(v) for k, v in files.items()}, "size": list(img.size),
            "generator_size": chain.size, "occluded_fraction": float(res.mask.mean()), "faces": faces_json(res.plan)}


class Deoccluder:
    """A loaded de-occlusion bundle (``Stage.open``) with the completion model it carries; call it on a photo
    (path, PIL image, uint8 RGB array) → :class:`PhotoAnswer` (``output``: the photo de-occluded at its own
    size, ``mask``: the pixels replaced)."""

    def __init__(self, net, meta: dict[str, Any], source: str):
        self.chain, self.source = Chain.of(net, meta), source

    def __repr__(self) -> str:
        return f"Deoccluder({self.source!r}, input_size={self.chain.size})"

    def __call__(self, image, detect: bool = True) -> PhotoAnswer:
        """NoFaceError when detection finds no face; ``detect=False``: the image is one framed face."""
        img, what = as_image(image)
        return deocclude_photo(self.chain, img, detect, what)
