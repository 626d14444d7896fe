"""The 3D face pieces (faceparse.face3d): the rasteriser's coverage, depth order and culling on a hand-made
scene; gradients of the barycentric interpolation (gradcheck, float64) and of a whole render; SH shading
against hand-computed normals; the mean face's landmark vertices landing on the rendered face."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from faceparse.face3d.raster import interpolate, rasterize
from faceparse.face3d.render import SH_AMBIENT, Renderer, shade


def _inside(tri: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Point-in-triangle by the signs of the three cross products (an independent check)."""
    d = [(tri[(k + 1) % 3, 0] - tri[k, 0]) * (py - tri[k, 1]) - (tri[(k + 1) % 3, 1] - tri[k, 1]) * (px - tri[k, 0])
         for k in range(3)]
    return ((d[0] >= 0) & (d[1] >= 0) & (d[2] >= 0)) | ((d[0] <= 0) & (d[1] <= 0) & (d[2] <= 0))


def _scene(z_far: float, z_near: float):
    # two front-facing triangles (clockwise on screen, y down) overlapping in the middle of a 10 × 10 image
    xy = torch.tensor([[[0.1, 0.2], [0.3, 9.1], [8.6, 0.4], [4.2, 1.1], [4.4, 9.6], [9.7, 5.3]]], dtype=torch.float64)
    z = torch.tensor([[z_far] * 3 + [z_near] * 3], dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]])
    return xy, z, faces


def test_rasteriser_coverage_and_depth_order_on_two_triangles():
    py, px = np.mgrid[0:10, 0:10] + 0.5
    xy, _, faces = _scene(1.0, 2.0)
    in_a, in_b = (_inside(xy[0, faces[k]].numpy(), px, py) for k in range(2))
    assert in_a.sum() > 20 and in_b.sum() > 20 and (in_a & in_b).sum() > 3      # a real overlap
    for z_a, z_b, front in ((1.0, 2.0, 1), (2.0, 1.0, 0)):       # larger z is nearer: it wins the overlap
        xy, z, faces = _scene(z_a, z_b)
        tri = rasterize(xy, z, faces, (10, 10)).tri[0].numpy()
        expected = np.where(in_a & in_b, front, np.where(in_a, 0, np.where(in_b, 1, -1)))
        np.testing.assert_array_equal(tri, expected)
    # the same triangles wound the other way are back faces: culled, or drawn without culling
    flipped = faces[:, [0, 2, 1]]
    assert (rasterize(xy, z, flipped, (10, 10)).tri < 0).all()
    assert (rasterize(xy, z, flipped, (10, 10), cull=False).tri >= 0).sum() == (in_a | in_b).sum()


def test_barycentric_interpolation_passes_gradcheck_for_vertices_and_colours():
    xy0 = torch.tensor([[[0.2, 0.1], [0.45, 5.8], [5.8, 0.35]]], dtype=torch.float64)
    z = torch.zeros(1, 3, dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2]])
    colours = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.3, 0.5]]], dtype=torch.float64, requires_grad=True)
    xy = xy0.clone().requires_grad_(True)
    # no pixel centre within 0.05 px of an edge: a 1e-6 nudge never changes which pixels are covered
    py, px = np.mgrid[0:6, 0:6] + 0.5
    tri = xy0[0].numpy()
    for k in range(3):
        a, b = tri[k], tri[(k + 1) % 3]
        dist = np.abs((b[0] - a[0]) * (py - a[1]) - (b[1] - a[1]) * (px - a[0])) / np.linalg.norm(b - a)
        assert dist.min() > 0.05

    def f(xy_, col_):
        return interpolate(col_, xy_, rasterize(xy_, z, faces, (6, 6), cull=False))

    assert torch.autograd.gradcheck(f, (xy, colours), eps=1e-6, atol=1e-7)
    out = f(xy, colours).sum()
    gx, gc = torch.autograd.grad(out, (xy, colours))
    assert torch.isfinite(gx).all() and gx.abs().sum() > 0 and gc.abs().sum() > 0


