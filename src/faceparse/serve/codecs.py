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

from ..detect import warm_up
from . import imaging
from .codec_recon3d import Recon3dCodec


@dataclass
class Item:
    """One image of a request: where its answer goes (request index, KServe instance index or None), the
    decoded photo, its model input and the request's options."""
    request: int
    instance: int | None
    image: Any
    tensor: Any
    options: imaging.Options
    plan: Any = None    # parser: the photo's faces and crops (faceparse.photos.Plan); None: parsed whole


def by_resolution(items: list[Item]) -> dict[int, list[int]]:
    """Item indices grouped by requested output size (one forward each)."""
    out: dict[int, list[int]] = {}
    for k, it in enumerate(items):
        out.setdefault(it.options.resolution, []).append(k)
    return out


class ParserCodec:
    """Label maps. A photo's faces are found and aligned when the request is parsed (``locate``: no face →
    422) and each is parsed in place (``faceparse.photos``); an aligned face, or ``X-Detect: false``, is
    parsed whole at ``resolution``² as before detection existed, batched by resolution."""
    formats = ("png", "overlay", "json")
    mirror_format = "png"

    def warmup(self, model, x, resolution: int) -> None:
        model(x, out_size=resolution)
        warm_up()   # the detector's weights loaded before any request

    locate = staticmethod(imaging.locate_faces)

    def run(self, model, meta, items: list[Item], palette, table, version: str) -> list[tuple[bytes, str]]:
        """Items parsed whole grouped by output resolution (one forward each), photos face by face →
        encoded answers, in item order."""
        import torch

        from ..photos import parse_planned
        from ..specks import labels_from_logits

        outs: list = [None] * len(items)
        whole = [k for k, it in enumerate(items) if it.plan is None or it.plan.whole]
        for res, ks in by_resolution([items[k] for k in whole]).items():
            ks = [whole[k] for k in ks]
            x = torch.stack([items[k].tensor for k in ks])
            labels = labels_from_logits(model(x, out_size=res))
            for k, lab in zip(ks, labels):
                outs[k] = self.encode(lab, items[k], palette, table, version)
        size = int(meta.get("input_size", 256))
        for k, it in enumerate(items):
            if outs[k] is None:
                outs[k] = self.encode(parse_planned(model, it.image, it.plan, size), it, palette, table, version)
        return outs

    @staticmethod
    def encode(labels: np.ndarray, item: Item, palette, table, version: str) -> tuple[bytes, str]:
        opts = item.options
        if opts.format == "png":
            return imaging.label_png(labels), "image/png"
        if opts.format == "overlay":
            return imaging.overlay_png(item.image, labels, palette), "image/png"
        h, w = labels.shape
        body = {"label_table": table.name, "resolution": max(h, w), "size": [w, h], "model_version": version,
                "fractions": imaging.class_fractions(labels, table.classes)}
        if item.plan is not None:
            body["faces"] = [f.to_dict() for f in item.plan.faces]
        return json.dumps(body).encode(), "application/json"

    @staticmethod
    def agreement(a: bytes, b: bytes) -> float | None:
        try:
            return imaging.mean_iou(imaging.read_label_png(a), imaging.read_label_png(b))
        except Exception:  # noqa: BLE001 - an undecodable shadow answer counts as no agreement sample
            return None


class LandmarkCodec:
    """68 points per face, in the photo's pixels: the faces are found and framed as the parser's are
    (``locate``: no face → 422; ``X-Detect: false`` or an aligned face: the whole image is the frame)."""
    formats = ("json", "overlay")
    mirror_format = "json"
    locate = staticmethod(imaging.locate_faces)

    def warmup(self, model, x, resolution: int) -> None:
        model(x)
        warm_up()

    def run(self, model, meta, items: list[Item], palette, table, version: str) -> list[tuple[bytes, str]]:
        from ..photos import Plan, locate_points
        from ..stages.landmarks import draw_points, points_json

        size = int(meta.get("input_size", 256))
        outs = []
        for it in items:
            plan = it.plan or Plan([], None, it.image.size)
            pts = locate_points(model, it.image, plan, size)
            if it.options.format == "json":
                outs.append((points_json(pts, it.image.size, version, plan), "application/json"))
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


