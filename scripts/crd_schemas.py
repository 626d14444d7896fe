"""JSON schemas generated from the upstream CRDs, and manifest validation against them.

    python scripts/crd_schemas.py list                      # the CRDs, their upstream source and version
    python scripts/crd_schemas.py validate FILE.yaml ...    # validate every custom-resource document
    python scripts/crd_schemas.py generate --out DIR        # write the generated JSON schemas (kubeconform etc.)
    python scripts/crd_schemas.py import KIND CRD.yaml      # take a new upstream CRD file (then edit SOURCES)

The CRDs are copied verbatim from upstream into ``infra/schemas/upstream/`` (gzip of the upstream file,
byte for byte; ``SOURCES`` and that folder's README name repository, path, tag, commit and the sha256 of
the uncompressed file, which :func:`load_crd` checks). Nothing generated is committed: the schemas are
derived from the CRDs on use (a fraction of a second each, ~2 s for KServe's 1.9 MB CRD).

How a CRD's ``openAPIV3Schema`` (a Kubernetes *structural* schema) becomes a JSON Schema (draft 2020-12):

* validation keywords are kept (``type properties required items additionalProperties enum pattern
  minimum maximum minLength maxLength minItems maxItems minProperties maxProperties anyOf allOf oneOf not
  format``); ``description`` / ``default`` / ``example`` are dropped; OpenAPI's ``nullable`` becomes a
  ``null`` type; boolean ``exclusiveMinimum/Maximum`` become the numeric form.
* **unknown fields fail.** The API server *prunes* fields a structural schema does not list (they vanish
  silently instead of failing), so a misspelt field is a silent bug on a cluster. The generated schema
  therefore closes every object schema that lists its fields (``additionalProperties: false``) and every
  ``type: object`` without properties (the server would prune all of its content). Not closed: objects with
  ``x-kubernetes-preserve-unknown-fields: true`` (kept by the server), map types (``additionalProperties``
  given), and the branches of ``anyOf / allOf / oneOf / not`` (they only add constraints to the fields the
  enclosing schema lists).
* ``x-kubernetes-int-or-string`` → ``anyOf [integer, string]``; ``x-kubernetes-list-type: set`` →
  ``uniqueItems``; ``x-kubernetes-list-type: map`` + ``x-kubernetes-list-map-keys`` → a custom keyword
  checking that no two items share the key (a duplicate env var name, container name, ...);
  ``x-kubernetes-embedded-resource`` → ``apiVersion`` and ``kind`` required; ``x-kubernetes-map-type`` and
  the list types ``atomic`` / ``granular`` only steer server-side apply and are dropped.
* ``x-kubernetes-validations`` (CEL rules) are **not** evaluated (no CEL here); the few that matter for
  what this project creates are ported by hand below (``ADMISSION``), next to the rules the operators'
  admission webhooks enforce (PyTorchJob: one Master, a ``pytorch`` container, ...). Any other
  ``x-kubernetes-*`` extension, or a keyword not listed here, stops generation: a new upstream version
  that uses one must be looked at, not silently half-checked.
* the root gets ``apiVersion`` / ``kind`` as constants, ``metadata`` as the core ``ObjectMeta`` (strict
  schema shipped with kubernetes-validate, Kubernetes ``K8S_VERSION``) with ``name`` or ``generateName``
  required.
"""
from __future__ import annotations

import argparse
import copy
import functools
import gzip
import hashlib
import json
import re
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

REPO = Path(__file__).resolve().parents[1]
UPSTREAM = REPO / "infra" / "schemas" / "upstream"
K8S_VERSION = "1.32.0"  # core schemas (ObjectMeta) from kubernetes-validate; the cluster version targeted
K8S_DEFINITIONS = "https://kubernetes.io/api/_definitions.json"
OBJECT_META = f"{K8S_DEFINITIONS}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"

