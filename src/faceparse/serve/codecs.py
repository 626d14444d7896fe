"""What a served model stage answers, and how the canary compares two versions' answers.

A codec per model stage: the formats it answers (the first is the default), one batched model run that
encodes each item's response, and the agreement between two versions' answers to one mirrored request
(label maps: mean IoU; points: 1 − the mean point distance normalised by the inter-ocular distance, as NME).
The router imports this module for the agreement only: nothing here imports torch at module level.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import imaging


@dataclass
class Item:
    """One image of a request: where its answer goes (request index, KServe instance index or None), the
    decoded photo, its model input and the request's options."""
    request: int
    instance: int | None
    image: Any
    tensor: Any
    options: imaging.Options


class ParserCodec:
    formats = ("png", "overlay", "json")
    mirror_format = "png"

    def run(self, model, meta, items: list[Item], palette, table, version: str) -> list[tuple[bytes, str]]:
        """Items grouped by output resolution (one forward each) → encoded answers, in item order."""
        import torch

        outs: list = [None] * len(items)
        by_res: dict[int, list[int]] = {}
        for k, it in enumerate(items):
            by_res.setdefault(it.options.resolution, []).append(k)
        for res, ks in by_res.items():
            x = torch.stack([items[k].tensor for k in ks])
            labels = model(x, out_size=res).argmax(1).to(torch.uint8).cpu().numpy()
            for k, lab in zip(ks, labels):
                outs[k] = self.encode(lab, items[k], palette, table, version)
        return outs

    @staticmethod
    def encode(labels: np.ndarray, item: Item, palette, table, version: str) -> tuple[bytes, str]:
        opts = item.options
        if opts.format == "png":
            return imaging.label_png(labels), "image/png"
        if opts.format == "overlay":
            return imaging.overlay_png(item.image, labels, palette), "image/png"
        return json.dumps({"label_table": table.name, "resolution": opts.resolution, "model_version": version,
                           "fractions": imaging.class_fractions(labels, table.classes)}).encode(), "application/json"

    @staticmethod
    def agreement(a: bytes, b: bytes) -> float | None:
        try:
            return imaging.mean_iou(imaging.read_label_png(a), imaging.read_label_png(b))
        except Exception:  # noqa: BLE001 - an undecodable shadow answer counts as no agreement sample
            return None


class LandmarkCodec:
    formats = ("json", "overlay")
    mirror_format = "json"

    def run(self, model, meta, items: list[Item], palette, table, version: str) -> list[tuple[bytes, str]]:
        import torch

        from ..stages.landmarks import draw_points, points_json

        pred = model(torch.stack([it.tensor for it in items])).float().cpu().numpy()
        outs = []
        for it, p in zip(items, pred):
            pts = p * np.array(it.image.size, dtype=np.float64)    # normalised → the photo's own pixels
            if it.options.format == "json":
                outs.append((points_json(pts, it.image.size, version), "application/json"))
            else:
                outs.append((imaging.encode_png(draw_points(it.image, pts)), "image/png"))
        return outs

    @staticmethod
    def agreement(a: bytes, b: bytes) -> float | None:
        from ..landmarks import inter_ocular

        try:
            pa, pb = (np.asarray(json.loads(x)["points"], dtype=np.float64) for x in (a, b))
            nme = float(np.linalg.norm(pa - pb, axis=-1).mean() / inter_ocular(pa))
            return max(0.0, 1.0 - nme)
        except Exception:  # noqa: BLE001 - as above
            return None


CODECS = {"parser": ParserCodec(), "landmarks": LandmarkCodec()}


def codec_for(stage: str | None):
    try:
        return CODECS[stage or "parser"]
    except KeyError:
        raise ValueError(f"no serving codec for model stage {stage!r}; known: {sorted(CODECS)}") from None
