"""Package a model bundle as a TorchServe archive (.mar) and, optionally, upload the KServe storage layout.

``package(model, params)`` → ``serving/model-store/<name>-v<version>.mar`` built by torch-model-archiver
with ``serving/handler.py``, the bundle (``weights.pt`` + ``bundle.json``) as extra files and a
``model-config.yaml`` (batching and workers from ``params.serve``; handler limits under ``handler:``).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from ..bundle import META, WEIGHTS, read_meta
from ..config import ConfigError, section
from ..data.storage import upload
from ..defaults import fill_defaults
from ..registry import resolve_bundle
from ..schema import Serve
from ..tracking import tracking_uri

REPO = Path(__file__).resolve().parents[3]
HANDLER = REPO / "serving" / "handler.py"
MODEL_STORE = Path("serving") / "model-store"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def serve_section(params: dict[str, Any]) -> dict[str, Any]:
    """``params.serve``, the keys without a default required, the others' defaults filled."""
    sec = section(params, "serve")
    for key in ("inference_port", "management_port", "metrics_port", "batch_size", "max_batch_delay_ms",
                "workers", "max_pixels"):
        if key not in sec:
            raise ConfigError(f"params: missing serve.{key}")
    return fill_defaults(Serve, sec)


def default_model_name(params: dict[str, Any]) -> str:
    return str((params.get("registry") or {}).get("model_name") or "faceparse")


def resolve_model(model: str | os.PathLike, params: dict[str, Any] | None = None,
                  dst: str | os.PathLike | None = None) -> tuple[Path, dict[str, Any]]:
    """A local bundle dir for ``model`` (``models:/name@alias``, ``models:/name/<v>`` via the registry, or a
    bundle directory) and {name, version} (version None for a local directory)."""
    ref = str(model)
    if ref.startswith(("models:/", "runs:/")):
        return resolve_bundle(ref, dst=dst, tracking_uri=tracking_uri(params or {}))
    p = Path(ref)

    read_meta(p)  # FileNotFoundError with a clear message when it is not a bundle
    return p, {"name": None, "version": None, "uri": str(p)}


def model_config_yaml(params: dict[str, Any]) -> dict[str, Any]:
    """TorchServe's per-model config (inside the .mar): batching, workers, and the handler's limits."""
    s = serve_section(params)
    workers = int(s["workers"])
    return {
        "minWorkers": workers,
        "maxWorkers": workers,
        "batchSize": int(s["batch_size"]),
        "maxBatchDelay": int(s["max_batch_delay_ms"]),
        "responseTimeout": int(s["response_timeout_s"]),
        "handler": {
            "max_pixels": int(s["max_pixels"]),
            "min_resolution": 64,
            "max_resolution": 1024,
            "detect": bool(s["detect"]),   # every stage: find and frame photos' faces by default
        },
    }


def _archiver() -> list[str]:
    exe = Path(sys.executable).parent / "torch-model-archiver"
    if exe.is_file():
        return [str(exe)]
    found = shutil.which("torch-model-archiver")
    if not found:
        raise FileNotFoundError("torch-model-archiver not found: install torch-model-archiver into the venv")
    return [found]


def mar_name(name: str, version: str) -> str:
    return f"{name}-v{version}.mar"


