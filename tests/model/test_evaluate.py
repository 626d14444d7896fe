"""faceparse.evaluate on a tiny canonical dataset with a tiny random bundle: files, keys, and the metrics
checked against an independent computation (own forward passes, own upsampling, own confusion)."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from faceparse.bundle import load_bundle, save_bundle
from faceparse.config import load_params
from faceparse.data.manifest import sample_row, write_info, write_manifest
from faceparse.labels import CELEBAMASK_HQ
from faceparse.metrics import scores
from faceparse.models import build_model, preprocess

TINY = {"width": 8, "groups": [1, 1, 1], "norm": "instance", "decoder": "liif", "unfold": True,
        "reduce": [16, 8], "hidden": [16], "ensemble": True, "query_chunk": 16384, "preset": "tiny-test"}
SIZE = 64


def make_dataset(root: Path, n_test=3, n_train=1, size=SIZE, seed=0) -> Path:
    """A canonical dataset of blobby random label maps (CelebAMask-HQ ids) with matching coloured images."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    yy, xx = np.mgrid[:size, :size]
    rows = []
    for i in range(n_test + n_train):
        lab = np.zeros((size, size), np.uint8)
        for _ in range(5):
            c = int(rng.integers(1, 14))
            cy, cx, r = *rng.integers(8, size - 8, 2), int(rng.integers(4, 14))
            lab[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = c
        img = (CELEBAMASK_HQ.palette()[lab] * 0.7 + rng.integers(0, 60, (size, size, 3))).astype(np.uint8)
        sid = f"s{i:02d}"
        Image.fromarray(img).save(root / "images" / f"{sid}.jpg", quality=95)
        Image.fromarray(lab).save(root / "labels" / f"{sid}.png")
        rows.append(sample_row(root, sid, "test" if i < n_test else "train", image=f"images/{sid}.jpg",
                               label=f"labels/{sid}.png", num_classes=19, source="test"))
    write_manifest(root, rows)
    write_info(root, {"label_table": "celebamask-hq", "size": size, "source": "test", "count": len(rows)})
    return root


def make_bundle(path: Path, input_size=SIZE, seed=0, **meta) -> Path:
    torch.manual_seed(seed)
    model = build_model(TINY, 19)
    return save_bundle(path, model, {"model_config": TINY, "num_classes": 19, "label_table": "celebamask-hq",
                                     "input_size": input_size, **meta})


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    data = make_dataset(root / "data")
    bundle = make_bundle(root / "bundle")
    return root, data, bundle


def params_for(root: Path, data: Path, bundle: Path, *extra):
    return load_params(overrides=[f"data.dir={data}", f"train.bundle_dir={bundle}",
                                  f"validate.out_dir={root / 'validation'}",
                                  f"evaluate.metrics_file={root / 'metrics/eval.json'}",
                                  f"evaluate.plots_dir={root / 'metrics/plots'}",
                                  f"evaluate.table_file={root / 'metrics/table.md'}",
                                  "registry.tracking_uri=null", *extra])


def test_evaluate_writes_metrics_plots_and_table(setup):
    from faceparse.evaluate import evaluate

    root, data, bundle = setup
    res = evaluate(params_for(root, data, bundle, "evaluate.out_sizes=[64,96,128,192,256,512]"), progress=False)
    saved = json.loads((root / "metrics/eval.json").read_text())
    assert saved == json.loads(json.dumps(res))
    for key in ("mean_f1", "miou", "pixel_acc", "per_class_f1", "per_class_iou", "multires", "n_images",
                "bundle", "bundle_sha256"):
        assert key in saved, key
    assert saved["n_images"] == 3 and saved["resolution"] == SIZE
    assert sorted(saved["multires"], key=int) == ["64", "96", "128", "192", "256", "512"]
    assert set(saved["per_class_f1"]) == set(CELEBAMASK_HQ.classes)
    assert saved["multires"]["64"]["mean_f1"] == pytest.approx(saved["mean_f1"])
    plots = root / "metrics/plots"
    for name in ("per_class_f1.csv", "per_class_f1.json", "confusion_matrix.csv", "confusion.png", "multires.csv"):
        assert (plots / name).is_file(), name
    assert (plots / "per_class_f1.csv").read_text().splitlines()[0] == "class,f1,iou"
    assert len(json.loads((plots / "per_class_f1.json").read_text())) == 19
    table = (root / "metrics/table.md").read_text()
    assert "| Model | skin | nose |" in table and "Mean F1" in table and "| Output | 64 | 96 |" in table
    # No NaN anywhere: strict JSON parsers (DVC, browsers) must read it.
    json.loads((root / "metrics/eval.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in eval.json"))


def test_metrics_match_an_independent_computation(setup):
    """Own forward passes per output size, own up/down-sampling, own confusion → the same numbers; and a
    quarantined test id is left out."""
    from faceparse.evaluate import evaluate

    root, data, bundle = setup
    (root / "validation").mkdir(exist_ok=True)
    (root / "validation/quarantine.json").write_text(json.dumps({"ids": ["s02"], "reasons": {"s02": ["x"]}}))
    try:
        res = evaluate(params_for(root, data, bundle, "evaluate.out_sizes=[32,64,128]"), progress=False)
    finally:
        (root / "validation/quarantine.json").unlink()
    assert res["n_images"] == 2

    model, _ = load_bundle(bundle)
    ids = ["s00", "s01"]
    x = torch.stack([preprocess(Image.open(data / f"images/{i}.jpg"), SIZE) for i in ids])
    y = np.stack([np.asarray(Image.open(data / f"labels/{i}.png")) for i in ids]).astype(np.int64)
    n = 19
    for s in (32, 64, 128):
        with torch.no_grad():
            logits = model(x, s)
        if s < SIZE:
            logits = F.interpolate(logits, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
        pred = logits.argmax(1).numpy()
        truth = y.repeat(s // SIZE, 1).repeat(s // SIZE, 2) if s > SIZE else y  # nearest ×2
        cm = np.zeros((n, n), np.int64)
        np.add.at(cm, (truth.ravel(), pred.ravel()), 1)
        expect = scores(cm, CELEBAMASK_HQ)
        assert res["multires"][str(s)]["mean_f1"] == pytest.approx(expect["mean_f1"], abs=1e-9), s
        assert res["multires"][str(s)]["miou"] == pytest.approx(expect["miou"], abs=1e-9), s
        if s == SIZE:
            assert res["mean_f1"] == pytest.approx(expect["mean_f1"], abs=1e-9)
            assert res["pixel_acc"] == pytest.approx(np.trace(cm) / cm.sum())
            tp, gt, pr = np.diag(cm), cm.sum(1), cm.sum(0)
            for k, c in enumerate(CELEBAMASK_HQ.classes):
                want = 2 * tp[k] / (gt[k] + pr[k]) if gt[k] + pr[k] else None
                assert res["per_class_f1"][c] == (None if want is None else pytest.approx(want)), c


def test_label_table_mismatch_and_empty_split_are_clear(setup, tmp_path):
    from faceparse.evaluate import evaluate

    root, data, _ = setup
    lapa = make_bundle(tmp_path / "lapa")
    meta = json.loads((lapa / "bundle.json").read_text())
    meta["label_table"] = "lapa"
    (lapa / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="lapa"):
        evaluate(params_for(root, data, lapa), progress=False)
    with pytest.raises(ValueError, match="'val' split is empty"):
        evaluate(params_for(root, data, setup[2], "evaluate.split=val"), progress=False)
