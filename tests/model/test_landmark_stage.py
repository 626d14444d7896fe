"""The landmark stage on the one path: training through faceparse.train (exact resume; 2 processes = 1),
evaluation with the field's metrics, promotion with a lower-is-better metric against a real MLflow store,
prediction, and the model report."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from faceparse.cli import app
from faceparse.config import load_params
from faceparse.stages import for_stage

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    from faceparse.data.synth import write_dataset

    return write_dataset(tmp_path_factory.mktemp("lmk-data") / "ds", n=16, size=64, seed=0, occlusion_prob=0.5,
                         splits={"train": 0.5, "val": 0.25, "test": 0.25}, progress=False)


def sets(tmp: Path, dataset: Path, uri: str, *extra: str) -> list[str]:
    return [f"data.dir={dataset}", f"validate.out_dir={tmp / 'validation'}",
            "landmarks.model.presets.small.width=0.25", "landmarks.train.init=null", "landmarks.train.epochs=3", "landmarks.train.batch_size=4",
            "landmarks.train.input_size=64", "landmarks.train.report=false", "landmarks.train.lr=2.0e-3",
            f"landmarks.train.run_dir={tmp / 'run'}", f"landmarks.train.bundle_dir={tmp / 'model'}",
            f"landmarks.evaluate.metrics_file={tmp / 'metrics/eval.json'}",
            f"landmarks.evaluate.plots_dir={tmp / 'metrics/plots'}",
            f"landmarks.evaluate.table_file={tmp / 'metrics/table.md'}",
            f"landmarks.registry.registered_file={tmp / 'metrics/registered.json'}",
            "landmarks.registry.floor=null",    # 3 epochs on 4 faces: the promotion floor is tested elsewhere
            f"registry.tracking_uri={uri}", "registry.experiment=test-landmarks", *extra]


def params_for(tmp: Path, dataset: Path, uri: str, *extra: str) -> dict:
    return for_stage(load_params(REPO / "params.yaml", sets(tmp, dataset, uri, *extra)), "landmarks")


def test_kill_and_resume_is_bitwise_identical(tmp_path, dataset):
    from faceparse.train import train

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    full = train(params_for(tmp_path / "a", dataset, uri), progress=False)
    killed = train(params_for(tmp_path / "b", dataset, uri, "landmarks.train.stop_after_epoch=1"), progress=False)
    assert killed["stopped_after_epoch"] == 1 and killed["bundle"] is None
    resumed = train(params_for(tmp_path / "b", dataset, uri), resume=True, progress=False)
    a = torch.load(tmp_path / "a" / "run" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "run" / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 3 and a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert [h["train_loss"] for h in full["history"]] == [h["train_loss"] for h in resumed["history"]]
    assert resumed["val"] == full["val"] and set(full["history"][0]) >= {"val_nme", "val_auc_0.08"}
    meta = json.loads((tmp_path / "a" / "model" / "bundle.json").read_text())
    assert meta["stage"] == "landmarks" and len(meta["mean_shape"]) == 68 and meta["metrics"]["nme"] > 0


def test_evaluate_register_promote_lower_is_better_and_predict(tmp_path, dataset, real_samples):
    """Two trained versions on a real (sqlite) MLflow store: the better (lower NME) one is promoted, the
    worse one refused; evaluate writes the field's metrics; predict writes 68 points + an overlay."""
    from mlflow import MlflowClient

    from faceparse.evaluate import evaluate
    from faceparse.registry import promote, register
    from faceparse.train import train

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    p = params_for(tmp_path, dataset, uri)
    train(p, progress=False)
    res = evaluate(p, progress=False)
    for key in ("nme", "mean_shape_nme", "nme_jaw", "nme_eyes", "auc_0.08", "failure_rate_0.08", "nme_visible"):
        assert isinstance(res[key], float), key
    assert res["stage"] == "landmarks" and res["n_images"] == 4 and "nme_occluded" in res
    assert json.loads((tmp_path / "metrics/eval.json").read_text())["nme"] == res["nme"]
    assert (tmp_path / "metrics/plots/ced.csv").is_file() and "NME" in (tmp_path / "metrics/table.md").read_text()
    v1 = register(p)
    assert v1["name"] == "faceparse-landmarks" and v1["nme"] == res["nme"]
    assert promote(p)["promoted"]
    # a worse challenger: its registered NME is higher → refused, the champion stays
    client = MlflowClient(uri)
    v2 = register(p)
    client.set_model_version_tag("faceparse-landmarks", v2["version"], "nme", repr(res["nme"] + 0.05))
    out = promote(p)
    assert not out["promoted"] and out["champion_after"] == v1["version"]
    assert out["reason"] == (f"challenger v{v2['version']} test NME {res['nme'] + 0.05:.4f} does not beat champion "
                             f"v{v1['version']} {res['nme']:.4f} - margin 0")
    # a better one (lower NME) is promoted
    v3 = register(p)
    client.set_model_version_tag("faceparse-landmarks", v3["version"], "nme", repr(res["nme"] - 0.01))
    out = promote(p)
    assert out["promoted"] and out["champion_after"] == v3["version"] and " < champion " in out["reason"]

    r = CliRunner().invoke(app, ["predict", "--model", str(tmp_path / "model"), str(real_samples / "0.jpg"),
                                 "--out", str(tmp_path / "pred"), "-q"])
    assert r.exit_code == 0, r.output
    pts = json.loads((tmp_path / "pred" / "0_points.json").read_text())
    assert len(pts["points"]) == 68 and (tmp_path / "pred" / "0_overlay.png").is_file()


