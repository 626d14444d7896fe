"""`faceparse ui mlflow`: the MLflow UI over the project's embedded store, as one lean server."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests
from typer.testing import CliRunner

from faceparse.cli import app
from faceparse.serve.testing import free_ports

pytestmark = pytest.mark.integration


def test_ui_mlflow_is_one_server_process_over_the_project_store(tmp_path):
    port = free_ports(1)[0]
    faceparse = Path(sys.executable).parent / "faceparse"
    proc = subprocess.Popen([str(faceparse), "ui", "mlflow", "--port", str(port)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, ok = time.monotonic() + 150, False
        while time.monotonic() < deadline and proc.poll() is None and not ok:
            try:
                ok = requests.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
            except requests.ConnectionError:
                time.sleep(1)
        assert ok, proc.stdout.read().decode(errors="replace")[-2000:] if proc.poll() is not None else "no /health"
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        cmds = [" ".join(p.cmdline()) for p in tree]
        # the faceparse process became the server (exec); uvicorn's worker is its only child — no job runner
        assert "mlflow server" in cmds[0] and len(tree) <= 2, cmds
        assert not [c for c in cmds if "huey" in c or "job" in c.lower()], cmds
        assert (tmp_path / "runs" / "mlflow" / "mlflow.db").is_file()   # the project's embedded store
        r = requests.post(f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search", json={"max_results": 5},
                          timeout=10)
        assert r.status_code == 200, r.text
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def test_ui_mlflow_refuses_a_store_that_is_a_server(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)   # no params.yaml here: the store comes from the environment
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    r = CliRunner().invoke(app, ["ui", "mlflow"])
    assert r.exit_code == 2 and "server already" in r.output and "http://127.0.0.1:1" in r.output, r.output
