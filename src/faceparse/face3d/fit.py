"""Per-face fitting of the face model (issue #32 "3D by fitting"): after the regressor, refine identity,
expression and pose (then albedo and light) of each face against what the other stages see in its image.

Why: the regressor reads no identity (its outputs stay at the mean face), while the image does — the 68
landmark points (a linear map from the 68 true points reaches p90 2.99 mm against the mean face's 4.49), the
face's outline, its shading. Fitting is maximum a posteriori under the model's own priors:

``E(θ) = E_lmk + E_sil + ‖α‖² / σ_α² + ‖β‖² / σ_β²`` (+ ``E_pix`` in the photometric phase)

- (a) landmarks ``E_lmk = Σ_i w_i ‖π(V_i(α, β), p) − q_i‖² / σ²``: ``q`` the landmark stage's 68 points
  (image units [0, 1]), ``V_i`` the model's 68 landmark vertices (``FaceModel.landmarks``: the vertices
  synth3d projects for its ``landmarks/``), ``π`` eq. 10's scaled orthographic projection, ``σ`` the points'
  noise as a fraction of the face's inter-ocular distance (``sigma_lmk``), ``w_i`` per point (the jaw,
  hardest to place: ``w_jaw``);
- (b) silhouette ``E_sil``: the model's outline against the parser's face region. Each iteration renders
  the face's coverage (no gradient), takes the vertices on its outer outline (holes filled; the neck's, whose
  lower edge is no outline of a real face, left out), and pulls each to the region's boundary: residual =
  the signed distance (pixels) of its projection to the region of ``region`` (the parser's face classes and
  the neck), over ``sigma_sil`` inter-ocular distances; a point whose nearest boundary does not face the
  background (hair, a hat, an occluder, the image's edge: the outline is not seen there) has no weight.
  The term counts as ``n_sil`` independent points whatever the outline's length;
- priors: ICT-FaceKit's identity weights are N(0, 1) per mode (its PCA variances are in the basis), so
  ``σ_α`` = 1 (``sigma_id``); the expression blendshapes are weights in [0, 1] — a Gaussian pull to 0
  (``sigma_exp``) and a projection onto [0, 1] after each step;
- solver: Levenberg–Marquardt on the residual vector (the shape columns of the Jacobian in closed form, the
  pose's by forward differentiation; batched), a fixed number of iterations ``steps``: the bound on its cost.
  The pose starts from a closed-form scaled-orthographic fit of the landmark vertices to the points (the
  regressor's pose is far off: landmark NME 0.14), identity and expression from the regressor;
- (c) photometric: then ``photo_steps`` Adam steps on the rendered image (the differentiable rasteriser of
  faceparse.face3d.raster) against the photo over the *visible skin only*: pixels the render covers that the
  caller's ``visible`` mask keeps (the parser's skin classes with the completion stage's occlusion mask taken
  out) — an occluded pixel has no weight, so an occluder cannot pull the face. ``E_pix`` = the mean squared RGB
  error over those pixels / ``sigma_pix²``, beside the landmark term and the priors; albedo (a weak prior) and
  SH light are fitted with it, first alone (``light_steps``) so that the shape is not bent to explain the light.

Everything is batched (B faces at once) and runs on the coefficients' device.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from ..labels import CELEBAMASK_HQ, CELEBAMASK_HQ as T
from .fit_config import FitConfig
from .raster import barycentrics, rasterize
from .render import F0, project, rotation

JAW = slice(0, 17)
# the parser's classes the mesh covers (CelebAMask-HQ ids): face, ears, neck; the outline is trusted only where
# the region meets one of OUTSIDE (background, clothes)
REGION = ("skin", "nose", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear", "mouth", "u_lip", "l_lip", "neck")
OUTSIDE = ("background", "cloth")
SKIN = ("skin", "nose", "l_brow", "r_brow", "u_lip", "l_lip")


@dataclass
class FitResult:
    y: torch.Tensor               # (B, K) the fitted coefficients
    seconds: float                # wall time of the whole fit
    lm_iters: int                 # Levenberg–Marquardt iterations run
    photo_iters: int              # Adam steps run
    lmk_rms: torch.Tensor         # (B,) landmark RMS after the fit, fraction of the inter-ocular distance
    history: list[float]          # the mean energy after each iteration (landmark phase, then photometric)


def inter_ocular(points: torch.Tensor) -> torch.Tensor:
    """(B, 68, 2) → (B,) the outer eye corners' distance (iBUG 36 and 45)."""
    return (points[:, 36] - points[:, 45]).norm(dim=-1).clamp_min(1e-6)


