"""components/ called directly (``component.python_func``) with kfp artifact objects in tmp dirs, and
faceparse.launch's launchers (torchrun failure surfacing; the PyTorchJob launch/wait/failure logic against a
stand-in for the kubeflow-training TrainingClient — no cluster here). The TrainJob launcher and the
manifests' validation against the upstream CRDs: tests/code/test_trainjob.py."""
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Metrics, Model

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # components/ and pipelines/ live at the repo root
    sys.path.insert(0, str(REPO))

import components as c  # noqa: E402
from faceparse.launch import worker  # noqa: E402
from faceparse.launch.errors import PyTorchJobError  # noqa: E402
from faceparse.launch.params import component_params  # noqa: E402
from faceparse.launch.pytorchjob import _to_model, build_pytorchjob, launch_pytorchjob  # noqa: E402
from faceparse.launch.staging import stage_inputs  # noqa: E402
from faceparse.launch.torchrun import run_torchrun  # noqa: E402
from faceparse.launch.worker import worker_main  # noqa: E402
from faceparse.config import ConfigError, load_params  # noqa: E402

PARAMS_YAML = (REPO / "params.yaml").read_text()
TINY = ["data.synth.n=12", "data.size=64", "train.input_size=64", "train.out_size=64", "evaluate.out_sizes=[32,64]"]


def art(cls, root: Path, name: str):
    return cls(name=name, uri=str(root / name))


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("components")


@pytest.fixture(scope="module")
def dataset(work) -> Dataset:
    ds = art(Dataset, work, "dataset")
    c.prepare.python_func(params_yaml=PARAMS_YAML, overrides=TINY, dataset=ds)
    return ds


@pytest.fixture(scope="module")
def validated(work, dataset):
    docs, report = art(HTML, work, "data_docs.html"), art(Artifact, work, "validation")
    out = c.validate.python_func(params_yaml=PARAMS_YAML, overrides=TINY, dataset=dataset, data_docs=docs,
                                 report=report)
    return out, docs, report


# ------------------------------------------------------------------------------------------ params
def test_component_params_reads_the_yaml_text_through_load_params():
    p = component_params(PARAMS_YAML, ["train.epochs=3", "model.overrides.norm=batch"],
                              {"data.dir": "/tmp/a b: #c", "evaluate.metrics_file": Path("/x/y.json")})
    assert p["train"]["epochs"] == 3 and p["model"]["overrides"] == {"norm": "batch"}
    assert p["data"]["dir"] == "/tmp/a b: #c"  # artifact paths are set verbatim, never YAML-parsed
    assert p["evaluate"]["metrics_file"] == "/x/y.json"
    with pytest.raises(ConfigError, match="section.key=value"):
        component_params(PARAMS_YAML, ["train.epochs"])
    with pytest.raises(ConfigError, match="not valid YAML"):
        component_params("a: [", [])


# ------------------------------------------------------------------------------------------ prepare / validate
def test_prepare_writes_the_canonical_dataset_into_the_artifact(dataset):
    root = Path(dataset.path)
    assert (root / "manifest.parquet").is_file() and (root / "dataset.json").is_file()
    assert dataset.metadata == {"label_table": "celebamask-hq", "size": 64, "source": "synth", "count": 12}


def test_prepare_refuses_a_raw_archive_for_the_synthesiser(work):
    with pytest.raises(ValueError, match="data.source is 'synth'"):
        c.prepare.python_func(params_yaml=PARAMS_YAML, overrides=TINY, dataset=art(Dataset, work, "nope"),
                              raw_uri="s3://faceparse/raw/x.tar.gz")


def test_validate_passes_and_produces_data_docs(validated):
    out, docs, report = validated
    assert out.passed is True and out.summary.startswith("0 of 12 samples bad")
    html = Path(docs.path).read_text()
    assert "<html" in html.lower() and "faceparse" in html
    for f in ("summary.json", "quarantine.json", "metrics.json", "data_docs/index.html"):
        assert (Path(report.path) / f).is_file(), f
    assert report.metadata["success"] is True and report.metadata["n_samples"] == 12


