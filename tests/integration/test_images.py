"""The container images `make images` builds with podman (scripts/build_images.sh, docs/containers.md): the
three exist, run offline (--network none) as a non-root user, the train image imports faceparse + torch, the
serve image has TorchServe + Java 17, the mlflow image the MLflow server; and every image the compiled
pipeline (pipelines/faceparse_pipeline.yaml), the launchers' default and the cluster manifests name is one
of the tags `make images` gives. Skipped, with the reason, where podman is missing or the images have not
been built (`make images` first: ~14 min cold)."""
from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
TAG = os.environ.get("FACEPARSE_IMAGE_TAG") or VERSION
IMAGES = {name: f"localhost/faceparse-{name}:{TAG}" for name in ("train", "serve", "mlflow")}
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
    if not tags & set(IMAGES.values()):
        pytest.skip(f"the images are not built ({', '.join(IMAGES.values())}): run `make images`")
    return tags


def test_the_three_images_exist(local_tags):
    missing = [image for image in IMAGES.values() if image not in local_tags]
    assert not missing, f"not built: {missing} (`make images`)"


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_images_run_as_a_non_root_user(local_tags, name):
    user = podman("image", "inspect", "--format", "{{.Config.User}}", IMAGES[name], timeout=60).stdout.strip()
    assert user and user.split(":")[0] not in ("root", "0"), f"{IMAGES[name]}: USER {user!r}"
    uid = run_in(IMAGES[name], "id", "-u", entrypoint="/usr/bin/env")
    assert int(uid) != 0


def test_train_image_imports_faceparse_offline(local_tags):
    out = run_in(IMAGES["train"], "python", "-c",
                 "import faceparse, faceparse.launch.dispatch, kfp, torch, cv2; "
                 "print(faceparse.__version__, torch.__version__, torch.cuda.is_available())")
    version, torch_version, _ = out.split()
    assert version == VERSION
    lock_torch = next(ln for ln in (REPO / "requirements.lock").read_text().splitlines() if ln.startswith("torch=="))
    assert torch_version == lock_torch.split("==")[1]            # the lock's CPU wheel
    assert "Usage" in run_in(IMAGES["train"], "faceparse", "--help")


def test_serve_image_has_torchserve_and_java(local_tags):
    out = run_in(IMAGES["serve"], "sh", "-c",
                 "python -c 'import faceparse, torch; print(torch.__version__)' && torchserve --version"
                 " && java -version 2>&1")
    assert "TorchServe Version is 0.12" in out
    assert 'version "17.' in out


def test_mlflow_image_has_the_server(local_tags):
    lock_mlflow = next(ln for ln in (REPO / "requirements.lock").read_text().splitlines() if ln.startswith("mlflow=="))
    out = run_in(IMAGES["mlflow"], "-c", "mlflow --version && python -c 'import psycopg2, boto3'", entrypoint="sh")
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
