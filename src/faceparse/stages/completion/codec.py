"""The completion stage's serving codec: M_γ, the occlusion mask, an overlay or JSON; the canary compares M_γ
by mean IoU. No torch at module level: the router imports the codecs for the agreement only."""
from __future__ import annotations

import base64
import json

import numpy as np

from ...detect import warm_up
from ...serve import imaging
from ...serve.codecs import Item, by_resolution, label_agreement

# Imports inside functions here: the canary router stays torch-free (tests/code/test_light_imports.py)


class CompletionCodec:
    """Map completion: the completed map M_γ (png), the occlusion mask (mask: 0/255 PNG), M_γ over the photo
    with the occluder tinted (overlay), or both maps base64-encoded with class fractions (json). A photo's
    faces are found and completed in place (``locate``: no face → 422; maps of the photo's shape, long side
    ``resolution`` when given); an aligned face or ``X-Detect: false``: whole, at ``resolution``²."""
    formats = ("png", "mask", "overlay", "json")
    mirror_format = "png"
    min_agreement = 0.8    # the canary's least mean agreement (params serve.rollout.min_agreement overrides)
    agreement_measure = "completed maps: mean IoU"
    locate = staticmethod(imaging.locate_faces)

    def warmup(self, model, x, resolution: int) -> None:
        model(x, out_size=resolution)
        warm_up()

    def run(self, model, meta, items: list[Item], palette, table, version: str) -> list[tuple[bytes, str]]:
        import torch

        from .algorithm import Settings
        from .maps import run_maps
        from .photo import complete_photo

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

    agreement = staticmethod(label_agreement)


CODEC = CompletionCodec()
