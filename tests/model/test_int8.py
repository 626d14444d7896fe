"""Int8 inference (issue #17): int8 agrees with fp32 on a real photo, and the int8 path is the one the flag /
the bundle selects in predict and in the TorchServe handler."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from faceparse.bundle import load_bundle, save_bundle
from faceparse.models import build_model, make_coord, preprocess

# three hidden layers: two int8 GEMMs between the fp32 first layer and the fp32 blend + last layer
CFG = {"width": 16, "groups": [0, 1, 1], "norm": "instance", "decoder": "liif", "unfold": True, "reduce": [32, 16],
       "hidden": [64, 64, 64], "ensemble": True, "query_chunk": 16384}
SIZE = 64
MIN_AGREEMENT = 0.99


def _photos(real_samples):
    from faceparse.images import read_image, read_label
    from faceparse.training.dataset import resize_label

    x = torch.stack([preprocess(read_image(real_samples / f"{i}.jpg"), SIZE) for i in range(4)])
    y = torch.from_numpy(np.stack([resize_label(read_label(real_samples / f"{i}.png"), SIZE) for i in range(4)]))
    return x, y.long()


def _trained(real_samples, steps: int = 60):
    """A small parser fitted to the real photos 0-2 (a random model's near-tied logits would say nothing
    about int8 error); photo 3 is held out of training and calibration."""
    x, y = _photos(real_samples)
    torch.manual_seed(0)
    model = build_model(CFG, 19)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    coord = make_coord(SIZE, SIZE).unsqueeze(0).expand(3, -1, -1)
    for _ in range(steps):
        logits = model.query(model.encode(x[:3]), coord).transpose(1, 2)
        loss = torch.nn.functional.cross_entropy(logits, y[:3].view(3, -1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), x


@pytest.fixture(scope="module")
def trained(real_samples):
    return _trained(real_samples)


@pytest.fixture(scope="module")
def bundles(trained, tmp_path_factory):
    """(fp32 bundle, int8 bundle calibrated on a synthetic dataset's training split, the photos)."""
    from faceparse.data.synth import write_dataset
    from faceparse.quantize import quantize_bundle

    model, x = trained
    root = tmp_path_factory.mktemp("int8")
    fp32 = save_bundle(root / "fp32", model, {"model_config": CFG, "num_classes": 19, "label_table": "celebamask-hq",
                                             "input_size": SIZE})
    data = write_dataset(root / "data", 10, size=SIZE, progress=False)
    report = quantize_bundle(fp32, root / "int8", calib=4, data_dir=data)
    assert report["calibration"]["images"] == 4 and report["calibration"]["split"] == "train"
    return fp32, root / "int8", x


def _agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.argmax(1) == b.argmax(1)).float().mean().item()


def test_int8_agrees_with_fp32_on_a_real_photo(trained):
    import copy

    from faceparse.models.int8 import calibrate, quantize_model

    model, x = trained
    q = quantize_model(copy.deepcopy(model), calibrate(model, [x[:3]], out_size=SIZE))
    assert q.decoder.int8 is not None and model.decoder.int8 is None
    with torch.inference_mode():
        for out in (SIZE, 2 * SIZE):
            ref, got = model(x[3:], out), q(x[3:], out)
            agree = _agreement(ref, got)
            assert agree >= MIN_AGREEMENT, f"int8 / fp32 label agreement {agree:.4f} at {out} out"
            assert not torch.equal(ref, got)  # the int8 kernels really ran


def test_bundle_records_precision_and_load_selects_it(bundles):
    fp32, int8, x = bundles
    net, meta = load_bundle(int8)
    assert meta["precision"] == "int8" and net.decoder.int8 is not None
    assert meta["int8"]["calibration"]["images"] == 4 and len(meta["int8"]["decoder_act_max"]) == 3
    net32, meta32 = load_bundle(int8, precision="fp32")
    assert meta32["precision"] == "fp32" and net32.decoder.int8 is None
    with torch.inference_mode():
        assert _agreement(net(x, SIZE), net32(x, SIZE)) >= MIN_AGREEMENT
    with pytest.raises(ValueError, match="faceparse quantize"):
        load_bundle(fp32, precision="int8")
    with pytest.raises(ValueError, match="precision must be"):
        load_bundle(int8, precision="fp16")


def test_predict_precision_flag(bundles, real_samples, tmp_path):
    from PIL import Image

    from faceparse.predict import predict

    _, int8, _ = bundles
    photo = real_samples / "3.jpg"
    maps = {}
    for flag, want in ((None, "int8"), ("fp32", "fp32"), ("int8", "int8")):
        out = tmp_path / str(flag)
        [r] = predict(int8, [photo], out, resolution=SIZE, progress=False, detect=False, precision=flag)
        assert r["ok"] and r["precision"] == want
        maps[want] = np.asarray(Image.open(r["label"]))
    assert (maps["int8"] == maps["fp32"]).mean() >= MIN_AGREEMENT


def _handler(bundle_dir, precision=None):
    from ts.context import Context

    from faceparse.serve.package import HANDLER

    spec = importlib.util.spec_from_file_location("fp_handler_int8", HANDLER)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    h = mod.FaceParseHandler()
    cfg = {"detect": False, **({"precision": precision} if precision else {})}
    ctx = Context("faceparse-fpliif", str(bundle_dir), {"model": {"modelVersion": "1"}}, 1, None, "0.12.0",
                  model_yaml_config={"handler": cfg})
    h.initialize(ctx)
    return h, ctx


def test_served_model_runs_the_bundles_precision(bundles, real_samples):
    from ts.context import RequestProcessor

    from faceparse.serve import imaging

    from PIL import Image

    _, int8, _ = bundles
    body = (real_samples / "3.jpg").read_bytes()
    labels = {}
    limit = Image.MAX_IMAGE_PIXELS  # the handler sets PIL's process-wide bomb limit, as a worker should
    for override, want in ((None, "int8"), ("fp32", "fp32")):
        h, ctx = _handler(int8, override)
        Image.MAX_IMAGE_PIXELS = limit
        assert h.meta["precision"] == want and (h.model.decoder.int8 is not None) == (want == "int8")
        ctx.request_processor = [RequestProcessor({"X-Resolution": str(SIZE)})]
        [out] = h.handle([{"body": bytearray(body)}], ctx)
        labels[want] = imaging.read_label_png(out)
    assert (labels["int8"] == labels["fp32"]).mean() >= MIN_AGREEMENT
