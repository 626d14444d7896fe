"""Model stages: everything the one path (data → validate → train → evaluate → register → promote →
package → serve → canary) needs to know about one kind of model, looked up by name (params ``stage``,
bundle.json ``stage``, ``--stage`` on every step command).

The path is model-agnostic: seeds, devices, DDP, checkpoints and exact resume, MLflow, registry aliases,
packaging and the handler's request / 4xx handling live in it once. A stage supplies what differs — see
:class:`Stage`. A stage's own settings are a params section of its name (``landmarks:``) holding whole
sections (``model``, ``train``, ``evaluate``, ``registry``) that replace the top-level ones for it;
the parser uses the top-level sections as they are (``for_stage``). ``registry.tracking_uri`` and
``registry.experiment`` are inherited from the top level when a stage's section leaves them out.
"""
from __future__ import annotations

import copy
import importlib
import importlib.metadata
import importlib.util
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from ..defaults import fill_defaults

# name → the stage's package; its `stage` module defines `STAGE` (imported on first use: `faceparse stages`
# stays light), its optional `cli` module adds the stage's own verbs, its optional `codec` module `CODEC`
_PACKAGES: dict[str, str] = {name: f"faceparse.stages.{name}" for name in
                             ("parser", "landmarks", "completion", "fisn", "recon3d")}
ENTRY_POINTS = "faceparse.stages"   # an installed package adds a stage: `name = "its_package"` in this group
# where every stage's runs and models go: a stage section that leaves these out (or null) inherits them,
# so `--set registry.tracking_uri=...` moves all stages together
INHERITED = (("registry", "tracking_uri"), ("registry", "experiment"))


@dataclass(frozen=True)
class Info:
    """What `faceparse stages --json` lists."""
    name: str
    summary: str
    primary_metric: str
    direction: str            # "max" (higher is better) | "min"
    trainable: bool = True
    model_name: str = ""      # default registry name
    outputs: str = ""         # what predict / the endpoint answer
    metric_label: str = ""    # the primary metric in prose ("mean F1")
    verb: str = ""            # the stage's own photo command when `faceparse predict` does not answer for it


@dataclass(frozen=True)
class Floor:
    """What a model must beat to be promoted: its test primary metric against a trivial baseline measured on
    the same split, ``baseline × factor`` ("times") or ``baseline ± margin`` ("plus", in the stage's
    direction). params ``registry.floor`` sets the factor / margin; ``registry.floor: null`` turns it off."""
    baseline: str      # the evaluation's baseline metric (registered beside the primary one)
    kind: str          # "times" | "plus"
    default: float


@dataclass(frozen=True)
class TrainInputs:
    """What dvc.yaml's ``train@<stage>`` depends on besides what every training does (the loop, checkpoints,
    the dataset): paths (a file, a folder or a ``${params}`` reference; "" → the stage's code folder) and the
    params keys training reads (() → its section's ``model`` and ``train``)."""
    data: str = ""       # its dataset code (or a data folder of its own)
    model: str = ""      # its network
    lib: str = ""        # losses / the library it trains through
    uses: str = ""       # anything else it reads
    record: str = ""     # weights or records it starts from or carries
    params: tuple[str, ...] = ()


@dataclass(frozen=True)
class EvaluateInputs:
    """What dvc.yaml's ``evaluate@<stage>`` depends on besides the bundle, the dataset and the stage's code
    ("" → the stage's code folder) and the params keys evaluation reads (() → its section's ``evaluate``)."""
    eval: str = ""       # its evaluation code
    lib: str = ""
    model: str = ""
    record: str = ""     # models or records it reads besides the bundle
    params: tuple[str, ...] = ()


