"""The per-face fit after the regressor (issue #32, faceparse.face3d.fit): fitted to the true 68 points of a
few fixed synthetic faces it beats the mean face by a clear margin (fails when fitting stops working); it
runs no more iterations than its bound; occluded pixels (outside the visible mask) do not move the
photometric term; the outline target is signed and trusts only the boundary against the background; the
params section fills the library's defaults."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from faceparse.face3d.fit import FitConfig, fit_faces, outline_targets, photometric_energy
from faceparse.face3d.model import FaceModel
from faceparse.face3d.render import Renderer, project


@pytest.fixture(scope="module")
def faces():
    """Six fixed synthetic faces (synth3d's draws): their true coefficients and projected 68 points."""
    from faceparse.data.synth3d import sample_coeffs

    face = FaceModel()
    y = torch.from_numpy(np.stack([sample_coeffs(np.random.default_rng([7, i]), face) for i in range(6)]))
    c = face.split(y)
    points = project(face.vertices(c["id"], c["exp"])[:, face.landmarks], c["pose"], 1)[0]
    return face, Renderer(face, 64), y, points


def _p90(face, y, true) -> float:
    from faceparse.face3d.metrics import face_errors
    from faceparse.stages.recon3d.scoring import scored_vertices

    sel = scored_vertices(face)
    c, t = face.split(y), face.split(true)
    pred, gt = face.vertices(c["id"], c["exp"]).detach().numpy(), face.vertices(t["id"], t["exp"]).numpy()
    return float(np.mean([face_errors(p, g, sel)["p90_mm"] for p, g in zip(pred, gt)]))


def test_fitting_the_true_points_beats_the_mean_face_clearly(faces):
    face, renderer, y, points = faces
    start = torch.zeros_like(y)                       # the regressor's answer at the mean face, pose unknown
    exact = FitConfig(steps=20, sigma_lmk=0.01, silhouette=False, photo_steps=0)     # the true points: little noise
    res = fit_faces(renderer, start, points, exact)
    mean_face, fitted = _p90(face, start, y), _p90(face, res.y, y)
    assert fitted < 0.7 * mean_face, (fitted, mean_face)           # measured: 0.5×
    assert float(res.lmk_rms.max()) < 0.05                          # the points are met (inter-ocular units)
    # the pose comes out too: the fitted landmarks land on the points
    c = face.split(res.y)
    xy = project(face.vertices(c["id"], c["exp"])[:, face.landmarks], c["pose"], 1)[0]
    assert float((xy - points).norm(dim=-1).mean()) < 0.01


def test_the_fit_respects_its_step_bound(faces):
    face, renderer, y, points = faces
    image = renderer(y[:2]).image.clamp(0, 1)
    cfg = FitConfig(steps=3, silhouette=False, photo_steps=2, light_steps=1)
    res = fit_faces(renderer, torch.zeros_like(y[:2]), points[:2], cfg, image)
    assert res.lm_iters == 3 and res.photo_iters == 2 and len(res.history) == 5
    res0 = fit_faces(renderer, torch.zeros_like(y[:2]), points[:2], FitConfig(steps=0, photo_steps=0))
    assert res0.lm_iters == 0 and res0.photo_iters == 0 and res0.history == []


def test_occluded_pixels_do_not_move_the_photometric_term(faces):
    face, renderer, y, points = faces
    with torch.no_grad():
        image = renderer(y[:1]).image.clamp(0, 1)
    visible = torch.ones(1, 1, 64, 64)
    visible[..., 20:44, 16:48] = 0                     # an occluder over the middle of the face
    other = image.clone()
    other[..., 20:44, 16:48] = torch.rand(1, 3, 24, 32)   # whatever the occluder looks like
    cfg = FitConfig()
    start = y[:1].clone()
    start[:, :10] += 0.3
    grads = []
    for img in (image, other):
        yy = start.clone().requires_grad_(True)
        e, _ = photometric_energy(renderer, yy, img, visible, cfg, 64)
        e.sum().backward()
        grads.append((float(e.detach()), yy.grad.clone()))
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-6) and grads[0][0] > 0
    assert torch.allclose(grads[0][1], grads[1][1], atol=1e-6)
    # the same through a whole photometric fit: identical coefficients for either photo
    cfg = FitConfig(steps=2, silhouette=False, photo_steps=3, light_steps=1)
    a = fit_faces(renderer, start, points[:1], cfg, image, visible)
    b = fit_faces(renderer, start, points[:1], cfg, other, visible)
    assert torch.allclose(a.y, b.y, atol=1e-6)
    # …while without the mask the occluder does pull
    e_free = photometric_energy(renderer, start, other, None, cfg, 64)[0]
    assert float(e_free) > grads[1][0] * 1.5