def test_validation_failure_still_produces_data_docs(work, dataset):
    """A failing gate is an output (passed=False + the Data Docs), not an exception: the pipeline branches
    on it, so the HTML artifact survives on a cluster too. allow_quarantine cannot pass a dataset whose
    splits are empty."""
    docs, report = art(HTML, work, "bad_docs.html"), art(Artifact, work, "bad_validation")
    out = c.validate.python_func(params_yaml=PARAMS_YAML, overrides=TINY + ["validate.min_classes=50"],
                                 dataset=dataset, data_docs=docs, report=report, allow_quarantine=True)
    assert out.passed is False
    assert out.summary.startswith("12 of 12 samples bad") and "is empty" in out.summary
    assert Path(docs.path).stat().st_size > 1000 and report.metadata["success"] is False
    with pytest.raises(RuntimeError, match="dataset validation failed, training skipped: 12 of 12"):
        c.validation_failed.python_func(summary=out.summary, data_docs=docs)


# ------------------------------------------------------------------------------------------ train / launchers
def test_train_rejects_an_unknown_launcher(work, dataset, validated):
    with pytest.raises(ValueError, match=r"launcher 'slurm' is not one of \['local', 'pytorchjob', 'trainjob'\]"):
        c.train.python_func(params_yaml=PARAMS_YAML, overrides=TINY, dataset=dataset, validation=validated[2],
                            model=art(Model, work, "m"), launcher="slurm")


def test_torchrun_failure_is_surfaced_with_the_log_tail(tmp_path):
    params = component_params(PARAMS_YAML, TINY, {"data.dir": str(tmp_path / "no-such-dataset"),
                                                       "train.bundle_dir": str(tmp_path / "model"),
                                                       "train.run_dir": str(tmp_path / "run")})
    with pytest.raises(RuntimeError, match=r"torchrun \(1 processes\) exited with 1") as e:
        run_torchrun(params, nproc=1, workdir=tmp_path / "wd")
    assert "no-such-dataset" in str(e.value)  # the rank's own error, from the log tail


def _bucket_in(root: Path, monkeypatch) -> None:
    """faceparse.data.storage's upload / fetch over a local directory (same names, same missing-object error)."""
    import shutil

    import faceparse.data.storage as storage

    def upload(path, uri, create_bucket=False):
        dst = root / uri.removeprefix("s3://")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dst)
        return uri

    def fetch(uri, dest_dir):
        src = root / uri.removeprefix("s3://")
        if not src.is_file():
            raise FileNotFoundError(f"{uri}: no such object")
        Path(dest_dir).mkdir(parents=True, exist_ok=True)
        return Path(shutil.copyfile(src, Path(dest_dir) / src.name))

    monkeypatch.setattr(storage, "upload", upload)
    monkeypatch.setattr(storage, "fetch", fetch)


def test_cluster_launchers_stage_the_carried_model_for_the_pod(tmp_path, monkeypatch):
    """What the fisn train step carries (the composed completion bundle, its registration record) travels
    to the PyTorchJob / TrainJob pod beside the dataset, and the pod's params point at its own copies; a
    stage that carries nothing stages nothing more (an unset key is not the working directory)."""
    _bucket_in(tmp_path / "s3", monkeypatch)
    ds, carried, reg = tmp_path / "dataset", tmp_path / "completion", tmp_path / "registered.json"
    for d, f in ((ds, "manifest.parquet"), (carried, "bundle.json")):
        d.mkdir()
        (d / f).write_text("{}")
    reg.write_text('{"version": "3"}')
    paths = {"data.dir": ds, "validate.out_dir": tmp_path / "no-validation"}
    fisn = component_params(PARAMS_YAML, [], {**paths, "carry.completion": carried,
                                                   "carry.registered_file": reg}, stage="fisn")
    staged = stage_inputs(fisn, "s3://b/fisn-job")
    assert sorted(u.rsplit("/", 1)[1] for u in staged) == ["carried-registered.json", "carried.tar",
                                                           "dataset.tar", "params.yaml"]
    parser = component_params(PARAMS_YAML, [], paths)
    assert sorted(u.rsplit("/", 1)[1] for u in stage_inputs(parser, "s3://b/parser-job")) == [
        "dataset.tar", "params.yaml"]

    monkeypatch.setattr(worker, "tee", lambda cmd, env: (0, ""))
    monkeypatch.setenv("PET_NODE_RANK", "1")   # a worker node: trains, uploads nothing
    pod = tmp_path / "pod"
    assert worker_main("s3://b/fisn-job", workdir=str(pod)) == 0
    carry = load_params(pod / "params.yaml")["carry"]
    assert carry["completion"] == str(pod / "carried") and (pod / "carried" / "bundle.json").is_file()
    assert Path(carry["registered_file"]).read_text() == '{"version": "3"}'


