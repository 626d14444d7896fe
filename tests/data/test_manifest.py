"""manifest.py: writing / reading the canonical index, load_split with quarantine, clear errors."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from faceparse.data.manifest import (COLUMNS, build_manifest_rows, load_split, read_info,
                                     read_manifest, sha256_file, write_info, write_manifest)


def _dataset(root, n=6, size=16):
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    rng = np.random.default_rng(0)
    samples = []
    for i in range(n):
        sid = f"s{i}"
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / f"images/{sid}.jpg")
        lab = np.zeros((size, size), np.uint8)
        lab[4:12, 4:12] = 1
        lab[6:8, 6:8] = i % 3 + 2
        Image.fromarray(lab, "L").save(root / f"labels/{sid}.png")
        samples.append({"id": sid, "split": ("train", "val", "test")[i % 3], "image": f"images/{sid}.jpg",
                        "label": f"labels/{sid}.png"})
    rows = build_manifest_rows(root, samples, num_classes=19, source="test")
    write_manifest(root, rows)
    write_info(root, {"label_table": "celebamask-hq", "size": size, "source": "test", "count": n})
    return root


def test_roundtrip_columns_and_types(tmp_path):
    root = _dataset(tmp_path / "ds")
    df = read_manifest(root)
    assert tuple(df.columns) == COLUMNS
    assert len(df) == 6
    assert list(df["split"]) == ["train", "train", "val", "val", "test", "test"]  # sorted by split, then id
    row = df[df["id"] == "s1"].iloc[0]
    assert row["sha256"] == sha256_file(root / "images/s1.jpg")
    assert (row["width"], row["height"], row["label_width"], row["label_height"]) == (16, 16, 16, 16)
    # class_pixels counted here, per class on the label files, not by the function that wrote them
    for r in df.itertuples():
        lab = np.asarray(Image.open(root / r.label))
        assert r.class_pixels == [int((lab == c).sum()) for c in range(19)], r.id
    assert len(row["class_pixels"]) == 19 and sum(row["class_pixels"]) == 256
    assert row["class_pixels"][1] == 64 - 4 and row["class_pixels"][3] == 4   # what _dataset drew for s1
    assert row["landmarks"] is None
    assert read_info(root)["label_table"] == "celebamask-hq"


def test_load_split_and_quarantine(tmp_path):
    root = _dataset(tmp_path / "ds")
    train = load_split(root, "train")
    assert sorted(train["id"]) == ["s0", "s3"]
    assert all(p.startswith(str(root.resolve())) for p in train["image_path"])
    q = tmp_path / "quarantine.json"
    q.write_text(json.dumps({"ids": ["s3"], "reasons": {"s3": ["x"]}}))
    assert list(load_split(root, "train", quarantine=q)["id"]) == ["s0"]
    assert list(load_split(root, "val", quarantine=q)["id"]) == ["s1", "s4"]
    with pytest.raises(ValueError, match="split 'dev'"):
        load_split(root, "dev")
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_split(root, "train", quarantine=tmp_path / "nope.json")


def test_errors_name_the_file(tmp_path):
    root = _dataset(tmp_path / "ds")
    (root / "manifest.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ValueError, match=r"manifest\.parquet.*corrupt"):
        read_manifest(root)
    (root / "manifest.parquet").unlink()
    with pytest.raises(FileNotFoundError, match=r"manifest\.parquet"):
        read_manifest(root)
    (root / "dataset.json").write_text("{broken")
    with pytest.raises(ValueError, match=r"dataset\.json"):
        read_info(root)
    (root / "dataset.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"dataset\.json"):
        read_info(root)


def test_duplicate_ids_refused(tmp_path):
    rows = [{c: None for c in COLUMNS} | {"id": "a", "split": "train"} for _ in range(2)]
    with pytest.raises(ValueError, match="duplicate sample ids"):
        write_manifest(tmp_path, rows)


def test_readable_by_plain_pandas(tmp_path):
    root = _dataset(tmp_path / "ds")
    df = pd.read_parquet(root / "manifest.parquet")
    assert list(df.columns) == list(COLUMNS)
