"""Test-set evaluation of a parser bundle: the paper's metrics and its multi-resolution table
(``faceparse.stages.parser.stage``'s ``evaluate_split`` / ``write_reports``; the driver is faceparse.evaluate).

Test-set evaluation of a model bundle: the paper's metrics and its multi-resolution table.

Metrics are dataset-level (one confusion matrix summed over every test pixel, ``faceparse.metrics``):
per-class F1 / IoU, mean F1 / mIoU over the non-background classes, pixel accuracy.

Resolutions. The *reference* resolution R is the dataset's label-map size (``dataset.json`` size; 256 for
the paper's setting). The model always sees the image resized to the bundle's ``input_size`` and decodes
logits at every size in ``evaluate.out_sizes`` from that one encoding (the LIIF property):

* output == R: compared with the label map as stored (the headline numbers);
* output >  R (e.g. 512 from a 256 input): the ground truth is the label map upsampled to the output size
  with *nearest-neighbour* interpolation (there is no finer ground truth in a 256-px dataset);
* output <  R (192 / 128 / 96 / 64): logits bilinearly upsampled to R, then compared at R.

Outputs: ``evaluate.metrics_file`` (DVC metrics JSON), ``evaluate.plots_dir`` (per-class F1/IoU as CSV and
JSON for a bar plot, mean F1 / mIoU by output size as CSV, the confusion matrix as CSV and as a PNG image),
``evaluate.table_file`` (a markdown table laid out like the paper's Tables 1/2: classes as columns, F1 in %,
then the multi-resolution table).
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ...config import ConfigError
from ...data.manifest import read_info
from ...images import read_image, read_label
from ...labels import get_table
from ...log import console
from ...metrics import Confusion, constant_f1, scores
from ...models import make_coord, preprocess
from ...plots import confusion_image
from ...runtime import tick
from ...training.dataset import resize_label

GT_UPSAMPLING = "nearest"      # ground truth at outputs above the reference resolution
LOGIT_UPSAMPLING = "bilinear"  # logits at outputs below the reference resolution, up to it
METRIC_PREFIX = "test_"        # names of the metrics logged to the MLflow run


def _load_pair(image_path: str, label_path: str, input_size: int, ref: int):
    try:
        x = preprocess(read_image(image_path), input_size)
    except (OSError, ValueError) as e:
        raise ValueError(f"unreadable test image: {e}") from None
    try:
        y = resize_label(read_label(label_path), ref)
    except (OSError, ValueError) as e:
        raise ValueError(f"unreadable test label map: {e}") from None
    return x, y


def confusions_at_sizes(model, batches: Iterable[tuple[Any, Any]], num_classes: int, ref: int,
                        out_sizes: list[int]) -> dict[int, Any]:
    """One ``Confusion`` per output size (the reference size always included), from batches of
    (images (B,3,h,w) normalised tensor, labels (B,ref,ref) int tensor at the reference resolution)."""
    sizes = sorted(set(int(s) for s in out_sizes) | {ref})
    conf = {s: Confusion(num_classes) for s in sizes}
    with torch.inference_mode():
        device = next(model.parameters()).device
        for images, labels in batches:
            images, labels = images.to(device), labels.to(device)
            b = images.shape[0]
            state = model.encode(images)
            for s in sizes:
                coord = make_coord(s, s, images.device).unsqueeze(0).expand(b, -1, -1)
                logits = model.query(state, coord).transpose(1, 2).reshape(b, num_classes, s, s)
                if s < ref:
                    logits = F.interpolate(logits, size=(ref, ref), mode=LOGIT_UPSAMPLING, align_corners=False)
                    target = labels
                elif s > ref:
                    target = F.interpolate(labels[:, None].float(), size=(s, s), mode=GT_UPSAMPLING)[:, 0].long()
                else:
                    target = labels
                conf[s].update(logits.argmax(1), target)
    return conf


def evaluate_parser(model, meta, df, data_dir: Path, params: dict[str, Any], progress: bool):
    """The parser on a split: dataset-level confusion at the reference resolution and at every
    ``evaluate.out_sizes`` → (result, {"matrix": confusion at the reference size})."""
    ev = params["evaluate"]
    for key in ("out_sizes", "plots_dir", "table_file"):
        if key not in ev:
            raise ConfigError(f"params: missing evaluate.{key}")
    info = read_info(data_dir)
    table = get_table(meta["label_table"])
    if info["label_table"] != table.name:
        raise ValueError(f"the bundle predicts the {table.name!r} classes but {data_dir} is labelled with "
                         f"{info['label_table']!r}: evaluate on a dataset with the bundle's label table")
    ref = int(info["size"])
    input_size = int(meta.get("input_size", ref))
    out_sizes = [int(s) for s in ev["out_sizes"]]
    bad = [s for s in out_sizes if s < 1]
    if bad:
        raise ConfigError(f"params: evaluate.out_sizes must be positive, got {bad}")
    batch_size = int(ev["batch_size"])
    rows = list(zip(df["image_path"], df["label_path"]))
    prog = Progress(TextColumn("[bold]evaluate[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, disable=not progress, transient=False)

    def batches():
        task = prog.add_task(f"{len(rows)} {ev['split']} images, outputs {sorted(set(out_sizes) | {ref})}",
                             total=len(rows))
        for i in range(0, len(rows), batch_size):
            pairs = [_load_pair(ip, lp, input_size, ref) for ip, lp in rows[i:i + batch_size]]
            x = torch.stack([p[0] for p in pairs])
            y = torch.from_numpy(np.stack([p[1] for p in pairs])).long()
            if int(y.max()) >= table.num_classes:
                raise ValueError(f"a label map in {rows[i:i + batch_size]} holds class ids ≥ {table.num_classes}")
            yield x, y
            prog.update(task, advance=len(pairs))
            tick()

    with prog:
        conf = confusions_at_sizes(model, batches(), table.num_classes, ref, out_sizes)
    main = scores(conf[ref].matrix, table)
    multires = {}
    for s in sorted(set(out_sizes) | {ref}):
        sc = scores(conf[s].matrix, table)
        multires[str(s)] = {"mean_f1": sc["mean_f1"], "miou": sc["miou"], "pixel_acc": sc["pixel_acc"]}
    result = {
        "mean_f1": main["mean_f1"], "miou": main["miou"], "pixel_acc": main["pixel_acc"],
        "constant_skin_f1": constant_f1(conf[ref].matrix, table),   # the trivial baseline: skin everywhere
        "per_class_f1": main["f1"], "per_class_iou": main["iou"],
        **({"groups_f1": main["groups_f1"]} if "groups_f1" in main else {}),
        "multires": multires, "label_table": table.name, "resolution": ref, "input_size": input_size,
        "gt_upsampling": GT_UPSAMPLING,        # outputs above `resolution`: truth upsampled this way
        "logit_upsampling": LOGIT_UPSAMPLING,  # outputs below: logits upsampled to `resolution`
    }
    return result, {"matrix": conf[ref].matrix, "classes": table.classes}


def write_parser_reports(result: dict[str, Any], extras: dict[str, Any], params: dict[str, Any]) -> list[Path]:
    """The plots (evaluate.plots_dir) and the paper-style markdown table (evaluate.table_file)."""
    ev = params["evaluate"]
    plots_dir, table_file = Path(ev["plots_dir"]), Path(ev["table_file"])
    write_plots(plots_dir, result, extras["matrix"], extras["classes"])
    table_file.parent.mkdir(parents=True, exist_ok=True)
    table_file.write_text(markdown_table(result, extras["classes"]))
    return [table_file, plots_dir]


# ------------------------------------------------------------------------------------------------ outputs


def write_plots(plots_dir: Path, result: dict[str, Any], matrix: np.ndarray, classes: tuple[str, ...]) -> list[Path]:
    """per_class_f1.csv / .json (class, f1, iou: a bar plot), confusion_matrix.csv (rows = truth,
    columns = prediction, pixel counts) and confusion.png (row-normalised matrix image)."""
    plots_dir.mkdir(parents=True, exist_ok=True)
    rows = [{"class": c, "f1": result["per_class_f1"].get(c), "iou": result["per_class_iou"].get(c)}
            for c in classes]
    written = []
    p = plots_dir / "per_class_f1.csv"
    with open(p, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["class", "f1", "iou"])
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    written.append(p)
    p = plots_dir / "per_class_f1.json"
    p.write_text(json.dumps(rows, indent=1) + "\n")
    written.append(p)
    p = plots_dir / "confusion_matrix.csv"
    with open(p, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["actual\\predicted", *classes])
        for c, row in zip(classes, np.asarray(matrix)):
            w.writerow([c, *map(int, row)])
    written.append(p)
    p = plots_dir / "multires.csv"
    with open(p, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["out_size", "mean_f1", "miou"])
        for s, m in sorted(result["multires"].items(), key=lambda kv: int(kv[0])):
            w.writerow([int(s), "" if m["mean_f1"] is None else m["mean_f1"], "" if m["miou"] is None else m["miou"]])
    written.append(p)

    p = plots_dir / "confusion.png"
    confusion_image(np.asarray(matrix), list(classes), p)
    written.append(p)
    return written


def _pct(v: Any) -> str:
    return "—" if v is None else f"{100 * v:.2f}"


def notes(result: dict[str, Any]) -> str:
    ref = result["resolution"]
    return (f"Dataset-level confusion; means over the non-background classes; a class absent from both truth and "
            f"prediction (—) is left out of the means. Outputs above {ref} are scored against the label map "
            f"{result.get('gt_upsampling', GT_UPSAMPLING)}-upsampled to the output size; outputs below {ref} "
            f"have their logits {result.get('logit_upsampling', LOGIT_UPSAMPLING)}-upsampled to {ref}.")


def markdown_table(result: dict[str, Any], classes: tuple[str, ...]) -> str:
    """The paper's Table 1/2 layout: one row per model, one column per (non-background) class, F1 in %,
    then mean F1; below it the multi-resolution table."""
    fg = list(classes[1:])
    bundle = str(result.get("bundle", "model"))
    label = bundle if bundle.startswith("models:/") else Path(bundle).name
    lines = [f"## Per-class F1 (%) on {result['label_table']} {result['split']} "
             f"({result['n_images']} images, {result['resolution']}×{result['resolution']} output)", "",
             "| Model | " + " | ".join(fg) + " | Mean F1 | mIoU |",
             "|---|" + "---:|" * (len(fg) + 2),
             f"| {label} | " + " | ".join(_pct(result["per_class_f1"].get(c)) for c in fg)
             + f" | {_pct(result['mean_f1'])} | {_pct(result['miou'])} |", ""]
    if result.get("groups_f1"):
        groups = list(result["groups_f1"])
        lines += ["| Model | " + " | ".join(groups) + " |", "|---|" + "---:|" * len(groups),
                  f"| {label} | " + " | ".join(_pct(result["groups_f1"][g]) for g in groups) + " |", ""]
    sizes = sorted(result["multires"], key=int)
    lines += [f"## Multi-resolution ({result['input_size']}×{result['input_size']} input)", "",
              "| Output | " + " | ".join(sizes) + " |", "|---|" + "---:|" * len(sizes),
              "| Mean F1 (%) | " + " | ".join(_pct(result["multires"][s]["mean_f1"]) for s in sizes) + " |",
              "| mIoU (%) | " + " | ".join(_pct(result["multires"][s]["miou"]) for s in sizes) + " |", "",
              f"_{notes(result)}_", ""]
    return "\n".join(lines)


def mlflow_metrics(result: dict[str, Any]) -> dict[str, float]:
    """Flat metric names for MLflow: test_mean_f1, test_miou, test_pixel_acc, test_f1_<class>,
    test_iou_<class>, test_mean_f1_<size>."""
    out = {f"{METRIC_PREFIX}{k}": result.get(k) for k in ("mean_f1", "miou", "pixel_acc")}
    out.update({f"{METRIC_PREFIX}f1_{c}": v for c, v in (result.get("per_class_f1") or {}).items()})
    out.update({f"{METRIC_PREFIX}iou_{c}": v for c, v in (result.get("per_class_iou") or {}).items()})
    for s, m in (result.get("multires") or {}).items():
        out[f"{METRIC_PREFIX}mean_f1_{s}"] = m.get("mean_f1")
        out[f"{METRIC_PREFIX}miou_{s}"] = m.get("miou")
    return {k: float(v) for k, v in out.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