# kind → where its CRD comes from. ``sha256`` is the upstream file's (uncompressed) digest.
SOURCES: dict[str, dict[str, str]] = {
    "PyTorchJob": {
        "file": "kubeflow.org_pytorchjobs.yaml.gz",
        "repo": "kubeflow/trainer",  # formerly kubeflow/training-operator (renamed; same history and tags)
        "path": "manifests/base/crds/kubeflow.org_pytorchjobs.yaml",
        "ref": "v1.9.4",  # Training Operator v1.9.4 = the kubeflow-training 1.9.4 SDK in requirements.lock
        "commit": "4445c12aa62e4345b0c2c6ac9b215a70eca46ed7",
        "sha256": "8b8a8a719cc94173169290251e817f7ac2bb425c20b6c2fa813397bcf4e932ed",
    },
    "TrainJob": {
        "file": "trainer.kubeflow.org_trainjobs.yaml.gz",
        "repo": "kubeflow/trainer",
        "path": "manifests/base/crds/trainer.kubeflow.org_trainjobs.yaml",
        "ref": "v2.3.0",
        "commit": "658725bdae5c7e3a0854d93ac6ff492e109a22ab",
        "sha256": "a742cafc5b5582640c7e0b7467c024fc237256fbca5ba0a9f0531dfb66d64416",
    },
    "ClusterTrainingRuntime": {
        "file": "trainer.kubeflow.org_clustertrainingruntimes.yaml.gz",
        "repo": "kubeflow/trainer",
        "path": "manifests/base/crds/trainer.kubeflow.org_clustertrainingruntimes.yaml",
        "ref": "v2.3.0",
        "commit": "658725bdae5c7e3a0854d93ac6ff492e109a22ab",
        "sha256": "ec84dc3388fcdbe8c61d3c247a773d14458dd9438e995bea8e50d2a18080eef9",
    },
    "InferenceService": {
        "file": "serving.kserve.io_inferenceservices.yaml.gz",
        "repo": "kserve/kserve",
        "path": "config/crd/full/serving.kserve.io_inferenceservices.yaml",
        "ref": "v0.20.0",
        "commit": "1fb781055dd1567164358233e1125142ca6ef1fe",
        "sha256": "57c3bf13f77de94678bf2ae3748056ec071ad2b9e88d6a28f44fb4710758fcff",
    },
}

# keywords copied as they are (after converting their sub-schemas)
_PLAIN = {"type", "required", "enum", "pattern", "minimum", "maximum", "minLength", "maxLength", "minItems",
          "maxItems", "minProperties", "maxProperties", "multipleOf", "uniqueItems", "format"}
_DROPPED = {"description", "default", "example", "externalDocs", "title", "x-kubernetes-map-type",
            "x-kubernetes-validations"}  # CEL: see ADMISSION
_HANDLED = _PLAIN | _DROPPED | {"properties", "items", "additionalProperties", "anyOf", "allOf", "oneOf", "not",
                                "nullable", "exclusiveMinimum", "exclusiveMaximum", "x-kubernetes-int-or-string",
                                "x-kubernetes-preserve-unknown-fields", "x-kubernetes-embedded-resource",
                                "x-kubernetes-list-type", "x-kubernetes-list-map-keys"}
LIST_MAP_KEYS = "x-kubernetes-list-map-keys"  # kept in the output: checked by the custom keyword


class ManifestError(ValueError):
    """A manifest that the API server (or the operator's admission webhook) would refuse or prune."""


class SchemaGenerationError(ValueError):
    """The CRD uses something this translation does not know."""


# ------------------------------------------------------------------------------------------ the CRDs
def load_crd(kind: str) -> dict[str, Any]:
    """The upstream CRD of ``kind`` (integrity-checked against SOURCES)."""
    src = SOURCES[kind]
    raw = gzip.decompress((UPSTREAM / src["file"]).read_bytes())
    digest = hashlib.sha256(raw).hexdigest()
    if digest != src["sha256"]:
        raise SchemaGenerationError(f"{src['file']}: sha256 {digest} is not the recorded upstream {src['sha256']} "
                                    f"({src['repo']}@{src['ref']}:{src['path']})")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crd = yaml.load(raw, Loader=loader)  # noqa: S506 - a safe loader
    if crd.get("kind") != "CustomResourceDefinition" or crd["spec"]["names"]["kind"] != kind:
        raise SchemaGenerationError(f"{src['file']} is not the CustomResourceDefinition of {kind}")
    return crd


