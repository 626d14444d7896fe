"""The completion benchmark (the seed's claim, measured): on a split with complete ground truth, mean F1 /
mIoU of M_α (parser alone), M_β (landmark map alone), M_γ (Algorithm 1) and M_γ with ground-truth landmarks
(the upper bound), inside the occluded face region and over the whole face, overall and per occluder kind;
plus the IoU of the predicted occlusion mask with the true occluded face pixels.

Regions, per image: *occluded* = the occluder's pixels where the complete truth is a face class (skin or a
feature); *face* = the whole image, F1 taken over the face classes only (so a face class painted where the
truth has none counts against it). Confusions are summed over the split, then scored (as the parser's
metrics are).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ... import plots
from ...images import read_image
from ...labels import CELEBAMASK_HQ
from ...landmark_map import draw_map
from ...log import progress_bar
from ...models import preprocess
from ...runtime import tick
from .. import plots_dir, write_table
from .algorithm import MaskIoU, RegionScores, plus
from .maps import METHODS, REGIONS, run_maps

EXAMPLES = 4   # test images in the contact sheet of the reports


def _truth(data_dir: Path, row) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(complete map, occluder mask, landmarks in label pixels) of one sample."""
    sid = str(row["id"])
    files = [data_dir / "complete" / f"{sid}.png", data_dir / "occlusion" / f"{sid}.png"]
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"{f}: the completion benchmark needs complete ground truth (complete/ and "
                                    "occlusion/ beside the dataset, as the synthetic data writes them)")
    complete = np.asarray(Image.open(files[0]))
    occluder = np.asarray(Image.open(files[1])) > 0
    points = np.load(data_dir / str(row["landmarks"])).astype(np.float64)
    points *= np.array([complete.shape[1] / float(row["width"]), complete.shape[0] / float(row["height"])])
    return complete, occluder, points


def _kinds(data_dir: Path) -> dict[str, list[str]]:
    f = data_dir / "occlusion" / "kinds.json"
    return json.loads(f.read_text()) if f.is_file() else {}


class Tally:
    """RegionScores per (method, region) and the occlusion-mask IoU, for all images or one occluder kind."""
    def __init__(self, face_ids: np.ndarray):
        self.scores = {(m, r): RegionScores(face_ids) for m in METHODS for r in REGIONS}
        self.mask = MaskIoU()
        self.images = 0

    def update(self, preds: dict[str, np.ndarray], truth, occluded, mask) -> None:
        self.images += 1
        self.mask.update(mask, occluded)
        for m, pred in preds.items():
            self.scores[(m, "occluded")].update(pred, truth, occluded)
            self.scores[(m, "face")].update(pred, truth)

    def compute(self) -> dict[str, Any]:
        out: dict[str, Any] = {"n_images": self.images, "occlusion_iou": self.mask.compute(), "per_class_f1": {}}
        for (m, r), s in self.scores.items():
            c = s.compute()
            out[f"f1_{r}_{m}"], out[f"miou_{r}_{m}"] = c["f1"], c["miou"]
            out["per_class_f1"][f"{r}_{m}"] = c["per_class_f1"]   # where a method wins or loses
        out["occluded_pixels"] = self.scores[("alpha", "occluded")].compute()["pixels"]
        return out


def evaluate_completion(model, settings, input_size: int, frame, data_dir: Path, params,
                        progress: bool) -> tuple[dict, dict]:
    face = settings.face_ids()
    total, by_kind, kinds = Tally(face), {}, _kinds(data_dir)
    examples: list = []
    bs = int(params["evaluate"]["batch_size"])
    rows = [r for _, r in frame.iterrows()]
    with progress_bar("evaluate completion", len(rows), enabled=progress) as advance:
        for i in range(0, len(rows), bs):
            chunk = rows[i:i + bs]
            _batch(model, settings, input_size, chunk, data_dir, total, by_kind, kinds, examples)
            advance(len(chunk))
            tick()
    result = total.compute()
    result["n_occluded_images"] = sum(1 for t in (kinds.get(str(r["id"])) for r in rows) if t) if kinds else None
    result["per_kind"] = {k: {n: v for n, v in by_kind[k].compute().items() if n != "per_class_f1"}
                          for k in sorted(by_kind)}
    result["settings"] = {"reading": settings.reading, "mouth_is_feature": settings.mouth_is_feature,
                          "brow_band": settings.brow_band}
    return result, {"examples": examples}