def _euler(rot: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) R = Rz(roll) · Ry(yaw) · Rx(pitch) → (B, 3) pitch, yaw, roll."""
    yaw = torch.asin((-rot[:, 2, 0]).clamp(-1.0, 1.0))
    pitch = torch.atan2(rot[:, 2, 1], rot[:, 2, 2])
    roll = torch.atan2(rot[:, 1, 0], rot[:, 0, 0])
    return torch.stack([pitch, yaw, roll], -1)


def pose_from_points(shape: torch.Tensor, points: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Closed-form scaled orthographic pose: 3D points ``shape`` (B, L, 3) cm seen at ``points`` (B, L, 2) in
    [0, 1] image units (y down) → pose (B, 6) in ``render.project``'s layout. An affine camera by (weighted)
    least squares, its two rows made orthonormal (SVD) with their mean norm as the scale."""
    b, n, _ = shape.shape
    w = torch.ones(b, n, dtype=shape.dtype, device=shape.device) if weights is None else weights.to(shape.dtype)
    uv = torch.stack([2 * points[..., 0] - 1, 1 - 2 * points[..., 1]], -1).to(shape.dtype)     # normalised, y up
    xh = torch.cat([shape, torch.ones_like(shape[..., :1])], -1)                                # (B, L, 4)
    sw = w.sqrt()[..., None]
    sol = torch.linalg.lstsq(xh * sw, uv * sw).solution                                         # (B, 4, 2)
    a = sol[:, :3].transpose(1, 2)                                                              # (B, 2, 3)
    u, s, vt = torch.linalg.svd(a, full_matrices=False)
    r12 = u @ vt                                                                                # (B, 2, 3) orthonormal rows
    r3 = torch.cross(r12[:, 0], r12[:, 1], dim=-1)
    rot = torch.cat([r12, r3[:, None]], 1)
    scale = s.mean(-1)
    t = ((uv - scale[:, None, None] * (shape @ r12.transpose(1, 2))) * w[..., None]).sum(1) / w.sum(1, keepdim=True)
    return torch.cat([_euler(rot), torch.log(scale / F0)[:, None], t], -1)


# ------------------------------------------------------------------------------------------ the outline
def outline_targets(parse: np.ndarray, occluded: np.ndarray | None = None) -> np.ndarray:
    """A parsing map (H, W) of CelebAMask-HQ ids (and the occlusion mask) → float32 (3, H, W): the signed
    distance in pixels to the face region's boundary (positive outside), and the trust of the nearest
    boundary (1 where the region meets the background or clothes there, else 0)."""
    parse = np.asarray(parse)
    region = np.isin(parse, [T.index(n) for n in REGION])
    if occluded is not None:
        region |= np.asarray(occluded, bool)
    region = ndimage.binary_fill_holes(region)
    out_ok = np.isin(parse, [T.index(n) for n in OUTSIDE]) & ~region
    if occluded is not None:
        out_ok &= ~np.asarray(occluded, bool)
    h, w = parse.shape
    if not region.any() or region.all():
        return np.zeros((3, h, w), np.float32)
    d_out, idx_in = ndimage.distance_transform_edt(~region, return_indices=True)     # outside → nearest region pixel
    d_in, idx_out = ndimage.distance_transform_edt(region, return_indices=True)      # inside → nearest outside pixel
    sdf = np.where(region, -(d_in - 0.5), d_out - 0.5).astype(np.float32)
    # a boundary pair is trusted when its outside pixel is background / clothes, off the image's edge
    ok = out_ok.copy()
    ok[[0, -1], :] = False
    ok[:, [0, -1]] = False
    pad = np.pad(ok, 1)
    near_ok = pad[:-2, 1:-1] | pad[2:, 1:-1] | pad[1:-1, :-2] | pad[1:-1, 2:]    # a region pixel beside one
    trust_in = region & near_ok
    t_out = ok[idx_out[0], idx_out[1]]                     # inside: is my nearest outside pixel a trusted one
    t_in = trust_in[idx_in[0], idx_in[1]]                  # outside: is my nearest region pixel beside one
    trust = np.where(region, t_out, t_in & ok)
    return np.stack([sdf, trust.astype(np.float32), region.astype(np.float32)])


