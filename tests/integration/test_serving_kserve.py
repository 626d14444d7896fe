"""KServe: the InferenceService spec validated offline, and the storage layout `faceparse package --upload`
writes to a real S3 server (SeaweedFS).

Validation: KServe's CRDs are not core Kubernetes schemas, so (1) the InferenceService is checked against
the JSON schema generated from KServe's own CRD (infra/schemas/upstream/, scripts/crd_schemas.py: every
field the CRD lists, closed: a misspelt field fails), plus this project's rules the CRD does not express
(canary percent range, storage URI with a path, the pytorch model format, a known protocol); (2) the core
kinds in the file (ServiceAccount) and a Pod built from the predictor's container fields (image, env,
resources) are checked with kubernetes-validate in strict mode against the core 1.37 schemas."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "infra" / "kserve" / "inferenceservice.yaml"
if str(REPO) not in sys.path:  # scripts/ lives at the repo root
    sys.path.insert(0, str(REPO))


def docs() -> dict[str, dict]:
    return {d["kind"]: d for d in yaml.safe_load_all(SPEC.read_text()) if d}


def check_isvc(doc: dict) -> None:
    from scripts import crd_schemas

    crd_schemas.validate(doc)  # ManifestError: the upstream CRD's schema refuses it
    pred = doc["spec"]["predictor"]
    assert 0 <= pred.get("canaryTrafficPercent", 100) <= 100
    assert re.match(r"^(s3|gs|pvc|https?)://[^/]+/.+[^/]$", pred["model"]["storageUri"])
    assert pred["model"]["modelFormat"]["name"] == "pytorch"
    assert pred["model"].get("protocolVersion", "v1") in ("v1", "v2", "grpc-v2")
    assert pred.get("minReplicas", 1) <= pred.get("maxReplicas", 1)
    if "canaryTrafficPercent" in pred:  # canary splitting exists in Serverless mode only
        assert doc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Serverless"
    env = {e["name"]: e.get("value") for e in pred["model"].get("env", [])}
    if pred["model"].get("protocolVersion") == "v1":
        assert env.get("TS_SERVICE_ENVELOPE") == "kserve"


def test_inferenceservice_schema():
    d = docs()
    isvc = d["InferenceService"]
    check_isvc(isvc)
    pred = isvc["spec"]["predictor"]
    assert pred["serviceAccountName"] == d["ServiceAccount"]["metadata"]["name"]
    assert pred["model"]["storageUri"].startswith("s3://")


@pytest.mark.parametrize("edit", [
    lambda p: p.__setitem__("canaryTraficPercent", 10),                  # misspelt
    lambda p: p.__setitem__("canaryTrafficPercent", 150),
    lambda p: p["model"].__setitem__("storageUri", "s3://bucket-only/"),
    lambda p: p["model"]["modelFormat"].__setitem__("name", "tensorflow"),
    lambda p: p["model"].__setitem__("protocolVersion", "v3"),
])
def test_schema_catches_mistakes(edit):
    from scripts import crd_schemas

    isvc = docs()["InferenceService"]
    edit(isvc["spec"]["predictor"])
    with pytest.raises((crd_schemas.ManifestError, AssertionError)):
        check_isvc(isvc)


def test_core_parts_with_kubernetes_validate():
    kv = pytest.importorskip("kubernetes_validate")
    d = docs()
    kv.validate(d["ServiceAccount"], "1.37.0", strict=True)
    model = d["InferenceService"]["spec"]["predictor"]["model"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "kserve-container-check"},
           "spec": {"serviceAccountName": d["ServiceAccount"]["metadata"]["name"],
                    "containers": [{"name": "kserve-container", "image": model["image"],
                                    "env": model.get("env", []), "resources": model.get("resources", {})}]}}
    kv.validate(pod, "1.37.0", strict=True)
    pod["spec"]["containers"][0]["env"][0]["valu"] = "x"   # strict mode refuses unknown fields
    with pytest.raises(kv.ValidationError):
        kv.validate(pod, "1.37.0", strict=True)


def test_kserve_config_properties():
    from faceparse.config import load_params
    from faceparse.serve.package import kserve_config_properties

    text = kserve_config_properties(load_params(REPO / "params.yaml"), "faceparse-fpliif", "3", "faceparse-fpliif-v3.mar")
    props = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    snap = json.loads(props["model_snapshot"])
    entry = snap["models"]["faceparse-fpliif"]["3"]
    assert entry["marName"] == "faceparse-fpliif-v3.mar" and entry["defaultVersion"] is True
    assert props["model_store"] == "/mnt/models/model-store" and props["enable_model_api"] == "false"
    assert props["enable_envvars_config"] == "true"


@pytest.mark.integration
def test_package_upload_kserve_layout(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from s3server import SeaweedS3

    from faceparse.serve.testing import tiny_bundle

    bundle = tiny_bundle(tmp_path / "bundle")
    with SeaweedS3(tmp_path / "s3", buckets=["faceparse-models"]) as s3:
        prefix = "s3://faceparse-models/serving/faceparse-fpliif/v5"
        r = subprocess.run([sys.executable, "-m", "faceparse", "package", "--model", str(bundle), "--version", "5",
                            "--model-store", str(tmp_path / "store"), "--upload", prefix],
                           capture_output=True, text=True, timeout=300, cwd=REPO, env=s3.env())
        assert r.returncode == 0, r.stderr[-2000:]
        keys = sorted(o["Key"] for o in s3.client().list_objects_v2(Bucket="faceparse-models")["Contents"])
        assert keys == ["serving/faceparse-fpliif/v5/config/config.properties",
                        "serving/faceparse-fpliif/v5/model-store/faceparse-fpliif-v5.mar"]
        body = s3.client().get_object(Bucket="faceparse-models", Key=keys[0])["Body"].read().decode()
        assert '"marName":"faceparse-fpliif-v5.mar"' in body
        mar = s3.client().get_object(Bucket="faceparse-models", Key=keys[1])["Body"].read()
        assert mar == (tmp_path / "store" / "faceparse-fpliif-v5.mar").read_bytes()
        isvc = docs()["InferenceService"]
        isvc["spec"]["predictor"]["model"]["storageUri"] = prefix
        check_isvc(isvc)
