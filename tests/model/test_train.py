"""`faceparse.train.train` end to end on a tiny synthetic dataset: checkpoints, bundle, MLflow run (queried in
the real sqlite store), exact kill-and-resume, bad input, the CLI door.

Everything is tiny (width-8 encoder, 32 px, 16 samples) so the file runs in about a minute on 2 cores.
One intra-op thread (train.threads=1): on the shared, oversubscribed 2-core box 2 threads are >10× slower.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from faceparse.config import load_params

REPO = Path(__file__).resolve().parents[2]

TINY = ["model.preset=tiny", "model.overrides={}", "model.presets.tiny.width=8", "model.presets.tiny.groups=[1,1,1]",
        "model.presets.tiny.hidden=[16]", "model.presets.tiny.reduce=[16]"]


def tiny_params(tmp: Path, dataset: Path, tracking_uri: str, *extra: str) -> dict:
    """params.yaml + overrides for a seconds-long run writing only under ``tmp``."""
    return load_params(REPO / "params.yaml", [
        *TINY, f"data.dir={dataset}", f"validate.out_dir={tmp / 'validation'}",
        "train.epochs=2", "train.batch_size=4", "train.lr=2.0e-3", "train.input_size=32", "train.out_size=32",
        "train.sample_queries=256", "train.num_workers=0", "train.seed=0", "train.report=false", "train.threads=1",
        f"train.run_dir={tmp / 'run'}", f"train.bundle_dir={tmp / 'model'}",
        f"registry.tracking_uri={tracking_uri}", "registry.experiment=test-train", *extra])


def make_dataset(out: Path, n: int = 16) -> Path:
    from faceparse.data.synth import write_dataset

    return write_dataset(out, n=n, size=32, seed=0, occlusion_prob=0.3,
                         splits={"train": 0.75, "val": 0.25}, progress=False)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("train-data") / "ds")


@pytest.fixture(scope="session")
def tracking_uri(tmp_path_factory) -> str:
    """One sqlite store for the session (creating a store costs ~8 s)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def test_train_end_to_end(tmp_path, tiny_dataset, tracking_uri):
    from mlflow.tracking import MlflowClient

    from faceparse.bundle import load_bundle
    from faceparse.train import train

    params = tiny_params(tmp_path, tiny_dataset, tracking_uri, "train.epochs=3", "train.report=true")
    out = train(params, progress=False)

    # loss goes down; validation metrics are finite numbers
    losses = [h["train_loss"] for h in out["history"]]
    assert len(losses) == 3 and losses[-1] < losses[0], losses
    assert 0.0 <= out["val"]["mean_f1"] <= 1.0 and 0.0 <= out["val"]["miou"] <= 1.0

    # checkpoints + bundle
    run = tmp_path / "run"
    assert {p.name for p in run.glob("*.pt")} == {"last.pt", "epoch_001.pt", "epoch_002.pt", "epoch_003.pt"}
    ck = torch.load(run / "last.pt", weights_only=True)   # plain tensors / values only
    assert ck["epoch"] == 3 and ck["meta"]["num_classes"] == 19
    model, meta = load_bundle(out["bundle"])
    assert meta["stage"] == "parser" and meta["label_table"] == "celebamask-hq" and meta["input_size"] == 32
    assert meta["metrics"]["mean_f1"] == pytest.approx(out["val"]["mean_f1"])
    assert all(torch.equal(v, ck["model"][k]) for k, v in model.state_dict().items())
    assert model(torch.zeros(1, 3, 32, 32), 48).shape == (1, 19, 48, 48)

    # the MLflow run, read back from the sqlite store
    c = MlflowClient(tracking_uri)
    r = c.get_run(out["mlflow_run_id"])
    assert r.info.status == "FINISHED"
    p = r.data.params
    assert p["train.epochs"] == "3" and p["loss.edge_weight"] == "10.0" and p["system.world_size"] == "1"
    assert p["system.device"] == "cpu" and int(p["report.params"]) > 0 and float(p["report.gmacs_256"]) > 0
    assert p["dataset.train_count"] == "12" and p["dataset.val_count"] == "4"
    for key in ("train_loss", "val_mean_f1", "val_miou", "lr", "images_per_s"):
        hist = c.get_metric_history(r.info.run_id, key)
        assert [m.step for m in hist] == [1, 2, 3], key
    assert [m.value for m in c.get_metric_history(r.info.run_id, "train_loss")] == pytest.approx(losses)
    arts = {a.path for a in c.list_artifacts(r.info.run_id)}
    assert {"plots", "bundle", "val.json"} <= arts
    assert {a.path for a in c.list_artifacts(r.info.run_id, "plots")} == {
        "plots/val_f1.png", "plots/val_confusion.png", "plots/val_overlays.png"}
    assert {a.path for a in c.list_artifacts(r.info.run_id, "bundle")} == {"bundle/weights.pt", "bundle/bundle.json"}


