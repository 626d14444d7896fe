"""Distributed training launchers for the kfp ``train`` component (and ``faceparse train --launcher``): one
step, three places to run it.

``launcher="local"``       torchrun (``python -m torch.distributed.run --standalone``) with N processes on
                           this machine; on CPU the processes talk over gloo. What ``pipelines/run_local.py`` uses.
``launcher="pytorchjob"``  a Kubeflow Training Operator v1 ``PyTorchJob`` (kubeflow.org/v1) with ``workers``
                           pods × ``gpus_per_worker`` GPUs (one process per GPU, NCCL), created with the
                           kubeflow-training SDK's ``TrainingClient`` (the job built as the SDK's own models),
                           waited for, failures surfaced with the master's log tail.
``launcher="trainjob"``    a Kubeflow Trainer v2 ``TrainJob`` (trainer.kubeflow.org/v1alpha1) referencing the
                           torch-distributed ClusterTrainingRuntime ``faceparse-torch-distributed``
                           (infra/k8s/clustertrainingruntime.yaml): ``workers`` nodes × ``gpus_per_worker``
                           processes, created and polled through the plain Kubernetes CustomObjectsApi
                           (:class:`TrainJobClient`), failures surfaced with node 0's (and failed pods') log tail.

For both cluster launchers the dataset reaches the pods through S3 (staged by the component) or a PVC; the
model bundle and the training result come back through S3. All end in the same place:
``faceparse.train.train(params)`` (the contract's step function) running under torchrun, which sets RANK /
WORLD_SIZE / LOCAL_RANK for it. In a pod, ``python -m faceparse.kube worker --staged s3://…`` fetches the
staged inputs, runs torchrun with the PET_* (/ MASTER_*) environment the operator sets, and (node rank 0)
uploads the bundle.

Also the kfp components' params helper (:func:`component_params`): the pipeline carries the params.yaml
text, and each component turns it back into params through ``config.load_params``.
"""
from __future__ import annotations

import collections
import copy
import datetime as _dt
import json
import os
import re
import secrets
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from . import __version__
from .config import load_params, set_key  # noqa: F401 (set_key: components/prepare.py)

LAUNCHERS = ("local", "pytorchjob", "trainjob")

# The project image (infra/docker/Dockerfile.train): CUDA torch + the pinned lock + faceparse. Push it as
#   docker build -f infra/docker/Dockerfile.train -t ghcr.io/faceparse/faceparse:<version> .
# Pushed elsewhere? Set FACEPARSE_IMAGE=<registry>/<name>:<tag> when compiling the pipeline: the
# components' base_image and the PyTorchJob's / TrainJob's (and the training runtime's) default image follow it.
IMAGE_REPOSITORY = "ghcr.io/faceparse/faceparse"
DEFAULT_IMAGE = os.environ.get("FACEPARSE_IMAGE") or f"{IMAGE_REPOSITORY}:{__version__}"

GROUP, VERSION, KIND, PLURAL = "kubeflow.org", "v1", "PyTorchJob", "pytorchjobs"
CONTAINER = "pytorch"  # the Training Operator finds the master port / sets env on the container of this name
S3_SECRET = "faceparse-s3"          # keys: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION, FACEPARSE_S3_ENDPOINT
MLFLOW_SECRET = "faceparse-mlflow"  # keys: MLFLOW_TRACKING_URI (+ MLFLOW_TRACKING_USERNAME / _PASSWORD if the server has auth)
# The secrets' keys as env vars in the training pods: (name, required). The PyTorchJob takes the secrets
# whole (envFrom); a TrainJob can only set the trainer's env (valueFrom.secretKeyRef, one key each).
S3_SECRET_KEYS = (("AWS_ACCESS_KEY_ID", True), ("AWS_SECRET_ACCESS_KEY", True), ("AWS_DEFAULT_REGION", False),
                  ("FACEPARSE_S3_ENDPOINT", False))
MLFLOW_SECRET_KEYS = (("MLFLOW_TRACKING_URI", True), ("MLFLOW_TRACKING_USERNAME", False),
                      ("MLFLOW_TRACKING_PASSWORD", False))
DATA_MOUNT = "/mnt/data"
WORKSPACE = "/workspace"

