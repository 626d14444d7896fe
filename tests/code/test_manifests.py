"""infra/: Kubernetes manifests validated offline against the Kubernetes JSON schemas (kubernetes-validate,
strict: unknown fields fail), the custom resources (PyTorchJob, TrainJob, ClusterTrainingRuntime) against
the JSON schemas generated from their upstream CRDs (scripts/crd_schemas.py, infra/schemas/upstream/;
closed: unknown fields fail) plus the operators' admission rules, and a structural lint of the Dockerfiles
(no Docker here: the images are not built in CI)."""
import copy
import re
import sys
from pathlib import Path

import pytest
import yaml

from faceparse.launch.pytorchjob import build_pytorchjob
from faceparse.launch.settings import MLFLOW_SECRET, S3_SECRET, TRAINJOB_RUNTIME, settings_with_defaults
from faceparse.launch.staging import stage_uri

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # components/ and pipelines/ live at the repo root
    sys.path.insert(0, str(REPO))
from scripts import crd_schemas  # noqa: E402

INFRA = REPO / "infra"
K8S = INFRA / "k8s"
DOCKER = INFRA / "docker"
K8S_VERSION = crd_schemas.K8S_VERSION  # the cluster version the manifests target


# ------------------------------------------------------------------------------------------ validators
def validate_doc(doc: dict) -> None:
    """Raise on an invalid manifest (crd_schemas.ManifestError, a ValueError / kubernetes_validate errors)."""
    if doc.get("kind") in crd_schemas.SOURCES:
        crd_schemas.validate(doc)
        return
    import kubernetes_validate

    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def load_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def validate_file(path: Path) -> int:
    docs = load_docs(path)
    if not docs:
        raise ValueError(f"{path}: no documents")
    for doc in docs:
        validate_doc(doc)
    return len(docs)


# ------------------------------------------------------------------------------------------ manifests
@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(K8S)))
def test_manifest_validates_against_kubernetes_schemas(path):
    assert validate_file(path) >= 1


def test_expected_manifests_exist():
    kinds = {(d["kind"], d["metadata"]["name"]) for p in manifest_files() for d in load_docs(p)}
    for want in [("Deployment", "mlflow"), ("Service", "mlflow"), ("StatefulSet", "mlflow-postgres"),
                 ("Secret", "faceparse-s3"), ("Secret", "faceparse-mlflow"), ("Secret", "mlflow-postgres"),
                 ("Role", "faceparse-pytorchjob-launcher"), ("RoleBinding", "faceparse-pytorchjob-launcher"),
                 ("ServiceAccount", "faceparse-pipeline"), ("PyTorchJob", "faceparse-train"),
                 ("TrainJob", "faceparse-train"), ("ClusterTrainingRuntime", TRAINJOB_RUNTIME)]:
        assert want in kinds, want


def test_kustomization_lists_existing_files():
    k = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    for res in k["resources"]:
        assert (K8S / res).is_file(), res
    assert "secrets.template.yaml" not in k["resources"]  # templates are filled outside git


def test_secret_templates_hold_no_values():
    for doc in load_docs(K8S / "secrets.template.yaml"):
        assert doc["kind"] == "Secret"
        assert "data" not in doc, f"{doc['metadata']['name']}: use stringData with empty values"
        assert doc["stringData"], doc["metadata"]["name"]
        assert all(v == "" for v in doc["stringData"].values()), doc["metadata"]["name"]


def test_secret_keys_match_what_the_pipeline_reads():
    from pipelines.pipeline import MLFLOW_ENV, S3_ENV

    secrets = {d["metadata"]["name"]: set(d["stringData"]) for d in load_docs(K8S / "secrets.template.yaml")}
    assert set(S3_ENV) <= secrets[S3_SECRET]
    assert set(MLFLOW_ENV) <= secrets[MLFLOW_SECRET]


