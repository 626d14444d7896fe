"""The cluster launchers' S3 round trip: the inputs go up under ``<staging_uri>/<job name>`` before the
job (:func:`stage_inputs`), the pods fetch them (:func:`fetch_staged`, faceparse.launch.worker), node rank 0
uploads the bundle and the result next to them, and the launcher collects those (:func:`collect_outputs`).
:func:`run_staged` is the launchers' common shape: stage, build, launch and wait, collect."""
from __future__ import annotations

import json
import os
import tarfile
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

from ..config import set_key
from ..data import storage
from .errors import PyTorchJobError, TrainJobError
from .params import write_params
from .settings import new_job_name

# inputs staged for the pods: (params dotted key, archive name). The dataset is required (unless it is on a
# PVC); the others travel when they are local: the validation report (its quarantine list) and the model a
# stage's bundle carries (fisn: the completion bundle; a models:/ URI is left to the pod to resolve).
STAGED_DIRS = (("data.dir", "dataset.tar"), ("validate.out_dir", "validation.tar"),
               ("carry.completion", "carried.tar"))
# single files staged the same way: the carried model's registration record (the version it records)
STAGED_FILES = (("carry.registered_file", "carried-registered.json"),)


def stage_uri(settings: Mapping[str, Any], name: str) -> str:
    base = str(settings["staging_uri"]).rstrip("/")
    if not base.startswith("s3://"):
        raise ValueError(f"cluster settings: staging_uri {base!r} must be an s3:// prefix")
    return f"{base}/{name}"


def tar_dir(src: Path, dst: Path) -> Path:
    with tarfile.open(dst, "w") as tar:
        tar.add(src, arcname=".")
    return dst


def untar(archive: Path, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dst, filter="data")
    return dst


def _param_path(params: Mapping[str, Any], key: str) -> Path | None:
    """The path a dotted params key names, or None when unset (never '.': an empty value is not the cwd)."""
    sec, k = key.split(".")
    value = (params.get(sec) or {}).get(k)
    return Path(str(value)) if value not in (None, "") else None


def stage_inputs(params: dict[str, Any], stage: str, include_dataset: bool = True) -> list[str]:
    """Upload params.yaml, the dataset / validation / carried-model dirs (tar, sha256-checked by fetch) and
    the staged files under ``stage``."""
    uploaded = []
    with tempfile.TemporaryDirectory(prefix="faceparse-stage-") as tmp:
        t = Path(tmp)
        for key, archive in STAGED_DIRS:
            if key == "data.dir" and not include_dataset:
                continue
            src = _param_path(params, key)
            if src is None or not src.is_dir():
                if key == "data.dir":
                    raise FileNotFoundError(f"{key}: dataset directory {src} does not exist")
                continue  # no validation output: no quarantine list; no local carried bundle: nothing to carry
            uploaded.append(storage.upload(tar_dir(src, t / archive), f"{stage}/{archive}", create_bucket=True))
        for key, name in STAGED_FILES:
            src = _param_path(params, key)
            if src is not None and src.is_file():
                uploaded.append(storage.upload(src, f"{stage}/{name}", create_bucket=True))
        uploaded.append(storage.upload(write_params(params, t / "params.yaml"), f"{stage}/params.yaml",
                                       create_bucket=True))
    return uploaded


def fetch_staged(params: dict[str, Any], stage: str, inputs: Path, wd: Path) -> None:
    """In the pod: point the optional staged inputs' params keys at their fetched copies (those not staged
    keep their value: a models:/ URI, or nothing)."""
    for key, archive in STAGED_DIRS[1:]:
        try:
            set_key(params, key, str(untar(storage.fetch(f"{stage}/{archive}", inputs),
                                           wd / archive.removesuffix(".tar"))))
        except FileNotFoundError:
            pass
    for key, name in STAGED_FILES:
        try:
            set_key(params, key, str(storage.fetch(f"{stage}/{name}", inputs)))
        except FileNotFoundError:
            pass


def collect_outputs(stage: str, bundle_dir: str | os.PathLike, what: str = "PyTorchJob") -> dict[str, Any]:
    """Fetch what node rank 0 uploaded: the bundle (into ``bundle_dir``) and the train result."""
    with tempfile.TemporaryDirectory(prefix="faceparse-collect-") as tmp:
        t = Path(tmp)
        try:
            result = json.loads(storage.fetch(f"{stage}/result.json", t).read_text())
            archive = storage.fetch(f"{stage}/model.tar", t)
        except FileNotFoundError as e:
            err = TrainJobError if what == "TrainJob" else PyTorchJobError
            raise err(f"the {what} succeeded but left no outputs: {e}") from None
        untar(archive, Path(bundle_dir))
    result["bundle"] = str(bundle_dir)
    return result


def _bundle_dir(params: Mapping[str, Any]) -> Path:
    return Path(str((params.get("train") or {}).get("bundle_dir") or "artifacts/model"))


def run_staged(params: dict[str, Any], s: Mapping[str, Any], name: str | None, build: Callable[..., dict[str, Any]],
               launch: Callable[..., Any], client: Any, what: str) -> dict[str, Any]:
    """Stage the inputs on S3, build the job (``build(s, name, stage)``), launch it and wait, fetch the
    bundle into ``train.bundle_dir``; the train result. ``what``: the job's kind, for collect_outputs."""
    name = name or new_job_name()
    stage = stage_uri(s, name)
    stage_inputs(params, stage, include_dataset=not s.get("data_pvc"))
    launch(build(s, name, stage), client=client, timeout_s=int(s["timeout_s"]), poll_s=int(s["poll_s"]))
    return collect_outputs(stage, _bundle_dir(params), what)
