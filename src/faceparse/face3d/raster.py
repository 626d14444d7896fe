"""A differentiable triangle rasteriser in plain PyTorch (batched; CPU and CUDA).

Two halves, as nvdiffrast / pytorch3d split them:

- ``rasterize`` (no gradient): which triangle each pixel centre sees. Every triangle enumerates the pixel
  centres of its bounding box (``repeat_interleave``: no Python loop over triangles), keeps those inside it
  (edge functions), and a z-buffer (``scatter_reduce`` amin of depth per pixel, ties to the highest triangle
  index) picks the nearest. Back faces (clockwise on screen for the model's counter-clockwise winding, y
  down) are culled when ``cull`` is set.
- ``barycentrics`` / ``interpolate`` (with gradient): the barycentric coordinates of each covered pixel centre
  in its triangle, recomputed from the screen-space vertices, so gradients reach vertex positions (through
  the weights) and vertex attributes (colours, normals, depth). Coverage itself has no gradient (no
  anti-aliasing term); losses over the face region learn from the interior, as in Deng et al.

Screen space: x right, y down, in pixels; pixel (i, j) covers [j, j+1) × [i, i+1), its centre is
(j + 0.5, i + 0.5). Depth: larger ``z`` is nearer the camera.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

EPS = 1e-9


@dataclass
class Fragments:
    tri: torch.Tensor       # (B, H, W) long: index of the visible triangle, -1 where none
    faces: torch.Tensor     # (T, 3) long: the triangles (vertex indices)

    @property
    def mask(self) -> torch.Tensor:
        return self.tri >= 0


def _edge(ax, ay, bx, by, px, py):
    return (bx - ax) * (py - ay) - (by - ay) * (px - ax)


@torch.no_grad()
def rasterize(xy: torch.Tensor, z: torch.Tensor, faces: torch.Tensor, size: tuple[int, int],
              cull: bool = True, max_candidates: int = 50_000_000) -> Fragments:
    """``xy`` (B, N, 2) screen pixels, ``z`` (B, N) depth, ``faces`` (T, 3) → Fragments (B, H, W)."""
    h, w = size
    b, t = xy.shape[0], faces.shape[0]
    v = xy.detach()[:, faces].reshape(b * t, 3, 2)              # (B·T, 3, 2)
    area = _edge(v[:, 0, 0], v[:, 0, 1], v[:, 1, 0], v[:, 1, 1], v[:, 2, 0], v[:, 2, 1])
    keep = area.abs() > EPS                                     # area > 0: clockwise on screen (y down) = back face
    if cull:
        keep &= area < 0
    lo = torch.ceil(v.amin(1) - 0.5).clamp(min=0)               # (B·T, 2) first / last pixel index inside the box
    hi = torch.minimum(torch.floor(v.amax(1) - 0.5), torch.tensor([w - 1.0, h - 1.0], dtype=v.dtype, device=v.device))
    size_ = (hi - lo + 1).clamp(min=0)
    keep &= (size_ > 0).all(1)
    ids = torch.nonzero(keep).squeeze(1)                        # only the triangles that can cover a pixel centre
    v, area, lo, bw = v[ids], area[ids], lo[ids], size_[ids, 0].long()
    count = bw * size_[ids, 1].long()
    total = int(count.sum())
    if total > max_candidates:
        raise ValueError(f"rasterize: {total} candidate pixels (a degenerate projection?); limit {max_candidates}")
    k = torch.repeat_interleave(torch.arange(len(ids), device=xy.device), count)
    local = torch.arange(total, device=xy.device) - (torch.cumsum(count, 0) - count)[k]
    bwk = bw[k]
    px = lo[k, 0] + (local % bwk) + 0.5
    py = lo[k, 1] + torch.div(local, bwk, rounding_mode="floor") + 0.5
    c = v[k]                                                    # (P, 3, 2)
    a = area[k]
    w0 = _edge(c[:, 1, 0], c[:, 1, 1], c[:, 2, 0], c[:, 2, 1], px, py) / a
    w1 = _edge(c[:, 2, 0], c[:, 2, 1], c[:, 0, 0], c[:, 0, 1], px, py) / a
    w2 = 1.0 - w0 - w1
    inside = (w0 >= 0) & (w1 >= 0) & (w2 >= 0)
    flat = ids[k]
    zt = z.detach()[:, faces].reshape(b * t, 3)[flat]
    depth = -(w0 * zt[:, 0] + w1 * zt[:, 1] + w2 * zt[:, 2])     # smaller = nearer
    batch = torch.div(flat, t, rounding_mode="floor")
    pix = (batch * h + (py - 0.5).long()) * w + (px - 0.5).long()
    pix, depth, tri = pix[inside], depth[inside], (flat % t)[inside]
    zbuf = torch.full((b * h * w,), float("inf"), device=xy.device, dtype=depth.dtype)
    zbuf.scatter_reduce_(0, pix, depth, "amin")
    win = depth <= zbuf[pix]
    owner = torch.full((b * h * w,), -1, device=xy.device, dtype=torch.long)
    owner.scatter_reduce_(0, pix[win], tri[win], "amax")
    return Fragments(owner.view(b, h, w), faces)


def barycentrics(xy: torch.Tensor, frags: Fragments) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(index of covered pixels in B·H·W, their vertex indices (P, 3) offset by batch, weights (P, 3)), the
    weights differentiable w.r.t. ``xy``."""
    b, h, w = frags.tri.shape
    n = xy.shape[1]
    pix = torch.nonzero(frags.tri.view(-1) >= 0).squeeze(1)
    batch = torch.div(pix, h * w, rounding_mode="floor")
    rest = pix % (h * w)
    py = torch.div(rest, w, rounding_mode="floor").to(xy.dtype) + 0.5
    px = (rest % w).to(xy.dtype) + 0.5
    vid = frags.faces[frags.tri.view(-1)[pix]] + (batch * n)[:, None]        # (P, 3)
    p = xy.reshape(-1, 2)[vid]                                               # (P, 3, 2)
    x0, y0, x1, y1, x2, y2 = p[:, 0, 0], p[:, 0, 1], p[:, 1, 0], p[:, 1, 1], p[:, 2, 0], p[:, 2, 1]
    area = _edge(x0, y0, x1, y1, x2, y2)
    w0 = _edge(x1, y1, x2, y2, px, py) / area
    w1 = _edge(x2, y2, x0, y0, px, py) / area
    return pix, vid, torch.stack([w0, w1, 1.0 - w0 - w1], 1)