def _sample(maps: torch.Tensor, xy01: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) maps, (B, V, 2) points in [0, 1] image units → (B, V, C) bilinear samples (border)."""
    grid = (xy01 * 2 - 1)[:, :, None]                                                      # (B, V, 1, 2)
    return torch.nn.functional.grid_sample(maps, grid, mode="bilinear", padding_mode="border",
                                           align_corners=False)[..., 0].transpose(1, 2)


def _sdf_grad(sdf: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) → (B, 2, H, W) central differences (pixels per pixel), x then y."""
    p = torch.nn.functional.pad(sdf, (1, 1, 1, 1), mode="replicate")
    gx = (p[..., 1:-1, 2:] - p[..., 1:-1, :-2]) / 2
    gy = (p[..., 2:, 1:-1] - p[..., :-2, 1:-1]) / 2
    return torch.cat([gx, gy], 1)


def outline_vertices(face, xy: torch.Tensor, depth: torch.Tensor, size: int, allowed: torch.Tensor) -> list[torch.Tensor]:
    """Per face, the vertices on the outer outline of its render at ``size``² (holes filled), among ``allowed``."""
    frags = rasterize(xy * size, depth, face.triangles, (size, size), cull=True)
    cover = frags.mask.cpu().numpy()
    pix, vid, bary = barycentrics(xy * size, frags)
    n = xy.shape[1]
    best = (vid.gather(1, bary.argmax(1, keepdim=True)).squeeze(1) % n).cpu().numpy()
    owner = np.full(cover.size, -1, np.int64)
    owner[pix.cpu().numpy()] = best
    owner = owner.reshape(cover.shape)
    out = []
    allowed_np = allowed.cpu().numpy()
    for k in range(cover.shape[0]):
        filled = ndimage.binary_fill_holes(cover[k])
        edge = filled & ~ndimage.binary_erosion(filled, border_value=0) & cover[k]
        v = np.unique(owner[k][edge])
        v = v[(v >= 0) & allowed_np[np.clip(v, 0, None)]]
        out.append(torch.from_numpy(v).to(xy.device))
    return out


