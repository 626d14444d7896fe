"""Coefficients → a rendered face: rotation, scaled orthographic projection (eq. 10), vertex normals,
spherical-harmonics Lambertian shading (eq. 11), rasterisation (faceparse.face3d.raster).

Pose ``p`` = (pitch, yaw, roll, log_scale, tx, ty): R = Rz(roll) · Ry(yaw) · Rx(pitch) (radians; camera
frame: x right, y up, z towards the camera), f = F0 · exp(log_scale) (normalised image units per cm), and
V_2d = f · P_r · R · S + t_2d in normalised coordinates ([-1, 1] across the image, y up), then pixels
x = (1 + u) W / 2, y = (1 − v) H / 2. F0 makes the mean face's landmarks (14.7 cm jaw to jaw) span half the image
width: a face crop, as the landmark and parsing stages see them.

Lighting (eq. 11): C = albedo ⊙ Σ_b γ_b Φ_b(n) per colour channel, with the 9 real spherical harmonics of
bands 0–2 times the Lambertian kernel (Ramamoorthi & Hanrahan 2001: Â_0 = π, Â_1 = 2π/3, Â_2 = π/4), n the
unit vertex normal in the camera frame; γ is 9 × 3 = 27 numbers. ``SH_AMBIENT`` is added to γ_0 of every
channel (a zero γ renders as a uniformly lit face of irradiance 1, as Deng et al. add 0.8 to theirs).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .model import FaceModel
from .raster import Fragments, interpolate, nearest, rasterize

F0 = 0.068
SH_AMBIENT = 1.0 / (math.pi * 0.282095)
SH_CONST = (0.282095, 0.488603, 1.092548, 0.315392, 0.546274)
LAMBERT = (math.pi, 2 * math.pi / 3, math.pi / 4)


def rotation(angles: torch.Tensor) -> torch.Tensor:
    """(B, 3) pitch, yaw, roll → (B, 3, 3) = Rz(roll) · Ry(yaw) · Rx(pitch)."""
    x, y, z = angles.unbind(-1)
    one, zero = torch.ones_like(x), torch.zeros_like(x)

    def mat(rows):
        return torch.stack([torch.stack(r, -1) for r in rows], -2)

    rx = mat([[one, zero, zero], [zero, x.cos(), -x.sin()], [zero, x.sin(), x.cos()]])
    ry = mat([[y.cos(), zero, y.sin()], [zero, one, zero], [-y.sin(), zero, y.cos()]])
    rz = mat([[z.cos(), -z.sin(), zero], [z.sin(), z.cos(), zero], [zero, zero, one]])
    return rz @ ry @ rx


def sh_basis(n: torch.Tensor) -> torch.Tensor:
    """Unit normals (..., 3) → (..., 9): the bands 0–2 real SH times the Lambertian kernel."""
    x, y, z = n.unbind(-1)
    c0, c1, c2, c20, c22 = SH_CONST
    a0, a1, a2 = LAMBERT
    return torch.stack([a0 * c0 * torch.ones_like(x), a1 * c1 * y, a1 * c1 * z, a1 * c1 * x,
                        a2 * c2 * x * y, a2 * c2 * y * z, a2 * c20 * (3 * z * z - 1), a2 * c2 * x * z,
                        a2 * c22 * (x * x - y * y)], -1)


def shade(albedo: torch.Tensor, normals: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """Eq. 11: albedo (B, N, 3) ⊙ irradiance; ``gamma`` (B, 27) = 9 coefficients per RGB channel (band-major:
    γ[b·3 + c]); SH_AMBIENT is added to band 0."""
    g = gamma.view(-1, 9, 3) + torch.tensor([SH_AMBIENT] + [0.0] * 8, dtype=gamma.dtype, device=gamma.device)[:, None]
    return albedo * torch.einsum("bnk,bkc->bnc", sh_basis(normals), g)


def vertex_normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(B, N, 3) → unit area-weighted vertex normals (outward for the model's counter-clockwise winding)."""
    b, n, _ = verts.shape
    tri = verts[:, faces]                                           # (B, T, 3, 3)
    e1, e2 = tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0]
    fn = torch.stack([e1[..., 1] * e2[..., 2] - e1[..., 2] * e2[..., 1], e1[..., 2] * e2[..., 0] - e1[..., 0] * e2[..., 2],
                      e1[..., 0] * e2[..., 1] - e1[..., 1] * e2[..., 0]], -1)      # (B, T, 3), |fn| = 2 · area
    inc = _incidence(faces, n, verts.device)                        # (N, T) sparse: vertex in triangle
    vn = torch.sparse.mm(inc, fn.permute(1, 0, 2).reshape(fn.shape[1], b * 3)).view(n, b, 3).permute(1, 0, 2)
    return nn.functional.normalize(vn, dim=-1, eps=1e-12)


