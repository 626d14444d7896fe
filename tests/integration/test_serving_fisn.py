"""The de-occlusion stage on the one serving path: a FISN bundle carrying its completion model (tiny random
networks), packaged and served by a real TorchServe behind the router with token auth. A real photo is
answered with a PNG of the photo's own size — the photo with the occluded face region replaced by the
generator's output, the same as the bundle computes in process — the generator's raw output at its size and
the occlusion mask; garbage and wrong options with a 4xx; no token with a 4xx."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceparse.config import load_params
from faceparse.serve.testing import (CLIENT_MISTAKES, PHOTO_CONTENT_TYPES, assert_client_mistake, assert_refused,
                                    assert_token_required, completion_bundle, post_prediction, serve_stage)

pytestmark = pytest.mark.integration


def fisn_bundle(directory: Path, params: dict, size: int = 64, seed: int = 0) -> Path:
    """A random tiny FISN bundle in ``directory/fisn`` carrying a random completion bundle (as training writes)."""
    import torch

    from faceparse.bundle import load_bundle, read_meta, save_bundle
    from faceparse.stages import get_stage

    comp_dir = completion_bundle(directory, params)
    comp_meta = read_meta(comp_dir)
    st = get_stage("fisn")
    meta = {"stage": "fisn", "model_config": st.model_config({"model": {"preset": "tiny", "overrides": {
                "generator": {"ngf": 8, "style_dim": 8, "spade_hidden": 8}, "discriminator": {"ndf": 8}}}}),
            "num_classes": 19, "label_table": "celebamask-hq", "input_size": size, "completion": comp_meta,
            "carries": {"completion": {"ref": str(comp_dir), "model_uri": None}}}
    torch.manual_seed(seed)
    model = st.build_model(meta)
    model.completion.load_state_dict(load_bundle(comp_dir)[0].state_dict())
    return save_bundle(directory / "fisn", model, meta)


@pytest.fixture(scope="module")
def served(tmp_path_factory, repo_root):
    tmp = tmp_path_factory.mktemp("serve-fisn")
    bundle = fisn_bundle(tmp, load_params(repo_root / "params.yaml", ["registry.tracking_uri=null"]))
    yield from serve_stage(repo_root / "params.yaml", "fisn", bundle, tmp)


def expected(bundle, photo: bytes):
    from faceparse.bundle import load_bundle
    from faceparse.stages.fisn.photo import Chain
    from faceparse.images import read_image

    model, meta = load_bundle(bundle)
    return Chain.of(model, meta).run([read_image(photo)])[0]


def test_a_real_photo_is_answered_with_the_deoccluded_photo_at_its_size(served, real_samples):
    st, bundle = served
    assert st["model_name"] == "faceparse-fisn"
    photo = (real_samples / "0.jpg").read_bytes()
    r = post_prediction(st, photo)
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/png", r.text[:300]
    answer = np.asarray(Image.open(io.BytesIO(r.content)))
    size = Image.open(io.BytesIO(photo)).size
    assert answer.shape == (size[1], size[0], 3)                  # the photo's own size
    ref = expected(bundle, photo)
    assert np.abs(answer.astype(int) - ref.output.astype(int)).max() <= 2 or \
        (answer == ref.output).all(-1).mean() > 0.995           # float rounding between processes aside
    raw = post_prediction(st, photo, {"X-Format": "raw"})
    assert raw.status_code == 200 and Image.open(io.BytesIO(raw.content)).size == (64, 64)   # the generator's size
    served_raw = np.asarray(Image.open(io.BytesIO(raw.content))).astype(int)
    assert np.abs(served_raw - ref.raw.astype(int)).mean() < 0.5    # the generator ran, as in process
    mask = np.asarray(Image.open(io.BytesIO(post_prediction(st, photo, {"X-Format": "mask"}).content)))
    assert mask.shape == (size[1], size[0]) and set(np.unique(mask)) <= {0, 255}     # the photo's pixels
    want = np.asarray(Image.fromarray(ref.maps.occlusion.astype(np.uint8)).resize(size, Image.NEAREST)) > 0
    assert ((mask > 0) == want).mean() > 0.995


@pytest.mark.parametrize("body,headers,status", [
    (b"garbage", {}, 400),
    (b"GIF89a" + b"\0" * 64, {}, 415),
    (None, {"X-Format": "points"}, 400),
], ids=["not-an-image", "gif", "unknown-format"])
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
