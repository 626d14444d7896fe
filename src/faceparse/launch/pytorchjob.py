"""The ``pytorchjob`` launcher: a Kubeflow Training Operator v1 ``PyTorchJob`` (kubeflow.org/v1), built as a
plain manifest, converted to the kubeflow-training SDK's own models, created with its ``TrainingClient``
and waited for; failures surfaced with the master's log tail."""
from __future__ import annotations

import copy
import re
from typing import Any, Mapping

from kubeflow.training import models

from .errors import PyTorchJobError
from .manifest import (
    job_metadata,
    pod_metadata,
    pod_scheduling,
    resources,
    volumes_and_mounts,
    worker_command,
    worker_env,
)
from .settings import settings_with_defaults
from .staging import run_staged

# Imports inside functions here: this module is on the start-up path of the command line, the page or the
# router, so heavy libraries load on first use (tests/code/test_light_imports.py)

GROUP, VERSION, KIND, PLURAL = "kubeflow.org", "v1", "PyTorchJob", "pytorchjobs"
CONTAINER = "pytorch"  # the Training Operator finds the master port / sets env on the container of this name


# ------------------------------------------------------------------------------------------------ manifest
def _pod_template(s: Mapping[str, Any], name: str, stage: str, gpus: int) -> dict[str, Any]:
    volumes, mounts = volumes_and_mounts(s)
    container = {
        "name": CONTAINER,
        "image": str(s["image"]),
        "imagePullPolicy": str(s["image_pull_policy"]),
        "command": worker_command(s, stage),
        "env": worker_env(s),
        "envFrom": [{"secretRef": {"name": str(s["s3_secret"])}},
                    {"secretRef": {"name": str(s["mlflow_secret"])}}],
        "resources": resources(s, gpus),
        "volumeMounts": mounts,
        "securityContext": {"allowPrivilegeEscalation": False},
    }
    sched = pod_scheduling(s)
    spec: dict[str, Any] = {"containers": [container], "volumes": volumes,
                            **{k: sched[k] for k in ("nodeSelector", "tolerations", "securityContext")}}
    if "serviceAccountName" in sched:
        spec["serviceAccountName"] = sched["serviceAccountName"]
    return {"metadata": pod_metadata(name), "spec": spec}


def build_pytorchjob(settings: Mapping[str, Any] | None, name: str, stage: str,
                     namespace: str | None = None) -> dict[str, Any]:
    """The PyTorchJob manifest (a plain dict, kubeflow.org/v1): Master + (workers-1) Worker pods, each
    ``gpus_per_worker`` GPUs and as many torchrun processes (``nprocPerNode``)."""
    s = settings_with_defaults(settings)
    workers, gpus = int(s["workers"]), int(s["gpus_per_worker"])
    template = _pod_template(s, name, stage, gpus)
    replica = {"restartPolicy": str(s["restart_policy"])}
    replicas = {"Master": {"replicas": 1, **replica, "template": template}}
    if workers > 1:
        replicas["Worker"] = {"replicas": workers - 1, **replica, "template": copy.deepcopy(template)}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": job_metadata(s, name, namespace),
        "spec": {
            "nprocPerNode": str(gpus),
            "runPolicy": {"cleanPodPolicy": "None", "backoffLimit": int(s["backoff_limit"]),
                          "activeDeadlineSeconds": int(s["active_deadline_seconds"]),
                          "ttlSecondsAfterFinished": int(s["ttl_seconds_after_finished"])},
            "pytorchReplicaSpecs": replicas,
        },
    }


# ------------------------------------------------------------------------------------- the SDK's models
_SDK_PRIMITIVES: dict[str, Any] = {"str": str, "int": int, "float": (int, float), "bool": bool}


def _sdk_model(data: Any, type_name: str, path: str = "job") -> Any:
    """Build the SDK's (OpenAPI-generated) model ``type_name`` from manifest data, field by field through the
    models' own ``openapi_types`` / ``attribute_map``. Strict, unlike a deserializer: a key the model does not
    have, or a value of the wrong type, is a ValueError naming its path (nothing is silently dropped)."""
    # lazy: the kubeflow-training SDK (the kubeflow.org/v1 models + every kubernetes.client model) is optional
    if data is None:
        return None
    m = re.fullmatch(r"list\[(.+)\]", type_name)
    if m:
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a list, got {data!r}")
        return [_sdk_model(v, m.group(1), f"{path}[{i}]") for i, v in enumerate(data)]
    m = re.fullmatch(r"dict\(str, (.+)\)", type_name)
    if m:
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping, got {data!r}")
        return {k: _sdk_model(v, m.group(1), f"{path}.{k}") for k, v in data.items()}
    if type_name == "object":
        return copy.deepcopy(data)
    if type_name in ("date", "datetime"):
        return data
    if type_name in _SDK_PRIMITIVES:
        if not isinstance(data, _SDK_PRIMITIVES[type_name]) or (type_name != "bool" and isinstance(data, bool)):
            raise ValueError(f"{path}: expected {type_name}, got {data!r}")
        return data
    cls = getattr(models, type_name)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a {type_name} mapping, got {data!r}")
    attr_of = {key: attr for attr, key in cls.attribute_map.items()}
    unknown = sorted(set(data) - set(attr_of))
    if unknown:
        raise ValueError(f"{path}: {type_name} has no field(s) {unknown}")
    return cls(**{attr_of[k]: _sdk_model(v, cls.openapi_types[attr_of[k]], f"{path}.{k}") for k, v in data.items()})


