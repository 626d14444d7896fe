"""The 3D reconstruction stage on the one serving path: packaged, served by a real TorchServe with token auth,
answering a real photo with its coefficients and 68 projected landmarks (JSON, the default), the mesh (OBJ) or
the render over the photo (PNG), and garbage or a format it does not answer with a 4xx."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from faceparse.serve.testing import (assert_refused, assert_token_required, post_prediction, recon3d_bundle,
                                     serve_stage)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def served(tmp_path_factory, repo_root):
    tmp = tmp_path_factory.mktemp("serve-recon3d")
    yield from serve_stage(repo_root / "params.yaml", "recon3d", recon3d_bundle(tmp / "bundle"), tmp)


def test_a_real_photo_gets_its_coefficients_mesh_and_overlay(served, real_samples):
    st, bundle = served
    assert st["model_name"] == "faceparse-recon3d"
    photo = (real_samples / "0.jpg").read_bytes()
    w, h = Image.open(io.BytesIO(photo)).size
    r = post_prediction(st, photo)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json"), r.text[:300]
    body = r.json()
    pts = np.asarray(body["landmarks"])
    assert pts.shape == (68, 2) and np.isfinite(pts).all() and body["image_size"] == [w, h]
    assert len(body["identity"]) == 100 and len(body["expression"]) == 53 and len(body["sh"]) == 27
    # the same as the bundle answers in process
    from faceparse.bundle import load_bundle
    from faceparse.images import read_image
    from faceparse.models import preprocess
    from faceparse.serve.codecs import Item, codec_for
    from faceparse.serve.imaging import Options

    model, meta = load_bundle(bundle)
    img = read_image(photo)
    ref = json.loads(codec_for("recon3d").run(model, meta, [Item(0, None, img, preprocess(img, 64), Options(64, "json"))],
                                              None, None, "")[0][0])
    np.testing.assert_allclose(pts, ref["landmarks"], atol=1e-2)
    np.testing.assert_allclose(body["identity"], ref["identity"], atol=1e-4)
    obj = post_prediction(st, photo, {"X-Format": "obj"})
    assert obj.status_code == 200 and obj.text.count("\nv ") + obj.text.startswith("v ") == 9409
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
