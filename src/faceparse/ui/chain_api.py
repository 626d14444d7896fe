"""``POST /api/chain`` of the page's server: the whole chain (faceparse.chain) on one photo, every output in
one JSON answer — the parser's map and the completed map (label PNGs: pixel value = class id), the occlusion
mask (PNG, 255 = replaced), the de-occluded photo and the meshes rendered over it (PNG), each at the photo's
own size and base64; the 68 points per face; per face the mesh's coefficients, projected landmark points and
its OBJ text; each stage's seconds.

The chain runs in this process on the models shipped with faceparse (or ``models``), loaded on the first
request, on a worker thread of its own (one photo at a time). No face → 422; a chain that cannot load → 409
with the reason; a photo the page cannot use is refused by the page's own checks (400 / 413 / 415).
"""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ..api import CHAIN_STAGES
from ..serve.imaging import encode_png, label_png
from .cards import b64

# Imports inside functions here: the page in endpoint mode never loads torch (tests/code/test_light_imports.py)


class ChainUnavailable(RuntimeError):
    """The chain's models could not be loaded (the message says why)."""


class ChainRoute:
    def __init__(self, models: dict[str, str | None] | None = None):
        """``models``: the page's --model STAGE=REF; those of the chain's stages are used, the others ignored."""
        self.models = {k: v for k, v in (models or {}).items() if v and k in CHAIN_STAGES}
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="faceparse-chain")
        self._chain = None

    def _loaded(self):
        if self._chain is None:
            # imported here, not at the top: the page in endpoint mode never imports torch unless asked
            from ..chain import load_chain

            try:
                self._chain = load_chain(self.models)
            except (FileNotFoundError, ValueError) as e:
                raise ChainUnavailable(f"the chain's models cannot be loaded: {e}") from None
        return self._chain

    def _run(self, image, detect: bool) -> dict[str, Any]:
        return answer(self._loaded()(image, detect=detect))

    async def run(self, image, detect: bool) -> dict[str, Any]:
        return await asyncio.get_running_loop().run_in_executor(self.pool, self._run, image, detect)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def answer(r) -> dict[str, Any]:
    """A faceparse.chain.ChainResult as the endpoint's JSON."""
    w, h = r.image.size
    return {
        "size": [w, h], "faces": [f.to_dict() for f in r.faces], "seconds": r.seconds,
        "labels_png": b64(label_png(r.labels)), "completed_png": b64(label_png(r.completed)),
        "occlusion_png": b64(encode_png(r.occlusion.astype(np.uint8) * 255)),
        "deoccluded_png": b64(encode_png(r.deoccluded)), "mesh_overlay_png": b64(encode_png(r.render)),
        "points": [np.round(p, 2).tolist() for p in r.points],
        "meshes": [{"coefficients": m.coefficients, "points": np.round(m.points, 2).tolist(),
                    "vertices": int(len(m.vertices)), "obj": m.obj()} for m in r.meshes],
    }