def test_rbac_lets_the_pipeline_launch_and_watch_pytorchjobs():
    docs = load_docs(K8S / "rbac.yaml")
    role = next(d for d in docs if d["kind"] == "Role")
    binding = next(d for d in docs if d["kind"] == "RoleBinding")
    rules = {(g, r): set(rule["verbs"]) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    assert {"create", "get", "list", "watch", "delete"} <= rules[("kubeflow.org", "pytorchjobs")]
    assert {"get", "list"} <= rules[("", "pods/log")]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert "faceparse-pipeline" in {s["name"] for s in binding["subjects"]}


def test_mlflow_server_uses_postgres_and_proxied_s3_artifacts():
    dep = next(d for d in load_docs(K8S / "mlflow" / "mlflow.yaml") if d["kind"] == "Deployment")
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    store = args[args.index("--backend-store-uri") + 1]
    assert store.startswith("postgresql://") and "mlflow-postgres" in store
    assert "--serve-artifacts" in args and args[args.index("--artifacts-destination") + 1].startswith("s3://")


# ------------------------------------------------------------------------------------------ PyTorchJob
def test_committed_pytorchjob_is_the_builder_output():
    """infra/k8s/pytorchjob.yaml is faceparse.launch.pytorchjob.build_pytorchjob with the defaults (regenerate with
    `python -m faceparse.launch render --name faceparse-train`)."""
    (committed,) = load_docs(K8S / "pytorchjob.yaml")
    s = settings_with_defaults(None)
    assert committed == build_pytorchjob(s, "faceparse-train", stage_uri(s, "faceparse-train"))


@pytest.mark.parametrize("settings", [
    {},
    {"workers": 1, "gpus_per_worker": 1},
    {"workers": 4, "gpus_per_worker": 4, "data_pvc": "faceparse-data", "service_account": "trainer",
     "namespace": "team-a"},
], ids=["defaults", "one-gpu", "pvc"])
def test_built_pytorchjob_validates(settings):
    job = build_pytorchjob(settings, "faceparse-train-x", "s3://b/jobs/faceparse-train-x")
    validate_doc(job)
    specs = job["spec"]["pytorchReplicaSpecs"]
    s = settings_with_defaults(settings)
    assert job["spec"]["nprocPerNode"] == str(s["gpus_per_worker"])
    assert specs["Master"]["replicas"] + specs.get("Worker", {}).get("replicas", 0) == s["workers"]
    pod = specs["Master"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["name"] == "pytorch"
    assert c["resources"]["limits"]["nvidia.com/gpu"] == str(s["gpus_per_worker"])
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["NCCL_SOCKET_IFNAME"] and env["TORCH_NCCL_ASYNC_ERROR_HANDLING"] == "1"
    assert {r["secretRef"]["name"] for r in c["envFrom"]} == {S3_SECRET, MLFLOW_SECRET}
    if settings.get("data_pvc"):
        assert pod["volumes"][-1]["persistentVolumeClaim"]["claimName"] == "faceparse-data"
        assert c["command"][-2:] == ["--data-dir", "/mnt/data/processed"]


def test_pytorchjob_settings_are_checked():
    with pytest.raises(ValueError, match="unknown keys.*gpus"):
        settings_with_defaults({"gpus": 4})
    with pytest.raises(ValueError, match="≥ 1"):
        settings_with_defaults({"workers": 0})
    with pytest.raises(ValueError, match="s3://"):
        stage_uri(settings_with_defaults({"staging_uri": "/local/dir"}), "x")


# ------------------------------------------------------------------------------------------ broken ones
def _job():
    return build_pytorchjob({}, "faceparse-train", "s3://b/jobs/faceparse-train")


def _master(j):
    return j["spec"]["pytorchReplicaSpecs"]["Master"]


# name → (how to break the default job, what the error must say)
BROKEN_JOBS = {
    "replica-type": (lambda j: j["spec"]["pytorchReplicaSpecs"].update(Chief=j["spec"]["pytorchReplicaSpecs"]
                                                                        .pop("Worker")), "'Chief' is not one of"),
    "typo-in-spec": (lambda j: j["spec"].update(pytorchReplicaSpec=j["spec"].pop("pytorchReplicaSpecs")),
                     "'pytorchReplicaSpecs' is a required property"),
    "two-masters": (lambda j: _master(j).update(replicas=2), "Master/replicas"),
    "nproc-int": (lambda j: j["spec"].update(nprocPerNode=8), "8 is not of type 'string'"),
    "container-typo": (lambda j: j["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]
                       .update(imagee="x"), "'imagee' was unexpected"),
    "container-renamed": (lambda j: _master(j)["template"]["spec"]["containers"][0].update(name="trainer"),
                          "containers"),
    "toleration-type": (lambda j: _master(j)["template"]["spec"].update(tolerations="gpu"),
                        "'gpu' is not of type 'array'"),
    "gpu-quantity": (lambda j: _master(j)["template"]["spec"]["containers"][0]["resources"]["limits"]
                     .update({"nvidia.com/gpu": [8]}), "nvidia.com/gpu"),
}


@pytest.mark.parametrize("name", sorted(BROKEN_JOBS))
def test_broken_pytorchjob_fails_validation(name):
    job = copy.deepcopy(_job())
    validate_doc(job)
    breaker, message = BROKEN_JOBS[name]
    breaker(job)
    with pytest.raises(ValueError, match=re.escape(message)):
        validate_doc(job)


def test_planted_broken_manifest_file_fails(tmp_path):
    """A copy of a real manifest with one wrong field, validated as a file, fails; the original passes."""
    src = K8S / "mlflow" / "mlflow.yaml"
    assert validate_file(src) == 2
    broken = tmp_path / "mlflow.yaml"
    broken.write_text(src.read_text().replace("replicas: 1", "replicas: one", 1))
    with pytest.raises(Exception, match="one"):
        validate_file(broken)
    unknown = tmp_path / "mlflow-unknown.yaml"
    unknown.write_text(src.read_text().replace("containerPort: 5000", "containerPort: 5000\n              hostPortt: 1", 1))
    with pytest.raises(Exception):
        validate_file(unknown)


# ------------------------------------------------------------------------------------------ Dockerfiles
def lint_dockerfile(text: str) -> list[str]:
    """Structural checks standing in for hadolint (not installed): base images pinned by tag (no
    `latest`, ARG defaults resolved), the pinned lock copied and installed, a non-root final USER."""
    problems = []
    lines = re.sub(r"\\\n", " ", text).splitlines()
    args = {}
    for line in lines:
        m = re.match(r"\s*ARG\s+(\w+)=(\S+)", line)
        if m:
            args[m.group(1)] = m.group(2)
    froms = [ln.split()[1] for ln in lines if re.match(r"\s*FROM\s", ln, re.I)]
    if not froms:
        problems.append("no FROM")
    for image in froms:
        image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), image)
        if "$" in image:
            problems.append(f"FROM {image}: unresolved ARG")
        elif "@sha256:" not in image and (":" not in image.split("/")[-1] or image.endswith(":latest")):
            problems.append(f"FROM {image}: not pinned by tag")
    if re.search(r":latest\b", text):
        problems.append("uses a :latest tag")
    if not re.search(r"^\s*COPY\s+.*requirements\.lock", text, re.M):
        problems.append("does not COPY requirements.lock")
    if "requirements.lock" not in " ".join(ln for ln in lines if "pip install" in ln):
        problems.append("does not install from requirements.lock")
    users = [ln.split()[1] for ln in lines if re.match(r"\s*USER\s", ln)]
    if not users:
        problems.append("no USER (runs as root)")
    elif users[-1].split(":")[0] in ("root", "0"):
        problems.append(f"final USER {users[-1]} is root")
    return problems


DOCKERFILES = sorted(DOCKER.glob("Dockerfile.*"))


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_lint(path):
    assert lint_dockerfile(path.read_text()) == []


def test_dockerfiles_present():
    assert {p.name for p in DOCKERFILES} >= {"Dockerfile.train", "Dockerfile.serve"}


def test_train_image_swaps_the_cpu_torch_for_the_cuda_build():
    text = (DOCKER / "Dockerfile.train").read_text()
    assert re.search(r"^ARG CUDA_BASE=nvidia/cuda:[\w.\-]+cudnn[\w.\-]*$", text, re.M)
    assert "download.pytorch.org/whl/${TORCH_CUDA}" in text
    assert "grep -v '^torch=='" in text and "-c /tmp/constraints.txt" in text
    lock_torch = next(ln for ln in (REPO / "requirements.lock").read_text().splitlines() if ln.startswith("torch=="))
    version = re.search(r"ARG TORCH_VERSION=(\S+)", text).group(1)
    assert lock_torch.split("==")[1].split("+")[0] == version, "Dockerfile.train TORCH_VERSION must follow the lock"


def test_lint_catches_a_broken_dockerfile():
    bad = "FROM python:latest\nRUN pip install torch\nCMD python\n"
    problems = lint_dockerfile(bad)
    assert any("not pinned" in p for p in problems)
    assert any("requirements.lock" in p for p in problems)
    assert any("USER" in p for p in problems)
    assert lint_dockerfile("FROM python:3.11-slim\nCOPY requirements.lock .\nRUN pip install -r requirements.lock\nUSER root\n") \
        == ["final USER root is root"]
