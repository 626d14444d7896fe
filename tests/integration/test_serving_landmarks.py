"""The landmark stage on the one serving path: packaged, served by a real TorchServe behind the router with
token auth, answering a real photo with 68 finite points (JSON) or an overlay, and garbage with a 4xx."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from faceparse.serve.testing import assert_refused, assert_token_required, landmark_bundle, post_prediction, serve_stage

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def served(tmp_path_factory, repo_root):
    tmp = tmp_path_factory.mktemp("serve-landmarks")
    yield from serve_stage(repo_root / "params.yaml", "landmarks", landmark_bundle(tmp / "bundle"), tmp)


def test_a_real_photo_gets_68_finite_points_in_its_own_pixels(served, real_samples):
    st, bundle = served
    assert st["model_name"] == "faceparse-landmarks"
    photo = (real_samples / "0.jpg").read_bytes()
    r = post_prediction(st, photo)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json"), r.text[:300]
    body = r.json()
    pts = np.asarray(body["points"])
    w, h = Image.open(io.BytesIO(photo)).size
    assert pts.shape == (68, 2) and np.isfinite(pts).all() and body["image_size"] == [w, h]
    assert (pts >= 0).all() and (pts[:, 0] <= w).all() and (pts[:, 1] <= h).all()   # soft-argmax stays inside
    # the same as the bundle predicts in process, mapped to the photo's pixels
    from faceparse.bundle import load_bundle
    from faceparse.images import read_image
    from faceparse.stages import get_stage

    model, meta = load_bundle(bundle)
    ref = get_stage("landmarks").predict_photo(model, meta, read_image(photo))[0][0]
    np.testing.assert_allclose(pts, ref, atol=1e-2)
    ov = post_prediction(st, photo, {"X-Format": "overlay"})
    assert ov.status_code == 200 and Image.open(io.BytesIO(ov.content)).size == (w, h)


@pytest.mark.parametrize("body,headers,status", [
    (b"garbage", {}, 400),
    (b"GIF89a" + b"\0" * 64, {}, 415),
    (None, {"X-Format": "png"}, 400),          # a label map is not what this stage answers
], ids=["not-an-image", "gif", "png-format"])
def test_garbage_and_wrong_options_are_4xx(served, real_samples, body, headers, status):
    st, _ = served
    assert_refused(st, body if body is not None else (real_samples / "1.jpg").read_bytes(), headers, status,
                   (real_samples / "2.jpg").read_bytes())


def test_no_token_is_refused(served, real_samples):
    assert_token_required(served[0], (real_samples / "0.jpg").read_bytes())