def _to_model(job: dict[str, Any]):
    """The manifest dict as the SDK's own KubeflowOrgV1PyTorchJob (what TrainingClient.create_job takes)."""
    return _sdk_model(job, "KubeflowOrgV1PyTorchJob")


# ------------------------------------------------------------------------------------------ launch, wait
def _conditions(job: Any) -> list[Any]:
    status = getattr(job, "status", None)
    return list(getattr(status, "conditions", None) or [])


def _log_tail(client: Any, name: str, namespace: str, lines: int = 60) -> str:
    try:
        logs, _ = client.get_job_logs(name, namespace=namespace, is_master=True)
        text = "\n".join(f"[{pod}] {line}" for pod, log in (logs or {}).items()
                         for line in str(log).splitlines()[-lines:])
        return text or "(no log)"
    except Exception as e:  # noqa: BLE001 - logs are a courtesy: never hide the failure itself
        return f"(could not read the master's log: {e})"


def launch_pytorchjob(job: dict[str, Any], client: Any = None, timeout_s: int = 172800,
                      poll_s: int = 30) -> Any:
    """Create the job with ``TrainingClient``, wait for Succeeded, return the final job object.

    Raises PyTorchJobError naming the job: creation refused, Failed (with the last condition's message and
    the master's log tail), or not finished within ``timeout_s`` (the job is then deleted)."""
    name = job["metadata"]["name"]
    if client is None:
        from kubeflow.training import TrainingClient  # lazy: the kubeflow-training SDK is optional

        client = TrainingClient(job_kind=KIND)
    namespace = job["metadata"].get("namespace") or client.namespace
    job = copy.deepcopy(job)
    job["metadata"]["namespace"] = namespace
    where = f"PyTorchJob {namespace}/{name}"
    try:
        client.create_job(job=_to_model(job), namespace=namespace)
    except (RuntimeError, TimeoutError, ValueError) as e:
        raise PyTorchJobError(f"{where}: could not be created: {e}") from None
    print(f"[faceparse.launch] created {where}: {len(job['spec']['pytorchReplicaSpecs'])} replica types, "
          f"nprocPerNode={job['spec'].get('nprocPerNode')}", flush=True)

    def _report(j: Any) -> None:
        conds = _conditions(j)
        if conds:
            c = conds[-1]
            print(f"[faceparse.launch] {where}: {c.type} ({getattr(c, 'reason', '') or ''})", flush=True)

    try:
        return client.wait_for_job_conditions(name, namespace=namespace, job_kind=KIND,
                                              expected_conditions={"Succeeded"}, wait_timeout=int(timeout_s),
                                              polling_interval=max(1, int(poll_s)), callback=_report)
    except TimeoutError:
        try:
            client.delete_job(name, namespace=namespace, job_kind=KIND)
            note = "deleted it"
        except Exception as e:  # noqa: BLE001
            note = f"could not delete it: {e}"
        raise PyTorchJobError(f"{where} did not succeed within {timeout_s} s; {note}") from None
    except RuntimeError as e:
        reason = str(e)
        try:
            conds = _conditions(client.get_job(name, namespace=namespace, job_kind=KIND))
            if conds:
                reason = f"{conds[-1].type}: {getattr(conds[-1], 'reason', '')} {getattr(conds[-1], 'message', '')}".strip()
        except Exception:  # noqa: BLE001
            pass
        raise PyTorchJobError(f"{where} failed ({reason}); master log tail:\n"
                              f"{_log_tail(client, name, namespace)}") from None


def run_pytorchjob(params: dict[str, Any], settings: Mapping[str, Any] | None = None, client: Any = None,
                   name: str | None = None) -> dict[str, Any]:
    """Stage inputs → PyTorchJob → wait → fetch the bundle into ``train.bundle_dir``; the train result."""
    return run_staged(params, settings_with_defaults(settings), name, build_pytorchjob, launch_pytorchjob, client,
                      KIND)