def package(model: str | os.PathLike, params: dict[str, Any], model_store: str | os.PathLike | None = None,
            version: str | None = None, name: str | None = None, handler: str | os.PathLike | None = None,
            upload: str | None = None) -> Path:
    """Build ``<model_store>/<name>-v<version>.mar`` from a bundle (URI or directory) and return its path.

    version: given, else the registry version, else "1". name: given, else ``registry.model_name``.
    upload: ``s3://bucket/prefix`` → also write the KServe layout there (see :func:`upload_kserve_layout`)."""
    bundle_dir, info = resolve_model(model, params)
    name = name or default_model_name(params)
    version = str(version or info.get("version") or "1")
    if not _NAME_RE.match(name):
        raise ValueError(f"model name {name!r}: use letters, digits, '-' and '_'")
    if not _VERSION_RE.match(version):
        raise ValueError(f"model version {version!r}: use letters, digits, '.', '-' and '_'")
    handler = Path(handler or HANDLER)
    if not handler.is_file():
        raise FileNotFoundError(f"handler not found: {handler}")

    for f in (WEIGHTS, META):
        if not (Path(bundle_dir) / f).is_file():
            raise FileNotFoundError(f"bundle {bundle_dir} has no {f}")
    store = Path(model_store or MODEL_STORE)
    store.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".pkg-", dir=store) as tmp:
        cfg = Path(tmp) / "model-config.yaml"
        cfg.write_text(yaml.safe_dump(model_config_yaml(params), sort_keys=False))
        meta = json.loads((Path(bundle_dir) / META).read_text())
        meta.setdefault("serving", {})
        meta["serving"].update({"name": name, "version": version, "source": info.get("uri") or str(model)})
        (Path(tmp) / META).write_text(json.dumps(meta, indent=2, default=str))
        cmd = _archiver() + [
            "--model-name", name, "--version", version, "--handler", str(handler),
            "--extra-files", f"{Path(bundle_dir) / WEIGHTS},{Path(tmp) / META}",
            "--config-file", str(cfg), "--export-path", tmp, "--force",
        ]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            raise RuntimeError(f"torch-model-archiver failed ({r.returncode}): {(r.stderr or r.stdout).strip()[-800:]}")
        out = store / mar_name(name, version)
        os.replace(Path(tmp) / f"{name}.mar", out)
    if upload:
        upload_kserve_layout(out, params, upload, name=name, version=version)
    return out


# --- KServe storage layout ---------------------------------------------------------------------------------

def kserve_config_properties(params: dict[str, Any], name: str, version: str, mar: str) -> str:
    """config/config.properties for KServe's TorchServe runtime (storageUri → /mnt/models).

    In the cluster the ingress / mesh authenticates callers, so TorchServe's own token auth is off there and
    the model API stays disabled (the model comes from the snapshot below, never from a request)."""
    s = serve_section(params)
    snapshot = {"name": "startup.cfg", "modelCount": 1, "models": {name: {version: {
        "defaultVersion": True, "marName": mar, "minWorkers": int(s["workers"]), "maxWorkers": int(s["workers"]),
        "batchSize": int(s["batch_size"]), "maxBatchDelay": int(s["max_batch_delay_ms"]), "responseTimeout": 120}}}}
    return "\n".join([
        "inference_address=http://0.0.0.0:8085",
        "management_address=http://0.0.0.0:8085",
        "metrics_address=http://0.0.0.0:8082",
        "grpc_inference_port=7070",
        "grpc_management_port=7071",
        "enable_metrics_api=true",
        "metrics_mode=prometheus",
        "number_of_netty_threads=4",
        "job_queue_size=100",
        "install_py_dep_per_model=false",
        # KServe's runtime picks the request envelope (TS_SERVICE_ENVELOPE=kserve for v1) through env vars
        "enable_envvars_config=true",
        "disable_token_authorization=true",
        "enable_model_api=false",
        "max_request_size=20971520",
        "max_response_size=20971520",
        "model_store=/mnt/models/model-store",
        f"model_snapshot={json.dumps(snapshot, separators=(',', ':'))}",
        "",
    ])


def upload_kserve_layout(mar: str | os.PathLike, params: dict[str, Any], uri: str, name: str | None = None,
                         version: str | None = None) -> dict[str, str]:
    """Write ``<uri>/config/config.properties`` and ``<uri>/model-store/<mar>`` (KServe TorchServe layout)."""
    mar = Path(mar)
    if not uri.startswith("s3://"):
        raise ValueError(f"--upload takes s3://bucket/prefix, got {uri!r}")
    base = uri.rstrip("/")
    if name is None or version is None:
        stem = mar.stem
        name, _, version = stem.rpartition("-v") if "-v" in stem else (stem, "", "1")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "config.properties"
        cfg.write_text(kserve_config_properties(params, name, version, mar.name))
        upload(cfg, f"{base}/config/config.properties")
        upload(mar, f"{base}/model-store/{mar.name}")
    return {"config": f"{base}/config/config.properties", "mar": f"{base}/model-store/{mar.name}"}
