"""A real MLflow tracking server for tests and demos: ``mlflow server`` with a sqlite backend store and
proxied artifacts in a local folder, on a free loopback port.

Usage::

    from mlflow_server import MlflowServer
    with MlflowServer(tmp_path / "mlflow") as server:
        server.uri            # http://127.0.0.1:<port>
        server.env()          # os.environ + MLFLOW_TRACKING_URI for subprocesses

or the pytest fixture factory: ``mlflow_server = make_fixture(scope="module")`` in a test module.

One process only: ``--workers 1`` and ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false`` (otherwise the server
starts a job runner and several consumer processes, ~240 MB each). Readiness = ``GET /health`` answering
200 (~15–30 s on 2 cores: the sqlite store is created and migrated on first start). ``stop()`` sends
SIGTERM to the process group it started (the server runs uvicorn in a child), SIGKILL after 15 s.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from faceparse.tracking import ui_server_command


def free_port() -> int:
    """Outside the ephemeral range: no client socket can take it before the server binds it."""
    from faceparse.serve.testing import free_ports

    return free_ports(1)[0]


class MlflowServer:
    def __init__(self, workdir: str | os.PathLike, port: int | None = None, startup_timeout: float = 120.0):
        self.workdir = Path(workdir)
        self.port = port
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None
        self.log_path = self.workdir / "mlflow-server.log"
        self._log = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def backend_uri(self) -> str:
        return f"sqlite:///{(self.workdir / 'mlflow.db').resolve()}"

    @property
    def artifacts_dir(self) -> Path:
        return self.workdir / "artifacts"

    def env(self, base: dict | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        env["MLFLOW_TRACKING_URI"] = self.uri
        env["MLFLOW_DISABLE_TELEMETRY"] = "true"
        return env

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def healthy(self, timeout: float = 2.0) -> bool:
        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=timeout) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def start(self) -> "MlflowServer":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        cmd, env = ui_server_command(self.backend_uri, self.artifacts_dir.resolve(), port=self.port)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=self.workdir, env=env, start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self.healthy():
                return
            time.sleep(0.5)
        raise TimeoutError(f"mlflow server not healthy on {self.uri} after {self.startup_timeout} s:\n"
                           f"{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            pgid = self.proc.pid  # start_new_session: the server leads its own process group
            try:
                os.killpg(pgid, signal.SIGTERM)
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(pgid, signal.SIGKILL)
                self.proc.wait(timeout=10)
            except ProcessLookupError:
                pass
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "MlflowServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def make_fixture(scope: str = "module"):
    """A pytest fixture yielding a started MlflowServer (stopped at teardown)."""
    import pytest

    @pytest.fixture(scope=scope)
    def mlflow_server(tmp_path_factory):
        with MlflowServer(tmp_path_factory.mktemp("mlflow-server")) as server:
            yield server

    return mlflow_server
