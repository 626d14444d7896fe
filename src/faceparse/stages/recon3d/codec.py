"""The 3D reconstruction stage's serving codec: ``json`` (the coefficients, the pose spelt out and the 68
projected landmark vertices in the photo's pixels; the default), ``obj`` (the mesh, vertex colours) or
``overlay`` (the render over the photo, PNG). The canary compares JSON answers by their landmarks (1 − NME).
No torch at module level: the router imports the codecs for the agreement only."""
from __future__ import annotations

from ...detect import warm_up
from ...photos import Plan, paint_order
from ...serve.codecs import points_agreement
from ...serve.imaging import locate_faces
from .. import bundle_input_size
from .photo import reconstruct_photo

# Imports inside functions here: the canary router stays torch-free (tests/code/test_light_imports.py)


class Recon3dCodec:
    """A photo's faces are found (``locate``: no face → 422) and each is cropped as the 3D training faces were
    framed (``faceparse.stages.recon3d.photo.reconstruct_photo``): the answer speaks of the most confident face, the
    overlay shows every face; an aligned face or ``X-Detect: false``: the image whole."""
    formats = ("json", "obj", "overlay")
    mirror_format = "json"
    min_agreement = 0.95    # the canary's least mean agreement (params serve.rollout.min_agreement overrides)
    agreement_measure = "projected landmarks: 1 − NME"

    locate = staticmethod(locate_faces)

    def warmup(self, model, x, resolution: int) -> None:
        model.render(model(x).float(), x.shape[-1])
        warm_up()

    def run(self, model, meta, items, palette, table, version: str) -> list[tuple[bytes, str]]:
        from ...face3d.io import answer_item

        size = bundle_input_size(meta)
        outs = []
        for it in items:
            plan = it.plan or Plan([], None, it.image.size)
            y, out, pls = reconstruct_photo(model, meta, it.image, plan)
            outs.append(answer_item(model.face, out, y, 0, it.image, it.options.format, size, pls, paint_order(plan),
                                    version))
        return outs

    @staticmethod
    def agreement(a: bytes, b: bytes) -> float | None:
        return points_agreement(a, b, "landmarks")


CODEC = Recon3dCodec()
