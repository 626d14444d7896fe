"""The 300-W .pts reader / writer and the face crop of the 300-W adapter."""
import numpy as np
import pytest

from faceparse.data.pts import crop_to_face, read_pts, write_pts

GOOD = """version: 1
n_points:  3
{
10.5 20.25
# a comment
30 40

1e1 -2
}
"""


def test_reads_the_format_as_written_and_one_based(tmp_path):
    (tmp_path / "a.pts").write_text(GOOD)
    pts = read_pts(tmp_path / "a.pts")
    assert pts.dtype == np.float32 and pts.tolist() == [[10.5, 20.25], [30.0, 40.0], [10.0, -2.0]]
    assert read_pts(tmp_path / "a.pts", one_based=True).tolist() == [[9.5, 19.25], [29.0, 39.0], [9.0, -3.0]]


def test_write_read_round_trip(tmp_path):
    pts = np.random.default_rng(0).uniform(0, 500, (68, 2)).astype(np.float32)
    write_pts(tmp_path / "b.pts", pts)
    assert np.array_equal(read_pts(tmp_path / "b.pts"), pts)
    write_pts(tmp_path / "c.pts", pts, one_based=True)
    assert read_pts(tmp_path / "c.pts").tolist()[0] == pytest.approx((pts[0] + 1).tolist(), abs=1e-4)
    assert np.allclose(read_pts(tmp_path / "c.pts", one_based=True), pts, atol=1e-4)


@pytest.mark.parametrize("text, where", [
    (GOOD.replace("}\n", ""), "closing"),                               # missing closing brace
    (GOOD.replace("{\n", ""), "header line or '{'"),                    # missing opening brace
    (GOOD.replace("n_points:  3", "n_points:  68"), "68"),             # wrong count
    (GOOD.replace("30 40", "30 forty"), ":6: expected two finite"),   # non-numeric, line 6
    (GOOD.replace("30 40", "30 40 50"), "expected two finite"),       # three numbers
    (GOOD.replace("30 40", "nan 40"), "expected two finite"),         # not finite
    (GOOD.replace("version: 1\n", ""), "version: 1"),                  # missing header
    (GOOD.replace("n_points:  3\n", ""), "n_points"),
    (GOOD + "1 2\n", "after the closing"),
    ("", "no opening"),
])
def test_broken_files_name_the_file(tmp_path, text, where):
    path = tmp_path / "broken.pts"
    path.write_text(text)
    with pytest.raises(ValueError, match="broken.pts") as e:
        read_pts(path)
    assert where in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pts"):
        read_pts(tmp_path / "nope.pts")


def _marked(h, w, cx, cy, r=3):
    """An image with a (2r+1)² white block centred on pixel (cx, cy) — continuous centre (cx+.5, cy+.5)."""
    img = np.full((h, w, 3), 40, np.uint8)
    img[cy - r:cy + r + 1, cx - r:cx + r + 1] = 255
    return img


def _centroid(img):
    m = img[..., 0].astype(float) - 150       # the block's upper half only: no ringing or padding edges
    m[m < 0] = 0
    ys, xs = np.indices(m.shape)
    return np.array([(xs * m).sum() / m.sum() + 0.5, (ys * m).sum() / m.sum() + 0.5])   # continuous


@pytest.mark.parametrize("box, size", [((60, 50, 140, 150), 64),     # inside, downscaled (INTER_AREA)
                                       ((60, 50, 140, 150), 256),    # inside, upscaled (INTER_CUBIC)
                                       ((-20, 120, 50, 190), 96)])   # crosses the left/bottom edges: padded
def test_crop_keeps_a_marked_pixel_under_its_landmark(box, size):
    x0, y0, x1, y1 = box
    img = _marked(200, 160, 40 if x0 < 0 else 100, 150 if y0 > 100 else 90)
    target = np.array([40.5 if x0 < 0 else 100.5, 150.5 if y0 > 100 else 90.5])
    pts = np.array([[x0, y0], [x1, y1], [x0, y1], target], np.float64)
    crop, out = crop_to_face(img, pts, size, margin=0.25, pad="zero")
    assert crop.shape == (size, size, 3) and crop.dtype == np.uint8
    np.testing.assert_allclose(_centroid(crop), out[3], atol=0.35)
    # the points' box sits in the middle of the crop with the margin around it
    side = max(x1 - x0, y1 - y0) * 1.5
    assert out[:3].min() >= size * 0.25 / 1.5 - size / side - 1e-6
    assert out[:3].max() <= size - size * 0.25 / 1.5 + size / side + 1e-6


def test_crop_hand_computed_mapping():
    # box (10, 10)-(30, 30): side 20 · 1.5 = 30 around centre (20, 20) → left = top = 5; size 60 → ×2
    img = np.zeros((40, 40, 3), np.uint8)
    crop, out = crop_to_face(img, np.array([[10.0, 10.0], [30.0, 30.0]]), 60)
    assert out.tolist() == [[10.0, 10.0], [50.0, 50.0]]
    assert crop.shape == (60, 60, 3)


def test_edge_padding_replicates_the_border():
    img = np.zeros((20, 20, 3), np.uint8)
    img[:, 0] = 200                           # left column bright
    crop, _ = crop_to_face(img, np.array([[0.0, 5.0], [10.0, 15.0]]), 15, margin=0.25, pad="edge")
    assert (crop[:, :3] == 200).all()        # left = -3: three replicated columns
    crop0, _ = crop_to_face(img, np.array([[0.0, 5.0], [10.0, 15.0]]), 15, margin=0.25, pad="zero")
    assert (crop0[:, :3] == 0).all() and (crop0[:, 3] == 200).all()
