"""Scoring a parser on real labelled photos (faceparse.photo_eval, `faceparse evaluate --photos`): the four
CelebAMask-HQ fixtures through the user's path (detection, alignment), checked against F1 computed by hand."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import faceparse
from faceparse.cli import app
from faceparse.photo_eval import labelled_photos, score_photos
from faceparse.serve.testing import constant_class, tiny_bundle


@pytest.fixture(scope="module")
def skin_everywhere(tmp_path_factory):
    """A parser answering 'skin' at every pixel of each face's crop (background elsewhere)."""
    return constant_class(tiny_bundle(tmp_path_factory.mktemp("skin") / "b"), cls=1)


def test_scores_match_f1_computed_by_hand_on_the_real_fixtures(skin_everywhere, real_samples):
    pairs = labelled_photos(real_samples)
    assert [p.name for p, _ in pairs] == ["0.jpg", "1.jpg", "2.jpg", "3.jpg"]
    parser = faceparse.load(skin_everywhere)
    res = score_photos(parser, pairs, detect=False)       # parsed whole: every pixel 'skin'
    truth = np.concatenate([np.asarray(Image.open(lab)).ravel() for _, lab in pairs])
    skin = truth == 1
    assert res["f1"]["skin"] == pytest.approx(2 * skin.sum() / (skin.sum() + truth.size))
    present = len(set(np.unique(truth).tolist()) - {0})                  # the others: F1 0 (absent: left out)
    assert res["mean_f1"] == pytest.approx(res["f1"]["skin"] / present)
    assert res["n_images"] == 4 and res["resolution"] is None
    # through detection: each fixture is one face framed the CelebA-HQ way, so it is parsed whole all the same
    detected = score_photos(parser, pairs)
    assert detected["detect"] and detected["f1"] == res["f1"]


def test_a_lower_resolution_resizes_the_truth(skin_everywhere, real_samples):
    res = score_photos(faceparse.load(skin_everywhere), labelled_photos(real_samples)[:1], resolution=128,
                       detect=False)
    assert res["resolution"] == 128 and 0 < res["f1"]["skin"] < 1


def test_cli_prints_the_table_and_refuses_a_folder_without_pairs(skin_everywhere, real_samples, tmp_path):
    r = CliRunner().invoke(app, ["evaluate", "--photos", str(real_samples), "--bundle", str(skin_everywhere),
                                 "--no-detect"])
    assert r.exit_code == 0, r.output
    assert "| skin |" in r.output and "mean F1" in r.output
    body = json.loads(r.output[r.output.index("{"):])
    assert body["n_images"] == 4 and body["detect"] is False
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    shutil.copy(real_samples / "0.jpg", lonely / "0.jpg")       # a photo without its label map
    r = CliRunner().invoke(app, ["evaluate", "--photos", str(lonely), "--bundle", str(skin_everywhere)])
    assert r.exit_code == 2 and "no labelled photos" in " ".join(r.output.split())