class CompletionCodec:
    """Map completion: the completed map M_γ (png), the occlusion mask (mask: 0/255 PNG), M_γ over the photo
    with the occluder tinted (overlay), or both maps base64-encoded with class fractions (json). A photo's
    faces are found and completed in place (``locate``: no face → 422; maps of the photo's shape, long side
    ``resolution`` when given); an aligned face or ``X-Detect: false``: whole, at ``resolution``²."""
    formats = ("png", "mask", "overlay", "json")
    mirror_format = "png"
    locate = staticmethod(imaging.locate_faces)

    def warmup(self, model, x, resolution: int) -> None:
        model(x, out_size=resolution)
        warm_up()

    def run(self, model, meta, items: list[Item], palette, table, version: str) -> list[tuple[bytes, str]]:
        import torch

        from ..complete import complete_photo
        from ..completion import Settings
        from ..stages.completion import run_maps

        settings = Settings.from_dict(meta["model_config"])
        outs: list = [None] * len(items)
        whole = [k for k, it in enumerate(items) if it.plan is None or it.plan.whole]
        for res, ks in by_resolution([items[k] for k in whole]).items():
            ks = [whole[k] for k in ks]
            maps = run_maps(model, settings, torch.stack([items[k].tensor for k in ks]), res)
            for k, m in zip(ks, maps):
                outs[k] = self.encode(m, items[k], palette, table, version)
        for k, it in enumerate(items):
            if outs[k] is None:
                outs[k] = self.encode(complete_photo(model, meta, it.image, plan=it.plan)[0], it, palette, table,
                                      version)
        return outs

    @staticmethod
    def encode(maps, item: Item, palette, table, version: str) -> tuple[bytes, str]:
        import base64

        fmt = item.options.format
        if fmt == "png":
            return imaging.label_png(maps.gamma), "image/png"
        mask = maps.occlusion.astype(np.uint8) * 255
        if fmt == "mask":
            return imaging.encode_png(mask), "image/png"
        if fmt == "overlay":
            tinted = np.where(maps.occlusion, 0, maps.gamma).astype(np.uint8)   # occluder: background colour
            return imaging.overlay_png(item.image, tinted, palette), "image/png"
        b64 = (lambda b: base64.b64encode(b).decode())
        h, w = maps.gamma.shape
        return json.dumps({"label_table": table.name, "resolution": max(h, w), "size": [w, h], "model_version": version,
                           "occluded_fraction": float(maps.occlusion.mean()),
                           "fractions": imaging.class_fractions(maps.gamma, table.classes),
                           "completed_png": b64(imaging.label_png(maps.gamma)),
                           "occlusion_png": b64(imaging.encode_png(mask))}).encode(), "application/json"

    agreement = staticmethod(ParserCodec.agreement)


class FisnCodec:
    """De-occlusion (the FISN bundle carries its completion model: one bundle is the whole chain). A photo's
    faces are found (``locate``: no face → 422) and each is de-occluded in place
    (``faceparse.deocclude.deocclude_photo``). png: the photo at its own size with the occluded pixels
    replaced by the generator's output (the default); raw: the most confident face's whole generator output
    at its size (the bundle's input size; ``resolution`` is not used); mask: the replaced pixels (0/255, the
    photo's size). The canary compares raw outputs: 1 − mean |a − b| / 255."""
    formats = ("png", "raw", "mask")
    mirror_format = "raw"
    locate = staticmethod(imaging.locate_faces)

    def warmup(self, model, x, resolution: int) -> None:
        from PIL import Image

        from ..deocclude import Chain

        Chain.of(model).run([Image.new("RGB", (x.shape[-1], x.shape[-2]))], x)
        warm_up()

    def run(self, model, meta, items: list[Item], palette, table, version: str) -> list[tuple[bytes, str]]:
        from ..deocclude import Chain, deocclude_photo

        chain = Chain.of(model, meta)
        outs = []
        for it in items:
            ans = deocclude_photo(chain, it.image, detect=it.plan is not None, plan=it.plan)
            if it.options.format == "png":
                outs.append((imaging.encode_png(ans.output), "image/png"))
            elif it.options.format == "raw":
                outs.append((imaging.encode_png(ans.faces[0].raw), "image/png"))
            else:
                outs.append((imaging.encode_png(ans.mask.astype(np.uint8) * 255), "image/png"))
        return outs

    @staticmethod
    def agreement(a: bytes, b: bytes) -> float | None:
        import io

        from PIL import Image

        try:
            x, y = (np.asarray(Image.open(io.BytesIO(v)).convert("RGB"), dtype=np.float64) for v in (a, b))
            return None if x.shape != y.shape else max(0.0, 1.0 - float(np.abs(x - y).mean()) / 255.0)
        except Exception:  # noqa: BLE001 - as above
            return None


CODECS = {"parser": ParserCodec(), "landmarks": LandmarkCodec(), "completion": CompletionCodec(), "fisn": FisnCodec(),
          "recon3d": Recon3dCodec()}


def codec_for(stage: str | None):
    try:
        return CODECS[stage or "parser"]
    except KeyError:
        raise ValueError(f"no serving codec for model stage {stage!r}; known: {sorted(CODECS)}") from None
