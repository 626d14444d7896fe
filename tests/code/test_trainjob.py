"""The Kubeflow Trainer v2 launcher (``launcher=trainjob``) and the CRD-generated schemas.

* The upstream CRDs in infra/schemas/upstream/ are the recorded upstream files; the translation to JSON
  Schema (scripts/crd_schemas.py) follows its rules, unknown fields fail.
* Both cluster launchers' manifests, built through ``train_distributed`` for a parser and a landmark
  training, validate against the schemas generated from the upstream CRDs; a misspelt field fails; the
  committed manifests (TrainJob, ClusterTrainingRuntime, the KServe InferenceService) validate.
* The TrainJob launcher creates, polls, and surfaces failures (condition message + pods' log tails),
  timeouts and refusals, against a stand-in for the Kubernetes CustomObjectsApi / CoreV1Api — no cluster here.
* The compiled pipeline and ``faceparse train`` carry the launcher choice.
"""
from __future__ import annotations

import copy
import gzip
import hashlib
import json
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # components/, pipelines/ and scripts/ live at the repo root
    sys.path.insert(0, str(REPO))

from faceparse.launch import dispatch, staging, worker  # noqa: E402
from faceparse.launch.dispatch import train_distributed  # noqa: E402
from faceparse.launch.errors import PyTorchJobError, TrainJobError  # noqa: E402
from faceparse.launch.params import component_params  # noqa: E402
from faceparse.launch.pytorchjob import KIND, build_pytorchjob  # noqa: E402
from faceparse.launch.settings import (MLFLOW_SECRET, PYTORCHJOB_DEFAULTS, S3_SECRET, TRAINJOB_DEFAULTS,  # noqa: E402
                                       TRAINJOB_RUNTIME, trainjob_settings)
from faceparse.launch.staging import stage_uri  # noqa: E402
from faceparse.launch.trainjob import TrainJobClient, build_trainingruntime, build_trainjob, launch_trainjob  # noqa: E402
from faceparse.launch.worker import worker_main  # noqa: E402
from scripts import crd_schemas as cs  # noqa: E402

PARAMS_YAML = (REPO / "params.yaml").read_text()
K8S = REPO / "infra" / "k8s"


def load_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


# ------------------------------------------------------------------------------------------ upstream CRDs
def test_upstream_crds_are_the_recorded_upstream_files():
    readme = (cs.UPSTREAM / "README.md").read_text()
    assert sorted(p.name for p in cs.UPSTREAM.glob("*.yaml.gz")) == sorted(s["file"] for s in cs.SOURCES.values())
    for kind, src in cs.SOURCES.items():
        raw = gzip.decompress((cs.UPSTREAM / src["file"]).read_bytes())
        assert hashlib.sha256(raw).hexdigest() == src["sha256"], kind
        assert cs.load_crd(kind)["spec"]["names"]["kind"] == kind
        for field in ("file", "repo", "path", "ref", "commit", "sha256"):
            assert src[field] in readme, f"infra/schemas/upstream/README.md does not name {kind}'s {field}"


def test_a_modified_crd_copy_is_refused(tmp_path, monkeypatch):
    src = cs.SOURCES["TrainJob"]
    raw = gzip.decompress((cs.UPSTREAM / src["file"]).read_bytes()).replace(b"numNodes", b"numNode")
    (tmp_path / src["file"]).write_bytes(gzip.compress(raw))
    monkeypatch.setattr(cs, "UPSTREAM", tmp_path)
    with pytest.raises(cs.SchemaGenerationError, match="is not the recorded upstream"):
        cs.load_crd("TrainJob")


@pytest.mark.parametrize("kind", ["PyTorchJob", "TrainJob", "ClusterTrainingRuntime"])
def test_generated_schema_is_a_json_schema_of_the_kind(kind):
    """(InferenceService's is generated the same way; its meta-check alone takes ~10 s, so it is left out.)"""
    import jsonschema

    schema = cs.schema_for(kind)
    jsonschema.Draft202012Validator.check_schema(schema)
    crd = cs.load_crd(kind)
    assert schema["properties"]["kind"] == {"const": kind}
    assert schema["properties"]["apiVersion"]["const"] == f"{crd['spec']['group']}/{cs.crd_version(crd)['name']}"
    assert schema["additionalProperties"] is False and schema["properties"]["spec"]["additionalProperties"] is False
    assert cs.SOURCES[kind]["commit"] in schema["$comment"]