# Cluster settings of the PyTorchJob; the pipeline's ``pytorchjob`` parameter defaults to this dict (so it
# is visible, and editable per run, in the compiled pipeline YAML). infra/k8s/pytorchjob.yaml is this
# dict rendered by build_pytorchjob (tests keep the two in sync).
PYTORCHJOB_DEFAULTS: dict[str, Any] = {
    "image": DEFAULT_IMAGE,
    "image_pull_policy": "IfNotPresent",
    "namespace": "",                 # "" = the namespace the pipeline step runs in
    "service_account": "",           # "" = the namespace's default service account
    "workers": 2,                    # N pods: 1 Master + N-1 Worker replicas
    "gpus_per_worker": 8,            # G processes per pod (nprocPerNode), one per GPU
    "gpu_resource": "nvidia.com/gpu",
    "cpu": "48",
    "memory": "400Gi",
    "shm_size": "64Gi",              # /dev/shm for NCCL and DataLoader workers
    "node_selector": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    "nccl_env": {
        "NCCL_DEBUG": "WARN",
        "NCCL_IB_DISABLE": "0",             # use InfiniBand / RoCE between A100 nodes when present
        "NCCL_SOCKET_IFNAME": "eth0",       # the pod network interface for bootstrap / socket transport
        "NCCL_P2P_LEVEL": "NVL",            # NVLink within a node
        "TORCH_NCCL_ASYNC_ERROR_HANDLING": "1",  # a dead peer fails the step instead of hanging it
        "OMP_NUM_THREADS": "4",
    },
    "staging_uri": "s3://faceparse/pytorchjobs",  # <staging_uri>/<job name>/{params.yaml,dataset.tar,...}
    "data_pvc": "",                  # a PVC holding the dataset: mounted at /mnt/data, no dataset staging
    "data_pvc_path": "processed",    # data.dir inside that PVC
    "s3_secret": S3_SECRET,
    "mlflow_secret": MLFLOW_SECRET,
    "restart_policy": "ExitCode",    # the operator retries pods that died of a signal (128+), not code errors
    "backoff_limit": 2,
    "active_deadline_seconds": 172800,
    "ttl_seconds_after_finished": 86400,
    "timeout_s": 172800,             # how long the pipeline step waits for the job
    "poll_s": 30,
}


# Kubeflow Trainer v2. The TrainJob references a torch ClusterTrainingRuntime (infra/k8s/
# clustertrainingruntime.yaml = build_trainingruntime()); everything per run (image, command, nodes ×
# processes, resources, env, volumes, scheduling) is set on the TrainJob: ``trainer`` for the node
# container, ``runtimePatches`` (one entry, manager TRAINJOB_MANAGER) for the pod spec.
TRAINER_GROUP, TRAINER_VERSION = "trainer.kubeflow.org", "v1alpha1"
TRAINJOB_KIND, TRAINJOB_PLURAL = "TrainJob", "trainjobs"
TRAINER_NODE = "node"        # the torch runtime's replicated job and container of the training nodes
TRAINJOB_RUNTIME = "faceparse-torch-distributed"
TRAINJOB_MANAGER = "faceparse/launcher"
JOBSET_NAME_LABEL = "jobset.sigs.k8s.io/jobset-name"          # on every pod of the TrainJob (JobSet = TrainJob name)
JOB_INDEX_LABEL = "batch.kubernetes.io/job-completion-index"  # = PET_NODE_RANK of the pod

# Cluster settings of the TrainJob; the pipeline's ``trainjob`` parameter defaults to this dict. The keys
# shared with PYTORCHJOB_DEFAULTS mean the same; restarts / TTL belong to the runtime (build_trainingruntime)
# and the image pull policy to its container.
TRAINJOB_DEFAULTS: dict[str, Any] = {
    **{k: copy.deepcopy(v) for k, v in PYTORCHJOB_DEFAULTS.items()
       if k not in ("image_pull_policy", "restart_policy", "backoff_limit", "ttl_seconds_after_finished")},
    "staging_uri": "s3://faceparse/trainjobs",
    "runtime": TRAINJOB_RUNTIME,     # the torch runtime the TrainJob references
    "runtime_kind": "ClusterTrainingRuntime",  # or TrainingRuntime (namespaced, in the job's namespace)
}


class LaunchError(RuntimeError):
    """A cluster training job failed, timed out, or could not be created; the message names it and tells why."""


