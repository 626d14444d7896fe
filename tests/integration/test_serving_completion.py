"""The map-completion stage on the one serving path: a bundle composed of a parser and a landmark model,
packaged, served by a real TorchServe behind the router with token auth; a real photo answered with the
completed map (the same as the bundle computes in process), the occlusion mask, both maps in JSON; garbage
and wrong options with a 4xx."""
from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from faceparse.config import load_params
from faceparse.serve.testing import (CLIENT_MISTAKES, PHOTO_CONTENT_TYPES, assert_client_mistake, assert_refused,
                                    assert_token_required, completion_bundle, post_prediction, serve_stage)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def served(tmp_path_factory, repo_root):
    tmp = tmp_path_factory.mktemp("serve-completion")
    bundle = completion_bundle(tmp, load_params(repo_root / "params.yaml", ["registry.tracking_uri=null"]))
    yield from serve_stage(repo_root / "params.yaml", "completion", bundle, tmp)


def expected(bundle, photo: bytes, resolution: int):
    from faceparse.bundle import load_bundle
    from faceparse.stages.completion.algorithm import Settings
    from faceparse.images import read_image
    from faceparse.models import preprocess
    from faceparse.stages.completion.maps import run_maps

    model, meta = load_bundle(bundle)
    x = preprocess(read_image(photo), int(meta["input_size"])).unsqueeze(0)
    return run_maps(model, Settings.from_dict(meta["model_config"]), x, resolution)[0]


def test_a_real_photo_gets_its_completed_map_and_occlusion_mask(served, real_samples):
    st, bundle = served
    assert st["model_name"] == "faceparse-completion"
    photo = (real_samples / "0.jpg").read_bytes()
    r = post_prediction(st, photo, {"X-Resolution": "96"})
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/png", r.text[:300]
    served_map = np.asarray(Image.open(io.BytesIO(r.content)))
    ref = expected(bundle, photo, 96)
    assert served_map.shape == (96, 96)
    assert (served_map == ref.gamma).mean() > 0.995      # argmax near-ties between processes aside
    mask = np.asarray(Image.open(io.BytesIO(post_prediction(st, photo, {"X-Format": "mask", "X-Resolution": "96"}).content)))
    assert set(np.unique(mask)) <= {0, 255} and ((mask > 0) == ref.occlusion).mean() > 0.995
    js = post_prediction(st, photo, {"X-Format": "json"}).json()
    assert js["label_table"] == "celebamask-hq" and 0.0 <= js["occluded_fraction"] <= 1.0
    completed = np.asarray(Image.open(io.BytesIO(base64.b64decode(js["completed_png"]))))
    assert completed.shape == (64, 64)                   # default: the parser's input size
    ov = post_prediction(st, photo, {"X-Format": "overlay"})
    assert ov.status_code == 200 and Image.open(io.BytesIO(ov.content)).mode == "RGB"


@pytest.mark.parametrize("body,headers,status", [
    (b"garbage", {}, 400),
    (b"GIF89a" + b"\0" * 64, {}, 415),
    (None, {"X-Format": "points"}, 400),
    (None, {"X-Resolution": "99999"}, 400),
], ids=["not-an-image", "gif", "unknown-format", "huge-resolution"])
def test_garbage_and_wrong_options_are_4xx(served, real_samples, body, headers, status):
    st, _ = served
    assert_refused(st, body if body is not None else (real_samples / "1.jpg").read_bytes(), headers, status,
                   (real_samples / "2.jpg").read_bytes())


@pytest.mark.parametrize("ctype", PHOTO_CONTENT_TYPES)
def test_a_raw_photo_is_answered_whatever_its_content_type(served, real_samples, ctype):
    """The parser's Content-Type matrix (test_readme_requests.py), through the router to this stage."""
    r = post_prediction(served[0], (real_samples / "1.jpg").read_bytes(), {"Content-Type": ctype} if ctype else {})
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/png", r.text[:300]


@pytest.mark.parametrize("body,ctype", CLIENT_MISTAKES)
def test_client_mistakes_are_4xx_and_the_server_lives_on(served, real_samples, body, ctype):
    assert_client_mistake(served[0], body, ctype, (real_samples / "2.jpg").read_bytes())


def test_no_token_is_refused(served, real_samples):
    assert_token_required(served[0], (real_samples / "0.jpg").read_bytes())
