"""The landmark stage's serving codec: 68 points per face (json, overlay); the canary compares points (1 − NME).
No torch at module level: the router imports the codecs for the agreement only."""
from __future__ import annotations

from ...detect import warm_up
from ...photos import Plan, locate_points
from ...serve import imaging
from ...serve.codecs import Item, points_agreement
from .. import bundle_input_size
from .photo import draw_points, points_json


class LandmarkCodec:
    """68 points per face, in the photo's pixels: the faces are found and framed as the parser's are
    (``locate``: no face → 422; ``X-Detect: false`` or an aligned face: the whole image is the frame)."""
    formats = ("json", "overlay")
    mirror_format = "json"
    min_agreement = 0.95    # the canary's least mean agreement (params serve.rollout.min_agreement overrides)
    agreement_measure = "points: 1 − NME"
    locate = staticmethod(imaging.locate_faces)

    def warmup(self, model, x, resolution: int) -> None:
        model(x)
        warm_up()

    def run(self, model, meta, items: list[Item], palette, table, version: str) -> list[tuple[bytes, str]]:
        size = bundle_input_size(meta)
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
        return points_agreement(a, b, "points")


CODEC = LandmarkCodec()