def test_translation_rules():
    crd_node = {
        "type": "object", "description": "dropped", "required": ["a"],
        "x-kubernetes-validations": [{"rule": "self.a > 0"}],
        "properties": {
            "a": {"type": "integer", "format": "int32", "minimum": 0, "exclusiveMinimum": True, "default": 1},
            "q": {"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True},
            "ios": {"x-kubernetes-int-or-string": True},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "pruned": {"type": "object"},
            "maybe": {"type": "string", "nullable": True},
            "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
            "env": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                    "items": {"type": "object", "required": ["name"],
                              "properties": {"name": {"type": "string"}, "value": {"type": "string"}}}},
            "oneof": {"type": "object", "properties": {"x": {"type": "string"}, "y": {"type": "string"}},
                      "anyOf": [{"required": ["x"]}, {"properties": {"y": {"type": "string"}}, "required": ["y"]}]},
        },
    }
    out = cs.convert(crd_node)
    assert "description" not in out and "x-kubernetes-validations" not in out and out["additionalProperties"] is False
    p = out["properties"]
    assert p["a"] == {"type": "integer", "format": "int32", "exclusiveMinimum": 0}
    assert p["ios"]["anyOf"] == [{"type": "integer"}, {"type": "string"}]
    assert p["labels"]["additionalProperties"] == {"type": "string"}             # a map: stays open to keys
    assert "additionalProperties" not in p["free"]                              # preserved by the server
    assert p["pruned"]["additionalProperties"] is False                         # pruned by the server
    assert p["maybe"]["type"] == ["string", "null"] and p["tags"]["uniqueItems"] is True
    assert all("additionalProperties" not in b for b in p["oneof"]["anyOf"])    # branches only constrain

    v = cs._validator_class()(out)
    ok = {"a": 1, "q": "10Gi", "ios": 3, "labels": {"k": "v"}, "free": {"any": {"thing": 1}}, "pruned": {},
          "maybe": None, "tags": ["x", "y"], "env": [{"name": "A"}, {"name": "B", "value": "1"}], "oneof": {"y": "1"}}
    assert list(v.iter_errors(ok)) == []
    for bad, message in [
        ({"a": 0}, "less than or equal to the minimum of 0"),
        ({"a": 1, "b": 2}, "'b' was unexpected"),
        ({"a": 1, "pruned": {"x": 1}}, "'x' was unexpected"),
        ({"a": 1, "q": 1.5}, "is not valid under any of the given schemas"),
        ({"a": 1, "tags": ["x", "x"]}, "non-unique elements"),
        ({"a": 1, "env": [{"name": "A"}, {"name": "A", "value": "2"}]}, "duplicate entries for list-map key {'name': 'A'}"),
        ({"a": 1, "oneof": {"z": "1"}}, "'z' was unexpected"),
    ]:
        assert any(message in e.message for e in v.iter_errors(bad)), (bad, [e.message for e in v.iter_errors(bad)])

    with pytest.raises(cs.SchemaGenerationError, match=r"/a: untranslated keyword\(s\) \['x-kubernetes-new'\]"):
        cs.convert({"type": "object", "properties": {"a": {"type": "string", "x-kubernetes-new": True}}})
    with pytest.raises(cs.SchemaGenerationError, match="unknown x-kubernetes-list-type 'bag'"):
        cs.convert({"type": "array", "x-kubernetes-list-type": "bag"})


# ------------------------------------------------------------------------------------------ both launchers' manifests
class RecordingTrainingClient:
    """kubeflow.training.TrainingClient as far as the PyTorchJob launcher uses it; the job succeeds."""

    namespace = "team-a"

    def __init__(self):
        self.jobs = []

    def create_job(self, job=None, namespace=None, **_):
        self.jobs.append(job)

    def wait_for_job_conditions(self, name, namespace=None, callback=None, **_):
        return SimpleNamespace(status=SimpleNamespace(conditions=[SimpleNamespace(type="Succeeded", reason="")]))

    def manifest(self) -> dict:
        from kubernetes.client import ApiClient

        return ApiClient().sanitize_for_serialization(self.jobs[-1])  # what goes on the wire


