"""The recon3d stage's adapter: model, data, training hooks, evaluation and reports on the one path."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from ...defaults import fill_defaults
from ...face3d.loss import DEFAULTS, FaceFeatureLoss, total_loss
from ...models import count_params
from ...models.resnet import PRESETS, build_resnet
from ...photos import RENDERED
from ...training.loop import to_device
from ...training.sync_bn import sync_batchnorm
from .. import DvcInputs, EvaluateInputs, Info, KfpWiring, Stage, TrainInputs, bundle_input_size, figure
from .dataset import Recon3dDataset
from .params import Recon3dModel
from .scoring import MeshEvaluator

# Imports inside functions here: loading a bundle (a served worker, `faceparse.load`) needs none of the evaluation's
# or the training data's libraries (tests/code/test_light_imports.py)


class Recon3dStage(Stage):
    info = Info("recon3d", "3D face reconstruction: ResNet → ICT-FaceKit coefficients (identity, expression, albedo, "
                "SH light, pose), differentiable renderer", "p90_mm_clean", "min", model_name="faceparse-recon3d",
                outputs="coefficients JSON | mesh OBJ (vertex colours) | render overlay PNG",
                metric_label="90th-percentile vertex error (mm) on clean inputs", verb="reconstruct")
    row_metrics = ("p90_mm", "mean_mm", "lmk_nme")
    meta_keys = ("face_model",)
    # no floor yet: the regressor does not beat the mean face (make run: 4.60 vs 4.56 mm), so a floor below it
    # would refuse every model; issue #32 (3D by fitting) sets Floor("p90_mm_mean_face", "times", 1.0)
    photo_frame = RENDERED    # a photo's face is cropped as the 3D renders frame theirs
    baseline_metrics = ("p90_mm_mean_face", "mean_mm_clean", "p90_mm_occluded", "p90_mm_deoccluded", "lmk_nme")
    dvc = DvcInputs(train=TrainInputs(data="${recon3d.data.dir}", model="src/faceparse/models/resnet.py",
                                      lib="src/faceparse/face3d", uses="src/faceparse/stages/recon3d/dataset.py",
                                      record="src/faceparse/assets/ict_facekit",
                                      params=("recon3d.model", "recon3d.loss", "recon3d.train", "recon3d.data.dir")),
                    evaluate=EvaluateInputs(lib="${recon3d.data.dir}", model="${recon3d.evaluate.deocclude}",
                                            record="src/faceparse/pretrained",
                                            params=("recon3d.evaluate", "recon3d.fit")),
                    notes={"train": "its own data: the synthetic 3D set",
                           "train.lib": "face model, renderer, loss (eq. 10-16)",
                           "evaluate": "clean / occluded / de-occluded (the fisn bundle) inputs",
                           "evaluate.record": "recon3d.fit's landmark and parser models (null: the shipped)"})
    # its own rendered set (synth3d → validate); its occluded test photos also de-occluded through the FISN model
    kfp = KfpWiring(gate="max_recon3d_p90_mm", gate_default=100.0, own_data="synth3d", evaluates_with="fisn")

    # --- model ---------------------------------------------------------------------------------------
    def model_config(self, params) -> dict[str, Any]:
        m = fill_defaults(Recon3dModel, params.get("model"))
        name = str(m.get("preset") or "small")
        if name not in PRESETS:
            raise ValueError(f"unknown recon3d preset {name!r}; known: {sorted(PRESETS)} (recon3d.model.preset)")
        over = dict(m.get("overrides") or {})
        unknown = set(over) - {"block", "layers", "width", "grid"}
        if unknown:
            raise ValueError(f"recon3d.model.overrides: unknown keys {sorted(unknown)} (block, layers, width, grid)")
        face = {k: int(m[k]) for k in ("n_id", "n_exp", "n_albedo")}
        scale = {str(k): float(v) for k, v in dict(m.get("head_scale") or {}).items()}
        return {"preset": name, **PRESETS[name], **over, **face, **({"head_scale": scale} if scale else {})}

    def data_meta(self, info, params, frames=None) -> dict[str, Any]:
        from ...face3d.model import asset_sha256

        sha = asset_sha256()
        if info.get("face_model_sha256") not in (None, sha):
            raise ValueError("the dataset was rendered with another face model file (dataset.json face_model_sha256)")
        loss = dict(params.get("loss") or {})
        return {"face_model": {"name": "ict-facekit", "sha256": sha, "license": "MIT"},
                "face_feature_loss": f"on: {loss['face_net']}" if loss.get("face_net") else
                "off (no face-recognition weights offline; recon3d.loss.face_net names a TorchScript file)"}

    def build_model(self, meta):
        from ...face3d.net import Recon3dNet

        return Recon3dNet({k: v for k, v in meta["model_config"].items() if k != "preset"}, bundle_input_size(meta))

    def model_report(self, mcfg, input_size: int) -> dict[str, Any]:
        net = build_resnet(mcfg, 1)
        n_out = self.build_model({"model_config": mcfg, "input_size": input_size}).face.num_coeffs
        with torch.device("meta"), FlopCounterMode(display=False) as fc:
            net.to("meta")(torch.zeros(1, 3, input_size, input_size, device="meta"))
        return {"params": count_params(net) + net.fc.in_features * (n_out - 1) + n_out - 1, "num_coeffs": n_out,
                "gmacs": {str(input_size): fc.get_total_flops() / 2e9}}

    def report(self, meta, input_size: int) -> dict[str, Any]:
        rep = self.model_report(meta["model_config"], input_size)
        return {"report.params": rep["params"], f"report.gmacs_{input_size}": rep["gmacs"][str(input_size)],
                "report.num_coeffs": rep["num_coeffs"], "report.face_feature_loss": meta.get("face_feature_loss"),
                "report.face_model_sha256": meta["face_model"]["sha256"]}

    def run_name(self, mcfg) -> str:
        return f"train-recon3d-{mcfg['preset']}"

    # --- training ------------------------------------------------------------------------------------
    def datasets(self, params, frames, meta, cfg):
        return Recon3dDataset(frames["train"], cfg.input_size), Recon3dDataset(frames["val"], cfg.input_size)

    def optimizers(self, model, cfg):
        return {"model": torch.optim.Adam(model.backbone.parameters(), lr=cfg.lr)}

    def schedulers(self, optimizers, cfg):
        return {"model": torch.optim.lr_scheduler.StepLR(optimizers["model"], step_size=cfg.lr_step, gamma=cfg.lr_gamma)}

    def step_module(self, model, dd=None):
        if dd is not None and dd.world_size > 1:
            sync_batchnorm(model, dd.device)
        return model

    def prepare(self, ctx) -> None:
        loss = {**DEFAULTS, **(ctx.params.get("loss") or {})}
        ctx.state["weights"] = loss
        ctx.state["face_loss"] = (FaceFeatureLoss(loss["face_net"], int(loss["face_net_size"])).to(ctx.dd.device)
                                  if loss.get("face_net") else None)
        ctx.state["tally"] = {}

    def train_step(self, ctx, batch) -> torch.Tensor:
        dev = ctx.dd.device
        x = to_device(batch["image"], dev)
        with ctx.autocast():
            y = ctx.step_module(x)
        y = y.float()
        out = ctx.model.render(y, x.shape[-1])
        loss, parts = total_loss(ctx.state["weights"], ctx.model.face.split(y), out, (x.float() + 1) / 2,
                                 batch["points"].to(dev), batch["parse"].to(dev), x.shape[-1], ctx.state["face_loss"],
                                 (ctx.model.face, batch["coeffs"].to(dev)) if batch["coeffs"].numel() else None)
        ctx.tally(parts)
        return ctx.step(loss)

    def evaluator(self, meta, cfg):
        return MeshEvaluator()

    def headline(self, m: dict[str, Any]) -> str:
        def f(k):
            return figure(m, k, 2)

        return (f"3D reconstruction: 90th-percentile vertex error, clean / occluded / de-occluded first: regressor "
                f"{f('p90_mm_clean')} / {f('p90_mm_occluded')} / {f('p90_mm_deoccluded')} mm, fitted "
                f"{f('p90_mm_fitted_clean')} / {f('p90_mm_fitted_occluded')} / {f('p90_mm_fitted_deoccluded')} mm "
                f"(the mean face: {f('p90_mm_mean_face')} mm)")

    def describe(self, val: dict[str, Any]) -> str:
        return (f"val p90 {val['p90_mm']:.2f} mm, mean {val['mean_mm']:.2f} mm (mean face p90 "
                f"{val['p90_mm_mean_face']:.2f} mm), landmark NME {val['lmk_nme']:.4f}")

    @torch.no_grad()
    def final_artifacts(self, ctx, model, val, evaluator, val_ds, out) -> dict[str, float]:
        """val_recon3d.png (input | render over it, the first validation faces); the loss parts' means."""
        from .evaluate import sheet

        model.eval()
        k = min(4, len(val_ds))
        if k:
            x = torch.stack([val_ds[i]["image"] for i in range(k)]).to(ctx.dd.device)
            sheet(model, x, [val_ds.ids[i] for i in range(k)], out / "val_recon3d.png")
        return ctx.tally_means("train_mean_loss_")

    # --- evaluation / serving ------------------------------------------------------------------------
    def evaluate_split(self, model, meta, frame, data_dir, params, progress):
        from .evaluate import evaluate_recon3d

        return evaluate_recon3d(model, meta, frame, Path(data_dir), params, progress)

    def open(self, net, meta, source):
        from .api import Reconstructor

        return Reconstructor(net, meta, source)

    def write_reports(self, result, extras, params) -> list[Path]:
        from .evaluate import write_recon3d_reports

        return write_recon3d_reports(result, extras, params)


STAGE = Recon3dStage()