def test_model_report_and_stages_cli(repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    r = CliRunner().invoke(app, ["model-report", "--stage", "landmarks", "--json",
                                 "--set", "landmarks.train.input_size=256"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert rep["params"] > 100_000 and 0 < rep["gmacs"]["256"] < 1.0
    rows = json.loads(CliRunner().invoke(app, ["stages", "--json"]).output)
    lm = next(x for x in rows if x["name"] == "landmarks")
    assert (lm["primary_metric"], lm["direction"], lm["trainable"]) == ("nme", "min", True)


@pytest.mark.integration
@pytest.mark.slow
def test_two_processes_match_one(tmp_path, dataset):
    """torchrun 2×CPU vs 1 process, same global batch: BatchNorm statistics are all-reduced over the global
    batch (faceparse.training.sync_bn), so the runs differ only by float summation order."""
    from faceparse.serve.testing import free_ports

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}

    def args(tmp: Path) -> list[str]:
        out = ["-m", "faceparse", "train", "--stage", "landmarks", "--params", str(REPO / "params.yaml"),
               "--no-progress"]
        for s in sets(tmp, dataset, uri, "landmarks.train.augment.enabled=true"):
            out += ["--set", s]
        return out

    one = subprocess.run([sys.executable, *args(tmp_path / "one")], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                          "--master-addr", "127.0.0.1", "--master-port", str(free_ports(1)[0]),
                          *args(tmp_path / "two")], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    s1, s2 = json.loads(one.stdout), json.loads(two.stdout)
    assert (s1["world_size"], s2["world_size"]) == (1, 2)
    print("1 process:", [round(h["train_loss"], 7) for h in s1["history"]], s1["val"]["nme"],
          "\n2 processes:", [round(h["train_loss"], 7) for h in s2["history"]], s2["val"]["nme"])
    for h1, h2 in zip(s1["history"], s2["history"], strict=True):
        assert h2["train_loss"] == pytest.approx(h1["train_loss"], rel=1e-4), (h1, h2)
    assert s2["val"]["nme"] == pytest.approx(s1["val"]["nme"], abs=1e-3)


def test_best_epoch_picks_by_direction_and_skips_non_finite():
    from faceparse.train import best_epoch

    hist = [{"epoch": 1, "val_m": 0.5}, {"epoch": 2, "val_m": float("nan")}, {"epoch": 3, "val_m": 0.2},
            {"epoch": 4, "val_m": 0.2}, {"epoch": 5, "val_m": None}]
    assert best_epoch(hist, "m", "min") == 3 and best_epoch(hist, "m", "max") == 1
    assert best_epoch([{"epoch": 1, "val_m": float("nan")}], "m", "max") is None


def test_keep_best_ships_the_best_validation_epochs_weights(tmp_path, dataset):
    """train.keep: best — the bundle holds the weights of the epoch with the best validation NME (read back
    from its checkpoint), measured again: the same NME that epoch logged."""
    from faceparse.train import best_epoch, train

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    res = train(params_for(tmp_path, dataset, uri, "landmarks.train.keep=best", "landmarks.train.lr=1.0e-1",
                           "landmarks.train.framing=image", "landmarks.model.presets.small.refine=0",
                           "landmarks.model.presets.small.flip_test=false"), progress=False)
    best = best_epoch(res["history"], "nme", "min")
    meta = json.loads((tmp_path / "model" / "bundle.json").read_text())
    assert best is not None and best < 3, res["history"]      # lr 0.1, whole-image frame, one plain look: epoch 1 is best
    assert meta["kept_epoch"] == best
    assert meta["metrics"]["nme"] == pytest.approx(res["history"][best - 1]["val_nme"], rel=1e-6)
    shipped = torch.load(tmp_path / "model" / "weights.pt", weights_only=True)
    epoch = torch.load(tmp_path / "run" / f"epoch_{best:03d}.pt", weights_only=True)["model"]
    for k in epoch:
        assert torch.equal(shipped[k], epoch[k]), k
