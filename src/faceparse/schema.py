"""The schema of params.yaml: every key any command reads, with its type.

``check_params`` runs on every params file and every ``--set`` after they are merged
(``faceparse.config.load_params``), so ``--set train.epoch=3`` or a typo inside a variant file is refused
with the key and its nearest known spelling instead of being silently ignored. Values keep their YAML
form: the schema only checks, it never rewrites the dict the commands receive. Keys are optional here
(defaults stay where they are used); the commands say when one they need is missing.
"""
from __future__ import annotations

import difflib
import typing
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=(), populate_by_name=False)


class Splits(_Section):
    train: float
    val: float
    test: float


class Synth(_Section):
    n: Optional[int] = None
    renders3d: Optional[int] = None     # rendered 3D faces added to the training split (faceparse.data.synth3d)
    seed: Optional[int] = None
    occlusion_prob: Optional[float] = None
    test_occlusion_prob: Optional[float] = None
    splits: Optional[Splits] = None


class Ingest(_Section):
    labelmaps_table: Optional[str] = None
    split_seed: Optional[int] = None
    splits: Optional[Splits] = None


class Data(_Section):
    source: Optional[str] = None
    raw_dir: Optional[str] = None
    dir: Optional[str] = None
    label_table: Optional[str] = None
    size: Optional[int] = None
    synth: Optional[Synth] = None
    ingest: Optional[Ingest] = None


class Validate(_Section):
    out_dir: Optional[str] = None
    min_classes: Optional[int] = None
    max_background_fraction: Optional[float] = None
    min_face_fraction: Optional[float] = None


class Preset(_Section):
    """One FP-LIIF architecture (``model.presets.<name>``); ``model.overrides`` takes any of these keys."""
    width: Optional[int] = None
    groups: Optional[list[int]] = None
    norm: Optional[Literal["instance", "batch", "none"]] = None
    decoder: Optional[Literal["liif", "unet"]] = None
    unfold: Optional[bool] = None
    reduce: Optional[list[int]] = None
    hidden: Optional[list[int]] = None
    ensemble: Optional[bool] = None
    query_chunk: Optional[int] = None


class Model(_Section):
    preset: Optional[str] = None
    overrides: Optional[Preset] = None
    presets: Optional[dict[str, Preset]] = None


class Loss(_Section):
    edge_weight: Optional[float] = None
    temperature: Optional[float] = None
    edge_kernel: Optional[int] = None


class Augment(_Section):
    enabled: Optional[bool] = None
    rotate: Optional[float] = None
    shear: Optional[float] = None
    scale: Optional[list[float]] = None
    brightness: Optional[list[float]] = None
    contrast: Optional[list[float]] = None
    saturation: Optional[list[float]] = None
    hue: Optional[float] = None
    p: Optional[float] = None
    shift: Optional[float] = None       # landmarks: translation, fraction of the image
    blur: Optional[float] = None        # landmarks: probability of a blur
    flip: Optional[float] = None        # landmarks: probability of a horizontal flip (iBUG index permutation)


class Train(_Section):
    epochs: Optional[int] = None
    batch_size: Optional[int] = None
    lr: Optional[float] = None
    lr_step: Optional[int] = None
    lr_gamma: Optional[float] = None
    input_size: Optional[int] = None
    out_size: Optional[int] = None
    sample_queries: Optional[int] = None
    num_workers: Optional[int] = None
    seed: Optional[int] = None
    run_dir: Optional[str] = None
    bundle_dir: Optional[str] = None
    augment: Optional[Augment] = None
    stop_after_epoch: Optional[int] = None    # tests: simulate a killed run
    device: Optional[str] = None              # auto | cpu | cuda[:N]
    report: Optional[bool] = None             # MLflow model report / plots
    threads: Optional[int] = None             # torch intra-op threads per process
    keep: Optional[Literal["last", "best"]] = None   # bundle weights: last epoch | best validation epoch
    init: Optional[str] = None                # start from this bundle's weights (a stage name: its shipped model)


class Evaluate(_Section):
    split: Optional[str] = None
    out_sizes: Optional[list[int]] = None
    metrics_file: Optional[str] = None
    plots_dir: Optional[str] = None
    table_file: Optional[str] = None
    device: Optional[str] = None
    batch_size: Optional[int] = None


class Registry(_Section):
    model_name: Optional[str] = None
    tracking_uri: Optional[str] = None
    experiment: Optional[str] = None
    promote_margin: Optional[float] = None
    registered_file: Optional[str] = None     # where `register` records the new version (kfp output)