class FakeCustomObjectsApi:
    """kubernetes.client.CustomObjectsApi for TrainJobs: scripted status after creation."""

    def __init__(self, statuses=(), create_error=None, get_errors=()):
        self.statuses, self.create_error, self.get_errors = list(statuses), create_error, list(get_errors)
        self.created, self.deleted, self.gets = [], [], 0

    def _check(self, group, version, plural):
        assert (group, version, plural) == ("trainer.kubeflow.org", "v1alpha1", "trainjobs")

    def create_namespaced_custom_object(self, group, version, namespace, plural, body, **_):
        self._check(group, version, plural)
        if self.create_error:
            raise self.create_error
        self.created.append((namespace, copy.deepcopy(body)))
        return body

    def get_namespaced_custom_object(self, group, version, namespace, plural, name, **_):
        self._check(group, version, plural)
        self.gets += 1
        if self.get_errors:
            err = self.get_errors.pop(0)
            if err is not None:
                raise err
        ns, body = self.created[-1]
        assert (ns, body["metadata"]["name"]) == (namespace, name)
        status = self.statuses.pop(0) if len(self.statuses) > 1 else (self.statuses[0] if self.statuses else None)
        return {**body, **({"status": status} if status else {})}

    def delete_namespaced_custom_object(self, group, version, namespace, plural, name, **_):
        self._check(group, version, plural)
        self.deleted.append((namespace, name))


class FakeCoreV1Api:
    """kubernetes.client.CoreV1Api: the TrainJob's pods (node 0 succeeded? no: node 1 failed) and their logs."""

    def __init__(self, name="faceparse-train-x"):
        from kubernetes.client import V1ObjectMeta, V1Pod, V1PodList, V1PodStatus

        def pod(i, phase):
            return V1Pod(metadata=V1ObjectMeta(name=f"{name}-node-0-{i}-abcde", labels={
                "jobset.sigs.k8s.io/jobset-name": name, "batch.kubernetes.io/job-completion-index": str(i)}),
                status=V1PodStatus(phase=phase))

        self.pod_list = V1PodList(items=[pod(0, "Running"), pod(1, "Failed"), pod(2, "Running")])
        self.selectors, self.log_calls = [], []

    def list_namespaced_pod(self, namespace, label_selector=None, **_):
        self.selectors.append((namespace, label_selector))
        return self.pod_list

    def read_namespaced_pod_log(self, name, namespace, container=None, tail_lines=None, **_):
        self.log_calls.append((name, container, tail_lines))
        if name.endswith("-1-abcde"):
            return "step 10\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
        return "step 10\nwaiting for peers"


def trainjob_client(statuses=(), **kw) -> TrainJobClient:
    return TrainJobClient(namespace="team-a", custom_api=FakeCustomObjectsApi(statuses, **kw),
                               core_api=FakeCoreV1Api())


COMPLETE = {"conditions": [{"type": "Created", "status": "True", "reason": "JobsCreated", "message": "",
                            "lastTransitionTime": "2026-12-01T10:00:00Z"},
                           {"type": "Complete", "status": "True", "reason": "JobsCompleted",
                            "message": "jobset completed successfully", "lastTransitionTime": "2026-12-01T12:00:00Z"}]}
FAILED = {"conditions": [{"type": "Failed", "status": "True", "reason": "FailedJobs",
                          "message": "jobset failed: job faceparse-train-x-node-0 failed (PodFailurePolicy)",
                          "lastTransitionTime": "2026-12-01T11:00:00Z"}]}


@pytest.fixture
def no_s3(monkeypatch):
    """Staging and collecting through S3 recorded instead of done (tests/integration/test_kfp_local.py runs
    the PyTorchJob round trip through a real S3 server)."""
    rec = SimpleNamespace(staged=[], collected=[])

    def stage_inputs(params, stage, include_dataset=True):
        rec.staged.append((copy.deepcopy(params), stage, include_dataset))
        return []

    def collect_outputs(stage, bundle_dir, what="PyTorchJob"):
        rec.collected.append((stage, str(bundle_dir), what))
        return {"bundle": str(bundle_dir), "mlflow_run_id": "run-1", "val": {"mean_f1": 0.5}}

    monkeypatch.setattr(staging, "stage_inputs", stage_inputs)
    monkeypatch.setattr(staging, "collect_outputs", collect_outputs)
    return rec


def stage_params(stage: str, tmp_path: Path) -> dict:
    return component_params(PARAMS_YAML, [], {"data.dir": str(tmp_path / "dataset"),
                                                   "train.bundle_dir": str(tmp_path / "model")}, stage=stage)


