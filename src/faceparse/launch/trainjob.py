"""The ``trainjob`` launcher: a Kubeflow Trainer v2 ``TrainJob`` (trainer.kubeflow.org/v1alpha1) referencing
the torch ClusterTrainingRuntime (infra/k8s/clustertrainingruntime.yaml = :func:`build_trainingruntime`),
created and polled through the plain Kubernetes API (:class:`TrainJobClient`); failures surfaced with node
0's (and failed pods') log tail.

Everything per run (image, command, nodes × processes, resources, env, volumes, scheduling) is set on the
TrainJob: ``trainer`` for the node container, ``runtimePatches`` (one entry, manager TRAINJOB_MANAGER) for
the pod spec."""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any, Mapping

from .errors import TrainJobError
from .manifest import (job_metadata, pod_metadata, pod_scheduling, resources, secret_env, volumes_and_mounts,
                       worker_command, worker_env)
from .settings import DEFAULT_IMAGE, TRAINJOB_RUNTIME, trainjob_settings
from .staging import run_staged

# Imports inside functions here: this module is on the start-up path of the command line, the page or the
# router, so heavy libraries load on first use (tests/code/test_light_imports.py)

TRAINER_GROUP, TRAINER_VERSION = "trainer.kubeflow.org", "v1alpha1"
TRAINJOB_KIND, TRAINJOB_PLURAL = "TrainJob", "trainjobs"
TRAINER_NODE = "node"        # the torch runtime's replicated job and container of the training nodes
TRAINJOB_MANAGER = "faceparse/launcher"
JOBSET_NAME_LABEL = "jobset.sigs.k8s.io/jobset-name"          # on every pod of the TrainJob (JobSet = TrainJob name)
JOB_INDEX_LABEL = "batch.kubernetes.io/job-completion-index"  # = PET_NODE_RANK of the pod


# ----------------------------------------------------------------------------------------------- manifests
def build_trainjob(settings: Mapping[str, Any] | None, name: str, stage: str,
                   namespace: str | None = None) -> dict[str, Any]:
    """The TrainJob manifest (a plain dict, trainer.kubeflow.org/v1alpha1): ``workers`` nodes of the torch
    runtime, each ``gpus_per_worker`` GPUs and as many torchrun processes (``numProcPerNode``); the pods
    run the same worker entry, env and volumes as the PyTorchJob's."""
    s = trainjob_settings(settings)
    workers, gpus = int(s["workers"]), int(s["gpus_per_worker"])
    volumes, mounts = volumes_and_mounts(s)
    pod_spec = {
        **pod_scheduling(s),
        "volumes": volumes,
        "containers": [{"name": TRAINER_NODE, "volumeMounts": mounts,
                        "securityContext": {"allowPrivilegeEscalation": False}}],
    }
    patch = {"manager": TRAINJOB_MANAGER, "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [
        {"name": TRAINER_NODE, "template": {"spec": {"template": {"metadata": pod_metadata(name),
                                                                  "spec": pod_spec}}}}]}}}}
    return {
        "apiVersion": f"{TRAINER_GROUP}/{TRAINER_VERSION}",
        "kind": TRAINJOB_KIND,
        "metadata": job_metadata(s, name, namespace),
        "spec": {
            "runtimeRef": {"apiGroup": TRAINER_GROUP, "kind": str(s["runtime_kind"]), "name": str(s["runtime"])},
            "trainer": {
                "image": str(s["image"]),
                "command": worker_command(s, stage),
                "env": worker_env(s) + secret_env(s),
                "numNodes": workers,
                "numProcPerNode": gpus,
                "resourcesPerNode": resources(s, gpus),
            },
            "activeDeadlineSeconds": int(s["active_deadline_seconds"]),
            "runtimePatches": [patch],
        },
    }


