"""`faceparse complete`: map completion on photos or on a whole canonical dataset.

The model is a completion bundle (``model``: ``models:/faceparse-completion@champion``, a bundle dir) or,
by default, composed in memory from the parser and landmark models that ship with faceparse (where one does
not ship: that stage's registry champion; ``parser`` / ``landmarks`` override either). A photo's faces are found and completed in place (``complete_photo``: the
maps have the photo's shape); a photo without a face is named and skipped. Per photo ``<stem>`` in ``out_dir``: ``<stem>_alpha.png`` (the parser's
map), ``_beta.png`` (drawn from the landmarks), ``_gamma.png`` (Algorithm 1), palette PNGs of CelebAMask-HQ
ids; ``_occlusion.png`` (0/255); ``_points.json``; ``_sheet.png`` (all of them side by side).
On a dataset: ``<out>/completed/<id>.png`` (M_γ at the label size) and ``<out>/occlusion/<id>.png`` for
every sample, plus ``<out>/manifest.json`` naming the models used — what the de-occlusion generator trains on.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ... import plots
from ...api import shipped_or_champion
from ...images import read_image
from ...labels import CELEBAMASK_HQ
from ...photos import NoFaceError, crop_batch, crop_side, faces_json, frame_for, paste_maps, plan_photo
from ...registry import resolve_bundle
from ...runtime import tick
from ...staging import staging_dir
from ...tracking import tracking_uri
from .. import for_stage, get_stage

# Imports inside functions here: this module is on the start-up path of the command line, the page or the
# router, so heavy libraries load on first use (tests/code/test_light_imports.py)


def load_completion(params: dict[str, Any], model: str | None = None, parser: str | None = None,
                    landmarks: str | None = None):
    """(CompletionModel, meta): a completion bundle, or one composed from the two models' references
    (default each model shipped with faceparse, else that stage's ``models:/<name>@champion``)."""
    from ...bundle import load_bundle

    if model:
        bdir, _ = resolve_bundle(model, tracking_uri=tracking_uri(params) if str(model).startswith("models:/") else None)
        net, meta = load_bundle(bdir)
        if meta.get("stage") != "completion":
            raise ValueError(f"{model} is a {meta.get('stage', 'parser')!r} model, not a completion bundle "
                             "(give --parser / --landmarks to compose one)")
        return net, meta
    refs = {name: ref or shipped_or_champion(name, for_stage(params, name)["registry"]["model_name"])
            for name, ref in (("parser", parser), ("landmarks", landmarks))}
    return get_stage("completion").assemble(params, refs)


def write_label(path: Path, labels: np.ndarray, palette: np.ndarray) -> None:
    """A palette PNG (mode P) of class ids."""
    im = Image.fromarray(labels.astype(np.uint8), "P")
    im.putpalette(palette.astype(np.uint8).ravel().tolist())
    im.save(path)


def complete_images(params: dict[str, Any], inputs, out_dir: str | os.PathLike, model: str | None = None,
                    parser: str | None = None, landmarks: str | None = None, resolution: int | None = None,
                    progress: bool = True, detect: bool = True) -> list[dict[str, Any]]:
    """Complete every input photo (its faces found, ``complete_photo``); one result per input ({"input",
    "ok", files..., "faces"} or {"ok": False, "error"[, "no_face": True]})."""
    from ...log import console
    from ...predict import each_photo, expand_inputs

    paths = expand_inputs(inputs)
    if not paths:
        raise ValueError(f"no input images found in {inputs}")
    net, meta = load_completion(params, model, parser, landmarks)
    palette = CELEBAMASK_HQ.palette()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    def one(path, stem, img):
        try:
            maps, plan = complete_photo(net, meta, img, resolution, detect, what=str(path))
        except NoFaceError as e:
            console.print(f"[bold red]error:[/] {e}")
            return {"input": str(path), "ok": False, "error": str(e), "no_face": True}
        return {**_write_one(out, stem, path, img, maps, palette, plots), "faces": faces_json(plan)}

    results = each_photo(paths, "complete", progress, one)
    for r in results:
        r["composes"] = meta.get("composes")
    return results


def complete_photo(net, meta: dict[str, Any], img, resolution: int | None = None, detect: bool = True,
                   what: str = "the image", plan=None):
    """(Maps, plan) of one photo: each face found, cropped as the completion's training faces are framed
    (``photos.frame_for``), completed at its own size and its maps warped back — maps of the photo's shape,
    its long side ``resolution`` (default the photo's); an aligned face or ``detect=False``: the image whole,
    at ``resolution``² (default the bundle's input size). NoFaceError when detection finds no face. ``plan``:
    the photo's faces when already found (``photos.plan_photo``)."""
    from ...models import preprocess
    from .algorithm import Maps, Settings
    from .maps import run_maps

    settings, size = Settings.from_dict(meta["model_config"]), int(meta["input_size"])
    plan = plan or plan_photo(img, size, resolution, detect=detect, what=what)
    if plan.whole:
        return run_maps(net, settings, preprocess(img, size).unsqueeze(0), plan.size[0])[0], plan
    pls, x = crop_batch(img, plan, size, frame_for(meta))
    faces = [run_maps(net, settings, x[i:i + 1], crop_side(plan, pl))[0] for i, pl in enumerate(pls)]
    back = {k: paste_maps([getattr(m, k).astype(np.uint8) for m in faces], pls, plan)
            for k in ("alpha", "beta", "gamma", "occlusion")}
    return Maps(back["alpha"], back["beta"], back["gamma"], back["occlusion"] > 0), plan


def _write_one(out: Path, stem: str, path: Path, img, maps, palette, plots) -> dict[str, Any]:
    files = {k: out / f"{stem}_{k}.png" for k in ("alpha", "beta", "gamma", "occlusion", "sheet")}
    for k in ("alpha", "beta", "gamma"):
        write_label(files[k], getattr(maps, k), palette)

    Image.fromarray(maps.occlusion.astype(np.uint8) * 255, "L").save(files["occlusion"])
    plots.completion_sheet(np.asarray(img), maps, palette, files["sheet"], title=path.name)
    return {"input": str(path), "ok": True, **{k: str(v) for k, v in files.items()},
            "occluded_fraction": float(maps.occlusion.mean())}


def _batches(df, batch_size: int):
    """Consecutive manifest rows, at most ``batch_size`` together and all of one label size (one output size)."""
    rows: list = []
    for _, row in df.iterrows():
        if rows and (len(rows) == batch_size or row["label_height"] != rows[0]["label_height"]):
            yield rows
            rows = []
        rows.append(row)
    if rows:
        yield rows


def complete_dataset(params: dict[str, Any], dataset_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None,
                     model: str | None = None, parser: str | None = None, landmarks: str | None = None,
                     progress: bool = True, batch_size: int = 16) -> dict[str, Any]:
    """M_γ and the occlusion mask for every sample of a canonical dataset, at its label size, in ``out_dir``
    (default params ``completion.dataset_out``). Written beside, then renamed into place (all or nothing).
    Images go through the models ``batch_size`` at a time (batched convolutions: ~1.5× faster on a CPU)."""
    import pandas as pd
    import torch

    from ...log import progress_bar
    from ...models import preprocess
    from .algorithm import Settings
    from .maps import run_maps

    data = Path(dataset_dir)
    df = pd.read_parquet(data / "manifest.parquet")
    dst = Path(out_dir or for_stage(params, "completion").get("dataset_out") or data.parent / "completed")
    if dst.exists() and any(dst.iterdir()) and not (dst / "manifest.json").is_file():
        raise ValueError(f"{dst} is not empty and holds no completed maps (no manifest.json): refusing to replace it")
    net, meta = load_completion(params, model, parser, landmarks)
    settings, size = Settings.from_dict(meta["model_config"]), int(meta["input_size"])
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = staging_dir(dst)
    try:
        for sub in ("completed", "occlusion"):
            (tmp / sub).mkdir()
        with progress_bar(f"complete {data}", len(df), enabled=progress) as advance:
            for rows in _batches(df, batch_size):
                x = torch.stack([preprocess(read_image(data / str(r["image"])), size) for r in rows])
                for r, maps in zip(rows, run_maps(net, settings, x, int(rows[0]["label_height"]))):
                    _save_sample(tmp, str(r["id"]), maps)
                    advance()
                tick()
        (tmp / "manifest.json").write_text(json.dumps({"dataset": str(data), "count": int(len(df)),
                                                       "composes": meta.get("composes"),
                                                       "settings": meta["model_config"]}, indent=2) + "\n")
        if dst.exists():
            shutil.rmtree(dst)
        tmp.rename(dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"out": str(dst), "count": int(len(df)), "composes": meta.get("composes")}


def _save_sample(root: Path, sid: str, maps) -> None:
    Image.fromarray(maps.gamma.astype(np.uint8), "L").save(root / "completed" / f"{sid}.png")
    Image.fromarray(maps.occlusion.astype(np.uint8) * 255, "L").save(root / "occlusion" / f"{sid}.png")
