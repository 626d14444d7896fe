"""Every stage on the photo path (issue #29): detection → the face's crop → the stage → its answer back in the
photo's pixels — landmarks, completion, de-occlusion and 3D, through the one set of helpers in
``faceparse.photos`` / ``faceparse.align`` (the parser's own tests are in test_photos.py)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from faceparse.align import Placement, apply, five_points, placement, similarity_fit, to_crop, to_photo
from faceparse.bundle import load_bundle, read_meta, save_bundle
from faceparse.config import load_params
from faceparse.stages.landmarks.network import face_frame
from faceparse.photos import NoFaceError, Plan, crop_placements, paste_image, paste_maps, plan_photo
from faceparse.serve.testing import completion_bundle, faceless_photos, group_photo, landmark_bundle
from faceparse.stages import get_stage


@pytest.fixture(scope="module")
def dlib(real_samples):
    return {k: np.asarray(v, dtype=np.float64)
            for k, v in json.loads((real_samples / "dlib68.json").read_text())["points"].items()}


@pytest.fixture(scope="module")
def group(real_samples):
    img, faces = group_photo(real_samples)
    return img, faces


def inside_box(points, face, margin=0.25):
    """Every point within the detected box widened by ``margin`` of its side on each edge."""
    x0, y0, x1, y1 = face.box
    m = margin * face.size
    return bool(np.all((points[:, 0] >= x0 - m) & (points[:, 0] <= x1 + m)
                       & (points[:, 1] >= y0 - m) & (points[:, 1] <= y1 + m)))


# --- geometry --------------------------------------------------------------------------------------------

def test_points_go_to_the_crop_and_back_exactly(dlib):
    pts = dlib["0.jpg"]
    pl = placement(five_points(pts)).zoomed(1.3, (0.05, -0.1))
    np.testing.assert_allclose(pl.points_to_photo(pl.points_to_crop(pts, 128), 128), pts, atol=1e-9)
    # the crop's centre is the placement's centre, zoom widens the side
    assert np.allclose(pl.points_to_photo(np.array([[64.0, 64.0]]), 128)[0], pl.centre)
    assert pl.side == pytest.approx(1.3 * placement(five_points(pts)).side)


def test_similarity_fit_recovers_a_similarity(dlib):
    src = dlib["1.jpg"]
    ang, k, t = np.radians(20), 0.7, np.array([13.0, -40.0])
    m = np.column_stack([k * np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]]), t])
    np.testing.assert_allclose(similarity_fit(src, apply(m, src)), m, atol=1e-9)


def test_the_models_torch_framing_is_the_photo_paths(dlib):
    """MobileNetV3Landmarks.refine crops with face_frame: the same crop align.placement + to_crop take."""
    pts = dlib["2.jpg"] / 1024
    theta, origin, ax, ay = face_frame(torch.tensor(pts[None]))
    pl = placement(five_points(pts))
    np.testing.assert_allclose(origin[0].numpy(), pl.origin, atol=1e-6)
    np.testing.assert_allclose(ax[0].numpy(), pl.ax, atol=1e-6)
    rng = np.random.default_rng(0)
    img = np.asarray(Image.fromarray((rng.random((16, 16, 3)) * 255).astype(np.uint8)).resize((64, 64), Image.BICUBIC),
                     dtype=np.float32)
    want = to_crop(img, placement(five_points(pts * 64)), 64)
    x = torch.from_numpy(img).permute(2, 0, 1)[None]
    got = torch.nn.functional.grid_sample(x, torch.nn.functional.affine_grid(theta.float(), [1, 3, 64, 64],
                                                                           align_corners=False),
                                          align_corners=False, padding_mode="reflection")[0].permute(1, 2, 0).numpy()
    assert np.abs(got - want)[6:-6, 6:-6].max() < 1e-3


def test_refinement_maps_its_second_look_back_to_the_input(dlib, monkeypatch):
    """A model that always answers shape S in whatever it is shown: one refinement look answers S placed by
    the crop that S's own five points give (the cascade's geometry, checked against numpy's placement)."""
    from faceparse.stages.landmarks.network import build_landmark_model

    shape = dlib["3.jpg"] / 1024
    model = build_landmark_model({"arch": "small", "width": 0.25, "head": "integral", "refine": 1}).eval()
    monkeypatch.setattr(model, "_points", lambda x: torch.tensor(shape[None], dtype=torch.float32).expand(len(x), -1, -1))
    got = model(torch.zeros(2, 3, 64, 64))[0].double().numpy()
    want = placement(five_points(shape)).points_to_photo(shape)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_maps_go_back_to_the_photo_within_a_pixel():
    """A mark at a crop's pixel lands on the photo pixel the placement maps it to (nearest, ±1 px)."""
    pl = Placement(origin=np.array([100.0, 40.0]), ax=np.array([180.0, 40.0]), ay=np.array([-40.0, 180.0]))
    crop = np.zeros((64, 64), np.uint8)
    crop[20:24, 40:44] = 7
    back = to_photo(crop, pl, 400, 300)
    ys, xs = np.nonzero(back == 7)
    centre = pl.points_to_photo(np.array([[42.0, 22.0]]), 64)[0]
    assert abs(xs.mean() + 0.5 - centre[0]) <= 1 and abs(ys.mean() + 0.5 - centre[1]) <= 1
    # and the whole photo as one crop is the identity
    img = np.arange(40 * 40, dtype=np.uint16).reshape(40, 40).astype(np.uint8)
    assert np.array_equal(to_photo(img, Placement.whole(40, 40), 40, 40), img)


