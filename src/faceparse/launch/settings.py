"""The cluster launchers' settings: the project image, the secrets the training pods read, the PyTorchJob's
and the TrainJob's settings (defaults, checked overrides), and fresh job names."""
from __future__ import annotations

import copy
import datetime as _dt
import os
import secrets
from typing import Any, Mapping

from .. import __version__

# The project image (infra/docker/Dockerfile.train): CUDA torch + the pinned lock + faceparse. Push it as
#   docker build -f infra/docker/Dockerfile.train -t ghcr.io/faceparse/faceparse:<version> .
# Pushed elsewhere? Set FACEPARSE_IMAGE=<registry>/<name>:<tag> when compiling the pipeline: the
# components' base_image and the PyTorchJob's / TrainJob's (and the training runtime's) default image follow it.
IMAGE_REPOSITORY = "ghcr.io/faceparse/faceparse"
DEFAULT_IMAGE = os.environ.get("FACEPARSE_IMAGE") or f"{IMAGE_REPOSITORY}:{__version__}"

S3_SECRET = "faceparse-s3"          # keys: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION, FACEPARSE_S3_ENDPOINT
MLFLOW_SECRET = "faceparse-mlflow"  # keys: MLFLOW_TRACKING_URI (+ MLFLOW_TRACKING_USERNAME / _PASSWORD if the server has auth)
# The secrets' keys as env vars in the training pods: (name, required). The PyTorchJob takes the secrets
# whole (envFrom); a TrainJob can only set the trainer's env (valueFrom.secretKeyRef, one key each).
S3_SECRET_KEYS = (("AWS_ACCESS_KEY_ID", True), ("AWS_SECRET_ACCESS_KEY", True), ("AWS_DEFAULT_REGION", False),
                  ("FACEPARSE_S3_ENDPOINT", False))
MLFLOW_SECRET_KEYS = (("MLFLOW_TRACKING_URI", True), ("MLFLOW_TRACKING_USERNAME", False),
                      ("MLFLOW_TRACKING_PASSWORD", False))

# The torch ClusterTrainingRuntime TrainJobs reference (infra/k8s/clustertrainingruntime.yaml).
TRAINJOB_RUNTIME = "faceparse-torch-distributed"

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
    """``settings`` over TRAINJOB_DEFAULTS, checked as settings_with_defaults does, and the runtime kind."""
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