def build_trainingruntime(name: str = TRAINJOB_RUNTIME, image: str = DEFAULT_IMAGE,
                          image_pull_policy: str = "IfNotPresent", max_restarts: int = 2) -> dict[str, Any]:
    """The torch ClusterTrainingRuntime TrainJobs reference (infra/k8s/clustertrainingruntime.yaml is this
    with the defaults). Modelled on Trainer v2.3.0's ``torch-distributed`` runtime, plus the Training
    Operator's ``restartPolicy: ExitCode`` behaviour: a node exiting 1-127 (a Python error: retrying
    cannot help) fails the TrainJob at once; a node killed by a signal (128+: OOM kill, preemption, NCCL
    abort) or evicted restarts the whole gang, up to ``max_restarts`` times."""
    code_errors = list(range(1, 128))
    return {
        "apiVersion": f"{TRAINER_GROUP}/{TRAINER_VERSION}",
        "kind": "ClusterTrainingRuntime",
        "metadata": {"name": name, "labels": {"trainer.kubeflow.org/framework": "torch",
                                              "app.kubernetes.io/part-of": "faceparse"}},
        "spec": {
            "mlPolicy": {"numNodes": 1, "torch": {}},
            "template": {"spec": {
                "failurePolicy": {"maxRestarts": int(max_restarts), "rules": [
                    {"name": "code-error", "action": "FailJobSet", "onJobFailureReasons": ["PodFailurePolicy"]}]},
                "replicatedJobs": [{
                    "name": TRAINER_NODE,
                    "template": {
                        "metadata": {"labels": {"trainer.kubeflow.org/trainjob-ancestor-step": "trainer"}},
                        "spec": {
                            "backoffLimit": 0,
                            "podFailurePolicy": {"rules": [
                                {"action": "FailJob", "onExitCodes": {"containerName": TRAINER_NODE,
                                                                      "operator": "In", "values": code_errors}},
                                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
                            ]},
                            "template": {"spec": {
                                "restartPolicy": "Never",
                                "containers": [{"name": TRAINER_NODE, "image": str(image),
                                                "imagePullPolicy": str(image_pull_policy)}],
                            }},
                        },
                    },
                }],
            }},
        },
    }


# ------------------------------------------------------------------------------------------------- client
def _in_cluster_namespace() -> str | None:
    f = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    return f.read_text().strip() if f.is_file() else None


