"""A quarantined TRAINING sample never reaches training: in-process, and on the PyTorchJob path, where the
quarantine list travels to the pod through S3 (``validation.tar`` beside ``dataset.tar``, real SeaweedFS).

The planted train sample's label map is truncated, so a run that loaded it would crash (the training dataset
reads every train sample each epoch): a finished run proves the id was skipped; the control run without
the quarantine list shows the plant is noticed."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from s3server import SeaweedS3  # noqa: E402

from faceparse.config import load_params  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TINY = ["model.preset=tiny", "model.overrides={}", "model.presets.tiny.width=8", "model.presets.tiny.groups=[1,1,1]",
        "model.presets.tiny.hidden=[16]", "model.presets.tiny.reduce=[16]"]


def tiny_params(tmp: Path, dataset: Path, validation: Path, tracking_uri: str) -> dict:
    return load_params(REPO / "params.yaml", [
        *TINY, f"data.dir={dataset}", f"validate.out_dir={validation}", "train.epochs=1", "train.batch_size=4",
        "train.input_size=32", "train.out_size=32", "train.sample_queries=256", "train.augment.enabled=false",
        "train.report=false", "train.threads=1", f"train.run_dir={tmp / 'run'}", f"train.bundle_dir={tmp / 'model'}",
        f"registry.tracking_uri={tracking_uri}", "registry.experiment=test-quarantine"])


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """(dataset, validation dir, quarantined train id, all train ids): one train label truncated, then validated."""
    from faceparse.data.manifest import read_manifest
    from faceparse.data.synth import write_dataset
    from faceparse.data.validate import validate_dataset

    tmp = tmp_path_factory.mktemp("quarantine")
    ds = write_dataset(tmp / "ds", n=15, size=32, seed=0, occlusion_prob=0.0,
                       splits={"train": 0.6, "val": 0.2, "test": 0.2}, progress=False)
    df = read_manifest(ds)
    train_ids = sorted(df[df["split"] == "train"]["id"])
    bad = train_ids[1]
    label = ds / df[df["id"] == bad]["label"].iloc[0]
    data = label.read_bytes()
    label.write_bytes(data[: len(data) // 3])
    s = validate_dataset(ds, tmp / "validation", progress=False)
    assert list(s["bad"]) == [bad], s["bad"]
    return ds, tmp / "validation", bad, train_ids


def train_params_of_run(uri: str, run_id: str) -> dict:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri).get_run(run_id).data.params


def test_local_training_leaves_out_a_quarantined_train_id(planted, tmp_path):
    from faceparse.train import train

    ds, vdir, bad, train_ids = planted
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    res = train(tiny_params(tmp_path, ds, vdir, uri), progress=False)
    logged = train_params_of_run(uri, res["mlflow_run_id"])
    assert logged["dataset.train_count"] == str(len(train_ids) - 1) and logged["dataset.quarantined"] == "1"
    # control: the same run without the quarantine list reads the truncated label and fails
    with pytest.raises((OSError, SyntaxError, ValueError)):
        train(tiny_params(tmp_path / "control", ds, tmp_path / "no-validation", uri), progress=False)


@pytest.mark.integration
@pytest.mark.slow
def test_pytorchjob_pod_gets_the_quarantine_through_s3_and_skips_the_id(planted, tmp_path, monkeypatch):
    """stage_inputs (what run_pytorchjob uploads) → worker_main (the pod's entry, fresh workdir, inputs only
    from S3) → torchrun training; only the Kubernetes API is left out."""
    from faceparse.launch.staging import stage_inputs
    from faceparse.launch.worker import worker_main
    from faceparse.data.manifest import read_quarantine
    from faceparse.serve.testing import free_ports

    ds, vdir, bad, train_ids = planted
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    launcher_vdir = shutil.copytree(vdir, tmp_path / "launcher-validation")
    params = tiny_params(tmp_path / "launcher", ds, launcher_vdir, uri)
    stage = "s3://faceparse/pytorchjobs/quarantine-test"
    with SeaweedS3(tmp_path / "s3", buckets=["faceparse"]) as s3:
        for k, v in s3.env({}).items():
            monkeypatch.setenv(k, v)
        stage_inputs(params, stage)
        keys = {o["Key"] for o in s3.client().list_objects_v2(Bucket="faceparse", Prefix="pytorchjobs/")["Contents"]}
        assert "pytorchjobs/quarantine-test/validation.tar" in keys, keys
        shutil.rmtree(launcher_vdir)   # as on a cluster: the pod cannot read the launcher's files
        for k, v in {"PET_NNODES": "1", "PET_NODE_RANK": "0", "PET_NPROC_PER_NODE": "1", "RANK": "0",
                     "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_ports(1)[0]), "OMP_NUM_THREADS": "1"}.items():
            monkeypatch.setenv(k, v)
        pod = tmp_path / "pod"
        assert worker_main(stage, workdir=str(pod)) == 0
        keys = {o["Key"] for o in s3.client().list_objects_v2(Bucket="faceparse", Prefix="pytorchjobs/")["Contents"]}
        assert "pytorchjobs/quarantine-test/model.tar" in keys
    pod_params = load_params(pod / "params.yaml")
    assert Path(pod_params["validate"]["out_dir"]) == pod / "validation"
    assert read_quarantine(pod / "validation" / "quarantine.json")["ids"] == [bad]
    # the pod's copy of the dataset still holds the broken label: only the quarantine kept it out
    broken = next((pod / "dataset" / "labels").glob(f"{bad}.*"))
    assert broken.read_bytes() == next((ds / "labels").glob(f"{bad}.*")).read_bytes()
    result = json.loads((pod / "result.json").read_text())
    logged = train_params_of_run(uri, result["mlflow_run_id"])
    assert logged["dataset.train_count"] == str(len(train_ids) - 1) and logged["dataset.quarantined"] == "1"
    assert Path(logged["dataset.dir"]) == pod / "dataset"
