"""The 3D reconstruction stage's serving codec: ``json`` (the coefficients, the pose spelt out and the 68
projected landmark vertices in the photo's pixels; the default), ``obj`` (the mesh, vertex colours) or
``overlay`` (the render over the photo, PNG). The canary compares JSON answers by their landmarks (1 − NME).
No torch at module level: the router imports the codecs for the agreement only."""
from __future__ import annotations


class Recon3dCodec:
    formats = ("json", "obj", "overlay")
    mirror_format = "json"

    def warmup(self, model, x, resolution: int) -> None:
        model.render(model(x).float(), x.shape[-1])

    def run(self, model, meta, items, palette, table, version: str) -> list[tuple[bytes, str]]:
        import torch

        from ..face3d.io import answer_item, reconstruct

        x = torch.stack([it.tensor for it in items])
        y, out = reconstruct(model, x)
        return [answer_item(model.face, out, y, k, it.image, it.options.format, x.shape[-1], version)
                for k, it in enumerate(items)]

    @staticmethod
    def agreement(a: bytes, b: bytes) -> float | None:
        """1 − the NME between the two answers' projected landmarks (None: not two JSON answers)."""
        import json

        import numpy as np

        from ..landmarks import inter_ocular

        try:
            pa, pb = (np.asarray(json.loads(x)["landmarks"], dtype=np.float64) for x in (a, b))
            return max(0.0, 1.0 - float(np.linalg.norm(pa - pb, axis=-1).mean() / inter_ocular(pa)))
        except Exception:  # noqa: BLE001 - an undecodable shadow answer counts as no agreement sample
            return None
