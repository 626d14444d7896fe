"""iBUG 68 flip permutation, the flip convention against albumentations, and hand-computed 300-W metrics."""
import numpy as np
import pytest

from faceparse.data.synth import generate_sample
from faceparse.ibug68 import (ALBU_OFFSET, IBUG_FLIP, REGIONS, auc_failure, flip_points, inter_ocular,
                                 landmark_metrics)

# image-left halves of each symmetric group (the subject's right side)
LEFT = [*range(0, 8), *range(17, 22), 31, 32, *range(36, 42), 48, 49, 50, 58, 59, 60, 61, 67]
RIGHT = [*range(9, 17), *range(22, 27), 34, 35, *range(42, 48), 52, 53, 54, 55, 56, 63, 64, 65]
CENTRE = [8, 27, 28, 29, 30, 33, 51, 57, 62, 66]


def test_flip_permutation_is_an_involution_mapping_left_onto_right():
    assert sorted(IBUG_FLIP) == list(range(68))
    assert np.array_equal(IBUG_FLIP[IBUG_FLIP], np.arange(68))
    assert sorted(IBUG_FLIP[LEFT]) == sorted(RIGHT)
    assert list(IBUG_FLIP[CENTRE]) == CENTRE
    assert [IBUG_FLIP[i] for i in (0, 16, 17, 26, 31, 35, 36, 37, 38, 39, 40, 41, 48, 60, 61, 67)] == \
           [16, 0, 26, 17, 35, 31, 45, 44, 43, 42, 47, 46, 54, 64, 63, 65]


def test_flipped_synthetic_face_keeps_the_ibug_layout():
    s = generate_sample(3, 1, size=128, occlusion_prob=0.0)
    f = flip_points(s.landmarks, 128)
    x = f[:, 0]
    assert x[36] < x[39] < x[42] < x[45] and x[17] < x[21] < x[22] < x[26]
    assert x[0] < x[8] < x[16] and x[31] < x[33] < x[35] and x[48] < x[51] < x[54] and x[60] < x[64]
    np.testing.assert_allclose(f[45, 0], 128 - s.landmarks[36, 0], rtol=0, atol=1e-4)
    np.testing.assert_allclose(flip_points(f, 128), s.landmarks, atol=1e-4)   # round trip
    np.testing.assert_allclose(inter_ocular(f), inter_ocular(s.landmarks), rtol=1e-6)


def test_albumentations_flips_keypoints_as_w_minus_1_minus_x():
    """A marked pixel at column 2 of a 10-wide image lands on column 7 and the keypoint put on it
    (albumentations: pixel centres on integers, x = 2) on 7 = 10 − 1 − 2; in the continuous convention the
    same point is 2.5 → flip_points → 7.5, the centre of column 7: the two agree up to ALBU_OFFSET."""
    import albumentations as A

    image = np.zeros((6, 10, 3), np.uint8)
    image[3, 2] = 255
    aug = A.Compose([A.HorizontalFlip(p=1.0)], keypoint_params=A.KeypointParams(format="xy", remove_invisible=False))
    out = aug(image=image, keypoints=np.array([[2.0, 3.0]]))
    assert np.argwhere(out["image"][..., 0] == 255).tolist() == [[3, 7]]
    assert out["keypoints"][0][:2].tolist() == [7.0, 3.0]
    pts = np.zeros((68, 2), np.float32)
    pts[36] = [2 + ALBU_OFFSET, 3 + ALBU_OFFSET]
    assert flip_points(pts, 10)[45].tolist() == [7.5, 3.5]


def _face(iod=10.0, n=1):
    """Shapes whose outer eye corners 36 / 45 lie iod apart."""
    t = np.zeros((n, 68, 2))
    t[:, :, 0] = np.linspace(0, 20, 68)
    t[:, 36], t[:, 45] = [0.0, 0.0], [iod, 0.0]
    return t


def test_perfect_prediction():
    t = _face(n=3)
    m = landmark_metrics(t, t)
    assert m["nme"] == 0.0 and m["auc_0.08"] == pytest.approx(1.0) and m["failure_rate_0.08"] == 0.0
    assert all(m[f"nme_{r}"] == 0.0 for r in REGIONS)


def test_uniform_error_of_a_tenth_iod_fails_every_image():
    t = _face(iod=10.0, n=4)
    m = landmark_metrics(t + [0.6, 0.8], t)    # |(0.6, 0.8)| = 1 = 0.1 · IOD
    assert m["nme"] == pytest.approx(0.1) and m["failure_rate_0.08"] == 1.0 and m["auc_0.08"] == 0.0


def test_two_images_by_hand():
    # image 0: IOD 10, points 0..16 (jaw) off by 2 px, the rest exact → jaw NME 0.2, NME 17·0.2/68 = 0.05
    # image 1: IOD 20, every point off by 0.4 px → NME 0.02 everywhere
    t = np.concatenate([_face(10.0), _face(20.0)])
    p = t.copy()
    p[0, :17, 1] += 2.0
    p[1, :, 0] += 0.4
    m = landmark_metrics(p, t)
    assert m["nme"] == pytest.approx((0.05 + 0.02) / 2)
    assert m["nme_jaw"] == pytest.approx((0.2 + 0.02) / 2)
    assert m["nme_eyes"] == pytest.approx(0.01) and m["nme_mouth"] == pytest.approx(0.01)
    # CED: 0 below 0.02, 1/2 on [0.02, 0.05), 1 from 0.05 → area (0.03·0.5 + 0.03) / 0.08 = 0.5625
    assert m["auc_0.08"] == pytest.approx(0.5625, abs=2e-3)
    assert m["failure_rate_0.08"] == 0.0


def test_auc_of_a_single_error_level():
    assert auc_failure(np.array([0.04, 0.04]))[0] == pytest.approx(0.5, abs=2e-3)
    assert auc_failure(np.array([0.0, 0.09])) == pytest.approx((0.5, 0.5), abs=1e-9)


def test_occluded_and_visible_points_are_pooled_separately():
    t = _face(10.0, n=2)
    p = t.copy()
    p[0, 50, 0] += 3.0         # hidden, error 0.3
    p[1, 60, 0] += 1.0         # hidden, error 0.1
    vis = np.ones((2, 68), bool)
    vis[0, 50] = vis[1, 60] = vis[1, 61] = False   # 61 hidden but exact: error 0
    m = landmark_metrics(p, t, visible=vis)
    assert m["n_occluded_points"] == 3
    assert m["nme_occluded"] == pytest.approx(0.4 / 3)
    assert m["nme_visible"] == 0.0
    clear = landmark_metrics(p, t, visible=np.ones((2, 68), bool))
    assert clear["nme_occluded"] is None and clear["n_occluded_points"] == 0


def test_mean_shape_baseline():
    t = _face(10.0, n=2)
    t[1] += 5.0                               # same shape, translated
    mean = t.mean(0)                          # every point 2.5 px off in x and y → 2.5·√2 / 10
    m = landmark_metrics(t, t, mean_shape=mean)
    assert m["mean_shape_nme"] == pytest.approx(2.5 * np.sqrt(2) / 10)


def test_bad_inputs_are_refused():
    t = _face()
    with pytest.raises(ValueError, match="inter-ocular"):
        landmark_metrics(np.zeros((1, 68, 2)), np.zeros((1, 68, 2)))
    with pytest.raises(ValueError, match=r"\(N, 68, 2\)"):
        landmark_metrics(t[:, :5], t[:, :5])
    with pytest.raises(ValueError, match="visible"):
        landmark_metrics(t, t, visible=np.ones((1, 5), bool))
