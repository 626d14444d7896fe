"""The landmark model that ships in faceparse/pretrained/landmarks/ (issue #29): loaded by its stage name,
through `faceparse predict --stage landmarks` without --model, and holding floors just under its card's
figures on fixed data — the four real fixture photos against dlib's points, and a fixed synthetic set — so a
broken weight file or a change of framing fails here (its card: faceparse/pretrained/landmarks/README.md)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import faceparse
from faceparse.api import pretrained_dir
from faceparse.bundle import META
from faceparse.cli import app
from faceparse.photo_eval import reference_points, score_landmarks

CARD_FIXTURES_NME = 0.0560        # the card's mean over the four photos
CARD_SYNTHETIC_NME = 0.0415       # the card's synthetic test split


@pytest.fixture(scope="module")
def landmarks():
    return faceparse.load("landmarks")


def test_the_bundle_ships_with_its_card():
    d = pretrained_dir("landmarks")
    meta = json.loads((d / META).read_text())
    assert (d / "weights.pt").is_file() and meta["stage"] == "landmarks" and meta["framing"]["mode"] == "face"
    card = (d / "README.md").read_text()
    assert "configs/landmarks.yaml" in card and "| **mean** |" in card


def test_on_the_real_fixture_photos_it_stays_near_its_card_and_beats_the_baseline(landmarks, real_samples):
    res = score_landmarks(landmarks, reference_points(real_samples))
    assert res["n_images"] == 4
    assert res["nme"] < CARD_FIXTURES_NME * 1.08, res["photos"]
    assert res["nme"] < 0.9 * res["baseline_nme"], res


def test_on_fixed_synthetic_faces_it_stays_near_its_card(landmarks, tmp_path):
    """40 painted faces of another seed, framed as at evaluation (fixed detector-like noise): NME 0.0408."""
    from faceparse.data.manifest import read_manifest
    from faceparse.data.prepare import synthesize
    from faceparse.ibug68 import landmark_metrics
    from faceparse.stages.landmarks.stage import eval_dataset

    data = synthesize(tmp_path / "synth", 160, {"n": 40, "seed": 20261207, "occlusion_prob": 0.6}, progress=False)
    frame = read_manifest(data)
    frame["image_path"] = [str(data / p) for p in frame["image"]]
    frame["landmarks_path"] = [str(data / p) for p in frame["landmarks"]]
    ds = eval_dataset(frame, landmarks.meta, int(landmarks.meta["input_size"]))
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=len(ds))))
    with torch.inference_mode():
        pred = landmarks.net.look(batch["image"]).numpy()
    m = landmark_metrics(pred, batch["points"].numpy(), mean_shape=np.asarray(landmarks.meta["mean_shape"]))
    assert m["nme"] < CARD_SYNTHETIC_NME * 1.1 and m["nme"] < 0.6 * m["mean_shape_nme"], m   # 0.0408 / 0.0768


def test_predict_stage_landmarks_without_a_model_uses_the_shipped_one(real_samples, tmp_path):
    r = CliRunner().invoke(app, ["predict", "--stage", "landmarks", str(real_samples / "1.jpg"), "--out",
                                 str(tmp_path), "-q"])
    assert r.exit_code == 0, r.output
    body = json.loads((tmp_path / "1_points.json").read_text())
    ref = np.asarray(json.loads((real_samples / "dlib68.json").read_text())["points"]["1.jpg"], dtype=np.float64)
    pts = np.asarray(body["points"])
    assert pts.shape == (68, 2) and body["image_size"] == [1024, 1024] and len(body["faces"]) == 1
    assert np.linalg.norm(pts - ref, axis=1).mean() / np.linalg.norm(ref[36] - ref[45]) < 0.09
    assert (tmp_path / "1_overlay.png").is_file()