class PyTorchJobError(LaunchError):
    """The PyTorchJob failed, timed out, or could not be created."""


class TrainJobError(LaunchError):
    """The TrainJob failed, timed out, or could not be created."""


# ------------------------------------------------------------------------------------- component params
def component_params(params_yaml: str, overrides: Iterable[str] = (),
                     paths: Mapping[str, Any] | None = None, stage: str | None = None) -> dict[str, Any]:
    """params.yaml text (what the pipeline carries) + ``section.key=value`` overrides → params, through
    ``config.load_params``, resolved for the model ``stage`` (its section replaces the top-level ones);
    then ``paths`` (dotted key → artifact path) set verbatim on the resolved params."""
    from .stages import for_stage

    params = for_stage(whole_params(params_yaml, overrides), stage)
    for key, value in (paths or {}).items():
        set_key(params, key, str(value) if isinstance(value, os.PathLike) else value)
    return params


def whole_params(params_yaml: str, overrides: Iterable[str] = (), paths: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """As ``component_params`` but not resolved for a stage: every stage's section kept (a step that
    composes several stages' models reads each one's)."""
    from .runtime import own_process

    own_process()   # every kfp step reads its params through here: the step's process is ours
    with tempfile.TemporaryDirectory(prefix="faceparse-params-") as tmp:
        p = Path(tmp) / "params.yaml"
        p.write_text(params_yaml)
        params = load_params(p, list(overrides or ()))
    for key, value in (paths or {}).items():
        set_key(params, key, str(value) if isinstance(value, os.PathLike) else value)
    return params


def write_params(params: Mapping[str, Any], path: str | os.PathLike) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(yaml.safe_dump(dict(params), sort_keys=False))
    return p


# ------------------------------------------------------------------------------------------- entry points
def train_distributed(params: dict[str, Any], launcher: str = "local", nproc: int = 2,
                      pytorchjob: Mapping[str, Any] | None = None, workdir: str | os.PathLike | None = None,
                      client: Any = None, job_name: str | None = None,
                      trainjob: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Run ``faceparse.train.train(params)`` distributed; return its result (``bundle``, ``checkpoint``,
    ``mlflow_run_id``, ``val``). The bundle ends up in ``train.bundle_dir`` either way. ``pytorchjob`` /
    ``trainjob``: that launcher's cluster settings (missing keys from PYTORCHJOB_DEFAULTS / TRAINJOB_DEFAULTS);
    ``client``: the launcher's cluster client (TrainingClient / TrainJobClient; default: from the pod's
    service account or ~/.kube/config)."""
    if launcher == "local":
        return run_torchrun(params, nproc=nproc, workdir=workdir)
    if launcher == "pytorchjob":
        return run_pytorchjob(params, settings=pytorchjob, client=client, name=job_name)
    if launcher == "trainjob":
        return run_trainjob(params, settings=trainjob, client=client, name=job_name)
    raise ValueError(f"launcher {launcher!r} is not one of {list(LAUNCHERS)}")


def _train_module_args(params_file: Path, result_file: Path) -> list[str]:
    return ["-m", "faceparse.kube", "train", "--params", str(params_file), "--result", str(result_file)]


def _tee(cmd: list[str], env: Mapping[str, str], cwd: str | os.PathLike | None = None, keep: int = 60) -> tuple[int, str]:
    """Run cmd, streaming its output to ours; (return code, last ``keep`` lines)."""
    tail: collections.deque[str] = collections.deque(maxlen=keep)
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(env),
                          cwd=cwd, bufsize=1, errors="replace") as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            tail.append(line.rstrip("\n"))
        rc = proc.wait()
    sys.stdout.flush()
    return rc, "\n".join(tail)


def torchrun_command(nproc: int | str, params_file: Path, result_file: Path, *, nnodes: int | str = 1,
                     node_rank: int | str = 0, master_addr: str | None = None,
                     master_port: int | str | None = None) -> list[str]:
    """``torchrun`` as ``python -m torch.distributed.run`` (same interpreter; no PATH lookup)."""
    cmd = [sys.executable, "-m", "torch.distributed.run"]
    if master_addr is None:
        cmd += ["--standalone", "--nnodes", "1"]
    else:
        cmd += ["--nnodes", str(nnodes), "--node-rank", str(node_rank), "--master-addr", master_addr,
                "--master-port", str(master_port or 23456)]
    cmd += ["--nproc-per-node", str(nproc)]
    return cmd + _train_module_args(params_file, result_file)


def run_torchrun(params: dict[str, Any], nproc: int = 2, workdir: str | os.PathLike | None = None,
                 torchrun_args: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """torchrun ``nproc`` processes of the train step on this machine; raise with the log tail on failure."""
    nproc = int(nproc)
    if nproc < 1:
        raise ValueError(f"nproc must be ≥ 1, got {nproc}")
    own = workdir is None
    wd = Path(tempfile.mkdtemp(prefix="faceparse-torchrun-")) if own else Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    params_file = write_params(params, wd / "params.yaml")
    result_file = wd / "result.json"
    result_file.unlink(missing_ok=True)
    cmd = torchrun_command(nproc, params_file, result_file, **dict(torchrun_args or {}))
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONUNBUFFERED"] = "1"
    print(f"[faceparse.kube] {' '.join(cmd)}", flush=True)
    rc, tail = _tee(cmd, env)
    if rc != 0:
        raise RuntimeError(f"distributed training failed: torchrun ({nproc} processes) exited with {rc}; "
                           f"last output:\n{tail}")
    if not result_file.is_file():
        raise RuntimeError(f"torchrun exited 0 but rank 0 wrote no result ({result_file}); last output:\n{tail}")
    return json.loads(result_file.read_text())


def _train_entry(params_file: str, result_file: str) -> int:
    """One torchrun process: the contract's train step; rank 0 writes the result JSON."""
    from .runtime import own_process
    from .train import train

    own_process()
    params = load_params(params_file)
    result = train(params, progress=False)
    if int(os.environ.get("RANK", "0")) == 0:
        Path(result_file).parent.mkdir(parents=True, exist_ok=True)
        Path(result_file).write_text(json.dumps(result, indent=2, default=str))
    return 0


# ------------------------------------------------------------------------------------ cluster settings
def settings_with_defaults(settings: Mapping[str, Any] | None, defaults: Mapping[str, Any] | None = None,
                           what: str = "pytorchjob") -> dict[str, Any]:
    """``settings`` over a copy of ``defaults`` (PYTORCHJOB_DEFAULTS); unknown keys and < 1 sizes refused."""
    s = copy.deepcopy(dict(PYTORCHJOB_DEFAULTS if defaults is None else defaults))
    unknown = set(settings or {}) - set(s)
    if unknown:
        raise ValueError(f"{what} settings: unknown keys {sorted(unknown)}; known: {sorted(s)}")
    s.update(copy.deepcopy(dict(settings or {})))
    if int(s["workers"]) < 1 or int(s["gpus_per_worker"]) < 1:
        raise ValueError(f"{what} settings: workers and gpus_per_worker must be ≥ 1, got "
                         f"{s['workers']} × {s['gpus_per_worker']}")
    return s


def trainjob_settings(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    s = settings_with_defaults(settings, TRAINJOB_DEFAULTS, "trainjob")
    if s["runtime_kind"] not in ("ClusterTrainingRuntime", "TrainingRuntime"):
        raise ValueError(f"trainjob settings: runtime_kind {s['runtime_kind']!r} is not ClusterTrainingRuntime "
                         "or TrainingRuntime")
    return s


def new_job_name(prefix: str = "faceparse-train") -> str:
    """A unique DNS-1035 name ≤ 50 characters (room for the operators' suffixes: PyTorchJob -master-0 /
    -worker-N pods; a TrainJob's pod hostnames <name>-node-<i>-<j> must stay within 63)."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{prefix}-{stamp}-{secrets.token_hex(3)}"[:50]


def stage_uri(settings: Mapping[str, Any], name: str) -> str:
    base = str(settings["staging_uri"]).rstrip("/")
    if not base.startswith("s3://"):
        raise ValueError(f"cluster settings: staging_uri {base!r} must be an s3:// prefix")
    return f"{base}/{name}"


# The pod pieces both cluster launchers share: the same command, env, volumes, resources, scheduling.
def _worker_command(s: Mapping[str, Any], stage: str) -> list[str]:
    command = ["python", "-m", "faceparse.kube", "worker", "--staged", stage]
    if s.get("data_pvc"):
        command += ["--data-dir", f"{DATA_MOUNT}/{str(s['data_pvc_path']).strip('/')}"]
    return command


def _worker_env(s: Mapping[str, Any]) -> list[dict[str, Any]]:
    env = [{"name": k, "value": str(v)} for k, v in s["nccl_env"].items()]
    env.append({"name": "FACEPARSE_WORKDIR", "value": WORKSPACE})
    return env


def _secret_env(s: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The S3 / MLflow secrets' keys as single env vars (what envFrom gives the PyTorchJob's pods)."""
    return [{"name": key, "valueFrom": {"secretKeyRef": {"name": str(secret), "key": key,
                                                         **({} if required else {"optional": True})}}}
            for secret, keys in ((s["s3_secret"], S3_SECRET_KEYS), (s["mlflow_secret"], MLFLOW_SECRET_KEYS))
            for key, required in keys]


def _volumes_and_mounts(s: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
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


def _resources(s: Mapping[str, Any], gpus: int) -> dict[str, Any]:
    r = {str(s["gpu_resource"]): str(gpus), "cpu": str(s["cpu"]), "memory": str(s["memory"])}
    return {"requests": dict(r), "limits": dict(r)}


def _pod_scheduling(s: Mapping[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "nodeSelector": dict(s["node_selector"]),
        "tolerations": [dict(t) for t in s["tolerations"]],
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000},
    }
    if s.get("service_account"):
        spec["serviceAccountName"] = str(s["service_account"])
    return spec


def _pod_metadata(name: str) -> dict[str, Any]:
    return {"labels": {"app.kubernetes.io/name": "faceparse", "app.kubernetes.io/component": "train",
                       "faceparse/job": name},
            "annotations": {"sidecar.istio.io/inject": "false"}}


def _job_metadata(s: Mapping[str, Any], name: str, namespace: str | None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "labels": {"app.kubernetes.io/name": "faceparse",
                                                         "app.kubernetes.io/component": "train"}}
    ns = namespace if namespace is not None else s.get("namespace")
    if ns:
        metadata["namespace"] = ns
    return metadata


# -------------------------------------------------------------------------------------------- PyTorchJob
def _pod_template(s: Mapping[str, Any], name: str, stage: str, gpus: int) -> dict[str, Any]:
    volumes, mounts = _volumes_and_mounts(s)
    container = {
        "name": CONTAINER,
        "image": str(s["image"]),
        "imagePullPolicy": str(s["image_pull_policy"]),
        "command": _worker_command(s, stage),
        "env": _worker_env(s),
        "envFrom": [{"secretRef": {"name": str(s["s3_secret"])}},
                    {"secretRef": {"name": str(s["mlflow_secret"])}}],
        "resources": _resources(s, gpus),
        "volumeMounts": mounts,
        "securityContext": {"allowPrivilegeEscalation": False},
    }
    sched = _pod_scheduling(s)
    spec: dict[str, Any] = {"containers": [container], "volumes": volumes,
                            **{k: sched[k] for k in ("nodeSelector", "tolerations", "securityContext")}}
    if "serviceAccountName" in sched:
        spec["serviceAccountName"] = sched["serviceAccountName"]
    return {"metadata": _pod_metadata(name), "spec": spec}


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
        "metadata": _job_metadata(s, name, namespace),
        "spec": {
            "nprocPerNode": str(gpus),
            "runPolicy": {"cleanPodPolicy": "None", "backoffLimit": int(s["backoff_limit"]),
                          "activeDeadlineSeconds": int(s["active_deadline_seconds"]),
                          "ttlSecondsAfterFinished": int(s["ttl_seconds_after_finished"])},
            "pytorchReplicaSpecs": replicas,
        },
    }


# -------------------------------------------------------------------------------------------- TrainJob
def build_trainjob(settings: Mapping[str, Any] | None, name: str, stage: str,
                   namespace: str | None = None) -> dict[str, Any]:
    """The TrainJob manifest (a plain dict, trainer.kubeflow.org/v1alpha1): ``workers`` nodes of the torch
    runtime, each ``gpus_per_worker`` GPUs and as many torchrun processes (``numProcPerNode``); the pods
    run the same worker entry, env and volumes as the PyTorchJob's."""
    s = trainjob_settings(settings)
    workers, gpus = int(s["workers"]), int(s["gpus_per_worker"])
    volumes, mounts = _volumes_and_mounts(s)
    pod_spec = {
        **_pod_scheduling(s),
        "volumes": volumes,
        "containers": [{"name": TRAINER_NODE, "volumeMounts": mounts,
                        "securityContext": {"allowPrivilegeEscalation": False}}],
    }
    patch = {"manager": TRAINJOB_MANAGER, "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [
        {"name": TRAINER_NODE, "template": {"spec": {"template": {"metadata": _pod_metadata(name),
                                                                  "spec": pod_spec}}}}]}}}}
    return {
        "apiVersion": f"{TRAINER_GROUP}/{TRAINER_VERSION}",
        "kind": TRAINJOB_KIND,
        "metadata": _job_metadata(s, name, namespace),
        "spec": {
            "runtimeRef": {"apiGroup": TRAINER_GROUP, "kind": str(s["runtime_kind"]), "name": str(s["runtime"])},
            "trainer": {
                "image": str(s["image"]),
                "command": _worker_command(s, stage),
                "env": _worker_env(s) + _secret_env(s),
                "numNodes": workers,
                "numProcPerNode": gpus,
                "resourcesPerNode": _resources(s, gpus),
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


def _tar_dir(src: Path, dst: Path) -> Path:
    with tarfile.open(dst, "w") as tar:
        tar.add(src, arcname=".")
    return dst


def _untar(archive: Path, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dst, filter="data")
    return dst


# inputs staged for the pods: (params dotted key, archive name). The dataset is required (unless it is on a
# PVC); the others travel when they are local: the validation report (its quarantine list) and the model a
# stage's bundle carries (fisn: the completion bundle; a models:/ URI is left to the pod to resolve).
STAGED_DIRS = (("data.dir", "dataset.tar"), ("validate.out_dir", "validation.tar"),
               ("carry.completion", "carried.tar"))
# single files staged the same way: the carried model's registration record (the version it records)
STAGED_FILES = (("carry.registered_file", "carried-registered.json"),)


def _param_path(params: Mapping[str, Any], key: str) -> Path | None:
    """The path a dotted params key names, or None when unset (never '.': an empty value is not the cwd)."""
    sec, k = key.split(".")
    value = (params.get(sec) or {}).get(k)
    return Path(str(value)) if value not in (None, "") else None


def stage_inputs(params: dict[str, Any], stage: str, include_dataset: bool = True) -> list[str]:
    """Upload params.yaml, the dataset / validation / carried-model dirs (tar, sha256-checked by fetch) and
    the staged files under ``stage``."""
    from .data.storage import upload

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
            uploaded.append(upload(_tar_dir(src, t / archive), f"{stage}/{archive}", create_bucket=True))
        for key, name in STAGED_FILES:
            src = _param_path(params, key)
            if src is not None and src.is_file():
                uploaded.append(upload(src, f"{stage}/{name}", create_bucket=True))
        uploaded.append(upload(write_params(params, t / "params.yaml"), f"{stage}/params.yaml", create_bucket=True))
    return uploaded


def _fetch_staged(params: dict[str, Any], stage: str, inputs: Path, wd: Path) -> None:
    """In the pod: point the optional staged inputs' params keys at their fetched copies (those not staged
    keep their value: a models:/ URI, or nothing)."""
    from .data.storage import fetch

    for key, archive in STAGED_DIRS[1:]:
        try:
            set_key(params, key, str(_untar(fetch(f"{stage}/{archive}", inputs), wd / archive.removesuffix(".tar"))))
        except FileNotFoundError:
            pass
    for key, name in STAGED_FILES:
        try:
            set_key(params, key, str(fetch(f"{stage}/{name}", inputs)))
        except FileNotFoundError:
            pass


_SDK_PRIMITIVES: dict[str, Any] = {"str": str, "int": int, "float": (int, float), "bool": bool}


def _sdk_model(data: Any, type_name: str, path: str = "job") -> Any:
    """Build the SDK's (OpenAPI-generated) model ``type_name`` from manifest data, field by field through the
    models' own ``openapi_types`` / ``attribute_map``. Strict, unlike a deserializer: a key the model does not
    have, or a value of the wrong type, is a ValueError naming its path (nothing is silently dropped)."""
    from kubeflow.training import models  # the kubeflow.org/v1 models + every kubernetes.client model

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
        from kubeflow.training import TrainingClient

        client = TrainingClient(job_kind=KIND)
    namespace = job["metadata"].get("namespace") or client.namespace
    job = copy.deepcopy(job)
    job["metadata"]["namespace"] = namespace
    where = f"PyTorchJob {namespace}/{name}"
    try:
        client.create_job(job=_to_model(job), namespace=namespace)
    except (RuntimeError, TimeoutError, ValueError) as e:
        raise PyTorchJobError(f"{where}: could not be created: {e}") from None
    print(f"[faceparse.kube] created {where}: {len(job['spec']['pytorchReplicaSpecs'])} replica types, "
          f"nprocPerNode={job['spec'].get('nprocPerNode')}", flush=True)

    def _report(j: Any) -> None:
        conds = _conditions(j)
        if conds:
            c = conds[-1]
            print(f"[faceparse.kube] {where}: {c.type} ({getattr(c, 'reason', '') or ''})", flush=True)

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


def collect_outputs(stage: str, bundle_dir: str | os.PathLike, what: str = "PyTorchJob") -> dict[str, Any]:
    """Fetch what node rank 0 uploaded: the bundle (into ``bundle_dir``) and the train result."""
    from .data.storage import fetch

    with tempfile.TemporaryDirectory(prefix="faceparse-collect-") as tmp:
        t = Path(tmp)
        try:
            result = json.loads(fetch(f"{stage}/result.json", t).read_text())
            archive = fetch(f"{stage}/model.tar", t)
        except FileNotFoundError as e:
            err = TrainJobError if what == TRAINJOB_KIND else PyTorchJobError
            raise err(f"the {what} succeeded but left no outputs: {e}") from None
        _untar(archive, Path(bundle_dir))
    result["bundle"] = str(bundle_dir)
    return result


def _bundle_dir(params: Mapping[str, Any]) -> Path:
    return Path(str((params.get("train") or {}).get("bundle_dir") or "artifacts/model"))


def run_pytorchjob(params: dict[str, Any], settings: Mapping[str, Any] | None = None, client: Any = None,
                   name: str | None = None) -> dict[str, Any]:
    """Stage inputs → PyTorchJob → wait → fetch the bundle into ``train.bundle_dir``; the train result."""
    return _run_cluster_job(params, settings_with_defaults(settings), name, build_pytorchjob, launch_pytorchjob,
                            client, {})


# --------------------------------------------------------------------------- TrainJob: client, launch, wait
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
            from kubernetes import client, config

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


def _true_conditions(job: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    conds = ((job or {}).get("status") or {}).get("conditions") or []
    return {c.get("type"): c for c in conds if str(c.get("status")) == "True"}


def _trainjob_log_tail(client: Any, name: str, namespace: str, lines: int = 60, max_pods: int = 3) -> str:
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
    print(f"[faceparse.kube] created {where}: runtime {job['spec']['runtimeRef']['name']}, "
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
                print(f"[faceparse.kube] {where}: {ctype} ({c.get('reason') or ''}) {c.get('message') or ''}".rstrip(),
                      flush=True)
        if "Complete" in conds:
            return current
        if "Failed" in conds:
            c = conds["Failed"]
            reason = f"Failed: {c.get('reason') or ''} {c.get('message') or ''}".strip()
            raise TrainJobError(f"{where} failed ({reason}); node log tail:\n"
                                f"{_trainjob_log_tail(client, name, namespace)}")
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
    return _run_cluster_job(params, trainjob_settings(settings), name, build_trainjob, launch_trainjob, client,
                            {"what": TRAINJOB_KIND})


def _run_cluster_job(params, s: Mapping[str, Any], name: str | None, build, launch, client, collect_kw) -> dict[str, Any]:
    """The launchers' common shape: stage the inputs on S3, build the job, launch and wait, fetch the bundle."""
    name = name or new_job_name()
    stage = stage_uri(s, name)
    stage_inputs(params, stage, include_dataset=not s.get("data_pvc"))
    launch(build(s, name, stage), client=client, timeout_s=int(s["timeout_s"]), poll_s=int(s["poll_s"]))
    return collect_outputs(stage, _bundle_dir(params), **collect_kw)


def worker_main(stage: str, data_dir: str | None = None, workdir: str | None = None) -> int:
    """In a PyTorchJob / TrainJob pod: fetch the staged inputs, torchrun the train step across the job's
    nodes (PET_NNODES / PET_NPROC_PER_NODE / PET_NODE_RANK, and MASTER_ADDR / MASTER_PORT from the Training
    Operator or PET_MASTER_ADDR / PET_MASTER_PORT from Trainer v2's torch plugin), then on node rank 0
    upload the bundle and the result next to the inputs."""
    from .data.storage import fetch, upload

    wd = Path(workdir or os.environ.get("FACEPARSE_WORKDIR") or tempfile.mkdtemp(prefix="faceparse-worker-"))
    inputs = wd / "inputs"
    params = load_params(fetch(f"{stage}/params.yaml", inputs))
    if data_dir:
        set_key(params, "data.dir", data_dir)
    else:
        set_key(params, "data.dir", str(_untar(fetch(f"{stage}/dataset.tar", inputs), wd / "dataset")))
    _fetch_staged(params, stage, inputs, wd)
    set_key(params, "train.run_dir", str(wd / "run"))
    set_key(params, "train.bundle_dir", str(wd / "model"))
    params_file = write_params(params, wd / "params.yaml")
    result_file = wd / "result.json"
    env = os.environ
    node_rank = int(env.get("PET_NODE_RANK", env.get("RANK", "0")))
    cmd = torchrun_command(env.get("PET_NPROC_PER_NODE", "1"), params_file, result_file,
                           nnodes=env.get("PET_NNODES", "1"), node_rank=node_rank,
                           master_addr=env.get("MASTER_ADDR") or env.get("PET_MASTER_ADDR") or "localhost",
                           master_port=env.get("MASTER_PORT") or env.get("PET_MASTER_PORT") or "23456")
    print(f"[faceparse.kube] node {node_rank}: {' '.join(cmd)}", flush=True)
    rc, _ = _tee(cmd, dict(env, PYTHONUNBUFFERED="1"))
    if rc != 0 or node_rank != 0:
        return rc
    upload(_tar_dir(wd / "model", wd / "model.tar"), f"{stage}/model.tar")
    upload(result_file, f"{stage}/result.json")
    print(f"[faceparse.kube] uploaded the bundle and result to {stage}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m faceparse.kube",
                                 description="faceparse distributed-training entries (used by torchrun and "
                                             "by PyTorchJob / TrainJob pods; not a user CLI)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="one torchrun process of the train step")
    t.add_argument("--params", required=True)
    t.add_argument("--result", required=True)
    w = sub.add_parser("worker", help="a PyTorchJob / TrainJob pod: fetch inputs, torchrun, upload outputs")
    w.add_argument("--staged", required=True, help="s3:// prefix the pipeline staged the inputs under (not a model stage)")
    w.add_argument("--data-dir", default=None, help="dataset already mounted here (PVC): do not fetch it")
    w.add_argument("--workdir", default=None)
    r = sub.add_parser("render", help="print a manifest for the given settings (YAML): the PyTorchJob, the "
                                      "TrainJob, or the ClusterTrainingRuntime TrainJobs reference")
    r.add_argument("--kind", choices=("pytorchjob", "trainjob", "runtime"), default="pytorchjob")
    r.add_argument("--name", default="faceparse-train")
    r.add_argument("--staged", default=None, help="s3:// staging prefix (default: staging_uri/NAME)")
    r.add_argument("--settings", default=None, help="YAML/JSON file of pytorchjob / trainjob settings (overrides)")
    a = ap.parse_args(argv)
    if a.cmd == "train":
        return _train_entry(a.params, a.result)
    if a.cmd == "worker":
        return worker_main(a.staged, data_dir=a.data_dir, workdir=a.workdir)
    settings = yaml.safe_load(Path(a.settings).read_text()) if a.settings else None
    if a.kind == "runtime":
        manifest = build_trainingruntime(**dict(settings or {}))
    elif a.kind == "trainjob":
        s = trainjob_settings(settings)
        manifest = build_trainjob(s, a.name, a.staged or stage_uri(s, a.name))
    else:
        s = settings_with_defaults(settings)
        manifest = build_pytorchjob(s, a.name, a.staged or stage_uri(s, a.name))
    sys.stdout.write(render_yaml(manifest))
    return 0


def render_yaml(manifest: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(manifest), sort_keys=False, default_flow_style=False)


if __name__ == "__main__":
    raise SystemExit(main())
