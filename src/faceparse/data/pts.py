"""The 300-W / iBUG ``.pts`` landmark format (version 1) and the face crop the 300-W adapter applies.

A file reads::

    version: 1
    n_points:  68
    {
    x y
    ...
    }

Blank lines and ``#`` / ``//`` comment lines are tolerated anywhere; further ``key: value`` header lines
before ``{`` are allowed (some tools write ``image_size_x:`` etc.); anything else is an error naming the file
and line, so that ingest can quarantine the sample.

Coordinates: 300-W annotations were made in Matlab and are 1-based (the top-left pixel's centre is (1, 1)).
``read_pts`` returns them as written; ``one_based=True`` subtracts 1, giving 0-based pixel-centre
coordinates (the cv2 / albumentations convention: pixel i's centre at i). The project's stored landmarks use
continuous coordinates (pixel i spans [i, i + 1], see ``faceparse.ibug68``), so a 300-W file becomes
``read_pts(path, one_based=True) + 0.5`` — that is what the adapter should store, and what ``crop_to_face``
expects.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import cv2
import numpy as np


def _content_lines(path: Path) -> list[tuple[int, str]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a text .pts file ({e})") from None
    out = []
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line and not line.startswith(("#", "//")):
            out.append((no, line))
    return out


def _header(path: Path, lines: list[tuple[int, str]]) -> tuple[int, int]:
    """Parse ``key: value`` lines up to ``{`` → (n_points, index of the ``{`` line)."""
    keys: dict[str, str] = {}
    for k, (no, line) in enumerate(lines):
        if line == "{":
            break
        key, sep, value = line.partition(":")
        if not sep:
            raise ValueError(f"{path}:{no}: expected a 'key: value' header line or '{{', got {line!r}")
        keys[key.strip().lower()] = value.strip()
    else:
        raise ValueError(f"{path}: no opening '{{' (line {lines[-1][0] if lines else 1})")
    if keys.get("version") != "1":
        raise ValueError(f"{path}:{lines[0][0] if lines else 1}: missing or unsupported header "
                         f"'version: 1' (got {keys.get('version')!r})")
    try:
        n = int(keys["n_points"])
    except (KeyError, ValueError):
        raise ValueError(f"{path}:{lines[k][0]}: missing or non-integer 'n_points:' header "
                         f"(got {keys.get('n_points')!r})") from None
    if n < 0:
        raise ValueError(f"{path}: negative n_points {n}")
    return n, k


def _point(path: Path, no: int, line: str) -> tuple[float, float]:
    parts = line.split()
    try:
        x, y = float(parts[0]), float(parts[1])
        ok = len(parts) == 2 and math.isfinite(x) and math.isfinite(y)
    except (ValueError, IndexError):
        ok = False
    if not ok:
        raise ValueError(f"{path}:{no}: expected two finite numbers 'x y', got {line!r}")
    return x, y


def read_pts(path: str | os.PathLike, one_based: bool = False) -> np.ndarray:
    """A version-1 ``.pts`` file → (n, 2) float32 (x, y), as written (``one_based=True``: minus 1)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: .pts file not found")
    lines = _content_lines(path)
    n, brace = _header(path, lines)
    body = lines[brace + 1:]
    close = next((k for k, (_, line) in enumerate(body) if line == "}"), None)
    if close is None:
        raise ValueError(f"{path}:{body[-1][0] if body else lines[brace][0]}: no closing '}}'")
    if close + 1 < len(body):
        raise ValueError(f"{path}:{body[close + 1][0]}: content after the closing '}}'")
    if close != n:
        raise ValueError(f"{path}:{body[close][0]}: header says n_points {n} but the file holds {close} points")
    pts = np.array([_point(path, no, line) for no, line in body[:close]], dtype=np.float32).reshape(n, 2)
    return pts - 1.0 if one_based else pts


def write_pts(path: str | os.PathLike, points: np.ndarray, one_based: bool = False) -> Path:
    """(n, 2) points → a version-1 ``.pts`` file (float32-exact digits; ``one_based=True``: plus 1)."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or not np.isfinite(pts).all():
        raise ValueError(f"points must be finite (n, 2), got shape {pts.shape}")
    pts = pts + 1.0 if one_based else pts
    lines = ["version: 1", f"n_points:  {len(pts)}", "{"]
    lines += [f"{x:.9g} {y:.9g}" for x, y in pts]
    path = Path(path)
    path.write_text("\n".join(lines + ["}"]) + "\n")
    return path


def _crop_box(points: np.ndarray, margin: float) -> tuple[int, int, int]:
    """Square (left, top, side) in whole pixels around the points' bounding box, enlarged by ``margin`` of
    its longer side on each side."""
    lo, hi = points.min(0), points.max(0)
    side = float((hi - lo).max()) * (1.0 + 2.0 * margin)
    side_px = max(1, int(math.ceil(side)))
    cx, cy = (lo + hi) / 2.0
    return int(math.floor(cx - side_px / 2.0)), int(math.floor(cy - side_px / 2.0)), side_px


def crop_to_face(image: np.ndarray, points: np.ndarray, size: int, margin: float = 0.25,
                 pad: str = "edge") -> tuple[np.ndarray, np.ndarray]:
    """Square crop around the points (continuous pixel coordinates), padded (``edge`` replicate or
    ``zero``) where it leaves the image, resized to size × size (INTER_AREA down, INTER_CUBIC up);
    the points are mapped the same way: x' = (x − left) · size / side."""
    img = np.asarray(image)
    pts = np.asarray(points, dtype=np.float64)
    if img.ndim != 3 or img.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (H, W, C), got {img.dtype} {img.shape}")
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) == 0 or not np.isfinite(pts).all():
        raise ValueError(f"points must be finite (n, 2), got shape {pts.shape}")
    if pad not in ("edge", "zero") or margin < 0 or size < 1:
        raise ValueError(f"need pad in ('edge', 'zero'), margin >= 0, size >= 1; got {pad!r}, {margin}, {size}")
    left, top, side = _crop_box(pts, margin)
    h, w = img.shape[:2]
    borders = [max(0, -top), max(0, top + side - h), max(0, -left), max(0, left + side - w)]
    if any(borders):
        kind = cv2.BORDER_REPLICATE if pad == "edge" else cv2.BORDER_CONSTANT
        img = cv2.copyMakeBorder(img, *borders, kind, value=0)
    y0, x0 = top + borders[0], left + borders[2]
    crop = np.ascontiguousarray(img[y0:y0 + side, x0:x0 + side])
    if side != size:
        crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_CUBIC)
    scale = size / side
    return crop, ((pts - [left, top]) * scale).astype(np.float32)
