"""The faceparse pipeline DAG (kfp v2):

    prepare → validate ─┬─ passed ──→ per trainable model stage (parser; landmarks when ``landmarks``):
                        │               train → evaluate → register ─→ [quality gate] promote
                        │                                              → [promoted] package (.mar)
                        │             then map completion (with landmarks): compose (both registered
                        │               models) → evaluate → register → [gate] promote → package;
                        │               complete (completed maps of the dataset, for the next stage)
                        │             then the de-occlusion generator (with fisn): train (its bundle
                        │               carries the composed completion model) → evaluate → register
                        │               → [gate] promote → package
                        │             then 3D reconstruction (with recon3d): synth3d (its own rendered
                        │               set) → validate → train → evaluate (clean / occluded / de-occluded
                        │               through the FISN model) → register → [gate] promote → package
                        └─ failed ──→ validation_failed (run fails; the Data Docs artifact is kept)

Every stage goes through the same components (``stage=`` names it) and the same launcher; the quality
gates follow each stage's metric direction: parser test mean F1 ≥ ``min_mean_f1``, landmark test NME ≤
``max_nme``, completion F1 inside the occluded region ≥ ``min_completion_f1``, FISN PSNR gain inside the
occluded region over the occluded input as it is (psnr_out − psnr_input, dB) ≥ ``min_fisn_psnr_gain``,
3D test p90 vertex error on clean inputs (mm) ≤ ``max_recon3d_p90_mm``. Beyond these thresholds (which
default to letting every model through), ``promote`` holds each challenger to its stage's floor against a
trivial baseline (params ``registry.floor``; faceparse.stages.Floor), the first model too.

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
import sys
from pathlib import Path
from typing import List

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from kfp import dsl, kubernetes  # noqa: E402

import components as c  # noqa: E402
from faceparse.kube import MLFLOW_SECRET, PYTORCHJOB_DEFAULTS, S3_SECRET, TRAINJOB_DEFAULTS  # noqa: E402

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


def _stage_path(stage: str, prep, val, params_yaml, overrides, launcher, nproc, pytorchjob, trainjob,
                package_upload, carry=(), gate_metric: str = "", deocclude: tuple = ()):
    """train → evaluate → register for one trainable model stage: (train, evaluate — its output is the
    gate — , register) tasks. ``carry``: (Model, registration record) of the model the stage's bundle
    carries (fisn: the composed completion model)."""
    carried = dict(zip(("carry", "carry_registered"), carry))
    tr = _mlflow(_s3(_step(c.train(params_yaml=params_yaml, overrides=overrides, dataset=prep.outputs["dataset"],
                                   validation=val.outputs["report"], launcher=launcher, nproc=nproc,
                                   pytorchjob=pytorchjob, trainjob=trainjob, stage=stage, **carried),
                           f"train {stage}")))
    return (tr, *_evaluate_register(stage, tr.outputs["model"], prep, val, params_yaml, overrides, gate_metric,
                                    deocclude))


def _evaluate_register(stage: str, model, prep, val, params_yaml, overrides, gate_metric: str = "",
                       deocclude: tuple = ()):
    gate = {"gate_metric": gate_metric} if gate_metric else {}
    ev = _mlflow(_step(c.evaluate(params_yaml=params_yaml, overrides=overrides, dataset=prep.outputs["dataset"],
                                  validation=val.outputs["report"], model=model, stage=stage, **gate,
                                  **dict(zip(("deocclude", "deocclude_registered"), deocclude))),
                       f"evaluate {stage}"))
    reg = _mlflow(_step(c.register(params_yaml=params_yaml, overrides=overrides, model=model,
                                   eval_report=ev.outputs["report"], stage=stage), f"register {stage}"))
    return ev, reg


def _completion_path(parser, landmarks, prep, val, params_yaml, overrides, min_f1, package_upload):
    """compose (parser + landmark models just registered) → evaluate → register → [gate] promote → package;
    and the completed maps of the dataset for the next stage. Returns (compose, register) tasks."""
    (tr_p, _, reg_p), (tr_l, _, reg_l) = parser, landmarks
    comp = _mlflow(_s3(_step(c.compose(params_yaml=params_yaml, overrides=overrides,
                                       parser_model=tr_p.outputs["model"], landmark_model=tr_l.outputs["model"],
                                       parser_registered=reg_p.outputs["registered"],
                                       landmark_registered=reg_l.outputs["registered"]), "compose completion")))
    ev, reg = _evaluate_register("completion", comp.outputs["model"], prep, val, params_yaml, overrides)
    with dsl.If(ev.outputs["Output"] >= min_f1, name="completion-quality-gate"):
        _promote_and_package("completion", reg, params_yaml, overrides, package_upload)
    _step(c.complete(params_yaml=params_yaml, overrides=overrides, dataset=prep.outputs["dataset"],
                     model=comp.outputs["model"]), "complete dataset")
    return comp, reg


def _fisn_path(completion, prep, val, min_gain, **common):
    """train (the bundle carries the composed completion model; its registration record names the version
    carried) → evaluate → register → [gate: PSNR gain over the input as it is ≥ min_gain] promote → package.
    As in dvc.yaml: trained whether or not the completion model passed its own gate."""
    comp, comp_reg = completion
    tr, ev, reg = _stage_path("fisn", prep, val, **common, carry=(comp.outputs["model"], comp_reg.outputs["registered"]),
                              gate_metric="psnr_gain_db")
    with dsl.If(ev.outputs["Output"] >= min_gain, name="fisn-quality-gate"):
        _promote_and_package("fisn", reg, common["params_yaml"], common["overrides"], common["package_upload"])
    return tr, reg


def _recon3d_path(fisn, allow_quarantine, max_p90, **common):
    """synth3d (the stage's own rendered set) → validate → train → evaluate, the occluded test photos also
    de-occluded through the FISN model just trained → register → [gate: clean p90 ≤ max_p90 mm] promote →
    package. As in dvc.yaml: after the generator, whether or not it passed its own gate."""
    fisn_tr, fisn_reg = fisn
    p, o = common["params_yaml"], common["overrides"]
    prep = _step(c.synth3d(params_yaml=p, overrides=o), "synth3d")
    val = _step(c.validate(params_yaml=p, overrides=o, dataset=prep.outputs["dataset"],
                           allow_quarantine=allow_quarantine), "validate synth3d")
    _, ev, reg = _stage_path("recon3d", prep, val, **common,
                             deocclude=(fisn_tr.outputs["model"], fisn_reg.outputs["registered"]))
    with dsl.If(ev.outputs["Output"] <= max_p90, name="recon3d-quality-gate"):
        _promote_and_package("recon3d", reg, p, o, common["package_upload"])


def _promote_and_package(stage: str, reg, params_yaml, overrides, package_upload):
    pro = _mlflow(_step(c.promote(params_yaml=params_yaml, overrides=overrides,
                                  challenger_version=reg.outputs["version"], stage=stage), f"promote {stage}"))
    with dsl.If(pro.output == True, name=f"{stage}-promoted"):  # noqa: E712
        _s3(_mlflow(_step(c.package(params_yaml=params_yaml, overrides=overrides, model_uri=reg.outputs["model_uri"],
                                    upload=package_upload, stage=stage), f"package {stage}")))


@dsl.pipeline(name=PIPELINE_NAME,
              description="faceparse: prepare → validate (gate) → per model stage (FP-LIIF parser, 68-point "
                          "landmarks): train (torchrun / PyTorchJob / TrainJob) → evaluate → register → promote → package; "
                          "map completion: compose → evaluate → register → promote → package; complete; "
                          "de-occlusion generator (FISN, carrying the completion model): train → evaluate → "
                          "register → promote → package; 3D reconstruction: synth3d → validate → train → evaluate "
                          "(de-occluded by FISN too) → register → promote → package")
def faceparse_pipeline(
    params_yaml: str = PARAMS_YAML,
    overrides: List[str] = [],
    raw_uri: str = "",
    raw_sha256: str = "",
    allow_quarantine: bool = False,
    launcher: str = "pytorchjob",
    nproc: int = 2,
    pytorchjob: dict = PYTORCHJOB_DEFAULTS,
    trainjob: dict = TRAINJOB_DEFAULTS,
    min_mean_f1: float = 0.0,
    max_nme: float = 1.0,
    min_completion_f1: float = 0.0,
    min_fisn_psnr_gain: float = 0.0,
    max_recon3d_p90_mm: float = 100.0,
    landmarks: bool = True,
    fisn: bool = True,
    recon3d: bool = True,
    package_upload: str = "",
):
    prep = _s3(_step(c.prepare(params_yaml=params_yaml, overrides=overrides, raw_uri=raw_uri,
                               raw_sha256=raw_sha256), "prepare"))
    val = _step(c.validate(params_yaml=params_yaml, overrides=overrides, dataset=prep.outputs["dataset"],
                           allow_quarantine=allow_quarantine), "validate")

    with dsl.If(val.outputs["passed"] == True, name="dataset-valid"):  # noqa: E712 - a kfp condition
        common = dict(params_yaml=params_yaml, overrides=overrides, launcher=launcher, nproc=nproc,
                      pytorchjob=pytorchjob, trainjob=trainjob, package_upload=package_upload)
        parser = _stage_path("parser", prep, val, **common)
        with dsl.If(parser[1].outputs["Output"] >= min_mean_f1, name="quality-gate"):
            _promote_and_package("parser", parser[2], params_yaml, overrides, package_upload)
        with dsl.If(landmarks == True, name="landmarks"):  # noqa: E712
            lmk = _stage_path("landmarks", prep, val, **common)
            with dsl.If(lmk[1].outputs["Output"] <= max_nme, name="landmarks-quality-gate"):
                _promote_and_package("landmarks", lmk[2], params_yaml, overrides, package_upload)
            completion = _completion_path(parser, lmk, prep, val, params_yaml, overrides, min_completion_f1,
                                          package_upload)
            with dsl.If(fisn == True, name="fisn"):  # noqa: E712
                gen = _fisn_path(completion, prep, val, min_fisn_psnr_gain, **common)
                with dsl.If(recon3d == True, name="recon3d"):  # noqa: E712
                    _recon3d_path(gen, allow_quarantine, max_recon3d_p90_mm, **common)
    with dsl.Else(name="dataset-invalid"):
        _step(c.validation_failed(summary=val.outputs["summary"], data_docs=val.outputs["data_docs"]),
              "validation failed")
