"""The whole occlusion-robust chain on a photo in one call (issue #32):

    import faceparse
    chain = faceparse.load_chain()            # the models shipped in faceparse/pretrained/ (or bundle dirs)
    out = chain("photo.jpg")
    out.labels       # (H, W) uint8 CelebAMask-HQ class ids: the parser's map M_α
    out.points       # [(68, 2) iBUG points per face, most confident first], the photo's pixels
    out.completed    # (H, W) uint8: the completed map M_γ (Algorithm 1 over the landmark-drawn map)
    out.occlusion    # (H, W) bool: the pixels the de-occluder replaced
    out.deoccluded   # (H, W, 3) uint8: the photo with each face's occluder removed
    out.meshes       # one Mesh per face (vertices cm, triangles, colours, coefficients, 68 points in pixels)
    out.save("out/") # every output as a file, with a contact sheet

Every map is the photo's own size (computed with its long side at most ``resolution``, 512 by default, then
scaled up nearest); the faces are found once (``faceparse.photos.plan_photo``) and each stage
reads the same crops. The 3D stage reads the de-occluded photo and fits each face (``recon3d.fit``) against
the chain's own landmark and parser models. ``out.seconds`` holds each stage's share of the call.
"""
from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from .api import CHAIN_STAGES, as_image, pretrained_dir
from .bundle import WEIGHTS, load_bundle
from .evaluate import pick_device
from .hashing import sha256_file
from .log import console
from .labels import CELEBAMASK_HQ
from .photos import NoFaceError, locate_points, plan_photo
from .plots import overlay
from .predict import each_photo, expand_inputs
from .registry import resolve_bundle
from .stages import bundle_input_size, bundle_stage
from .stages.completion.photo import complete_photo
from .stages.fisn.photo import Chain as DeocclusionChain
from .stages.fisn.photo import deocclude_photo
from .stages.landmarks.photo import draw_points
from .stages.recon3d.fitting import FitInputs, fit_config
from .stages.recon3d.api import Mesh, Reconstructor


