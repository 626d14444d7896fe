"""The 3D stage in the Python API: ``faceparse.load("recon3d")`` (``Stage.open``) → a :class:`Reconstructor`;
call it on a photo for a fitted mesh per face and their render over the photo."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...api import as_image
from ...face3d.io import landmarks_in_photo, obj_text, overlay_faces
from ...face3d.net import describe
from ...photos import paint_order, plan_photo
from .. import bundle_input_size
from .photo import load_fitter, reconstruct_photo


@dataclass
class Mesh:
    vertices: np.ndarray       # (N, 3) cm, the model's frame
    triangles: np.ndarray      # (T, 3) vertex ids
    colours: np.ndarray        # (N, 3) shaded vertex colours in [0, 1]
    coefficients: dict         # identity, expression, albedo, light, pose (faceparse.face3d.net.describe)
    points: np.ndarray         # (68, 2) the mesh's landmark vertices projected, the photo's pixels

    def obj(self, comment: str = "") -> str:
        """Wavefront OBJ text (vertex colours as the common ``v x y z r g b`` extension)."""
        return obj_text(self.vertices, self.colours, self.triangles, comment)


@dataclass
class Reconstruction:
    """`faceparse.load("recon3d")(photo)`: a mesh per face and every face rendered over the photo."""
    meshes: list               # one Mesh per face, most confident first
    render: np.ndarray         # (H, W, 3) uint8: the photo with each face's mesh drawn over it
    faces: list                # detected faces (photo pixels); [] with detection off
    crops: Any = None          # faceparse.face3d.render.Render of each face (at photo.overlay_size)
    coefficients: Any = None   # (N, K) the fitted coefficient vectors
    fit_seconds: list = field(default_factory=list)


class Reconstructor:
    """A loaded recon3d bundle (``Stage.open``); call it on a photo (path, PIL image, uint8 RGB array). Each
    face is fitted after the regressor by ``fitter`` ((FitConfig, FitInputs) from ``load_fitter``; the default
    ``"defaults"``: the ``recon3d.fit`` defaults with the shipped landmark model and parser; None: the regressor
    alone)."""

    def __init__(self, net, meta: dict[str, Any], source: str, fitter: Any = "defaults"):
        self.net, self.meta, self.source = net, meta, source
        self.fitter = load_fitter({"stage": "recon3d"}, True) if fitter == "defaults" else fitter

    def __repr__(self) -> str:
        return f"Reconstructor({self.source!r}, fitted={self.fitter is not None})"

    def __call__(self, image, detect: bool = True, plan=None) -> Reconstruction:
        """NoFaceError when detection finds no face; ``plan``: the photo's faces when already found."""
        img, what = as_image(image)
        plan = plan or plan_photo(img, bundle_input_size(self.meta), detect=detect, what=what)
        info: dict[str, Any] = {}
        y, rend, pls = reconstruct_photo(self.net, self.meta, img, plan, self.fitter, info, overlay=True)
        s = rend.image.shape[-1]
        tri = self.net.face.triangles.cpu().numpy()
        meshes = [Mesh(rend.vertices[k].detach().cpu().numpy(), tri, rend.colours[k].detach().cpu().numpy(),
                       describe(self.net.face, y[k]), landmarks_in_photo(rend, k, pls[k], s)) for k in range(len(pls))]
        pic = overlay_faces(np.asarray(img, dtype=np.uint8), rend.image, rend.mask, pls, paint_order(plan))
        return Reconstruction(meshes, pic, plan.faces, rend, y, info.get("fit_seconds", []))