def test_the_outline_target_is_signed_and_trusts_the_background_only():
    from faceparse.labels import CELEBAMASK_HQ as T

    parse = np.zeros((32, 32), np.uint8)
    parse[8:24, 8:24] = T.index("skin")
    parse[4:8, 8:24] = T.index("hair")                 # hair on top: that boundary is not the face's outline
    occ = np.zeros((32, 32), bool)
    sdf, trust, region = outline_targets(parse, occ)
    assert sdf[16, 16] < 0 < sdf[16, 2] and abs(sdf[16, 8]) < 1.0 and region[16, 16] == 1
    assert trust[16, 3] == 1 and trust[16, 12] == 1    # left side: background beyond it
    assert trust[5, 16] == 0 and trust[9, 16] == 0     # top: the hair's boundary


def test_the_params_section_fills_the_library_defaults():
    from faceparse.stages.recon3d.fitting import fit_config
    from faceparse.stages.recon3d.params import Recon3dFit

    cfg = fit_config({})
    assert cfg == FitConfig(), "recon3d.fit's defaults and FitConfig's differ"
    assert Recon3dFit().enabled and fit_config({"fit": {"enabled": False}}) is None
    assert fit_config({"fit": {"steps": 5}}).steps == 5
    with pytest.raises(Exception):
        fit_config({"fit": {"stepz": 5}})


def test_the_stage_reads_a_rendered_face_with_the_shipped_models_and_fits_it():
    """FitInputs (the shipped landmark model and parser) on a synth3d face: its points near the truth, an
    occlusion mask, the outline; fit_each gives one time per face and moves the coefficients."""
    from faceparse.data.synth3d import generate_sample3d
    from faceparse.models import preprocess
    from faceparse.stages.recon3d.fitting import FitInputs, fit_config, fit_each
    from PIL import Image

    face = FaceModel()
    s = generate_sample3d(Renderer(face, 128), 3, 0, size=128, occlusion_prob=0.0)
    x = preprocess(Image.fromarray(s.image), 128)[None]
    seen = FitInputs.load({})
    obs = seen.observe(x)
    io = np.linalg.norm(s.landmarks[36] - s.landmarks[45])
    err = np.linalg.norm(obs.points[0].numpy() * 128 - s.landmarks, axis=-1).mean() / io
    assert err < 0.1 and obs.outline.shape == (1, 3, 128, 128) and obs.visible.sum() > 500
    assert set(seen.versions) == {"landmarks", "parser"}

    class Net(torch.nn.Module):                        # the regressor at the mean face
        def __init__(self):
            super().__init__()
            self.renderer = Renderer(face, 128)

    y0 = torch.zeros(1, face.num_coeffs)
    y, secs = fit_each(Net(), x, y0, fit_config({}), obs)
    assert len(secs) == 1 and secs[0] > 0 and not torch.equal(y, y0)
    assert _p90(face, y, torch.from_numpy(s.coeffs)[None]) < _p90(face, y0, torch.from_numpy(s.coeffs)[None]) + 0.5


def test_the_fit_survives_a_change_of_thread_count(faces):
    """MKL's batched LU broke after set_num_threads(1) then (2) (what train.threads and the thread governor do):
    the CI failure of 2026-12-07; the fit's damped normal equations are solved by Cholesky."""
    face, renderer, y, points = faces
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        torch.set_num_threads(2)
        res = fit_faces(renderer, torch.zeros_like(y[:2]), points[:2], FitConfig(steps=3, silhouette=False, photo_steps=0))
    finally:
        torch.set_num_threads(before)
    assert torch.isfinite(res.y).all() and res.lm_iters == 3
