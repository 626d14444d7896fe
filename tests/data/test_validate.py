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


# ------------------------------------------------------------------ every other defect kind the gate claims
# Each plant damages one property of sample `sid` and keeps the manifest in step with everything else
# (sha256, class_pixels), so exactly the planted defect is wrong.
def _rewrite_row(ds: Path, sid: str, **cols) -> None:
    rows = read_manifest(ds).to_dict("records")
    for r in rows:
        if r["id"] == sid:
            r.update(cols)
    write_manifest(ds, rows)


def _save_image(ds: Path, sid: str, im: Image.Image) -> None:
    from faceparse.hashing import sha256_file

    p = ds / f"images/{sid}.jpg"
    im.save(p, "JPEG", quality=90)
    _rewrite_row(ds, sid, sha256=sha256_file(p))


def _save_label(ds: Path, sid: str, lab: np.ndarray) -> None:
    Image.fromarray(lab, "L").save(ds / f"labels/{sid}.png")
    _rewrite_row(ds, sid, class_pixels=np.bincount(lab.ravel(), minlength=19).tolist())


def _sparse_label(skin: int, nose: int) -> np.ndarray:
    """Background except a skin square of skin² px (a nose square of nose² px inside it)."""
    lab = np.zeros((SIZE, SIZE), np.uint8)
    lab[100:100 + skin, 100:100 + skin] = 1
    lab[104:104 + nose, 104:104 + nose] = 2
    return lab


