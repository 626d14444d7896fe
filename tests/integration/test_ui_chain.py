"""The chain's endpoint (issue #32): ``POST /api/chain`` on the page's server answers every output of the whole
chain for a real photo in one JSON answer, each map at the photo's size; garbage, an empty form, a photo
without a face and a chain whose model is missing are refused with a 4xx in the page's error shape, never a
5xx. The page's server (aiohttp) in a thread of this process, the shipped models."""
from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import requests
from PIL import Image

from faceparse.serve.imaging import encode_png
from faceparse.ui.backends import InProcess
from faceparse.ui.chain_api import ChainRoute
from test_ui_cards import ThreadedPage, post

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def page():
    p = ThreadedPage(InProcess({}, {}))
    yield p
    p.stop()


def _image(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def test_a_photo_gets_every_output_at_its_size(page, real_samples):
    r = post(page, "/api/chain", (real_samples / "0.jpg").read_bytes())
    assert r.status_code == 200, r.text
    body = r.json()
    size = tuple(body["size"])
    assert size == (body["image"]["width"], body["image"]["height"])
    for key in ("labels_png", "completed_png", "occlusion_png", "deoccluded_png", "mesh_overlay_png"):
        assert _image(body[key]).size == size, key
    assert np.asarray(_image(body["labels_png"])).max() > 0
    assert len(body["points"]) == 1 and np.asarray(body["points"][0]).shape == (68, 2)
    (mesh,) = body["meshes"]
    assert mesh["obj"].count("\nf ") > 1000 and len(mesh["points"]) == 68 and "identity" in mesh["coefficients"]
    assert set(body["seconds"]) >= {"detect", "fisn", "recon3d"}


@pytest.mark.parametrize("what, send, status", [
    ("garbage bytes", lambda u: requests.post(u, files={"image": ("x.jpg", b"\x00garbage", "image/jpeg")}), 400),
    ("an empty file", lambda u: requests.post(u, files={"image": ("x.jpg", b"", "image/jpeg")}), 400),
    ("no form", lambda u: requests.post(u, data=b"{}", headers={"Content-Type": "application/json"}), 400),
    ("the wrong field", lambda u: requests.post(u, files={"photo": ("x.png", encode_png(np.zeros((8, 8, 3), np.uint8)))}), 400),
    ("a photo without a face", lambda u: requests.post(
        u, files={"image": ("blank.png", encode_png(np.full((240, 320, 3), 128, np.uint8)), "image/png")}), 422),
])
def test_garbage_is_refused_with_a_4xx_naming_it(page, what, send, status):
    r = send(f"{page.url}/api/chain")
    assert r.status_code == status, (what, r.status_code, r.text)
    err = r.json()["error"]
    assert err["status"] == status and err["message"]


def test_a_chain_that_cannot_load_says_why_with_a_409(real_samples):
    p = ThreadedPage(InProcess({}, {}), chain=ChainRoute({"recon3d": "/nonexistent/recon3d"}))
    try:
        r = post(p, "/api/chain", (real_samples / "0.jpg").read_bytes())
    finally:
        p.stop()
    assert r.status_code == 409 and "/nonexistent/recon3d" in r.json()["error"]["message"], r.text