def _batch(model, settings, input_size, chunk, data_dir, total, by_kind, kinds, examples) -> None:
    face = settings.face_ids()
    images = [read_image(data_dir / str(r["image"])) for r in chunk]
    truths = [_truth(data_dir, r) for r in chunk]
    x = torch.stack([preprocess(im, input_size) for im in images])
    by_size: dict = {}
    for k, t in enumerate(truths):   # one forward per label size (a dataset normally has one)
        by_size.setdefault(t[0].shape[0], []).append(k)
    maps_of = {}
    for out, ks in by_size.items():
        maps_of.update(zip(ks, run_maps(model, settings, x[ks], out)))
    for k, (r, im, (gt, occ, pts)) in enumerate(zip(chunk, images, truths)):
        maps = maps_of[k]
        occluded = occ & np.isin(gt, face)
        preds = {"alpha": maps.alpha, "beta": maps.beta, "gamma": maps.gamma,
                 "gamma_gt": plus(maps.alpha, draw_map(pts, gt.shape, brow_width=settings.brow_band), settings)}
        total.update(preds, gt, occluded, maps.occlusion)
        for kind in dict.fromkeys(kinds.get(str(r["id"]), [])):
            by_kind.setdefault(kind, Tally(face)).update(preds, gt, occluded, maps.occlusion)
        if occluded.any() and len(examples) < EXAMPLES:
            examples.append((np.asarray(im), maps, gt, str(r["id"])))


def write_completion_reports(result, extras, params) -> list[Path]:
    """plots_dir/methods.csv (method × region), per_kind.csv, examples.png; the markdown table."""
    ev = params["evaluate"]
    pdir = plots_dir(ev)
    (pdir / "methods.csv").write_text("method,f1_occluded,f1_face,miou_occluded,miou_face\n" + "".join(
        f"{m},{_fmt(result.get(f'f1_occluded_{m}'))},{_fmt(result.get(f'f1_face_{m}'))},"
        f"{_fmt(result.get(f'miou_occluded_{m}'))},{_fmt(result.get(f'miou_face_{m}'))}\n" for m in METHODS))
    (pdir / "per_kind.csv").write_text("kind,n_images,f1_occluded_alpha,f1_occluded_gamma,occlusion_iou\n" + "".join(
        f"{k},{v['n_images']},{_fmt(v.get('f1_occluded_alpha'))},{_fmt(v.get('f1_occluded_gamma'))},"
        f"{_fmt(v.get('occlusion_iou'))}\n" for k, v in result.get("per_kind", {}).items()))
    files: list[Path] = [pdir]
    if extras.get("examples"):
        plots.completion_sheet(None, None, CELEBAMASK_HQ.palette(), pdir / "examples.png", rows=extras["examples"])
    return files + write_table(ev, markdown_table(result))


def _fmt(v) -> str:
    return "" if v is None else f"{v:.4f}"


NAMES = {"alpha": "M_α (parser alone)", "beta": "M_β (landmark map alone)", "gamma": "M_γ (Algorithm 1)",
         "gamma_gt": "M_γ, ground-truth landmarks (upper bound)"}


def markdown_table(result: dict[str, Any]) -> str:
    def pct(v):
        return "—" if v is None else f"{100 * v:.1f}"

    lines = [f"## Map completion on {result.get('n_images')} {result.get('split', 'test')} images "
             f"({result.get('occluded_pixels')} occluded face pixels)", "",
             "| map | F1 occluded | mIoU occluded | F1 face | mIoU face |", "|---|---|---|---|---|"]
    lines += [f"| {NAMES[m]} | {pct(result.get(f'f1_occluded_{m}'))} | {pct(result.get(f'miou_occluded_{m}'))} | "
              f"{pct(result.get(f'f1_face_{m}'))} | {pct(result.get(f'miou_face_{m}'))} |" for m in METHODS]
    lines += ["", f"Occlusion mask IoU: {pct(result.get('occlusion_iou'))}", "",
              "| occluder | images | F1 occluded M_α | F1 occluded M_γ | mask IoU |", "|---|---|---|---|---|"]
    lines += [f"| {k} | {v['n_images']} | {pct(v.get('f1_occluded_alpha'))} | {pct(v.get('f1_occluded_gamma'))} | "
              f"{pct(v.get('occlusion_iou'))} |" for k, v in result.get("per_kind", {}).items()]
    per = result.get("per_class_f1") or {}
    cols = ("face_alpha", "face_gamma", "occluded_alpha", "occluded_gamma")
    classes = sorted({c for k in cols for c in per.get(k, {})})
    lines += ["", "| class | F1 face M_α | F1 face M_γ | F1 occluded M_α | F1 occluded M_γ |", "|---|---|---|---|---|"]
    lines += [f"| {c} | " + " | ".join(pct(per.get(k, {}).get(c)) for k in cols) + " |" for c in classes]
    return "\n".join(lines) + "\n"
