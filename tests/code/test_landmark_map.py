"""M_β drawn from 68 landmarks: each part on its side (the person's left = image right), in the right
vertical order, drawn at the target resolution (sub-pixel: areas scale with the square of the size)."""
import numpy as np
import pytest

from faceparse.data.synth import generate_sample
from faceparse.landmark_map import draw_map
from faceparse.labels import CELEBAMASK_HQ as T


@pytest.fixture(scope="module")
def points():
    return generate_sample(0, 5, size=128, occlusion_prob=0.0).landmarks + 0.5   # continuous coordinates


def centre(m, name):
    ys, xs = np.nonzero(m == T.index(name))
    assert len(xs), f"{name} not drawn"
    return xs.mean(), ys.mean()


def test_parts_land_on_their_side_and_in_order(points):
    m = draw_map(points, 128)
    (rex, rey), (lex, ley) = centre(m, "r_eye"), centre(m, "l_eye")
    assert rex < points[27, 0] < lex                          # points 36-41 (image left) = the person's right eye
    assert centre(m, "r_brow")[0] < points[27, 0] < centre(m, "l_brow")[0]
    assert centre(m, "r_brow")[1] < rey and centre(m, "l_brow")[1] < ley   # brows above the eyes
    assert max(rey, ley) < centre(m, "nose")[1] < centre(m, "u_lip")[1] < centre(m, "l_lip")[1]
    assert (m[m > 0] != T.index("background")).all() and (m == T.index("skin")).sum() > 1000


def test_drawn_at_the_output_resolution(points):
    small, big = draw_map(points, 128), draw_map(points, 512, scale=4)
    for name in ("skin", "nose", "u_lip"):
        a, b = (small == T.index(name)).sum(), (big == T.index(name)).sum()
        assert b / a == pytest.approx(16, rel=0.1), name
    # the eye polygon (6 points) at 512²: its pixel count is its area (shoelace), not a 128² eye blown up
    x, y = (points[42:48] * 4).T
    area = 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
    assert (big == T.index("l_eye")).sum() == pytest.approx(area, rel=0.05)
    # sub-pixel: moving every point by a quarter pixel moves the big map by one pixel
    shifted = draw_map(points + [0.25, 0], 512, scale=4)
    assert (np.roll(big, 1, axis=1) == shifted).mean() > 0.999


def test_bad_landmarks_are_refused():
    with pytest.raises(ValueError, match="finite"):
        draw_map(np.full((68, 2), np.nan), 64)
    with pytest.raises(ValueError, match=r"\(68, 2\)"):
        draw_map(np.zeros((5, 2)), 64)
