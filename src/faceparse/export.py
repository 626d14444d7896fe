"""ONNX export of a model bundle at a fixed output resolution, checked against PyTorch with onnxruntime.

The exported graph: input ``image`` (B, 3, S, S) float32, RGB normalised to [-1, 1] (``x / 127.5 - 1``,
``faceparse.models.preprocess``), S = the bundle's input size; output ``logits`` (B, C, R, R) at the
resolution fixed at export time (LIIF decodes any R; ONNX gets one). The batch dimension is dynamic.
Exporter: ``torch.onnx.export(..., dynamo=True)`` (torch.export + onnxscript; the default in torch 2.13).
A sidecar ``<out>.json`` records classes, sizes, normalisation and the parity figures.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnx
import onnxruntime as ort
import torch

from .bundle import load_bundle
from .images import read_image
from .labels import get_table
from .models import preprocess
from .models.fpliif import check_out_size
from .serve.package import resolve_model
from .stages import bundle_input_size, bundle_stage

TOL_LOGIT = 1e-3        # max |logit_onnx - logit_torch|
MIN_AGREEMENT = 0.999   # share of pixels with the same argmax label


class ExportError(ValueError):
    """The exported graph disagrees with PyTorch beyond the stated tolerance."""


def fixed_resolution(model, resolution: int):
    """The exported module: image (B, 3, S, S) → logits (B, C, resolution, resolution)."""
    class FixedResolution(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, image):
            return self.model(image, out_size=resolution)

    return FixedResolution().eval()


def _check_inputs(input_size: int, images: Sequence[str | os.PathLike] = (), n_random: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    batches = [torch.rand(n_random, 3, input_size, input_size, generator=g) * 2 - 1]
    if images:
        batches.append(torch.stack([preprocess(read_image(p), input_size) for p in images]))
    return batches


def export_onnx(model: str | os.PathLike, out: str | os.PathLike, resolution: int = 256,
                check_images: Sequence[str | os.PathLike] = (), tol_logit: float = TOL_LOGIT,
                min_agreement: float = MIN_AGREEMENT, opset: int | None = None,
                params: dict[str, Any] | None = None, optimize: bool = False) -> dict[str, Any]:
    """Export ``model`` (bundle dir or ``models:/`` URI) to ``out`` and check it with onnxruntime.

    Returns {out, resolution, input_size, max_abs_logit_diff, label_agreement, ...}; raises ExportError
    when max |Δlogit| > tol_logit or label agreement < min_agreement (the file is kept for inspection,
    the sidecar records the failure)."""
    check_out_size(int(resolution))
    bundle_dir, info = resolve_model(model, params)
    net, meta = load_bundle(bundle_dir)
    if bundle_stage(meta) != "parser":
        raise ValueError(f"ONNX export covers the parser; {model} is a {meta['stage']!r} model")
    size = bundle_input_size(meta)
    wrapped = fixed_resolution(net, int(resolution))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(2, 3, size, size)  # batch 2: a batch-1 example would specialise the dim to 1
    t0 = time.perf_counter()
    # optimize=False: onnxscript's graph optimizer treats `+ 1e-9` (LIIF's area epsilon in
    # ensemble_weights) as a no-op Add and removes it, so queries whose four ensemble areas are all 0
    # (output resolution = latent grid, at the borders) divide 0/0 → NaN logits. onnxruntime still applies
    # its own graph optimisations when it loads the model.
    kwargs: dict[str, Any] = {"input_names": ["image"], "output_names": ["logits"], "dynamo": True,
                              "optimize": bool(optimize),
                              "dynamic_shapes": ({0: torch.export.Dim("batch", min=1, max=256)},)}
    if opset:
        kwargs["opset_version"] = int(opset)
    # the exporter prints progress on stdout: keep stdout for the command's result
    with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(wrapped, (example,), str(out), **kwargs)
    export_s = time.perf_counter() - t0
    opset_used = None
    try:
        m = onnx.load(str(out), load_external_data=False)
        opset_used = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), None)
    except Exception:  # noqa: BLE001 - informative only
        pass
    del prog

    parity = check_parity(out, wrapped, size, check_images, tol_logit, min_agreement, raise_on_fail=False)
    table = get_table(meta["label_table"])

    report = {
        "out": str(out), "model": str(model), "version": info.get("version"), "resolution": int(resolution),
        "input_size": size, "input": "image float32 (B, 3, S, S), RGB, x / 127.5 - 1", "output": "logits (B, C, R, R)",
        "label_table": table.name, "classes": list(table.classes), "opset": opset_used,
        "exporter": f"torch.onnx.export(dynamo=True), torch {torch.__version__}, onnxruntime {ort.__version__}",
        "export_s": round(export_s, 2), "bytes": out.stat().st_size, "onnxscript_optimize": bool(optimize), **parity,
    }
    Path(str(out) + ".json").write_text(json.dumps(report, indent=2))
    if not report["passed"]:
        raise ExportError(_failure(parity) + f"; see {out}.json")
    return report


def _failure(p: dict[str, Any]) -> str:
    t = p["tolerance"]
    return (f"ONNX parity failed: max |Δlogit| {p['max_abs_logit_diff']:.3g} (tolerance {t['max_abs_logit_diff']:g}), "
            f"label agreement {p['label_agreement']:.4%} (minimum {t['min_label_agreement']:.1%}), "
            f"{p['nonfinite_logits']} non-finite ONNX logits")


def check_parity(onnx_path: str | os.PathLike, torch_module, input_size: int,
                 check_images: Sequence[str | os.PathLike] = (), tol_logit: float = TOL_LOGIT,
                 min_agreement: float = MIN_AGREEMENT, raise_on_fail: bool = True) -> dict[str, Any]:
    """Run the ONNX graph (onnxruntime, CPU) and ``torch_module`` (image → logits) on the same inputs: 2 random
    images plus ``check_images``; max |Δlogit| and the share of pixels with the same argmax label."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, min(2, os.cpu_count() or 1))
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    max_diff, agree, total, nonfinite = 0.0, 0, 0, 0
    with torch.inference_mode():
        for x in _check_inputs(input_size, check_images):
            ref = torch_module(x).numpy()
            got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
            if got.shape != ref.shape:
                raise ExportError(f"ONNX output shape {got.shape} != PyTorch {ref.shape}")
            bad = int((~np.isfinite(got) & np.isfinite(ref)).sum())
            nonfinite += bad
            d = np.abs(got - ref)
            max_diff = max(max_diff, float("inf") if bad else float(np.nan_to_num(d, nan=0.0).max()))
            agree += int((got.argmax(1) == ref.argmax(1)).sum())
            total += int(ref.shape[0] * ref.shape[2] * ref.shape[3])
    agreement = agree / max(total, 1)
    res = {"max_abs_logit_diff": max_diff, "label_agreement": agreement, "checked_pixels": total,
           "nonfinite_logits": nonfinite,
           "tolerance": {"max_abs_logit_diff": tol_logit, "min_label_agreement": min_agreement},
           "passed": nonfinite == 0 and max_diff <= tol_logit and agreement >= min_agreement}
    if raise_on_fail and not res["passed"]:
        raise ExportError(_failure(res))
    return res
