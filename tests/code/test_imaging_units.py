"""Fast unit tests of the serving path's request options and response encoding (faceparse.serve.imaging),
with hand-computed expected pixels and fractions (`make mutation`)."""
import io
import json
import zlib

import numpy as np
import pytest
from PIL import Image

from faceparse.serve.imaging import (Options, RequestError, class_fractions, encode_png, label_png, mean_iou,
                                     overlay_png, parse_options, read_label_png)


def decode(png: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG"
    return img


# --- parse_options ---------------------------------------------------------------------------------------

def test_parse_options_defaults():
    assert parse_options({}) == Options(256, "png")
    assert parse_options({}, None) == Options(256, "png")
    assert parse_options({}, default_resolution=128) == Options(128, "png")
    assert parse_options({"resolution": "", "format": ""}) == Options(256, "png")
    assert parse_options({"resolution": []}) == Options(256, "png")
    assert parse_options({"resolution": ""}, {"X-Resolution": ""}) == Options(256, "png")   # empty header too


def test_parse_options_values_then_headers_case_insensitive():
    assert parse_options({"resolution": "512", "format": "json"}) == Options(512, "json", sized=True)
    assert parse_options({}, {"X-Resolution": "128", "X-FORMAT": "Overlay"}) == Options(128, "overlay", sized=True)
    assert parse_options({}, {"x-resolution": b" 96 ", "x-format": b"PNG"}) == Options(96, "png", sized=True)
    # query / form values win over headers, each option on its own
    assert parse_options({"resolution": "300"}, {"X-Resolution": "400", "X-Format": "json"}) == Options(300, "json", sized=True)
    assert parse_options({"format": "png"}, {"X-Resolution": "400", "X-Format": "json"}) == Options(400, "png", sized=True)


def test_parse_options_accepts_lists_bytes_and_padded_text():
    assert parse_options({"resolution": ["320", "999"], "format": [b"json"]}) == Options(320, "json", sized=True)
    assert parse_options({"resolution": bytearray(b"640\n"), "format": " OVERLAY "}) == Options(640, "overlay", sized=True)
    assert parse_options({"resolution": 200}) == Options(200, "png", sized=True)
    assert parse_options({"resolution": ("70",)}) == Options(70, "png", sized=True)


def test_parse_options_resolution_range_is_inclusive():
    assert parse_options({"resolution": "64"}).resolution == 64
    assert parse_options({"resolution": "1024"}).resolution == 1024
    for bad in ("63", "1025", "0", "-256"):
        with pytest.raises(RequestError) as e:
            parse_options({"resolution": bad})
        assert e.value.status == 400
        assert e.value.message == f"resolution must be within 64..1024, got {int(bad)}"
    assert parse_options({"resolution": "32"}, min_resolution=32, max_resolution=48).resolution == 32
    with pytest.raises(RequestError, match=r"^resolution must be within 32\.\.48, got 49$"):
        parse_options({"resolution": "49"}, min_resolution=32, max_resolution=48)


def test_parse_options_refuses_non_decimal_resolution():
    for bad, shown in (("abc", "'abc'"), ("12.5", "'12.5'"), ("0x100", "'0x100'"), ("a" * 40, repr("a" * 32))):
        with pytest.raises(RequestError) as e:
            parse_options({"resolution": bad})
        assert e.value.status == 400
        assert e.value.message == f"resolution must be an integer in 64..1024, got {shown}"
    with pytest.raises(RequestError, match=r"^resolution must be an integer in 10\.\.20, got 'x'$"):
        parse_options({"resolution": "x"}, min_resolution=10, max_resolution=20)
    # decimal only: a leading zero is not read as octal or another base
    assert parse_options({"resolution": "0128"}).resolution == 128
    assert parse_options({"resolution": "100"}).resolution == 100


def test_parse_options_refuses_unknown_format_and_non_utf8():
    with pytest.raises(RequestError) as e:
        parse_options({"format": "GIF"})
    assert (e.value.status, e.value.message) == (400, "format must be one of png, overlay, json; got 'gif'")
    with pytest.raises(RequestError) as e:
        parse_options({"format": "x" * 40})
    assert e.value.message == f"format must be one of png, overlay, json; got {'x' * 32!r}"
    with pytest.raises(RequestError) as e:
        parse_options({"resolution": b"\xff\xfe"})
    assert (e.value.status, e.value.message) == (400, "request option is not UTF-8 text")


def test_request_error_body_is_the_json_the_client_reads():
    e = RequestError(413, "too big")
    assert json.loads(e.body()) == {"code": 413, "type": "Payload Too Large", "message": "too big"}
    assert json.loads(RequestError("415", "no").body()) == {"code": 415, "type": "Unsupported Media Type",
                                                             "message": "no"}
    assert json.loads(RequestError(418, "x").body())["type"] == "Bad Request"


# --- encoding --------------------------------------------------------------------------------------------

def test_label_png_is_single_channel_with_class_ids_as_values():
    labels = np.array([[0, 1, 2], [18, 5, 0]], dtype=np.int64)
    img = decode(label_png(labels))
    assert img.mode == "L" and img.size == (3, 2)
    assert np.asarray(img).tolist() == labels.tolist()
    assert read_label_png(label_png(labels)).tolist() == labels.tolist()
    assert read_label_png(label_png(labels)).dtype == np.uint8


def test_encode_png_uses_the_fastest_zlib_level_by_default():
    # latency over size: the IDAT stream's zlib header says which level wrote it (FLEVEL 0 = level 1)
    a = (np.arange(64 * 64) % 7).astype(np.uint8).reshape(64, 64)

    def flevel(png: bytes) -> int:
        i = png.index(b"IDAT") + 4
        assert zlib.decompress(png[i:i + int.from_bytes(png[i - 8:i - 4], "big")]) is not None
        return png[i + 1] >> 6

    assert flevel(encode_png(a)) == 0
    assert flevel(encode_png(a, compress_level=9)) == 3
    assert np.array_equal(np.asarray(decode(encode_png(a, compress_level=9))), a)


def test_overlay_png_blends_foreground_and_keeps_background():
    image = Image.new("RGB", (6, 4), (0, 150, 255))        # resized to the label map (3 wide, 2 high)
    labels = np.array([[0, 1, 2], [2, 1, 0]])
    palette = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0]], dtype=np.uint8)
    out = decode(overlay_png(image, labels, palette))
    assert out.mode == "RGB" and out.size == (3, 2)
    px = np.asarray(out)
    bg, red, green = (0, 150, 255), (128, 75, 128), (0, 203, 128)   # 0.5·photo + 0.5·colour, rounded half up
    assert px.tolist() == [[list(bg), list(red), list(green)], [list(green), list(red), list(bg)]]