def test_kill_and_resume_is_bitwise_identical(tmp_path, tiny_dataset, tracking_uri):
    """3 epochs straight vs. 'killed' after epoch 1 (train.stop_after_epoch, the test hook: returns right
    after the epoch-1 checkpoint, as a kill would leave it) then resume=True: identical final weights."""
    from faceparse.train import train

    # augmentation on (stateless per (seed, epoch, index)), query sampling on: the hard case
    common = ["train.epochs=3", "train.augment.enabled=true"]
    full = train(tiny_params(tmp_path / "a", tiny_dataset, tracking_uri, *common), progress=False)
    killed = train(tiny_params(tmp_path / "b", tiny_dataset, tracking_uri, *common, "train.stop_after_epoch=1"),
                   progress=False)
    assert killed["stopped_after_epoch"] == 1 and killed["bundle"] is None
    assert not (tmp_path / "b" / "model").exists() and (tmp_path / "b" / "run" / "epoch_001.pt").is_file()
    resumed = train(tiny_params(tmp_path / "b", tiny_dataset, tracking_uri, *common), resume=True, progress=False)

    a = torch.load(tmp_path / "a" / "run" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "run" / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 3
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for sa, sb in zip(a["optimizers"]["model"]["state"].values(), b["optimizers"]["model"]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert [h["train_loss"] for h in full["history"]] == [h["train_loss"] for h in resumed["history"]]
    assert resumed["val"] == full["val"]
    # the resumed run continues the killed run's MLflow run
    assert resumed["mlflow_run_id"] == killed["mlflow_run_id"]
    from mlflow.tracking import MlflowClient

    hist = MlflowClient(tracking_uri).get_metric_history(resumed["mlflow_run_id"], "train_loss")
    assert sorted(m.step for m in hist) == [1, 2, 3]


def test_missing_dataset_dir(tmp_path, tracking_uri):
    from faceparse.train import train

    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        train(tiny_params(tmp_path, missing, tracking_uri), progress=False)


def test_resume_without_checkpoint(tmp_path, tiny_dataset, tracking_uri):
    from faceparse.train import train

    with pytest.raises(FileNotFoundError, match=r"last\.pt"):
        train(tiny_params(tmp_path, tiny_dataset, tracking_uri), resume=True, progress=False)


def test_empty_split_and_missing_manifest(tmp_path, tracking_uri):
    from faceparse.train import train

    ds = make_dataset(tmp_path / "ds", n=3)            # splits train/val of 3 samples
    (ds / "manifest.parquet").rename(ds / "moved.parquet")
    with pytest.raises(FileNotFoundError, match="manifest.parquet"):
        train(tiny_params(tmp_path, ds, tracking_uri), progress=False)
    (ds / "moved.parquet").rename(ds / "manifest.parquet")
    # quarantine every val id: the val split becomes empty
    import pandas as pd

    ids = pd.read_parquet(ds / "manifest.parquet").query("split == 'val'")["id"].tolist()
    (tmp_path / "validation").mkdir()
    (tmp_path / "validation" / "quarantine.json").write_text(json.dumps({"ids": ids, "reasons": {}}))
    with pytest.raises(ValueError, match="'val' split is empty"):
        train(tiny_params(tmp_path, ds, tracking_uri), progress=False)


def test_cli_train_and_friendly_errors(tmp_path, tiny_dataset, tracking_uri):
    """The CLI door: JSON summary on stdout; a bad --resume is one red line and exit code 2."""
    sets = [*TINY, f"data.dir={tiny_dataset}", f"validate.out_dir={tmp_path / 'v'}", "train.epochs=1",
            "train.batch_size=4", "train.input_size=32", "train.out_size=32", "train.sample_queries=128",
            f"train.run_dir={tmp_path / 'run'}", f"train.bundle_dir={tmp_path / 'model'}", "train.report=false",
            f"registry.tracking_uri={tracking_uri}", "registry.experiment=test-train"]
    args = [sys.executable, "-m", "faceparse", "train", "--params", str(REPO / "params.yaml"), "--no-progress"]
    for s in sets:
        args += ["--set", s]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    bad = subprocess.run(args + ["--resume"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert bad.returncode == 2 and "no checkpoint to resume from" in bad.stderr and "Traceback" not in bad.stderr
    ok = subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert ok.returncode == 0, ok.stderr[-2000:]
    summary = json.loads(ok.stdout)
    assert summary["epochs"] == 1 and Path(summary["bundle"], "weights.pt").is_file() and summary["mlflow_run_id"]