class Rollout(_Section):
    router_port: Optional[int] = None
    percent: Optional[float] = None
    steps: Optional[list[float]] = None
    mirror_fraction: Optional[float] = None
    min_requests: Optional[int] = None
    min_mirrored: Optional[int] = None
    window_s: Optional[float] = None
    poll_s: Optional[float] = None
    max_error_rate: Optional[float] = None
    max_client_error_delta: Optional[float] = None
    max_latency_ratio: Optional[float] = None
    latency_slack_ms: Optional[float] = None
    min_agreement_miou: Optional[float] = None
    drain_timeout_s: Optional[float] = None


class Serve(_Section):
    inference_port: Optional[int] = None
    management_port: Optional[int] = None
    metrics_port: Optional[int] = None
    batch_size: Optional[int] = None
    max_batch_delay_ms: Optional[int] = None
    workers: Optional[int] = None
    max_pixels: Optional[int] = None
    response_timeout_s: Optional[int] = None
    detect: Optional[bool] = None        # parser endpoint: find and align photos' faces (default true)
    rollout: Optional[Rollout] = None


class LandmarkPreset(_Section):
    """A MobileNetV3 landmark regressor (``landmarks.model.presets.<name>``)."""
    arch: Optional[Literal["large", "small"]] = None
    width: Optional[float] = None
    num_points: Optional[int] = None
    dropout: Optional[float] = None
    head: Optional[Literal["fc", "integral"]] = None
    flip_test: Optional[bool] = None     # average with the mirrored image's prediction at inference
    refine: Optional[int] = None         # inference: look again this many times at the face crop the points give


class LandmarkTrain(Train):
    framing: Optional[Literal["image", "face"]] = None   # face: the photo path's crop of the face (align.placement)
    frame_jitter: Optional[float] = None       # σ of the five framing points' noise, × inter-ocular distance
    eval_frame_jitter: Optional[float] = None  # the same at evaluation (fixed draws): a detector's error
    frame_loose: Optional[float] = None        # share of training frames zoomed out / moved (a whole image)


class LandmarkModel(_Section):
    preset: Optional[str] = None
    overrides: Optional[LandmarkPreset] = None
    presets: Optional[dict[str, LandmarkPreset]] = None


class LandmarkStage(_Section):
    """``landmarks:``: whole sections that replace the top-level ones for the landmark stage."""
    model: Optional[LandmarkModel] = None
    train: Optional[LandmarkTrain] = None
    evaluate: Optional[Evaluate] = None
    registry: Optional[Registry] = None


class CompletionModel(_Section):
    """Algorithm 1's settings (``completion.model``; faceparse.completion.Settings)."""
    preset: Optional[str] = None
    reading: Optional[Literal["sequential", "literal"]] = None
    mouth_is_feature: Optional[bool] = None
    brow_band: Optional[float] = None


class Compose(_Section):
    parser: Optional[str] = None
    landmarks: Optional[str] = None


class CompletionStage(_Section):
    """``completion:``: the map-completion stage's sections (nothing trained: ``train.bundle_dir`` only)."""
    model: Optional[CompletionModel] = None
    compose: Optional[Compose] = None
    train: Optional[Train] = None
    evaluate: Optional[Evaluate] = None
    registry: Optional[Registry] = None
    dataset_out: Optional[str] = None


class FisnGenerator(_Section):
    """faceparse.models.fisn.FISNGenerator's keyword arguments (``fisn.model.overrides.generator``)."""
    ngf: Optional[int] = None
    n_down: Optional[int] = None
    n_res: Optional[int] = None
    style_dim: Optional[int] = None
    style_ch: Optional[int] = None
    spade_hidden: Optional[int] = None


class FisnDiscriminator(_Section):
    ndf: Optional[int] = None
    n_layers: Optional[int] = None
    num_d: Optional[int] = None
    spectral: Optional[bool] = None


class FisnOverrides(_Section):
    generator: Optional[FisnGenerator] = None
    discriminator: Optional[FisnDiscriminator] = None


class FisnModel(_Section):
    """``fisn.model``: a preset of faceparse.models.fisn.PRESETS (tiny | paper) and overrides of it."""
    preset: Optional[str] = None
    overrides: Optional[FisnOverrides] = None
    erase_occluded: Optional[bool] = None   # the generator sees the occluded region as mid-grey