def test_overlay_png_resizes_the_photo_bilinearly():
    # 2 → 4 pixels wide, all background: the output is the resized photo. Bilinear (triangle filter): output
    # centres fall at 0.25, 0.75, 1.25, 1.75 input pixels → 0, 0.75·0 + 0.25·200, 0.25·0 + 0.75·200, 200
    image = Image.fromarray(np.array([[[0, 0, 0], [200, 200, 200]]], dtype=np.uint8))
    px = np.asarray(decode(overlay_png(image, np.zeros((1, 4), dtype=np.int64), np.zeros((2, 3), np.uint8))))
    assert px[0, :, 0].tolist() == [0, 50, 150, 200] and (px[0, :, 1] == px[0, :, 0]).all()


def test_overlay_png_alpha_and_grayscale_photo():
    image = Image.new("L", (2, 2), 100)
    labels = np.array([[1, 0], [0, 1]])
    palette = np.array([[9, 9, 9], [200, 40, 0]], dtype=np.uint8)
    px = np.asarray(decode(overlay_png(image, labels, palette, alpha=0.25)))
    # 0.75·100 + 0.25·(200, 40, 0) = (125, 85, 75); background stays gray 100 (its palette colour is unused)
    assert px[0, 0].tolist() == [125, 85, 75] and px[1, 1].tolist() == [125, 85, 75]
    assert px[0, 1].tolist() == [100, 100, 100] and px[1, 0].tolist() == [100, 100, 100]
    full = np.asarray(decode(overlay_png(image, labels, palette, alpha=1.0)))
    assert full[0, 0].tolist() == [200, 40, 0]