# ------------------------------------------------------------------------------------------ the solver
class _Problem:
    """Residuals of a batch as a function of θ = (α, β, pose): landmarks, the outline, the priors."""

    def __init__(self, face, points: torch.Tensor, cfg: FitConfig, point_weights: torch.Tensor | None = None,
                 outline: torch.Tensor | None = None):
        self.face, self.cfg = face, cfg
        dt = torch.float64
        self.n_id, self.n_exp = face.n_id, face.n_exp
        self.mean = face.mean.to(dt)                                                         # (N, 3)
        basis = face.id_basis.view(-1, 3, face.n_id)
        if face.n_exp:
            basis = torch.cat([basis, face.exp_basis.view(-1, 3, face.n_exp)], -1)
        self.basis = basis.to(dt)                                                            # (N, 3, n_shape)
        self.lmk = face.landmarks
        self.points = points.to(dt)
        w = torch.ones(points.shape[:2], dtype=dt, device=points.device)
        w[:, JAW] = cfg.w_jaw
        if point_weights is not None:
            w = w * point_weights.to(dt)
        self.iod = inter_ocular(self.points)
        self.rw0 = w.sqrt() / (cfg.sigma_lmk * self.iod)[:, None]                           # (B, L)
        self.rw = self.rw0
        self.prior = torch.cat([torch.full((self.n_id,), 1 / cfg.sigma_id),
                                torch.full((self.n_exp,), 1 / cfg.sigma_exp)]).to(dt).to(points.device)
        self.outline = None if outline is None else outline.to(dt)                           # (B, 3, H, W)
        if self.outline is not None:
            self.grad = _sdf_grad(self.outline[:, :1])
            self.allowed = face.parts != _neck_id()
        self.sil_vid: torch.Tensor | None = None                                             # (B, V) padded
        self.sil_w: torch.Tensor | None = None

    def split(self, theta):
        return theta[..., :self.n_id + self.n_exp], theta[..., self.n_id + self.n_exp:]

    def project(self, theta, vids: torch.Tensor):
        """θ (B, P), vertex ids (B, V) → xy (B, V, 2) in [0, 1], depth (B, V)."""
        coef, pose = self.split(theta)
        b = theta.shape[0]
        base = self.basis[vids]                                                              # (B, V, 3, n)
        verts = self.mean[vids] + torch.einsum("bvkn,bn->bvk", base, coef)
        xy, depth, _ = project(verts, pose, 1)
        return xy.view(b, -1, 2), depth

    def proj_jacobian(self, theta, vids: torch.Tensor):
        """(xy (B, V, 2), d xy / dθ (B, V, 2, P)): the shape columns in closed form (the projection is linear
        in the shape through a fixed rotation and scale), the pose's six by central differences."""
        coef, pose = self.split(theta)
        base = self.basis[vids]                                                              # (B, V, 3, n)
        verts = self.mean[vids] + torch.einsum("bvkn,bn->bvk", base, coef)
        rot = rotation(pose[:, :3])
        f = F0 * pose[:, 3].exp()
        rows = torch.stack([rot[:, 0], -rot[:, 1]], 1) * (f / 2)[:, None, None]             # (B, 2, 3)
        js = torch.einsum("bck,bvkn->bvcn", rows, base)

        xy = project(verts, pose, 1)[0]
        return xy, torch.cat([js, pose_jacobian(verts, pose)], -1)

    def select_outline(self, theta, size: int) -> None:
        """The outline vertices of the current fit (fixed until the next call; padded with weight 0)."""
        if self.outline is None:
            return
        with torch.no_grad():
            coef, pose = self.split(theta)
            verts = self.mean + torch.einsum("vkn,bn->bvk", self.basis, coef)
            xy, depth, _ = project(verts, pose, 1)
            sets = outline_vertices(self.face, xy.float(), depth.float(), size, self.allowed)
        m = max([len(s) for s in sets] + [1])
        vid = torch.zeros(len(sets), m, dtype=torch.long, device=theta.device)
        mask = torch.zeros(len(sets), m, dtype=theta.dtype, device=theta.device)
        for k, s in enumerate(sets):
            vid[k, :len(s)], mask[k, :len(s)] = s, 1.0
        # each point's weight, fixed until the next selection: trusted (its nearest boundary faces the
        # background) × √(n_sil / trusted count) / (σ_sil · inter-ocular distance in pixels)
        xy, _ = self.project(theta, vid)
        s = _sample(self.outline[:, :2], xy)
        trust = (s[..., 1] > 0.5).to(theta.dtype) * mask
        count = trust.sum(1).clamp_min(1.0)
        scale = (self.cfg.n_sil / count).sqrt() / (self.cfg.sigma_sil * self.iod * self.outline.shape[-1])
        w = trust * scale[:, None]
        self.sil_vid, self.sil_w = vid, w * _cauchy(s[..., 0] * w * count.sqrt()[:, None] / math.sqrt(self.cfg.n_sil),
                                                        self.cfg.robust)

    def reweight(self, theta) -> None:
        """Robust (Cauchy, IRLS) weights of the landmarks from the current fit: a point many σ off (an
        occluded point the landmark model guessed wrong) counts less."""
        b = theta.shape[0]
        with torch.no_grad():
            xy, _ = self.project(theta, self.lmk.expand(b, -1))
            e = (xy - self.points).norm(dim=-1) * self.rw0
        self.rw = self.rw0 * _cauchy(e, self.cfg.robust)

    def residuals(self, theta):
        b = theta.shape[0]
        xy, _ = self.project(theta, self.lmk.expand(b, -1))
        parts = [((xy - self.points) * self.rw[..., None]).reshape(b, -1)]
        if self.sil_vid is not None:
            sxy, _ = self.project(theta, self.sil_vid)
            parts.append(_sample(self.outline[:, :1], sxy)[..., 0] * self.sil_w)
        parts.append(self.split(theta)[0] * self.prior)
        return torch.cat(parts, 1)

    def jacobian(self, theta):
        b = theta.shape[0]
        _, jl = self.proj_jacobian(theta, self.lmk.expand(b, -1))
        blocks = [(jl * self.rw[..., None, None]).reshape(b, -1, theta.shape[1])]
        if self.sil_vid is not None:
            sxy, js = self.proj_jacobian(theta, self.sil_vid)
            g = _sample(self.grad, sxy) * self.outline.shape[-1]                             # d sdf / d xy01
            blocks.append(torch.einsum("bvc,bvcp->bvp", g, js) * self.sil_w[..., None])
        n_shape = self.n_id + self.n_exp
        prior = torch.cat([torch.diag(self.prior), torch.zeros(n_shape, 6, dtype=theta.dtype, device=theta.device)], 1)
        blocks.append(prior.expand(b, -1, -1))
        return torch.cat(blocks, 1)


