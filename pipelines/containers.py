"""Every pipeline step in the project image: kfp.local.DockerRunner against Docker's API, served by podman.

``run_local.py --runner docker`` uses this. kfp's DockerRunner talks to Docker through the ``docker``
package; where ``DOCKER_HOST`` is set (a Docker engine) that engine is used as it is, else podman serves
Docker's API on a private unix socket for the length of the run (``podman system service``, with the
project's containers.conf: runc, no ulimits; docs/containers.md), started and stopped here.

Each step runs in the image its component names (``FACEPARSE_IMAGE`` when the pipeline was imported, else
the published tag; ``make images`` builds both names), with:

- the pipeline root (kfp mounts it) and the MLflow store's folder, when it is a local sqlite file, bind-
  mounted at the same paths, so the host reads every artifact and the registry the steps wrote;
- the caller's uid:gid (the usual ``docker run --user $(id -u):$(id -g)`` for bind mounts: files on the
  host belong to whoever ran the pipeline) and ``HOME=/tmp`` (that uid may have no home in the image);
- the S3 credentials / endpoint and the MLflow tracking URI of the caller's environment, where set — what a
  cluster's steps get from the faceparse-s3 / faceparse-mlflow secrets (pipelines/pipeline.py), and what
  the subprocess runner's steps inherit;
- the host's network (an http MLflow server or an S3 endpoint on 127.0.0.1 stays reachable) and 1 GiB of
  /dev/shm (torchrun's processes and the data loaders share tensors through it; Docker's default is 64 MiB).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import docker
from docker.types import Mount
from kfp import local
from kfp.local import docker_task_handler

from faceparse.tracking import sqlite_path
from pipelines.pipeline import MLFLOW_ENV, S3_ENV

REPO = Path(__file__).resolve().parents[1]
SOCKET_WAIT_S = 30.0


class ContainerEngineError(RuntimeError):
    """No usable container engine, or the step image is missing: says what to run."""


def runner_args(tracking_uri: str) -> dict:
    """DockerRunner's ``containers.run`` arguments for a run tracked at ``tracking_uri`` (absolute: a relative
    path would mean the container's folder; run_local.run makes it absolute)."""
    mounts = []
    db = sqlite_path(tracking_uri)   # a local store: its folder (artifacts beside the database) is mounted
    if db is not None:
        store = db.parent
        store.mkdir(parents=True, exist_ok=True)
        mounts.append(Mount(target=str(store), source=str(store), type="bind"))
    passed = {k: os.environ[k] for k in (*S3_ENV, *MLFLOW_ENV) if k in os.environ}
    return {"user": f"{os.getuid()}:{os.getgid()}", "environment": {"HOME": "/tmp", **passed},
            "network_mode": "host", "shm_size": "1g", "mounts": mounts}


def _podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": os.environ.get("CONTAINERS_CONF",
                                                             str(REPO / "infra" / "containers.conf"))}


def _wait_for_api(url: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + SOCKET_WAIT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ContainerEngineError(f"podman system service exited with {proc.returncode}: "
                                       f"{proc.stderr.read().strip() if proc.stderr else ''}")
        try:
            with closing(docker.DockerClient(base_url=url)) as client:
                client.ping()
            return
        except docker.errors.DockerException:
            time.sleep(0.2)
    raise ContainerEngineError(f"podman's Docker API did not answer on {url} within {SOCKET_WAIT_S:.0f} s")


@contextmanager
def podman_docker_api() -> Iterator[str]:
    """podman serving Docker's API on a private socket; yields its URL, stops the service after."""
    if shutil.which("podman") is None:
        raise ContainerEngineError("podman is not installed and DOCKER_HOST is not set: `make images` installs "
                                   "podman (scripts/install_containers.sh) and builds the step image")
    folder = Path(tempfile.mkdtemp(prefix="faceparse-docker-"))
    url = f"unix://{folder / 'podman.sock'}"
    proc = subprocess.Popen(["podman", "system", "service", "--time=0", url], env=_podman_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_api(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def docker_host() -> Iterator[str]:
    """The user's DOCKER_HOST when set, else podman's API for the length of the block (set as DOCKER_HOST,
    which the docker package, and so kfp, reads)."""
    if os.environ.get("DOCKER_HOST"):
        yield os.environ["DOCKER_HOST"]
        return
    with podman_docker_api() as url:
        os.environ["DOCKER_HOST"] = url
        try:
            yield url
        finally:
            os.environ.pop("DOCKER_HOST", None)


def require_image(image: str) -> None:
    """Refuse before the run when the step image is absent (kfp would try to pull it from a registry)."""
    with closing(docker.from_env()) as client:
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            raise ContainerEngineError(f"the step image {image} is not built here: run `make images` (or set "
                                       "FACEPARSE_IMAGE to an image this engine has)") from None


def run_container(client: docker.DockerClient, image: str, command: list[str], volumes: dict,
                  **run_args) -> int:
    """One step's container: its log streamed, its exit code returned, then removed. Replaces kfp's
    ``run_docker_container`` (kfp 2.17), which starts the container with auto-remove and, when the engine has
    removed it before its exit code is read (podman does, at once), reports success: a failed step passed."""
    image = docker_task_handler.add_latest_tag_if_not_present(image)
    container = client.containers.run(image=image, command=command, detach=True, stdout=True, stderr=True,
                                      volumes=volumes, **run_args)
    try:
        print(f"step container {container.short_id} from image {image!r}")
        for line in container.logs(stream=True, follow=True):
            print(line.decode(), end="")
        return int(container.wait()["StatusCode"])
    finally:
        container.remove(force=True)


@contextmanager
def _exit_codes_kept() -> Iterator[None]:
    original = docker_task_handler.run_docker_container
    docker_task_handler.run_docker_container = run_container
    try:
        yield
    finally:
        docker_task_handler.run_docker_container = original


@contextmanager
def docker_runner(image: str, tracking_uri: str) -> Iterator[local.DockerRunner]:
    """A DockerRunner for a run tracked at ``tracking_uri``, the engine up, ``image`` present, and each step's
    exit code kept (run_container)."""
    with docker_host(), _exit_codes_kept():
        require_image(image)
        yield local.DockerRunner(**runner_args(tracking_uri))