def test_overlay_png_rounds_to_nearest():
    image = Image.new("RGB", (1, 1), (1, 2, 3))
    palette = np.array([[0, 0, 0], [0, 1, 2]], dtype=np.uint8)
    px = np.asarray(decode(overlay_png(image, np.array([[1]]), palette)))
    assert px[0, 0].tolist() == [1, 2, 3]        # 0.5, 1.5, 2.5 → 1, 2, 3 (half up)


def test_class_fractions_exact():
    labels = np.array([[0, 0, 1], [1, 1, 3]])
    assert class_fractions(labels, ("bg", "a", "b", "c")) == {"bg": 0.333333, "a": 0.5, "b": 0.0, "c": 0.166667}
    # ids beyond the table are not reported but still count in the total
    assert class_fractions(np.array([[0, 5], [1, 1]]), ("bg", "a")) == {"bg": 0.25, "a": 0.5}
    assert class_fractions(np.array([[1]]), ("bg", "a")) == {"bg": 0.0, "a": 1.0}
    empty = class_fractions(np.zeros((0, 3), dtype=np.int64), ("bg", "a"))
    assert empty == {"bg": 0.0, "a": 0.0}
    assert all(type(v) is float for v in class_fractions(labels, ("bg", "a", "b", "c")).values())


# --- agreement -------------------------------------------------------------------------------------------

def test_mean_iou_hand_computed():
    a = np.array([[0, 1], [1, 1]])
    b = np.array([[0, 1], [0, 1]])
    # class 0: ∩ 1, ∪ 2 → 1/2; class 1: ∩ 2, ∪ 3 → 2/3
    assert mean_iou(a, b) == pytest.approx(7 / 12)
    assert mean_iou(a, b, num_classes=5) == pytest.approx(7 / 12)
    assert mean_iou(a, a) == 1.0
    assert mean_iou(np.zeros((2, 2)), np.ones((2, 2))) == 0.0
    assert mean_iou(np.zeros((0, 0)), np.zeros((0, 0))) == 1.0     # nothing to disagree on
    assert isinstance(mean_iou(a, b), float)


def test_mean_iou_asymmetric_confusion_and_wide_ids():
    a = np.array([0, 0, 0, 1, 2, 2], dtype=np.uint8)
    b = np.array([0, 1, 1, 1, 2, 0], dtype=np.uint8)
    # 0: ∩ 1, ∪ 4 → 1/4; 1: ∩ 1, ∪ 3 → 1/3; 2: ∩ 1, ∪ 2 → 1/2
    assert mean_iou(a, b) == pytest.approx((1 / 4 + 1 / 3 + 1 / 2) / 3)
    # uint8 ids up to 200: the index a·n + b needs more than 8 bits
    c = np.array([200, 200, 3], dtype=np.uint8)
    d = np.array([200, 3, 3], dtype=np.uint8)
    # 200: ∩ 1, ∪ 2 → 1/2; 3: ∩ 1, ∪ 2 → 1/2
    assert mean_iou(c, d) == pytest.approx(0.5)


def test_mean_iou_refuses_different_shapes():
    with pytest.raises(ValueError, match=r"^label maps differ in shape: \(2, 2\) vs \(1, 4\)$"):
        mean_iou(np.zeros((2, 2)), np.zeros((1, 4)))
