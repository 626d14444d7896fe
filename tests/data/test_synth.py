"""The embedded synthetic face dataset (faceparse.data.synth): determinism, label sanity, occlusion,
landmarks, the canonical on-disk layout."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from faceparse.data.synth import OCCLUDER_VISIBLE, assign_splits, generate_sample, to_lapa, write_dataset
from faceparse.labels import CELEBAMASK_HQ, LAPA

C = {n: i for i, n in enumerate(CELEBAMASK_HQ.classes)}
MANIFEST_COLUMNS = ["id", "split", "image", "label", "landmarks", "width", "height", "label_width",
                    "label_height", "class_pixels", "sha256", "source"]


@pytest.fixture(scope="module")
def batch():
    return [generate_sample(11, i, size=256, occlusion_prob=0.5) for i in range(20)]


def test_deterministic_per_seed_and_index():
    a, b = generate_sample(7, 3), generate_sample(7, 3)
    for f in ("image", "label", "complete", "occlusion", "landmarks"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    c = generate_sample(7, 4)
    assert not np.array_equal(a.label, c.label)
    assert not np.array_equal(a.image, c.image)
    assert not np.array_equal(generate_sample(8, 3).label, a.label)


def test_shapes_and_dtypes():
    s = generate_sample(0, 0, size=128)
    assert s.image.shape == (128, 128, 3) and s.image.dtype == np.uint8
    for f in ("label", "complete"):
        assert getattr(s, f).shape == (128, 128) and getattr(s, f).dtype == np.uint8
    assert s.occlusion.shape == (128, 128) and s.occlusion.dtype == np.bool_
    assert s.landmarks.shape == (68, 2) and s.landmarks.dtype == np.float32


def test_label_content(batch):
    nose = lips = 0
    for s in batch:
        assert int(s.label.max()) < CELEBAMASK_HQ.num_classes and int(s.complete.max()) < CELEBAMASK_HQ.num_classes
        present = set(np.unique(s.complete).tolist())
        assert C["skin"] in present and (C["hair"] in present or C["hat"] in present)
        visible = set(np.unique(s.label).tolist())
        if not s.occluded:
            assert {C["l_eye"], C["r_eye"]} <= visible
        assert {C["l_eye"], C["r_eye"]} <= present
        nose += C["nose"] in visible
        lips += bool({C["u_lip"], C["l_lip"]} & visible)
    assert nose >= 15 and lips >= 15


def test_occlusion_consistency(batch):
    assert any(s.occluded for s in batch) and not all(s.occluded for s in batch)
    for s in batch:
        assert s.occluded == bool(s.occluders)
        shown = {C[OCCLUDER_VISIBLE[k]] for k in s.occluders}    # occluder pixels: their kind's visible class
        assert set(np.unique(s.label).tolist()) <= set(np.unique(s.complete).tolist()) | shown
        np.testing.assert_array_equal(s.label[~s.occlusion], s.complete[~s.occlusion])
        assert set(np.unique(s.label[s.occlusion]).tolist()) <= shown
    assert not any(generate_sample(11, i, occlusion_prob=0.0).occlusion.any() for i in range(4))
    assert all(generate_sample(11, i, occlusion_prob=1.0).occlusion.any() for i in range(4))


def test_landmarks_follow_the_parts(batch):
    for s in batch:
        h, w = s.label.shape
        lm = s.landmarks
        assert np.isfinite(lm).all()
        assert (lm[:, 0] >= 0).all() and (lm[:, 0] <= w - 1).all()
        assert (lm[:, 1] >= 0).all() and (lm[:, 1] <= h - 1).all()
        # CelebAMask-HQ: l_* is the subject's left (image right); iBUG 36-41 is the image-left eye
        for cls, idx in ((C["r_eye"], range(36, 42)), (C["l_eye"], range(42, 48))):
            eye = s.complete == cls
            for k in idx:
                x, y = int(round(lm[k, 0])), int(round(lm[k, 1]))
                win = eye[max(0, y - 2): y + 3, max(0, x - 2): x + 3]
                assert win.any(), f"landmark {k} not next to its eye"
        # iBUG layout (roll is limited): image-left eye first, bridge above the nose tip above the chin
        assert lm[36:42, 0].mean() < lm[42:48, 0].mean()
        xs = np.nonzero(s.complete == C["l_eye"])[1]
        assert xs.mean() > np.nonzero(s.complete == C["r_eye"])[1].mean()
        assert lm[27, 1] < lm[30, 1] < lm[57, 1] < lm[8, 1]
        assert lm[0, 0] < lm[8, 0] < lm[16, 0]


def test_to_lapa():
    s = generate_sample(2, 5)
    lp = to_lapa(s.label)
    assert lp.shape == s.label.shape and lp.dtype == np.uint8
    assert int(lp.max()) < LAPA.num_classes
    assert to_lapa(np.array([C["mouth"]]))[0] == LAPA.index("i_mouth")
    assert to_lapa(np.array([C["cloth"], C["hat"]])).tolist() == [0, 0]


def test_assign_splits_non_empty_and_deterministic():
    for n in (3, 4, 10, 57):
        sp = assign_splits(n, 5, {"train": 0.8, "val": 0.1, "test": 0.1})
        assert len(sp) == n and set(sp) == {"train", "val", "test"}
        assert sp == assign_splits(n, 5, {"train": 0.8, "val": 0.1, "test": 0.1})
    with pytest.raises(ValueError):
        assign_splits(5, 0, {"train": 0.5, "holdout": 0.5})


def test_write_dataset_layout(tmp_path):
    out = write_dataset(tmp_path / "ds", n=6, size=64, seed=3, occlusion_prob=0.5, progress=False)
    assert out == tmp_path / "ds"
    info = json.loads((out / "dataset.json").read_text())
    assert info["label_table"] == "celebamask-hq" and info["size"] == 64 and info["source"] == "synth"
    assert info["count"] == 6 and info["seed"] == 3
    df = pd.read_parquet(out / "manifest.parquet")
    assert list(df.columns) == MANIFEST_COLUMNS
    assert len(df) == 6 and set(df["split"]) == {"train", "val", "test"}
    assert df["id"].tolist() == [f"synth_3_{i:06d}" for i in range(6)]
    for row in df.itertuples():
        img = Image.open(out / row.image)
        lab = Image.open(out / row.label)
        assert img.mode == "RGB" and img.size == (64, 64) and lab.mode == "L" and lab.size == (64, 64)
        assert (row.width, row.height, row.label_width, row.label_height) == (64, 64, 64, 64)
        cp = list(row.class_pixels)
        assert len(cp) == CELEBAMASK_HQ.num_classes and sum(cp) == 64 * 64
        assert cp == np.bincount(np.asarray(lab).ravel(), minlength=19).tolist()
        assert row.sha256 == hashlib.sha256((out / row.image).read_bytes()).hexdigest()
        assert row.source == "synth"
        assert np.load(out / row.landmarks).shape == (68, 2)
        occ = np.asarray(Image.open(out / f"occlusion/{row.id}.png"))
        assert set(np.unique(occ).tolist()) <= {0, 255}
        assert Image.open(out / f"complete/{row.id}.png").mode == "L"
    # a previous dataset may be replaced; nothing temporary is left beside it
    write_dataset(out, n=3, size=64, seed=4, progress=True)
    assert json.loads((out / "dataset.json").read_text())["count"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_write_dataset_refuses_unrelated_dir(tmp_path):
    target = tmp_path / "precious"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="precious"):
        write_dataset(target, n=3, size=64, progress=False)
    assert (target / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious"]


def test_data_synth_cli_takes_every_data_synth_param(tmp_path, repo_root):
    """The README's `faceparse data synth` with params.yaml's data.synth passed through, renders3d too (it
    crashed on renders3d: issue #33): one path with `data prepare`."""
    from typer.testing import CliRunner

    from faceparse.cli import app
    from faceparse.data.manifest import read_manifest

    out = tmp_path / "synth"
    r = CliRunner().invoke(app, ["data", "synth", "--out", str(out), "--n", "6", "--size", "64", "--quiet",
                                 "-p", str(repo_root / "params.yaml"), "--set", "data.synth.renders3d=2"])
    assert r.exit_code == 0, r.output
    m = read_manifest(out)
    assert len(m) == 8 and (m["source"] == "synth3d").sum() == 2 and set(m[m["source"] == "synth3d"]["split"]) == {"train"}
