"""pipelines/containers.py without a container engine: what the DockerRunner is given, and the clear errors
when there is no engine or no runner of that name (the run itself: tests/integration/test_images.py)."""
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pipelines import containers  # noqa: E402
from pipelines.run_local import task_runner  # noqa: E402


def test_a_local_sqlite_store_is_mounted_at_its_own_path(tmp_path, monkeypatch):
    for key in ("AWS_ACCESS_KEY_ID", "FACEPARSE_S3_ENDPOINT", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(key, raising=False)
    args = containers.runner_args(f"sqlite:///{tmp_path}/store/mlflow.db")
    (mount,) = args["mounts"]
    assert mount["Source"] == mount["Target"] == str(tmp_path / "store") and mount["Type"] == "bind"
    assert (tmp_path / "store").is_dir()                     # made before the engine bind-mounts it
    assert args["user"] == f"{os.getuid()}:{os.getgid()}" and args["environment"] == {"HOME": "/tmp"}


def test_the_callers_s3_and_mlflow_settings_reach_the_steps(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("FACEPARSE_S3_ENDPOINT", "http://127.0.0.1:8333")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    monkeypatch.setenv("SOMETHING_ELSE", "not passed")
    env = containers.runner_args(f"sqlite:///{tmp_path}/m.db")["environment"]
    assert env == {"HOME": "/tmp", "AWS_ACCESS_KEY_ID": "key", "FACEPARSE_S3_ENDPOINT": "http://127.0.0.1:8333",
                   "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000"}


def test_a_server_store_needs_no_mount():
    assert containers.runner_args("http://127.0.0.1:5000")["mounts"] == []


def test_no_engine_is_named_with_what_to_run(monkeypatch):
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setattr(containers.shutil, "which", lambda _: None)
    with pytest.raises(containers.ContainerEngineError, match="podman is not installed and DOCKER_HOST is not set"):
        with containers.docker_host():
            pass


def test_a_users_docker_host_is_used_as_it_is(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:2375")
    monkeypatch.setattr(containers.shutil, "which", lambda _: pytest.fail("podman must not be started"))
    with containers.docker_host() as url:
        assert url == "tcp://127.0.0.1:2375"


def test_an_unknown_runner_is_refused(tmp_path):
    with pytest.raises(ValueError, match="runner 'kubernetes': one of subprocess, docker"):
        with task_runner("kubernetes", f"sqlite:///{tmp_path}/m.db"):
            pass