@pytest.mark.parametrize("stage", ["parser", "landmarks"])
@pytest.mark.parametrize("launcher", ["pytorchjob", "trainjob"])
def test_launcher_manifest_validates_against_the_upstream_crd(launcher, stage, no_s3, tmp_path):
    """train_distributed for the model stage → the manifest the cluster client receives validates against
    the schema generated from the upstream CRD (and the operator's admission rules)."""
    params = stage_params(stage, tmp_path)
    name = f"faceparse-{stage}-x"
    if launcher == "pytorchjob":
        client = RecordingTrainingClient()
    else:
        client = trainjob_client([COMPLETE])
    result = train_distributed(params, launcher=launcher, client=client, job_name=name,
                                    **{launcher: {"workers": 3, "gpus_per_worker": 4}})
    manifest = client.manifest() if launcher == "pytorchjob" else client.custom.created[-1][1]
    cs.validate(manifest)
    assert manifest["metadata"] == {"name": name, "namespace": "team-a", "labels": {
        "app.kubernetes.io/name": "faceparse", "app.kubernetes.io/component": "train"}}

    (staged, uri, with_dataset), = no_s3.staged
    assert staged["stage"] == stage and staged["model"] == params["model"] and with_dataset
    assert uri == f"s3://faceparse/{launcher}s/{name}"
    assert no_s3.collected == [(uri, str(tmp_path / "model"), KIND if launcher == "pytorchjob" else "TrainJob")]
    assert result["bundle"] == str(tmp_path / "model")
    if launcher == "pytorchjob":
        specs = manifest["spec"]["pytorchReplicaSpecs"]
        assert (specs["Master"]["replicas"], specs["Worker"]["replicas"], manifest["spec"]["nprocPerNode"]) == (1, 2, "4")
        command = specs["Master"]["template"]["spec"]["containers"][0]["command"]
    else:
        trainer = manifest["spec"]["trainer"]
        assert (trainer["numNodes"], trainer["numProcPerNode"]) == (3, 4)
        assert trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "4"
        assert manifest["spec"]["runtimeRef"] == {"apiGroup": "trainer.kubeflow.org", "kind": "ClusterTrainingRuntime",
                                                  "name": TRAINJOB_RUNTIME}
        command = trainer["command"]
    assert command == ["python", "-m", "faceparse.launch", "worker", "--staged", uri]


