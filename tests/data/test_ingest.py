"""ingest.py: each real layout → the canonical dataset with exactly the expected label maps."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceparse.data.ingest import (CELEBAMASK_PARTS, assign_splits, ingest, paint_parts, split_counts)
from faceparse.data.manifest import read_info, read_manifest, sha256_file
from faceparse.labels import CELEBAMASK_HQ


# ----------------------------------------------------------------------------------------------- helpers
def tree_digest(root: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under root, plus the set of directories."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "<dir>"
    return out


def noise_image(path: Path, w: int, h: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path, quality=95)


def save_mask(path: Path, mask: np.ndarray, rgb: bool = False) -> None:
    m = (mask.astype(np.uint8) * 255)
    Image.fromarray(np.stack([m] * 3, -1) if rgb else m).save(path)


def read_png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def box(shape, r0, r1, c0, c1):
    m = np.zeros(shape, bool)
    m[r0:r1, c0:c1] = True
    return m


C = {name: i for i, name in enumerate(CELEBAMASK_HQ.classes)}


# ----------------------------------------------------------------------------------------------- CelebAMask-HQ
def make_celebamask(root: Path, partition: bool = False) -> dict[int, np.ndarray]:
    """Images 0, 1, 2, 2001 (annotation folder 1) with overlapping parts, image 3 without any mask."""
    (root / "CelebA-HQ-img").mkdir(parents=True)
    for k in (0, 1):
        (root / "CelebAMask-HQ-mask-anno" / str(k)).mkdir(parents=True)
    shape = (32, 32)
    expected = {}
    for i in (0, 1, 2, 3, 2001):
        noise_image(root / "CelebA-HQ-img" / f"{i}.jpg", 64, 64, seed=i)
        if i == 3:
            continue
        folder = root / "CelebAMask-HQ-mask-anno" / str(i // 2000)
        parts = {
            "skin": box(shape, 4, 28, 6, 26),
            "nose": box(shape, 12, 20, 14, 18),       # on skin
            "eye_g": box(shape, 8, 12, 6, 26),        # glasses over skin ...
            "l_eye": box(shape, 9, 11, 8, 12),        # ... but the eye is painted over the glasses
            "hair": box(shape, 0, 8, 4 + i % 3, 28),  # over skin rows 4-7
            "hat": box(shape, 0, 3, 8, 24),           # over hair
            "neck": box(shape, 26, 32, 10, 22),       # under ...
            "cloth": box(shape, 29, 32, 0, 32),       # ... cloth
        }
        exp = np.zeros(shape, np.uint8)
        for name in CELEBAMASK_PARTS:          # official order, later on top
            if name in parts:
                save_mask(folder / f"{i:05d}_{name}.png", parts[name], rgb=(name == "hair"))
                exp[parts[name]] = C[name]
        expected[i] = exp
    # spot-check the hand-built expectation against the paint order
    e = expected[0]
    assert e[10, 9] == C["l_eye"] and e[10, 20] == C["eye_g"] and e[1, 10] == C["hat"] and e[5, 10] == C["hair"]
    assert e[30, 12] == C["cloth"] and e[27, 12] == C["neck"] and e[15, 15] == C["nose"]
    mapping = ["idx         orig_idx    orig_file"]
    orig = {0: 100, 1: 170000, 2: 190000, 3: 5, 2001: 162770}
    for i, o in orig.items():
        mapping.append(f"{i}  {o}  {o + 1:06d}.jpg")
    (root / "CelebA-HQ-to-CelebA-mapping.txt").write_text("\n".join(mapping) + "\n")
    if partition:  # the official CelebA partition disagrees with the thresholds for images 0 and 2001
        lines = {100: 2, 170000: 1, 190000: 2, 5: 0, 162770: 1}
        (root / "list_eval_partition.txt").write_text(
            "".join(f"{o + 1:06d}.jpg {s}\n" for o, s in lines.items()))
    return expected


def test_celebamask_paint_order_splits_and_skip(tmp_path):
    src = tmp_path / "celeba"
    expected = make_celebamask(src)
    before = tree_digest(src)
    out = ingest("celebamask-hq", src, tmp_path / "out", size=32, progress=False)
    assert tree_digest(src) == before, "the source was modified"
    df = read_manifest(out).set_index("id")
    assert sorted(df.index) == ["0", "1", "2", "2001"]
    for i, exp in expected.items():
        np.testing.assert_array_equal(read_png(out / f"labels/{i}.png"), exp)
        with Image.open(out / f"images/{i}.jpg") as im:
            assert im.size == (32, 32) and im.mode == "RGB"
    assert dict(df["split"]) == {"0": "train", "1": "val", "2": "test", "2001": "train"}
    info = read_info(out)
    assert info["label_table"] == "celebamask-hq" and info["size"] == 32 and info["count"] == 4
    assert [s["id"] for s in info["skipped"]] == ["3"]
    assert "00003_<part>.png" in info["skipped"][0]["file"]
    assert df.loc["0", "class_pixels"] == np.bincount(expected[0].ravel(), minlength=19).tolist()


def test_celebamask_partition_file_wins(tmp_path):
    src = tmp_path / "celeba"
    expected = make_celebamask(src, partition=True)
    out = ingest("celebamask-hq", src, tmp_path / "out", size=16, progress=False)
    df = read_manifest(out).set_index("id")
    assert dict(df["split"]) == {"0": "test", "1": "val", "2": "test", "2001": "val"}
    assert "list_eval_partition" in read_info(out)["split_method"]
    # labels resized with nearest: only ids that exist in the source map
    got = read_png(out / "labels/0.png")
    assert got.shape == (16, 16) and set(np.unique(got)) <= set(np.unique(expected[0]))
    np.testing.assert_array_equal(got, np.asarray(Image.fromarray(expected[0]).resize((16, 16), Image.NEAREST)))


def test_paint_parts_rejects_mismatched_sizes(tmp_path):
    save_mask(tmp_path / "a.png", box((8, 8), 0, 4, 0, 4))
    save_mask(tmp_path / "b.png", box((8, 6), 0, 4, 0, 4))
    with pytest.raises(ValueError, match="b.png"):
        paint_parts([(1, tmp_path / "a.png"), (2, tmp_path / "b.png")])


# ----------------------------------------------------------------------------------------------- LaPa
def make_lapa(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    out = {}
    rng = np.random.default_rng(1)
    for split, names in {"train": ["a1", "a2"], "val": ["b1"], "test": ["c1"]}.items():
        for sub in ("images", "labels", "landmarks"):
            (root / split / sub).mkdir(parents=True)
        for k, name in enumerate(names):
            noise_image(root / split / "images" / f"{name}.jpg", 40, 30, seed=k + 10 * len(out))
            lab = rng.integers(0, 11, (30, 40)).astype(np.uint8)
            Image.fromarray(lab, "L").save(root / split / "labels" / f"{name}.png")
            pts = None
            if name != "a2":  # a2 has no landmark file: landmarks stay None
                pts = rng.uniform(0, 30, (106, 2)).astype(np.float32)
                (root / split / "landmarks" / f"{name}.txt").write_text(
                    "106\n" + "".join(f"{x:.3f} {y:.3f}\n" for x, y in pts))
            out[name] = (lab, pts)
    # an image whose label is missing: skipped with a warning
    noise_image(root / "train" / "images" / "zz.jpg", 40, 30, seed=99)
    return out


def test_lapa(tmp_path):
    src = tmp_path / "lapa"
    truth = make_lapa(src)
    before = tree_digest(src)
    out = ingest("lapa", src, tmp_path / "out", size=20, progress=False)
    assert tree_digest(src) == before
    info = read_info(out)
    assert info["label_table"] == "lapa" and info["landmarks"] == 106
    assert [(s["id"], s["file"]) for s in info["skipped"]] == [("zz", "train/labels/zz.png")]
    df = read_manifest(out).set_index("id")
    assert dict(df["split"]) == {"a1": "train", "a2": "train", "b1": "val", "c1": "test"}
    for name, (lab, pts) in truth.items():
        want = np.asarray(Image.fromarray(lab, "L").resize((20, 20), Image.NEAREST))
        np.testing.assert_array_equal(read_png(out / f"labels/{name}.png"), want)
        if pts is None:
            assert df.loc[name, "landmarks"] is None
        else:
            got = np.load(out / df.loc[name, "landmarks"])
            assert got.shape == (106, 2) and got.dtype == np.float32
            np.testing.assert_allclose(got, pts * np.array([20 / 40, 20 / 30]), atol=1e-3)


def test_lapa_bad_landmarks_named(tmp_path):
    src = tmp_path / "lapa"
    make_lapa(src)
    (src / "val/landmarks/b1.txt").write_text("106\n1 2\n3 4\n")
    with pytest.raises(ValueError, match=r"b1\.txt.*106 points"):
        ingest("lapa", src, tmp_path / "out", size=20, progress=False)
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.tmp-*")), "temporary folder left behind"


# ----------------------------------------------------------------------------------------------- Helen
def make_helen(root: Path) -> dict[str, np.ndarray]:
    truth = {}
    for split, n in (("train", 5), ("test", 2)):
        (root / split).mkdir(parents=True)
        for k in range(n):
            name = f"{split}{k}_{100 + k}"
            noise_image(root / split / f"{name}_image.jpg", 24, 24, seed=k + (50 if split == "test" else 0))
            lab = np.zeros((24, 24), np.uint8)
            lab[4:20, 4:20] = 1
            lab[8:10, 6:10], lab[8:10, 14:18], lab[14:17, 8:16] = 4, 5, 7 + k % 3
            lab[0:3, :] = 10
            Image.fromarray(lab, "L").save(root / split / f"{name}_label.png")
            Image.fromarray(lab * 20, "L").convert("RGB").save(root / split / f"{name}_viz.jpg")  # ignored
            truth[name] = lab
    return truth


def test_helen_val_carved_deterministically(tmp_path):
    src = tmp_path / "helen"
    truth = make_helen(src)
    out = ingest("helen", src, tmp_path / "out", size=24, split_seed=3, progress=False)
    df = read_manifest(out).set_index("id")
    assert read_info(out)["label_table"] == "helen"
    assert sorted(df.index) == sorted(truth)
    for name, lab in truth.items():
        np.testing.assert_array_equal(read_png(out / f"labels/{name}.png"), lab)
    splits = dict(df["split"])
    assert {k: v for k, v in splits.items() if k.startswith("test")} == {"test0_100": "test", "test1_101": "test"}
    train_side = [v for k, v in splits.items() if k.startswith("train")]
    assert train_side.count("val") >= 1 and train_side.count("train") >= 1 and "test" not in train_side
    again = ingest("helen", src, tmp_path / "out2", size=24, split_seed=3, progress=False)
    assert dict(read_manifest(again).set_index("id")["split"]) == splits


# ----------------------------------------------------------------------------------------------- labelmaps
def test_labelmaps_real_samples(tmp_path, real_samples):
    before = tree_digest(real_samples)
    out = ingest("labelmaps", real_samples, tmp_path / "out", size=128, progress=False)
    assert tree_digest(real_samples) == before
    df = read_manifest(out)
    assert len(df) == 4 and set(df["split"]) == {"train", "val", "test"}
    for row in df.itertuples():
        src_lab = read_png(real_samples / f"{row.id}.png")
        lab = read_png(out / row.label)
        assert lab.shape == (128, 128)
        np.testing.assert_array_equal(lab, np.asarray(Image.fromarray(src_lab).resize((128, 128), Image.NEAREST)))
        assert row.sha256 == sha256_file(out / row.image)
    assert read_info(out)["label_table"] == "celebamask-hq"


def test_labelmaps_errors_and_atomic_replace(tmp_path, real_samples):
    src = tmp_path / "lm"
    src.mkdir()
    for i in range(4):
        (src / f"{i}.jpg").write_bytes((real_samples / f"{i}.jpg").read_bytes())
        (src / f"{i}.png").write_bytes((real_samples / f"{i}.png").read_bytes())
    out = ingest("labelmaps", src, tmp_path / "out", size=32, progress=False)
    first = tree_digest(out)
    # a truncated source image: clear error naming it; the previous output stays as it was
    data = (src / "2.jpg").read_bytes()
    (src / "2.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match=r"2\.jpg.*unreadable"):
        ingest("labelmaps", src, tmp_path / "out", size=32, progress=False)
    assert tree_digest(out) == first
    assert not list(tmp_path.glob(".out.tmp-*"))
    (src / "2.jpg").write_bytes(data)
    # a missing label file is skipped and recorded
    (src / "3.png").unlink()
    out = ingest("labelmaps", src, tmp_path / "out", size=32, progress=False)
    info = read_info(out)
    assert [s["id"] for s in info["skipped"]] == ["3"] and info["count"] == 3
    assert set(read_manifest(out)["split"]) == {"train", "val", "test"}
    with pytest.raises(ValueError, match="overlaps the source"):
        ingest("labelmaps", src, src / "out", size=32, progress=False)
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="precious"):
        ingest("labelmaps", src, tmp_path / "precious", size=32, progress=False)
    with pytest.raises(ValueError, match="unknown dataset format"):
        ingest("coco", src, tmp_path / "x", progress=False)


# ----------------------------------------------------------------------------------------------- splits
@pytest.mark.parametrize("n", [3, 4, 5, 10, 101])
def test_split_counts_nonempty(n):
    c = split_counts(n, {"train": 0.8, "val": 0.1, "test": 0.1})
    assert sum(c.values()) == n and all(v >= 1 for v in c.values())


def test_assign_splits_deterministic_and_order_free():
    ids = [f"x{i}" for i in range(20)]
    a = assign_splits(ids, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=7)
    b = assign_splits(list(reversed(ids)), {"train": 0.8, "val": 0.1, "test": 0.1}, seed=7)
    assert a == b and sorted(a.values()).count("train") == 16
    assert assign_splits(ids, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=8) != a
    with pytest.raises(ValueError, match="unknown split"):
        split_counts(5, {"dev": 1.0})


def test_cli_ingest(tmp_path, real_samples):
    from typer.testing import CliRunner

    from faceparse.cli import app

    res = CliRunner().invoke(app, ["data", "ingest", "--format", "labelmaps", "--src", str(real_samples),
                                   "--out", str(tmp_path / "out"), "--size", "32", "-q"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "out" / "dataset.json").read_text())["count"] == 4
    res = CliRunner().invoke(app, ["data", "ingest", "--format", "lapa", "--src", str(tmp_path / "missing"),
                                   "--out", str(tmp_path / "o2"), "-q"])
    assert res.exit_code == 2 and "missing" in res.output
