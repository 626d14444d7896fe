"""Algorithm 1 ("Face Parsing Map Plus") on hand-made maps, branch by branch; the two readings of pass 2;
the occlusion mask; the benchmark's region scores against a hand count."""
import numpy as np
import pytest

from faceparse.stages.completion.algorithm import MaskIoU, RegionScores, Settings, complete, occlusion_mask, plus
from faceparse.labels import CELEBAMASK_HQ

C = CELEBAMASK_HQ.index
BG, SKIN, NOSE, L_EYE, MOUTH, HAIR = C("background"), C("skin"), C("nose"), C("l_eye"), C("mouth"), C("hair")


def row(*ids):
    return np.array([ids], np.uint8)


def test_pass_1_skin_branches():
    # pixel: A skin (kept) | A hair, B skin (B) | A bg, B bg (A) | A nose, B skin → pass 1 gives B's skin,
    # pass 2 puts A's nose back (A ∈ S wins)
    a, b = row(SKIN, HAIR, BG, NOSE), row(BG, SKIN, BG, SKIN)
    np.testing.assert_array_equal(plus(a, b), row(SKIN, SKIN, BG, NOSE))


def test_pass_2_feature_branches():
    # A eye (kept though B says nose) | A bg, B nose (B) | A skin, B eye (B: a feature beats skin) | A hair, B hair (A)
    a, b = row(L_EYE, BG, SKIN, HAIR), row(NOSE, NOSE, L_EYE, HAIR)
    np.testing.assert_array_equal(plus(a, b), row(L_EYE, NOSE, L_EYE, HAIR))


def test_the_literal_reading_of_pass_2_undoes_pass_1():
    # an occluder (A says background) over skin, with B drawing skin there: the sequential reading fills it,
    # the literal text's pass 2 ("else C ← A") copies A's background back
    a, b = row(BG, BG, SKIN), row(SKIN, NOSE, SKIN)
    np.testing.assert_array_equal(plus(a, b, Settings(reading="sequential")), row(SKIN, NOSE, SKIN))
    np.testing.assert_array_equal(plus(a, b, Settings(reading="literal")), row(BG, NOSE, SKIN))


def test_inner_mouth_counts_as_a_feature_only_when_asked():
    a, b = row(BG), row(MOUTH)
    assert plus(a, b, Settings(mouth_is_feature=True))[0, 0] == MOUTH
    assert plus(a, b, Settings(mouth_is_feature=False))[0, 0] == BG


def test_occlusion_mask_is_face_in_gamma_and_not_in_alpha():
    gamma, alpha = row(SKIN, SKIN, NOSE, HAIR, BG), row(SKIN, HAIR, BG, BG, BG)
    np.testing.assert_array_equal(occlusion_mask(gamma, alpha), [[False, True, True, False, False]])


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="differ in size"):
        plus(np.zeros((4, 4), np.uint8), np.zeros((4, 5), np.uint8))
    with pytest.raises(ValueError, match="reading"):
        Settings.from_dict({"reading": "loose"})


def test_region_scores_against_a_hand_count():
    s = RegionScores(Settings().face_ids())
    truth = row(SKIN, SKIN, SKIN, NOSE, BG)
    pred = row(SKIN, SKIN, NOSE, NOSE, SKIN)
    s.update(pred, truth)
    got = s.compute()
    # skin: tp 2, |gt| 3, |pred| 3 → F1 2/3, IoU 2/4; nose: tp 1, |gt| 1, |pred| 2 → F1 2/3, IoU 1/2
    assert got["per_class_f1"] == pytest.approx({"skin": 2 / 3, "nose": 2 / 3})
    assert got["f1"] == pytest.approx(2 / 3) and got["miou"] == pytest.approx(0.5)
    inside = RegionScores(Settings().face_ids())
    inside.update(pred, truth, region=np.array([[False, False, True, True, False]]))
    assert inside.compute()["per_class_f1"] == pytest.approx({"skin": 0.0, "nose": 2 / 3})
    m = MaskIoU()
    m.update(np.array([True, True, False]), np.array([True, False, False]))
    assert m.compute() == pytest.approx(0.5)
    assert MaskIoU().compute() is None


def test_complete_fills_an_occluded_cheek_from_the_landmarks():
    """A parser map with a hole where a hand covers the face is filled from the landmark-drawn map."""
    from faceparse.landmark_map import draw_map

    rng = np.random.default_rng(0)
    t = np.linspace(np.pi * 0.05, np.pi * 0.95, 17)
    pts = np.zeros((68, 2))
    pts[0:17] = np.stack([64 - 40 * np.cos(t), 60 + 45 * np.sin(t)], 1)        # jaw, image left → right
    pts[17:27] = np.stack([np.linspace(30, 98, 10), np.full(10, 40.0)], 1)       # brows
    pts[27:36] = np.stack([np.full(9, 64.0) + rng.normal(0, 2, 9), np.linspace(45, 75, 9)], 1)
    for k, cx in ((36, 45), (42, 83)):                                           # eyes
        ang = np.linspace(0, 2 * np.pi, 7)[:6]
        pts[k:k + 6] = np.stack([cx + 9 * np.cos(ang), 52 + 4 * np.sin(ang)], 1)
    ang = np.linspace(0, 2 * np.pi, 13)[:12]
    pts[48:60] = np.stack([64 + 16 * np.cos(ang), 88 + 6 * np.sin(ang)], 1)
    pts[60:68] = np.stack([64 + 10 * np.cos(ang[:8] * 1.5), 88 + 2 * np.sin(ang[:8] * 1.5)], 1)
    beta = draw_map(pts, 128)
    for name, side in (("r_eye", "left"), ("r_brow", "left"), ("l_eye", "right"), ("l_brow", "right")):
        xs = np.nonzero(beta == C(name))[1]     # the person's right = image left (points 36-41, 17-21)
        assert len(xs) and ((xs < 64).all() if side == "left" else (xs >= 64).all()), name
    alpha = beta.copy()
    alpha[70:100, 20:50] = BG                          # the hand: the parser sees no face there
    maps = complete(alpha, pts)
    hole = np.zeros_like(alpha, bool)
    hole[70:100, 20:50] = True
    face = np.isin(beta, Settings().face_ids())
    np.testing.assert_array_equal(maps.gamma, beta)    # a perfect landmark map restores it exactly
    np.testing.assert_array_equal(maps.occlusion, hole & face)
