"""The `evaluate` step: a model bundle of any stage scored on a test split (quarantined ids left out).

The stage computes its metrics (``Stage.evaluate_split``: parser — faceparse.stages.parser.evaluate, the
paper's metrics and multi-resolution table; landmarks — NME and friends) with its primary metric at the
top level; this module resolves the bundle and the split, writes ``evaluate.metrics_file`` (the DVC
metrics JSON, with the bundle / dataset hashes that `register` checks), asks the stage for its reports
and logs the test metrics to the bundle's MLflow training run.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .bundle import WEIGHTS, load_bundle
from .config import ConfigError, section
from .data.manifest import load_split
from .hashing import sha256_file
from .log import console
from .registry import client_for, resolve_bundle
from .stages import bundle_stage, for_stage, get_stage
from .tracking import tracking_uri


def clean(value: Any) -> Any:
    """NaN / inf → None (JSON has no NaN; DVC and MLflow tags choke on it), numpy scalars → Python."""
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return None if math.isnan(v) or math.isinf(v) else v
    if isinstance(value, np.integer):
        return int(value)
    return value


def pick_device(name: str | None = None):
    """``name`` (cpu, cuda, cuda:1, ...) or the first CUDA GPU when there is one, else the CPU."""
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def int8_device(meta: dict[str, Any], name: str | None = None):
    """pick_device, except that an int8 model runs on the CPU (its kernels are x86 ones): asking for another
    device with it is an error."""
    if meta.get("precision") != "int8":
        return pick_device(name)
    if name and torch.device(name).type != "cpu":
        raise ValueError(f"int8 inference runs on the CPU; got --device {name} (use --precision fp32 there)")
    return torch.device("cpu")


def _quarantine_file(params: dict[str, Any]) -> Path | None:
    out_dir = (params.get("validate") or {}).get("out_dir")
    if not out_dir:
        return None
    q = Path(out_dir) / "quarantine.json"
    return q if q.is_file() else None


def evaluate(params: dict[str, Any], bundle_dir: str | os.PathLike | None = None,
             dataset_dir: str | os.PathLike | None = None, progress: bool = True,
             precision: str | None = None) -> dict[str, Any]:
    """Evaluate a bundle of the params' stage (default its ``train.bundle_dir``; also a ``models:/`` URI or
    a checkpoint, see ``faceparse.registry.resolve_bundle``) on ``evaluate.split`` of ``data.dir`` minus
    quarantined ids. The stage scores it (its primary metric at the top level of the result); this writes
    ``evaluate.metrics_file``, the stage's reports, and logs to the bundle's MLflow run when it has one.
    ``precision``: fp32 | int8 (default: the bundle's; recorded in the result)."""
    params = for_stage(params)
    ev = section(params, "evaluate")
    for key in ("split", "metrics_file"):
        if key not in ev:
            raise ConfigError(f"params: missing evaluate.{key}")
    bundle_ref = str(bundle_dir if bundle_dir is not None else section(params, "train").get("bundle_dir", ""))
    if not bundle_ref:
        raise ConfigError("params: missing train.bundle_dir (or pass a bundle)")
    data_dir = Path(dataset_dir if dataset_dir is not None else section(params, "data").get("dir", ""))
    bdir, binfo = resolve_bundle(bundle_ref, tracking_uri=tracking_uri(params) if bundle_ref.startswith("models:/") else None)
    model, meta = load_bundle(bdir, precision=precision)
    stage = get_stage(bundle_stage(meta))
    if stage.name != params["stage"]:
        raise ValueError(f"{bundle_ref} is a {stage.name!r} model but the params are for the {params['stage']!r} "
                         f"stage: pass --stage {stage.name}")
    model.to(int8_device(meta, ev.get("device")))
    quarantine = _quarantine_file(params)
    df = load_split(data_dir, ev["split"], quarantine)
    if len(df) == 0:
        raise ValueError(f"{data_dir}: the {ev['split']!r} split is empty"
                         + (f" after removing the ids quarantined in {quarantine}" if quarantine else ""))
    result, extras = stage.evaluate_split(model, meta, df, data_dir, params, progress)
    data_sha = hashlib.sha256("\n".join(f"{i} {h}" for i, h in zip(df["id"], df["sha256"])).encode()).hexdigest()
    result.update({
        "n_images": int(len(df)), "split": ev["split"], "stage": stage.name, "bundle": str(bundle_ref),
        "bundle_sha256": sha256_file(Path(bdir) / WEIGHTS),
        **({"model_version": binfo["version"]} if binfo.get("version") else {}),
        "dataset": str(data_dir), "dataset_sha256": data_sha,
        "quarantine": str(quarantine) if quarantine else None, "precision": meta.get("precision", "fp32"),
        **({"mlflow_run_id": meta["mlflow_run_id"]} if meta.get("mlflow_run_id") else {}),
    })
    result = clean(result)
    metrics_file = Path(ev["metrics_file"])
    metrics_file.parent.mkdir(parents=True, exist_ok=True)
    metrics_file.write_text(json.dumps(result, indent=2) + "\n")
    files = stage.write_reports(result, extras, params)
    if meta.get("mlflow_run_id"):
        result["mlflow_logged"] = log_to_mlflow(params, meta["mlflow_run_id"], stage.mlflow_metrics(result),
                                                [metrics_file, *files])
    return result


def log_to_mlflow(params: dict[str, Any], run_id: str, metrics: dict[str, float], files: list[Path]) -> bool:
    """Log the test metrics and files (a folder goes to eval/plots) to the bundle's training run. Optional:
    a failure (no such run in this tracking store, server down) is a warning, never an evaluation error."""
    # mlflow (1.2 s to import) loads only here: `faceparse.load`, the chain and every photo command import
    # this module for pick_device
    from mlflow.entities import Metric

    try:
        client, uri = client_for(params)
        ts = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(k, v, ts, 0) for k, v in metrics.items()])
        for f in files:
            if Path(f).is_dir():
                client.log_artifacts(run_id, str(f), "eval/plots")
            else:
                client.log_artifact(run_id, str(f), "eval")
        return True
    except Exception as e:  # noqa: BLE001 - optional logging
        console.print(f"[yellow]warning:[/] could not log the test metrics to MLflow run {run_id}: {e}")
        return False