def test_sh_shading_matches_hand_computed_values():
    albedo = torch.ones(1, 2, 3, dtype=torch.float64)
    normals = torch.tensor([[[0.0, 0.0, 1.0], [math.sqrt(0.5), math.sqrt(0.5), 0.0]]], dtype=torch.float64)
    gamma = torch.zeros(1, 27, dtype=torch.float64)
    gamma[0, 2 * 3 + 0] = 0.5      # band-1 z coefficient, red
    gamma[0, 4 * 3 + 1] = 0.8      # band-2 xy coefficient, green
    out = shade(albedo, normals, gamma)[0]
    ambient = SH_AMBIENT * math.pi * 0.282095
    assert ambient == pytest.approx(1.0)
    # n = +z: red = 1 + 0.5 · (2π/3) · 0.488603 · 1; green has no xy term there
    assert out[0].tolist() == pytest.approx([1.0 + 0.5 * (2 * math.pi / 3) * 0.488603, 1.0, 1.0])
    # n = (√½, √½, 0): x·y = ½ → green = 1 + 0.8 · (π/4) · 1.092548 · ½; no z term for red
    assert out[1].tolist() == pytest.approx([1.0, 1.0 + 0.8 * (math.pi / 4) * 1.092548 * 0.5, 1.0])


@pytest.fixture(scope="module")
def face():
    from faceparse.face3d.model import FaceModel

    return FaceModel()


def test_mean_face_landmarks_project_inside_the_rendered_face(face):
    r = Renderer(face, 128)
    out = r(torch.zeros(1, face.num_coeffs))
    mask = out.mask[0, 0].numpy() > 0
    lm = out.landmarks[0].numpy()
    assert (lm > 8).all() and (lm < 120).all()
    cols, rows = np.clip(lm.astype(int), 0, 127).T
    assert mask[rows[:36], cols[:36]].all() and mask[rows[48:60], cols[48:60]].all()
    # the eye and inner-lip points lie on the rims of the mesh's eye / mouth holes: within 2 px of the face
    near = np.zeros_like(mask)
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            near |= np.roll(mask, (dy, dx), (0, 1))
    assert near[rows, cols].all()
    # the face region is a plausible crop: a third to two thirds of the image
    assert 0.3 < mask.mean() < 0.7
    parts = r.parts(out)[0].numpy()
    from faceparse.labels import CELEBAMASK_HQ as T

    assert parts[int(lm[30, 1]), int(lm[30, 0])] == T.index("nose")         # the nose tip
    for name, (a, b) in (("u_lip", (51, 62)), ("l_lip", (57, 66)), ("r_brow", (19, 19)), ("l_brow", (24, 24))):
        x, y = (lm[a] + lm[b]) / 2
        assert parts[int(y), int(x)] == T.index(name), name


def test_render_gradients_reach_shape_albedo_light_and_pose(face):
    r = Renderer(face, 64)
    y = torch.zeros(2, face.num_coeffs, requires_grad=True)
    out = r(y)
    target = torch.rand_like(out.image, generator=torch.Generator().manual_seed(0))
    loss = ((out.image - target) ** 2 * out.mask).mean() + out.landmarks.square().mean() * 1e-4
    (g,) = torch.autograd.grad(loss, y)
    assert torch.isfinite(g).all()
    for name, part in face.split(g).items():
        assert part.abs().sum() > 0, name


def test_head_scale_and_grid_head_keep_the_zero_start_and_scale_their_groups():
    """head_scale multiplies each coefficient group of the head's output; a grid head (pooled to grid²
    cells, output / grid²) still starts at all-zero coefficients and sees where things are."""
    from faceparse.face3d.net import Recon3dNet

    torch.manual_seed(0)
    net = Recon3dNet({"block": "basic", "layers": [1, 1, 1, 1], "width": 8, "grid": 4,
                      "head_scale": {"id": 0.1, "exp": 0.5}}, 48)
    x = torch.rand(2, 3, 48, 48) * 2 - 1
    assert torch.equal(net(x), torch.zeros(2, net.face.num_coeffs))
    assert net.backbone.fc.in_features == 64 * 16
    torch.nn.init.constant_(net.backbone.fc.bias, 1.0)
    c = net.face.split(net(x))
    assert torch.allclose(c["id"], torch.full_like(c["id"], 0.1 / 16))
    assert torch.allclose(c["exp"], torch.full_like(c["exp"], 0.5 / 16))
    assert torch.allclose(c["pose"], torch.full_like(c["pose"], 1 / 16))
    with pytest.raises(ValueError, match="unknown groups"):
        Recon3dNet({"block": "basic", "layers": [1, 1, 1, 1], "width": 8, "head_scale": {"shape": 0.1}}, 48)