def plant_more(kind: str, ds: Path, sid: str, other: str) -> tuple[str, str]:
    """Damage sample ``sid`` (``other``: a second, intact train id); return (id to quarantine, text)."""
    img, lab = f"images/{sid}.jpg", f"labels/{sid}.png"
    if kind == "sha_mismatch":   # re-encoded after the manifest was written
        im = Image.open(ds / img).convert("RGB")
        im.save(ds / img, "JPEG", quality=60)
        return sid, f"{img}: sha256 differs from the manifest"
    if kind == "image_200x200":
        _save_image(ds, sid, Image.open(ds / img).convert("RGB").resize((200, 200)))
        return sid, f"{img}: image is 200x200, dataset size is {SIZE}x{SIZE}"
    if kind == "cmyk_image":
        _save_image(ds, sid, Image.open(ds / img).convert("CMYK"))
        return sid, f"{img}: image mode CMYK, expected RGB"
    if kind == "rgb_label":      # class ids replicated into 3 channels: counts still match the manifest
        a = np.asarray(Image.open(ds / lab))
        Image.fromarray(np.stack([a] * 3, -1), "RGB").save(ds / lab)
        return sid, f"{lab}: label map has 3 channels, expected single-channel class ids"
    if kind == "truncated_label":
        data = (ds / lab).read_bytes()
        (ds / lab).write_bytes(data[: len(data) // 3])
        return sid, f"{lab}: label map does not decode"
    if kind == "nan_landmarks":  # `other` gets valid landmarks, which must pass
        (ds / "landmarks").mkdir(exist_ok=True)
        pts = np.random.default_rng(0).uniform(0, SIZE, (68, 2)).astype(np.float32)
        np.save(ds / f"landmarks/{other}.npy", pts)
        pts[7, 1] = np.nan
        np.save(ds / f"landmarks/{sid}.npy", pts)
        _rewrite_row(ds, other, landmarks=f"landmarks/{other}.npy")
        _rewrite_row(ds, sid, landmarks=f"landmarks/{sid}.npy")
        return sid, f"landmarks/{sid}.npy: landmarks have shape (68, 2) or non-finite values"
    if kind == "image_in_two_splits":  # sid moves to val carrying other's (train) image: val's copy goes
        from faceparse.hashing import sha256_file

        shutil.copyfile(ds / f"images/{other}.jpg", ds / img)
        _rewrite_row(ds, sid, split="val", sha256=sha256_file(ds / img))
        return sid, f"{img}: duplicate image of sample '{other}'"
    if kind == "background_over_limit":   # 0.985 background (> 0.98), 0.0147 face (>= 0.01)
        _save_label(ds, sid, _sparse_label(31, 9))
        return sid, f"{lab}: background covers 0.985 of the map (> 0.98)"
    if kind == "face_under_limit":        # 0.0039 face (< 0.01); run with max_background_fraction=1
        _save_label(ds, sid, _sparse_label(16, 8))
        return sid, f"{lab}: non-background covers 0.0039 (< 0.01)"
    if kind == "one_class":
        _save_label(ds, sid, np.ones((SIZE, SIZE), np.uint8))
        return sid, f"{lab}: only 1 distinct class(es), need >= 2"
    raise AssertionError(kind)


MORE = {  # kind: (great-expectations check that must fail, validate_dataset thresholds)
    "sha_mismatch": (("expect_column_values_to_be_in_set", "sha256_matches_manifest"), {}),
    "image_200x200": (("expect_column_values_to_be_between", "width"), {}),
    "cmyk_image": (("expect_column_values_to_be_in_set", "image_mode"), {}),
    "rgb_label": (("expect_column_values_to_be_in_set", "label_channels"), {}),
    "truncated_label": (("expect_column_values_to_be_in_set", "label_readable"), {}),
    "nan_landmarks": (("expect_column_values_to_be_in_set", "landmarks_ok"), {}),
    "image_in_two_splits": (("expect_column_values_to_be_unique", "sha256"), {}),
    "background_over_limit": (("expect_column_values_to_be_between", "background_fraction"), {}),
    "face_under_limit": (("expect_column_values_to_be_between", "face_fraction"), {"max_background_fraction": 1.0}),
    "one_class": (("expect_column_values_to_be_between", "n_classes"), {}),
}


@pytest.mark.parametrize("kind", list(MORE))
def test_every_defect_kind_is_detected_named_and_quarantined(kind, good, tmp_path):
    ds = tmp_path / "ds"
    shutil.copytree(good, ds)
    train = ids_of(ds, "train")
    bad_id, text = plant_more(kind, ds, train[2], train[0])
    before = tree_digest(ds)
    (name, column), thresholds = MORE[kind]
    s = validate_dataset(ds, tmp_path / "v", progress=False, **thresholds)
    assert tree_digest(ds) == before, "validate modified the dataset"
    assert s["success"] is False
    assert list(s["bad"]) == [bad_id], s["bad"]   # only the planted sample
    assert any(text in r for r in s["bad"][bad_id]), s["bad"][bad_id]
    failed = [(e["name"], e.get("column")) for e in s["expectations"] if not e["success"]]
    assert (name, column) in failed, failed
    ge = next(e for e in s["expectations"] if (e["name"], e.get("column")) == (name, column))
    assert bad_id in ge.get("unexpected_ids", [bad_id]), ge   # the Data Docs row names the sample
    assert json.loads((tmp_path / "v/quarantine.json").read_text())["ids"] == [bad_id]
    on_disk = json.loads((tmp_path / "v/summary.json").read_text())
    assert on_disk["success"] is False and list(on_disk["bad"]) == [bad_id]
    metrics = json.loads((tmp_path / "v/metrics.json").read_text())
    assert metrics["success"] is False and metrics["n_bad"] == 1
    split = "val" if kind == "image_in_two_splits" else "train"
    kept = load_split(ds, split, quarantine=tmp_path / "v/quarantine.json")
    assert bad_id not in set(kept["id"]) and len(kept) == len(ids_of(ds, split)) - 1
    disjoint = next(e for e in s["expectations"] if e["name"] == "splits_disjoint")
    if kind == "image_in_two_splits":   # a leak between splits is also a dataset-level failure
        assert not disjoint["success"]
        assert disjoint["images_in_several_splits"][0]["ids"] == {train[0]: "train", bad_id: "val"}
        assert any("the same image is in several splits" in p for p in s["problems"]), s["problems"]
    else:
        assert disjoint["success"] and s["problems"] == []


@pytest.fixture(scope="module")
def wide(tmp_path_factory) -> Path:
    """A clean dataset with enough train ids to plant every defect kind at once (30 samples)."""
    raw = tmp_path_factory.mktemp("raw-wide")
    for k in range(30):
        rng = np.random.default_rng(100 + k)
        Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(raw / f"w{k}.jpg", quality=90)
        Image.fromarray(face_label(SIZE, k), "L").save(raw / f"w{k}.png")
    return ingest("labelmaps", raw, tmp_path_factory.mktemp("ds") / "wide", size=SIZE, progress=False)


def test_every_defect_at_once_via_cli_exit_codes_and_outputs(wide, tmp_path):
    """The CLI contract: exit 1 naming every bad file on stderr; --allow-quarantine exits 0 when only samples are
    bad and 1 when a dataset-level check (an image shared by two splits) fails; 2 on unusable input."""
    from typer.testing import CliRunner

    from faceparse.cli import app

    def validate(ds, out, *extra):
        return CliRunner().invoke(app, ["data", "validate", str(ds), "--out-dir", str(out), "-q", *extra])

    ds = tmp_path / "ds"
    shutil.copytree(wide, ds)
    train = ids_of(ds, "train")
    assert len(train) >= 2 * len(MORE)
    sample_kinds = [k for k in MORE if k != "image_in_two_splits"]
    planted = {k: plant_more(k, ds, train[i], train[len(MORE) + i]) for i, k in enumerate(sample_kinds)}
    res = validate(ds, tmp_path / "v")
    assert res.exit_code == 1, res.output
    for kind, (sid, text) in planted.items():
        assert text in res.stderr, f"{kind}: {text!r} not on stderr:\n{res.stderr}"
    bad = sorted(sid for sid, _ in planted.values())
    q = json.loads((tmp_path / "v/quarantine.json").read_text())
    assert q["ids"] == bad and sorted(q["reasons"]) == bad
    s = json.loads((tmp_path / "v/summary.json").read_text())
    assert sorted(s["bad"]) == bad and s["n_bad"] == len(bad)
    metrics = json.loads((tmp_path / "v/metrics.json").read_text())
    assert metrics["train_usable"] == len(train) - len(bad) and metrics["n_usable"] == len(read_manifest(ds)) - len(bad)
    assert set(load_split(ds, "train", quarantine=tmp_path / "v/quarantine.json")["id"]) == set(train) - set(bad)

    res = validate(ds, tmp_path / "v2", "--allow-quarantine")
    assert res.exit_code == 0, res.output          # only samples are bad: they stay quarantined

    sid, text = plant_more("image_in_two_splits", ds, train[len(sample_kinds)], train[-1])
    res = validate(ds, tmp_path / "v3", "--allow-quarantine")
    assert res.exit_code == 1, res.output          # a split leak is never allowed
    assert text in res.stderr and "the same image is in several splits" in res.stderr

    (ds / "manifest.parquet").unlink()
    res = validate(ds, tmp_path / "v4")
    assert res.exit_code == 2 and "manifest.parquet" in res.output, res.output