@dataclass(frozen=True)
class DvcInputs:
    """A stage's entries in dvc.yaml's per-stage steps — ``train`` (a trainable stage; one that trains nothing
    is composed by a step of the template instead), ``evaluate``, ``register`` — which `faceparse stages dvc`
    writes from the registered stages (faceparse.dvcgen). Its outputs and params sections follow from
    ``section``: ``${<section>.train.bundle_dir}``, ``<section>.evaluate``, ``<section>.registry``, …"""
    train: TrainInputs = field(default_factory=TrainInputs)
    evaluate: EvaluateInputs = field(default_factory=EvaluateInputs)
    code: str = ""                # its code ("": its package's folder)
    section: str | None = None    # its params section: None → its name, "" → the top level (the parser)
    # comments written beside its entries: "train" / "evaluate" / "register" (the stage's line), "train.model", …
    notes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class KfpWiring:
    """How the kfp pipeline (pipelines/pipeline.py) runs a stage. Every stage goes train (or compose, when it
    trains nothing) → evaluate → register → [quality gate] promote → [promoted] package; this says what
    differs. Stages it needs (``composes``, ``carries``, ``evaluates_with``) must be registered before it; it
    runs under their switches."""
    gate: str = ""             # the pipeline parameter its quality gate compares with ("": none; promote decides)
    gate_default: float = 0.0  # that parameter's default (one that lets every model through)
    gate_metric: str = ""      # the evaluation's number gated ("": the primary metric), in the stage's direction
    switch: bool = True        # a bool pipeline parameter of its name runs it (and the stages that need it)
    # a stage that trains nothing: composed stage → the compose component's input prefix (``parser`` →
    # parser_model / parser_registered)
    composes: dict[str, str] = field(default_factory=dict)
    carries: str = ""          # the stage whose model (and registration record) its bundle carries: train's carry
    evaluates_with: str = ""   # the stage whose model its evaluation also runs (evaluate's deocclude inputs)
    own_data: str = ""         # the component making a dataset of its own (validated as the main one is)
    then: tuple[str, ...] = () # components run after it over the dataset with its model ("complete")

    def needs(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*self.composes, *filter(None, (self.carries, self.evaluates_with))]))


