"""The 300-W / iBUG adapter: ``<name>.jpg`` beside ``<name>.pts`` → the canonical dataset (face crops, 68
landmarks, label maps drawn from them), through the same manifest and validation gate; broken ``.pts``
files are named and skipped, off-image points are quarantined by the gate."""
from __future__ import annotations

import json

import numpy as np
from PIL import Image

from faceparse.data.ingest import ingest
from faceparse.data.pts import write_pts
from faceparse.data.synth import generate_sample
from faceparse.data.validate import validate_dataset as validate
from faceparse.landmark_map import draw_map
from faceparse.labels import CELEBAMASK_HQ as T


def write_300w(root, n=6, size=200, pad=40):
    """Synthetic faces pasted off-centre on a larger canvas, with their landmarks as 1-based .pts files."""
    root.mkdir(parents=True, exist_ok=True)
    truth = {}
    for i in range(n):
        s = generate_sample(7, i, size=size, occlusion_prob=0.0)
        canvas = np.full((size + 2 * pad, size + 3 * pad, 3), 90, np.uint8)
        canvas[pad:pad + size, 2 * pad:2 * pad + size] = s.image
        sub = root / ("lfpw" if i % 2 else "helen")
        sub.mkdir(exist_ok=True)
        Image.fromarray(canvas).save(sub / f"img_{i}.png")
        pts = s.landmarks + 0.5 + np.array([2 * pad, pad])     # continuous coordinates on the canvas
        write_pts(sub / f"img_{i}.pts", pts - 0.5, one_based=True)   # 300-W: 1-based pixel centres
        truth[f"{sub.name}_img_{i}"] = (canvas, pts)
    return truth


def test_300w_layout_becomes_a_valid_landmark_dataset(tmp_path):
    truth = write_300w(tmp_path / "300w")
    (tmp_path / "300w" / "helen" / "no_pts.png").write_bytes((tmp_path / "300w" / "helen" / "img_0.png").read_bytes())
    (tmp_path / "300w" / "lfpw" / "broken.png").write_bytes((tmp_path / "300w" / "helen" / "img_0.png").read_bytes())
    (tmp_path / "300w" / "lfpw" / "broken.pts").write_text("version: 1\nn_points: 68\n{\n1 2\n}\n")
    out = ingest("300w", tmp_path / "300w", tmp_path / "ds", size=64, progress=False)
    info = json.loads((out / "dataset.json").read_text())
    assert info["count"] == 6 and info["landmarks"] == 68 and info["label_table"] == T.name
    skipped = {d["id"]: d for d in info["skipped"]}
    assert skipped["helen_no_pts"]["reason"] == "landmark file missing"
    assert "broken.pts" in skipped["lfpw_broken"]["file"]
    for sid, (canvas, pts) in truth.items():
        lm = np.load(out / "landmarks" / f"{sid}.npy")
        assert lm.shape == (68, 2) and (lm >= 0).all() and (lm <= 64).all()
        # the crop keeps the face: the eye corners' distance is the same fraction of the crop as drawn
        label = np.asarray(Image.open(out / "labels" / f"{sid}.png"))
        np.testing.assert_array_equal(label, draw_map(lm, 64))
        assert {T.index("l_eye"), T.index("r_eye"), T.index("skin")} <= set(np.unique(label).tolist())
    summary = validate(out, tmp_path / "val", progress=False)
    assert summary["success"], summary


def test_the_gate_quarantines_points_off_the_image_or_of_the_wrong_count(tmp_path):
    write_300w(tmp_path / "300w", n=4)
    out = ingest("300w", tmp_path / "300w", tmp_path / "ds", size=64, progress=False)
    ids = sorted(p.stem for p in (out / "landmarks").glob("*.npy"))
    off, short = ids[0], ids[1]
    pts = np.load(out / "landmarks" / f"{off}.npy")
    pts[0] = [-3.0, 10.0]
    np.save(out / "landmarks" / f"{off}.npy", pts)
    np.save(out / "landmarks" / f"{short}.npy", np.load(out / "landmarks" / f"{short}.npy")[:60])
    summary = validate(out, tmp_path / "val", progress=False)
    q = json.loads((tmp_path / "val" / "quarantine.json").read_text())
    assert set(q["ids"]) == {off, short} and not summary["success"]
    reasons = json.dumps(q)
    assert f"landmarks/{off}.npy: landmarks outside the 64x64 image" in reasons
    assert f"landmarks/{short}.npy: 60 landmarks, the dataset's samples have 68" in reasons
