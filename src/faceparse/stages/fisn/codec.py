"""The FISN stage's serving codec: the de-occluded photo, the raw generator output or the mask; the canary
compares raw outputs. No torch at module level: the router imports the codecs for the agreement only."""
from __future__ import annotations

import io

import numpy as np

from ...detect import warm_up
from ...serve import imaging
from ...serve.codecs import Item

# Imports inside functions here: the canary router stays torch-free (tests/code/test_light_imports.py)


class FisnCodec:
    """De-occlusion (the FISN bundle carries its completion model: one bundle is the whole chain). A photo's
    faces are found (``locate``: no face → 422) and each is de-occluded in place
    (``faceparse.stages.fisn.photo.deocclude_photo``). png: the photo at its own size with the occluded pixels
    replaced by the generator's output (the default); raw: the most confident face's whole generator output
    at its size (the bundle's input size; ``resolution`` is not used); mask: the replaced pixels (0/255, the
    photo's size). The canary compares raw outputs: 1 − mean |a − b| / 255."""
    formats = ("png", "raw", "mask")
    mirror_format = "raw"
    min_agreement = 0.9    # the canary's least mean agreement (params serve.rollout.min_agreement overrides)
    agreement_measure = "raw outputs: 1 − mean |a − b| / 255"
    locate = staticmethod(imaging.locate_faces)

    def warmup(self, model, x, resolution: int) -> None:
        from PIL import Image

        from .photo import Chain

        Chain.of(model).run([Image.new("RGB", (x.shape[-1], x.shape[-2]))], x)
        warm_up()

    def run(self, model, meta, items: list[Item], palette, table, version: str) -> list[tuple[bytes, str]]:
        from .photo import Chain, deocclude_photo

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
        from PIL import Image

        try:
            x, y = (np.asarray(Image.open(io.BytesIO(v)).convert("RGB"), dtype=np.float64) for v in (a, b))
            return None if x.shape != y.shape else max(0.0, 1.0 - float(np.abs(x - y).mean()) / 255.0)
        except Exception:  # noqa: BLE001 - as above
            return None


CODEC = FisnCodec()
