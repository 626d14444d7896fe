"""The parser on photos from the command line (`faceparse predict`): label maps, overlays and masks per photo."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ...labels import get_table
from ...models import check_out_size
from ...photos import NoFaceError, faces_json, parse_planned, parse_whole, plan_photo
from ...plots import overlay
from .. import bundle_input_size

PER_IMAGE_ABOVE = 1024  # output sizes above this are decoded one image at a time


def predict_steps(net, meta, out: Path, resolution: int | None, masks: bool, detect: bool = True):
    """(run: images → label maps (or NoFaceError), write: one result, what) for a parser bundle."""
    table = get_table(meta["label_table"])
    palette = table.palette()
    input_size = bundle_input_size(meta)
    if resolution is not None:
        check_out_size(int(resolution))
    flat_palette = palette.reshape(-1).tolist() + [0] * (768 - palette.size)

    def run(images, names):
        return _parse_images(net, images, names, input_size, resolution, detect)

    def write(path, stem, img, pred):
        lab, plan = pred
        return _write(out, path, stem, img, lab, flat_palette, table, masks, plan)

    what = f"{resolution or input_size}×{resolution or input_size}" if not detect else "faces in photos"
    return run, write, what


def _parse_images(net, images, names, input_size: int, resolution: int | None, detect: bool) -> list:
    """Per image (label map, plan), or the NoFaceError naming it. Photos parsed whole are batched by output
    size (one image at a time above PER_IMAGE_ABOVE, bounding the logits); a photo's faces one by one."""
    outs: list = []
    for img, name in zip(images, names):
        try:
            outs.append(plan_photo(img, input_size, resolution, detect=detect, what=name))
        except NoFaceError as e:
            outs.append(e)
    whole: dict[int, list[int]] = {}
    for j, plan in enumerate(outs):
        if not isinstance(plan, Exception) and plan.whole:
            whole.setdefault(plan.size[0], []).append(j)
    for res, js in whole.items():
        groups = [js] if res <= PER_IMAGE_ABOVE else [[j] for j in js]
        for g in groups:
            for j, lab in zip(g, parse_whole(net, [images[j] for j in g], input_size, res)):
                outs[j] = (lab, outs[j])
    for j, plan in enumerate(outs):
        if not isinstance(plan, (Exception, tuple)):
            outs[j] = (parse_planned(net, images[j], plan, input_size), plan)
    return outs


def _write(out: Path, path: Path, stem: str, img, lab: np.ndarray, flat_palette, table, masks: bool,
           plan) -> dict[str, Any]:
    label_path = out / f"{stem}_label.png"
    lab = np.ascontiguousarray(lab, dtype=np.uint8)
    h, w = lab.shape
    lp = Image.frombytes("P", (w, h), lab.tobytes())
    lp.putpalette(flat_palette)
    lp.save(label_path)
    base = np.asarray(img.resize((w, h), Image.BICUBIC) if img.size != (w, h) else img, dtype=np.uint8)
    ov_path = out / f"{stem}_overlay.png"
    Image.fromarray(np.asarray(overlay(base, lab, table.palette()), dtype=np.uint8)).save(ov_path)
    entry: dict[str, Any] = {"input": str(path), "ok": True, "label": str(label_path), "overlay": str(ov_path),
                             "resolution": max(w, h), "size": [w, h], "aligned": plan.whole,
                             "faces": faces_json(plan),
                             "classes": [table.classes[c] for c in np.unique(lab).tolist() if c < table.num_classes]}
    if masks:
        mdir = out / f"{stem}_masks"
        mdir.mkdir(exist_ok=True)
        for c, name in enumerate(table.classes):
            Image.fromarray(((lab == c) * 255).astype(np.uint8)).save(mdir / f"{_safe(name)}.png")
        entry["masks"] = str(mdir)
    return entry


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