def test_trainjob_and_pytorchjob_pods_match():
    """The two launchers run the same pod: image, command, env (the secrets: envFrom vs one key each),
    resources, volumes and mounts, scheduling, security, labels."""
    settings = {"data_pvc": "faceparse-data", "service_account": "trainer", "workers": 2, "gpus_per_worker": 8}
    pj = build_pytorchjob(settings, "faceparse-train-x", "s3://b/x")
    tj = build_trainjob(settings, "faceparse-train-x", "s3://b/x")
    pod = pj["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]
    c = pod["spec"]["containers"][0]
    trainer = tj["spec"]["trainer"]
    (rj,) = tj["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    patch = rj["template"]["spec"]["template"]
    (pc,) = patch["spec"]["containers"]
    assert (trainer["image"], trainer["command"], trainer["resourcesPerNode"]) == (c["image"], c["command"], c["resources"])
    assert [e for e in trainer["env"] if "value" in e] == c["env"]
    assert {e["valueFrom"]["secretKeyRef"]["name"] for e in trainer["env"] if "valueFrom" in e} == \
        {r["secretRef"]["name"] for r in c["envFrom"]}
    assert (pc["name"], pc["volumeMounts"], pc["securityContext"]) == ("node", c["volumeMounts"], c["securityContext"])
    assert patch["metadata"] == pod["metadata"]
    for key in ("volumes", "nodeSelector", "tolerations", "securityContext", "serviceAccountName"):
        assert patch["spec"][key] == pod["spec"][key], key


def test_trainjob_secret_env_reads_the_secret_templates_keys():
    template = {d["metadata"]["name"]: set(d["stringData"]) for d in load_docs(K8S / "secrets.template.yaml")}
    env = build_trainjob({}, "faceparse-train-x", "s3://b/x")["spec"]["trainer"]["env"]
    refs = [e["valueFrom"]["secretKeyRef"] for e in env if "valueFrom" in e]
    required = {(r["name"], r["key"]) for r in refs if not r.get("optional")}
    assert required == {(S3_SECRET, "AWS_ACCESS_KEY_ID"), (S3_SECRET, "AWS_SECRET_ACCESS_KEY"),
                        (MLFLOW_SECRET, "MLFLOW_TRACKING_URI")}
    for secret, key in required:
        assert key in template[secret], (secret, key)
    assert {(r["name"], r["key"]) for r in refs} >= {(S3_SECRET, k) for k in template[S3_SECRET]}


def test_kfp_struct_settings_build_integer_fields():
    """kfp hands dict parameters over as protobuf Structs: every number arrives as a float."""
    floats = {k: float(v) if isinstance(v, int) else v for k, v in TRAINJOB_DEFAULTS.items()}
    job = build_trainjob(floats, "faceparse-train-x", "s3://b/x")
    assert job == build_trainjob(None, "faceparse-train-x", "s3://b/x")
    cs.validate(job)


def _patch_pod(j):
    return j["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0][
        "template"]["spec"]["template"]["spec"]


def _rename(d: dict, old: str, new: str) -> None:
    d[new] = d.pop(old)


def _pytorchjob():
    return build_pytorchjob({}, "faceparse-train-x", "s3://b/x")


def _trainjob():
    return build_trainjob({}, "faceparse-train-x", "s3://b/x")


def _isvc():
    return next(d for d in load_docs(REPO / "infra" / "kserve" / "inferenceservice.yaml") if d["kind"] == "InferenceService")


# name → (a valid manifest, how to break it, what the error must say)
BROKEN = {
    "pytorchjob-replicaSpecs": (_pytorchjob, lambda j: _rename(j["spec"], "pytorchReplicaSpecs", "replicaSpecs"),
                                "'replicaSpecs' was unexpected"),
    "pytorchjob-runPolicy": (_pytorchjob, lambda j: _rename(j["spec"]["runPolicy"], "backoffLimit", "backOffLimit"),
                             "spec/runPolicy: Additional properties are not allowed ('backOffLimit' was unexpected)"),
    "pytorchjob-pod-field": (_pytorchjob, lambda j: _rename(j["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"],
                                                            "nodeSelector", "nodeSelecter"), "'nodeSelecter' was unexpected"),
    "trainjob-numNodes": (_trainjob, lambda j: _rename(j["spec"]["trainer"], "numNodes", "numNode"),
                          "spec/trainer: Additional properties are not allowed ('numNode' was unexpected)"),
    "trainjob-runtimeRef": (_trainjob, lambda j: _rename(j["spec"], "runtimeRef", "runtime"),
                            "'runtimeRef' is a required property"),
    "trainjob-patch-pod-field": (_trainjob, lambda j: _rename(_patch_pod(j), "tolerations", "toleration"),
                                 "'toleration' was unexpected"),
    "trainjob-mount-field": (_trainjob, lambda j: _rename(_patch_pod(j)["containers"][0]["volumeMounts"][0],
                                                          "mountPath", "mountpath"), "'mountpath' was unexpected"),
    "trainjob-numNodes-type": (_trainjob, lambda j: j["spec"]["trainer"].update(numNodes="2"),
                               "'2' is not of type 'integer'"),
    "trainjob-duplicate-env": (_trainjob, lambda j: j["spec"]["trainer"]["env"].append({"name": "NCCL_DEBUG", "value": "INFO"}),
                               "duplicate entries for list-map key {'name': 'NCCL_DEBUG'}"),
    "trainjob-reserved-env": (_trainjob, lambda j: j["spec"]["trainer"]["env"].append({"name": "PET_NNODES", "value": "4"}),
                              "PET_NNODES is set by the torch runtime plugin"),
    "trainjob-name": (_trainjob, lambda j: j["metadata"].update(name="9-faceparse"), "must be a DNS-1035 label"),
    "runtime-field": (build_trainingruntime, lambda r: _rename(r["spec"]["template"]["spec"]["replicatedJobs"][0]
                                                                    ["template"]["spec"], "backoffLimit", "backofLimit"),
                      "'backofLimit' was unexpected"),
    "runtime-no-node": (build_trainingruntime,
                        lambda r: r["spec"]["template"]["spec"]["replicatedJobs"][0].update(name="trainer"),
                        "a torch runtime needs a replicated job named node"),
    "isvc-canary": (_isvc, lambda i: _rename(i["spec"]["predictor"], "canaryTrafficPercent", "canaryTraficPercent"),
                    "spec/predictor: Additional properties are not allowed ('canaryTraficPercent' was unexpected)"),
    "isvc-storage": (_isvc, lambda i: _rename(i["spec"]["predictor"]["model"], "storageUri", "storageURI"),
                     "'storageURI' was unexpected"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_misspelt_field_fails_validation(name):
    build, breaker, message = BROKEN[name]
    doc = build()
    cs.validate(doc)
    breaker(doc)
    with pytest.raises(cs.ManifestError, match=re.escape(message)):
        cs.validate(doc)


def test_infra_custom_resources_validate():
    """Every custom resource in infra/ (the rendered PyTorchJob and TrainJob, the runtime, the KServe
    InferenceService) validates against its upstream CRD; the TrainJob references the runtime."""
    found = {}
    for path in [*sorted(K8S.rglob("*.yaml")), REPO / "infra" / "kserve" / "inferenceservice.yaml"]:
        for doc in load_docs(path):
            if doc.get("kind") in cs.SOURCES:
                cs.validate(doc)
                found[doc["kind"]] = doc
    assert set(found) == set(cs.SOURCES)
    assert found["TrainJob"]["spec"]["runtimeRef"]["name"] == found["ClusterTrainingRuntime"]["metadata"]["name"]
    assert cs.main(["validate", str(K8S / "trainjob.yaml"), str(K8S / "clustertrainingruntime.yaml")]) == 0


def test_committed_trainjob_and_runtime_are_the_builders_output():
    """infra/k8s/trainjob.yaml = `python -m faceparse.launch render --kind trainjob --name faceparse-train`;
    infra/k8s/clustertrainingruntime.yaml = build_trainingruntime() (formatted by hand: compared parsed)."""
    (tj,) = load_docs(K8S / "trainjob.yaml")
    s = trainjob_settings(None)
    assert tj == build_trainjob(s, "faceparse-train", stage_uri(s, "faceparse-train"))
    (rt,) = load_docs(K8S / "clustertrainingruntime.yaml")
    assert rt == build_trainingruntime()
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert "clustertrainingruntime.yaml" not in kustomization["resources"]  # cluster-scoped, needs Trainer v2


def test_trainjob_settings_are_checked():
    with pytest.raises(ValueError, match=r"trainjob settings: unknown keys \['restart_policy'\]"):
        trainjob_settings({"restart_policy": "ExitCode"})  # the runtime's business, not the job's
    with pytest.raises(ValueError, match="runtime_kind 'Runtime'"):
        trainjob_settings({"runtime_kind": "Runtime"})
    with pytest.raises(ValueError, match="≥ 1"):
        trainjob_settings({"gpus_per_worker": 0})
    job = build_trainjob({"runtime": "my-torch", "runtime_kind": "TrainingRuntime", "namespace": "ml"},
                              "faceparse-train-x", "s3://b/x")
    assert job["spec"]["runtimeRef"]["kind"] == "TrainingRuntime" and job["metadata"]["namespace"] == "ml"


def test_rbac_lets_the_pipeline_launch_and_watch_trainjobs():
    role = next(d for d in load_docs(K8S / "rbac.yaml") if d["kind"] == "Role")
    rules = {(g, r): set(rule["verbs"]) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    assert {"create", "get", "list", "watch", "delete"} <= rules[("trainer.kubeflow.org", "trainjobs")]
    assert {"get", "list"} <= rules[("", "pods")] and "get" in rules[("", "pods/log")]


# ------------------------------------------------------------------------------------------ TrainJob launch / wait
class Clock:
    def __init__(self):
        self.t, self.sleeps = 0.0, []

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.t += s


def test_trainjob_is_created_and_polled_until_complete(capsys):
    client, clock = trainjob_client([None, {"conditions": COMPLETE["conditions"][:1]}, COMPLETE]), Clock()
    job = _trainjob()
    final = launch_trainjob(job, client=client, timeout_s=600, poll_s=10, sleep=clock.sleep, clock=clock)
    (ns, body), = client.custom.created
    assert ns == "team-a"  # the client's namespace (the pipeline pod's own) when the settings name none
    assert body == {**job, "metadata": {**job["metadata"], "namespace": "team-a"}}
    assert final["status"] == COMPLETE and client.custom.gets == 3 and clock.sleeps == [10, 10]
    out = capsys.readouterr().out
    assert "created TrainJob team-a/faceparse-train-x: runtime faceparse-torch-distributed, 2 nodes × 8 processes" in out
    assert out.count("Created (JobsCreated)") == 1 and "Complete (JobsCompleted)" in out


def test_trainjob_failure_names_the_job_and_shows_the_pods_logs():
    client = trainjob_client([FAILED])
    with pytest.raises(TrainJobError) as e:
        launch_trainjob(build_trainjob({"namespace": "ml"}, "faceparse-train-x", "s3://b/x"),
                             client=client, sleep=Clock().sleep)
    msg = str(e.value)
    assert msg.startswith("TrainJob ml/faceparse-train-x failed (Failed: FailedJobs jobset failed: job "
                          "faceparse-train-x-node-0 failed (PodFailurePolicy)); node log tail:")
    assert "[faceparse-train-x-node-0-1-abcde] torch.OutOfMemoryError: CUDA out of memory" in msg
    assert "[faceparse-train-x-node-0-0-abcde] waiting for peers" in msg and "-node-0-2-" not in msg
    assert client.core.selectors == [("ml", "jobset.sigs.k8s.io/jobset-name=faceparse-train-x")]
    assert [c[0] for c in client.core.log_calls] == ["faceparse-train-x-node-0-1-abcde", "faceparse-train-x-node-0-0-abcde"]
    assert {(c[1], c[2]) for c in client.core.log_calls} == {("node", 60)}


def test_trainjob_timeout_deletes_the_job():
    client, clock = trainjob_client([None]), Clock()
    with pytest.raises(TrainJobError, match="TrainJob team-a/faceparse-train-x did not complete within 60 s; deleted it"):
        launch_trainjob(_trainjob(), client=client, timeout_s=60, poll_s=25, sleep=clock.sleep, clock=clock)
    assert client.custom.deleted == [("team-a", "faceparse-train-x")] and clock.sleeps == [25, 25, 25]


def test_trainjob_creation_refused_is_clear():
    from kubernetes.client.exceptions import ApiException

    err = ApiException(status=422, reason="Unprocessable Entity")
    err.body = json.dumps({"kind": "Status", "message": 'TrainJob.trainer.kubeflow.org "faceparse-train-x" is invalid: '
                                                        'spec.runtimeRef: Invalid value: "faceparse-torch-distributed": '
                                                        'ClusterTrainingRuntime not found'})
    client = trainjob_client(create_error=err)
    with pytest.raises(TrainJobError, match=r"team-a/faceparse-train-x: could not be created: \(422\) "
                                                 r"Unprocessable Entity: .*ClusterTrainingRuntime not found"):
        launch_trainjob(_trainjob(), client=client)
    assert client.custom.created == []


def test_trainjob_polling_survives_transient_api_errors_but_not_a_deleted_job():
    from kubernetes.client.exceptions import ApiException

    flaky = trainjob_client([COMPLETE], get_errors=[ApiException(status=503), ApiException(status=500), None])
    assert launch_trainjob(_trainjob(), client=flaky, sleep=Clock().sleep)["status"] == COMPLETE
    down = trainjob_client([None], get_errors=[ApiException(status=503, reason="Service Unavailable")] * 5)
    with pytest.raises(TrainJobError, match=r"the API failed 5 times in a row: \(503\) Service Unavailable"):
        launch_trainjob(_trainjob(), client=down, sleep=Clock().sleep)
    gone = trainjob_client([None], get_errors=[ApiException(status=404, reason="Not Found")])
    with pytest.raises(TrainJobError, match="disappeared while waited for"):
        launch_trainjob(_trainjob(), client=gone, sleep=Clock().sleep)


def test_trainjob_without_a_cluster_fails_clearly(monkeypatch, tmp_path):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(TrainJobError, match="TrainJob faceparse-train-x: no Kubernetes API to create it in"):
        launch_trainjob(_trainjob())


def test_worker_reads_trainer_v2_torch_env(monkeypatch, tmp_path):
    """In a TrainJob pod the torch plugin sets PET_MASTER_ADDR / PET_MASTER_PORT (no MASTER_*)."""
    import faceparse.data.storage as storage

    def fetch(uri, dst):
        p = Path(dst) / Path(uri).name
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.name == "params.yaml":
            p.write_text(PARAMS_YAML)
            return p
        raise FileNotFoundError(uri)

    cmds = []
    monkeypatch.setattr(storage, "fetch", fetch)
    monkeypatch.setattr(storage, "upload", lambda *a, **k: pytest.fail("node rank 1 uploads nothing"))
    monkeypatch.setattr(worker, "tee", lambda cmd, env: (cmds.append(cmd), (0, ""))[1])
    for k in ("MASTER_ADDR", "MASTER_PORT", "RANK"):
        monkeypatch.delenv(k, raising=False)
    for k, v in {"PET_NNODES": "2", "PET_NPROC_PER_NODE": "8", "PET_NODE_RANK": "1",
                 "PET_MASTER_ADDR": "faceparse-train-x-node-0-0.faceparse-train-x", "PET_MASTER_PORT": "29500"}.items():
        monkeypatch.setenv(k, v)
    assert worker_main("s3://b/x", data_dir="/mnt/data/processed", workdir=str(tmp_path)) == 0
    (cmd,) = cmds
    args = dict(zip(cmd[3::2], cmd[4::2]))
    assert args["--nnodes"] == "2" and args["--node-rank"] == "1" and args["--nproc-per-node"] == "8"
    assert args["--master-addr"] == "faceparse-train-x-node-0-0.faceparse-train-x" and args["--master-port"] == "29500"


# ------------------------------------------------------------------------------------------ pipeline, component, CLI
def test_compiled_pipeline_carries_the_launcher_choice():
    spec, _ = list(yaml.safe_load_all((REPO / "pipelines" / "faceparse_pipeline.yaml").read_text()))
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["launcher"]["defaultValue"] == "pytorchjob"
    assert params["trainjob"]["defaultValue"] == json.loads(json.dumps(TRAINJOB_DEFAULTS))
    assert params["pytorchjob"]["defaultValue"] == json.loads(json.dumps(PYTORCHJOB_DEFAULTS))
    trains = [t for c in spec["components"].values() for n, t in c.get("dag", {}).get("tasks", {}).items()
              if t["componentRef"]["name"] in ("comp-train", "comp-train-2", "comp-train-3")]
    assert len(trains) == 3  # parser, landmarks and fisn
    for t in trains:
        p = t["inputs"]["parameters"]
        for name in ("launcher", "pytorchjob", "trainjob"):
            assert p[name] == {"componentInputParameter": f"pipelinechannel--{name}"}, (t["taskInfo"], name)
    src = spec["deploymentSpec"]["executors"]["exec-train"]["container"]["command"][-1]
    assert "trainjob=trainjob" in src


def test_train_component_passes_the_trainjob_settings(monkeypatch, tmp_path):
    import components as c
    from kfp.dsl import Artifact, Dataset, Model

    seen = {}

    def fake(params, **kw):
        seen.update(kw, stage=params["stage"])
        return {"mlflow_run_id": "r", "val": {"nme": 0.1}}

    monkeypatch.setattr(dispatch, "train_distributed", fake)
    model = Model(name="m", uri=str(tmp_path / "m"))
    out = c.train.python_func(params_yaml=PARAMS_YAML, overrides=[], dataset=Dataset(name="d", uri=str(tmp_path / "d")),
                              validation=Artifact(name="v", uri=str(tmp_path / "v")), model=model, launcher="trainjob",
                              trainjob={"workers": 4}, stage="landmarks")
    assert seen == {"launcher": "trainjob", "nproc": 2, "pytorchjob": {}, "trainjob": {"workers": 4}, "stage": "landmarks"}
    assert out.val_metric == 0.1 and model.metadata["launcher"] == "trainjob"


def test_faceparse_train_launcher_option(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from faceparse.cli import app

    calls = []

    def fake(params, **kw):
        calls.append((params["stage"], kw))
        if kw["launcher"] == "pytorchjob":
            raise PyTorchJobError("PyTorchJob team-a/x failed (Failed: …); master log tail:\nboom")
        return {"bundle": "b", "mlflow_run_id": "r"}

    monkeypatch.setattr(dispatch, "train_distributed", fake)
    settings = tmp_path / "cluster.yaml"
    settings.write_text("workers: 4\ngpus_per_worker: 2\n")
    runner = CliRunner()
    base = ["train", "--params", str(REPO / "params.yaml"), "--stage", "landmarks"]
    r = runner.invoke(app, [*base, "--launcher", "trainjob", "--cluster-settings", str(settings), "--job-name", "lm-1"])
    assert r.exit_code == 0, r.output
    assert calls[-1] == ("landmarks", {"launcher": "trainjob", "nproc": 2, "job_name": "lm-1",
                                       "trainjob": {"workers": 4, "gpus_per_worker": 2}})
    assert json.loads(r.stdout[r.stdout.index("{"):]) == {"bundle": "b", "mlflow_run_id": "r"}

    r = runner.invoke(app, [*base, "--launcher", "pytorchjob"])
    assert r.exit_code == 1 and "failed (Failed" in r.output and "Traceback" not in r.output
    for bad, message in [(["--launcher", "slurm"], "is not one of ['local', 'pytorchjob', 'trainjob']"),
                         (["--launcher", "trainjob", "--resume"], "--resume works in this process only"),
                         (["--launcher", "local", "--cluster-settings", str(settings)], "--cluster-settings is for")]:
        r = runner.invoke(app, [*base, *bad])
        assert r.exit_code == 2 and message in " ".join(r.output.split()), (bad, r.output)


def test_readme_cluster_section_shows_both_launchers():
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Kubeflow pipeline"):]
    section = section[:section.index("\n## ", 5)]
    for text in ("launcher=pytorchjob", "launcher=trainjob", "PyTorchJob", "TrainJob", "clustertrainingruntime.yaml",
                 "--launcher trainjob", "infra/schemas/upstream"):
        assert text in section, text
