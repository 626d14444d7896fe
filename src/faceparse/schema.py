"""The schema of params.yaml: every key any command reads, with its type.

``check_params`` runs on every params file and every ``--set`` after they are merged
(``faceparse.config.load_params``), so ``--set train.epoch=3`` or a typo inside a variant file is refused
with the key and its nearest known spelling instead of being silently ignored. Values keep their YAML
form: the schema only checks, it never rewrites the dict the commands receive. Keys are optional; a key with a
default holds it on its field here (or in a stage's ``params`` module), and ``faceparse.stages.for_stage`` fills
it into the params a stage's steps read (``faceparse.defaults``); the commands say when a key without one
is missing.
"""
from __future__ import annotations

import difflib
from functools import lru_cache
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from .defaults import is_map as _is_map, section_type as _section_type
from .stages import params_module, stage_names


class Section(BaseModel):
    """A params section: unknown keys are refused."""
    model_config = ConfigDict(extra="forbid", protected_namespaces=(), populate_by_name=False)


class Splits(Section):
    train: float
    val: float
    test: float


class Synth(Section):
    n: Optional[int] = None
    renders3d: Optional[int] = 0        # rendered 3D faces added to the training split (faceparse.data.synth3d)
    seed: Optional[int] = 0
    occlusion_prob: Optional[float] = 0.3
    test_occlusion_prob: Optional[float] = None
    splits: Optional[Splits] = None


class Ingest(Section):
    labelmaps_table: Optional[str] = "celebamask-hq"
    split_seed: Optional[int] = 0
    splits: Optional[Splits] = None


class Data(Section):
    source: Optional[str] = None
    raw_dir: Optional[str] = None
    dir: Optional[str] = None
    label_table: Optional[str] = None
    size: Optional[int] = None
    synth: Optional[Synth] = None
    ingest: Optional[Ingest] = None


class Validate(Section):
    out_dir: Optional[str] = None
    min_classes: Optional[int] = 2
    max_background_fraction: Optional[float] = 0.98
    min_face_fraction: Optional[float] = 0.01


class Preset(Section):
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


class Model(Section):
    preset: Optional[str] = None
    overrides: Optional[Preset] = None
    presets: Optional[dict[str, Preset]] = None


class Loss(Section):
    edge_weight: Optional[float] = None
    temperature: Optional[float] = None
    edge_kernel: Optional[int] = None


class Augment(Section):
    """``train.augment`` (faceparse.training.dataset.build_augment); the landmark stage's adds its own keys'
    defaults (faceparse.stages.landmarks.params.LandmarkAugment)."""
    enabled: Optional[bool] = True
    rotate: Optional[float] = 0
    shear: Optional[float] = 0
    scale: Optional[list[float]] = [1.0, 1.0]
    brightness: Optional[list[float]] = [1.0, 1.0]
    contrast: Optional[list[float]] = [1.0, 1.0]
    saturation: Optional[list[float]] = [1.0, 1.0]
    hue: Optional[float] = 0.0
    p: Optional[float] = 0.8
    shift: Optional[float] = None       # landmarks: translation, fraction of the image
    blur: Optional[float] = None        # landmarks: probability of a blur
    flip: Optional[float] = None        # landmarks: probability of a horizontal flip (iBUG index permutation)


class Train(Section):
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
    report: Optional[bool] = True             # MLflow model report / plots
    threads: Optional[int] = None             # torch intra-op threads per process
    keep: Optional[Literal["last", "best"]] = None   # bundle weights: last epoch | best validation epoch
    init: Optional[str] = None                # start from this bundle's weights (a stage name: its shipped model)


class Evaluate(Section):
    split: Optional[str] = None
    out_sizes: Optional[list[int]] = None
    metrics_file: Optional[str] = None
    plots_dir: Optional[str] = None
    table_file: Optional[str] = None
    device: Optional[str] = None
    batch_size: Optional[int] = 4             # the parser's; each stage's evaluate section has its own


class Registry(Section):
    model_name: Optional[str] = None
    tracking_uri: Optional[str] = None
    experiment: Optional[str] = None
    promote_margin: Optional[float] = 0.0
    floor: Optional[float] = None             # the stage's floor against its trivial baseline (null: off)
    registered_file: Optional[str] = None     # where `register` records the new version (kfp output)


