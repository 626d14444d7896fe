"""The de-occluder that ships in faceparse/pretrained/fisn/ (issue #31): `faceparse deocclude` without --model,
a photo back at its own size with only the occluder's pixels replaced, and floors just under its card's figures
on fixed data — a fixed synthetic set (occlusion mask IoU, PSNR over cv2.inpaint on the same mask) and the four
real fixture photos with pasted occluders — so a broken weight file or a regression of the head fails here
(its card: faceparse/pretrained/fisn/README.md)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter
from typer.testing import CliRunner

from faceparse import api
from faceparse.api import NoPretrainedModel, pretrained_dir, shipped_ref
from faceparse.bundle import META, load_bundle
from faceparse.cli import app
from faceparse.config import load_params
from faceparse.data.manifest import read_manifest
from faceparse.data.prepare import synthesize
from faceparse.photo_eval import labelled_photos
from faceparse.stages import for_stage
from faceparse.stages.fisn.evaluate import evaluate_fisn
from faceparse.occluders import pasted_cases
from faceparse.stages.fisn.pasted import score_chain
from faceparse.stages.fisn.photo import deocclude_photo, load_chain

FIXED_IOU = 0.55            # the fixed synthetic set below: measured 0.590 (card: test split 0.633)
FIXED_OVER_INPAINT = 0.8    # dB of PSNR over cv2.inpaint on the same mask there (measured 1.10; card 1.37)
PASTED_IOU = 0.27           # the four fixtures with pasted occluders (card 0.31)
PASTED_OVER_INPUT = 3.4     # dB over the occluded input there (card 3.77)


@pytest.fixture(scope="module")
def chain():
    return load_chain(load_params(), None)[0]


def test_the_bundle_ships_with_its_card():
    d = pretrained_dir("fisn")
    meta = json.loads((d / META).read_text())
    assert meta["stage"] == "fisn" and meta["model_config"]["preset"] == "gated" and meta["completion"]
    card = (d / "README.md").read_text()
    assert "configs/fisn.yaml" in card and "cv2.inpaint" in card


def test_on_fixed_synthetic_faces_it_finds_the_occluder_and_beats_inpaint(tmp_path):
    data = synthesize(tmp_path / "synth", 160, {"n": 60, "seed": 20261207, "occlusion_prob": 0.9}, progress=False)
    frame = read_manifest(data)
    frame["image_path"] = [str(data / p) for p in frame["image"]]
    frame["label_path"] = [str(data / p) for p in frame["label"]]
    model, meta = load_bundle(pretrained_dir("fisn"))
    params = for_stage(load_params(), "fisn")
    params["evaluate"] = {**params["evaluate"], "maps": "truth"}
    res, _ = evaluate_fisn(model.eval(), meta, frame, data, params, progress=False)
    assert res["n_occluded_images"] >= 30
    assert res["occlusion_iou"] >= FIXED_IOU, res
    assert res["psnr_out"] - res["psnr_inpaint"] >= FIXED_OVER_INPAINT, res


def test_on_real_photos_with_pasted_occluders_it_stays_near_its_card(chain, real_samples):
    res, _ = score_chain(chain, pasted_cases(labelled_photos(real_samples)), progress=False)
    assert res["n_cases"] == 16
    assert res["mask_iou"] >= PASTED_IOU, res["per_kind"]
    assert res["psnr_out"] - res["psnr_input"] >= PASTED_OVER_INPUT, res["per_kind"]


def test_a_full_size_photo_comes_back_at_its_size_with_only_the_occluder_replaced(chain, real_samples):
    case = pasted_cases(labelled_photos(real_samples))[0]            # the eye bar, at the label map's 512²
    photo = np.asarray(Image.open(real_samples / case.name).convert("RGB"))
    big = np.asarray(Image.fromarray(case.photo).resize(photo.shape[1::-1], Image.NEAREST))
    res = deocclude_photo(chain, Image.fromarray(big))
    assert res.output.shape == big.shape and res.mask.shape == big.shape[:2]
    grown = Image.fromarray(res.mask.astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(9))
    far = np.asarray(grown) == 0
    assert np.array_equal(res.output[far], big[far])                # outside the mask (and its blended edge): the photo
    assert res.mask.mean() > 0.01                                   # and the bar was found


def test_deocclude_without_a_model_uses_the_shipped_one(real_samples, tmp_path):
    r = CliRunner().invoke(app, ["deocclude", str(real_samples / "2.jpg"), "--out", str(tmp_path), "-q"])
    assert r.exit_code == 0, r.output
    out = Image.open(tmp_path / "2_deoccluded.png")
    assert out.size == (1024, 1024)
    assert str(pretrained_dir("fisn")) in json.loads((tmp_path / "deocclude.json").read_text())["models"]["fisn"]["ref"]


def test_a_bare_stage_name_names_the_shipped_bundle(tmp_path, monkeypatch):
    """`fisn.train.init: fisn` (make run's recipe) and `faceparse.load`'s bare names resolve to the folder; a
    faceparse shipped without one says which it has."""
    assert Path(shipped_ref("fisn")) == pretrained_dir("fisn")
    (tmp_path / META).write_text("{}")
    (tmp_path / "landmarks").mkdir()
    (tmp_path / "landmarks" / META).write_text("{}")
    monkeypatch.setattr(api, "PRETRAINED", tmp_path)
    with pytest.raises(NoPretrainedModel, match="shipped: landmarks, parser"):
        pretrained_dir("fisn")


def test_on_clean_real_photos_it_leaves_the_eyes_alone(chain, real_samples):
    """The head learned occluders on synthetic faces and takes a real eye for one now and then; what the
    parser sees as a face feature is not painted over (measured: at most 3.4 % of a photo's eye pixels marked;
    60 % on two of the four photos without that rule)."""
    for photo, label in labelled_photos(real_samples):
        img = Image.open(photo).convert("RGB")
        res = deocclude_photo(chain, img)
        eyes = np.asarray(Image.open(label).resize(img.size, Image.NEAREST))
        eyes = np.isin(eyes, (4, 5))
        assert (res.mask & eyes).sum() < 0.05 * eyes.sum(), photo.name
