"""The ``completion`` stage: Zhao & Qi's map completion — the parser's map M_α, the landmark-drawn map M_β
and Algorithm 1 → M_γ, the face without its occluder, and the occlusion mask.

Nothing is trained: ``faceparse compose --stage completion`` assembles a bundle from the two models it
composes (params ``completion.compose``: bundle dirs or ``models:/`` URIs) — their weights, their metas,
their registry versions and the algorithm's settings — and the one path takes it from there (evaluate,
register, promote, package, serve, canary). Primary metric: mean F1 inside the occluded face region
(``f1_occluded_gamma``, higher is better), on data with complete ground truth (the synthetic set's
``complete/`` and ``occlusion/``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import Info, Stage

METHODS = ("alpha", "beta", "gamma", "gamma_gt")   # gamma_gt: Algorithm 1 with ground-truth landmarks
REGIONS = ("occluded", "face")


class CompletionModel(torch.nn.Module):
    """The two networks as one module (one state dict, one bundle): images → (M_α labels, points)."""

    def __init__(self, parser: torch.nn.Module, landmarks: torch.nn.Module, landmark_size: int):
        super().__init__()
        self.parser, self.landmarks, self.landmark_size = parser, landmarks, int(landmark_size)

    def forward(self, x: torch.Tensor, out_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` at the parser's input size → labels (B, out, out) and points (B, 68, 2) in [0, 1]."""
        labels = self.parser(x, out_size).argmax(1)
        if x.shape[-1] != self.landmark_size:
            x = torch.nn.functional.interpolate(x, size=(self.landmark_size,) * 2, mode="bicubic",
                                                align_corners=False, antialias=True).clamp_(-1, 1)
        return labels, self.landmarks(x)


def run_maps(model: CompletionModel, settings, tensors: torch.Tensor, out_size: int) -> list:
    """Model inputs (B, 3, S, S) → one ``completion.Maps`` per image at ``out_size``²."""
    from ..completion import complete

    with torch.inference_mode():
        labels, points = model(tensors, out_size)
    labels = labels.to(torch.uint8).cpu().numpy()
    points = points.float().cpu().numpy() * out_size          # normalised → pixels of the output map
    return [complete(lab, pts, settings) for lab, pts in zip(labels, points)]


