"""The pipeline run locally with kfp.local (SubprocessRunner(use_venv=False)) end to end on a tiny
synthetic dataset; the validation gate stopping it before training; the prepare step against a real S3
server (SeaweedFS) — a raw archive fetched and ingested, a missing one refused clearly; and the PyTorchJob
launcher's S3 round trip (stage inputs → in-pod worker: fetch, torchrun, upload → collect the bundle)
with only the Kubernetes API stood in for."""
import json
import os
import sys
from pathlib import Path

import pytest
from kfp.dsl import Dataset

REPO = Path(__file__).resolve().parents[2]
for p in (str(REPO), str(Path(__file__).resolve().parent)):
    if p not in sys.path:
        sys.path.insert(0, p)

import components as c  # noqa: E402
from faceparse.launch.dispatch import train_distributed  # noqa: E402
from faceparse.launch.params import component_params  # noqa: E402
from faceparse.launch.worker import worker_main  # noqa: E402
from faceparse.serve.testing import free_port  # noqa: E402
from kfp_runs import SMALL, labelmaps_archive  # noqa: E402
from s3server import SeaweedS3  # noqa: E402

pytestmark = pytest.mark.integration
PARAMS_YAML = (REPO / "params.yaml").read_text()
BUCKET = "faceparse"
STEPS = {"prepare", "validate", "train", "evaluate", "register", "promote", "package"}
# the landmark stage's tasks: the same components, numbered by kfp
LANDMARK_STEPS = {f"{s}-2" for s in ("train", "evaluate", "register", "promote", "package")}
# map completion: composed from the two registered models, then the same path; and the completed dataset
COMPLETION_STEPS = {"compose", "evaluate-3", "register-3", "promote-3", "package-3", "complete"}
# the de-occlusion generator: the train path again, carrying the composed completion model
FISN_STEPS = {"train-3", "evaluate-4", "register-4", "promote-4", "package-4"}
# 3D reconstruction: its own rendered set, validated, then the train path; evaluated through the generator too
RECON3D_STEPS = {"synth3d", "validate-2", "train-4", "evaluate-5", "register-5", "promote-5", "package-5"}


# ------------------------------------------------------------------------------------------ kfp.local runs
@pytest.mark.slow
def test_local_pipeline_runs_every_step_and_registers_a_model(subprocess_pipeline):
    from mlflow.tracking import MlflowClient

    run_dir, outs, uri = subprocess_pipeline
    assert set(outs) == STEPS | LANDMARK_STEPS | COMPLETION_STEPS | FISN_STEPS | RECON3D_STEPS
    assert outs["validate"]["parameters"]["passed"] is True
    assert outs["register-3"]["parameters"]["model_uri"] == "models:/faceparse-completion/1"
    composed = json.loads((run_dir / "compose" / "model" / "bundle.json").read_text())["composes"]
    assert composed["landmarks"]["model_uri"] == "models:/faceparse-landmarks/1"
    assert json.loads((run_dir / "evaluate-3" / "report" / "eval.json").read_text())["stage"] == "completion"
    assert outs["complete"]["parameters"]["Output"] == 24
    # FISN: trained (torchrun) carrying the completion version just registered, gated on its PSNR gain
    carries = json.loads((run_dir / "train-3" / "model" / "bundle.json").read_text())["carries"]["completion"]
    assert carries["model_uri"] == "models:/faceparse-completion/1"
    fisn_eval = json.loads((run_dir / "evaluate-4" / "report" / "eval.json").read_text())
    assert fisn_eval["stage"] == "fisn"
    assert outs["evaluate-4"]["parameters"]["Output"] == pytest.approx(fisn_eval["psnr_gain_db"])
    assert outs["register-4"]["parameters"]["model_uri"] == "models:/faceparse-fisn/1"
    assert outs["promote-4"]["parameters"]["Output"] is True
    assert (run_dir / "package-4" / "mar").stat().st_size > 10_000
    # 3D: trained on its own 8 rendered faces, the occluded test photos also de-occluded by that FISN version
    r3 = json.loads((run_dir / "evaluate-5" / "report" / "eval.json").read_text())
    assert r3["stage"] == "recon3d" and r3["p90_mm_deoccluded"] is not None
    assert r3["deocclude"]["model_uri"] == "models:/faceparse-fisn/1"
    assert outs["evaluate-5"]["parameters"]["Output"] == pytest.approx(r3["p90_mm_clean"])
    assert outs["register-5"]["parameters"]["model_uri"] == "models:/faceparse-recon3d/1"
    assert outs["promote-5"]["parameters"]["Output"] is True and (run_dir / "package-5" / "mar").stat().st_size > 10_000
    # the landmark stage went the same way: its own registry model, promoted (first), packaged
    assert outs["register-2"]["parameters"]["model_uri"] == "models:/faceparse-landmarks/1"
    assert outs["promote-2"]["parameters"]["Output"] is True and 0 < outs["evaluate-2"]["parameters"]["Output"] <= 1
    assert json.loads((run_dir / "evaluate-2" / "report" / "eval.json").read_text())["stage"] == "landmarks"
    assert (run_dir / "package-2" / "mar").stat().st_size > 10_000
    assert outs["register"]["parameters"]["model_uri"] == "models:/faceparse-fpliif/1"
    assert outs["promote"]["parameters"]["Output"] is True
    assert (run_dir / "validate" / "data_docs").stat().st_size > 1000
    assert (run_dir / "train" / "model" / "weights.pt").is_file()
    assert (run_dir / "evaluate" / "report" / "eval.json").is_file()
    metrics = json.loads((run_dir / "evaluate" / "executor_output.json").read_text())["artifacts"]["metrics"]
    assert "test_mean_f1" in metrics["artifacts"][0]["metadata"]
    assert (run_dir / "package" / "mar").stat().st_size > 10_000
    mv = MlflowClient(tracking_uri=uri).get_model_version_by_alias("faceparse-fpliif", "champion")
    assert str(mv.version) == "1"


