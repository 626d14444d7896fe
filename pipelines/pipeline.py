"""The faceparse pipeline DAG (kfp v2), built from the registered model stages (faceparse.stages, in
registration order; each stage's ``kfp`` declaration, faceparse.stages.KfpWiring, says what differs):

    prepare → validate ─┬─ passed ──→ per model stage: [its own data → validate] → train (or compose, for a
                        │               stage that trains nothing) → evaluate → register → [quality gate]
                        │               promote → [promoted] package; then its ``then`` steps
                        └─ failed ──→ validation_failed (run fails; the Data Docs artifact is kept)

With today's stages that is: parser; landmarks (switch ``landmarks``); map completion, composed of both
registered models, then ``complete`` (the completed maps of the dataset); the de-occlusion generator (switch
``fisn``: its bundle carries the composed completion model); 3D reconstruction (switch ``recon3d``: its own
rendered set, synth3d → validate; its occluded test photos also de-occluded through the FISN model). A stage
runs under the switches of the stages it needs (``composes``, ``carries``, ``evaluates_with``), and under
its own, which also holds the stages that need it.

Every stage goes through the same components (``stage=`` names it) and the same launcher. A stage's quality
gate compares its evaluation's ``gate_metric`` (default: its primary metric; fisn: the PSNR gain over the
occluded input, dB) with the pipeline parameter its wiring names, in its metric's direction (≥ when higher
is better): ``min_mean_f1``, ``max_nme``, ``min_completion_f1``, ``min_fisn_psnr_gain``,
``max_recon3d_p90_mm``. Beyond these thresholds (which default to letting every model through), ``promote``
holds each challenger to its stage's floor against a trivial baseline (params ``registry.floor``;
faceparse.stages.Floor), the first model too.

Parameters default from params.yaml at compile time: ``params_yaml`` IS the file's text (the single
source; every component re-reads it through faceparse.config.load_params), ``overrides`` are
``section.key=value`` strings applied on top (as ``faceparse --set``). ``launcher`` picks where training
runs: ``pytorchjob`` (the compiled default: a Kubeflow Training Operator v1 PyTorchJob with the
``pytorchjob`` settings — workers × GPUs, A100 node selector, NCCL env), ``trainjob`` (a Kubeflow Trainer
v2 TrainJob on the faceparse-torch-distributed ClusterTrainingRuntime with the ``trainjob`` settings —
the same keys, plus the runtime) or ``local`` (torchrun with ``nproc`` CPU processes in the step's own
pod/process; what run_local.py uses).

On a cluster the S3 credentials (secret faceparse-s3) and the MLflow tracking URI (secret
faceparse-mlflow) reach the steps as environment variables (kfp-kubernetes); see infra/k8s/.
"""
import inspect
import sys
from pathlib import Path
from typing import Any, List, NamedTuple

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from kfp import dsl, kubernetes  # noqa: E402

import components as c  # noqa: E402
from faceparse.launch.settings import MLFLOW_SECRET, PYTORCHJOB_DEFAULTS, S3_SECRET, TRAINJOB_DEFAULTS  # noqa: E402
from faceparse.stages import Stage, get_stage, stage_names  # noqa: E402

PARAMS_FILE = REPO / "params.yaml"
PARAMS_YAML = PARAMS_FILE.read_text()
PIPELINE_NAME = "faceparse"

S3_ENV = {k: k for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "FACEPARSE_S3_ENDPOINT")}
MLFLOW_ENV = {"MLFLOW_TRACKING_URI": "MLFLOW_TRACKING_URI"}


def _s3(task):
    """S3 credentials + endpoint (optional: a synthetic-data run needs none)."""
    return kubernetes.use_secret_as_env(task, secret_name=S3_SECRET, secret_key_to_env=S3_ENV, optional=True)


def _mlflow(task):
    """The MLflow tracking URI — required: without it a step would track into its pod's own disk."""
    return kubernetes.use_secret_as_env(task, secret_name=MLFLOW_SECRET, secret_key_to_env=MLFLOW_ENV)


def _step(task, name: str):
    """Every step has side effects (MLflow, S3) or cheap inputs: never served from the KFP cache."""
    return task.set_display_name(name).set_caching_options(False)


class _Made(NamedTuple):
    """What a stage's path leaves for the stages that need it: its model and its registration record."""
    model: Any
    registered: Any


