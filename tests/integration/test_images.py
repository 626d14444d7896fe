"""The container images `make images` builds with podman (scripts/build_images.sh, docs/containers.md): the
three exist, run offline (--network none) as a non-root user, the train image imports faceparse + torch, the
serve image has TorchServe + Java 17, the mlflow image the MLflow server; and every image the compiled
pipeline (pipelines/faceparse_pipeline.yaml), the launchers' default and the cluster manifests name is one
of the tags `make images` gives; the serve image answers a real photo through its canary router and TorchServe
(token auth on) and refuses garbage with a 4xx; the mlflow image serves a registry written outside it; the kfp
pipeline's steps run in the train image (kfp.local.DockerRunner on podman's Docker API) with the metrics of the
subprocess run. The train and serve images are rebuilt from the checkout first (their cached layers make that
~10 s after a code change), so the code tested is the checkout's. Skipped, with the reason, where podman is
missing or the images have not been built (`make images` first: ~14 min cold)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import pytest
import requests
import yaml
from mlflow import MlflowClient

from faceparse.data.prepare import synthesize
from faceparse.data.storage import upload
from faceparse.serve import server
from faceparse.serve.testing import free_port, port_overrides, post_prediction, tiny_bundle

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # components/ and pipelines/ live at the repo root
    sys.path.insert(0, str(REPO))

import components as c  # noqa: E402
from kfp import local  # noqa: E402
from kfp_runs import labelmaps_archive, small_run  # noqa: E402  (tests/integration, on sys.path through conftest.py)
from pipelines.containers import docker_runner  # noqa: E402
from s3server import SeaweedS3  # noqa: E402

VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
TAG = os.environ.get("FACEPARSE_c.IMAGE_TAG") or VERSION
c.IMAGES = {name: f"localhost/faceparse-{name}:{TAG}" for name in ("train", "serve", "mlflow")}
ENV = {**os.environ, "CONTAINERS_CONF": str(REPO / "infra" / "containers.conf")}

pytestmark = pytest.mark.slow


def podman(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], env=ENV, capture_output=True, text=True, timeout=timeout)


def run_in(image: str, *cmd: str, entrypoint: str | None = None) -> str:
    args = ["run", "--rm", "--network", "none", "--no-healthcheck"]
    if entrypoint:
        args += ["--entrypoint", entrypoint]
    out = podman(*args, image, *cmd)
    assert out.returncode == 0, f"{image} {cmd}: rc={out.returncode}\n{out.stdout}\n{out.stderr}"
    return out.stdout


@pytest.fixture(scope="module")
def local_tags() -> set[str]:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed: `make images` installs it (scripts/install_containers.sh) and builds the images")
    out = podman("images", "--format", "{{.Repository}}:{{.Tag}}", timeout=60)
    assert out.returncode == 0, out.stderr
    tags = set(out.stdout.split())
    if not tags & set(c.IMAGES.values()):
        pytest.skip(f"the images are not built ({', '.join(c.IMAGES.values())}): run `make images`")
    return tags


@pytest.fixture(scope="module")
def current_images(local_tags) -> dict[str, str]:
    """The train and serve images rebuilt from this checkout (layer cache: only what changed)."""
    started = time.monotonic()
    out = subprocess.run(["bash", "scripts/build_images.sh", "train", "serve"], cwd=REPO, env=ENV,
                         capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, f"make images failed:\n{out.stderr[-4000:]}"
    print(f"train + serve images rebuilt from the checkout in {time.monotonic() - started:.0f} s")
    return c.IMAGES


def test_the_three_images_exist(local_tags):
    missing = [image for image in c.IMAGES.values() if image not in local_tags]
    assert not missing, f"not built: {missing} (`make images`)"


@pytest.mark.parametrize("name", sorted(c.IMAGES))
def test_images_run_as_a_non_root_user(local_tags, name):
    user = podman("image", "inspect", "--format", "{{.Config.User}}", c.IMAGES[name], timeout=60).stdout.strip()
    assert user and user.split(":")[0] not in ("root", "0"), f"{c.IMAGES[name]}: USER {user!r}"
    uid = run_in(c.IMAGES[name], "id", "-u", entrypoint="/usr/bin/env")
    assert int(uid) != 0


def test_train_image_imports_faceparse_offline(local_tags):
    out = run_in(c.IMAGES["train"], "python", "-c",
                 "import faceparse, faceparse.launch.dispatch, kfp, torch, cv2; "
                 "print(faceparse.__version__, torch.__version__, torch.cuda.is_available())")
    version, torch_version, _ = out.split()
    assert version == VERSION
    lock_torch = next(ln for ln in (REPO / "requirements.lock").read_text().splitlines() if ln.startswith("torch=="))
    assert torch_version == lock_torch.split("==")[1]            # the lock's CPU wheel
    assert "Usage" in run_in(c.IMAGES["train"], "faceparse", "--help")


def test_serve_image_has_torchserve_and_java(local_tags):
    out = run_in(c.IMAGES["serve"], "sh", "-c",
                 "python -c 'import faceparse, torch; print(torch.__version__)' && torchserve --version"
                 " && java -version 2>&1")
    assert "TorchServe Version is 0.12" in out
    assert 'version "17.' in out


def test_mlflow_image_has_the_server(local_tags):
    lock_mlflow = next(ln for ln in (REPO / "requirements.lock").read_text().splitlines() if ln.startswith("mlflow=="))
    out = run_in(c.IMAGES["mlflow"], "-c", "mlflow --version && python -c 'import psycopg2, boto3'", entrypoint="sh")
    assert lock_mlflow.split("==")[1] in out


def _images_in(node) -> set[str]:
    """Every value of an `image` key anywhere in a parsed YAML document."""
    found = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "image" and isinstance(value, str):
                found.add(value)
            else:
                found |= _images_in(value)
    elif isinstance(node, list):
        for item in node:
            found |= _images_in(item)
    return found


def test_pipeline_and_manifest_images_are_tags_make_images_gives(local_tags):
    pipeline = _images_in(list(yaml.safe_load_all((REPO / "pipelines" / "faceparse_pipeline.yaml").read_text())))
    assert pipeline, "no image in the compiled pipeline"
    named = {"pipelines/faceparse_pipeline.yaml": pipeline}
    for path in sorted((REPO / "infra" / "k8s").rglob("*.yaml")):
        own = {img for img in _images_in(list(yaml.safe_load_all(path.read_text()))) if img.startswith("ghcr.io/faceparse/")}
        if own:
            named[str(path.relative_to(REPO))] = own
    from faceparse.launch.settings import DEFAULT_IMAGE  # what components/base.py and the launchers use
    named["faceparse.launch.settings.DEFAULT_IMAGE"] = {DEFAULT_IMAGE}
    wrong = {where: sorted(imgs - local_tags) for where, imgs in named.items() if imgs - local_tags}
    assert not wrong, f"images named but not tagged by `make images`: {wrong}"


def _started(name: str, image: str, mount: Path, *cmd: str, entrypoint: str | None = None) -> None:
    """``image`` running detached as ``name`` on the host's network and process namespace (the server's state
    file names loopback ports and pids the host can check), ``mount`` at the same path inside."""
    mount.chmod(0o777)   # the image's non-root user writes there
    podman("rm", "-f", name, timeout=120)
    args = ["run", "-d", "--name", name, "--network", "host", "--pid", "host", "--no-healthcheck",
            "-v", f"{mount}:{mount}"] + (["--entrypoint", entrypoint] if entrypoint else [])
    out = podman(*args, image, *cmd)
    assert out.returncode == 0, out.stderr


def _wait_for(path: Path, name: str, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not (path.is_file() and path.stat().st_size):
        time.sleep(1)
    if not (path.is_file() and path.stat().st_size):
        logs = podman("logs", name, timeout=60)
        pytest.fail(f"{name}: no {path.name} within {timeout_s:.0f} s\n{logs.stdout[-3000:]}\n{logs.stderr[-3000:]}")


@pytest.fixture
def shared_dir():
    """A folder the image's non-root user can reach (pytest's own tmp_path sits under a root-only 0700 folder)."""
    d = Path(tempfile.mkdtemp(prefix="faceparse-image-test-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)   # files the container's user wrote: root (the host side) removes them


@pytest.fixture(scope="module")
def served_in_container(current_images):
    """`faceparse serve start` inside the serve image: TorchServe and the canary router, token auth on."""
    tmp = Path(tempfile.mkdtemp(prefix="faceparse-image-test-"))
    tiny_bundle(tmp / "bundle", input_size=64, stage="parser")
    sets = " ".join(f"--set {o}" for o in port_overrides())
    name = f"faceparse-serve-test-{os.getpid()}"
    _started(name, c.IMAGES["serve"], tmp, "bash", "-c",
             f"faceparse serve start -p /app/params.yaml --model {tmp}/bundle --run-dir {tmp}/run "
             f"--model-store {tmp}/store {sets} --json > {tmp}/start.json 2> {tmp}/start.err && exec sleep infinity")
    try:
        _wait_for(tmp / "start.json", name)
        yield server.read_state(tmp / "run")
        podman("exec", name, "faceparse", "serve", "stop", "--run-dir", str(tmp / "run"), timeout=120)
    finally:
        podman("rm", "-f", name, timeout=120)
        shutil.rmtree(tmp, ignore_errors=True)


def test_serve_image_answers_a_photo_through_its_router_and_refuses_garbage(served_in_container, real_samples):
    st = served_in_container
    photo = (real_samples / "1.jpg").read_bytes()
    r = post_prediction(st, photo)
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/png", r.text[:300]
    assert r.headers.get("X-Model-Version") == "1"          # answered through the router
    bad = post_prediction(st, b"garbage")
    assert bad.status_code == 400 and "unreadable image" in bad.json()["message"]
    assert post_prediction(st, photo, token=None).status_code in (400, 401)      # token auth is on
    assert post_prediction(st, photo).status_code == 200                         # and it still answers


def test_mlflow_image_serves_a_registry_written_outside_it(local_tags, shared_dir):
    """The registry a pipeline wrote (sqlite + artifacts, here by the host's MLflow) read through the image's
    server: the model, its version and the run's metric."""
    store = shared_dir / "mlflow"
    store.mkdir()
    uri = f"sqlite:///{store / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("faceparse", artifact_location=str(store / "artifacts"))
    run = client.create_run(exp)
    client.log_metric(run.info.run_id, "mean_f1", 0.42)
    client.create_registered_model("faceparse-fpliif")
    client.create_model_version("faceparse-fpliif", f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    os.chmod(store / "mlflow.db", 0o666)
    port, name = free_port(), f"faceparse-mlflow-test-{os.getpid()}"
    _started(name, c.IMAGES["mlflow"], store, "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(port),
             "--workers", "1")
    try:
        url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(1)
        served = MlflowClient(url)
        (version,) = served.search_model_versions("name='faceparse-fpliif'")
        assert version.version == "1" and version.run_id == run.info.run_id
        assert served.get_run(run.info.run_id).data.metrics["mean_f1"] == 0.42
    finally:
        podman("rm", "-f", name, timeout=120)


# the kfp pipeline in containers: the parser's path, the landmark model's and the composed completion stage
PIPELINE_TASKS = {"prepare", "validate", "train", "evaluate", "register", "promote", "package",
                  "train-2", "evaluate-2", "register-2", "promote-2", "package-2",
                  "compose", "evaluate-3", "register-3", "promote-3", "package-3", "complete"}


def _numbers(node, path: str = "") -> dict[str, float]:
    """Every number in an evaluation report, by its key path."""
    if isinstance(node, dict):
        return {k: v for key, value in node.items() for k, v in _numbers(value, f"{path}.{key}").items()}
    if isinstance(node, list):
        return {k: v for i, value in enumerate(node) for k, v in _numbers(value, f"{path}[{i}]").items()}
    return {path: node} if isinstance(node, (int, float)) and not isinstance(node, bool) else {}


def _report_numbers(run_dir: Path, task: str) -> dict[str, float]:
    return _numbers(json.loads((run_dir / task / "report" / "eval.json").read_text()))


def test_pipeline_steps_run_in_the_train_image_with_the_subprocess_runs_metrics(current_images, subprocess_pipeline,
                                                                                tmp_path, capfd):
    """prepare → validate → train (torchrun, 2 processes) → evaluate → register → promote → package for the parser
    and the landmark model, then the composed completion stage: every step in the train image (DockerRunner,
    podman's Docker API started and stopped by the run), the same numbers as the subprocess run of every stage
    (conftest.py; these three stages do not depend on the later ones)."""
    capfd.readouterr()
    in_image, outs, uri = small_run("docker", tmp_path / "docker", fisn=False, recon3d=False)
    assert set(outs) == PIPELINE_TASKS
    image = c.IMAGE if ":" in c.IMAGE else f"{c.IMAGE}:latest"
    assert capfd.readouterr().out.count(f"from image {image!r}") == len(PIPELINE_TASKS)   # a line per step
    assert outs["register-3"]["parameters"]["model_uri"] == "models:/faceparse-completion/1"
    client = MlflowClient(tracking_uri=uri)   # the registry the steps wrote, read by the host
    assert str(client.get_model_version_by_alias("faceparse-completion", "champion").version) == "1"
    assert (in_image / "package-3" / "mar").stat().st_size > 10_000
    in_venv = subprocess_pipeline[0]
    for task in ("evaluate", "evaluate-2", "evaluate-3"):
        ours, theirs = (_report_numbers(d, task) for d in (in_image, in_venv))
        assert len(ours) > 10 and ours == theirs, f"{task}: {set(ours.items()) ^ set(theirs.items())}"
    assert 0 < _report_numbers(in_image, "evaluate-2")[".nme"] < 1


def test_a_step_in_the_image_fetches_its_raw_archive_from_s3(current_images, tmp_path, monkeypatch):
    """prepare in the train image, its raw archive on a real S3 server (SeaweedFS on 127.0.0.1): the caller's S3
    endpoint and credentials reach the step, as the faceparse-s3 secret does on a cluster."""
    archive = labelmaps_archive(synthesize(tmp_path / "synth", 64, {"n": 24, "seed": 0}, progress=False), tmp_path)
    with SeaweedS3(tmp_path / "seaweedfs", buckets=["faceparse"]) as s3:
        for key, value in s3.env({}).items():
            monkeypatch.setenv(key, value)
        upload(archive, "s3://faceparse/raw/faces.tar.gz")
        with docker_runner(c.IMAGE, f"sqlite:///{tmp_path}/mlflow/mlflow.db") as runner:
            local.init(runner=runner, pipeline_root=str(tmp_path / "root"), raise_on_error=True)
            task = c.prepare(params_yaml=(REPO / "params.yaml").read_text(), raw_uri="s3://faceparse/raw/faces.tar.gz",
                             overrides=["data.source=labelmaps", "data.size=64"])
    meta = task.outputs["dataset"].metadata
    assert meta["source"] == "labelmaps" and meta["count"] == 24
    assert (Path(task.outputs["dataset"].path) / "manifest.parquet").is_file()


def test_a_step_that_fails_in_its_container_fails_the_run(current_images, tmp_path):
    """The step's exit code reaches kfp (its own runner took a container removed before its exit code was read
    for a success)."""
    with docker_runner(c.IMAGE, f"sqlite:///{tmp_path}/mlflow/mlflow.db") as runner:
        local.init(runner=runner, pipeline_root=str(tmp_path / "root"), raise_on_error=True)
        with pytest.raises(RuntimeError, match="prepare.*FAILURE"):
            c.prepare(params_yaml=(REPO / "params.yaml").read_text(), overrides=["data.source=synth"],
                      raw_uri="s3://faceparse/raw/faces.tar.gz")   # refused: a raw archive for synthetic data