class Stage:
    """The contract between a stage and the shared path: one object per stage (its package's ``stage.STAGE``).

    Hooks take the stage's own params (``for_stage(params, name)``) and the bundle meta its model is rebuilt
    from. Every stage implements the model and evaluation hooks; a trainable stage (``info.trainable``) the
    training hooks too; a stage that answers photos in the CLI / API, ``predict_photo``. The serving side
    (formats, encoding, the canary's agreement) is the package's ``codec`` module; extra verbs its ``cli``
    module; its params section its ``params`` module.
    """

    info: Info
    meta_keys: tuple[str, ...] = ()   # bundle.json keys (besides model_config) its model is rebuilt from
    baseline_metrics: tuple[str, ...] = ()   # registered beside the primary metric (e.g. mean_shape_nme)
    photo_frame: Any = None   # the faceparse.photos.Frame a detected face is cropped with (None: CelebA-HQ's)
    row_metrics: tuple[str, ...] = ()   # validation metrics in each epoch's row (default: the primary metric)
    floor: Floor | None = None         # the trivial baseline a model must beat to be promoted
    dvc: DvcInputs = DvcInputs()       # its entries in dvc.yaml (`faceparse stages dvc`)
    kfp: KfpWiring = KfpWiring()       # how the kfp pipeline runs it

    # --- identity ------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.info.name

    @property
    def primary_metric(self) -> str:
        return self.info.primary_metric

    def val_metrics(self) -> tuple[str, ...]:
        """The validation metrics each epoch logs; the first one picks the best epoch (``keep: best``)."""
        return self.row_metrics or (self.primary_metric,)

    def better(self, a: float, b: float, margin: float = 0.0) -> bool:
        """Is ``a`` better than ``b`` by more than ``margin``, in this stage's direction?"""
        return a > b + margin if self.info.direction == "max" else a < b - margin

    def floor_bound(self, metrics: dict[str, Any], registry: dict[str, Any]) -> float | None:
        """The value the primary metric must beat (None: no floor, turned off, or no baseline measured)."""
        rule = self.floor
        if rule is None or ("floor" in registry and registry["floor"] is None):
            return None
        base = metrics.get(rule.baseline)
        if not isinstance(base, (int, float)) or not math.isfinite(base):
            return None
        f = float(registry.get("floor", rule.default))
        if rule.kind == "times":
            return base * f
        return base + f if self.info.direction == "max" else base - f

    def floor_problem(self, metrics: dict[str, Any], registry: dict[str, Any]) -> str | None:
        """None when ``metrics`` clear this stage's floor, else why not (in words, with the figures)."""
        bound, value = self.floor_bound(metrics, registry), metrics.get(self.primary_metric)
        if bound is None or value is None or self.better(float(value), bound):
            return None
        rule = self.floor
        f = float(registry.get("floor", rule.default))
        how = f"{rule.baseline} {metrics[rule.baseline]:.4f} {'×' if rule.kind == 'times' else '±'} {f:g}"
        return (f"test {self.info.metric_label or self.primary_metric} {float(value):.4f} does not clear its floor "
                f"{bound:.4f} ({how}; registry.floor)")

    def _missing(self, hook: str):
        return NotImplementedError(f"stage {self.name!r} does not implement {hook}")

    # --- model (every stage) -------------------------------------------------------------------------
    def model_config(self, params: dict[str, Any]) -> dict[str, Any]:
        """The architecture, from params (refusing a bad one before any work): bundle meta ``model_config``."""
        raise self._missing("model_config")

    def build_model(self, meta: dict[str, Any]) -> Any:
        """The untrained network (a torch Module) that bundle meta describes; weights are loaded into it."""
        raise self._missing("build_model")

    def model_report(self, mcfg: dict[str, Any], input_size: int) -> dict[str, Any]:
        """Parameters and MACs of the architecture ``mcfg`` at ``input_size`` (`faceparse model-report`)."""
        raise ValueError(f"stage {self.name!r} has no network of its own to report: see the stages it composes")

    # --- training (trainable stages; faceparse.train runs them in this order) --------------------------
    def data_meta(self, info: dict[str, Any], params: dict[str, Any], frames=None) -> dict[str, Any]:
        """What the dataset fixes in the bundle meta (label table, classes, points, framing)."""
        raise self._missing("data_meta")

    def datasets(self, params: dict[str, Any], frames, meta: dict[str, Any], cfg) -> tuple[Any, Any]:
        """(train, val) torch datasets from the manifest's split frames; a train dataset with
        ``set_epoch(epoch)`` is told each epoch (its augmentation then resumes exactly)."""
        raise self._missing("datasets")

    def report(self, meta: dict[str, Any], input_size: int) -> dict[str, Any]:
        """MLflow params describing the model (sizes, MACs)."""
        return {}

    def run_name(self, mcfg: dict[str, Any]) -> str:
        """The MLflow run's name."""
        return f"{self.name}-{mcfg.get('preset', 'custom')}"

    def optimizers(self, model, cfg) -> dict[str, Any]:
        """Named optimisers (a GAN has two), checkpointed and restored by name."""
        raise self._missing("optimizers")

    def schedulers(self, optimizers: dict[str, Any], cfg) -> dict[str, Any]:
        """Named LR schedulers, one per optimiser name."""
        raise self._missing("schedulers")

    def step_module(self, model, dd=None):
        """The module DDP wraps (the model, or model + discriminator)."""
        return model

    def prepare(self, ctx) -> None:
        """Once before the first epoch (losses that need the model, carried weights)."""

    def train_step(self, ctx, batch):
        """Forward, backward, optimiser steps on one batch; returns the batch loss (a tensor)."""
        raise self._missing("train_step")

    def evaluator(self, meta: dict[str, Any], cfg):
        """Validation: an object with ``update(model, batch, device, autocast)``, ``reduce(dd)`` (across
        ranks) and ``compute()`` → flat metrics holding ``primary_metric``."""
        raise self._missing("evaluator")

    def describe(self, val: dict[str, Any]) -> str:
        """One line of validation metrics for the epoch log."""
        return f"{self.primary_metric} {val.get(self.primary_metric)}"

    def headline(self, result: dict[str, Any]) -> str:
        """One line of its test evaluation (``evaluate.metrics_file``): `faceparse stages summary`, the end of
        `make run`."""
        return (f"{self.name}: test {self.info.metric_label or self.primary_metric} "
                f"{figure(result, self.primary_metric)}  ({result.get('n_images')} test images)")

    def load_initial(self, model, state: dict[str, Any]) -> None:
        """``train.init``: another bundle's weights into the model about to train (RuntimeError on another
        architecture); a stage whose bundle carries a model it does not train loads only its own part."""
        model.load_state_dict(state)

    def bundle_metrics(self, val: dict[str, Any], cfg) -> dict[str, Any]:
        """The validation metrics written into bundle.json, marked as the validation split's."""
        return {"split": "val", **val}

    def final_artifacts(self, ctx, model, val, evaluator, val_ds, out) -> dict[str, float]:
        """After training: plots / samples logged to MLflow; returns extra MLflow metrics."""
        return {}

    # --- evaluation (every stage) ----------------------------------------------------------------------
    def evaluate_split(self, model, meta: dict[str, Any], frame, data_dir, params: dict[str, Any],
                       progress: bool) -> tuple[dict[str, Any], dict[str, Any]]:
        """(result with ``primary_metric`` at its top level, extras for the reports) on one split's frame."""
        raise self._missing("evaluate_split")

    def write_reports(self, result: dict[str, Any], extras: dict[str, Any], params: dict[str, Any]) -> list:
        """Plots and the markdown table of an evaluation; returns the files written."""
        return []

    def mlflow_metrics(self, result: dict[str, Any]) -> dict[str, float]:
        """The evaluation's metrics as MLflow logs them: the finite numbers at its top level, ``test_``-named."""
        return {f"test_{k}": float(v) for k, v in result.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}

    # --- photos ----------------------------------------------------------------------------------------
    def predict_steps(self, net, meta: dict[str, Any], out, resolution: int | None = None, masks: bool = False,
                      detect: bool = True):
        """`faceparse predict`: (run: photos, names → answers (or NoFaceError each), write: one answer's
        files → its result dict, what: the progress bar's words)."""
        raise self._missing("predict_steps")

    def predict_photo(self, model, meta: dict[str, Any], image, detect: bool = True, what: str = "the image"):
        """A photo's answer in its own pixels (faces found, aligned, warped back; NoFaceError without one)."""
        raise self._missing("predict_photo")

    def open(self, net, meta: dict[str, Any], source: str):
        """`faceparse.load`: a loaded bundle of this stage as the Python API's callable (photo → answer in the
        photo's pixels); ``source``: where it came from, for its repr."""
        raise self._missing("open")

    def photo_benchmark(self, ref: str, folder: Path, detect: bool, params) -> tuple[str, str, dict[str, Any]]:
        """`faceparse evaluate --photos DIR`: the model ``ref`` on real photos with references → (a markdown
        table, a one-line summary, the result to print as JSON)."""
        raise self._missing("photo_benchmark")


