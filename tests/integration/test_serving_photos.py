"""Photos in the wild through a real TorchServe (behind the router, token auth): a group photo's two faces are
found, parsed in place and answered as one map of the photo's shape; a photo without a face is a 422 with a
JSON message; ``X-Detect: false`` parses an image whole as before."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from faceparse.serve.testing import constant_class, faceless_photos, group_photo, post_prediction, serve_stage, tiny_bundle

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def served(tmp_path_factory, repo_root):
    tmp = tmp_path_factory.mktemp("serve-photos")
    bundle = constant_class(tiny_bundle(tmp / "bundle", input_size=64), 1)   # 'skin' wherever a face crop lands
    yield from serve_stage(repo_root / "params.yaml", "parser", bundle, tmp)


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_a_group_photo_gets_both_faces_parsed_in_place(served, real_samples):
    st, _ = served
    img, truth = group_photo(real_samples)
    r = post_prediction(st, _png(img), {"X-Resolution": "600"})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("image/png"), r.text[:300]
    lab = np.asarray(Image.open(io.BytesIO(r.content)))
    assert lab.shape == (280, 600)                        # the photo's aspect, long side = the resolution
    for cx, cy, _ in truth:
        x, y = int(cx / 2), int(cy / 2)
        assert (lab[y - 20:y + 20, x - 20:x + 20] == 1).all(), (cx, cy)
    assert (lab[:, 215:310] == 0).all()                   # between the faces: background
    js = post_prediction(st, _png(img), {"X-Format": "json"}).json()
    assert len(js["faces"]) == 2 and js["size"] == [1024, 478] and js["fractions"]["skin"] > 0.1


def test_a_photo_without_a_face_is_422_and_x_detect_false_parses_it_whole(served, real_samples):
    st, _ = served
    faceless = _png(faceless_photos()["landscape"])
    r = post_prediction(st, faceless)
    assert r.status_code == 422 and r.headers["Content-Type"].startswith("application/json"), r.text[:300]
    assert "no face" in r.json()["message"]
    r = post_prediction(st, faceless, {"X-Detect": "false", "X-Resolution": "64"})
    assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).size == (64, 64)
    # the server lives on: a real photo is still answered
    assert post_prediction(st, (real_samples / "0.jpg").read_bytes()).status_code == 200
