"""The one image reader: every door that reads a photo or a label map (predict, the TorchServe handler,
ingest, evaluate, validate, training, ONNX export) decodes it here, so the same file gives the same pixels
everywhere: EXIF orientation applied, alpha composited onto white, 16-bit grey scaled to 8 bits.

PIL + numpy only (no torch): the serving path and the data tools import it too. Errors are ImageError
with an HTTP-like ``status`` (400 unreadable, 413 too large, 415 unsupported format / mode) and a message
naming the file when there is one.
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

# Imports inside functions here: this module is on the start-up path of the command line, the page or the
# router, so heavy libraries load on first use (tests/code/test_light_imports.py)

# 8-bit modes converted with PIL's own conversion; the alpha modes are composited onto white first.
_DIRECT = {"RGB", "L", "1", "CMYK", "YCbCr", "P"}
_ALPHA = {"RGBA", "LA", "PA", "RGBa", "La"}
_WIDE_GRAY = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
_MAGIC = ((b"GIF8", "GIF"), (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"),
          (b"\x00\x00\x00\x0cjP", "JPEG 2000"), (b"%PDF", "PDF"))


class ImageError(ValueError):
    """An image that cannot be used: ``status`` (400 / 413 / 415, as a server answers it) and a message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = int(status)
        self.message = message


def _name(source) -> str:
    return "request body" if isinstance(source, (bytes, bytearray, memoryview)) else str(source)


def open_image(source, *, formats: Sequence[str] | None = None, max_pixels: int | None = None,
               min_side: int = 1):
    """bytes or a path → a fully decoded PIL image in its own pixel mode, EXIF orientation applied.

    ``formats`` limits the decoders (the server takes JPEG / PNG only); ``max_pixels`` refuses larger
    images from the header, before any pixel is decoded (decompression bombs)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    name = _name(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        try:
            data = Path(source).read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"{name}: image file not found") from None
        except IsADirectoryError:
            raise ImageError(400, f"{name}: is a directory, not an image") from None
    if not data:
        raise ImageError(400, f"{name}: empty, not an image (send JPEG or PNG bytes)")
    try:
        with warnings.catch_warnings():
            if max_pixels is not None:
                warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=formats)
    except Image.DecompressionBombError as e:   # also raised for > 2× PIL's own limit
        raise ImageError(413, f"{name}: image too large: {e}") from None
    except Image.DecompressionBombWarning:
        raise ImageError(413, f"{name}: image too large (decompression bomb guard)") from None
    except UnidentifiedImageError:
        other = sniff_format(data)
        if other and formats:
            raise ImageError(415, f"{name}: image format {other} is not accepted: send "
                                  f"{' or '.join(formats)}") from None
        raise ImageError(400, f"{name}: unreadable image (not a recognisable image format)") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageError(400, f"{name}: unreadable image: {str(e)[:120]}") from None
    w, h = img.size
    if max_pixels is not None and w * h > max_pixels:
        raise ImageError(413, f"{name}: image has {w}×{h} = {w * h} pixels; the limit is {max_pixels}")
    if min(w, h) < min_side:
        raise ImageError(400, f"{name}: image is {w}×{h}; each side must be at least {min_side} pixels")
    try:
        img.load()  # decode everything now: a truncated file fails here, not later
        return ImageOps.exif_transpose(img) or img
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise ImageError(400, f"{name}: unreadable image (corrupt or truncated: {str(e)[:120]})") from None


def read_image(source, **limits):
    """bytes or a path → an RGB PIL image (see ``open_image`` for the limits, ``to_rgb`` for modes)."""
    img = open_image(source, **limits)
    try:
        return to_rgb(img)
    except ImageError as e:
        raise ImageError(e.status, f"{_name(source)}: {e.message}") from None


def sniff_format(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:12] in (b"ftypheic", b"ftypavif", b"ftypmif1"):
        return "HEIF/AVIF"
    return next((name for magic, name in _MAGIC if data.startswith(magic)), None)


def to_rgb(img):
    """Any PIL pixel mode a photo can carry → RGB uint8, explicitly; other modes → ImageError(415)."""
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
    raise ImageError(415, f"pixel mode {mode!r} is not supported: use 8-bit RGB, grayscale or RGBA, "
                          "or 16-bit grayscale")


def label_array(img, name: str = "label map") -> np.ndarray:
    """A decoded label image → (H, W) uint8 class ids; grey stored as RGB is accepted, colour is not."""
    arr = np.asarray(img)
    if arr.ndim == 3:
        if arr.shape[2] >= 3 and np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2]):
            arr = arr[..., 0]  # grey stored as RGB
        else:
            raise ImageError(400, f"{name}: label map has {arr.shape[2]} colour channels; expected "
                                  "single-channel class ids")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise ImageError(400, f"{name}: label values {arr.min()}..{arr.max()} do not fit uint8 class ids")
    return arr.astype(np.uint8)


def decode_label(source) -> np.ndarray:
    """A label image (bytes or a path) decoded as stored: (H, W) or (H, W, C), for checks of the raw file."""
    from PIL import Image

    name = _name(source)
    try:
        with Image.open(io.BytesIO(bytes(source)) if name == "request body" else source) as im:
            im.load()
            return np.asarray(im)
    except FileNotFoundError:
        raise FileNotFoundError(f"{name}: label file not found") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(400, f"{name}: unreadable label map ({e})") from None


def read_label(source) -> np.ndarray:
    """A single-channel class-id map (bytes or a path) → (H, W) uint8. Never EXIF-rotated: label files
    are stored as annotated."""
    return label_array(decode_label(source), _name(source))
