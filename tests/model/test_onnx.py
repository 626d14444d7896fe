"""ONNX export parity: the exported graph (torch.onnx dynamo exporter) run by onnxruntime matches PyTorch
within max |Δlogit| ≤ 1e-3 and ≥ 99.9 % label agreement, on random inputs and a real photo, batch dim dynamic."""
from __future__ import annotations

import json

import numpy as np
import pytest

from faceparse.serve.testing import tiny_bundle


@pytest.fixture(scope="module")
def exported(tmp_path_factory, real_samples):
    from faceparse.export import export_onnx

    tmp = tmp_path_factory.mktemp("onnx")
    bundle = tiny_bundle(tmp / "bundle", seed=3)
    # 64 = the latent grid size: queries sit on cell centres and, at the borders, all four ensemble areas are
    # 0 — the case where onnxscript's optimizer (dropping LIIF's +1e-9) produced NaN logits
    rep = export_onnx(str(bundle), tmp / "m.onnx", resolution=64, check_images=[real_samples / "2.jpg"])
    return bundle, tmp / "m.onnx", rep


def test_parity_and_sidecar(exported, real_samples):
    """Parity measured here, not read from the exporter's report: onnxruntime on the written file against the
    bundle's model loaded afresh (not the exporter's own module), on real photos and a random image."""
    import onnxruntime as ort
    import torch
    from PIL import Image

    from faceparse.bundle import load_bundle
    from faceparse.models import preprocess

    bundle, path, rep = exported
    print(f"ONNX export {rep['export_s']} s, opset {rep['opset']}: max |Δlogit| {rep['max_abs_logit_diff']:.2e}, "
          f"label agreement {rep['label_agreement']:.5f} over {rep['checked_pixels']} px")
    model, _ = load_bundle(bundle)
    photos = [preprocess(Image.open(real_samples / f"{i}.jpg").convert("RGB"), 256) for i in (0, 2)]
    x = torch.stack(photos + [torch.rand(3, 256, 256, generator=torch.Generator().manual_seed(7)) * 2 - 1])
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["logits"], {"image": x.numpy()})[0]
    with torch.inference_mode():
        ref = model(x, out_size=64).numpy()
    assert got.shape == ref.shape == (3, 19, 64, 64) and np.isfinite(got).all()
    diff, agreement = float(np.abs(got - ref).max()), float((got.argmax(1) == ref.argmax(1)).mean())
    assert diff <= 1e-3 and agreement >= 0.999, (diff, agreement)
    assert len(np.unique(ref.argmax(1))) > 1   # a real map, not one class everywhere
    # the report says the same
    assert rep["passed"] and rep["nonfinite_logits"] == 0 and rep["max_abs_logit_diff"] <= 1e-3
    side = json.loads((path.parent / "m.onnx.json").read_text())
    assert side["resolution"] == 64 and side["input_size"] == 256 and len(side["classes"]) == 19


def test_dynamic_batch_and_labels(exported):
    import onnxruntime as ort
    import torch

    from faceparse.bundle import load_bundle

    bundle, path, _ = exported
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    model, _ = load_bundle(bundle)
    x = torch.rand(3, 3, 256, 256) * 2 - 1
    got = sess.run(["logits"], {"image": x.numpy()})[0]
    with torch.inference_mode():
        ref = model(x, out_size=64).numpy()
    assert got.shape == (3, 19, 64, 64)
    assert np.abs(got - ref).max() < 1e-3 and (got.argmax(1) == ref.argmax(1)).mean() >= 0.999


def test_parity_failure_is_an_error(exported):
    from faceparse.bundle import load_bundle
    from faceparse.export import ExportError, check_parity, fixed_resolution

    bundle, path, _ = exported
    model, _ = load_bundle(bundle)
    with pytest.raises(ExportError, match="parity failed"):
        check_parity(path, fixed_resolution(model, 64), 256, tol_logit=-1.0)
    other = tiny_bundle(path.parent / "other", seed=4)   # a different model must not pass
    res = check_parity(path, fixed_resolution(load_bundle(other)[0], 64), 256, raise_on_fail=False)
    assert not res["passed"]