def pose_jacobian(verts: torch.Tensor, pose: torch.Tensor, h: float = 1e-6) -> torch.Tensor:
    """d xy / d pose (B, V, 2, 6) of ``project(verts, pose, 1)``, by central differences in one batched call
    (float64: error ~1e-10). Not torch.func.jacfwd: the same numbers 10-40× slower per call here, and its
    first call imports torch._dynamo (1.3 s of a command's start)."""
    b, v = verts.shape[:2]
    step = torch.eye(6, dtype=pose.dtype, device=pose.device) * h
    poses = torch.cat([pose[:, None] + step, pose[:, None] - step], 1).reshape(-1, 6)        # (B·12, 6)
    xy = project(verts.repeat_interleave(12, 0), poses, 1)[0].view(b, 2, 6, v, 2)
    return ((xy[:, 0] - xy[:, 1]) / (2 * h)).permute(0, 2, 3, 1)


def _cauchy(e: torch.Tensor, c: float) -> torch.Tensor:
    """√ of the Cauchy IRLS weight 1 / (1 + (e / c)²) of residuals ``e`` (in σ); 1 when ``c`` is 0."""
    if not c:
        return torch.ones_like(e)
    return (1.0 / (1.0 + (e / c).square())).sqrt()


def _neck_id() -> int:
    return CELEBAMASK_HQ.index("neck")


