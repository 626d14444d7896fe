"""Request decoding and response encoding for the serving path (PIL + numpy only: no torch, no torchvision).

Shared by the TorchServe handler (``serving/handler.py``), the canary router (agreement IoU) and the
tests. Every refusal is a :class:`RequestError` carrying an HTTP status and a one-line message meant for
the client: no stack trace ever reaches a response.
"""
from __future__ import annotations

import base64
import binascii
import io
import json
import warnings
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

MIN_RESOLUTION, MAX_RESOLUTION = 64, 1024
FORMATS = ("png", "overlay", "json")
IMAGE_FORMATS = ("JPEG", "PNG")
MIN_SIDE = 16                 # smaller images carry no face worth parsing
DEFAULT_MAX_PIXELS = 40_000_000
OVERLAY_ALPHA = 0.5
# 8-bit modes converted with PIL's own conversion; the alpha modes are composited onto white first.
_DIRECT = {"RGB", "L", "1", "CMYK", "YCbCr", "P"}
_ALPHA = {"RGBA", "LA", "PA", "RGBa", "La"}
_WIDE_GRAY = {"I;16", "I;16L", "I;16B", "I;16N", "I"}


class RequestError(ValueError):
    """A request the server refuses: ``status`` (4xx) and a message for the client."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = int(status)
        self.message = message

    @property
    def phrase(self) -> str:
        return {400: "Bad Request", 413: "Payload Too Large", 415: "Unsupported Media Type",
                422: "Unprocessable Entity"}.get(self.status, "Bad Request")

    def body(self) -> bytes:
        return json.dumps({"code": self.status, "type": self.phrase, "message": self.message}).encode()


@dataclass(frozen=True)
class Options:
    resolution: int
    format: str = "png"


def _text(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, (bytes, bytearray)):
        try:
            return bytes(v).decode("utf-8").strip()
        except UnicodeDecodeError:
            raise RequestError(400, "request option is not UTF-8 text") from None
    if isinstance(v, (list, tuple)):
        return _text(v[0]) if v else None
    return str(v).strip()


def parse_options(values: Mapping[str, Any], headers: Mapping[str, Any] | None = None, *,
                  default_resolution: int = 256, min_resolution: int = MIN_RESOLUTION,
                  max_resolution: int = MAX_RESOLUTION) -> Options:
    """Options from query parameters / form fields (``values``), else from headers ``X-Resolution`` /
    ``X-Format`` (case-insensitive). Missing → defaults; malformed or out of range → RequestError(400)."""
    hdr = {str(k).lower(): v for k, v in (headers or {}).items()}
    res = _text(values.get("resolution")) or _text(hdr.get("x-resolution"))
    fmt = _text(values.get("format")) or _text(hdr.get("x-format"))
    if res in (None, ""):
        resolution = int(default_resolution)
    else:
        try:
            resolution = int(res, 10)
        except ValueError:
            raise RequestError(400, f"resolution must be an integer in {min_resolution}..{max_resolution}, "
                                    f"got {res[:32]!r}") from None
    if not min_resolution <= resolution <= max_resolution:
        raise RequestError(400, f"resolution must be within {min_resolution}..{max_resolution}, got {resolution}")
    fmt = (fmt or "png").lower()
    if fmt not in FORMATS:
        raise RequestError(400, f"format must be one of {', '.join(FORMATS)}; got {fmt[:32]!r}")
    return Options(resolution, fmt)


def payload_bytes(value: Any) -> bytes:
    """The image bytes of one request field. A str is taken as base64 (KServe v1 ``{"b64": ...}`` too)."""
    if isinstance(value, dict) and "b64" in value:
        value = value["b64"]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        s = value.strip()
        if s.startswith("data:") and "," in s:          # data URL
            s = s.split(",", 1)[1]
        try:
            return base64.b64decode(s, validate=True)
        except (binascii.Error, ValueError):
            raise RequestError(400, "text body is not an image: send JPEG/PNG bytes (raw body or multipart "
                                    "field 'data'), or base64 inside KServe v1 JSON") from None
    raise RequestError(400, f"unsupported request body of type {type(value).__name__}: send JPEG/PNG bytes")


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS):
    """JPEG/PNG bytes → an RGB PIL image, EXIF orientation applied.

    400: empty, not an image, truncated or corrupt, too small; 413: more than ``max_pixels`` pixels
    (decompression bombs are refused from the header, before any pixel is decoded); 415: another image
    format or a pixel mode with no sensible RGB reading. Grayscale, palette, 16-bit grayscale (I;16),
    CMYK are converted; alpha is composited onto white."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not data:
        raise RequestError(400, "empty request body: send a JPEG or PNG image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)  # no other decoder touches the bytes
    except Image.DecompressionBombError as e:   # also raised for > 2× PIL's own limit
        raise RequestError(413, f"image too large: {e}") from None
    except Image.DecompressionBombWarning:
        raise RequestError(413, "image too large (decompression bomb guard)") from None
    except UnidentifiedImageError:
        other = sniff_format(data)
        if other:
            raise RequestError(415, f"image format {other} is not accepted: send JPEG or PNG") from None
        raise RequestError(400, "body is not a recognisable image: send a JPEG or PNG") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise RequestError(400, f"unreadable image: {str(e)[:120]}") from None
    w, h = img.size
    if w * h > max_pixels:
        raise RequestError(413, f"image has {w}×{h} = {w * h} pixels; the limit is {max_pixels}")
    if min(w, h) < MIN_SIDE:
        raise RequestError(400, f"image is {w}×{h}; each side must be at least {MIN_SIDE} pixels")
    try:
        img.load()
        # a truncated PNG can still load its first rows lazily: force a full decode
        img = ImageOps.exif_transpose(img) or img
        return to_rgb(img)
    except RequestError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise RequestError(400, f"corrupt or truncated image: {str(e)[:120]}") from None


_MAGIC = ((b"GIF8", "GIF"), (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"),
          (b"\x00\x00\x00\x0cjP", "JPEG 2000"), (b"%PDF", "PDF"))


def sniff_format(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:12] in (b"ftypheic", b"ftypavif", b"ftypmif1"):
        return "HEIF/AVIF"
    return next((name for magic, name in _MAGIC if data.startswith(magic)), None)


def to_rgb(img):
    """Any PIL pixel mode a JPEG/PNG can carry → RGB uint8, explicitly; other modes → RequestError(415)."""
    from PIL import Image

    mode = img.mode
    if mode == "RGB":
        return img
    if mode in _WIDE_GRAY:
        a = np.asarray(img)
        if a.dtype.kind == "u" and a.dtype.itemsize == 2 or mode.startswith("I;16"):
            a8 = (a.astype(np.uint32) * 255 + 32767) // 65535   # full 16-bit range → 8 bits, rounded
        else:  # 32-bit "I": Pillow's reading of 16-bit PNGs in some versions; values are 0..65535
            a32 = a.astype(np.int64)
            top = 65535 if a32.max(initial=0) > 255 else 255
            a8 = (np.clip(a32, 0, top) * 255 + top // 2) // top
        return Image.fromarray(a8.astype(np.uint8), "L").convert("RGB")
    if mode == "P" and "transparency" in img.info:
        mode, img = "RGBA", img.convert("RGBA")
    if mode in _ALPHA:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode in _DIRECT:
        return img.convert("RGB")
    raise RequestError(415, f"pixel mode {mode!r} is not supported: send 8-bit RGB, grayscale or RGBA, "
                            "or 16-bit grayscale")


# --- outputs -------------------------------------------------------------------------------------------

def encode_png(array: np.ndarray, compress_level: int = 1) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG", compress_level=compress_level)
    return buf.getvalue()


def label_png(labels: np.ndarray) -> bytes:
    """(H, W) class ids → single-channel (mode L) PNG: pixel value = class id."""
    return encode_png(labels.astype(np.uint8))


def overlay_png(image, labels: np.ndarray, palette: np.ndarray, alpha: float = OVERLAY_ALPHA) -> bytes:
    """The photo resized to the label map, blended with the class colours; background left as is."""
    from PIL import Image

    h, w = labels.shape
    rgb = np.asarray(image.convert("RGB").resize((w, h), Image.BILINEAR), dtype=np.float32)
    colours = palette[labels].astype(np.float32)
    fg = (labels > 0)[..., None]
    out = np.where(fg, (1 - alpha) * rgb + alpha * colours, rgb)
    return encode_png(np.clip(out + 0.5, 0, 255).astype(np.uint8))


def class_fractions(labels: np.ndarray, classes) -> dict[str, float]:
    counts = np.bincount(labels.ravel(), minlength=len(classes))[: len(classes)]
    total = max(int(labels.size), 1)
    return {name: round(float(c) / total, 6) for name, c in zip(classes, counts)}


def read_label_png(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)))


def mean_iou(a: np.ndarray, b: np.ndarray, num_classes: int | None = None) -> float:
    """Mean IoU over the classes present in either map (agreement between two predictions)."""
    if a.shape != b.shape:
        raise ValueError(f"label maps differ in shape: {a.shape} vs {b.shape}")
    n = int(num_classes or (max(int(a.max(initial=0)), int(b.max(initial=0))) + 1))
    idx = a.astype(np.int64).ravel() * n + b.astype(np.int64).ravel()
    cm = np.bincount(idx, minlength=n * n).reshape(n, n)
    inter = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - np.diag(cm)
    present = union > 0
    return float((inter[present] / union[present]).mean()) if present.any() else 1.0
