"""The TorchServe handler and its image codec, in-process (no server): decoding rules, refusals with a
4xx per request inside a batch, output formats, KServe v1 JSON."""
from __future__ import annotations

import base64
import importlib.util
import io
import json

import numpy as np
import pytest
from PIL import Image

from faceparse.serve import imaging
from faceparse.serve.imaging import RequestError

TINY = {"width": 8, "groups": [1, 1, 1], "norm": "instance", "decoder": "liif", "unfold": True, "reduce": [16],
        "hidden": [16], "ensemble": True, "query_chunk": 16384}


def encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def face(size=64, mode="RGB") -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).convert(mode)


# --- codec --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "LA", "P", "1", "CMYK"])
def test_modes_become_rgb(mode):
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    img = imaging.decode_image(encode(face(40, mode), fmt))
    assert img.mode == "RGB" and img.size == (40, 40)


def test_16bit_grayscale_is_scaled_not_clipped():
    a = np.linspace(0, 65535, 64 * 64).astype(np.uint16).reshape(64, 64)
    img = Image.fromarray(a)
    assert img.mode.startswith("I;16")
    out = np.asarray(imaging.decode_image(encode(img)))
    assert out.shape == (64, 64, 3) and out.min() == 0 and out.max() == 255
    assert abs(int(out[32, 32, 0]) - int(a[32, 32]) // 257) <= 1


def test_alpha_composited_on_white():
    img = Image.new("RGBA", (32, 32), (10, 20, 30, 0))
    assert np.asarray(imaging.decode_image(encode(img))).min() == 255


def test_palette_with_transparency():
    img = Image.new("P", (32, 32), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.info["transparency"] = 0
    out = imaging.decode_image(encode(img, transparency=0))
    assert np.asarray(out).min() == 255


def test_exif_orientation_applied():
    img = Image.new("RGB", (40, 20), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° on display
    out = imaging.decode_image(encode(img, "JPEG", exif=exif.tobytes()))
    assert out.size == (20, 40)


@pytest.mark.parametrize("data,status", [
    (b"", 400),
    (b"hello, world", 400),
    (bytes(range(256)) * 4, 400),
    (b"GIF89a" + b"\x00" * 64, 415),
    (b"RIFF\x00\x00\x00\x00WEBPVP8 ", 415),
])
def test_refusals(data, status):
    with pytest.raises(RequestError) as e:
        imaging.decode_image(data)
    assert e.value.status == status and e.value.message


def test_truncated_and_bomb_and_tiny():
    jpg = encode(face(64), "JPEG")
    png = encode(face(64))
    for bad in (jpg[: len(jpg) // 2], png[: len(png) // 2]):
        with pytest.raises(RequestError) as e:
            imaging.decode_image(bad)
        assert e.value.status == 400
    bomb = encode(Image.new("1", (8000, 8000)))
    assert len(bomb) < 200_000
    with pytest.raises(RequestError) as e:
        imaging.decode_image(bomb, max_pixels=40_000_000)
    assert e.value.status == 413
    with pytest.raises(RequestError) as e:
        imaging.decode_image(encode(face(8)))
    assert e.value.status == 400


def test_options():
    o = imaging.parse_options({}, {"X-Resolution": "128", "x-format": "JSON"})
    assert (o.resolution, o.format) == (128, "json")
    assert imaging.parse_options({"resolution": b"512"}, {}).resolution == 512
    assert imaging.parse_options({}, {}, default_resolution=256) == imaging.Options(256, "png")
    for bad in ({"resolution": "63"}, {"resolution": "1025"}, {"resolution": "abc"}, {"format": "bmp"},
                {"resolution": "1e3"}):
        with pytest.raises(RequestError) as e:
            imaging.parse_options(bad, {})
        assert e.value.status == 400


def test_mean_iou():
    a = np.zeros((8, 8), np.uint8)
    a[:4] = 1
    assert imaging.mean_iou(a, a) == 1.0
    b = a.copy()
    b[:2] = 0
    assert 0 < imaging.mean_iou(a, b) < 1


# --- the handler in-process ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def handler(tmp_path_factory):
    import torch
    from ts.context import Context

    from faceparse.bundle import save_bundle
    from faceparse.models import build_model
    from faceparse.serve.package import HANDLER

    d = tmp_path_factory.mktemp("bundle")
    torch.manual_seed(0)
    save_bundle(d, build_model(TINY, 19), {"model_config": TINY, "num_classes": 19, "label_table": "celebamask-hq"})
    spec = importlib.util.spec_from_file_location("fp_handler", HANDLER)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    h = mod.FaceParseHandler()
    ctx = Context("faceparse-fpliif", str(d), {"model": {"modelVersion": "7"}}, 4, None, "0.12.0",
                  model_yaml_config={"handler": {"max_pixels": 1_000_000, "detect": False}})
    # detect off: these tests send random pixels standing for aligned face crops (face detection would
    # rightly answer them 422); tests/code/test_photos.py turns it on for photos
    limit = Image.MAX_IMAGE_PIXELS
    h.initialize(ctx)   # sets PIL's process-wide bomb limit, as it should in a worker: restored below
    yield h, ctx
    Image.MAX_IMAGE_PIXELS = limit


def run_batch(handler, rows, headers=None):
    from ts.context import RequestProcessor

    h, ctx = handler
    ctx.request_processor = [RequestProcessor(dict((headers or [{}] * len(rows))[i])) for i in range(len(rows))]
    out = h.handle(rows, ctx)
    return [(ctx.get_response_status(i)[0], ctx.get_response_content_type(i), out[i]) for i in range(len(rows))]


def test_handler_batch_mixed(handler):
    good = encode(face(80), "JPEG")
    rows = [
        {"body": bytearray(good)},
        {"body": bytearray(b"not an image")},
        {"data": bytearray(good), "format": "json", "resolution": "96"},
        {"body": bytearray(good)},
        {"body": bytearray(encode(Image.new("1", (1200, 1200))))},   # > max_pixels 1e6 → 413
    ]
    hdrs = [{}, {}, {}, {"X-Format": "overlay", "X-Resolution": "64"}, {}]
    res = run_batch(handler, rows, hdrs)
    assert [r[0] for r in res] == [200, 400, 200, 200, 413]
    lab = Image.open(io.BytesIO(res[0][2]))
    assert res[0][1] == "image/png" and lab.mode == "L" and lab.size == (256, 256)
    assert np.asarray(lab).max() < 19
    err = json.loads(res[1][2])
    assert err["code"] == 400 and "image" in err["message"] and "Traceback" not in res[1][2].decode()
    js = json.loads(res[2][2])
    assert js["resolution"] == 96 and abs(sum(js["fractions"].values()) - 1) < 1e-3 and js["model_version"] == "7"
    ov = Image.open(io.BytesIO(res[3][2]))
    assert ov.mode == "RGB" and ov.size == (64, 64)
    assert json.loads(res[4][2])["code"] == 413


def test_handler_kserve_v1(handler):
    good = base64.b64encode(encode(face(64))).decode()
    rows = [{"body": {"instances": [{"data": good}, {"data": good, "format": "json", "resolution": 64}]}},
            {"body": {"instances": [{"data": "!!notbase64"}]}},
            {"body": {"something": "else"}}]
    res = run_batch(handler, rows)
    assert [r[0] for r in res] == [200, 400, 400]
    preds = json.loads(res[0][2])["predictions"]
    assert preds[0]["format"] == "png" and Image.open(io.BytesIO(base64.b64decode(preds[0]["b64"]))).size == (256, 256)
    assert preds[1]["resolution"] == 64
    assert "instances[0]" in json.loads(res[1][2])["message"]


def test_handler_fault_injection_raises(handler):
    h, ctx = handler
    h.fault = {"error_rate": 1.0}
    try:
        with pytest.raises(RuntimeError, match="fault injection"):
            run_batch(handler, [{"body": bytearray(encode(face(64)))}])
    finally:
        h.fault = {}


def test_handler_under_kserve_envelope(handler):
    """KServe's TorchServe runtime sets TS_SERVICE_ENVELOPE=kserve: the handler then gets the instances of
    one request and must answer JSON-serialisable predictions; a bad instance refuses the request (400)."""
    from ts.torch_handler.request_envelope.kserve import KServeEnvelope
    from ts.utils.util import PredictionException

    h, ctx = handler
    good = base64.b64encode(encode(face(64), "JPEG")).decode()
    h.envelope = "kserve"
    try:
        env = KServeEnvelope(h.handle)
        out = env.handle([{"body": {"instances": [{"data": good}, {"data": good, "format": "json"}]}}], ctx)
        preds = json.loads(json.dumps(out[0]))["predictions"]
        assert preds[0]["format"] == "png" and preds[1]["resolution"] == 256 and len(preds[1]["fractions"]) == 19
        with pytest.raises(PredictionException) as e:
            env.handle([{"body": {"instances": [{"data": good}, {"data": "bm90IGFuIGltYWdl"}]}}], ctx)
        assert e.value.error_code == 400 and "instances[1]" in e.value.message
    finally:
        h.envelope = None


def test_handler_batch_answers_equal_the_bundles_own_prediction(handler, real_samples):
    """Each answer of one batch is the bundle's in-process prediction for *its* photo (each photo alone,
    plain PIL reading, argmax): 4 distinct real photos, three at the same resolution (photo i answered with
    photo j's map would be caught), one at another, plus overlay and json answers. Same process, same
    weights, same preprocessing: the maps must be equal exactly."""
    from faceparse.labels import CELEBAMASK_HQ
    from faceparse.serve.testing import reference_labels

    h, ctx = handler
    bundle_dir = ctx.system_properties["model_dir"]
    # the real 1024² photos re-encoded at 512² (this fixture's max_pixels is 1e6); the reference reads the same bytes
    photos = [encode(Image.open(real_samples / f"{i}.jpg").resize((512, 512), Image.BICUBIC), "JPEG", quality=95)
              for i in range(4)]
    rows = [{"body": bytearray(p)} for p in photos] + [{"body": bytearray(photos[3])}, {"body": bytearray(photos[2])}]
    hdrs = [{"X-Resolution": "64"}, {"X-Resolution": "64"}, {"X-Resolution": "96"}, {"X-Resolution": "64"},
            {"X-Resolution": "64", "X-Format": "overlay"}, {"X-Resolution": "96", "X-Format": "json"}]
    res = run_batch(handler, rows, hdrs)
    assert [r[0] for r in res] == [200] * 6
    ref64, ref96 = reference_labels(bundle_dir, photos, 64), reference_labels(bundle_dir, photos, 96)
    want = [ref64[0], ref64[1], ref96[2], ref64[3]]
    # the photos' maps differ from one another, so a mix-up inside the batch cannot pass unnoticed
    assert all(not np.array_equal(ref64[i], ref64[j]) for i in range(4) for j in range(i))
    for i in range(4):
        got = imaging.read_label_png(res[i][2])
        assert got.shape == want[i].shape and np.array_equal(got, want[i]), \
            f"photo {i}: {np.mean(got != want[i]):.2%} of pixels differ from the bundle's own prediction"
    # overlay: photo 3 blended with *its* map's colours, background pixels left as the photo
    photo3 = Image.open(io.BytesIO(photos[3])).convert("RGB").resize((64, 64), Image.BILINEAR)
    rgb = np.asarray(photo3, np.float32)
    lab = ref64[3]
    blend = np.where((lab > 0)[..., None], 0.5 * rgb + 0.5 * CELEBAMASK_HQ.palette()[lab], rgb)
    ov = np.asarray(Image.open(io.BytesIO(res[4][2])))
    assert np.array_equal(ov, np.clip(blend + 0.5, 0, 255).astype(np.uint8))
    # json: class shares of photo 2's map at 96²
    fr = json.loads(res[5][2])["fractions"]
    ids, counts = np.unique(ref96[2], return_counts=True)
    want_fr = dict.fromkeys(CELEBAMASK_HQ.classes, 0.0)
    want_fr.update({CELEBAMASK_HQ.classes[k]: round(c / 96 ** 2, 6) for k, c in zip(ids, counts)})
    assert fr == want_fr