def spd_solve(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """x with a x = b for symmetric positive-definite (B, n, n) ``a`` (the damped normal equations): Cholesky,
    an item whose factorisation fails solved by least squares. Not ``torch.linalg.solve``: with MKL, its batched
    LU returns invalid pivots once the process's thread count has changed (measured, torch 2.13: set_num_threads
    1 then 2 — what ``train.threads`` and the runtime's thread governor do — then a (2, 159, 159) solve raises
    "Pivots given to lu_solve must all be ≥ 1")."""
    chol, info = torch.linalg.cholesky_ex(a)
    x = torch.cholesky_solve(b, chol)
    bad = info != 0
    if bool(bad.any()):
        x[bad] = torch.linalg.lstsq(a[bad], b[bad]).solution
    return x


def fit_shape(face, y0: torch.Tensor, points: torch.Tensor, cfg: FitConfig, point_weights: torch.Tensor | None = None,
              outline: torch.Tensor | None = None, history: list | None = None) -> tuple[torch.Tensor, int]:
    """(B, K) initial coefficients, (B, 68, 2) target points in [0, 1], ``outline`` (B, 3, H, W) from
    ``outline_targets`` or None → (coefficients with identity, expression and pose fitted, iterations run).
    Levenberg–Marquardt, ``cfg.steps`` iterations at most."""
    prob = _Problem(face, points, cfg, point_weights, outline if cfg.silhouette else None)
    c = face.split(y0.detach())
    dt = torch.float64
    coef = torch.cat([c["id"].to(dt), c["exp"].to(dt).clamp(0, 1)], -1)
    b = y0.shape[0]
    shape = prob.mean[prob.lmk] + torch.einsum("vkn,bn->bvk", prob.basis[prob.lmk], coef)
    theta = torch.cat([coef, pose_from_points(shape, prob.points, prob.rw.square())], -1)
    lo = torch.full_like(theta[0], -math.inf)
    hi = torch.full_like(theta[0], math.inf)
    lo[prob.n_id:prob.n_id + prob.n_exp], hi[prob.n_id:prob.n_id + prob.n_exp] = 0.0, 1.0
    size = 0 if prob.outline is None else prob.outline.shape[-1]
    lam = torch.full((b,), 1e-3, dtype=dt, device=theta.device)
    eye = torch.eye(theta.shape[-1], dtype=dt, device=theta.device)
    it = 0
    use_outline = prob.outline is not None
    for it in range(1, int(cfg.steps) + 1):
        prob.reweight(theta)
        if use_outline and it > int(cfg.sil_after):
            prob.select_outline(theta, size)
        r, jac = prob.residuals(theta), prob.jacobian(theta)
        cost = r.square().sum(-1)
        jtj, jtr = jac.transpose(1, 2) @ jac, (jac.transpose(1, 2) @ r[..., None])[..., 0]
        damp = lam[:, None, None] * (torch.diagonal(jtj, dim1=1, dim2=2)[..., None] * eye + 1e-6 * eye)
        step = spd_solve(jtj + damp, -jtr[..., None])[..., 0]
        cand = torch.maximum(torch.minimum(theta + step, hi), lo)
        new = prob.residuals(cand).square().sum(-1)
        ok = new < cost
        theta = torch.where(ok[:, None], cand, theta)
        lam = torch.where(ok, lam * 0.3, lam * 10.0).clamp(1e-7, 1e7)
        if history is not None:
            history.append(float(torch.where(ok, new, cost).mean()))
    coef, pose = prob.split(theta)
    out = y0.detach().clone()
    sizes = face.sizes
    out[:, :sizes["id"] + sizes["exp"]] = coef.to(out.dtype)
    out[:, -sizes["pose"]:] = pose.to(out.dtype)
    return out, it


def photometric_energy(renderer, y: torch.Tensor, image01: torch.Tensor, visible: torch.Tensor | None,
                       cfg: FitConfig, size: int) -> tuple[torch.Tensor, Any]:
    """Per face (B,): the mean squared RGB error over the pixels the render covers and ``visible`` keeps,
    over ``sigma_pix²``; the Render. ``image01`` (B, 3, S, S) in [0, 1], ``visible`` (B, 1, S, S) in [0, 1]."""
    out = renderer(y, size)
    w = out.mask if visible is None else out.mask * visible
    err = (out.image.clamp(0.0, 1.0) - image01).square().sum(1, keepdim=True)     # saturated pixels tell nothing
    e = (w * err).sum((1, 2, 3)) / w.sum((1, 2, 3)).clamp_min(1.0)
    return e / cfg.sigma_pix ** 2, out


def fit_photometric(renderer, y: torch.Tensor, points: torch.Tensor, image01: torch.Tensor,
                    visible: torch.Tensor | None, cfg: FitConfig, point_weights: torch.Tensor | None = None,
                    history: list | None = None, outline: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
    """Adam on identity, expression, pose, albedo and light against the photometric term over the visible
    skin, the landmark and outline terms (their robust weights and outline points as the shape fit left
    them) and the priors; ``cfg.photo_steps`` steps (the first ``light_steps`` fit albedo and light alone)."""
    face = renderer.face
    size = int(image01.shape[-1])
    prob = _Problem(face, points, cfg, point_weights, outline if cfg.silhouette else None)
    theta0 = torch.cat([face.split(y.detach())[k] for k in ("id", "exp", "pose")], -1).double()
    prob.reweight(theta0)
    if prob.outline is not None:
        prob.select_outline(theta0, prob.outline.shape[-1])
    groups = face.split(y.detach())
    names = list(groups)
    var = {k: v.clone().requires_grad_(True) for k, v in groups.items()}
    opt = torch.optim.Adam([{"params": [var["id"], var["exp"], var["pose"]], "lr": cfg.lr},
                            {"params": [var["albedo"], var["sh"]], "lr": cfg.lr}])
    it = 0
    for it in range(1, int(cfg.photo_steps) + 1):
        opt.param_groups[0]["lr"] = 0.0 if it <= int(cfg.light_steps) else cfg.lr
        yy = torch.cat([var[k] for k in names], -1)
        e_pix, _ = photometric_energy(renderer, yy, image01, visible, cfg, size)
        theta = torch.cat([var["id"], var["exp"], var["pose"]], -1).double()
        e_shape = prob.residuals(theta).square().sum(-1).to(e_pix.dtype)
        e_alb = var["albedo"].square().sum(-1) / cfg.sigma_albedo ** 2
        energy = e_pix + e_shape + e_alb
        opt.zero_grad(set_to_none=True)
        energy.sum().backward()
        opt.step()
        with torch.no_grad():
            var["exp"].clamp_(0.0, 1.0)
        if history is not None:
            history.append(float(energy.detach().mean()))
    return torch.cat([var[k].detach() for k in names], -1), it


def fit_faces(renderer, y0: torch.Tensor, points: torch.Tensor, cfg: FitConfig, image01: torch.Tensor | None = None,
              visible: torch.Tensor | None = None, point_weights: torch.Tensor | None = None,
              outline: torch.Tensor | None = None) -> FitResult:
    """The whole fit of a batch: landmarks, outline and priors (Levenberg–Marquardt), then the photometric
    term when ``cfg.photo_steps`` and an image are given. ``y0`` (B, K) the regressor's coefficients,
    ``points`` (B, 68, 2) in [0, 1], ``outline`` (B, 3, H, W) from ``outline_targets``."""
    t0 = time.perf_counter()
    hist: list[float] = []
    face = renderer.face
    y, n_lm = fit_shape(face, y0, points, cfg, point_weights, outline, hist)
    n_ph = 0
    if cfg.photo_steps > 0 and image01 is not None:
        with torch.enable_grad():           # callers may hold no_grad (inference paths)
            y, n_ph = fit_photometric(renderer, y, points, image01, visible, cfg, point_weights, hist, outline)
    with torch.no_grad():
        c = face.split(y)
        xy = project(face.vertices(c["id"], c["exp"])[:, face.landmarks], c["pose"], 1)[0]
        rms = (xy - points.to(xy.dtype)).square().sum(-1).mean(-1).sqrt() / inter_ocular(points.to(xy.dtype))
    return FitResult(y, time.perf_counter() - t0, n_lm, n_ph, rms, hist)