def figure(result: dict[str, Any], key: str, digits: int = 4) -> str:
    """``result[key]`` for a headline: rounded to ``digits``, "n/a" when absent or not a number."""
    value = result.get(key)
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "n/a"


def plots_dir(evaluate: dict[str, Any]):
    """A stage's plot folder, created: ``evaluate.plots_dir``, else ``plots/`` beside its metrics file."""
    pdir = Path(evaluate.get("plots_dir") or Path(evaluate["metrics_file"]).parent / "plots")
    pdir.mkdir(parents=True, exist_ok=True)
    return pdir


def write_table(evaluate: dict[str, Any], text: str) -> list:
    """Write a stage's markdown report to ``evaluate.table_file`` when one is set; [its path] or []."""
    if not evaluate.get("table_file"):
        return []
    table = Path(evaluate["table_file"])
    table.parent.mkdir(parents=True, exist_ok=True)
    table.write_text(text)
    return [table]


def stage_names() -> list[str]:
    _discover()
    return list(_PACKAGES)


def _discover() -> None:
    """Stages other installed packages declare (entry point group ``faceparse.stages``: name → package), once."""
    if _DISCOVERED:
        return
    _DISCOVERED.append(True)
    for ep in importlib.metadata.entry_points(group=ENTRY_POINTS):
        _PACKAGES.setdefault(ep.name, ep.value)


