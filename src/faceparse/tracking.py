"""MLflow tracking: the ONE place that resolves where runs go.

Tracking URI, in order: ``registry.tracking_uri`` in params, ``$MLFLOW_TRACKING_URI``, else the embedded
store ``sqlite:///<cwd>/runs/mlflow/mlflow.db`` with artifacts under ``<cwd>/runs/mlflow/artifacts``
(relative paths resolve against the current working directory, i.e. the repo root for the CLI / DVC).

Logging goes through :class:`Tracker`, a thin wrapper over ``MlflowClient`` bound to one run, so library
code never touches MLflow's process-global "active run" (tests and the registry step can run in the same
process without interfering). :class:`NullTracker` is the stand-in on non-zero DDP ranks.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping

# Imports inside functions here: this module is on the start-up path of the command line, the page or the
# router, so heavy libraries load on first use (tests/code/test_light_imports.py)

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

EMBEDDED_DIR = Path("runs") / "mlflow"
EMBEDDED_DB = "mlflow.db"
EMBEDDED_ARTIFACTS = "artifacts"
DEFAULT_EXPERIMENT = "faceparse"
MAX_PARAM_LEN = 6000  # MLflow's limit on a param value


def _registry(params: Mapping[str, Any] | None) -> Mapping[str, Any]:
    reg = (params or {}).get("registry") or {}
    return reg if isinstance(reg, Mapping) else {}


def embedded_dir() -> Path:
    return (Path.cwd() / EMBEDDED_DIR).resolve()


def tracking_uri(params: Mapping[str, Any] | None = None) -> str:
    """registry.tracking_uri › $MLFLOW_TRACKING_URI › embedded sqlite in ./runs/mlflow (absolute path).

    A relative ``sqlite:///relative/path.db`` or a bare directory / file path given in params is made
    absolute against the current working directory, so the same URI works from any later chdir."""
    uri = _registry(params).get("tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        d = embedded_dir()
        d.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{d / EMBEDDED_DB}"
    uri = str(uri)
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        path = Path(uri[len("sqlite:///"):])
        if not path.is_absolute():
            path = (Path.cwd() / path).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    if "://" not in uri:  # a plain path: a file store directory
        return Path(uri).resolve().as_uri()
    return uri


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (its query string dropped), else None (an in-memory database too)."""
    if not uri.startswith("sqlite:///"):
        return None
    rest = uri[len("sqlite:///"):]
    return Path(rest.split("?", 1)[0]) if rest and rest != ":memory:" else None


def artifact_location(uri: str) -> str | None:
    """Artifact root for NEW experiments: runs/mlflow/artifacts beside a local sqlite store; None (the
    server's / store's default) for any other URI."""
    db = sqlite_path(uri)
    if db is not None:
        root = db.parent / EMBEDDED_ARTIFACTS
        root.mkdir(parents=True, exist_ok=True)
        return root.as_uri()
    return None


def experiment_name(params: Mapping[str, Any] | None = None) -> str:
    return str(_registry(params).get("experiment") or DEFAULT_EXPERIMENT)


def client(params: Mapping[str, Any] | None = None):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri(params))


def get_or_create_experiment(params: Mapping[str, Any] | None = None, name: str | None = None) -> str:
    """The experiment id for ``registry.experiment`` (created on first use, artifacts in the embedded
    artifact root when the store is a local sqlite file)."""
    from mlflow.exceptions import MlflowException

    uri = tracking_uri(params)
    c = client(params)
    name = name or experiment_name(params)
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return c.create_experiment(name, artifact_location=artifact_location(uri))
    except MlflowException:  # created concurrently by another process
        exp = c.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def _str(v: Any) -> str:
    s = str(v)
    return s if len(s) <= MAX_PARAM_LEN else s[: MAX_PARAM_LEN - 3] + "..."


class NullTracker:
    """Same interface, does nothing (non-zero ranks, or tracking switched off)."""

    run_id: str | None = None
    artifact_uri: str | None = None

    def log_params(self, params: Mapping[str, Any]) -> None: ...
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None: ...
    def set_tags(self, tags: Mapping[str, Any]) -> None: ...
    def log_artifact(self, path, artifact_path: str | None = None) -> None: ...
    def log_artifacts(self, path, artifact_path: str | None = None) -> None: ...
    def end(self, status: str = "FINISHED") -> None: ...