class TrainJobClient:
    """TrainJobs through the plain Kubernetes API (``CustomObjectsApi`` for trainer.kubeflow.org/v1alpha1,
    ``CoreV1Api`` for the pods' logs): what the launcher needs of the ``kubeflow`` SDK's TrainerClient,
    without it. The APIs default to the pod's service account (in a pipeline step) or ~/.kube/config;
    ``namespace`` to the pod's own namespace, then the kubeconfig context's, then ``default``."""

    def __init__(self, namespace: str | None = None, custom_api: Any = None, core_api: Any = None):
        if custom_api is None or core_api is None:
            from kubernetes import client, config  # lazy: the Kubernetes client is optional (cluster launches only)

            try:
                config.load_incluster_config()
                context_ns = None
            except config.ConfigException:
                config.load_kube_config()
                _, active = config.list_kube_config_contexts()
                context_ns = (active or {}).get("context", {}).get("namespace")
            custom_api = custom_api or client.CustomObjectsApi()
            core_api = core_api or client.CoreV1Api()
        else:
            context_ns = None
        self.custom, self.core = custom_api, core_api
        self.namespace = namespace or _in_cluster_namespace() or context_ns or "default"

    def _args(self, namespace: str) -> dict[str, str]:
        return {"group": TRAINER_GROUP, "version": TRAINER_VERSION, "namespace": namespace, "plural": TRAINJOB_PLURAL}

    def create(self, job: Mapping[str, Any], namespace: str) -> dict[str, Any]:
        return self.custom.create_namespaced_custom_object(**self._args(namespace), body=dict(job))

    def get(self, name: str, namespace: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(**self._args(namespace), name=name)

    def delete(self, name: str, namespace: str) -> None:
        self.custom.delete_namespaced_custom_object(**self._args(namespace), name=name,
                                                    propagation_policy="Foreground")

    def pods(self, name: str, namespace: str) -> list[Any]:
        return list(self.core.list_namespaced_pod(namespace, label_selector=f"{JOBSET_NAME_LABEL}={name}").items)

    def log(self, pod: str, namespace: str, lines: int = 60) -> str:
        return self.core.read_namespaced_pod_log(pod, namespace, container=TRAINER_NODE, tail_lines=lines)


def _api_error(e: Exception) -> str:
    """An ApiException as 'status reason: message' (the API server's JSON body carries the message)."""
    status, reason, body = getattr(e, "status", None), getattr(e, "reason", None), getattr(e, "body", None)
    if status is None:
        return f"{type(e).__name__}: {e}"
    message = ""
    try:
        message = json.loads(body).get("message", "") if body else ""
    except (TypeError, ValueError):
        message = str(body)[:500]
    return f"({status}) {reason}" + (f": {message}" if message else "")


# ------------------------------------------------------------------------------------------ launch, wait
def _true_conditions(job: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    conds = ((job or {}).get("status") or {}).get("conditions") or []
    return {c.get("type"): c for c in conds if str(c.get("status")) == "True"}


def _log_tail(client: Any, name: str, namespace: str, lines: int = 60, max_pods: int = 3) -> str:
    """The last lines of node 0's log and of every failed pod's (up to ``max_pods`` pods)."""
    try:
        pods = client.pods(name, namespace)
        def rank(p: Any) -> tuple[int, str]:
            failed = getattr(p.status, "phase", None) == "Failed"
            node0 = (p.metadata.labels or {}).get(JOB_INDEX_LABEL) == "0"
            return (0 if failed else 1 if node0 else 2, p.metadata.name)
        chosen = [p for p in sorted(pods, key=rank) if rank(p)[0] < 2][:max_pods]
        if not chosen:
            return f"(no pods of {name} left: {len(pods)} found)"
        parts = []
        for p in chosen:
            try:
                text = client.log(p.metadata.name, namespace, lines=lines) or ""
            except Exception as e:  # noqa: BLE001 - one unreadable log must not hide the others
                text = f"(could not read the log: {_api_error(e)})"
            parts += [f"[{p.metadata.name}] {line}" for line in str(text).splitlines()[-lines:]] or [f"[{p.metadata.name}] (empty log)"]
        return "\n".join(parts)
    except Exception as e:  # noqa: BLE001 - logs are a courtesy: never hide the failure itself
        return f"(could not read the pods' logs: {_api_error(e)})"


def launch_trainjob(job: dict[str, Any], client: Any = None, timeout_s: int = 172800, poll_s: int = 30, *,
                    sleep=time.sleep, clock=time.monotonic, max_api_errors: int = 5) -> dict[str, Any]:
    """Create the TrainJob, poll it until its ``Complete`` condition, return the final object.

    Raises TrainJobError naming the job: creation refused (the API server's message: a schema or webhook
    rejection, RBAC, a missing runtime), ``Failed`` (its reason and message, and node 0's and failed pods'
    log tails), gone while waited for, the API unreachable ``max_api_errors`` polls in a row, or not
    complete within ``timeout_s`` (the job is then deleted)."""
    name = job["metadata"]["name"]
    if client is None:
        try:
            client = TrainJobClient()
        except Exception as e:  # noqa: BLE001 - no in-cluster service account and no usable kubeconfig
            raise TrainJobError(f"TrainJob {name}: no Kubernetes API to create it in: {e}") from None
    namespace = job["metadata"].get("namespace") or client.namespace
    job = copy.deepcopy(job)
    job["metadata"]["namespace"] = namespace
    where = f"TrainJob {namespace}/{name}"
    try:
        client.create(job, namespace)
    except Exception as e:  # noqa: BLE001 - ApiException, urllib3 errors: all mean "not created"
        raise TrainJobError(f"{where}: could not be created: {_api_error(e)}") from None
    trainer = job["spec"].get("trainer") or {}
    print(f"[faceparse.launch] created {where}: runtime {job['spec']['runtimeRef']['name']}, "
          f"{trainer.get('numNodes')} nodes × {trainer.get('numProcPerNode')} processes", flush=True)

    deadline = clock() + int(timeout_s)
    seen: set[tuple[str, str]] = set()
    api_errors = 0
    while True:
        try:
            current = client.get(name, namespace)
            api_errors = 0
        except Exception as e:  # noqa: BLE001
            if getattr(e, "status", None) == 404:
                raise TrainJobError(f"{where} disappeared while waited for (deleted by someone else?)") from None
            api_errors += 1
            if api_errors >= max_api_errors:
                raise TrainJobError(f"{where}: the API failed {api_errors} times in a row: {_api_error(e)}") from None
            current = None
        conds = _true_conditions(current) if current is not None else {}
        for ctype, c in conds.items():
            if (ctype, str(c.get("reason"))) not in seen:
                seen.add((ctype, str(c.get("reason"))))
                print(f"[faceparse.launch] {where}: {ctype} ({c.get('reason') or ''}) {c.get('message') or ''}".rstrip(),
                      flush=True)
        if "Complete" in conds:
            return current
        if "Failed" in conds:
            c = conds["Failed"]
            reason = f"Failed: {c.get('reason') or ''} {c.get('message') or ''}".strip()
            raise TrainJobError(f"{where} failed ({reason}); node log tail:\n"
                                f"{_log_tail(client, name, namespace)}")
        if clock() >= deadline:
            try:
                client.delete(name, namespace)
                note = "deleted it"
            except Exception as e:  # noqa: BLE001
                note = f"could not delete it: {_api_error(e)}"
            raise TrainJobError(f"{where} did not complete within {timeout_s} s; {note}")
        sleep(max(1, int(poll_s)))


def run_trainjob(params: dict[str, Any], settings: Mapping[str, Any] | None = None, client: Any = None,
                 name: str | None = None) -> dict[str, Any]:
    """Stage inputs → TrainJob → wait → fetch the bundle into ``train.bundle_dir``; the train result."""
    return run_staged(params, trainjob_settings(settings), name, build_trainjob, launch_trainjob, client,
                      TRAINJOB_KIND)
