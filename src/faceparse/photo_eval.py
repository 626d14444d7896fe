"""Scoring a parser on real labelled photos: a folder of ``<stem>.jpg`` photos beside ``<stem>.png`` label maps
(single channel, the parser's class ids — e.g. the four CelebAMask-HQ samples in ``../shared/fixtures/``).

Each photo goes through the same path a user's does (``faceparse.load(...)(photo, resolution)``: face
detection and alignment unless ``detect=False``), at the label maps' own size by default; the scores are the
field's (``faceparse.metrics``: one confusion matrix over all photos, per-class F1, mean over the
non-background classes present). This is how the synthetic-trained models are measured against real faces
(the pretrained model's card, issue #16); nothing here trains on the photos.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np


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
    from PIL import Image

    from .images import read_label
    from .metrics import Confusion, scores

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