class Tracker:
    """One MLflow run, logged through an explicit client (no global active run)."""

    def __init__(self, client, run_id: str):
        self.client = client
        self.run_id = run_id
        self.artifact_uri = client.get_run(run_id).info.artifact_uri

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params; keys the run already has are skipped (MLflow params are immutable — on resume a
        changed value is recorded as tag ``resumed.<key>`` instead of failing)."""
        from mlflow.entities import Param

        existing = self.client.get_run(self.run_id).data.params
        new, changed = [], {}
        for k, v in params.items():
            s = _str(v)
            if k not in existing:
                new.append(Param(k, s))
            elif existing[k] != s:
                changed[f"resumed.{k}"] = s
        for i in range(0, len(new), 100):
            self.client.log_batch(self.run_id, params=new[i:i + 100])
        if changed:
            self.set_tags(changed)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        import time

        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        ms = [Metric(k, float(v), ts, int(step or 0)) for k, v in metrics.items()
              if v is not None and not (isinstance(v, float) and math.isnan(v))]
        for i in range(0, len(ms), 500):
            self.client.log_batch(self.run_id, metrics=ms[i:i + 500])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        if tags:
            self.client.log_batch(self.run_id, tags=[RunTag(k, _str(v)) for k, v in tags.items()])

    def log_artifact(self, path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_artifacts(self, path, artifact_path: str | None = None) -> None:
        self.client.log_artifacts(self.run_id, str(path), artifact_path)

    def end(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status)


def start_run(params: Mapping[str, Any] | None = None, run_name: str | None = None,
              tags: Mapping[str, Any] | None = None, resume_run_id: str | None = None) -> Tracker:
    """A new run in ``registry.experiment`` (or the run ``resume_run_id`` reopened, when it exists in
    this store), as a :class:`Tracker`."""
    from mlflow.exceptions import MlflowException

    c = client(params)
    if resume_run_id:
        try:
            c.get_run(resume_run_id)
            c.update_run(resume_run_id, status="RUNNING")
            tr = Tracker(c, resume_run_id)
            if tags:
                tr.set_tags(tags)
            return tr
        except MlflowException:
            pass  # not in this store (another tracking URI): start a fresh run
    exp_id = get_or_create_experiment(params)
    run = c.create_run(exp_id, run_name=run_name, tags={k: _str(v) for k, v in (tags or {}).items()})
    return Tracker(c, run.info.run_id)


def ui_server_command(backend_uri: str, artifacts: str | os.PathLike | None, host: str = "127.0.0.1",
                      port: int = 5000) -> tuple[list[str], dict[str, str]]:
    """(argv, env) of a lean ``mlflow server``: one worker, and no job runner — by default MLflow 3 also
    starts a job-execution service with several consumer processes (~240 MB each) that this project
    never uses. Serves the UI, the tracking API and (with ``artifacts``) proxied artifacts."""
    import shutil
    import sys

    exe = Path(sys.executable).parent / "mlflow"
    argv = [str(exe)] if exe.is_file() else [shutil.which("mlflow") or "mlflow"]
    argv += ["server", "--backend-store-uri", backend_uri, "--host", host, "--port", str(int(port)),
             "--workers", "1"]
    if artifacts is not None:
        argv += ["--artifacts-destination", str(artifacts)]
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", MLFLOW_DISABLE_TELEMETRY="true",
               DO_NOT_TRACK="1")
    env.pop("MLFLOW_TRACKING_URI", None)
    return argv, env


def ui_command(params: Mapping[str, Any] | None, host: str = "127.0.0.1",
               port: int = 5000) -> tuple[list[str], dict[str, str]]:
    """The MLflow UI over this project's tracking store (``tracking_uri``). A store that is already a
    server (http[s]://) has its own UI: ValueError naming it."""
    uri = tracking_uri(params)
    if uri.startswith(("http://", "https://", "databricks")):
        raise ValueError(f"the tracking store is a server already: open {uri} in a browser")
    root = artifact_location(uri)
    return ui_server_command(uri, Path(root[len("file://"):]) if root else None, host, port)