class Rollout(Section):
    """``serve.rollout``: the canary's thresholds (faceparse.serve.rollout.rollout_params)."""
    router_port: Optional[int] = 8483
    percent: Optional[float] = 10
    steps: Optional[list[float]] = [10, 50]
    mirror_fraction: Optional[float] = 0.2
    min_requests: Optional[int] = 30
    min_mirrored: Optional[int] = 5
    window_s: Optional[float] = 300
    poll_s: Optional[float] = 1.0
    max_error_rate: Optional[float] = 0.01
    max_client_error_delta: Optional[float] = 0.01
    max_latency_ratio: Optional[float] = 1.5
    latency_slack_ms: Optional[float] = 5.0
    min_agreement: Optional[float] = None     # null: the served stage codec's own
    drain_timeout_s: Optional[float] = 60


class Serve(Section):
    inference_port: Optional[int] = None
    management_port: Optional[int] = None
    metrics_port: Optional[int] = None
    batch_size: Optional[int] = None
    max_batch_delay_ms: Optional[int] = None
    workers: Optional[int] = None
    max_pixels: Optional[int] = None
    response_timeout_s: Optional[int] = 120
    detect: Optional[bool] = True        # every endpoint: find and frame photos' faces
    rollout: Optional[Rollout] = None


class BaseParams(Section):
    """The top level of params.yaml without the stages' own sections (the parser's: the top level itself)."""
    stage: Optional[str] = None
    data: Optional[Data] = None
    validate_: Optional[Validate] = Field(None, alias="validate")   # `validate` is a BaseModel method
    model: Optional[Model] = None
    loss: Optional[Loss] = None
    train: Optional[Train] = None
    evaluate: Optional[Evaluate] = None
    registry: Optional[Registry] = None
    serve: Optional[Serve] = None


def stage_sections() -> dict[str, tuple[type[Section], type[BaseParams]]]:
    """name → (its params section, the params resolved for it), for every registered stage whose package
    has a ``params`` module with a section of its own (pydantic only: checking params never imports a
    stage's model)."""
    out = {}
    for name in stage_names():
        module = params_module(name)
        if module is not None and module.SECTION is not None:   # the parser's sections: the top level's
            out[name] = (module.SECTION, module.RESOLVED)
    return out


def params_model() -> type[BaseParams]:
    """The whole params.yaml: the top level plus one optional section per registered stage."""
    return _params_model(tuple(stage_names()))


@lru_cache(maxsize=8)
def _params_model(names: tuple[str, ...]) -> type[BaseParams]:
    fields: dict[str, Any] = {n: (Optional[sec], None) for n, (sec, _) in stage_sections().items()}
    return create_model("Params", __base__=BaseParams, **fields)


def schema_for(params: dict[str, Any]) -> type[BaseParams]:
    stage = params.get("stage")
    sections = stage_sections()
    if stage in sections and stage not in params:   # for_stage output: the stage's sections at the top
        return sections[stage][1]
    return params_model()


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
    leaves = flatten(err["input"], ".".join(loc) + ".", keep_empty=True) if isinstance(err["input"], dict) and err["input"] else \
        {".".join(loc): None}
    out = []
    for key in leaves:
        near = nearest_keys(key.split("."))
        known = section_keys(key.split("."))
        hint = f"did you mean {' or '.join(near)}?" if near else (f"known: {', '.join(known)}" if known else "")
        out.append(f"unknown key {key}" + (f" ({hint})" if hint else ""))
    return out


def flatten(d: dict[str, Any], prefix: str = "", keep_empty: bool = False) -> dict[str, Any]:
    """{'a': {'b': 1}} → {'a.b': 1} (MLflow params, key checks); an empty mapping is a leaf of its own only
    with ``keep_empty``."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and (v or not keep_empty):
            out.update(flatten(v, f"{prefix}{k}.", keep_empty))
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


def known_keys(model: type[BaseModel] | None = None, prefix: str = "") -> list[str]:
    """Every dotted key of the schema; entries of a map section (model.presets) appear as ``<name>``."""
    out = []
    model = model or params_model()
    for n, f in model.model_fields.items():
        key = prefix + (f.alias or n)
        sub = _section_type(f.annotation)
        if sub is None:
            out.append(key)
        else:
            out.extend(known_keys(sub, key + (".<name>." if _is_map(f.annotation) else ".")))
    return out