_INCIDENCE: dict = {}


def _incidence(faces: torch.Tensor, n: int, device) -> torch.Tensor:
    """The sparse (N, T) vertex–triangle incidence matrix (cached per faces tensor and device)."""
    key = (faces.data_ptr(), tuple(faces.shape), n, str(device))
    if key not in _INCIDENCE:
        with torch.inference_mode(False):   # made under inference mode, a cached tensor would refuse autograd later
            _INCIDENCE[key] = _incidence_matrix(faces, n, device)
    return _INCIDENCE[key]


def _incidence_matrix(faces: torch.Tensor, n: int, device) -> torch.Tensor:
    t = faces.shape[0]
    rows = faces.clone().reshape(-1)   # an inference tensor in, a normal one out
    cols = torch.arange(t, device=faces.device).repeat_interleave(3)
    return torch.sparse_coo_tensor(torch.stack([rows, cols]), torch.ones(3 * t, device=faces.device),
                                   (n, t), check_invariants=True).coalesce().to(device)


def project(verts: torch.Tensor, pose: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eq. 10. (B, N, 3) model vertices, (B, 6) pose → (screen pixels (B, N, 2), depth (B, N), rotated
    vertices (B, N, 3))."""
    rot = rotation(pose[:, :3])
    cam = verts @ rot.transpose(1, 2)
    f = (F0 * pose[:, 3].exp())[:, None]
    u = f * cam[..., 0] + pose[:, 4:5]
    v = f * cam[..., 1] + pose[:, 5:6]
    xy = torch.stack([(1 + u) * (size / 2), (1 - v) * (size / 2)], -1)
    return xy, cam[..., 2], cam


@dataclass
class Render:
    image: torch.Tensor       # (B, 3, S, S) linear RGB, 0 outside the face
    mask: torch.Tensor        # (B, 1, S, S) float: 1 where the face is seen
    landmarks: torch.Tensor   # (B, 68, 2) screen pixels
    vertices: torch.Tensor    # (B, N, 3) cm, model frame (shape only: what the metrics align)
    colours: torch.Tensor     # (B, N, 3) shaded vertex colours
    xy: torch.Tensor          # (B, N, 2) screen pixels
    frags: Fragments


class Renderer(nn.Module):
    """Coefficient vector (B, K) → Render at ``size``²."""

    def __init__(self, face: FaceModel, size: int, cull: bool = True):
        super().__init__()
        self.face, self.size, self.cull = face, int(size), bool(cull)

    def forward(self, y: torch.Tensor, size: int | None = None) -> Render:
        c = self.face.split(y)
        s = int(size or self.size)
        verts = self.face.vertices(c["id"], c["exp"])
        xy, depth, cam = project(verts, c["pose"], s)
        normals = vertex_normals(cam, self.face.triangles)
        colours = shade(self.face.albedo(c["albedo"]), normals, c["sh"])
        frags = rasterize(xy, depth, self.face.triangles, (s, s), cull=self.cull)
        image = interpolate(colours, xy, frags)
        return Render(image, frags.mask[:, None].to(image.dtype), xy[:, self.face.landmarks], verts, colours, xy, frags)

    def parts(self, out: Render) -> torch.Tensor:
        """The rendered face-part map (B, S, S) (CelebAMask-HQ ids, 0 = not face): the parsing map the
        renderer knows."""
        return nearest(self.face.parts, out.xy, out.frags)