def crd_version(crd: dict[str, Any], version: str | None = None) -> dict[str, Any]:
    """The served version ``version`` (default: the storage version) of the CRD."""
    versions = crd["spec"]["versions"]
    for v in versions:
        if (v["name"] == version) if version else v.get("storage"):
            if not v.get("served", True):
                raise SchemaGenerationError(f"{crd['metadata']['name']} {v['name']} is not served")
            return v
    raise SchemaGenerationError(f"{crd['metadata']['name']}: no version {version!r} in {[v['name'] for v in versions]}")


# ------------------------------------------------------------------------------------------ translation
def convert(node: dict[str, Any], closed: bool = True, path: str = "") -> dict[str, Any]:
    """One structural-schema node → JSON Schema (see the module docstring for the rules)."""
    unknown = set(node) - _HANDLED
    if unknown:
        raise SchemaGenerationError(f"{path or '/'}: untranslated keyword(s) {sorted(unknown)}")
    out: dict[str, Any] = {k: copy.deepcopy(v) for k, v in node.items() if k in _PLAIN}
    if "properties" in node:
        out["properties"] = {k: convert(v, True, f"{path}/{k}") for k, v in node["properties"].items()}
    if "items" in node:
        out["items"] = convert(node["items"], True, f"{path}/[]")
    ap = node.get("additionalProperties")
    if isinstance(ap, dict):
        out["additionalProperties"] = convert(ap, True, f"{path}/*")
    elif ap is not None:
        out["additionalProperties"] = bool(ap)
    for k in ("anyOf", "allOf", "oneOf"):
        if k in node:
            out[k] = [convert(s, False, f"{path}/{k}[{i}]") for i, s in enumerate(node[k])]
    if "not" in node:
        out["not"] = convert(node["not"], False, f"{path}/not")
    for k, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if node.get(k) is True and bound in out:      # OpenAPI 3.0: a flag on minimum / maximum
            out[k] = out.pop(bound)
        elif isinstance(node.get(k), (int, float)) and not isinstance(node.get(k), bool):
            out[k] = node[k]
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if node.get("x-kubernetes-int-or-string") and "anyOf" not in out and "type" not in out:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    list_type = node.get("x-kubernetes-list-type")
    if list_type not in (None, "atomic", "set", "map"):
        raise SchemaGenerationError(f"{path}: unknown x-kubernetes-list-type {list_type!r}")
    if list_type == "set":
        out["uniqueItems"] = True
    if list_type == "map" and node.get(LIST_MAP_KEYS):
        out[LIST_MAP_KEYS] = list(node[LIST_MAP_KEYS])
    if node.get("x-kubernetes-embedded-resource"):
        out["required"] = sorted(set(out.get("required", [])) | {"apiVersion", "kind"})
    preserve = bool(node.get("x-kubernetes-preserve-unknown-fields"))
    is_object = node.get("type") == "object" or "properties" in node
    if closed and is_object and not preserve and "additionalProperties" not in node:
        out["additionalProperties"] = False
    return out