class FakeTrainingClient:
    """Stands in for kubeflow.training.TrainingClient: same methods and failure behaviour."""

    def __init__(self, outcome: str = "Succeeded", namespace: str = "team-a"):
        self.namespace, self.outcome = namespace, outcome
        self.created, self.deleted, self.waited = [], [], []

    def create_job(self, job=None, namespace=None, **_):
        if self.outcome == "refused":
            raise RuntimeError(f"Failed to create PyTorchJob: {namespace}/{job.metadata.name}. Error: (403) Forbidden")
        self.created.append((job, namespace))

    def _job(self, kind):
        cond = SimpleNamespace(type=kind, reason="PyTorchJobFailed",
                               message="PyTorchJob faceparse-train-x is failed because 1 Master replica(s) failed.")
        return SimpleNamespace(status=SimpleNamespace(conditions=[SimpleNamespace(type="Created", reason=""), cond]))

    def wait_for_job_conditions(self, name, namespace=None, job_kind=None, expected_conditions=(), wait_timeout=0,
                                polling_interval=0, callback=None, **_):
        self.waited.append((name, namespace, expected_conditions, wait_timeout, polling_interval))
        if self.outcome == "Succeeded":
            job = self._job("Succeeded")
            callback(job)
            return job
        if self.outcome == "timeout":
            raise TimeoutError(f"Timeout waiting for PyTorchJob: {namespace}/{name}")
        callback(self._job("Failed"))
        raise RuntimeError(f"PyTorchJob {namespace}/{name} is Failed.")

    def get_job(self, name, namespace=None, job_kind=None, **_):
        return self._job("Failed")

    def get_job_logs(self, name, namespace=None, is_master=True, **_):
        return {f"{name}-master-0": "epoch 1\nRuntimeError: CUDA out of memory"}, {}

    def delete_job(self, name, namespace=None, job_kind=None, **_):
        self.deleted.append((name, namespace))


def _job(**settings):
    return build_pytorchjob({"workers": 2, "gpus_per_worker": 4, **settings}, "faceparse-train-x",
                                 "s3://faceparse/pytorchjobs/faceparse-train-x")


def test_pytorchjob_is_created_as_the_sdk_model_and_waited_for():
    from kubernetes.client import ApiClient

    client = FakeTrainingClient("Succeeded")
    job = _job()
    launch_pytorchjob(job, client=client, timeout_s=600, poll_s=10)
    (model, ns), = client.created
    assert ns == "team-a"  # the client's namespace (the pipeline pod's own) when the settings name none
    assert type(model).__name__ == "KubeflowOrgV1PyTorchJob"
    sent = ApiClient().sanitize_for_serialization(model)  # what the Kubernetes client puts on the wire
    assert sent == {**job, "metadata": {**job["metadata"], "namespace": "team-a"}}
    assert client.waited == [("faceparse-train-x", "team-a", {"Succeeded"}, 600, 10)]


