"""The landmark stage's adapter: model, data, training hooks, evaluation, photo inference and reports."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from ...api import Landmarker, load
from ...config import model_config
from ...ibug68 import inter_ocular, landmark_metrics
from ...models import count_params, preprocess
from ...photo_eval import nme_table, reference_points, score_landmarks
from ...photos import locate_points, plan_photo
from ...runtime import tick
from ...training.loop import to_device
from ...training.sync_bn import sync_batchnorm
from .. import DvcInputs, EvaluateInputs, Floor, Info, KfpWiring, Stage, TrainInputs, bundle_input_size, write_table
from .network import build_landmark_model
from .photo import draw_points, predict_steps

# Imports inside functions here: loading a bundle (a served worker, `faceparse.load`) needs none of the evaluation's
# or the training data's libraries (tests/code/test_light_imports.py)


class PointsEvaluator:
    """Collects predicted / true points (normalised) and visibility; gathers them across ranks. ``framed``:
    the split is given in the face framing (a detector-like crop), so the model looks once, as the photo
    path asks of it (``MobileNetV3Landmarks.look``); else it runs whole, refinement included."""

    def __init__(self, mean_shape, framed: bool = False):
        self.mean_shape = None if mean_shape is None else np.asarray(mean_shape, dtype=np.float64)
        self.framed = framed
        self.pred, self.true, self.visible = [], [], []

    def update(self, model, batch, device, autocast) -> None:
        run = getattr(model, "look", model) if self.framed else model
        with autocast:
            pred = run(to_device(batch["image"], device))
        self.pred.append(pred.float().cpu().numpy())
        self.true.append(batch["points"].numpy())
        self.visible.append(batch["visible"].numpy())

    def reduce(self, dd=None) -> None:
        def cat(parts, shape):
            return np.concatenate(parts) if parts else np.zeros((0, *shape))

        arrays = [cat(self.pred, (68, 2)), cat(self.true, (68, 2)), cat(self.visible, (68,)).astype(bool)]
        if dd is not None and dd.active and dd.world_size > 1:
            gathered: list = [None] * dd.world_size
            dist.all_gather_object(gathered, arrays)
            arrays = [np.concatenate([g[i] for g in gathered]) for i in range(3)]
        self.arrays = arrays

    def compute(self) -> dict[str, Any]:
        pred, true, visible = self.arrays
        return landmark_metrics(pred, true, visible=visible, mean_shape=self.mean_shape)


class LandmarkStage(Stage):
    info = Info("landmarks", "68-point landmark regressor (MobileNetV3): image → 68 (x, y) iBUG points", "nme", "min",
                model_name="faceparse-landmarks", outputs="points JSON | overlay PNG", metric_label="NME")
    row_metrics = ("nme", "auc_0.08")
    meta_keys = ("num_points",)
    floor = Floor("mean_shape_nme", "times", 0.6)     # 0.6× the mean training shape's NME
    baseline_metrics = ("mean_shape_nme", "nme_occluded", "nme_visible", "auc_0.08", "failure_rate_0.08")
    dvc = DvcInputs(train=TrainInputs(data="src/faceparse/stages/landmarks/dataset.py",
                                      model="src/faceparse/stages/landmarks/network.py", lib="src/faceparse/ibug68.py",
                                      uses="src/faceparse/training/dataset.py",
                                      record="src/faceparse/pretrained/landmarks",
                                      params=("landmarks.model", "landmarks.train")),
                    evaluate=EvaluateInputs(eval="src/faceparse/ibug68.py", lib="src/faceparse/stages/landmarks/dataset.py",
                                            model="src/faceparse/stages/landmarks/network.py"),
                    notes={"train.record": "train.init: the shipped weights it fine-tunes"})
    kfp = KfpWiring(gate="max_nme", gate_default=1.0)

    # --- model ---------------------------------------------------------------------------------------
    def model_config(self, params):
        return model_config(params)

    def data_meta(self, info, params, frames=None) -> dict[str, Any]:
        """``framing`` (what frame the model is given: the whole image, or the photo path's face crop, with
        the evaluation's detector-like jitter) and the training split's ``mean_shape`` in that frame."""
        from .dataset import mean_shape

        t = params.get("train") or {}
        meta: dict[str, Any] = {"num_points": 68, "framing": framing_of(t)}
        if frames is not None:
            size = int(t.get("input_size", 256))
            meta["mean_shape"] = np.round(mean_shape(frames["train"], size, meta["framing"]["mode"]), 6).tolist()
        return meta

    def build_model(self, meta):
        cfg = {k: v for k, v in meta["model_config"].items() if k != "preset"}
        model = build_landmark_model({**cfg, "num_points": int(meta.get("num_points", 68))})
        if meta.get("mean_shape") is not None:
            model.set_mean_shape(torch.tensor(meta["mean_shape"], dtype=torch.float32))
        return model

    def model_report(self, mcfg, input_size: int) -> dict[str, Any]:
        model = self.build_model({"model_config": mcfg, "num_points": 68})
        with torch.device("meta"), FlopCounterMode(display=False) as fc:
            model.to("meta")(torch.zeros(1, 3, input_size, input_size, device="meta"))
        return {"params": count_params(model), "gmacs": {str(input_size): fc.get_total_flops() / 2 / 1e9}}

    def report(self, meta, input_size: int) -> dict[str, Any]:
        rep = self.model_report(meta["model_config"], input_size)
        return {"report.params": rep["params"], f"report.gmacs_{input_size}": rep["gmacs"][str(input_size)]}

    def run_name(self, mcfg) -> str:
        return f"train-landmarks-{mcfg['preset']}"

    # --- training ------------------------------------------------------------------------------------
    def datasets(self, params, frames, meta, cfg):
        from .dataset import LandmarkDataset

        aug = cfg.augment if cfg.augment["enabled"] else None
        fr = meta.get("framing") or framing_of({})
        return (LandmarkDataset(frames["train"], cfg.input_size, augment=aug, seed=cfg.seed, framing=fr["mode"],
                                jitter=fr["jitter"], loose=fr["loose"]),
                eval_dataset(frames["val"], meta, cfg.input_size))

    def optimizers(self, model, cfg):
        return {"model": torch.optim.Adam(model.parameters(), lr=cfg.lr)}

    def schedulers(self, optimizers, cfg):
        return {"model": torch.optim.lr_scheduler.StepLR(optimizers["model"], step_size=cfg.lr_step,
                                                         gamma=cfg.lr_gamma)}

    def step_module(self, model, dd=None):
        """Under DDP, BatchNorm statistics over the global batch (so N processes compute what 1 does)."""
        if dd is not None and dd.world_size > 1:
            sync_batchnorm(model, dd.device)
        return model

    def prepare(self, ctx) -> None:
        pass

    def train_step(self, ctx, batch) -> torch.Tensor:
        images = to_device(batch["image"], ctx.dd.device)
        points = batch["points"].to(ctx.dd.device, non_blocking=True)
        with ctx.autocast():
            pred = ctx.step_module(images)
        return ctx.step(((pred.float() - points) ** 2).sum(-1).mean())   # eq. 1: squared L2 per point

    def evaluator(self, meta, cfg):
        return PointsEvaluator(meta.get("mean_shape"), framed=is_face_framed(meta))

    def headline(self, m: dict[str, Any]) -> str:
        occluded = m['nme_occluded'] if m['nme_occluded'] is None else round(m['nme_occluded'], 4)
        return (f"landmarks: test NME {m['nme']:.4f} (mean shape {m['mean_shape_nme']:.4f}; occluded points "
                f"{occluded}, visible {m['nme_visible']:.4f})  ({m['n_images']} test images)")

    def describe(self, val: dict[str, Any]) -> str:
        base = val.get("mean_shape_nme")
        return f"val NME {val['nme']:.4f}" + (f" (mean shape {base:.4f})" if base is not None else "")

    def bundle_metrics(self, val: dict[str, Any], cfg) -> dict[str, Any]:
        return {"split": "val", **{k: v for k, v in val.items() if not isinstance(v, (list, dict))}}

    @torch.no_grad()
    def final_artifacts(self, ctx, model, val, evaluator, val_ds, out) -> dict[str, float]:
        model.eval()
        images, truths, preds = [], [], []
        for i in range(min(4, len(val_ds))):
            image, pts = val_ds.raw(i)
            with ctx.autocast():
                p = model(to_device(preprocess(image).unsqueeze(0), ctx.dd.device))[0].float().cpu().numpy()
            images.append(image)
            truths.append(pts)
            preds.append(p * image.shape[1])
        save_points_grid(images, truths, preds, out / "val_landmarks.png")
        return {}

    # --- evaluation on a split ----------------------------------------------------------------------
    @torch.no_grad()
    def evaluate_split(self, model, meta, frame, data_dir, params, progress):
        ds = eval_dataset(frame, meta, bundle_input_size(meta))
        ev = PointsEvaluator(meta.get("mean_shape"), framed=is_face_framed(meta))
        bs = int(params["evaluate"]["batch_size"])
        loader = torch.utils.data.DataLoader(ds, batch_size=bs, shuffle=False)
        device = next(model.parameters()).device
        for batch in loader:
            ev.update(model, batch, device, contextlib.nullcontext())
            tick()
        ev.reduce()
        m = ev.compute()
        return {**m, "input_size": bundle_input_size(meta),
                "framing": (meta.get("framing") or framing_of({}))["mode"]}, {"arrays": ev.arrays}

    def write_reports(self, result, extras, params) -> list[Path]:
        """plots_dir/ced.csv (cumulative error distribution of per-image NME) and regions.csv."""
        plots = Path(params["evaluate"].get("plots_dir") or Path(params["evaluate"]["metrics_file"]).parent / "plots")
        plots.mkdir(parents=True, exist_ok=True)
        pred, true, _ = extras["arrays"]
        per_image = np.linalg.norm(pred - true, axis=-1).mean(-1) / inter_ocular(true)
        xs = np.linspace(0, 0.1, 51)
        (plots / "ced.csv").write_text("nme,fraction\n" + "".join(f"{x:.4f},{(per_image <= x).mean():.4f}\n" for x in xs))
        regions = [k[4:] for k in result if k.startswith("nme_") and k not in ("nme_occluded", "nme_visible")]
        (plots / "regions.csv").write_text("region,nme\n" + "".join(f"{r},{result[f'nme_{r}']}\n" for r in regions))
        return [plots, *write_table(params["evaluate"], markdown_table(result, regions))]

    def mlflow_metrics(self, result) -> dict[str, float]:
        return {f"test_{k}": float(v) for k, v in result.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)}

    def open(self, net, meta, source):
        return Landmarker(net, meta, source)

    def photo_benchmark(self, ref, folder, detect, params):
        """NME against the reference points beside the photos (dlib68.json), beside the trivial baseline."""
        res = score_landmarks(load(ref), reference_points(folder), detect=detect)
        base = f" (mean shape on the detector's 5 points: {res['baseline_nme']:.4f})" if "baseline_nme" in res else ""
        return nme_table(res), (f"scored {ref} on {res['n_images']} photos in {folder} against their reference "
                                f"points: NME {res['nme']:.4f}{base}"), res

    # --- predict / serve -----------------------------------------------------------------------------
    def predict_steps(self, net, meta, out, resolution=None, masks=False, detect: bool = True):
        return predict_steps(self, net, meta, out, detect)

    @torch.no_grad()
    def predict_photo(self, model, meta, image, detect: bool = True, what: str = "the image"):
        """An RGB PIL photo → ([(68, 2) points per face, most confident first, in the photo's pixels], plan):
        the faces found and framed as the parser's are (``faceparse.photos``); NoFaceError when there is none.
        A bundle trained on whole images (framing ``image``) is given the whole photo, as it was trained."""
        size = bundle_input_size(meta)
        plan = plan_photo(image, size, detect=detect and is_face_framed(meta), what=what)
        return locate_points(model, image, plan, size), plan


def framing_of(train: dict[str, Any]) -> dict[str, Any]:
    """``landmarks.train``'s framing settings as a bundle records them (defaults: the whole image, no jitter)."""
    mode = str(train.get("framing") or "image")
    return {"mode": mode, "jitter": float(train.get("frame_jitter") or 0.0),
            "eval_jitter": float(train.get("eval_frame_jitter") or 0.0), "loose": float(train.get("frame_loose") or 0.0)}


def is_face_framed(meta: dict[str, Any]) -> bool:
    """The bundle was trained on the photo path's face crops (else on whole images)."""
    return (meta.get("framing") or {}).get("mode") == "face"


def eval_dataset(frame, meta: dict[str, Any], input_size: int):
    """A split as validation / evaluation sees it: the bundle's framing, its fixed detector-like jitter."""
    from .dataset import LandmarkDataset

    fr = meta.get("framing") or framing_of({})
    return LandmarkDataset(frame, input_size, framing=fr["mode"], jitter=fr["eval_jitter"])


def markdown_table(result: dict[str, Any], regions: list[str]) -> str:
    """NME (% of the inter-ocular distance) overall, by region, hidden vs visible, and the baseline."""
    def pct(v):
        return "—" if v is None else f"{100 * v:.2f}"

    cols = ["all", *regions, "occluded pts", "visible pts", "mean shape", "AUC@0.08", "fail@0.08"]
    vals = [result.get("nme"), *[result.get(f"nme_{r}") for r in regions], result.get("nme_occluded"),
            result.get("nme_visible"), result.get("mean_shape_nme")]
    return "\n".join([f"## Landmark NME (%) on {result.get('n_images')} {result.get('split', 'test')} images", "",
                      "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols),
                      "| " + " | ".join([*(pct(v) for v in vals), pct(result.get("auc_0.08")),
                                         pct(result.get("failure_rate_0.08"))]) + " |", ""])


def save_points_grid(images, truths, preds, path: Path) -> None:
    """Truth (green) and prediction (red) on each image, side by side."""
    tiles = [draw_points(draw_points(im, t), p, (255, 0, 0)) for im, t, p in zip(images, truths, preds)]
    if tiles:
        Image.fromarray(np.concatenate(tiles, axis=1)).save(path)


STAGE = LandmarkStage()
