"""The pod pieces both cluster launchers share — the same worker command, env, volumes, resources,
scheduling and labels — and a manifest as YAML."""
from __future__ import annotations

from typing import Any, Mapping

import yaml

from .settings import MLFLOW_SECRET_KEYS, S3_SECRET_KEYS

DATA_MOUNT = "/mnt/data"
WORKSPACE = "/workspace"


def worker_command(s: Mapping[str, Any], stage: str) -> list[str]:
    """The pods' command: faceparse.launch.worker on the inputs staged under ``stage`` (s3://)."""
    command = ["python", "-m", "faceparse.launch", "worker", "--staged", stage]
    if s.get("data_pvc"):
        command += ["--data-dir", f"{DATA_MOUNT}/{str(s['data_pvc_path']).strip('/')}"]
    return command


def worker_env(s: Mapping[str, Any]) -> list[dict[str, Any]]:
    env = [{"name": k, "value": str(v)} for k, v in s["nccl_env"].items()]
    env.append({"name": "FACEPARSE_WORKDIR", "value": WORKSPACE})
    return env


def secret_env(s: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The S3 / MLflow secrets' keys as single env vars (what envFrom gives the PyTorchJob's pods)."""
    return [{"name": key, "valueFrom": {"secretKeyRef": {"name": str(secret), "key": key,
                                                         **({} if required else {"optional": True})}}}
            for secret, keys in ((s["s3_secret"], S3_SECRET_KEYS), (s["mlflow_secret"], MLFLOW_SECRET_KEYS))
            for key, required in keys]


def volumes_and_mounts(s: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    mounts = [{"name": "dshm", "mountPath": "/dev/shm"}, {"name": "workspace", "mountPath": WORKSPACE}]
    volumes: list[dict[str, Any]] = [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": str(s["shm_size"])}},
        {"name": "workspace", "emptyDir": {}},
    ]
    if s.get("data_pvc"):
        mounts.append({"name": "data", "mountPath": DATA_MOUNT, "readOnly": True})
        volumes.append({"name": "data", "persistentVolumeClaim": {"claimName": str(s["data_pvc"]),
                                                                  "readOnly": True}})
    return volumes, mounts


def resources(s: Mapping[str, Any], gpus: int) -> dict[str, Any]:
    r = {str(s["gpu_resource"]): str(gpus), "cpu": str(s["cpu"]), "memory": str(s["memory"])}
    return {"requests": dict(r), "limits": dict(r)}


def pod_scheduling(s: Mapping[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "nodeSelector": dict(s["node_selector"]),
        "tolerations": [dict(t) for t in s["tolerations"]],
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000},
    }
    if s.get("service_account"):
        spec["serviceAccountName"] = str(s["service_account"])
    return spec


def pod_metadata(name: str) -> dict[str, Any]:
    return {"labels": {"app.kubernetes.io/name": "faceparse", "app.kubernetes.io/component": "train",
                       "faceparse/job": name},
            "annotations": {"sidecar.istio.io/inject": "false"}}


def job_metadata(s: Mapping[str, Any], name: str, namespace: str | None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "labels": {"app.kubernetes.io/name": "faceparse",
                                                         "app.kubernetes.io/component": "train"}}
    ns = namespace if namespace is not None else s.get("namespace")
    if ns:
        metadata["namespace"] = ns
    return metadata


def render_yaml(manifest: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(manifest), sort_keys=False, default_flow_style=False)
