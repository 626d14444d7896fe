"""Scoring a parser on real labelled photos: a folder of ``<stem>.jpg`` photos beside ``<stem>.png`` label maps
(single channel, the parser's class ids — e.g. the four CelebAMask-HQ samples in ``../shared/fixtures/``).

Each photo goes through the same path a user's does (``faceparse.load(...)(photo, resolution)``: face
detection and alignment unless ``detect=False``), at the label maps' own size by default; the scores are the
field's (``faceparse.metrics``: one confusion matrix over all photos, per-class F1, mean over the
non-background classes present). This is how the synthetic-trained models are measured against real faces
(the pretrained model's card, issue #16); nothing here trains on the photos.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .align import apply, five_points, similarity_fit
from .ibug68 import REGIONS, point_errors
from .images import read_label
from .metrics import Confusion, scores


def labelled_photos(folder: str | os.PathLike) -> list[tuple[Path, Path]]:
    """(photo, label map) pairs of ``folder``: ``<stem>.jpg`` / ``.jpeg`` beside ``<stem>.png``, by stem."""
    d = Path(folder)
    if not d.is_dir():
        raise FileNotFoundError(f"--photos: not a folder: {d}")
    pairs = [(p, p.with_suffix(".png")) for p in sorted(d.iterdir())
             if p.suffix.lower() in (".jpg", ".jpeg") and p.with_suffix(".png").is_file()]
    if not pairs:
        raise FileNotFoundError(f"{d}: no labelled photos (<stem>.jpg beside <stem>.png, the class-id map)")
    return pairs


def score_photos(parser, pairs: list[tuple[Path, Path]], resolution: int | None = None,
                 detect: bool = True) -> dict[str, Any]:
    """Per-class F1 / IoU and mean F1 of ``parser`` (a :class:`faceparse.api.Parser`) on ``pairs``; each
    prediction is made at its label map's size (``resolution``: the long side instead, the truth resized
    nearest to it)."""
    conf = Confusion(len(parser.classes))
    per_photo = []
    for photo, label in pairs:
        truth = read_label(label)
        if resolution is not None and max(truth.shape) != int(resolution):
            k = int(resolution) / max(truth.shape)
            size = (max(1, round(truth.shape[1] * k)), max(1, round(truth.shape[0] * k)))
            truth = np.asarray(Image.fromarray(truth).resize(size, Image.NEAREST))
        if int(truth.max()) >= len(parser.classes):
            raise ValueError(f"{label}: class ids up to {int(truth.max())}, the parser has {len(parser.classes)}")
        pred = parser(photo, resolution=max(truth.shape), detect=detect).labels
        if pred.shape != truth.shape:
            raise ValueError(f"{photo}: the map is {pred.shape[1]}×{pred.shape[0]} but {label.name} is "
                             f"{truth.shape[1]}×{truth.shape[0]}: a photo and its label map must have one aspect")
        one = Confusion(len(parser.classes))
        one.update(pred, truth)
        conf.merge(one)
        per_photo.append({"photo": photo.name, "mean_f1": scores(one.matrix, parser.table)["mean_f1"]})
    sc = scores(conf.matrix, parser.table)
    return {"mean_f1": sc["mean_f1"], "miou": sc["miou"], "pixel_acc": sc["pixel_acc"], "f1": sc["f1"],
            "n_images": len(pairs), "resolution": int(resolution) if resolution else None, "detect": detect,
            "photos": per_photo}


def f1_table(result: dict[str, Any]) -> str:
    """Markdown: the per-class F1 (classes present in truth or prediction), then the mean."""
    rows = [f"| {c} | {v:.3f} |" for c, v in result["f1"].items() if c != "background" and not math.isnan(v)]
    return "\n".join(["| class | F1 |", "| --- | --- |", *rows, f"| **mean** | **{result['mean_f1']:.3f}** |"])


# --- landmarks: real photos against a peer's reference points ------------------------------------------------
REFERENCE_FILE = "dlib68.json"   # {"points": {"<photo name>": [[x, y] × 68]}} in the photo's pixels


def reference_points(folder: str | os.PathLike) -> dict[Path, np.ndarray]:
    """Photo → (68, 2) reference points, from ``folder``/dlib68.json (dlib's points on the four fixtures)."""
    d = Path(folder)
    ref = d / REFERENCE_FILE
    if not ref.is_file():
        raise FileNotFoundError(f"{d}: no {REFERENCE_FILE} (reference points: {{'points': {{photo name: 68 × [x, y]}}}})")
    out = {}
    for name, pts in sorted(json.loads(ref.read_text())["points"].items()):
        arr = np.asarray(pts, dtype=np.float64)
        if arr.shape != (68, 2) or not (d / name).is_file():
            raise ValueError(f"{ref}: {name!r} needs 68 [x, y] points and the photo beside it")
        out[d / name] = arr
    return out


def mean_shape_fit(mean_shape: np.ndarray, five: np.ndarray) -> np.ndarray:
    """The trivial baseline: a mean shape similarity-fitted (least squares) onto a detector's five points."""
    return apply(similarity_fit(five_points(mean_shape), five), mean_shape)


def _nearest_face(points: list[np.ndarray], faces: list, ref: np.ndarray) -> int:
    """The detected face the reference describes: the one whose points' centre lies nearest the reference's."""
    return int(np.argmin([np.linalg.norm(p.mean(0) - ref.mean(0)) for p in points])) if faces else 0


def photo_point_errors(landmarker, references: dict[Path, np.ndarray], detect: bool = True
                       ) -> Iterator[tuple[Path, np.ndarray, np.ndarray | None]]:
    """Per photo: (photo, the 68 point errors of a :class:`faceparse.api.Landmarker` against the reference, in
    units of its outer-eye-corner distance, the same for the baseline ``mean_shape_fit`` of the bundle's mean
    shape to the detector's five points — None when no face was detected). The face scored is the one
    nearest the reference."""
    mean = np.asarray(landmarker.meta["mean_shape"], dtype=np.float64)
    for photo, ref in references.items():
        found = landmarker(photo, detect=detect)
        k = _nearest_face(found.points, found.faces, ref)
        err = point_errors(found.points[k][None], ref[None])[0]
        base = None
        if found.faces:
            base = point_errors(mean_shape_fit(mean, found.faces[k].points)[None], ref[None])[0]
        yield photo, err, base


def score_landmarks(landmarker, references: dict[Path, np.ndarray], detect: bool = True) -> dict[str, Any]:
    """NME (over the reference's outer-eye-corner distance) of a :class:`faceparse.api.Landmarker` on each
    photo, by region, beside the baseline ``mean_shape_fit`` of the bundle's mean shape to the detector's five
    points; the mean over photos, and the model / baseline ratio."""
    rows = []
    for photo, err, base in photo_point_errors(landmarker, references, detect):
        row = {"photo": photo.name, "nme": float(err.mean()),
               **{f"nme_{r}": float(err[list(idx)].mean()) for r, idx in REGIONS.items()}}
        if base is not None:
            row["baseline_nme"] = float(base.mean())
        rows.append(row)
    out: dict[str, Any] = {"nme": float(np.mean([r["nme"] for r in rows])), "n_images": len(rows), "detect": detect,
                           "photos": rows}
    if all("baseline_nme" in r for r in rows):
        out["baseline_nme"] = float(np.mean([r["baseline_nme"] for r in rows]))
        out["ratio_to_baseline"] = out["nme"] / out["baseline_nme"]
    return out


def nme_table(result: dict[str, Any]) -> str:
    """Markdown: NME (% of the outer-eye-corner distance) per photo and region, the baseline, the mean."""
    def pct(v):
        return "—" if v is None else f"{100 * v:.2f}"

    head = ["photo", "NME", *REGIONS, "baseline (mean shape on 5 pts)"]
    rows = [[r["photo"], pct(r["nme"]), *(pct(r[f"nme_{g}"]) for g in REGIONS), pct(r.get("baseline_nme"))]
            for r in result["photos"]]
    rows.append(["**mean**", f"**{pct(result['nme'])}**", *([""] * len(REGIONS)), pct(result.get("baseline_nme"))])
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
                      *("| " + " | ".join(r) + " |" for r in rows)])
