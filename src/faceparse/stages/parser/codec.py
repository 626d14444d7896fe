"""The parser's serving codec: label maps (png, overlay, json); the canary compares label maps by mean IoU.
No torch at module level: the router imports the codecs for the agreement only."""
from __future__ import annotations

import json

import numpy as np

from ...detect import warm_up
from ...photos import parse_planned
from ...serve import imaging
from ...serve.codecs import Item, by_resolution, label_agreement
from ...specks import labels_from_logits
from .. import bundle_input_size

# Imports inside functions here: the canary router stays torch-free (tests/code/test_light_imports.py)


class ParserCodec:
    """Label maps. A photo's faces are found and aligned when the request is parsed (``locate``: no face →
    422) and each is parsed in place (``faceparse.photos``); an aligned face, or ``X-Detect: false``, is
    parsed whole at ``resolution``² as before detection existed, batched by resolution."""
    formats = ("png", "overlay", "json")
    mirror_format = "png"
    min_agreement = 0.8    # the canary's least mean agreement (params serve.rollout.min_agreement overrides)
    agreement_measure = "label maps: mean IoU"

    def warmup(self, model, x, resolution: int) -> None:
        model(x, out_size=resolution)
        warm_up()   # the detector's weights loaded before any request

    locate = staticmethod(imaging.locate_faces)

    def run(self, model, meta, items: list[Item], palette, table, version: str) -> list[tuple[bytes, str]]:
        """Items parsed whole grouped by output resolution (one forward each), photos face by face →
        encoded answers, in item order."""
        import torch

        outs: list = [None] * len(items)
        whole = [k for k, it in enumerate(items) if it.plan is None or it.plan.whole]
        for res, ks in by_resolution([items[k] for k in whole]).items():
            ks = [whole[k] for k in ks]
            x = torch.stack([items[k].tensor for k in ks])
            labels = labels_from_logits(model(x, out_size=res))
            for k, lab in zip(ks, labels):
                outs[k] = self.encode(lab, items[k], palette, table, version)
        size = bundle_input_size(meta)
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

    agreement = staticmethod(label_agreement)


CODEC = ParserCodec()