def placement(stages: list[Stage]) -> dict[str, tuple[str, ...]]:
    """stage name → the switches (stage names, outermost first) it runs under: those of the stages it needs
    (``KfpWiring.needs``; they must be registered before it and lie on one chain of switches); its own
    switch, when it has one, is then opened around it and the stages placed inside it."""
    inner: dict[str, tuple[str, ...]] = {}
    out: dict[str, tuple[str, ...]] = {}
    for st in stages:
        for need in st.kfp.needs():
            if need not in inner:
                raise ValueError(f"stage {st.name!r} needs {need!r}, which is not registered before it")
        paths = sorted((inner[n] for n in st.kfp.needs()), key=len)
        path = paths[-1] if paths else ()
        if any(p != path[:len(p)] for p in paths):
            raise ValueError(f"stage {st.name!r} needs stages under switches that do not nest: {paths}")
        out[st.name] = path
        inner[st.name] = path + ((st.name,) if st.kfp.switch else ())
    return out


def _passes(st: Stage, value, threshold):
    """The quality gate's condition, in the stage's direction: ≥ the threshold when higher is better."""
    return value >= threshold if st.info.direction == "max" else value <= threshold


def _stage_path(st: Stage, made: dict[str, _Made], prep, val, a: dict[str, Any]) -> _Made:
    """One stage: [its own data → validate] → train (or compose) → evaluate → register → [quality gate]
    promote → [promoted] package; then its ``then`` components over the dataset."""
    k, name = st.kfp, st.name
    p, o = a["params_yaml"], a["overrides"]
    if k.own_data:
        prep = _step(getattr(c, k.own_data)(params_yaml=p, overrides=o), k.own_data)
        val = _step(c.validate(params_yaml=p, overrides=o, dataset=prep.outputs["dataset"],
                               allow_quarantine=a["allow_quarantine"]), f"validate {k.own_data}")
    if st.info.trainable:
        carried = {"carry": made[k.carries].model, "carry_registered": made[k.carries].registered} if k.carries else {}
        built = _mlflow(_s3(_step(c.train(params_yaml=p, overrides=o, dataset=prep.outputs["dataset"],
                                          validation=val.outputs["report"], launcher=a["launcher"], nproc=a["nproc"],
                                          pytorchjob=a["pytorchjob"], trainjob=a["trainjob"], stage=name, **carried),
                                  f"train {name}")))
    elif k.composes:
        parts = {}
        for part, arg in k.composes.items():
            parts.update({f"{arg}_model": made[part].model, f"{arg}_registered": made[part].registered})
        built = _mlflow(_s3(_step(c.compose(params_yaml=p, overrides=o, stage=name, **parts), f"compose {name}")))
    else:
        raise ValueError(f"stage {name!r} trains nothing and composes nothing (KfpWiring.composes)")
    model = built.outputs["model"]
    extra = {"gate_metric": k.gate_metric} if k.gate_metric else {}
    if k.evaluates_with:
        extra.update(deocclude=made[k.evaluates_with].model, deocclude_registered=made[k.evaluates_with].registered)
    ev = _mlflow(_step(c.evaluate(params_yaml=p, overrides=o, dataset=prep.outputs["dataset"],
                                  validation=val.outputs["report"], model=model, stage=name, **extra),
                       f"evaluate {name}"))
    reg = _mlflow(_step(c.register(params_yaml=p, overrides=o, model=model, eval_report=ev.outputs["report"],
                                   stage=name), f"register {name}"))
    if k.gate:
        with dsl.If(_passes(st, ev.outputs["Output"], a[k.gate]), name=f"{name}-quality-gate"):
            _promote_and_package(name, reg, p, o, a["package_upload"])
    else:
        _promote_and_package(name, reg, p, o, a["package_upload"])
    for then in k.then:
        _step(getattr(c, then)(params_yaml=p, overrides=o, dataset=prep.outputs["dataset"], model=model),
              f"{then} dataset")
    return _Made(model, reg.outputs["registered"])


def _promote_and_package(stage: str, reg, params_yaml, overrides, package_upload):
    pro = _mlflow(_step(c.promote(params_yaml=params_yaml, overrides=overrides,
                                  challenger_version=reg.outputs["version"], stage=stage), f"promote {stage}"))
    with dsl.If(pro.output == True, name=f"{stage}-promoted"):  # noqa: E712
        _s3(_mlflow(_step(c.package(params_yaml=params_yaml, overrides=overrides, model_uri=reg.outputs["model_uri"],
                                    upload=package_upload, stage=stage), f"package {stage}")))