def crd_to_schema(crd: dict[str, Any], version: str | None = None, source: dict[str, str] | None = None) -> dict[str, Any]:
    """The JSON Schema of one served version of a CRD (``$ref`` to the core ObjectMeta for metadata)."""
    v = crd_version(crd, version)
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    root = copy.deepcopy(v["schema"]["openAPIV3Schema"])
    props = root.setdefault("properties", {})
    props["metadata"] = {"type": "object"}            # replaced below, after the translation
    schema = convert(root, True, "")
    schema["properties"]["apiVersion"] = {"const": f"{group}/{v['name']}"}
    schema["properties"]["kind"] = {"const": kind}
    schema["properties"]["metadata"] = {
        "allOf": [{"$ref": OBJECT_META}],
        "anyOf": [{"required": ["name"]}, {"required": ["generateName"]}],
    }
    schema["required"] = ["apiVersion", "kind", "metadata", *[r for r in schema.get("required", [])
                                                               if r not in ("apiVersion", "kind", "metadata")]]
    header = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://faceparse.dev/schemas/{group}/{v['name']}/{kind.lower()}.json",
        "title": f"{kind} ({group}/{v['name']})",
    }
    if source:
        header["$comment"] = (f"Generated by scripts/crd_schemas.py from {source['repo']}@{source['ref']} "
                              f"({source['commit']}) {source['path']}; do not edit.")
    return {**header, **schema}


@functools.lru_cache(maxsize=None)
def schema_for(kind: str) -> dict[str, Any]:
    return crd_to_schema(load_crd(kind), source=SOURCES[kind])


def api_version_of(kind: str) -> str:
    return schema_for(kind)["properties"]["apiVersion"]["const"]


# ------------------------------------------------------------------------------------------ validation
def _k8s_definitions() -> dict[str, Any]:
    import importlib_resources

    ref = importlib_resources.files("kubernetes_validate").joinpath(
        f"kubernetes-json-schema/v{K8S_VERSION}-local-strict/_definitions.json")
    return json.loads(ref.read_text())


def _list_map_keys(validator, keys, instance, schema) -> Iterator[Any]:
    """x-kubernetes-list-type: map: items are keyed by ``keys``; two items with the same key are refused."""
    from jsonschema.exceptions import ValidationError

    if not validator.is_type(instance, "array"):
        return
    seen: dict[str, int] = {}
    for i, item in enumerate(instance):
        if not isinstance(item, dict):
            continue
        key = json.dumps([item.get(k) for k in keys])
        if key in seen:
            yield ValidationError(f"duplicate entries for list-map key {dict(zip(keys, json.loads(key)))} "
                                  f"(items {seen[key]} and {i})")
        else:
            seen[key] = i


@functools.lru_cache(maxsize=None)
def _validator_class():
    import jsonschema

    return jsonschema.validators.extend(jsonschema.Draft202012Validator, {LIST_MAP_KEYS: _list_map_keys})


@functools.lru_cache(maxsize=None)
def _registry():
    from referencing import Registry, Resource

    return Registry().with_resources([(K8S_DEFINITIONS, Resource.from_contents(_k8s_definitions()))])


@functools.lru_cache(maxsize=None)
def validator(kind: str):
    """A jsonschema validator of ``kind``'s generated schema (cached)."""
    schema = schema_for(kind)
    return _validator_class()(schema, registry=_registry())


def _where(error) -> str:
    return "/".join(map(str, error.absolute_path)) or "(root)"


