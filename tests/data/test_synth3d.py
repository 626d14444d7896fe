"""The synthetic 3D set (faceparse.data.synth3d) and the reconstruction metrics (faceparse.face3d.metrics):
samples are a pure function of (seed, index), occluded samples differ from their clean render only around the
occluder, the stored landmarks are the landmark vertices of the stored coefficients; Umeyama alignment undoes
a similarity exactly, and the millimetre errors measure what is left."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from faceparse.face3d.metrics import aligned_errors_mm, face_errors, landmark_nme, umeyama


@pytest.fixture(scope="module")
def renderer():
    from faceparse.face3d.model import FaceModel
    from faceparse.face3d.render import Renderer

    return Renderer(FaceModel(), 64)


def test_a_sample_is_a_pure_function_of_seed_and_index(renderer):
    from faceparse.data.synth3d import generate_sample3d

    a, b = generate_sample3d(renderer, 3, 7, 64, kind="mask"), generate_sample3d(renderer, 3, 7, 64, kind="mask")
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.coeffs, b.coeffs)
    other = generate_sample3d(renderer, 3, 8, 64, kind="mask")
    assert not np.array_equal(a.coeffs, other.coeffs)
    assert a.occluders == ["mask"] or a.occluders[0] == "mask"
    assert a.occlusion.any() and (a.label[a.occlusion] == 0).all()          # a mask is background to an annotator
    # away from the occluder (JPEG blocks and blur aside) the occluded photo is the clean one
    far = ~np.asarray(torch.nn.functional.max_pool2d(torch.from_numpy(a.occlusion.astype(np.float32))[None, None],
                                                     17, 1, 8)[0, 0].bool())
    assert far.sum() > 200
    assert np.abs(a.image[far].astype(int) - a.clean[far].astype(int)).mean() < 3.0


def test_stored_landmarks_are_the_projected_landmark_vertices(renderer):
    from faceparse.data.synth3d import generate_sample3d

    s = generate_sample3d(renderer, 0, 1, 64, occlusion_prob=0.0)
    assert s.occluders == [] and not s.occlusion.any() and np.array_equal(s.image, s.clean)
    out = renderer(torch.from_numpy(s.coeffs)[None], 64)
    np.testing.assert_allclose(s.landmarks, out.landmarks[0].numpy(), atol=1e-3)
    assert (s.landmarks > 0).all() and (s.landmarks < 64).all()
    assert set(np.unique(s.complete)) >= {0, 1, 2}                          # background, skin, nose


def test_write_dataset3d_layout(tmp_path):
    from faceparse.data.manifest import load_split, read_info
    from faceparse.data.synth3d import write_dataset3d

    d = write_dataset3d(tmp_path / "d3", 6, size=48, seed=1, splits={"train": 0.5, "val": 0.17, "test": 0.33},
                        progress=False)
    info = read_info(d)
    assert info["source"] == "synth3d" and info["coeffs"]["id"] == 100 and len(info["face_model_sha256"]) == 64
    test = load_split(d, "test")
    kinds = json.loads((d / "occlusion" / "kinds.json").read_text())
    assert len(test) == 2 and all(kinds[i] for i in test["id"])                    # the test split: all occluded
    for sid in test["id"]:
        for sub, ext in (("images", "jpg"), ("clean", "jpg"), ("labels", "png"), ("complete", "png"),
                         ("occlusion", "png"), ("landmarks", "npy"), ("coeffs", "npy")):
            assert (d / sub / f"{sid}.{ext}").is_file(), (sub, sid)
    assert np.load(d / "coeffs" / f"{test['id'].iloc[0]}.npy").shape == (sum(info["coeffs"].values()),)


def test_renders3d_join_the_training_split_of_a_prepared_2d_set(tmp_path):
    """data.synth.renders3d: 3D renders added to the 2D synthetic set's training split only, their files in
    place, the set still passes validation; adding them twice is refused and leaves it as it was."""
    from faceparse.data.manifest import read_info, read_manifest
    from faceparse.data.prepare import prepare
    from faceparse.data.synth3d import add_renders3d
    from faceparse.data.validate import validate_dataset

    params = {"data": {"source": "synth", "dir": str(tmp_path / "d"), "size": 64, "label_table": "celebamask-hq",
                       "synth": {"n": 6, "renders3d": 3, "seed": 0, "occlusion_prob": 0.5}}}
    root = prepare(params, progress=False)
    df = read_manifest(root)
    added = df[df["source"] == "synth3d"]
    assert len(df) == 9 and list(added["id"]) == ["synth3d_0_000000", "synth3d_0_000001", "synth3d_0_000002"]
    assert set(added["split"]) == {"train"} and set(df[df["source"] == "synth"]["split"]) >= {"val", "test"}
    for col in ("image", "label", "landmarks"):
        assert all((root / p).is_file() for p in added[col])
    info = read_info(root)
    assert info["count"] == 9 and info["renders3d"]["n"] == 3 and info["renders3d"]["split"] == "train"
    kinds = json.loads((root / "occlusion" / "kinds.json").read_text())
    assert set(added["id"]) <= set(kinds)
    assert not [p for p in root.parent.iterdir() if p.name.startswith(".d.")]     # no temporary folder left
    summary = validate_dataset(root, tmp_path / "v", progress=False)
    assert summary["success"], summary
    before = (root / "manifest.parquet").read_bytes()
    with pytest.raises(ValueError, match="once"):
        add_renders3d(root, 2, progress=False)
    assert (root / "manifest.parquet").read_bytes() == before


def test_umeyama_undoes_a_similarity_and_errors_are_in_mm():
    rng = np.random.default_rng(0)
    true = rng.normal(0, 5, (200, 3))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    moved = 1.7 * true @ q.T + [3.0, -2.0, 1.0]
    s, rot, t = umeyama(moved, true)
    np.testing.assert_allclose(s * moved @ rot.T + t, true, atol=1e-9)
    assert aligned_errors_mm(moved, true).max() < 1e-8
    bumped = true.copy()
    bumped[:20, 2] += 0.5                        # 5 mm on a tenth of the vertices
    e = face_errors(1.3 * bumped, true)
    assert 0.3 < e["mean_mm"] < 1.0 and e["p90_mm"] > 0.1 and e["p90_mm"] < 5.0
    assert max(face_errors(true, true).values()) < 1e-9


def test_landmark_nme_is_relative_to_the_outer_eye_corners():
    true = np.zeros((1, 68, 2))
    true[0, 36], true[0, 45] = [0, 0], [10, 0]
    pred = true + [1.0, 0.0]
    assert landmark_nme(pred, true)[0] == pytest.approx(0.1)
