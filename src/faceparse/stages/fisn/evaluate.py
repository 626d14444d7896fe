"""The de-occlusion benchmark (``faceparse evaluate --stage fisn``): on the occluded faces of a split with
complete ground truth (the synthetic set's ``clean/``, ``complete/``, ``occlusion/``), inside the occluded
face region, against the clean render:

- ``psnr_out`` / ``ssim_out``: the pipeline's answer — the generator's output inside the occlusion mask, the
  photo outside it (``psnr_raw``: the generator's whole output, the same inside the mask);
- ``psnr_input`` / ``ssim_input``: the occluded photo as it is;
- ``psnr_inpaint`` / ``ssim_inpaint``: a classical peer, OpenCV's ``cv2.inpaint`` (Telea, radius 3) on the
  same occlusion mask; ``_inpaint_true_mask`` / ``_out_true_mask``: Telea and the generator given the true
  occluder instead (what a perfect occlusion mask would give each);
- ``occlusion_iou``: a model with an occlusion head (the gated preset) — its mask against the true occluder,
  pooled over every face of the split (the unoccluded ones too: a false alarm counts); ``occlusion_iou_face``:
  the mask's face part against the occluded face region;
- ``parser_miou``: SPADE's semantic check — the parser (the one inside the carried completion model) on the
  output vs the target map M_γ, mIoU over the classes present (``parser_miou_input`` / ``_clean``: the same on
  the occluded photo and on the clean render, the floor and the ceiling).

Maps (``evaluate.maps``): ``truth`` (default) — source map = the visible label map, target map = the complete
map, occlusion mask = where the complete map is face and the visible one is not (on synthetic data exactly
the occluded face region); ``predicted`` — the carried completion model's M_α, M_γ and occlusion mask (the
whole chain, as served; the scoring region stays the true one, so a missed occluder counts against every
method alike).

Region: the occluder's pixels where the complete map holds a face class (skin or a feature), the same region
as the completion benchmark's. Everything is scored at the generator's size (the photo, clean render and
maps resized to it once: images INTER_AREA, maps nearest). PSNR and SSIM are per image, averaged over the
occluded images (PSNR over the region's pixels, all channels; SSIM: the mean of the SSIM map inside the
region). SSIM is written here (Wang et al. 2004: Gaussian window σ = 1.5, 11 × 11, K1 = 0.01, K2 = 0.03,
per RGB channel, averaged) — no scikit-image.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from ... import plots
from ...images import read_image
from ...labels import CELEBAMASK_HQ
from ...log import progress_bar
from ...metrics import Confusion
from ...models import preprocess
from ...runtime import tick
from .. import bundle_input_size, plots_dir, write_table
from ..completion.algorithm import Settings, occlusion_mask
from ..completion.maps import run_maps
from .dataset import FisnDataset
from .model import psnr, to_uint8

EXAMPLES = 6
METHODS = ("out", "input", "inpaint", "out_true_mask", "inpaint_true_mask", "raw")


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(H, W) SSIM map of two uint8 (H, W, 3) images (mean over channels)."""
    x, y = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(z):
        return cv2.GaussianBlur(z, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.mean(-1) if s.ndim == 3 else s


def region_ssim(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> float:
    return float(ssim_map(a, b)[region].mean())


def inpaint(image: np.ndarray, mask: np.ndarray, radius: int = 3) -> np.ndarray:
    """cv2.inpaint (Telea) of a uint8 RGB image where ``mask``."""
    if not mask.any():
        return image.copy()
    return cv2.inpaint(np.ascontiguousarray(image), mask.astype(np.uint8) * 255, radius, cv2.INPAINT_TELEA)


def composite(output: np.ndarray, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.where(mask[..., None], output, image).astype(np.uint8)


def _parser_for(model, meta):
    """(parser, its input size, where it came from) for parser_miou: the carried completion model's."""
    if getattr(model, "completion", None) is None:
        return None, 0, None
    parser_meta = meta["completion"]["parser"]
    src = ((meta.get("carries") or {}).get("completion") or {}).get("composes", {}) or {}
    p = src.get("parser") or {}
    return model.completion.parser, bundle_input_size(parser_meta), p.get("model_uri") or p.get("ref")


@torch.no_grad()
def evaluate_fisn(model, meta, frame, data_dir: Path, params, progress: bool) -> tuple[dict, dict]:
    ev = params["evaluate"]
    maps_mode = str(ev.get("maps") or "truth")
    if maps_mode not in ("truth", "predicted"):
        raise ValueError(f"fisn.evaluate.maps must be truth or predicted, got {maps_mode!r}")
    if maps_mode == "predicted" and getattr(model, "completion", None) is None:
        raise ValueError("fisn.evaluate.maps=predicted needs the completion model the bundle carries; this bundle "
                         "carries none (trained with fisn.carry.completion: null)")
    size = bundle_input_size(meta)
    ds = FisnDataset(frame, data_dir, size, mode="supervised", occluded_only=True)
    if len(ds) == 0:
        raise ValueError(f"{data_dir}: no occluded sample with a clean render (clean/<id>.jpg) in the "
                         f"{ev.get('split', 'test')!r} split: the de-occlusion benchmark needs synthetic ground truth")
    device = next(model.parameters()).device
    parser, parser_size, parser_src = _parser_for(model, meta)
    settings = Settings.from_dict(meta["completion"]["model_config"]) if maps_mode == "predicted" else Settings()
    comp_size = bundle_input_size(meta["completion"]) if maps_mode == "predicted" else 0
    kinds_file = Path(data_dir) / "occlusion" / "kinds.json"
    kinds = json.loads(kinds_file.read_text()) if kinds_file.is_file() else {}
    n = int(meta["num_classes"])
    conf = {k: Confusion(n) for k in ("out", "input", "clean")}
    rows, examples, ious = [], [], MaskIoU()
    bs = int(ev["batch_size"])
    with progress_bar("evaluate de-occlusion", len(ds), enabled=progress) as advance:
        for start in range(0, len(ds), bs):
            idx = list(range(start, min(start + bs, len(ds))))
            raws = [ds.raw(i) for i in idx]
            if maps_mode == "predicted":
                x = torch.stack([preprocess(read_image(ds.image_paths[i]), comp_size) for i in idx]).to(device)
                maps = run_maps(model.completion, settings, x, size)
                src = [m.alpha for m in maps]
                tgt = [m.gamma for m in maps]
                masks = [m.occlusion for m in maps]
            else:
                src = [r["label"] for r in raws]
                tgt = [r["complete"] for r in raws]
                masks = [occlusion_mask(r["complete"], r["label"], settings) for r in raws]
            image = torch.stack([preprocess(r["image"]) for r in raws]).to(device)
            head = model.occlusion_mask(image)
            masks = masks if head is None else list(head.cpu().numpy())
            maps = [torch.from_numpy(np.stack(m).astype(np.int64)).to(device) for m in (src, tgt)]
            out = to_uint8(model(image, *maps, head).float().cpu())
            true = torch.from_numpy(np.stack([r["occluder"] for r in raws])).to(device)
            out_true = to_uint8(model(image, *maps, true).float().cpu()) if head is not None else out
            for k, (i, r) in enumerate(zip(idx, raws)):
                region = r["region"]
                ious.add(masks[k], r["occluder"], region)
                answers = {"out": composite(out[k], r["image"], masks[k]), "input": r["image"],
                           "inpaint": inpaint(r["image"], masks[k]),
                           "inpaint_true_mask": inpaint(r["image"], r["occluder"]), "raw": out[k],
                           "out_true_mask": composite(out_true[k], r["image"], r["occluder"] if head is not None
                                                      else masks[k])}
                row: dict[str, Any] = {"id": ds.ids[i], "kinds": "+".join(kinds.get(ds.ids[i], [])),
                                       "region_pixels": int(region.sum()), "mask_pixels": int(masks[k].sum())}
                if region.any():
                    for m, img in answers.items():
                        row[f"psnr_{m}"] = psnr(img, r["clean"], region)
                        row[f"ssim_{m}"] = region_ssim(img, r["clean"], region)
                rows.append(row)
                if parser is not None:
                    trio = [answers["out"], r["image"], r["clean"]]
                    x = torch.stack([preprocess(t, parser_size) for t in trio]).to(device)
                    labels = parser(x, size).argmax(1).cpu().numpy()
                    for key, lab in zip(("out", "input", "clean"), labels):
                        conf[key].update(lab, tgt[k])
                if region.any() and len(examples) < EXAMPLES:
                    examples.append({"input": r["image"], "map": tgt[k], "mask": masks[k], "output": answers["out"],
                                     "inpaint": answers["inpaint"], "clean": r["clean"], "title": ds.ids[i]})
            advance(len(idx))
            tick()
    scored = [r for r in rows if "psnr_out" in r]
    result: dict[str, Any] = {**_means(scored), "n_occluded_images": len(scored),
                              "region_pixels": int(sum(r["region_pixels"] for r in scored))}
    if result.get("psnr_out") is not None:
        result["psnr_gain_db"] = result["psnr_out"] - result["psnr_input"]
        result["psnr_vs_inpaint_db"] = result["psnr_out"] - result["psnr_inpaint"]
    if getattr(model, "occlusion", None) is not None:
        _false_alarms(model, frame, data_dir, size, set(ds.ids), ious, device)
    result.update(ious.compute())
    result.update({"parser_miou": conf["out"].present_miou() if parser is not None else None,
                   "parser_miou_input": conf["input"].present_miou() if parser is not None else None,
                   "parser_miou_clean": conf["clean"].present_miou() if parser is not None else None,
                   "parser": parser_src, "maps": maps_mode, "input_size": size, "perceptual": meta.get("perceptual"),
                   "train_mode": meta.get("train_mode")})
    per_kind: dict[str, list] = {}
    for r in scored:
        for kind in dict.fromkeys(r["kinds"].split("+")) if r["kinds"] else ():
            per_kind.setdefault(kind, []).append(r)
    result["per_kind"] = {k: {"n_images": len(v), **_means(v)} for k, v in sorted(per_kind.items())}
    return result, {"rows": rows, "examples": examples}


class MaskIoU:
    """The occlusion mask against the truth, pooled over a split's pixels: ``occlusion_iou`` against every
    occluder pixel, ``occlusion_iou_face`` — the mask inside the face against the occluded face region."""

    def __init__(self):
        self.sums = np.zeros(4, np.int64)   # ∩ occluder, ∪ occluder, ∩ region, ∪ region

    def add(self, mask: np.ndarray, occluder: np.ndarray, region: np.ndarray) -> None:
        face = mask & (region | ~occluder)   # the mask off the occluder, or on its face part
        self.sums += [(mask & occluder).sum(), (mask | occluder).sum(), (face & region).sum(), (face | region).sum()]

    def compute(self) -> dict[str, float | None]:
        i, u, fi, fu = (int(v) for v in self.sums)
        return {"occlusion_iou": i / u if u else None, "occlusion_iou_face": fi / fu if fu else None}


def _false_alarms(model, frame, data_dir: Path, size: int, scored: set, ious: "MaskIoU", device) -> None:
    """The occlusion head on the split's faces without an occluder too: what it marks there counts against
    its IoU (a head that marks every face would otherwise pass)."""
    clean = FisnDataset(frame, data_dir, size)
    idx = [i for i, sid in enumerate(clean.ids) if sid not in scored]
    for start in range(0, len(idx), 16):
        items = [clean[i] for i in idx[start:start + 16]]
        found = model.occlusion_mask(torch.stack([it["image"] for it in items]).to(device)).cpu().numpy()
        for it, mask in zip(items, found):
            ious.add(mask, it["occluder"].numpy(), it["region"].numpy())


def _means(rows: list[dict]) -> dict[str, float | None]:
    return {f"{s}_{m}": (float(np.mean([r[f"{s}_{m}"] for r in rows])) if rows else None)
            for s in ("psnr", "ssim") for m in METHODS}


def contact_sheet(rows: list[dict], path: Path) -> Path:
    """One row per face: input | [M_α | M_β] | M_γ | [occlusion mask] | output | [inpaint | clean] (the columns
    any row holds)."""
    plt = plots._plt()
    p = plots._prepare(path)
    order = [("input", "input"), ("alpha", "M_alpha"), ("beta", "M_beta"), ("map", "M_gamma"),
             ("mask", "occlusion mask"), ("output", "FISN output"),
             ("inpaint", "cv2.inpaint (Telea)"), ("clean", "clean (truth)")]
    cols = [(k, name) for k, name in order if any(r.get(k) is not None for r in rows)]
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(1.9 * len(cols), 2.0 * len(rows)), squeeze=False)
    palette = CELEBAMASK_HQ.palette()
    for ax_row, r in zip(axes, rows):
        for j, (ax, (k, name)) in enumerate(zip(ax_row, cols)):
            im = r.get(k)
            if k in ("map", "alpha", "beta") and im is not None:
                im = plots.colorize(im, palette)
            elif k == "mask" and im is not None:
                im = np.where(im[..., None], np.array([255, 0, 255], np.uint8), r["input"] // 2).astype(np.uint8)
            ax.imshow(im if im is not None else np.zeros_like(r["input"]))
            ax.set_axis_off()
            ax.set_title(f"{r.get('title', '')}\n{name}" if j == 0 and r.get("title") else name, fontsize=6)
    return plots.finish(fig, p)


def write_fisn_reports(result, extras, params) -> list[Path]:
    """plots_dir/examples.png (contact sheet), per_image.csv, methods.csv; the markdown table."""
    ev = params["evaluate"]
    pdir = plots_dir(ev)
    cols = ["id", "kinds", "region_pixels", "mask_pixels", *[f"{s}_{m}" for s in ("psnr", "ssim") for m in METHODS]]
    lines = [",".join(cols)] + [",".join(_cell(r.get(c)) for c in cols) for r in extras.get("rows", [])]
    (pdir / "per_image.csv").write_text("\n".join(lines) + "\n")
    (pdir / "methods.csv").write_text("method,psnr,ssim\n" + "".join(
        f"{m},{_cell(result.get(f'psnr_{m}'))},{_cell(result.get(f'ssim_{m}'))}\n" for m in ("input", "inpaint", "out")))
    files: list[Path] = [pdir]
    if extras.get("examples"):
        contact_sheet(extras["examples"], pdir / "examples.png")
    return files + write_table(ev, markdown_table(result))


def _cell(v) -> str:
    if v is None:
        return ""
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def markdown_table(result: dict[str, Any]) -> str:
    def f(v, d=2):
        return "—" if v is None else f"{v:.{d}f}"

    lines = [f"## De-occlusion on {result.get('n_occluded_images')} occluded {result.get('split', 'test')} faces "
             f"({result.get('region_pixels')} occluded face pixels at {result.get('input_size')}², "
             f"{result.get('maps')} maps)", "",
             "| answer inside the occluded region | PSNR (dB) | SSIM |", "|---|---|---|",
             f"| occluded input, as is | {f(result.get('psnr_input'))} | {f(result.get('ssim_input'), 3)} |",
             f"| cv2.inpaint (Telea), same mask | {f(result.get('psnr_inpaint'))} | {f(result.get('ssim_inpaint'), 3)} |",
             f"| FISN | {f(result.get('psnr_out'))} | {f(result.get('ssim_out'), 3)} |",
             f"| cv2.inpaint, the true occluder's mask | {f(result.get('psnr_inpaint_true_mask'))} | "
             f"{f(result.get('ssim_inpaint_true_mask'), 3)} |",
             f"| FISN, the true occluder's mask | {f(result.get('psnr_out_true_mask'))} | "
             f"{f(result.get('ssim_out_true_mask'), 3)} |", "",
             f"Occlusion mask IoU with the true occluder over every {result.get('split', 'test')} face: "
             f"{f(result.get('occlusion_iou'), 3)} (its face part against the occluded face region: "
             f"{f(result.get('occlusion_iou_face'), 3)}).", "",
             f"FISN − input: {f(result.get('psnr_gain_db'))} dB; FISN − cv2.inpaint: "
             f"{f(result.get('psnr_vs_inpaint_db'))} dB.", "",
             f"Parser mIoU vs M_γ (the parser: {result.get('parser')}): on the output {f(result.get('parser_miou'), 3)}, "
             f"on the occluded input {f(result.get('parser_miou_input'), 3)}, on the clean render "
             f"{f(result.get('parser_miou_clean'), 3)}.", "",
             f"Perceptual network: {result.get('perceptual')}; training mode: {result.get('train_mode')}.", "",
             "| occluder | faces | PSNR input | PSNR inpaint | PSNR FISN | SSIM input | SSIM inpaint | SSIM FISN |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {k} | {v['n_images']} | {f(v.get('psnr_input'))} | {f(v.get('psnr_inpaint'))} | {f(v.get('psnr_out'))} | "
              f"{f(v.get('ssim_input'), 3)} | {f(v.get('ssim_inpaint'), 3)} | {f(v.get('ssim_out'), 3)} |"
              for k, v in (result.get("per_kind") or {}).items()]
    return "\n".join(lines) + "\n"
