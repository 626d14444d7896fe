"""The parser stage's adapter: model, data, training hooks, evaluation and reports on the one path."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ... import plots
from ...api import Parser, load
from ...config import model_config
from ...labels import get_table
from ...losses import EdgeAwareCE
from ...metrics import Confusion, scores
from ...models import build_model, make_coord, preprocess
from ...photo_eval import f1_table, labelled_photos, score_photos
from ...report import model_report
from ...training.distributed import all_reduce_sum
from ...training.loop import to_device
from .. import DvcInputs, EvaluateInputs, Floor, Info, KfpWiring, Stage, TrainInputs
from .photo import predict_steps

# Imports inside functions here: loading a bundle (a served worker, `faceparse.load`) needs none of the evaluation's
# or the training data's libraries (tests/code/test_light_imports.py)


class QueryStep(torch.nn.Module):
    """encode + query in one forward, so DistributedDataParallel sees the whole training computation."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        return self.model.query(self.model.encode(images), coords)


class ConfusionEvaluator:
    """Validation of a parser: per-pixel confusion at out_size, summed across ranks."""

    def __init__(self, table, out_size: int):
        self.table, self.out_size = table, int(out_size)
        self.conf = Confusion(table.num_classes)
        self.matrix: np.ndarray | None = None

    def update(self, model, batch, device, autocast) -> None:
        with autocast:
            logits = model(to_device(batch["image"], device), self.out_size)
        pred = logits.float().argmax(1).cpu()
        self.conf.update(pred, batch["labels"].view(pred.shape))

    def reduce(self, dd) -> None:
        self.matrix = all_reduce_sum(torch.from_numpy(self.conf.matrix), dd).numpy()

    def compute(self) -> dict[str, Any]:
        return scores(self.matrix, self.table)


