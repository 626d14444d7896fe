"""The parser that ships in faceparse/pretrained/ (issue #16): loaded with no argument, through the two-line
API and `faceparse predict` without --model, and still above 0.5 mean F1 on the four real CelebAMask-HQ
fixture photos at 512 (its card: faceparse/pretrained/README.md)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import faceparse
from faceparse.api import pretrained_dir
from faceparse.bundle import META
from faceparse.cli import app
from faceparse.photo_eval import labelled_photos, score_photos


@pytest.fixture(scope="module")
def parser():
    return faceparse.load()


def test_the_bundle_ships_with_its_card():
    d = pretrained_dir()
    meta = json.loads((d / META).read_text())
    assert (d / "weights.pt").is_file() and meta["stage"] == "parser" and meta["label_table"] == "celebamask-hq"
    card = (d / "README.md").read_text()
    assert "configs/pretrained.yaml" in card and "| **mean** |" in card


def test_two_line_api_parses_a_real_photo(parser, real_samples):
    result = parser(real_samples / "0.jpg", resolution=512)
    assert result.labels.shape == (512, 512) and len(result.faces) == 1
    assert {"skin", "nose", "hair"} <= set(result.present())
    assert result.overlay.size == (512, 512)


def test_mean_f1_on_the_real_fixture_photos_stays_above_half(parser, real_samples):
    res = score_photos(parser, labelled_photos(real_samples), resolution=512)
    assert res["n_images"] == 4 and res["mean_f1"] > 0.5, res["f1"]


def test_predict_without_a_model_uses_the_shipped_one(real_samples, tmp_path):
    r = CliRunner().invoke(app, ["predict", str(real_samples / "0.jpg"), "--out", str(tmp_path), "-q"])
    assert r.exit_code == 0, r.output
    body = json.loads(r.output[r.output.index("{"):])
    assert body["model"] == "pretrained" and body["ok"] == 1
    labels = np.asarray(Image.open(tmp_path / "0_label.png"))
    # a CelebAMask-HQ-framed photo is an aligned face: decoded at the model's input size unless -r says otherwise
    assert labels.shape == (128, 128) and (labels == 1).mean() > 0.1