def test_pytorchjob_model_is_built_strictly_from_the_sdk_models():
    """The SDK's own models, field by field (no deserializer that silently drops what it does not know):
    a field the model lacks, or a value of the wrong type, refuses the job before anything is sent."""
    model = _to_model(_job(data_pvc="faceparse-data"))
    master = model.spec.pytorch_replica_specs["Master"]
    assert type(master).__name__ == "KubeflowOrgV1ReplicaSpec" and master.replicas == 1
    container = master.template.spec.containers[0]
    assert type(container).__name__ == "V1Container" and container.name == "pytorch"
    assert container.volume_mounts[-1].mount_path == "/mnt/data" and container.env_from[0].secret_ref.name
    assert master.template.spec.volumes[-1].persistent_volume_claim.claim_name == "faceparse-data"

    bad = _job()
    bad["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["imagee"] = "x"
    client = FakeTrainingClient("Succeeded")
    with pytest.raises(PyTorchJobError, match=r"could not be created: .*containers\[0\]: V1Container has "
                                                   r"no field\(s\) \['imagee'\]"):
        launch_pytorchjob(bad, client=client)
    assert client.created == []
    wrong_type = _job()
    wrong_type["spec"]["pytorchReplicaSpecs"]["Master"]["replicas"] = "1"
    with pytest.raises(ValueError, match=r"Master.replicas: expected int, got '1'"):
        _to_model(wrong_type)


def test_pytorchjob_failure_names_the_job_and_shows_the_master_log():
    with pytest.raises(PyTorchJobError) as e:
        launch_pytorchjob(_job(namespace="ml"), client=FakeTrainingClient("Failed"))
    msg = str(e.value)
    assert msg.startswith("PyTorchJob ml/faceparse-train-x failed (Failed: PyTorchJobFailed")
    assert "1 Master replica(s) failed" in msg and "CUDA out of memory" in msg


def test_pytorchjob_timeout_deletes_the_job():
    client = FakeTrainingClient("timeout")
    with pytest.raises(PyTorchJobError, match="did not succeed within 60 s; deleted it"):
        launch_pytorchjob(_job(), client=client, timeout_s=60, poll_s=5)
    assert client.deleted == [("faceparse-train-x", "team-a")]


def test_pytorchjob_creation_refused_is_clear():
    with pytest.raises(PyTorchJobError, match="team-a/faceparse-train-x: could not be created: .*403"):
        launch_pytorchjob(_job(), client=FakeTrainingClient("refused"))


# ------------------------------------------------------------------------------------------ downstream steps
def test_evaluate_register_promote_package_components(work, dataset, validated, tmp_path):
    """The post-training components on an untrained tiny bundle with a throw-away MLflow store."""
    from faceparse.bundle import save_bundle
    from faceparse.config import model_config
    from faceparse.labels import get_table
    from faceparse.models import build_model

    overrides = TINY + [f"registry.tracking_uri=sqlite:///{tmp_path}/mlflow.db"]
    params = component_params(PARAMS_YAML, overrides)
    n = get_table("celebamask-hq").num_classes
    model = art(Model, tmp_path, "model")
    save_bundle(model.path, build_model(model_config(params), n),
                {"model_config": model_config(params), "num_classes": n, "label_table": "celebamask-hq",
                 "input_size": 64})

    metrics, confusion, report = (art(Metrics, tmp_path, "metrics"), art(ClassificationMetrics, tmp_path, "cm"),
                                  art(Artifact, tmp_path, "eval"))
    mean_f1 = c.evaluate.python_func(params_yaml=PARAMS_YAML, overrides=overrides, dataset=dataset,
                                     validation=validated[2], model=model, metrics=metrics, confusion=confusion,
                                     report=report)
    assert 0.0 <= mean_f1 <= 1.0 and metrics.metadata["test_mean_f1"] == pytest.approx(mean_f1)
    cm = confusion.metadata["confusionMatrix"]
    assert len(cm["annotationSpecs"]) == n and len(cm["rows"]) == n
    assert sum(map(sum, (r["row"] for r in cm["rows"]))) > 0
    assert (Path(report.path) / "eval.json").is_file() and (Path(report.path) / "table.md").is_file()
    # gate_metric: the pipeline gates a stage on another number of its evaluation (fisn: psnr_gain_db)
    again = dict(params_yaml=PARAMS_YAML, overrides=overrides, dataset=dataset, validation=validated[2], model=model,
                 metrics=art(Metrics, tmp_path, "m2"), confusion=art(ClassificationMetrics, tmp_path, "cm2"))
    miou = c.evaluate.python_func(**again, report=art(Artifact, tmp_path, "eval2"), gate_metric="miou")
    assert miou == pytest.approx(json.loads((Path(report.path) / "eval.json").read_text())["miou"])
    with pytest.raises(ValueError, match=r"gate_metric 'psnr_gain_db' is not a number in the parser evaluation "
                                         r"\(None\); its numbers: \[.*'mean_f1'"):
        c.evaluate.python_func(**again, report=art(Artifact, tmp_path, "eval3"), gate_metric="psnr_gain_db")

    registered = art(Artifact, tmp_path, "registered.json")
    reg = c.register.python_func(params_yaml=PARAMS_YAML, overrides=overrides, model=model, eval_report=report,
                                 registered=registered)
    assert (reg.name, reg.version, reg.model_uri) == ("faceparse-fpliif", "1", "models:/faceparse-fpliif/1")
    assert Path(registered.path).is_file() and registered.metadata["alias"] == "challenger"

    # untrained, it does not clear the parser's floor (3x the mean F1 of answering skin everywhere): not promoted,
    # first model or not; with the floor off (registry.floor: null) it is
    assert c.promote.python_func(params_yaml=PARAMS_YAML, overrides=overrides, challenger_version="1") is False
    assert c.promote.python_func(params_yaml=PARAMS_YAML, overrides=overrides + ["registry.floor=null"],
                                 challenger_version="1") is True

    mar = art(Model, tmp_path, "model.mar")
    name = c.package.python_func(params_yaml=PARAMS_YAML, overrides=overrides, model_uri=reg.model_uri, mar=mar)
    assert name == "faceparse-fpliif-v1.mar" and Path(mar.path).stat().st_size > 10_000