_DISCOVERED: list[bool] = []


def package_of(name: str) -> str:
    _discover()
    try:
        return _PACKAGES[name]
    except KeyError:
        raise ValueError(f"unknown model stage {name!r}; known: {sorted(_PACKAGES)} (params `stage`, --stage)") from None


def get_stage(name: str) -> Stage:
    return importlib.import_module(f"{package_of(name)}.stage").STAGE


def params_module(name: str) -> ModuleType | None:
    """The stage's ``params`` module (``SECTION``: its params section, None for the parser, whose sections
    are the top level's; ``RESOLVED``: the params resolved for it), or None when its package has none."""
    module = f"{package_of(name)}.params"
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name != module:
            raise
        return None


def stage_cli_modules() -> list[str]:
    """The registered stages' ``cli`` modules (those that have one), in registration order."""
    return [f"{package_of(n)}.cli" for n in stage_names() if importlib.util.find_spec(f"{package_of(n)}.cli")]


def register_stage(name: str, package: str) -> None:
    """Add a stage from its ``package`` (whose ``stage`` module defines ``STAGE``)."""
    if name in _PACKAGES:
        raise ValueError(f"stage {name!r} is already registered")
    _PACKAGES[name] = package


def bundle_stage(meta: dict[str, Any]) -> str:
    """The stage a bundle's meta names (bundles written before there were stages are the parser's)."""
    return str(meta.get("stage") or "parser")


BUNDLE_INPUT_SIZE = 256   # what faceparse.bundle.save_bundle records when a meta names no input size


def bundle_input_size(meta: dict[str, Any]) -> int:
    """The square side, in pixels, a bundle's model takes (every saved bundle records it)."""
    return int(meta.get("input_size", BUNDLE_INPUT_SIZE))


def stage_of(params: dict[str, Any]) -> Stage:
    return get_stage(str(params.get("stage") or "parser"))


def for_stage(params: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    """The params a stage's steps read: its own section's sections replace the top-level ones, and
    ``stage`` names it. Without a section of its name the top level is used as it is (the parser). Every
    key the result leaves out gets its default from the stage's resolved params model (``RESOLVED`` of its
    ``params`` module; a stage without one: the parser's), inside the sections the result holds."""
    name = str(name or params.get("stage") or "parser")
    package_of(name)  # unknown → ValueError naming the known ones (without importing the stage: torch)
    out = {k: copy.deepcopy(v) for k, v in params.items() if k not in _PACKAGES}
    own = params.get(name) or {}
    if not isinstance(own, dict):
        raise ValueError(f"params: section {name!r} must be a mapping")
    out.update(copy.deepcopy(own))
    for sec, key in INHERITED:
        top = (params.get(sec) or {}).get(key)
        if sec in own and (own[sec] or {}).get(key) is None and top is not None:
            out[sec][key] = top
    out["stage"] = name
    return fill_defaults((params_module(name) or params_module("parser")).RESOLVED, out)


def headline_of(raw_params: dict[str, Any], name: str) -> str:
    """A stage's headline (``Stage.headline``) from its test evaluation (its ``evaluate.metrics_file``), or
    why there is none."""
    path = Path(str(for_stage(raw_params, name)["evaluate"]["metrics_file"]))
    if not path.is_file():
        return f"{name}: not evaluated ({path} missing)"
    result = json.loads(path.read_text())
    if result.get("stage", name) != name:
        return f"{name}: not evaluated ({path} holds the {result['stage']!r} stage's evaluation)"
    return get_stage(name).headline(result)


def describe() -> list[dict[str, Any]]:
    out = []
    for n in stage_names():
        i = get_stage(n).info
        out.append({"name": i.name, "summary": i.summary, "primary_metric": i.primary_metric,
                    "direction": i.direction, "trainable": i.trainable, "model_name": i.model_name,
                    "outputs": i.outputs})
    return out