def test_a_pasted_face_changes_only_its_masked_pixels():
    photo = np.full((90, 120, 3), 50, np.uint8)
    face = np.full((32, 32, 3), 200, np.uint8)
    mask = np.zeros((32, 32), bool)
    mask[8:24, 8:24] = True
    pl = Placement(origin=np.array([40.0, 20.0]), ax=np.array([48.0, 0.0]), ay=np.array([0.0, 48.0]))
    out = paste_image(photo, face, mask, pl)
    changed = np.any(out != photo, axis=-1)
    ys, xs = np.nonzero(changed)
    assert changed.any() and xs.min() >= 40 + 12 - 1 and xs.max() <= 40 + 36 and ys.min() >= 20 + 12 - 1
    assert out[20 + 24, 40 + 24].tolist() == [200, 200, 200]      # the mask's middle: the face's pixel


# --- each stage on a photo --------------------------------------------------------------------------------

def test_landmarks_of_a_group_photo_lie_on_each_face(tmp_path, group):
    img, _ = group
    bdir = landmark_bundle(tmp_path / "lm", input_size=64)
    net, meta = load_bundle(bdir)
    points, plan = get_stage("landmarks").predict_photo(net, meta, img)
    assert len(points) == len(plan.faces) == 2
    for pts, face in zip(points, plan.faces):
        assert pts.shape == (68, 2) and inside_box(pts, face)


def test_every_stage_says_no_face_on_a_faceless_photo(tmp_path):
    land = faceless_photos()["landscape"]
    bdir = landmark_bundle(tmp_path / "lm", input_size=64)
    net, meta = load_bundle(bdir)
    with pytest.raises(NoFaceError, match="no face found"):
        get_stage("landmarks").predict_photo(net, meta, land)
    with pytest.raises(NoFaceError):
        plan_photo(land, 64)


def test_completion_of_a_group_photo_has_the_photos_shape(tmp_path, group, repo_root):
    from faceparse.stages.completion.photo import complete_photo

    img, _ = group
    bdir = completion_bundle(tmp_path, load_params(repo_root / "params.yaml", ["registry.tracking_uri=null"]))
    net, meta = load_bundle(bdir)
    maps, plan = complete_photo(net, meta, img, resolution=600)
    assert maps.gamma.shape == (280, 600) and maps.occlusion.shape == (280, 600) and len(plan.faces) == 2
    # nothing is answered outside the two faces' crops
    pls = crop_placements(plan, img)
    covered = paste_maps([np.ones((8, 8), np.uint8)] * 2, pls, plan) > 0
    assert not (maps.gamma[~covered]).any() and (maps.gamma[covered] > 0).mean() > 0.2


def test_deocclusion_of_a_photo_keeps_its_size_and_unmasked_pixels(tmp_path, group, repo_root):
    from faceparse.stages.fisn.photo import Chain, deocclude_photo
    from faceparse.stages import get_stage as stage

    img, _ = group
    params = load_params(repo_root / "params.yaml", ["registry.tracking_uri=null"])
    comp_dir = completion_bundle(tmp_path, params)
    st = stage("fisn")
    meta = {"stage": "fisn", "model_config": st.model_config({"model": {"preset": "tiny", "overrides": {
                "generator": {"ngf": 8, "style_dim": 8, "spade_hidden": 8}, "discriminator": {"ndf": 8}}}}),
            "num_classes": 19, "label_table": "celebamask-hq", "input_size": 64, "completion": read_meta(comp_dir)}
    model = st.build_model(meta)
    model.completion.load_state_dict(load_bundle(comp_dir)[0].state_dict())
    net, meta = load_bundle(save_bundle(tmp_path / "fisn", model, meta))
    ans = deocclude_photo(Chain.of(net, meta), img)
    photo = np.asarray(img)
    assert ans.output.shape == photo.shape and ans.mask.shape == photo.shape[:2] and len(ans.faces) == 2
    assert np.array_equal(ans.output[~ans.mask], photo[~ans.mask])


def test_reconstruction_of_a_photo_lands_on_its_faces(tmp_path, group):
    from faceparse.face3d.io import landmarks_in_photo
    from faceparse.stages.recon3d.photo import reconstruct_photo

    img, _ = group
    st = get_stage("recon3d")
    meta = {"stage": "recon3d", "input_size": 64, **st.data_meta({}, {}),
            "model_config": st.model_config({"model": {"preset": "small", "overrides": {"width": 8}}})}
    net, meta = load_bundle(save_bundle(tmp_path / "r3d", st.build_model(meta), meta))
    plan = plan_photo(img, 64)
    y, out, pls = reconstruct_photo(net, meta, img, plan)
    assert len(y) == len(plan.faces) == 2
    for k, face in enumerate(plan.faces):
        assert inside_box(landmarks_in_photo(out, k, pls[k], 64), face, margin=0.35)   # the mean face, in place


def test_an_aligned_photo_is_one_crop_the_whole_image(real_samples):
    img = Image.open(real_samples / "0.jpg").convert("RGB")
    plan = plan_photo(img, 64)
    pl = crop_placements(plan, img)[0]
    assert plan.whole and np.allclose(pl.origin, 0) and np.allclose([pl.ax, pl.ay], [[1024, 0], [0, 1024]])
    assert Plan([], None, (5, 5)).whole