@dataclass
class ChainResult:
    image: Image.Image         # the photo (RGB) as read
    faces: list                # detected faces (photo pixels), most confident first; [] with detection off
    labels: np.ndarray
    points: list
    completed: np.ndarray
    occlusion: np.ndarray
    deoccluded: np.ndarray
    meshes: list
    render: np.ndarray         # (H, W, 3) uint8: every face's mesh rendered over the de-occluded photo
    seconds: dict = field(default_factory=dict)

    def overlays(self) -> dict[str, Image.Image]:
        """One picture per output, each the photo's size."""
        photo = np.asarray(self.image, dtype=np.uint8)
        pal = CELEBAMASK_HQ.palette()
        tint = photo.copy()
        tint[self.occlusion] = (0.45 * tint[self.occlusion] + 0.55 * np.array([255, 0, 200])).astype(np.uint8)
        return {"labels": Image.fromarray(overlay(photo, self.labels, pal)),
                "points": Image.fromarray(draw_points(self.image, self.points)),
                "completed": Image.fromarray(overlay(photo, self.completed, pal)),
                "occlusion": Image.fromarray(tint),
                "deoccluded": Image.fromarray(self.deoccluded),
                "mesh": Image.fromarray(self.render)}

    def sheet(self, width: int = 1500) -> Image.Image:
        """The photo and the six outputs, captioned, on two rows ``width`` pixels wide (the eighth tile: each
        stage's seconds)."""
        tiles = {"photo": self.image, **self.overlays()}
        w, h = self.image.size
        cell = max(1, width // 4)
        ch = max(1, round(h * cell / w))
        out = Image.new("RGB", (cell * 4, ch * 2), "white")
        draw = ImageDraw.Draw(out)
        for i, (name, t) in enumerate(tiles.items()):
            x, y = (i % 4) * cell, (i // 4) * ch
            out.paste(t.resize((cell, ch), Image.BILINEAR), (x, y))
            draw.rectangle((x, y, x + 8 * len(name) + 8, y + 16), fill="white")
            draw.text((x + 4, y + 2), name, fill="black")
        lines = ["seconds"] + [f"{k:<11}{v:6.2f}" for k, v in self.seconds.items()]
        draw.multiline_text((3 * cell + 12, ch + 12), "\n".join(lines), fill="black", spacing=6)
        return out

    def save(self, out_dir: str | os.PathLike, stem: str = "photo") -> dict[str, str]:
        """Every output of the photo under ``out_dir`` as ``<stem>_<name>`` files; returns {name: path}."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        files: dict[str, str] = {}

        def put(name: str, write) -> None:
            path = out / f"{stem}_{name}"
            write(path)
            files[name.replace(".", "_")] = str(path)

        pal = CELEBAMASK_HQ.palette()
        put("labels.png", lambda p: _palette_png(self.labels, pal).save(p))
        put("completed.png", lambda p: _palette_png(self.completed, pal).save(p))
        put("occlusion.png", lambda p: Image.fromarray(self.occlusion.astype(np.uint8) * 255).save(p))
        put("deoccluded.png", lambda p: Image.fromarray(self.deoccluded).save(p))
        put("mesh_overlay.png", lambda p: Image.fromarray(self.render).save(p))
        put("sheet.jpg", lambda p: self.sheet().save(p, quality=90))
        put("points.json", lambda p: p.write_text(json.dumps([np.round(q, 2).tolist() for q in self.points])))
        for k, m in enumerate(self.meshes):
            put(f"mesh{k}.obj", lambda p, m=m: p.write_text(m.obj(f"faceparse chain: face {k}")))
            put(f"mesh{k}.json", lambda p, m=m: p.write_bytes(_mesh_json(m, self.image.size)))
        return files


def _palette_png(labels: np.ndarray, palette: np.ndarray) -> Image.Image:
    img = Image.fromarray(labels.astype(np.uint8), mode="P")
    img.putpalette(palette.astype(np.uint8).reshape(-1).tolist())
    return img


def _mesh_json(m: Mesh, size) -> bytes:
    return json.dumps({**m.coefficients, "landmarks": np.round(m.points, 3).tolist(), "image_size": list(size)}).encode()


class FaceChain:
    """The de-occluder (with the completion model it carries, or a given one: the parser and the landmark model
    composed) and the 3D regressor, loaded once; call it on a photo (path, PIL image, uint8 RGB)."""

    def __init__(self, models: dict[str, tuple], fit: dict[str, Any] | None = None, resolution: int = 512):
        self.models, self.resolution = models, int(resolution)
        fisn, fisn_meta = models["fisn"]
        given = models.get("completion")
        self.deoccluder = DeocclusionChain.of(fisn, fisn_meta, *(given or ()))
        comp = self.deoccluder.completion
        self.completion_meta = {**(given[1] if given else fisn_meta["completion"]), "stage": "completion"}
        self.landmarks, self.landmarks_meta = comp.landmarks, self.completion_meta["landmarks"]
        cfg = fit_config({"fit": dict(fit or {})})
        seen = FitInputs(comp.landmarks, self.landmarks_meta, comp.parser, self.completion_meta["parser"], {})
        net, meta = models["recon3d"]
        self.reconstructor = Reconstructor(net, meta, meta["ref"], None if cfg is None else (cfg, seen))

    def __repr__(self) -> str:
        refs = ", ".join(f"{s}={m[1]['ref']!r}" for s, m in self.models.items())
        return f"FaceChain({refs})"

    @torch.inference_mode()
    def __call__(self, image, detect: bool = True, what: str | None = None) -> ChainResult:
        """Every output of the chain for ``image`` (``detect=False``: the image is one framed face). Raises
        NoFaceError (naming ``what``, default the path) when detection finds no face."""
        img, named = as_image(image)
        what = what or named
        secs: dict[str, float] = {}
        with _timed(secs, "detect"):
            plan = plan_photo(img, int(self.completion_meta["input_size"]), min(max(img.size), self.resolution),
                              detect=detect, what=what)
        with _timed(secs, "landmarks"):
            points = locate_points(self.landmarks, img, plan, bundle_input_size(self.landmarks_meta))
        with _timed(secs, "parser+completion"):     # the completion model composes the parser: M_α is its map
            maps, _ = complete_photo(self.deoccluder.completion, self.completion_meta, img, plan=plan)
        with _timed(secs, "fisn"):
            clean = deocclude_photo(self.deoccluder, img, detect, what, plan=plan)
        with _timed(secs, "recon3d"), torch.inference_mode(False):      # the fit takes the renderer's gradients
            rec = self.reconstructor(Image.fromarray(clean.output), plan=plan)
        size = img.size
        return ChainResult(img, plan.faces, _fit(maps.alpha, size), points, _fit(maps.gamma, size),
                           _fit(clean.mask, size).astype(bool), clean.output, rec.meshes, rec.render, secs)

    def versions(self) -> dict[str, dict[str, Any]]:
        """Each model: the reference it was loaded from and its weights' SHA-256 (the parser and landmark
        model: those the completion model composes)."""
        out = {s: {"ref": meta["ref"], "model_uri": meta.get("model_uri"), "bundle_sha256": meta["bundle_sha256"]}
               for s, (_, meta) in self.models.items()}
        out.update((self.completion_meta.get("composes") or {}))
        return out

def _fit(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A map at the photo's (w, h) (the whole-image path answers at the model's square size)."""
    if a.shape[1::-1] == tuple(size):
        return a
    return np.asarray(Image.fromarray(a.astype(np.uint8)).resize(size, Image.NEAREST))


@contextmanager
def _timed(into: dict[str, float], name: str):
    t0 = time.perf_counter()
    yield
    into[name] = round(time.perf_counter() - t0, 4)


def load_chain(models: dict[str, str | os.PathLike] | None = None, fit: dict[str, Any] | None = None,
               resolution: int = 512, device: str | None = None, tracking_uri: str | None = None) -> FaceChain:
    """A :class:`FaceChain` of the shipped bundles; ``models`` overrides them by stage name (``fisn``, ``recon3d``,
    and ``completion`` to run another than the one the FISN bundle carries; a bundle dir or ``models:/name@alias``); ``fit``: ``recon3d.fit`` settings (``{"enabled": False}``: the regressor only);
    ``resolution``: the long side the maps are computed at (64-4096; the photo's when smaller)."""
    unknown = sorted(set(models or {}) - set(CHAIN_STAGES))
    if unknown:
        raise ValueError(f"load_chain(models=...): unknown stage(s) {unknown}; the chain's stages: {list(CHAIN_STAGES)}")
    if not 64 <= int(resolution) <= 4096:
        raise ValueError(f"load_chain(resolution={resolution}): give 64-4096 (the maps' long side)")
    dev = pick_device(device)
    loaded = {}
    for stage in CHAIN_STAGES:
        ref = (models or {}).get(stage) or (None if stage == "completion" else pretrained_dir(stage))
        if ref is None:
            continue
        bdir, info = resolve_bundle(str(ref), tracking_uri=tracking_uri)
        net, meta = load_bundle(bdir)
        if bundle_stage(meta) != stage:
            raise ValueError(f"load_chain: {ref} is a {bundle_stage(meta)} bundle, given as the chain's {stage} model")
        loaded[stage] = (net.to(dev), {**meta, "ref": str(ref), "bundle_sha256": sha256_file(Path(bdir) / WEIGHTS),
                                       "model_uri": info.get("uri") if info.get("version") else None})
    return FaceChain(loaded, fit, resolution)


def chain_images(inputs, out_dir: str | os.PathLike, models: dict[str, str] | None = None,
                 fit: dict[str, Any] | None = None, resolution: int = 512, detect: bool = True,
                 progress: bool = True) -> dict[str, Any]:
    """The chain on every input photo; per photo ``ChainResult.save`` files under ``out_dir`` and an entry in
    ``out_dir/chain.json`` ({"models", "results"}); a photo that cannot be read or holds no face is an entry
    with ``ok: False`` and its error (nothing written for it)."""
    paths = expand_inputs(inputs)
    if not paths:
        raise ValueError(f"no input images found in {inputs}")
    chain = load_chain(models, fit, resolution)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = each_photo(paths, "chain", progress, lambda path, stem, img: _one(chain, out, path, stem, img, detect))
    record = {"models": chain.versions(), "results": results}
    (out / "chain.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def _one(chain: FaceChain, out: Path, path: Path, stem: str, img, detect: bool) -> dict[str, Any]:
    try:
        res = chain(img, detect=detect, what=str(path))
    except NoFaceError as e:
        console.print(f"[bold red]error:[/] {e}")
        return {"input": str(path), "ok": False, "error": str(e), "no_face": True}
    return {"input": str(path), "ok": True, "size": list(img.size), "faces": [f.to_dict() for f in res.faces],
            "seconds": res.seconds, **res.save(out, stem)}