@pytest.mark.slow
def test_local_pipeline_quality_gate_false_branch_promotes_and_packages_nothing(tmp_path):
    """min_mean_f1=0.99 (a 1-epoch model scores far below): the model is registered as the challenger, but
    the quality gate's false branch runs neither promote nor package — no champion, no .mar."""
    from mlflow.tracking import MlflowClient

    from pipelines.run_local import run, task_outputs

    uri = f"sqlite:///{tmp_path}/mlflow/mlflow.db"
    run_dir = run(SMALL, tmp_path / "root", uri, nproc=1, quick=False, min_mean_f1=0.99, landmarks=False)
    outs = task_outputs(run_dir)
    assert set(outs) == STEPS - {"promote", "package"}
    assert outs["evaluate"]["parameters"]["Output"] < 0.99
    assert outs["register"]["parameters"]["model_uri"] == "models:/faceparse-fpliif/1"
    client = MlflowClient(tracking_uri=uri)
    aliases = {k: str(v) for k, v in client.get_registered_model("faceparse-fpliif").aliases.items()}
    assert aliases == {"challenger": "1"}   # no champion
    assert "promotion.decision" not in client.get_model_version("faceparse-fpliif", "1").tags
    assert not list(run_dir.rglob("*.mar"))


@pytest.mark.slow
def test_local_pipeline_stops_before_training_when_validation_fails(tmp_path):
    from pipelines.run_local import latest_run_dir, run

    root = tmp_path / "root"
    with pytest.raises(RuntimeError, match="Inner task failed: .*validation-failed"):
        run(SMALL + ["validate.min_classes=50"], root, f"sqlite:///{tmp_path}/mlflow.db", quick=False)
    run_dir = latest_run_dir(root, "faceparse")
    tasks = {p.name for p in run_dir.iterdir() if p.is_dir()}
    assert tasks == {"prepare", "validate"}  # no train, nothing downstream (validation-failed has no outputs)
    assert "<html" in (run_dir / "validate" / "data_docs").read_text().lower()
    assert json.loads((run_dir / "validate" / "report" / "summary.json").read_text())["success"] is False


# ------------------------------------------------------------------------------------------ S3 (SeaweedFS)
@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with SeaweedS3(tmp_path_factory.mktemp("seaweedfs"), buckets=[BUCKET]) as server:
        yield server


@pytest.fixture
def s3_env(s3, monkeypatch):
    for k, v in s3.env({}).items():
        monkeypatch.setenv(k, v)
    return s3


@pytest.fixture(scope="module")
def synth_dataset(tmp_path_factory) -> Path:
    ds = Dataset(name="dataset", uri=str(tmp_path_factory.mktemp("synth") / "dataset"))
    c.prepare.python_func(params_yaml=PARAMS_YAML, overrides=SMALL[:2], dataset=ds)
    return Path(ds.path)