class CompletionStage(Stage):
    info = Info("completion", "map completion (Algorithm 1): parser map + landmark-drawn map → the face "
                "without its occluder, and the occlusion mask", "f1_occluded_gamma", "max", trainable=False,
                model_name="faceparse-completion", outputs="completed map PNG | occlusion mask PNG | contact sheet "
                "PNG | JSON", metric_label="F1 inside the occluded region")
    meta_keys = ("parser", "landmarks", "label_table")
    baseline_metrics = ("f1_occluded_alpha", "f1_face_alpha", "f1_face_gamma", "occlusion_iou")

    # --- model ---------------------------------------------------------------------------------------
    def model_config(self, params) -> dict[str, Any]:
        from ..completion import Settings

        cfg = dict(params.get("model") or {})
        Settings.from_dict(cfg)   # refuse a bad reading before any work
        return {"preset": "algorithm1", **cfg}

    def build_model(self, meta) -> CompletionModel:
        from . import get_stage

        parser = get_stage("parser").build_model(meta["parser"])
        landmarks = get_stage("landmarks").build_model(meta["landmarks"])
        return CompletionModel(parser, landmarks, int(meta["landmarks"].get("input_size", 256)))

    def settings(self, meta):
        from ..completion import Settings

        return Settings.from_dict(meta["model_config"])

    # --- composition (instead of training) -----------------------------------------------------------
    def assemble(self, raw_params: dict[str, Any], refs: dict[str, str] | None = None):
        """(CompletionModel, bundle meta) from the composed models: ``refs`` {parser, landmarks} (bundle dirs
        or ``models:/`` URIs), default params ``completion.compose``. ``raw_params``: the whole params (each
        composed stage's registered file is read from its own section)."""
        from ..bundle import load_bundle
        from . import for_stage

        params = for_stage(raw_params, self.name)
        refs = {**(params.get("compose") or {}), **{k: v for k, v in (refs or {}).items() if v}}
        parts, metas, nets = {}, {}, {}
        for name in ("parser", "landmarks"):
            bdir, info = _resolve(params, name, refs.get(name))
            nets[name], meta = load_bundle(bdir)
            if meta.get("stage", "parser") != name:
                raise ValueError(f"{refs[name]} is a {meta.get('stage', 'parser')!r} model, not a {name!r} one "
                                 f"(completion.compose.{name} / --{name})")
            metas[name] = {k: v for k, v in meta.items() if k not in ("mlflow_run_id", "metrics")}
            parts[name] = _provenance(for_stage(raw_params, name), refs[name], bdir, info)
        if metas["parser"].get("label_table") != "celebamask-hq":
            raise ValueError("map completion draws CelebAMask-HQ classes: the parser must use that label table, "
                             f"not {metas['parser'].get('label_table')!r}")
        model = CompletionModel(nets["parser"], nets["landmarks"], int(metas["landmarks"].get("input_size", 256)))
        meta = {"stage": self.name, "model_config": self.model_config(params), "label_table": "celebamask-hq",
                "input_size": int(metas["parser"].get("input_size", 256)), "parser": metas["parser"],
                "landmarks": metas["landmarks"], "composes": parts}
        return model.eval(), meta

    def compose(self, raw_params: dict[str, Any], refs: dict[str, str] | None = None) -> dict[str, Any]:
        """Write the bundle of the composed models (``completion.train.bundle_dir``); returns its meta."""
        from ..bundle import save_bundle
        from . import for_stage

        model, meta = self.assemble(raw_params, refs)
        out = Path(str(for_stage(raw_params, self.name)["train"].get("bundle_dir") or "artifacts/completion/model"))
        save_bundle(out, model, meta)
        return {"bundle": str(out), **meta}

    # --- evaluation ----------------------------------------------------------------------------------
    def evaluate_split(self, model, meta, frame, data_dir, params, progress):
        from .completion_eval import evaluate_completion

        return evaluate_completion(model, self.settings(meta), int(meta.get("input_size", 256)), frame,
                                   Path(data_dir), params, progress)

    def write_reports(self, result, extras, params) -> list[Path]:
        from .completion_eval import write_completion_reports

        return write_completion_reports(result, extras, params)

    def mlflow_metrics(self, result) -> dict[str, float]:
        return {f"test_{k}": float(v) for k, v in result.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)}


def _resolve(params, name: str, ref: str | None):
    from ..registry import resolve_bundle
    from ..tracking import tracking_uri

    if not ref:
        raise ValueError(f"params: completion.compose.{name} is not set (a bundle dir or models:/ URI)")
    ref = str(ref)
    return resolve_bundle(ref, tracking_uri=tracking_uri(params) if ref.startswith(("models:/", "runs:/")) else None)


def _provenance(own: dict[str, Any], ref: str, bdir: Path, info: dict[str, Any]) -> dict[str, Any]:
    """Where a composed model came from: its reference, weights hash, and registry version (a local bundle
    dir gets the version `register` recorded for the same weights, when there is one)."""
    from ..bundle import WEIGHTS
    from ..hashing import sha256_file

    sha = sha256_file(Path(bdir) / WEIGHTS)
    out = {"ref": str(ref), "bundle_sha256": sha, "model_uri": info.get("uri") if info.get("version") else None}
    reg = Path(str((own.get("registry") or {}).get("registered_file") or ""))
    if out["model_uri"] is None and reg.is_file():
        rec = json.loads(reg.read_text())
        if rec.get("bundle_sha256") == sha:
            out["model_uri"] = rec.get("uri")
    return out


STAGE = CompletionStage()
