"""Each paper ablation is ONE params override, and a 1-epoch run of each trains, validates and bundles."""
from __future__ import annotations

import math

import pytest

from test_train import make_dataset, tiny_params  # noqa: E402  (same directory, pytest's rootdir import)

ABLATIONS = {
    "unet-decoder": "model.overrides.decoder=unet",
    "batch-norm": "model.overrides.norm=batch",
    "no-norm": "model.overrides.norm=none",
    "no-edge-loss": "loss.edge_weight=0",
    "no-ensemble": "model.overrides.ensemble=false",
}


@pytest.fixture(scope="module")
def ablation_data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("ablation-data") / "ds", n=8)


@pytest.fixture(scope="module")
def ablation_store(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('ablation-mlflow') / 'mlflow.db'}"


@pytest.mark.parametrize("name", list(ABLATIONS))
def test_ablation_variant_trains(name, tmp_path, ablation_data, ablation_store):
    from faceparse.bundle import load_bundle
    from faceparse.train import train

    out = train(tiny_params(tmp_path, ablation_data, ablation_store, "train.epochs=1", ABLATIONS[name]),
                progress=False)
    assert out["epochs"] == 1 and math.isfinite(out["history"][0]["train_loss"])
    _, meta = load_bundle(out["bundle"])
    key, value = ABLATIONS[name].split("=")
    if key.startswith("model.overrides."):
        want = {"false": False}.get(value, value)
        assert meta["model_config"][key.rsplit(".", 1)[1]] == want