class FisnLoss(_Section):
    """``fisn.loss``: eq. 9's weights and the perceptual network (parser | parser:REF | vgg19:PATH)."""
    perceptual: Optional[str] = None
    w_gan: Optional[float] = None
    w_fm: Optional[float] = None
    w_per: Optional[float] = None
    w_l1: Optional[float] = None
    w_hole: Optional[float] = None


class FisnTrain(Train):
    mode: Optional[Literal["supervised", "paper"]] = None
    occluded_only: Optional[bool] = None      # train on the occluded faces only


class FisnEvaluate(Evaluate):
    maps: Optional[Literal["truth", "predicted"]] = None


class FisnCarry(_Section):
    """``fisn.carry``: the completion bundle the FISN bundle carries (null: none) and register's record of it."""
    completion: Optional[str] = None
    registered_file: Optional[str] = None


class FisnStage(_Section):
    """``fisn:``: the de-occlusion generator's sections."""
    model: Optional[FisnModel] = None
    loss: Optional[FisnLoss] = None
    train: Optional[FisnTrain] = None
    evaluate: Optional[FisnEvaluate] = None
    registry: Optional[Registry] = None
    carry: Optional[FisnCarry] = None


class Synth3d(_Section):
    """``recon3d.data.synth3d``: the synthetic 3D set (faceparse.data.synth3d)."""
    n: Optional[int] = None
    seed: Optional[int] = None
    occlusion_prob: Optional[float] = None
    test_occlusion_prob: Optional[float] = None
    splits: Optional[Splits] = None


class Recon3dData(Data):
    synth3d: Optional[Synth3d] = None


class Recon3dModel(_Section):
    """``recon3d.model``: a ResNet preset of faceparse.models.resnet.PRESETS and the face model's sizes."""
    preset: Optional[str] = None
    overrides: Optional[dict[str, Any]] = None
    n_id: Optional[int] = None
    n_exp: Optional[int] = None
    n_albedo: Optional[int] = None
    head_scale: Optional[dict[str, float]] = None


class Recon3dLoss(_Section):
    """``recon3d.loss``: eq. 16's weights (faceparse.face3d.loss)."""
    w_lmk: Optional[float] = None
    w_pix: Optional[float] = None
    w_reg: Optional[float] = None
    w_id: Optional[float] = None
    w_exp: Optional[float] = None
    w_face: Optional[float] = None
    w_shape: Optional[float] = None
    face_net: Optional[str] = None
    face_net_size: Optional[int] = None
    attention: Optional[Literal["face", "features"]] = None
    attention_low: Optional[float] = None


class Recon3dEvaluate(Evaluate):
    deocclude: Optional[str] = None
    deocclude_registered: Optional[str] = None


class Recon3dStage(_Section):
    """``recon3d:``: the 3D reconstruction stage's sections (its own data: the synthetic 3D set)."""
    data: Optional[Recon3dData] = None
    model: Optional[Recon3dModel] = None
    loss: Optional[Recon3dLoss] = None
    train: Optional[Train] = None
    evaluate: Optional[Recon3dEvaluate] = None
    registry: Optional[Registry] = None


class Params(_Section):
    stage: Optional[str] = None
    data: Optional[Data] = None
    validate_: Optional[Validate] = Field(None, alias="validate")   # `validate` is a BaseModel method
    model: Optional[Model] = None
    loss: Optional[Loss] = None
    train: Optional[Train] = None
    evaluate: Optional[Evaluate] = None
    registry: Optional[Registry] = None
    serve: Optional[Serve] = None
    landmarks: Optional[LandmarkStage] = None
    completion: Optional[CompletionStage] = None
    fisn: Optional[FisnStage] = None
    recon3d: Optional[Recon3dStage] = None


class LandmarkParams(Params):
    """Params resolved for the landmark stage (``faceparse.stages.for_stage``, e.g. the file a torchrun
    worker or a kfp step reads): its model section is the landmark regressor's."""
    model: Optional[LandmarkModel] = None
    train: Optional[LandmarkTrain] = None


class CompletionParams(Params):
    """Params resolved for the completion stage: its model section holds Algorithm 1's settings."""
    model: Optional[CompletionModel] = None
    compose: Optional[Compose] = None
    dataset_out: Optional[str] = None