class ParserStage(Stage):
    info = Info("parser", "FP-LIIF face parser: image → per-pixel class logits at any resolution", "mean_f1", "max",
                model_name="faceparse-fpliif", outputs="label map PNG | overlay PNG | class fractions JSON",
                metric_label="mean F1")
    row_metrics = ("mean_f1", "miou", "pixel_acc")
    meta_keys = ("num_classes", "label_table")
    baseline_metrics = ("constant_skin_f1",)
    floor = Floor("constant_skin_f1", "times", 3.0)    # 3× the parser that answers skin everywhere
    dvc = DvcInputs(section="",   # the top-level params sections are the parser's
                    train=TrainInputs(data="src/faceparse/training/dataset.py", model="src/faceparse/models",
                                      lib="src/faceparse/losses.py", uses="src/faceparse/metrics.py",
                                      record="src/faceparse/labels.py",
                                      params=("model", "loss", "train", "data.label_table")),
                    evaluate=EvaluateInputs(eval="src/faceparse/stages/parser/evaluate.py",
                                            lib="src/faceparse/metrics.py", model="src/faceparse/models"))
    kfp = KfpWiring(gate="min_mean_f1", switch=False)   # always runs: the other stages build on it

    # --- model ---------------------------------------------------------------------------------------
    def model_config(self, params):
        return model_config(params)

    def data_meta(self, info, params, frames=None) -> dict[str, Any]:
        table = get_table(str(info["label_table"]))
        wanted = (params.get("data") or {}).get("label_table")
        if wanted and get_table(str(wanted)).name != table.name:
            raise ValueError(f"dataset label table is {table.name!r} but params data.label_table is {wanted!r}")
        return {"num_classes": table.num_classes, "label_table": table.name}

    def build_model(self, meta):
        return build_model(meta["model_config"], int(meta["num_classes"]))

    def report(self, meta, input_size: int) -> dict[str, Any]:
        rep = model_report(meta["model_config"], int(meta["num_classes"]), sizes=(64, 256), in_size=input_size)
        return {"report.params": rep["params"], "report.gmacs_64": rep["gmacs"]["64"],
                "report.gmacs_256": rep["gmacs"]["256"], "report.gmacs_256_executed": rep["gmacs_factorized"]["256"]}

    def run_name(self, mcfg) -> str:
        return f"train-{mcfg['preset']}"

    # --- training ------------------------------------------------------------------------------------
    def datasets(self, params, frames, meta, cfg):
        from ...training.dataset import FaceParsingDataset

        k = int(params["loss"]["edge_kernel"])
        n = int(meta["num_classes"])
        train = FaceParsingDataset(frames["train"], cfg.input_size, cfg.out_size, n, k,
                                   augment=cfg.augment if cfg.augment["enabled"] else None,
                                   sample_queries=cfg.sample_queries, seed=cfg.seed)
        return train, FaceParsingDataset(frames["val"], cfg.input_size, cfg.out_size, n, k)

    def optimizers(self, model, cfg) -> dict[str, torch.optim.Optimizer]:
        return {"model": torch.optim.Adam(model.parameters(), lr=cfg.lr)}

    def schedulers(self, optimizers, cfg) -> dict[str, Any]:
        return {"model": torch.optim.lr_scheduler.StepLR(optimizers["model"], step_size=cfg.lr_step,
                                                         gamma=cfg.lr_gamma)}

    def step_module(self, model, dd=None):
        return QueryStep(model)   # instance norm: per-sample statistics, nothing to synchronise

    def prepare(self, ctx) -> None:
        """Per-run state of the step: the loss and the output-pixel coordinate table."""
        loss = ctx.params["loss"]
        ctx.state["edge_weight"] = float(loss["edge_weight"])
        ctx.state["loss"] = EdgeAwareCE(float(loss["edge_weight"]), float(loss["temperature"]),
                                        int(loss["edge_kernel"]))
        ctx.state["coords"] = make_coord(ctx.cfg.out_size, ctx.cfg.out_size, ctx.dd.device)

    def train_step(self, ctx, batch) -> torch.Tensor:
        dd = ctx.dd
        images = to_device(batch["image"], dd.device)
        labels = batch["labels"].to(dd.device, non_blocking=True)
        edges = batch["edges"].to(dd.device, non_blocking=True)
        coords = ctx.state["coords"][batch["qidx"].to(dd.device, non_blocking=True)]
        with ctx.autocast():
            logits = ctx.step_module(images, coords)            # (B, Q, C)
        loss_fn = ctx.state["loss"]
        if dd.world_size > 1:
            loss_fn.edge_weight = rank_edge_weight(ctx.state["edge_weight"], edges, dd)
        return ctx.step(loss_fn(logits.transpose(1, 2), labels, edges))

    def evaluator(self, meta, cfg):
        return ConfusionEvaluator(get_table(meta["label_table"]), cfg.out_size)

    def headline(self, m: dict[str, Any]) -> str:
        return f"parser: test mean F1 {m['mean_f1']:.4f}  mIoU {m['miou']:.4f}  ({m['n_images']} test images)"

    def describe(self, val: dict[str, Any]) -> str:
        return f"val mean F1 {val['mean_f1']:.4f}  mIoU {val['miou']:.4f}"

    def bundle_metrics(self, val: dict[str, Any], cfg) -> dict[str, Any]:
        return {"split": "val", "out_size": cfg.out_size, "mean_f1": val["mean_f1"], "miou": val["miou"],
                "pixel_acc": val["pixel_acc"], "f1": val["f1"]}

    @torch.no_grad()
    def final_artifacts(self, ctx, model, val, evaluator, val_ds, out) -> dict[str, float]:
        """Per-class F1 bars, the normalised confusion matrix and overlays on the first validation images
        (in ``out``); returns the per-class metrics to log."""
        table, cfg = get_table(ctx.meta["label_table"]), ctx.cfg
        fg = {c: v for c, v in val["f1"].items() if c != table.classes[0]}
        plots.f1_bar(fg, out / "val_f1.png", title=f"validation F1 @ {cfg.out_size}² (mean {val['mean_f1']:.3f})",
                     mean=val["mean_f1"])
        plots.confusion_image(evaluator.matrix, table.classes, out / "val_confusion.png")
        model.eval()
        images, truths, preds, ids = [], [], [], []
        for i in range(min(OVERLAY_SAMPLES, len(val_ds))):
            image, truth = val_ds.raw(i)
            with ctx.autocast():
                logits = model(to_device(preprocess(image).unsqueeze(0), ctx.dd.device), cfg.out_size)
            preds.append(logits.float().argmax(1)[0].cpu().numpy().astype(np.uint8))
            images.append(image)
            truths.append(truth)
            ids.append(val_ds.ids[i])
        plots.overlay_grid(images, truths, preds, table.palette(), out / "val_overlays.png", titles=ids)
        return {f"val_f1.{c}": v for c, v in val["f1"].items()}

    # --- evaluation on a split ----------------------------------------------------------------------
    def predict_steps(self, net, meta, out, resolution=None, masks=False, detect: bool = True):
        return predict_steps(net, meta, out, resolution, masks, detect)

    def open(self, net, meta, source):
        return Parser(net, meta, source)

    def photo_benchmark(self, ref, folder, detect, params):
        """Per-class F1 against the label maps beside the photos."""
        res = score_photos(load(ref), labelled_photos(folder), detect=detect)
        return f1_table(res), f"scored {ref} on {res['n_images']} labelled photos in {folder}: mean F1 {res['mean_f1']:.4f}", res

    def evaluate_split(self, model, meta, frame, data_dir, params, progress):
        from .evaluate import evaluate_parser

        return evaluate_parser(model, meta, frame, data_dir, params, progress)

    def write_reports(self, result, extras, params):
        from .evaluate import write_parser_reports

        return write_parser_reports(result, extras, params)

    def mlflow_metrics(self, result) -> dict[str, float]:
        from .evaluate import mlflow_metrics

        return mlflow_metrics(result)


OVERLAY_SAMPLES = 4


def rank_edge_weight(edge_weight: float, edges: torch.Tensor, dd) -> float:
    """λ for this rank's loss so that DDP's gradient average equals the gradient of the GLOBAL-batch loss.

    EdgeAwareCE normalises the edge term by the edge pixels it sees: Σ(ce·e) / E. On W ranks DDP averages
    the ranks' gradients, so with λ_r = λ · W · E_r / E_all the average of the rank losses is
    mean(ce) + λ · Σ_all(ce·e) / E_all — exactly the 1-process loss on the same global batch (rank batches
    are equal-sized, so the plain-CE means average correctly as they are)."""
    e_r = edges.sum().to(torch.float64)
    e_all = float(all_reduce_sum(e_r.detach().clone(), dd))
    if e_all <= 0:
        return edge_weight
    return edge_weight * dd.world_size * float(e_r) / e_all


STAGE = ParserStage()
