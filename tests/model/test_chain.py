"""The whole chain in one call (issue #32, faceparse.chain): on a real fixture photo it returns every output —
the parser's map, the 68 points, the completed map, the occlusion mask, the de-occluded photo, a mesh per face —
in the photo's own pixels, from the shipped models with nothing trained first; the points land near dlib's on
that photo and the mesh's projected landmarks near the points; `faceparse chain` writes every file and names
what it could not read; bad arguments are refused with a message naming them."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from faceparse.chain import load_chain
from faceparse.cli import app
from faceparse.ibug68 import inter_ocular
from faceparse.labels import CELEBAMASK_HQ
from faceparse.photos import NoFaceError

PHOTO = "0.jpg"


@pytest.fixture(scope="module")
def chain():
    return load_chain()


@pytest.fixture(scope="module")
def result(chain, real_samples):
    return chain(real_samples / PHOTO)


def test_every_output_is_in_the_photos_pixels(result):
    w, h = result.image.size
    assert result.labels.shape == result.completed.shape == result.occlusion.shape == (h, w)
    assert result.deoccluded.shape == result.render.shape == (h, w, 3) and result.deoccluded.dtype == np.uint8
    assert result.occlusion.dtype == bool and len(result.faces) == 1
    present = {CELEBAMASK_HQ.classes[c] for c in np.unique(result.labels)}
    assert {"skin", "nose", "l_eye", "r_eye", "u_lip"} <= present, present
    # where nothing was replaced, the de-occluded photo is the photo
    same = np.asarray(result.image)[~result.occlusion] == result.deoccluded[~result.occlusion]
    assert same.mean() > 0.97


def test_the_points_and_the_mesh_sit_on_the_face(result, real_samples):
    ref = np.asarray(json.loads((real_samples / "dlib68.json").read_text())["points"][PHOTO], dtype=np.float64)
    (pts,), (mesh,) = result.points, result.meshes
    iod = inter_ocular(ref)
    assert np.linalg.norm(pts - ref, axis=1).mean() / iod < 0.08           # the landmark card: 0.05-0.06 vs dlib
    assert np.linalg.norm(mesh.points - pts, axis=1).mean() / iod < 0.15   # the fit meets the points
    assert mesh.vertices.shape[1] == 3 and np.isfinite(mesh.vertices).all()
    assert mesh.triangles.max() < len(mesh.vertices) and set(mesh.coefficients) >= {"identity", "expression"}
    assert (result.render != np.asarray(result.image)).any(axis=-1).mean() > 0.05     # the mesh is drawn


def test_a_photo_without_a_face_is_named(chain):
    with pytest.raises(NoFaceError, match="blank"):
        chain(np.full((200, 300, 3), 128, np.uint8), what="blank")


def test_bad_settings_are_refused_with_their_name():
    with pytest.raises(ValueError, match="unknown stage"):
        load_chain({"parsr": "x"})
    with pytest.raises(ValueError, match="resolution"):
        load_chain(resolution=10)


def test_the_command_writes_every_output_and_names_what_it_could_not_read(tmp_path, real_samples):
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a photo")
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["chain", str(real_samples / PHOTO), str(bad), "-o", str(out), "-q"])
    assert r.exit_code == 1, r.output
    record = json.loads((out / "chain.json").read_text())
    good, failed = record["results"]
    assert good["ok"] and not failed["ok"] and "notes.jpg" in failed["error"]
    assert set(record["models"]) >= {"fisn", "recon3d", "parser", "landmarks"}
    for key in ("labels_png", "completed_png", "occlusion_png", "deoccluded_png", "mesh_overlay_png", "sheet_jpg",
                "points_json", "mesh0_obj", "mesh0_json"):
        assert (out / good[key].split("/")[-1]).is_file(), key
    with Image.open(good["labels_png"]) as im:
        assert im.size == tuple(good["size"])


def test_the_command_refuses_a_malformed_model_option(tmp_path, real_samples):
    r = CliRunner().invoke(app, ["chain", str(real_samples / PHOTO), "-o", str(tmp_path), "-m", "recon3d"])
    assert r.exit_code == 2 and "STAGE=REF" in r.output