class FisnParams(Params):
    """Params resolved for the fisn stage: its model / loss / train / evaluate sections and ``carry``."""
    model: Optional[FisnModel] = None
    loss: Optional[FisnLoss] = None
    train: Optional[FisnTrain] = None
    evaluate: Optional[FisnEvaluate] = None
    carry: Optional[FisnCarry] = None


class Recon3dParams(Params):
    """Params resolved for the recon3d stage: its data / model / loss / evaluate sections."""
    data: Optional[Recon3dData] = None
    model: Optional[Recon3dModel] = None
    loss: Optional[Recon3dLoss] = None
    evaluate: Optional[Recon3dEvaluate] = None


def schema_for(params: dict[str, Any]) -> type[Params]:
    stage = params.get("stage")
    if stage in RESOLVED and stage not in params:   # for_stage output: the stage's sections at the top
        return RESOLVED[stage]
    return Params


RESOLVED: dict[str, type[Params]] = {"landmarks": LandmarkParams, "completion": CompletionParams, "fisn": FisnParams,
                                     "recon3d": Recon3dParams}


class SchemaError(ValueError):
    """Params that do not fit the schema; ``problems`` holds one line per bad key."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


def check_params(params: dict[str, Any]) -> None:
    """Raise SchemaError naming every unknown or mistyped key (dotted), with the nearest known keys."""
    try:
        schema_for(params).model_validate(params)
    except ValidationError as e:
        raise SchemaError([line for err in e.errors() for line in _describe(err)]) from None


def _describe(err: dict[str, Any]) -> list[str]:
    loc = [str(p) for p in err["loc"]]
    if err["type"] != "extra_forbidden":
        return [f"{'.'.join(loc)}: {err['msg'].lower()} (got {err.get('input')!r})"]
    # an unknown section: name each key inside it, so `trian.epochs` can point at `train.epochs`
    leaves = flatten(err["input"], ".".join(loc) + ".") if isinstance(err["input"], dict) and err["input"] else \
        {".".join(loc): None}
    out = []
    for key in leaves:
        near = nearest_keys(key.split("."))
        known = section_keys(key.split("."))
        hint = f"did you mean {' or '.join(near)}?" if near else (f"known: {', '.join(known)}" if known else "")
        out.append(f"unknown key {key}" + (f" ({hint})" if hint else ""))
    return out


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def nearest_keys(loc: list[str]) -> list[str]:
    """The known dotted keys closest to an unknown one: a sibling spelt alike (``train.epoch`` →
    ``train.epochs``), else the closest key anywhere of the same depth (``trian.epochs`` →
    ``train.epochs``)."""
    concrete = []
    for k in known_keys():
        parts = k.split(".")
        if len(parts) == len(loc):  # fill map entries (model.presets.<name>) with the names used
            concrete.append(".".join(loc[i] if p == "<name>" else p for i, p in enumerate(parts)))
    parent, name = ".".join(loc[:-1]), loc[-1]
    siblings = {c.rsplit(".", 1)[-1]: c for c in concrete if c.rsplit(".", 1)[0] == parent} if parent else \
        {c: c for c in concrete}
    if siblings:  # the section is known: only its own keys are candidates
        return [siblings[c] for c in difflib.get_close_matches(name, list(siblings), n=2, cutoff=0.6)]
    return difflib.get_close_matches(".".join(loc), concrete, n=2, cutoff=0.75)


def section_keys(loc: list[str]) -> list[str]:
    """The known keys directly under the section holding ``loc`` (for the error message)."""
    parent = ".".join(loc[:-1])
    return sorted({k[len(parent) + 1:].split(".")[0] for k in known_keys() if parent and k.startswith(parent + ".")})


def _section_type(annotation: Any) -> Any:
    """The BaseModel inside an Optional[...] / dict[str, ...] annotation (None for plain values)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for a in typing.get_args(annotation):
        t = _section_type(a)
        if t is not None:
            return t
    return None


def _is_map(annotation: Any) -> bool:
    return typing.get_origin(annotation) is dict or any(_is_map(a) for a in typing.get_args(annotation))


def known_keys(model: type[BaseModel] = Params, prefix: str = "") -> list[str]:
    """Every dotted key of the schema; entries of a map section (model.presets) appear as ``<name>``."""
    out = []
    for n, f in model.model_fields.items():
        key = prefix + (f.alias or n)
        sub = _section_type(f.annotation)
        if sub is None:
            out.append(key)
        else:
            out.extend(known_keys(sub, key + (".<name>." if _is_map(f.annotation) else ".")))
    return out
