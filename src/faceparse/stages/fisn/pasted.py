"""De-occlusion scored on real faces (issue #31): the chain on the labelled photos with occluders pasted at
known masks (faceparse.occluders), PSNR / SSIM inside the occluded face region against the photo as it was,
beside OpenCV's inpainting on the same mask and on the true one."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ...log import progress_bar
from ...occluders import KINDS, Pasted, mask_iou
from .evaluate import inpaint, region_ssim
from .model import psnr
from .photo import deocclude_photo

METHODS = ("input", "out", "inpaint", "inpaint_true_mask")


def score_case(case: Pasted, output: np.ndarray, mask: np.ndarray) -> dict:
    """One case's row: PSNR / SSIM inside its region of the occluded input, the chain's answer (``output``,
    ``mask`` at the case's size), Telea on that mask and on the true one; the mask's IoU with the region."""
    answers = {"input": case.photo, "out": output, "inpaint": inpaint(case.photo, mask),
               "inpaint_true_mask": inpaint(case.photo, case.occluder)}
    row = {"photo": case.name, "kind": case.kind, "mask_iou": mask_iou(mask, case.region),
           "region_pixels": int(case.region.sum())}
    for k, img in answers.items():
        row[f"psnr_{k}"] = psnr(img, case.clean, case.region)
        row[f"ssim_{k}"] = region_ssim(img, case.clean, case.region)
    return row


def summarise(rows: list[dict]) -> dict:
    """Means over every case and per kind of the rows' numbers."""
    keys = [k for k in rows[0] if isinstance(rows[0][k], float)]
    mean = lambda rs: {k: float(np.mean([r[k] for r in rs])) for k in keys}   # noqa: E731
    return {**mean(rows), "n_cases": len(rows), "per_kind": {k: mean([r for r in rows if r["kind"] == k])
                                                            for k in KINDS if any(r["kind"] == k for r in rows)},
            "cases": rows}


def markdown(result: dict) -> str:
    lines = ["| occluder | cases | mask IoU | input PSNR / SSIM | FISN | cv2.inpaint, same mask | "
             "cv2.inpaint, true mask |", "|---|---|---|---|---|---|---|"]
    groups = [*result["per_kind"].items(), ("**all**", result)]
    for name, g in groups:
        n = sum(r["kind"] == name for r in result["cases"]) if name in KINDS else result["n_cases"]
        cells = [f"{g[f'psnr_{m}']:.2f} / {g[f'ssim_{m}']:.3f}" for m in METHODS]
        lines.append(f"| {name} | {n} | {g['mask_iou']:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def score_chain(chain, cases: list[Pasted], detect: bool = True, progress: bool = True) -> tuple[dict, list]:
    """The de-occlusion chain on every case (found and aligned as a user's photo is) → (summary, the chain's
    answers, one (output, mask) per case, for the sheet)."""
    rows, answers = [], []
    with progress_bar("de-occlude pasted photos", len(cases), enabled=progress) as advance:
        for c in cases:
            res = deocclude_photo(chain, Image.fromarray(c.photo), detect, what=f"{c.name} ({c.kind})")
            rows.append(score_case(c, res.output, res.mask))
            answers.append((res.output, res.mask))
            advance(1)
    return summarise(rows), answers


def sheet(cases: list[Pasted], answers: list, path: Path, side: int = 192) -> Path:
    """One row per case: occluded | mask found | de-occluded | cv2.inpaint on that mask | as it was."""
    rows = []
    for c, (out, mask) in zip(cases, answers):
        cells = [c.photo, np.repeat(mask[..., None] * 255, 3, -1).astype(np.uint8), out, inpaint(c.photo, mask), c.clean]
        rows.append(np.concatenate([cv2.resize(x, (side, side), interpolation=cv2.INTER_AREA) for x in cells], 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, 0)).save(path)
    return path