def schema_errors(doc: dict[str, Any]) -> list[str]:
    kind = doc.get("kind")
    if kind not in SOURCES:
        raise KeyError(f"no upstream CRD for kind {kind!r}; known: {sorted(SOURCES)}")
    errors = sorted(validator(kind).iter_errors(doc), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    return [f"{_where(e)}: {e.message[:300]}" for e in errors]


def errors(doc: dict[str, Any]) -> list[str]:
    """Everything wrong with the custom resource ``doc``: schema errors, then admission-rule errors."""
    found = schema_errors(doc)
    if not found:  # the admission rules read fields whose shape the schema guarantees
        found += [f"{p}: {m}" for p, m in ADMISSION.get(doc["kind"], lambda d: [])(doc)]
    return found


def validate(doc: dict[str, Any]) -> None:
    """Raise ManifestError listing every problem of the custom resource ``doc``."""
    found = errors(doc)
    if found:
        name = (doc.get("metadata") or {}).get("name", "?")
        raise ManifestError(f"{doc.get('kind')} {name}: " + "; ".join(found))


# ------------------------------------------------------------------------------------------ admission rules
DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def _name_rules(doc: dict[str, Any], max_len: int = 63) -> list[tuple[str, str]]:
    name = (doc.get("metadata") or {}).get("name")
    if name is None:
        return []
    out = []
    if not DNS1035.match(name):
        out.append(("metadata/name", f"{name!r} must be a DNS-1035 label ([a-z]([-a-z0-9]*[a-z0-9])?)"))
    if len(name) > max_len:
        out.append(("metadata/name", f"{name!r} must be no more than {max_len} characters"))
    return out


def pytorchjob_admission(job: dict[str, Any]) -> list[tuple[str, str]]:
    """The Training Operator's PyTorchJob webhook (kubeflow/trainer v1.9.4,
    pkg/webhooks/pytorch/pytorchjob_webhook.go: validatePyTorchJob / validatePyTorchReplicaSpecs)."""
    out = _name_rules(job)
    spec = job.get("spec") or {}
    for rtype, rspec in (spec.get("pytorchReplicaSpecs") or {}).items():
        where = f"spec/pytorchReplicaSpecs/{rtype}"
        if rtype not in ("Master", "Worker"):
            out.append((where, f"replica type {rtype!r} is not one of ['Master', 'Worker']"))
        containers = ((rspec or {}).get("template") or {}).get("spec", {}).get("containers") or []
        if not containers:
            out.append((f"{where}/template/spec/containers", "must be specified"))
        for i, c in enumerate(containers):
            if not c.get("image"):
                out.append((f"{where}/template/spec/containers/{i}/image", "must be required"))
        if containers and not any(c.get("name") == "pytorch" for c in containers):
            out.append((f"{where}/template/spec/containers", "must have at least one container with name pytorch"))
        replicas = (rspec or {}).get("replicas")
        if rtype == "Master" and replicas != 1:
            out.append((f"{where}/replicas", "must be 1"))
        elif rtype != "Master" and replicas is not None and replicas < 1:
            out.append((f"{where}/replicas", "must be at least 1"))
    if spec.get("elasticPolicy") and "Worker" not in (spec.get("pytorchReplicaSpecs") or {}):
        out.append(("spec/pytorchReplicaSpecs/Worker", "must be configured if elastic policy is used"))
    return out


def trainjob_admission(job: dict[str, Any]) -> list[tuple[str, str]]:
    """The CEL rules of the TrainJob CRD (v2.3.0) that a new TrainJob can break: metadata.name an RFC 1035
    label of ≤ 63 characters; runtimeRef.kind one of the runtime kinds; trainer.env not setting the PET_*
    variables the torch plugin owns (pkg/constants TorchRunReservedEnvNames)."""
    out = _name_rules(job)
    spec = job.get("spec") or {}
    ref = spec.get("runtimeRef") or {}
    if ref.get("kind", "ClusterTrainingRuntime") not in ("ClusterTrainingRuntime", "TrainingRuntime"):
        out.append(("spec/runtimeRef/kind", f"{ref.get('kind')!r} is not ClusterTrainingRuntime or TrainingRuntime"))
    reserved = {"PET_NNODES", "PET_NPROC_PER_NODE", "PET_NODE_RANK", "PET_MASTER_ADDR", "PET_MASTER_PORT"}
    for i, e in enumerate((spec.get("trainer") or {}).get("env") or []):
        if e.get("name") in reserved:
            out.append((f"spec/trainer/env/{i}", f"{e['name']} is set by the torch runtime plugin"))
    return out


def trainingruntime_admission(rt: dict[str, Any]) -> list[tuple[str, str]]:
    """What the Trainer's runtime webhook and torch plugin need of a torch runtime: a replicated job and
    container named ``node`` (the trainer step), labelled as the trainer ancestor."""
    out = []
    jobs = ((rt.get("spec") or {}).get("template") or {}).get("spec", {}).get("replicatedJobs") or []
    node = [j for j in jobs if j.get("name") == "node"]
    if (rt.get("spec") or {}).get("mlPolicy", {}).get("torch") is not None:
        if not node:
            out.append(("spec/template/spec/replicatedJobs", "a torch runtime needs a replicated job named node"))
        for j in node:
            labels = ((j.get("template") or {}).get("metadata") or {}).get("labels") or {}
            if labels.get("trainer.kubeflow.org/trainjob-ancestor-step") != "trainer":
                out.append(("spec/template/spec/replicatedJobs/node/template/metadata/labels",
                            "needs trainer.kubeflow.org/trainjob-ancestor-step: trainer"))
            containers = (((j.get("template") or {}).get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or []
            if not any(c.get("name") == "node" for c in containers):
                out.append(("spec/template/spec/replicatedJobs/node", "needs a container named node"))
    return out


ADMISSION: dict[str, Callable[[dict[str, Any]], list[tuple[str, str]]]] = {
    "PyTorchJob": pytorchjob_admission,
    "TrainJob": trainjob_admission,
    "ClusterTrainingRuntime": trainingruntime_admission,
}


# ------------------------------------------------------------------------------------------ CLI
def _cmd_list(_a) -> int:
    for kind, s in SOURCES.items():
        print(f"{kind:24} {s['repo']}@{s['ref']} ({s['commit'][:12]}) {s['path']}  → infra/schemas/upstream/{s['file']}")
    return 0


def _cmd_generate(a) -> int:
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for kind in a.kinds or SOURCES:
        p = out / f"{kind.lower()}.schema.json"
        p.write_text(json.dumps(schema_for(kind), indent=1, sort_keys=True) + "\n")
        print(p)
    return 0


def _cmd_validate(a) -> int:
    bad = 0
    for f in a.files:
        for i, doc in enumerate(d for d in yaml.safe_load_all(Path(f).read_text()) if d):
            if doc.get("kind") not in SOURCES:
                continue
            found = errors(doc)
            print(f"{f}[{i}] {doc['kind']} {doc.get('metadata', {}).get('name')}: {'ok' if not found else 'INVALID'}")
            for e in found:
                print(f"    {e}")
            bad += bool(found)
    return 1 if bad else 0


def _cmd_import(a) -> int:
    raw = Path(a.crd).read_bytes()
    crd = yaml.safe_load(raw)
    kind = crd["spec"]["names"]["kind"]
    if kind != a.kind:
        raise SystemExit(f"{a.crd} is the CRD of {kind}, not {a.kind}")
    name = SOURCES.get(kind, {}).get("file") or f"{crd['metadata']['name'].split('.', 1)[1]}_{crd['spec']['names']['plural']}.yaml.gz"
    dst = UPSTREAM / name
    dst.write_bytes(gzip.compress(raw, compresslevel=9, mtime=0))
    convert(crd_version(crd)["schema"]["openAPIV3Schema"])  # fails now if the translation cannot handle it
    print(f"{dst}: sha256 of the upstream file {hashlib.sha256(raw).hexdigest()}; now set SOURCES[{kind!r}] "
          f"(repo, path, ref, commit, sha256) and the table in {UPSTREAM / 'README.md'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/crd_schemas.py", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list")
    g = sub.add_parser("generate")
    g.add_argument("--out", required=True)
    g.add_argument("kinds", nargs="*")
    v = sub.add_parser("validate")
    v.add_argument("files", nargs="+")
    i = sub.add_parser("import")
    i.add_argument("kind")
    i.add_argument("crd", help="the upstream CRD YAML file")
    a = ap.parse_args(argv)
    return {"list": _cmd_list, "generate": _cmd_generate, "validate": _cmd_validate, "import": _cmd_import}[a.cmd](a)


if __name__ == "__main__":
    raise SystemExit(main())
