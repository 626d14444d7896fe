"""`faceparse quantize`: an int8 parser bundle, calibrated on training images (issue #17).

The int8 bundle keeps the fp32 weights (``weights.pt`` unchanged, still ``weights_only``-loadable) and
records in ``bundle.json`` ``"precision": "int8"`` plus the calibrated activation ranges and where they
came from (``"int8"``: dataset, split, image ids hash, count). ``faceparse.bundle.load_bundle`` quantises
the model on load from those ranges (``faceparse.models.int8``; a fraction of a second), so the same bundle
also runs in fp32 (``--precision fp32``) and every consumer — predict, evaluate, the TorchServe handler,
the registry — gets int8 from the bundle alone.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Iterator

import torch

from .bundle import load_bundle, save_bundle
from .data.manifest import load_split, read_info
from .images import read_image
from .models import preprocess
from .models.int8 import calibrate
from .registry import resolve_bundle
from .stages import bundle_input_size, bundle_stage
from .tracking import tracking_uri

CALIB_BATCH = 4


def calibration_rows(df, n: int):
    """``n`` rows spread evenly over the split (deterministic; all of them when it has fewer)."""
    if n < 1:
        raise ValueError(f"--calib must be ≥ 1 image, got {n}")
    if len(df) == 0:
        raise ValueError("the calibration split is empty")
    step = max(1, len(df) // n)
    return df.iloc[::step].head(n)


def _batches(rows, input_size: int) -> Iterator[Any]:
    paths = list(rows["image_path"])
    for i in range(0, len(paths), CALIB_BATCH):
        yield torch.stack([preprocess(read_image(p), input_size) for p in paths[i:i + CALIB_BATCH]])


def quantize_bundle(model: str | os.PathLike, out: str | os.PathLike, calib: int = 32,
                    data_dir: str | os.PathLike | None = None, split: str = "train",
                    params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Calibrate ``model`` (bundle dir or ``models:/`` URI; a parser) on ``calib`` images of ``split`` of
    ``data_dir`` (default: params ``data.dir``) and write the int8 bundle to ``out``. Returns the report
    (also in the new bundle.json under ``int8``)."""
    ref = str(model)
    uri = None
    if ref.startswith(("models:/", "runs:/")):
        uri = tracking_uri(params)
    bdir, _ = resolve_bundle(ref, tracking_uri=uri)
    net, meta = load_bundle(bdir, precision="fp32")
    if bundle_stage(meta) != "parser":
        raise ValueError(f"int8 covers the parser; {model} is a {meta['stage']!r} model")
    data = Path(data_dir or ((params or {}).get("data") or {}).get("dir") or "")
    if not str(data) or not (data / "dataset.json").is_file():
        raise ValueError(f"calibration needs a dataset with a {split} split: pass --data (got {str(data) or 'none'})")
    info = read_info(data)
    if info.get("label_table") != meta["label_table"]:
        raise ValueError(f"{data} is labelled {info.get('label_table')!r}, the bundle predicts {meta['label_table']!r}")
    rows = calibration_rows(load_split(data, split), int(calib))
    size = bundle_input_size(meta)
    ranges = calibrate(net, _batches(rows, size), out_size=size)
    ids = "\n".join(rows["id"]).encode()
    record = {**ranges, "calibration": {"dataset": str(data.resolve()), "split": split, "images": len(rows),
                                        "ids_sha256": hashlib.sha256(ids).hexdigest(), "out_size": size},
              "source_bundle": str(ref)}
    meta = {**{k: v for k, v in meta.items() if k not in ("precision", "int8")}, "precision": "int8", "int8": record}
    save_bundle(out, net, meta)
    return {"out": str(out), "precision": "int8", **record}
