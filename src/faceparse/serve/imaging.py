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
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..images import ImageError, read_image, read_label
from ..metrics import Confusion
from ..photos import NoFaceError, plan_photo

# Imports inside functions here: this module is on the start-up path of the command line, the page or the
# router, so heavy libraries load on first use (tests/code/test_light_imports.py)

MIN_RESOLUTION, MAX_RESOLUTION = 64, 1024
FORMATS = ("png", "overlay", "json")
IMAGE_FORMATS = ("JPEG", "PNG")
MIN_SIDE = 16                 # smaller images carry no face worth parsing
DEFAULT_MAX_PIXELS = 40_000_000
OVERLAY_ALPHA = 0.5


class RequestError(ImageError):
    """A request the server refuses: ``status`` (4xx) and a message for the client."""

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
    detect: bool = True      # parser: find and align the faces of a photo (False: an aligned face crop)
    sized: bool = False      # the client asked for this resolution (a photo's map defaults to its own size)


_BOOL = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def _flag(v: str | None, default: bool, name: str) -> bool:
    if v in (None, ""):
        return default
    if v.lower() not in _BOOL:
        raise RequestError(400, f"{name} must be true or false, got {v[:32]!r}")
    return _BOOL[v.lower()]


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
                  max_resolution: int = MAX_RESOLUTION, formats: tuple[str, ...] = FORMATS,
                  default_detect: bool = True) -> Options:
    """Options from query parameters / form fields (``values``), else from headers ``X-Resolution`` /
    ``X-Format`` / ``X-Detect`` (case-insensitive). Missing → defaults (the format: ``formats[0]``, the model
    stage's answers); malformed or out of range → RequestError(400)."""
    hdr = {str(k).lower(): v for k, v in (headers or {}).items()}
    res = _text(values.get("resolution")) or _text(hdr.get("x-resolution"))
    fmt = _text(values.get("format")) or _text(hdr.get("x-format"))
    detect = _flag(_text(values.get("detect")) or _text(hdr.get("x-detect")), default_detect, "detect")
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
    fmt = (fmt or formats[0]).lower()
    if fmt not in formats:
        raise RequestError(400, f"format must be one of {', '.join(formats)}; got {fmt[:32]!r}")
    return Options(resolution, fmt, detect, res not in (None, ""))


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
    """JPEG/PNG request bytes → an RGB PIL image, through the one reader (``faceparse.images``: EXIF
    orientation applied, alpha onto white, 16-bit grey scaled). 400: empty, not an image, truncated,
    too small; 413: more than ``max_pixels`` (refused from the header); 415: another format or mode."""
    try:
        return read_image(data, formats=IMAGE_FORMATS, max_pixels=max_pixels, min_side=MIN_SIDE)
    except ImageError as e:
        raise RequestError(e.status, e.message.removeprefix("request body: ")) from None


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
    return read_label(data)


def mean_iou(a: np.ndarray, b: np.ndarray, num_classes: int | None = None) -> float:
    """Mean IoU over the classes present in either map (agreement between two predictions; 1.0 when empty)."""
    if a.shape != b.shape:
        raise ValueError(f"label maps differ in shape: {a.shape} vs {b.shape}")
    n = int(num_classes or (max(int(a.max(initial=0)), int(b.max(initial=0))) + 1))
    miou = Confusion(n).update(b, a).present_miou()
    return 1.0 if miou is None else miou


def locate_faces(image, opts: Options, input_size: int, max_side: int):
    """A served photo's faces (``faceparse.photos.plan_photo``; None with detection off): every stage that
    answers in the photo's pixels finds them when the request is parsed, so a photo without a face is
    refused with 422 like any other bad request."""
    if not opts.detect:
        return None
    try:
        return plan_photo(image, input_size, opts.resolution if opts.sized else None, max_side=max_side)
    except NoFaceError as e:
        raise RequestError(422, str(e)) from None
