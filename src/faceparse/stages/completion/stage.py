"""The completion stage's adapter: composition, evaluation and reports on the one path."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...bundle import WEIGHTS, load_bundle, save_bundle
from .algorithm import Settings
from ...hashing import sha256_file
from ...registry import resolve_bundle
from ...tracking import tracking_uri
from .. import (DvcInputs, EvaluateInputs, Floor, Info, KfpWiring, Stage, bundle_input_size, bundle_stage, figure,
                for_stage, get_stage)
from .maps import CompletionModel
from .api import Completer
from .photo import load_completion
from ...occluders import KINDS, pasted_cases
from ...photo_eval import labelled_photos

# Imports inside functions here: loading a bundle (a served worker, `faceparse.load`) needs none of the evaluation's
# or the training data's libraries (tests/code/test_light_imports.py)


class CompletionStage(Stage):
    info = Info("completion", "map completion (Algorithm 1): parser map + landmark-drawn map → the face "
                "without its occluder, and the occlusion mask", "f1_occluded_gamma", "max", trainable=False,
                model_name="faceparse-completion", outputs="completed map PNG | occlusion mask PNG | contact sheet "
                "PNG | JSON", metric_label="F1 inside the occluded region", verb="complete")
    meta_keys = ("parser", "landmarks", "label_table")
    floor = Floor("f1_occluded_alpha", "plus", 0.0)  # M_γ above the parser's own map M_α
    baseline_metrics = ("f1_occluded_alpha", "f1_face_alpha", "f1_face_gamma", "occlusion_iou")
    # trains nothing: dvc.yaml's `compose` step (the template's) writes its bundle
    dvc = DvcInputs(evaluate=EvaluateInputs(eval="src/faceparse/stages/completion/evaluate.py",
                                            lib="src/faceparse/stages/completion/algorithm.py",
                                            model="src/faceparse/landmark_map.py"))
    # composed of the parser and landmark models just registered (components/compose.py's inputs); then the
    # completed maps of the dataset, for the de-occlusion generator
    kfp = KfpWiring(gate="min_completion_f1", switch=False, composes={"parser": "parser", "landmarks": "landmark"},
                    then=("complete",))

    # --- model ---------------------------------------------------------------------------------------
    def model_config(self, params) -> dict[str, Any]:
        cfg = dict(params.get("model") or {})
        Settings.from_dict(cfg)   # refuse a bad reading before any work
        return {"preset": "algorithm1", **cfg}

    def build_model(self, meta) -> CompletionModel:
        parser = get_stage("parser").build_model(meta["parser"])
        landmarks = get_stage("landmarks").build_model(meta["landmarks"])
        return CompletionModel(parser, landmarks, bundle_input_size(meta["landmarks"]))

    def settings(self, meta):
        return Settings.from_dict(meta["model_config"])

    # --- composition (instead of training) -----------------------------------------------------------
    def assemble(self, raw_params: dict[str, Any], refs: dict[str, str] | None = None):
        """(CompletionModel, bundle meta) from the composed models: ``refs`` {parser, landmarks} (bundle dirs
        or ``models:/`` URIs), default params ``completion.compose``. ``raw_params``: the whole params (each
        composed stage's registered file is read from its own section)."""
        params = for_stage(raw_params, self.name)
        refs = {**(params.get("compose") or {}), **{k: v for k, v in (refs or {}).items() if v}}
        parts, metas, nets = {}, {}, {}
        for name in ("parser", "landmarks"):
            bdir, info = _resolve(params, name, refs.get(name))
            nets[name], meta = load_bundle(bdir)
            if bundle_stage(meta) != name:
                raise ValueError(f"{refs[name]} is a {meta.get('stage', 'parser')!r} model, not a {name!r} one "
                                 f"(completion.compose.{name} / --{name})")
            metas[name] = {k: v for k, v in meta.items() if k not in ("mlflow_run_id", "metrics")}
            parts[name] = _provenance(for_stage(raw_params, name), refs[name], bdir, info)
        if metas["parser"].get("label_table") != "celebamask-hq":
            raise ValueError("map completion draws CelebAMask-HQ classes: the parser must use that label table, "
                             f"not {metas['parser'].get('label_table')!r}")
        model = CompletionModel(nets["parser"], nets["landmarks"], bundle_input_size(metas["landmarks"]))
        meta = {"stage": self.name, "model_config": self.model_config(params), "label_table": "celebamask-hq",
                "input_size": bundle_input_size(metas["parser"]), "parser": metas["parser"],
                "landmarks": metas["landmarks"], "composes": parts}
        return model.eval(), meta

    def compose(self, raw_params: dict[str, Any], refs: dict[str, str] | None = None) -> dict[str, Any]:
        """Write the bundle of the composed models (``completion.train.bundle_dir``); returns its meta."""
        model, meta = self.assemble(raw_params, refs)
        out = Path(str(for_stage(raw_params, self.name)["train"].get("bundle_dir") or "artifacts/completion/model"))
        save_bundle(out, model, meta)
        return {"bundle": str(out), **meta}

    # --- evaluation ----------------------------------------------------------------------------------
    def headline(self, m: dict[str, Any]) -> str:
        def f(k):
            return figure(m, k, 4)

        return (f"completion: F1 inside the occluded face region {f('f1_occluded_gamma')} (parser alone "
                f"{f('f1_occluded_alpha')}); over the face {f('f1_face_gamma')} (parser alone {f('f1_face_alpha')}); "
                f"occlusion mask IoU {f('occlusion_iou')}  ({m['n_images']} test images)")

    def evaluate_split(self, model, meta, frame, data_dir, params, progress):
        from .evaluate import evaluate_completion

        return evaluate_completion(model, self.settings(meta), bundle_input_size(meta), frame,
                                   Path(data_dir), params, progress)

    def write_reports(self, result, extras, params) -> list[Path]:
        from .evaluate import write_completion_reports

        return write_completion_reports(result, extras, params)

    def open(self, net, meta, source):
        return Completer(net, meta, source)

    def photo_benchmark(self, ref, folder, detect, params):
        """Real labelled photos with occluders pasted at known masks (faceparse.occluders): F1 inside the
        occluded face region of M_α and M_γ against each photo's label map, and the occlusion mask's IoU."""
        from .pasted import markdown as pasted_markdown
        from .pasted import score_pasted

        net, meta = load_completion(params, ref)
        cases = pasted_cases(labelled_photos(folder))
        res = score_pasted(net, meta, cases, detect)
        line = (f"completed {res['n_cases']} pasted occluders on {len(cases) // len(KINDS)} photos in {folder}: F1 "
                f"inside the occluded face region {res['f1_occluded_gamma']:.3f} (parser alone "
                f"{res['f1_occluded_alpha']:.3f}); occlusion mask IoU {res['occlusion_iou']:.3f}")
        return pasted_markdown(res), line, res


def _resolve(params, name: str, ref: str | None):
    if not ref:
        raise ValueError(f"params: completion.compose.{name} is not set (a bundle dir or models:/ URI)")
    ref = str(ref)
    return resolve_bundle(ref, tracking_uri=tracking_uri(params) if ref.startswith(("models:/", "runs:/")) else None)


def _provenance(own: dict[str, Any], ref: str, bdir: Path, info: dict[str, Any]) -> dict[str, Any]:
    """Where a composed model came from: its reference, weights hash, and registry version (a local bundle
    dir gets the version `register` recorded for the same weights, when there is one)."""
    sha = sha256_file(Path(bdir) / WEIGHTS)
    out = {"ref": str(ref), "bundle_sha256": sha, "model_uri": info.get("uri") if info.get("version") else None}
    reg = Path(str((own.get("registry") or {}).get("registered_file") or ""))
    if out["model_uri"] is None and reg.is_file():
        rec = json.loads(reg.read_text())
        if rec.get("bundle_sha256") == sha:
            out["model_uri"] = rec.get("uri")
    return out


STAGE = CompletionStage()