def test_prepare_fetches_a_raw_archive_from_s3_and_ingests_it(s3_env, synth_dataset, tmp_path):
    """A labelmaps layout (images/ + labels/) in a .tar.gz on S3 → the canonical dataset."""
    from faceparse.data.storage import upload

    upload(labelmaps_archive(synth_dataset, tmp_path), f"s3://{BUCKET}/raw/faces.tar.gz")

    ds = Dataset(name="dataset", uri=str(tmp_path / "out"))
    c.prepare.python_func(params_yaml=PARAMS_YAML, overrides=["data.source=labelmaps", "data.size=64"],
                          dataset=ds, raw_uri=f"s3://{BUCKET}/raw/faces.tar.gz")
    assert ds.metadata["count"] == 24 and ds.metadata["source"] == "labelmaps"
    assert (Path(ds.path) / "manifest.parquet").is_file()


def test_prepare_names_a_missing_raw_archive_on_s3(s3_env, tmp_path):
    uri = f"s3://{BUCKET}/raw/does-not-exist.tar.gz"
    with pytest.raises(FileNotFoundError, match=f"{uri}: no such object at {s3_env.endpoint}"):
        c.prepare.python_func(params_yaml=PARAMS_YAML, overrides=["data.source=celebamask-hq"],
                              dataset=Dataset(name="d", uri=str(tmp_path / "d")), raw_uri=uri)
    with pytest.raises(FileNotFoundError, match="bucket 'nope' does not exist"):
        c.prepare.python_func(params_yaml=PARAMS_YAML, overrides=["data.source=celebamask-hq"],
                              dataset=Dataset(name="d", uri=str(tmp_path / "d2")), raw_uri="s3://nope/raw.tar")


class PodRunningClient:
    """The TrainingClient stand-in: 'running the job' = running the pod's own entry (worker_main) with the
    environment the Training Operator gives a one-node job."""

    namespace = "faceparse"

    def __init__(self, workdir: Path, monkeypatch):
        self.workdir, self.mp, self.jobs = workdir, monkeypatch, []

    def create_job(self, job=None, namespace=None, **_):
        self.jobs.append(job)

    def wait_for_job_conditions(self, name, namespace=None, callback=None, **_):
        from types import SimpleNamespace

        job = self.jobs[-1]
        container = job.spec.pytorch_replica_specs["Master"].template.spec.containers[0]
        assert container.command[:4] == ["python", "-m", "faceparse.launch", "worker"]
        stage = container.command[container.command.index("--staged") + 1]
        for k, v in {"PET_NNODES": "1", "PET_NODE_RANK": "0", "PET_NPROC_PER_NODE": "1", "RANK": "0",
                     "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}.items():
            self.mp.setenv(k, v)
        rc = worker_main(stage, workdir=str(self.workdir))
        state = "Succeeded" if rc == 0 else "Failed"
        if rc != 0:
            raise RuntimeError(f"PyTorchJob {namespace}/{name} is Failed.")
        return SimpleNamespace(status=SimpleNamespace(conditions=[SimpleNamespace(type=state, reason="")]))


@pytest.mark.slow
def test_pytorchjob_launcher_round_trip_through_s3(s3_env, synth_dataset, tmp_path, monkeypatch):
    params = component_params(PARAMS_YAML, SMALL + [f"registry.tracking_uri=sqlite:///{tmp_path}/mlflow.db"], {
        "data.dir": str(synth_dataset), "validate.out_dir": str(tmp_path / "no-validation"),
        "train.bundle_dir": str(tmp_path / "bundle"), "train.run_dir": str(tmp_path / "run")})
    client = PodRunningClient(tmp_path / "pod", monkeypatch)
    result = train_distributed(params, launcher="pytorchjob", client=client, job_name="faceparse-train-test",
                                    pytorchjob={"staging_uri": f"s3://{BUCKET}/pytorchjobs", "workers": 1,
                                                "gpus_per_worker": 1})
    assert result["bundle"] == str(tmp_path / "bundle") and result["mlflow_run_id"]
    assert (tmp_path / "bundle" / "weights.pt").is_file() and (tmp_path / "bundle" / "bundle.json").is_file()
    keys = {o["Key"] for o in s3_env.client().list_objects_v2(Bucket=BUCKET, Prefix="pytorchjobs/")["Contents"]}
    assert keys == {f"pytorchjobs/faceparse-train-test/{f}" for f in
                    ("params.yaml", "dataset.tar", "model.tar", "result.json")}
    assert os.environ["FACEPARSE_S3_ENDPOINT"] == s3_env.endpoint
