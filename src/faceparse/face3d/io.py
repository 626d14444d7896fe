"""What a reconstruction answers: the coefficients (JSON), the mesh (OBJ with per-vertex colours) and the
render over the photo. Shared by `faceparse reconstruct`, serving (faceparse.stages.recon3d.codec) and the
evaluation's contact sheet."""
from __future__ import annotations

import io
import json

import numpy as np
import torch

from ..align import Placement
from ..photos import paste_image
from ..serve.imaging import encode_png
from .net import describe

OVERLAY_ALPHA = 0.75


@torch.no_grad()
def obj_text(vertices: np.ndarray, colours: np.ndarray, faces: np.ndarray, comment: str = "") -> str:
    """Wavefront OBJ: ``v x y z r g b`` (cm; colours clipped to [0, 1], the common vertex-colour extension),
    1-based triangles."""
    buf = io.StringIO()
    if comment:
        buf.write("".join(f"# {line}\n" for line in comment.splitlines()))
    rgb = np.clip(colours, 0.0, 1.0)
    np.savetxt(buf, np.hstack([vertices, rgb]), fmt="v %.4f %.4f %.4f %.4f %.4f %.4f")
    np.savetxt(buf, np.asarray(faces) + 1, fmt="f %d %d %d")
    return buf.getvalue()


def overlay(photo: np.ndarray, image: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """The render (3, S, S) in [0, 1] with its mask (1, S, S) blended over the whole photo (H, W, 3) uint8."""
    return overlay_faces(photo, image[None], mask[None], [Placement.whole(photo.shape[1], photo.shape[0])])


def overlay_faces(photo: np.ndarray, images, masks, placements: list, order: list[int] | None = None) -> np.ndarray:
    """Each face's render ``images[k]`` (3, S, S) in [0, 1], ``masks[k]`` (1, S, S), blended over the photo
    (H, W, 3) uint8 where it was cropped (``faceparse.photos.crop_placements``), in ``order`` (last on top)."""
    res = photo
    for k in (order if order is not None else range(len(placements))):
        rgb = images[k].clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255.0
        res = paste_image(res, rgb, masks[k][0].cpu().numpy() * OVERLAY_ALPHA, placements[k], feather=0)
    return res


def landmarks_in_photo(out, k: int, placement, size: int) -> np.ndarray:
    """Item ``k``'s projected landmarks in the photo's pixels (the model saw the crop ``placement`` at ``size``²)."""
    return placement.points_to_photo(out.landmarks[k].cpu().numpy(), size)


def coeffs_json(face, y: np.ndarray, points: np.ndarray, image_size: tuple[int, int], version: str = "") -> bytes:
    return json.dumps({**describe(face, y), "landmarks": np.round(points, 3).tolist(), "image_size": list(image_size),
                       "landmark_convention": "iBUG 68 landmark vertices projected, (x, y) pixels of the input image",
                       **({"model_version": version} if version else {})}).encode()


def mesh_obj(face, out, k: int, comment: str = "") -> str:
    return obj_text(out.vertices[k].cpu().numpy(), out.colours[k].cpu().numpy(), face.triangles.cpu().numpy(), comment)


def answer_item(face, out, y: np.ndarray, k: int, photo, fmt: str, size: int, placements: list, order: list[int],
                version: str = "") -> tuple[bytes, str]:
    """One served answer for a photo whose faces are items ``order`` of ``out`` (``placements``: where each was
    cropped; item ``k`` the most confident): ``json`` (its coefficients + landmarks in the photo's pixels),
    ``obj`` (its mesh) or ``overlay`` (every face's render over the photo, PNG)."""
    if fmt == "json":
        pts = landmarks_in_photo(out, k, placements[k], size)
        return coeffs_json(face, y[k], pts, photo.size, version), "application/json"
    if fmt == "obj":
        return mesh_obj(face, out, k, f"faceparse recon3d {version}".strip()).encode(), "text/plain"

    return encode_png(overlay_faces(np.asarray(photo.convert("RGB")), out.image, out.mask, placements, order)), "image/png"
