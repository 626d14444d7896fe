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

import importlib
from dataclasses import dataclass
from typing import Any

# name → module defining `STAGE` (imported on first use: `faceparse stages` stays light)
_MODULES: dict[str, str] = {"parser": "faceparse.stages.parser", "landmarks": "faceparse.stages.landmarks",
                           "completion": "faceparse.stages.completion", "fisn": "faceparse.stages.fisn",
                           "recon3d": "faceparse.stages.recon3d"}
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


class Stage:
    """The contract. Hooks take the stage's own params (``for_stage(params, name)``).

    model: ``model_config(params)``, ``data_meta(info, params)`` (what the dataset fixes: classes, points),
    ``build_model(meta)`` from bundle meta, ``report(meta, input_size)`` (params / MACs for MLflow).
    training: ``datasets(params, frames, meta, cfg)`` → (train, val); ``optimizers(model, params)`` and
    ``schedulers(optimizers, params)`` as named dicts (a GAN has two of each); ``step_module(model)`` (what
    DDP wraps); ``train_step(ctx, batch)`` (forward, backward, optimiser steps; returns the batch loss);
    ``evaluator(meta)`` (update / reduce across ranks / compute → flat metrics) for validation.
    evaluation: ``evaluate_split(model, meta, frame, params, progress)`` → result with the primary metric at
    the top level, then ``write_reports(result, params)``.
    serving / predict: ``predict_batch(model, meta, images, resolution)`` → outputs, ``write_prediction``;
    the handler's ``encode`` and the canary's ``agreement`` (see faceparse.serve.codecs)."""

    info: Info
    meta_keys: tuple[str, ...] = ()   # bundle.json keys (besides model_config) its model is rebuilt from
    baseline_metrics: tuple[str, ...] = ()   # registered beside the primary metric (e.g. mean_shape_nme)

    # --- identity ------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.info.name

    @property
    def primary_metric(self) -> str:
        return self.info.primary_metric

    def better(self, a: float, b: float, margin: float = 0.0) -> bool:
        """Is ``a`` better than ``b`` by more than ``margin``, in this stage's direction?"""
        return a > b + margin if self.info.direction == "max" else a < b - margin

    def model_report(self, mcfg, input_size: int) -> dict[str, Any]:
        raise ValueError(f"stage {self.name!r} has no network of its own to report: see the stages it composes")


def plots_dir(evaluate: dict[str, Any]):
    """A stage's plot folder, created: ``evaluate.plots_dir``, else ``plots/`` beside its metrics file."""
    from pathlib import Path

    pdir = Path(evaluate.get("plots_dir") or Path(evaluate["metrics_file"]).parent / "plots")
    pdir.mkdir(parents=True, exist_ok=True)
    return pdir


def write_table(evaluate: dict[str, Any], text: str) -> list:
    """Write a stage's markdown report to ``evaluate.table_file`` when one is set; [its path] or []."""
    from pathlib import Path

    if not evaluate.get("table_file"):
        return []
    table = Path(evaluate["table_file"])
    table.parent.mkdir(parents=True, exist_ok=True)
    table.write_text(text)
    return [table]


def stage_names() -> list[str]:
    return list(_MODULES)


def _module_of(name: str) -> str:
    try:
        return _MODULES[name]
    except KeyError:
        raise ValueError(f"unknown model stage {name!r}; known: {sorted(_MODULES)} (params `stage`, --stage)") from None


def get_stage(name: str) -> Stage:
    return importlib.import_module(_module_of(name)).STAGE


def register_stage(name: str, module: str) -> None:
    """Add a stage defined in ``module`` (which must define ``STAGE``)."""
    if name in _MODULES:
        raise ValueError(f"stage {name!r} is already registered")
    _MODULES[name] = module


def stage_of(params: dict[str, Any]) -> Stage:
    return get_stage(str(params.get("stage") or "parser"))


def for_stage(params: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    """The params a stage's steps read: its own section's sections replace the top-level ones, and
    ``stage`` names it. Without a section of its name the top level is used as it is (the parser)."""
    import copy

    name = str(name or params.get("stage") or "parser")
    _module_of(name)  # unknown → ValueError naming the known ones (without importing the stage: torch)
    out = {k: copy.deepcopy(v) for k, v in params.items() if k not in _MODULES}
    own = params.get(name) or {}
    if not isinstance(own, dict):
        raise ValueError(f"params: section {name!r} must be a mapping")
    out.update(copy.deepcopy(own))
    for sec, key in INHERITED:
        top = (params.get(sec) or {}).get(key)
        if sec in own and (own[sec] or {}).get(key) is None and top is not None:
            out[sec][key] = top
    out["stage"] = name
    return out


def describe() -> list[dict[str, Any]]:
    out = []
    for n in stage_names():
        i = get_stage(n).info
        out.append({"name": i.name, "summary": i.summary, "primary_metric": i.primary_metric,
                    "direction": i.direction, "trainable": i.trainable, "model_name": i.model_name,
                    "outputs": i.outputs})
    return out