def interpolate(attr: torch.Tensor, xy: torch.Tensor, frags: Fragments, background: float = 0.0) -> torch.Tensor:
    """Vertex attributes (B, N, C) → an image (B, C, H, W): barycentric interpolation where a triangle is
    visible, ``background`` elsewhere."""
    b, h, w = frags.tri.shape
    c = attr.shape[-1]
    pix, vid, bary = barycentrics(xy, frags)
    vals = (attr.reshape(-1, c)[vid] * bary[..., None]).sum(1)              # (P, C)
    out = torch.full((b * h * w, c), float(background), dtype=attr.dtype, device=attr.device)
    out = out.index_put((pix,), vals)
    return out.view(b, h, w, c).permute(0, 3, 1, 2)


def nearest(labels: torch.Tensor, xy: torch.Tensor, frags: Fragments) -> torch.Tensor:
    """Integer vertex labels (N,) → (B, H, W) long: the label of the covered pixel's nearest triangle vertex
    (largest barycentric weight), 0 where nothing is covered."""
    b, h, w = frags.tri.shape
    with torch.no_grad():
        pix, vid, bary = barycentrics(xy, frags)
        n = xy.shape[1]
        best = vid.gather(1, bary.argmax(1, keepdim=True)).squeeze(1) % n
        out = torch.zeros(b * h * w, dtype=torch.long, device=xy.device)
        out[pix] = labels[best]
    return out.view(b, h, w)
