"""faceparse.predict / `faceparse predict` on the 4 real CelebAMask-HQ samples with a tiny random bundle;
resolve_bundle on local bundles and training checkpoints (registry URIs: tests/integration/test_registry.py)."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from faceparse.bundle import save_bundle
from faceparse.labels import CELEBAMASK_HQ
from faceparse.models import build_model

TINY = {"width": 8, "groups": [1, 1, 1], "norm": "instance", "decoder": "liif", "unfold": True,
        "reduce": [16, 8], "hidden": [16], "ensemble": True, "query_chunk": 16384, "preset": "tiny-test"}
META = {"model_config": TINY, "num_classes": 19, "label_table": "celebamask-hq", "input_size": 48}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return save_bundle(tmp_path_factory.mktemp("predict") / "bundle", build_model(TINY, 19), META)


@pytest.fixture(scope="module")
def inputs(real_samples, tmp_path_factory) -> Path:
    """The 4 real images plus a truncated JPEG (the first 2 kB of a real one)."""
    d = tmp_path_factory.mktemp("inputs")
    for i in range(4):
        shutil.copy(real_samples / f"{i}.jpg", d / f"face{i}.jpg")
    (d / "broken.jpg").write_bytes((real_samples / "0.jpg").read_bytes()[:2048])
    return d


def test_predict_writes_palette_labels_overlays_and_masks(bundle, real_samples, tmp_path):
    from faceparse.predict import predict

    files = [real_samples / f"{i}.jpg" for i in range(4)]
    res = predict(str(bundle), [str(f) for f in files], tmp_path, resolution=80, masks=True, batch_size=3,
                  progress=False)
    assert [r["ok"] for r in res] == [True] * 4
    assert [Path(r["input"]).name for r in res] == [f.name for f in files]  # input order kept
    for i in range(4):
        lab = Image.open(tmp_path / f"{i}_label.png")
        assert lab.mode == "P" and lab.size == (80, 80)
        pal = np.array(lab.getpalette()[:19 * 3], np.uint8).reshape(19, 3)
        assert (pal == CELEBAMASK_HQ.palette()).all()
        ids = np.asarray(lab)
        assert ids.max() < 19
        ov = Image.open(tmp_path / f"{i}_overlay.png")
        assert ov.mode == "RGB" and ov.size == (80, 80)
        masks = sorted(p.name for p in (tmp_path / f"{i}_masks").iterdir())
        assert masks == sorted(f"{c}.png" for c in CELEBAMASK_HQ.classes)
        m = np.asarray(Image.open(tmp_path / f"{i}_masks" / f"{CELEBAMASK_HQ.classes[ids[0, 0]]}.png"))
        assert m.shape == (80, 80) and set(np.unique(m)) <= {0, 255} and m[0, 0] == 255
    # Default resolution = the bundle's input size.
    res = predict(str(bundle), str(files[0]), tmp_path / "default", progress=False)
    assert Image.open(res[0]["label"]).size == (48, 48)


def test_truncated_image_is_named_and_the_rest_still_written(bundle, inputs, tmp_path):
    from faceparse.cli import app

    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["predict", "--model", str(bundle), str(inputs), "--out", str(out),
                                 "--resolution", "64", "--quiet"])
    assert r.exit_code == 1, r.output
    assert "broken.jpg" in r.stderr
    summary = json.loads(r.stdout)
    assert summary["ok"] == 4 and summary["failed"] == 1
    bad = [x for x in summary["results"] if not x["ok"]]
    assert len(bad) == 1 and "broken.jpg" in bad[0]["error"]
    for i in range(4):
        assert Image.open(out / f"face{i}_label.png").size == (64, 64)
        assert (out / f"face{i}_overlay.png").is_file()
    assert not (out / "broken_label.png").exists()


def test_globs_duplicates_and_input_errors(bundle, inputs, tmp_path):
    from faceparse.predict import expand_inputs, predict

    got = expand_inputs([str(inputs / "face[01].jpg"), str(inputs / "face0.jpg")])
    assert [p.name for p in got] == ["face0.jpg", "face1.jpg"]  # glob expanded, duplicate dropped
    sub = tmp_path / "sub"
    sub.mkdir()
    shutil.copy(inputs / "face0.jpg", sub / "face0.png")  # same stem from two folders: no overwrite
    res = predict(str(bundle), [str(inputs / "face0.jpg"), str(sub / "face0.png")], tmp_path / "o", resolution=32,
                  progress=False)
    assert [Path(r["label"]).name for r in res] == ["face0_label.png", "face0-2_label.png"]
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        predict(str(bundle), str(tmp_path / "nope.jpg"), tmp_path / "o2")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no input images"):
        predict(str(bundle), [str(empty), str(tmp_path / "*.webp")], tmp_path / "o3")
    r = CliRunner().invoke(__import__("faceparse.cli", fromlist=["app"]).app,
                           ["predict", "--model", str(tmp_path / "missing-bundle"), str(inputs), "--out",
                            str(tmp_path / "o4")])
    assert r.exit_code == 2 and "missing-bundle" in r.stderr


def test_resolve_bundle_local_dir_and_training_checkpoint(bundle, tmp_path):
    from faceparse.bundle import load_bundle
    from faceparse.registry import RegistryError, parse_model_uri, resolve_bundle

    path, info = resolve_bundle(str(bundle))
    assert path == bundle and info["version"] is None
    model, _ = load_bundle(bundle)
    ckpt = tmp_path / "last.pt"  # the training checkpoint layout (faceparse.training.checkpoint)
    torch.save({"model": model.state_dict(), "optimizer": {}, "scheduler": {}, "epoch": 3, "meta": META}, ckpt)
    path, info = resolve_bundle(str(ckpt), dst=tmp_path / "from-ckpt")
    restored, meta = load_bundle(path)
    assert meta["label_table"] == "celebamask-hq" and meta["source_checkpoint"] == str(ckpt.resolve())
    for k, v in model.state_dict().items():
        assert torch.equal(v, restored.state_dict()[k]), k
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        resolve_bundle(str(ckpt), dst=keep)
    assert (keep / "notes.txt").read_text() == "mine"
    torch.save({"weights": {}}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not a faceparse training checkpoint"):
        resolve_bundle(str(tmp_path / "foreign.pt"), dst=tmp_path / "x")
    with pytest.raises(FileNotFoundError, match="neither a registry URI"):
        resolve_bundle(str(tmp_path / "nothing"))
    assert parse_model_uri("models:/fp@champion") == ("fp", "champion", None)
    assert parse_model_uri("models:/fp/3") == ("fp", None, "3")
    with pytest.raises(RegistryError, match="malformed"):
        parse_model_uri("models:/fp@a/b/c")


def test_predicted_maps_equal_the_bundles_own_prediction(bundle, real_samples, tmp_path):
    """`faceparse predict` over more images than one batch (7 inputs, --batch-size 3 → 3 forward passes, an
    unreadable file inside the second): every label PNG is the bundle's in-process prediction for *that*
    image (each image alone, argmax), exactly — same process, same weights, same preprocessing."""
    from faceparse.cli import app
    from faceparse.serve.testing import reference_labels

    src = tmp_path / "in"
    src.mkdir()
    for i in range(4):
        shutil.copy(real_samples / f"{i}.jpg", src / f"face{i}.jpg")
    for i in (1, 2):  # two more distinct images: the photos mirrored (lossless PNG)
        Image.open(real_samples / f"{i}.jpg").transpose(Image.FLIP_LEFT_RIGHT).save(src / f"face{i}m.png")
    (src / "face1x.jpg").write_bytes((real_samples / "3.jpg").read_bytes()[:2048])  # truncated, 2nd batch
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["predict", "--model", str(bundle), str(src), "--out", str(out),
                                 "--resolution", "64", "--batch-size", "3", "--quiet"])
    assert r.exit_code == 1 and "face1x.jpg" in r.stderr, r.output   # the truncated one is named
    stems = ["face0", "face1", "face1m", "face2", "face2m", "face3"]
    refs = reference_labels(bundle, [next(src.glob(f"{s}.*")) for s in stems], 64)
    # all six maps differ from one another: a map written under another image's name cannot pass
    assert all(not np.array_equal(refs[i], refs[j]) for i in range(6) for j in range(i))
    for stem, ref in zip(stems, refs):
        got = np.asarray(Image.open(out / f"{stem}_label.png"))   # palette PNG: pixel = class id
        assert got.shape == ref.shape and np.array_equal(got, ref), \
            f"{stem}: {np.mean(got != ref):.2%} of pixels differ from the bundle's own prediction"
