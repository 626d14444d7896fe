"""validate.py: the great-expectations gate passes clean data and names every planted defect.

One great-expectations import per module; each validate run costs ~0.5-1 s after that."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceparse.data.ingest import ingest
from faceparse.data.manifest import load_split, read_manifest, write_manifest
from faceparse.data.validate import validate_dataset

SIZE = 256


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def face_label(size: int, k: int) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    c = size / 2 + (k % 3) * 4
    lab = np.zeros((size, size), np.uint8)
    lab[((yy - c) / (0.38 * size)) ** 2 + ((xx - c) / (0.3 * size)) ** 2 <= 1] = 1     # skin
    lab[(yy < 0.3 * size) & (np.abs(xx - c) < 0.35 * size)] = 13                         # hair
    lab[(np.abs(yy - c) < 0.08 * size) & (np.abs(xx - c) < 0.04 * size)] = 2            # nose
    lab[(np.abs(yy - 0.42 * size) < 0.02 * size) & (np.abs(xx - c + 0.12 * size) < 0.05 * size)] = 4
    lab[(np.abs(yy - 0.42 * size) < 0.02 * size) & (np.abs(xx - c - 0.12 * size) < 0.05 * size)] = 5
    return lab


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    """A clean canonical dataset: 9 samples (train 7, val 1, test 1) at 256²."""
    raw = tmp_path_factory.mktemp("raw")
    for k in range(9):
        rng = np.random.default_rng(k)
        Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(raw / f"f{k}.jpg", quality=90)
        Image.fromarray(face_label(SIZE, k), "L").save(raw / f"f{k}.png")
    return ingest("labelmaps", raw, tmp_path_factory.mktemp("ds") / "good", size=SIZE, progress=False)


def ids_of(ds: Path, split: str) -> list[str]:
    df = read_manifest(ds)
    return sorted(df[df["split"] == split]["id"])


# --------------------------------------------------------------------------------------------- plants
def plant(kind: str, ds: Path, ids: list[str]) -> tuple[str | None, str]:
    """Damage ``ds`` one way; return (the sample id that must be quarantined or None, text that must appear)."""
    t = ids
    if kind == "truncated_jpeg":
        p = ds / f"images/{t[0]}.jpg"
        data = p.read_bytes()
        p.write_bytes(data[: len(data) * 2 // 5])
        return t[0], f"images/{t[0]}.jpg"
    if kind == "label_value_25":
        p = ds / f"labels/{t[1]}.png"
        lab = np.asarray(Image.open(p)).copy()
        lab[0, 0] = 25
        Image.fromarray(lab, "L").save(p)
        return t[1], f"labels/{t[1]}.png: class ids [25]"
    if kind == "label_300x256":
        p = ds / f"labels/{t[2]}.png"
        Image.fromarray(face_label(SIZE, 2)).resize((300, 256), Image.NEAREST).save(p)
        return t[2], f"labels/{t[2]}.png: label is 300x256"
    if kind == "missing_label":
        (ds / f"labels/{t[4]}.png").unlink()
        return t[4], f"labels/{t[4]}.png: label file missing"
    if kind == "duplicate_image":
        # t[5] gets t[3]'s bytes and a manifest that agrees with them: only the duplication is wrong
        shutil.copyfile(ds / f"images/{t[3]}.jpg", ds / f"images/{t[5]}.jpg")
        df = read_manifest(ds)
        df.loc[df["id"] == t[5], "sha256"] = df.loc[df["id"] == t[3], "sha256"].iloc[0]
        write_manifest(ds, df.to_dict("records"))
        return t[5], f"images/{t[5]}.jpg: duplicate image of sample '{t[3]}'"
    if kind == "empty_split":
        df = read_manifest(ds)
        df.loc[df["split"] == "val", "split"] = "train"
        write_manifest(ds, df.to_dict("records"))
        return None, "split 'val' is empty"
    raise AssertionError(kind)


KINDS = ["truncated_jpeg", "label_value_25", "label_300x256", "missing_label", "duplicate_image", "empty_split"]
FAILED_EXPECTATION = {  # the great-expectations check that must fail for each plant
    "truncated_jpeg": ("expect_column_values_to_be_in_set", "image_readable"),
    "label_value_25": ("expect_column_values_to_be_between", "max_label"),
    "label_300x256": ("expect_column_values_to_be_between", "label_width"),
    "missing_label": ("expect_column_values_to_be_in_set", "label_readable"),
    "duplicate_image": ("expect_column_values_to_be_unique", "sha256"),
    "empty_split": ("expect_column_distinct_values_to_contain_set", "split"),
}


# --------------------------------------------------------------------------------------------- tests
def test_clean_dataset_passes(good, tmp_path):
    before = tree_digest(good)
    s = validate_dataset(good, tmp_path / "v", progress=False)
    assert s["success"], s["bad"] or s["problems"]
    assert s["n_samples"] == 9 and s["n_bad"] == 0 and s["bad"] == {}
    assert s["per_split"] == {"train": {"samples": 7, "bad": 0, "usable": 7},
                              "val": {"samples": 1, "bad": 0, "usable": 1},
                              "test": {"samples": 1, "bad": 0, "usable": 1}}
    assert all(e["success"] for e in s["expectations"])
    assert {e["name"] for e in s["expectations"]} >= {"expect_column_values_to_be_unique", "splits_disjoint",
                                                       "splits_non_empty"}
    on_disk = json.loads((tmp_path / "v/summary.json").read_text())
    assert on_disk["success"] is True and on_disk["n_samples"] == 9
    assert json.loads((tmp_path / "v/quarantine.json").read_text()) == {"ids": [], "reasons": {}}
    metrics = json.loads((tmp_path / "v/metrics.json").read_text())
    assert metrics["success"] is True and metrics["n_bad"] == 0 and metrics["train_usable"] == 7
    index = Path(s["data_docs"])
    assert index.is_file() and index.parent == tmp_path / "v/data_docs"
    assert "faceparse-dataset" in index.read_text()
    assert list((tmp_path / "v/data_docs/validations").rglob("*.html")), "no validation page in Data Docs"
    assert tree_digest(good) == before


@pytest.mark.parametrize("kind", KINDS)
def test_each_planted_defect_fails_and_is_named(kind, good, tmp_path):
    ds = tmp_path / "ds"
    shutil.copytree(good, ds)
    bad_id, text = plant(kind, ds, ids_of(ds, "train"))
    before = tree_digest(ds)
    s = validate_dataset(ds, tmp_path / "v", progress=False)
    assert tree_digest(ds) == before, "validate modified the dataset"
    assert s["success"] is False
    name, column = FAILED_EXPECTATION[kind]
    assert any(e["name"] == name and e.get("column") == column and not e["success"] for e in s["expectations"]), \
        [e for e in s["expectations"] if not e["success"]]
    q = json.loads((tmp_path / "v/quarantine.json").read_text())
    if bad_id is None:
        assert s["bad"] == {} and q["ids"] == []
        assert any(text in p for p in s["problems"]), s["problems"]
        assert any(e["name"] == "splits_non_empty" and not e["success"] for e in s["expectations"])
        return
    assert list(s["bad"]) == [bad_id], s["bad"]          # the rest of the dataset is intact
    assert any(text in r for r in s["bad"][bad_id]), s["bad"][bad_id]
    assert q["ids"] == [bad_id]
    train = load_split(ds, "train", quarantine=tmp_path / "v/quarantine.json")
    assert bad_id not in set(train["id"]) and len(train) == 6
    assert len(load_split(ds, "val", quarantine=tmp_path / "v/quarantine.json")) == 1


def test_all_defects_at_once_via_cli(good, tmp_path):
    from typer.testing import CliRunner

    from faceparse.cli import app

    ds = tmp_path / "ds"
    shutil.copytree(good, ds)
    train = ids_of(ds, "train")
    planted = {k: plant(k, ds, train) for k in KINDS}
    before = tree_digest(ds)
    res = CliRunner().invoke(app, ["data", "validate", str(ds), "--out-dir", str(tmp_path / "v"), "-q"])
    assert res.exit_code == 1, res.output
    err = res.stderr
    for kind, (_, text) in planted.items():
        assert text in err, f"{kind}: {text!r} not on stderr:\n{err}"
    s = json.loads((tmp_path / "v/summary.json").read_text())
    assert sorted(s["bad"]) == sorted(i for i, _ in planted.values() if i)
    assert s["n_bad"] == 5 and s["per_split"]["train"] == {"samples": 8, "bad": 5, "usable": 3}
    assert tree_digest(ds) == before
    # --allow-quarantine still fails: an empty split is a dataset-level failure
    res = CliRunner().invoke(app, ["data", "validate", str(ds), "--out-dir", str(tmp_path / "v2"), "-q",
                                   "--allow-quarantine"])
    assert res.exit_code == 1


def test_real_celebamask_samples_pass(real_samples, tmp_path):
    ds = ingest("labelmaps", real_samples, tmp_path / "real", size=SIZE, progress=False)
    s = validate_dataset(ds, tmp_path / "v", progress=False)
    assert s["success"], (s["bad"], s["problems"])
    assert s["n_samples"] == 4 and all(v["usable"] >= 1 for v in s["per_split"].values())


def test_missing_manifest_is_an_input_error(tmp_path):
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "dataset.json").write_text(json.dumps({"label_table": "celebamask-hq", "size": 8}))
    with pytest.raises(FileNotFoundError, match="manifest.parquet"):
        validate_dataset(tmp_path / "ds", tmp_path / "v", progress=False)