def _stages_under(path: tuple[str, ...], made: dict[str, _Made], prep, val, a: dict[str, Any]) -> None:
    """The stages placed under the switches ``path``, in registration order; a stage with a switch of its own
    runs inside it, with the stages placed there."""
    for st in STAGES:
        if PLACEMENT[st.name] != path:
            continue
        missing = [n for n in st.kfp.needs() if n not in made]
        if missing:
            raise ValueError(f"stage {st.name!r} runs before {missing}, which it needs: register it after the "
                             "stages that open their switches")
        if st.kfp.switch:
            with dsl.If(a[st.name] == True, name=st.name):  # noqa: E712 - a kfp condition
                made[st.name] = _stage_path(st, made, prep, val, a)
                _stages_under(path + (st.name,), made, prep, val, a)
        else:
            made[st.name] = _stage_path(st, made, prep, val, a)


STAGES: list[Stage] = [get_stage(n) for n in stage_names()]
PLACEMENT = placement(STAGES)


def _parameters() -> list[inspect.Parameter]:
    """The pipeline's parameters: the shared ones, each stage's gate threshold and switch (from its
    KfpWiring), then package_upload."""
    def param(name: str, annotation, default) -> inspect.Parameter:
        return inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default, annotation=annotation)

    out = [param("params_yaml", str, PARAMS_YAML), param("overrides", List[str], []), param("raw_uri", str, ""),
           param("raw_sha256", str, ""), param("allow_quarantine", bool, False), param("launcher", str, "pytorchjob"),
           param("nproc", int, 2), param("pytorchjob", dict, PYTORCHJOB_DEFAULTS),
           param("trainjob", dict, TRAINJOB_DEFAULTS)]
    out += [param(st.kfp.gate, float, float(st.kfp.gate_default)) for st in STAGES if st.kfp.gate]
    out += [param(st.name, bool, True) for st in STAGES if st.kfp.switch]
    out.append(param("package_upload", str, ""))
    names = [p.name for p in out]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise ValueError(f"pipeline parameters named twice (a stage's gate or switch): {clash}")
    return out


SIGNATURE = inspect.Signature(_parameters())


def _pipeline(*args, **kwargs):
    a = SIGNATURE.bind(*args, **kwargs)
    a.apply_defaults()
    a = a.arguments
    prep = _s3(_step(c.prepare(params_yaml=a["params_yaml"], overrides=a["overrides"], raw_uri=a["raw_uri"],
                               raw_sha256=a["raw_sha256"]), "prepare"))
    val = _step(c.validate(params_yaml=a["params_yaml"], overrides=a["overrides"], dataset=prep.outputs["dataset"],
                           allow_quarantine=a["allow_quarantine"]), "validate")

    with dsl.If(val.outputs["passed"] == True, name="dataset-valid"):  # noqa: E712 - a kfp condition
        _stages_under((), {}, prep, val, a)
    with dsl.Else(name="dataset-invalid"):
        _step(c.validation_failed(summary=val.outputs["summary"], data_docs=val.outputs["data_docs"]),
              "validation failed")


def _describe(st: Stage) -> str:
    k = st.kfp
    said = [f"its own data: {k.own_data}"] if k.own_data else []
    said += [f"composes {', '.join(k.composes)}"] if k.composes else []
    said += [f"carries {k.carries}"] if k.carries else []
    said += [f"evaluates with {k.evaluates_with}"] if k.evaluates_with else []
    said += [f"then {', '.join(k.then)}"] if k.then else []
    return st.name + (f" ({'; '.join(said)})" if said else "")


_pipeline.__signature__ = SIGNATURE
_pipeline.__name__ = _pipeline.__qualname__ = "faceparse_pipeline"
faceparse_pipeline = dsl.pipeline(
    name=PIPELINE_NAME,
    description="faceparse: prepare → validate (gate) → per model stage: train (torchrun / PyTorchJob / TrainJob; or "
                "compose) → evaluate → register → [quality gate] promote → [promoted] package. Stages: "
                + "; ".join(_describe(st) for st in STAGES))(_pipeline)
