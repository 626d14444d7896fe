"""Fast checks of the training building blocks: the tracking-URI rule, the dataset's stateless augmentation
and query sampling, checkpoint RNG round trip, and the shared plot helpers."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from test_train import make_dataset  # noqa: E402  (same directory)


@pytest.fixture(scope="module")
def frame(tmp_path_factory):
    from faceparse.data.manifest import load_split

    ds = make_dataset(tmp_path_factory.mktemp("parts-data") / "ds", n=6)
    return load_split(ds, "train")


AUG = {"enabled": True, "rotate": 30, "shear": 20, "scale": [0.5, 3.0], "brightness": [0.5, 1.5],
       "contrast": [0.0, 2.0], "saturation": [0.5, 1.5], "hue": 0.3, "p": 1.0}


def test_tracking_uri_precedence(tmp_path, monkeypatch):
    from faceparse.tracking import artifact_location, tracking_uri

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    emb = tracking_uri({"registry": {"tracking_uri": None}})
    assert emb == f"sqlite:///{tmp_path.resolve() / 'runs/mlflow/mlflow.db'}"
    assert artifact_location(emb) == (tmp_path.resolve() / "runs/mlflow/artifacts").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert tracking_uri({"registry": {}}) == "http://127.0.0.1:5999"
    assert artifact_location("http://127.0.0.1:5999") is None
    # params win; a relative sqlite path is made absolute against the working directory
    got = tracking_uri({"registry": {"tracking_uri": "sqlite:///x/m.db"}})
    assert got == f"sqlite:///{tmp_path.resolve() / 'x/m.db'}"


def test_dataset_is_stateless_and_deterministic(frame):
    from faceparse.training.dataset import FaceParsingDataset

    ds = FaceParsingDataset(frame, 32, 32, 19, augment=AUG, sample_queries=64, seed=3)
    ds.set_epoch(1)
    a = [ds[i] for i in range(len(ds))]
    random.seed(123), np.random.seed(123), torch.manual_seed(123)       # global RNGs play no part
    b = [ds[i] for i in reversed(range(len(ds)))][::-1]                 # nor does the order
    for x, y in zip(a, b):
        for k in ("image", "labels", "edges", "qidx"):
            assert torch.equal(x[k], y[k]), k
    ds.set_epoch(2)
    assert not torch.equal(ds[0]["image"], a[0]["image"])               # a new epoch draws anew
    assert a[0]["image"].shape == (3, 32, 32) and a[0]["labels"].shape == (64,)
    assert len(set(a[0]["qidx"].tolist())) == 64                        # without replacement


def test_query_sampling_gathers_the_full_map(frame):
    """Labels / edges at the sampled pixels are the full (augmented) map's, edges computed on the full map."""
    from faceparse.losses import edge_mask
    from faceparse.training.dataset import FaceParsingDataset

    full = FaceParsingDataset(frame, 32, 32, 19, augment=AUG, sample_queries=0, seed=0)
    some = FaceParsingDataset(frame, 32, 32, 19, augment=AUG, sample_queries=100, seed=0)
    for i in range(len(full)):
        f, s = full[i], some[i]
        assert torch.equal(f["image"], s["image"])
        assert torch.equal(f["labels"][s["qidx"]], s["labels"])
        assert torch.equal(f["edges"][s["qidx"]], s["edges"])
        assert torch.equal(edge_mask(f["labels"].view(1, 32, 32))[0].reshape(-1), f["edges"])


def test_augmentation_keeps_labels_nearest(frame):
    """Warped labels hold only ids present before (nearest neighbour) or 0 (fill)."""
    from faceparse.training.dataset import FaceParsingDataset, load_pair

    ds = FaceParsingDataset(frame, 32, 32, 19, augment=AUG, sample_queries=0, seed=0)
    changed = 0
    for i in range(len(ds)):
        _, lab = load_pair(ds.image_paths[i], ds.label_paths[i])
        got = ds[i]["labels"].view(32, 32).numpy()
        assert set(np.unique(got)) <= set(np.unique(lab)) | {0}
        changed += int(not np.array_equal(got, lab))
    assert changed == len(ds)                                            # p=1: every sample is warped


def test_out_size_differs_from_input(frame):
    from faceparse.training.dataset import FaceParsingDataset

    item = FaceParsingDataset(frame, 32, 48, 19, sample_queries=0)[0]
    assert item["image"].shape == (3, 32, 32) and item["labels"].shape == (48 * 48,)


def test_rng_state_round_trip(tmp_path):
    from faceparse.training.checkpoint import atomic_save, rng_state, set_rng_state

    g = torch.Generator().manual_seed(5)
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    atomic_save({"rng": rng_state(g)}, tmp_path / "s.pt")
    want = (random.random(), np.random.rand(), torch.rand(1).item(), torch.rand(1, generator=g).item())
    random.seed(9), np.random.seed(9), torch.manual_seed(9), g.manual_seed(9)
    set_rng_state(torch.load(tmp_path / "s.pt", weights_only=True)["rng"], g)
    assert (random.random(), np.random.rand(), torch.rand(1).item(), torch.rand(1, generator=g).item()) == want
    assert not list(tmp_path.glob(".*tmp*"))


def test_plots(tmp_path):
    from faceparse import plots
    from faceparse.labels import CELEBAMASK_HQ as T

    m = np.diag(np.arange(1, 20)) + 1
    assert plots.f1_bar({"a": 0.5, "b": float("nan")}, tmp_path / "f1.png", mean=0.5).stat().st_size > 0
    assert plots.confusion_image(m, T.classes, tmp_path / "cm.png").stat().st_size > 0
    with pytest.raises(ValueError):
        plots.confusion_image(m, T.classes[:3], tmp_path / "bad.png")
    img = np.full((8, 8, 3), 100, np.uint8)
    lab = np.zeros((8, 8), np.uint8)
    lab[:4] = 1
    out = plots.overlay(img, lab, T.palette(), alpha=0.5)
    assert out.dtype == np.uint8 and out.shape == img.shape
    assert (out[4:] == 100).all()                                        # background untouched
    assert np.array_equal(out[0, 0], np.rint(0.5 * 100 + 0.5 * T.palette()[1]).astype(np.uint8))
    assert plots.overlay(img, np.ones((4, 4), np.uint8), T.palette()).shape == (8, 8, 3)   # label resized
    p = plots.overlay_grid([img, img], [lab, lab], [lab, lab], T.palette(), tmp_path / "grid.png", titles=["a", "b"])
    assert p.stat().st_size > 0


def test_decoded_samples_are_kept_read_only_while_the_cache_budget_holds():
    """EpochSeeded.cached: a sample decoded once serves every epoch (read-only, so an in-place edit by an
    augmentation fails loudly); past ``cache_bytes`` samples are decoded each time, as before."""
    import numpy as np

    from faceparse.training.dataset import EpochSeeded

    ds = EpochSeeded()
    ds.cache_bytes = 1000
    calls = []

    def load(n):
        calls.append(n)
        return np.zeros(n, np.uint8), 7

    first, again = ds.cached(0, lambda: load(600)), ds.cached(0, lambda: load(600))
    assert first is again and calls == [600] and not first[0].flags.writeable
    over = ds.cached(1, lambda: load(600))
    ds.cached(1, lambda: load(600))
    assert calls == [600, 600, 600] and over[0].flags.writeable
