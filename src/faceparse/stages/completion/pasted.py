"""Map completion scored on real faces: the labelled photos with occluders pasted at known masks
(faceparse.occluders), each completed as a user's photo is (found, aligned, warped back); mean F1 over the face
classes inside the occluded face region of the parser's map M_α and the completed map M_γ against the photo's
label map, and the IoU of the occlusion mask with that region — overall and per occluder kind."""
from __future__ import annotations

import numpy as np
from PIL import Image

from ...log import progress_bar
from ...occluders import FACE_IDS, KINDS, Pasted
from .algorithm import MaskIoU, RegionScores
from .photo import complete_photo

MAPS = ("alpha", "gamma")


class _Tally:
    def __init__(self):
        self.scores = {m: RegionScores(np.array(FACE_IDS)) for m in MAPS}
        self.mask = MaskIoU()

    def add(self, maps, case: Pasted) -> None:
        for m in MAPS:
            self.scores[m].update(getattr(maps, m), case.labels, case.region)
        self.mask.update(maps.occlusion, case.region)

    def result(self) -> dict:
        return {**{f"f1_occluded_{m}": self.scores[m].compute()["f1"] for m in MAPS},
                "occlusion_iou": self.mask.compute()}


def score_pasted(net, meta: dict, cases: list[Pasted], detect: bool = True, progress: bool = True) -> dict:
    """The completion model on every case at its label map's size → {f1_occluded_alpha, f1_occluded_gamma,
    occlusion_iou, n_cases, per_kind}."""
    total, kinds = _Tally(), {k: _Tally() for k in KINDS}
    with progress_bar("complete pasted photos", len(cases), enabled=progress) as advance:
        for c in cases:
            maps, _ = complete_photo(net, meta, Image.fromarray(c.photo), resolution=max(c.photo.shape[:2]),
                                     detect=detect, what=f"{c.name} ({c.kind})")
            total.add(maps, c)
            kinds[c.kind].add(maps, c)
            advance(1)
    present = {k: t.result() for k, t in kinds.items() if any(c.kind == k for c in cases)}
    return {**total.result(), "n_cases": len(cases), "per_kind": present}


def markdown(result: dict) -> str:
    lines = ["| occluder | F1 occluded M_α (parser) | F1 occluded M_γ (completed) | occlusion mask IoU |",
             "|---|---|---|---|"]
    for name, g in [*result["per_kind"].items(), ("**all**", result)]:
        lines.append(f"| {name} | {100 * g['f1_occluded_alpha']:.1f} | {100 * g['f1_occluded_gamma']:.1f} | "
                     f"{100 * g['occlusion_iou']:.1f} |")
    return "\n".join(lines) + "\n"
