"""Photometric rendering of a synthetic face from its label map: colours, texture, shading, clutter, noise.

Works on float32 RGB in [0, 1], vectorised (numpy LUTs + OpenCV drawing / filtering), then returns uint8.
"""
from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np

from faceparse.data.synth_face import C, FaceGeometry, Occluder, Op, _fx, _SHIFT, paint

# Anchor colours (linear-ish sRGB in [0, 1]); identities interpolate between neighbours and jitter.
SKIN_TONES = np.array([
    [0.96, 0.82, 0.72], [0.92, 0.74, 0.62], [0.84, 0.63, 0.50], [0.74, 0.53, 0.39],
    [0.62, 0.42, 0.30], [0.48, 0.32, 0.22], [0.34, 0.22, 0.15], [0.25, 0.16, 0.11],
], np.float32)
SKIN_P = np.array([0.15, 0.16, 0.16, 0.15, 0.13, 0.11, 0.08, 0.06])
HAIR_COLOURS = np.array([
    [0.06, 0.05, 0.05], [0.12, 0.09, 0.07], [0.24, 0.16, 0.10], [0.40, 0.27, 0.16], [0.52, 0.24, 0.12],
    [0.74, 0.60, 0.38], [0.88, 0.78, 0.56], [0.55, 0.53, 0.52], [0.82, 0.81, 0.80],
], np.float32)
HAIR_P = np.array([0.22, 0.2, 0.16, 0.12, 0.06, 0.09, 0.06, 0.05, 0.04])
IRIS = np.array([[0.25, 0.14, 0.07], [0.12, 0.07, 0.04], [0.30, 0.45, 0.60], [0.30, 0.42, 0.25],
                 [0.45, 0.35, 0.20]], np.float32)
MASK_COLOURS = np.array([[0.55, 0.72, 0.86], [0.92, 0.93, 0.93], [0.08, 0.08, 0.09], [0.85, 0.62, 0.7]],
                        np.float32)                                   # medical: blue, white, black, pink
MASK_P = np.array([0.55, 0.25, 0.15, 0.05])
METALS = np.array([[0.85, 0.70, 0.30], [0.80, 0.80, 0.82], [0.70, 0.45, 0.30]], np.float32)

_FACE_CLASSES = ("skin", "nose", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear", "mouth", "u_lip",
                 "l_lip", "neck")
_IS_FACE = np.zeros(19, np.float32)
for _n in _FACE_CLASSES:
    _IS_FACE[C[_n]] = 1.0


@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    return x, y


def _f(rng: np.random.Generator, lo: float, hi: float) -> float:
    """A Python-float uniform draw (numpy float64 scalars would promote float32 images to float64)."""
    return float(rng.uniform(lo, hi))


def _rand_colour(rng: np.random.Generator, sat=(0.2, 0.9), val=(0.15, 0.95)) -> np.ndarray:
    h = _f(rng, 0, 180)
    hsv = np.array([[[h, rng.uniform(*sat) * 255, rng.uniform(*val) * 255]]], np.float32).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32) / 255.0


def _pick(rng, table, p=None, jitter=0.04) -> np.ndarray:
    i = rng.choice(len(table), p=p)
    j = min(len(table) - 1, i + 1)
    c = table[i] + (table[j] - table[i]) * _f(rng, 0, 1)
    return np.clip(c * _f(rng, 0.92, 1.08) + rng.normal(0, jitter, 3), 0.02, 1.0).astype(np.float32)


def _gauss(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur with a bounded kernel (cheaper than cv2.GaussianBlur's default for large σ)."""
    if sigma < 0.25:
        return img
    k = cv2.getGaussianKernel(2 * int(np.ceil(2.5 * sigma)) + 1, sigma, cv2.CV_32F)
    return cv2.sepFilter2D(img, cv2.CV_32F, k, k, borderType=cv2.BORDER_REFLECT)


def _smooth(rng: np.random.Generator, size: int, grids: tuple[int, ...], weights: tuple[float, ...],
            aspect: tuple[int, int] | None = None) -> np.ndarray:
    """Smooth noise: a sum of bicubic-upsampled random grids, built at 32² then upsampled once."""
    base = np.zeros((32, 32), np.float32)
    for g, w in zip(grids, weights):
        base += w * cv2.resize(rng.standard_normal((g, g)).astype(np.float32), (32, 32),
                               interpolation=cv2.INTER_CUBIC)
    return cv2.resize(base, (size, size), interpolation=cv2.INTER_CUBIC)


@lru_cache(maxsize=4)
def _noise_bank(size: int) -> np.ndarray:
    """A fixed bank of pixel noise (3, 2·size, 2·size); samples read random crops of it (deterministic)."""
    return np.random.default_rng(0x5EED).standard_normal((3, 2 * size, 2 * size), dtype=np.float32)


def _background(rng: np.random.Generator, size: int, hair: np.ndarray, skin: np.ndarray) -> np.ndarray:
    """Cluttered background (size, size, 3) float32: gradient + random shapes, drawn at half resolution."""
    h = max(16, size // 2)
    x, y = _grid(h)
    a = _f(rng, 0, 2 * np.pi)
    ramp = x * math.cos(a) + y * math.sin(a)
    ramp = (ramp - ramp.min()) / max(1e-6, float(ramp.max() - ramp.min()))
    c0, c1 = _rand_colour(rng), _rand_colour(rng)
    if rng.random() < 0.15:           # background close to the hair colour: hard hair boundary
        c0 = np.clip(hair * _f(rng, 0.8, 1.2), 0, 1)
    bg = cv2.merge([(c0[c] + (c1[c] - c0[c]) * ramp).astype(np.float32) for c in range(3)])
    for _ in range(int(rng.integers(2, 10))):
        r = rng.random()
        col = skin * _f(rng, 0.7, 1.1) if r < 0.1 else hair * _f(rng, 0.8, 1.2) if r < 0.15 else _rand_colour(rng)
        col = tuple(float(v) for v in np.clip(col, 0, 1))
        kind = rng.integers(4)
        p = rng.uniform(-0.2, 1.2, 2) * h
        if kind == 0:
            q = p + rng.uniform(-0.6, 0.6, 2) * h
            cv2.rectangle(bg, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), col, -1)
        elif kind == 1:
            axes = (int(_f(rng, 0.03, 0.4) * h), int(_f(rng, 0.03, 0.4) * h))
            cv2.ellipse(bg, (int(p[0]), int(p[1])), axes, float(_f(rng, 0, 180)), 0, 360, col, -1)
        elif kind == 2:
            q = p + rng.uniform(-1, 1, 2) * h
            cv2.line(bg, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), col,
                     max(1, int(_f(rng, 0.005, 0.05) * h)))
        else:
            pts = (p + rng.uniform(-0.3, 0.3, (int(rng.integers(3, 7)), 2)) * h).astype(np.int32)
            cv2.fillPoly(bg, [pts.reshape(-1, 1, 2)], col)
    tex = 1.0 + _f(rng, 0.03, 0.15) * _smooth(rng, h, (5, 20), (0.6, 0.4))
    bg *= cv2.merge([tex, tex, tex])
    bg = _gauss(bg, _f(rng, 0.0, 2.0) * h / 128)
    return cv2.resize(bg, (size, size), interpolation=cv2.INTER_LINEAR)


def _roi(polys: list[np.ndarray], pad: float, size: int) -> tuple[slice, slice]:
    """(rows, cols) slices of the padded bounding box of some pixel-coordinate polygons."""
    pts = np.concatenate(polys)
    x0, y0 = np.floor(pts.min(0) - pad).astype(int)
    x1, y1 = np.ceil(pts.max(0) + pad).astype(int) + 1
    return slice(max(0, y0), min(size, y1)), slice(max(0, x0), min(size, x1))


def render(rng: np.random.Generator, geo: FaceGeometry, label: np.ndarray, under: np.ndarray,
           occ_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """RGB uint8 images of the scene: (image, clean). ``under``: label map without the glasses (what is seen
    through them). ``clean`` (None without occluders) is the same scene with the occluders left unpainted:
    one random stream, branching only where occluder pixels are painted, so it keeps their cast shadow and
    equals ``image`` outside ``occ_ids > 0`` up to the final JPEG (see faceparse.data.synth).

    Colours live in a planar (3, H, W) float32 buffer; every luminance effect (texture, roundness, side light,
    soft shadows, global gradient) is folded into one (H, W) multiplier applied once."""
    size = label.shape[0]
    pose = geo.pose
    x, y = _grid(size)

    skin = _pick(rng, SKIN_TONES, SKIN_P, jitter=0.03)
    hair = _pick(rng, HAIR_COLOURS, HAIR_P, jitter=0.03)
    if rng.random() < 0.05:
        hair = _rand_colour(rng, (0.4, 0.9), (0.3, 0.9))              # dyed
    if rng.random() < 0.12:
        hair = np.clip(skin * _f(rng, 0.75, 1.05), 0, 1)           # hair close to the skin tone

    cols = np.zeros((19, 3), np.float32)
    cols[C["skin"]] = skin
    cols[C["nose"]] = skin * _f(rng, 0.96, 1.04)
    cols[C["l_ear"]] = cols[C["r_ear"]] = skin * _f(rng, 0.88, 1.0)
    cols[C["neck"]] = skin * _f(rng, 0.7, 0.9)
    sclera = np.array([0.86, 0.83, 0.80], np.float32) * _f(rng, 0.55, 0.95)
    cols[C["l_eye"]] = cols[C["r_eye"]] = sclera
    brow_a = _f(rng, 0.45, 0.95)
    brow = skin * (1 - brow_a) + hair * _f(rng, 0.45, 0.9) * brow_a
    cols[C["l_brow"]] = cols[C["r_brow"]] = brow
    la = _f(rng, 0.2, 0.6)
    lip = skin * (1 - la) + np.array([0.72, 0.3, 0.32], np.float32) * la
    if rng.random() < 0.15:                                             # lipstick
        lip = np.array([0.6, 0.08, 0.15], np.float32) * _f(rng, 0.6, 1.2)
    cols[C["u_lip"]] = lip * _f(rng, 0.82, 0.95)
    cols[C["l_lip"]] = lip
    cols[C["mouth"]] = np.array([0.28, 0.09, 0.09], np.float32) * _f(rng, 0.5, 1.3)
    cols[C["hair"]] = hair
    cols[C["hat"]] = _rand_colour(rng)
    cols[C["cloth"]] = _rand_colour(rng, (0.0, 0.9))
    cols[C["ear_r"]] = METALS[rng.integers(len(METALS))] if rng.random() < 0.7 else _rand_colour(rng)
    cols[C["neck_l"]] = METALS[rng.integers(len(METALS))] if rng.random() < 0.7 else _rand_colour(rng)
    cols[C["eye_g"]] = skin  # never shown: lenses / frames are composited below

    amp = np.zeros(19, np.float32)
    amp[[C[n] for n in _FACE_CLASSES]] = _f(rng, 0.04, 0.12)
    amp[C["hair"]] = _f(rng, 0.15, 0.35)
    amp[C["l_brow"]] = amp[C["r_brow"]] = 0.2
    amp[C["cloth"]] = _f(rng, 0.08, 0.3)
    amp[C["hat"]] = _f(rng, 0.05, 0.25)
    amp[C["ear_r"]] = amp[C["neck_l"]] = 0.3

    bg = _background(rng, size, hair, skin)
    img = np.take(np.ascontiguousarray(cols.T), under, axis=1)           # (3, H, W)
    isbg = (under == 0).astype(np.float32)
    for c, plane in enumerate(cv2.split(bg)):
        img[c] += plane * isbg

    # ---- one luminance multiplier for everything
    tex = _smooth(rng, size, (6, 24), (0.6, 0.4))
    m = 1.0 + np.take(amp, under) * tex
    hair_m = under == C["hair"]
    streak = cv2.resize(rng.standard_normal((4, max(8, size // 3))).astype(np.float32), (size, size),
                        interpolation=cv2.INTER_LINEAR)
    m += _f(rng, 0.1, 0.3) * streak * hair_m
    if rng.random() < 0.3:
        a = _f(rng, 0, np.pi)
        stripes = np.sign(np.sin((x * math.cos(a) + y * math.sin(a)) * (_f(rng, 0.1, 0.5) * 256 / size)))
        m += _f(rng, 0.1, 0.4) * stripes * (under == C["cloth"])
    # face roundness + side light, in the face frame
    cr, sr = math.cos(pose.roll), math.sin(pose.roll)
    dx, dy = x - pose.tx, y - pose.ty
    u = (dx * cr + dy * sr) * (1.0 / pose.s)
    v = (dy * cr - dx * sr) * (1.0 / pose.s)
    isface = np.take(_IS_FACE, under)
    side = _f(rng, -0.35, 0.35)
    uc = np.clip(u, -1.5, 1.5)
    shade = 1.0 - _f(rng, 0.1, 0.35) * np.minimum(uc * uc, 1.3) * isface + (side * 0.6) * uc
    shade -= 0.15 * np.clip(v - 1.2, 0, 1) * (under == C["neck"])          # shadow under the chin
    # soft local shadows (eye sockets, nose side, under nose / lip), drawn at half resolution
    h2 = max(16, size // 2)
    soft = np.ones((h2, h2), np.float32)
    lw = max(1, int(round(pose.s * 0.03)))
    for e in geo.eyes:
        cv2.polylines(soft, [_fx(e["lash"] * 0.5)], False, float(_f(rng, 0.75, 0.9)), lw * 2, cv2.LINE_AA,
                      _SHIFT)
    if geo.nose_side is not None:
        cv2.polylines(soft, [_fx(geo.nose_side * 0.5)], False, float(_f(rng, 0.75, 0.9)), lw, cv2.LINE_AA,
                      _SHIFT)
    lm = geo.landmarks * 0.5
    deg = float(np.degrees(pose.roll))
    for k, w, lo, hi in ((33, 0.08, 0.8, 0.92), (57, 0.1, 0.8, 0.95)):
        cv2.ellipse(soft, (int(lm[k][0]), int(lm[k][1] + lw)), (max(1, int(pose.s * w)), max(1, lw // 2)), deg,
                    0, 360, float(_f(rng, lo, hi)), -1)
    soft = _up(soft, pose.s * 0.02, size)
    shade *= 1.0 + (soft - 1.0) * isface
    m *= shade

    # ---- eye details: iris + pupil inside the eye opening, dark lash line
    iris_col = IRIS[rng.integers(len(IRIS))] * _f(rng, 0.6, 1.2)
    ys, xs = _roi([e["lash"] for e in geo.eyes] + list(geo.nostrils)
                  + ([geo.teeth] if geo.teeth is not None else []), pose.s * 0.3, size)
    sub_img, sub_under = img[:, ys, xs], under[ys, xs]                 # views: the face-detail window
    off = np.array([xs.start, ys.start], np.float64)
    tmp = np.zeros(sub_under.shape, np.uint8)
    for e in geo.eyes:
        c = tuple(int(v_) for v_ in np.round((e["centre"] - off) * 16))
        r = int(round(e["iris_r"] * 16))
        cv2.circle(tmp, c, r, 1, -1, cv2.LINE_8, _SHIFT)
        cv2.circle(tmp, c, int(r * 0.45), 2, -1, cv2.LINE_8, _SHIFT)
        eye = sub_under == e["cls"]
        sub_img[:, (tmp == 1) & eye] = iris_col[:, None]
        sub_img[:, (tmp == 2) & eye] = iris_col[:, None] * 0.25
        tmp[:] = 0
    for e in geo.eyes:                                                  # dark strokes: lashes, nostrils
        cv2.polylines(tmp, [_fx(e["lash"] - off)], False, 1, max(1, int(round(pose.s * _f(rng, 0.015, 0.035)))),
                      cv2.LINE_8, _SHIFT)
    for nst in geo.nostrils:
        cv2.fillPoly(tmp, [_fx(nst - off)], 2, cv2.LINE_8, _SHIFT)
    sub_img[:, tmp == 1] = (brow * 0.35)[:, None]
    sub_img[:, tmp == 2] = (skin * _f(rng, 0.3, 0.55))[:, None]
    if geo.teeth is not None:
        tmp[:] = 0
        cv2.fillPoly(tmp, [_fx(geo.teeth - off)], 1, cv2.LINE_8, _SHIFT)
        sub_img[:, (tmp == 1) & (sub_under == C["mouth"])] = (np.array([0.88, 0.85, 0.78], np.float32)
                                                               * _f(rng, 0.6, 1.0))[:, None]

    # ---- what real faces show and the label map does not: eye sockets / make-up, skin shine, beards, curls
    socket = _eye_sockets(rng, geo, size)
    m *= 1.0 - socket * isface
    if rng.random() < 0.2:                                              # eye shadow make-up on the lids
        _tint(img, socket * (under == C["skin"]) * _f(rng, 0.5, 1.5), _rand_colour(rng, (0.2, 0.7), (0.2, 0.6)))
    m *= 1.0 + _shine(rng, geo, size) * isface
    if rng.random() < 0.25:
        _tint(img, _beard(rng, geo, size) * (under == C["skin"]), hair * _f(rng, 0.5, 1.0))
    if rng.random() < 0.4:                                              # curly / coarse hair: fine-grained texture
        m += _f(rng, 0.2, 0.45) * _grain(rng, size, size / _f(rng, 40, 120)) * hair_m

    # ---- eyeglasses: tinted lenses with a highlight band, coloured frames
    if geo.glasses:
        lens = np.zeros((size, size), np.uint8)
        cv2.fillPoly(lens, [_fx(p) for p in geo.lenses], 1, cv2.LINE_8, _SHIFT)
        see = (lens == 1) & (label != C["hair"]) & (label != C["hat"])
        tint = _rand_colour(rng, (0.0, 0.5), (0.3, 0.9))
        ta = _f(rng, 0.05, 0.3)
        a = _f(rng, 0, np.pi)
        band = (np.sin((x[see] * math.cos(a) + y[see] * math.sin(a)) / max(2.0, pose.s * 0.15)) > 0.85)
        img[:, see] = img[:, see] * (1 - ta) + tint[:, None] * ta + band * _f(rng, 0.0, 0.35)
        frame = np.zeros((size, size), np.uint8)
        paint(frame, [Op(1, op.polys, op.thickness, op.closed) for op in geo.ops if op.tag == "glasses_frame"])
        fm = (frame == 1) & (label == C["eye_g"])
        fcol = np.array([0.05, 0.05, 0.05], np.float32) if rng.random() < 0.5 else _rand_colour(rng)
        img[:, fm] = fcol[:, None] * (1.0 + 0.15 * tex[fm])

    # ---- occluders: own colours + texture, soft cast shadow on what is behind
    clean = img.copy() if geo.occluders else None      # the scene without them (keeps their shadow via m)
    if geo.occluders:
        occ = occ_ids > 0
        small = cv2.resize(occ.astype(np.float32), (h2, h2), interpolation=cv2.INTER_AREA)
        sh = cv2.resize(_gauss(small, max(1.0, pose.s * 0.06)), (size, size), interpolation=cv2.INTER_LINEAR)
        sh = np.roll(sh, (int(rng.integers(-4, 5)), int(rng.integers(-4, 5))), (0, 1))
        m *= 1.0 - _f(rng, 0.1, 0.35) * sh
        # own low-frequency texture (clipped: a ±3σ dip reads as a stain on a large flat mask) + side light
        base = 1.0 + 0.1 * np.clip(_smooth(rng, size, (12,), (1.0,)), -2.0, 2.0) + (side * 0.3) * uc
        for k, o in enumerate(geo.occluders, 1):
            sel = occ_ids == k
            if sel.any():
                col, lum = _occluder_look(rng, o, sel, skin, hair, pose.s)
                img[:, sel] = col * (base[sel] * lum / m[sel])   # ÷ m: the face shading must not apply to them

    # ---- global light: gradient, white balance, exposure; then contrast
    a = _f(rng, 0, 2 * np.pi)
    g = _f(rng, -0.5, 0.5) / size
    m *= 1.0 + g * ((x - size / 2) * math.cos(a) + (y - size / 2) * math.sin(a))
    wb = (rng.uniform(0.88, 1.12, 3) * _f(rng, 0.7, 1.25)).astype(np.float32)
    contrast = float(_f(rng, 0.75, 1.2))

    # ---- camera: blur, (down-up)sampling, noise, JPEG — every draw made once, applied to both images
    blur = _f(rng, 0.2, 1.3) * size / 256
    resample = _f(rng, 0.4, 0.8) if rng.random() < 0.2 else None
    bank = _noise_bank(size)
    oy, ox = (int(v_) for v_ in rng.integers(0, size, 2))
    sigma = float(_f(rng, 0.004, 0.04))
    noise = cv2.merge([bank[c, oy:oy + size, ox:ox + size] for c in range(3)])
    quality = int(rng.integers(25, 93)) if rng.random() < 0.85 else None

    def shoot(planes_img: np.ndarray) -> np.ndarray:
        planes = [(planes_img[c] * m) * float(wb[c] * contrast) + (0.5 - 0.5 * contrast) for c in range(3)]
        return _camera(cv2.merge(planes), blur, resample, noise, sigma)

    out = shoot(img)
    if clean is not None:
        # the camera blur spreads occluder colour a few pixels past the mask: paste the occluded image there
        clean = np.where((occ_ids > 0)[..., None], shoot(clean), out)
        clean = clean if quality is None else _jpeg(clean, quality)
    return (out if quality is None else _jpeg(out, quality)), clean


def _half(geo: FaceGeometry, size: int) -> tuple[int, float, float]:
    """(half resolution, pose scale there, roll in degrees): the soft face details are drawn at half size."""
    return max(16, size // 2), geo.pose.s * max(16, size // 2) / size, float(np.degrees(geo.pose.roll))


def _up(half: np.ndarray, sigma: float, size: int) -> np.ndarray:
    return cv2.resize(_gauss(half, max(0.6, sigma)), (size, size), interpolation=cv2.INTER_LINEAR)


def _eye_sockets(rng: np.random.Generator, geo: FaceGeometry, size: int) -> np.ndarray:
    """Darkening (H, W) in [0, 1) round each eye — lid crease and under-eye shadow of random depth. Real eyes
    sit in one; without it every dark ring round a real eye read as a glasses frame (issue #16)."""
    h2, s2, deg = _half(geo, size)
    dark = np.zeros((h2, h2), np.float32)
    k = h2 / size
    for e in geo.eyes:
        lash = e["lash"] * k
        hw = max(1.0, float(lash[:, 0].max() - lash[:, 0].min()) / 2)
        c = e["centre"] * k - np.array([0.0, hw * _f(rng, 0.0, 0.3)])
        cv2.ellipse(dark, (int(c[0]), int(c[1])), (int(hw * _f(rng, 1.1, 1.6)), int(hw * _f(rng, 0.6, 1.1))),
                    deg, 0, 360, 1.0, -1)
    return _up(dark, s2 * _f(rng, 0.06, 0.14), size) * _f(rng, 0.03, 0.35)


def _shine(rng: np.random.Generator, geo: FaceGeometry, size: int) -> np.ndarray:
    """Brightening (H, W) ≥ 0: specular spots on the forehead, nose and cheeks (oily skin, flash)."""
    h2, s2, _ = _half(geo, size)
    lm = geo.landmarks * (h2 / size)
    spots = [lm[27] + (lm[27] - lm[33]) * 0.8, lm[30], (lm[2] + lm[31]) / 2, (lm[14] + lm[35]) / 2]
    sheen = np.zeros((h2, h2), np.float32)
    for p in spots:
        if rng.random() < 0.5:
            cv2.circle(sheen, (int(p[0]), int(p[1])), max(1, int(s2 * _f(rng, 0.06, 0.22))), float(_f(rng, 0.4, 1)), -1)
    return _up(sheen, s2 * 0.08, size) * _f(rng, 0.0, 0.4)


def _beard(rng: np.random.Generator, geo: FaceGeometry, size: int) -> np.ndarray:
    """Opacity (H, W) in [0, 1] of a beard or stubble over the jaw, chin and upper lip (labelled skin, as in
    CelebAMask-HQ), grainy."""
    h2, s2, _ = _half(geo, size)
    lm = geo.landmarks * (h2 / size)
    ring = np.concatenate([lm[2:15], lm[[35, 33, 31]]])
    area = np.zeros((h2, h2), np.float32)
    cv2.fillPoly(area, [np.round(ring).astype(np.int32).reshape(-1, 1, 2)], 1.0)
    density = _f(rng, 0.2, 0.5) if rng.random() < 0.5 else _f(rng, 0.5, 0.95)
    grain = np.clip(0.6 + 0.5 * _grain(rng, size, size / 200), 0, 1)
    return _up(area, s2 * _f(rng, 0.03, 0.1), size) * grain * density


def _grain(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Fine noise (H, W), unit-ish variance, correlated over ``sigma`` pixels (hair curls, beard grain)."""
    g = _gauss(rng.standard_normal((size, size)).astype(np.float32), sigma)
    return g / max(1e-6, float(g.std()))


def _tint(img: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> None:
    """Blend ``colour`` into the planar (3, H, W) ``img`` in place with per-pixel opacity ``alpha``."""
    a = np.clip(alpha, 0, 1).astype(np.float32)
    for c in range(3):
        img[c] += (float(colour[c]) - img[c]) * a


def _camera(out: np.ndarray, blur: float, resample: float | None, noise: np.ndarray, sigma: float) -> np.ndarray:
    """Float (H, W, 3) → uint8: blur, optional down-up sampling by ``resample``, pixel noise, quantisation."""
    size = out.shape[0]
    out = _gauss(out, blur)
    if resample is not None:
        small = cv2.resize(out, (max(8, int(size * resample)),) * 2, interpolation=cv2.INTER_AREA)
        out = cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)
    out = cv2.scaleAdd(noise, sigma, out)
    return cv2.convertScaleAbs(cv2.max(out, 0.0), alpha=255.0)   # saturating, rounding float → uint8


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """A JPEG round trip (the camera's compression)."""
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)


def _strokes(size: int, lines: list[np.ndarray], values: np.ndarray, thickness: int) -> np.ndarray:
    """(size, size) float32 multiplier: 1 with the polylines drawn at their ``values`` (anti-aliased)."""
    canvas = np.ones((size, size), np.float32)
    for ln, v in zip(lines, values):
        cv2.polylines(canvas, [_fx(ln)], False, float(v), thickness, cv2.LINE_AA, _SHIFT)
    return canvas


def _occluder_look(rng: np.random.Generator, o: Occluder, sel: np.ndarray, skin: np.ndarray, hair: np.ndarray,
                   s: float) -> tuple[np.ndarray, np.ndarray]:
    """Colours (3, n) and a luminance multiplier (n,) of the ``sel`` pixels of one occluder."""
    look = {"hair": _look_hair, "mask": _look_mask, "sunglasses": _look_sunglasses}.get(o.kind, _look_held)
    c, lum, accent, acc = look(rng, o, sel.shape[0], skin, hair, s)
    col = np.repeat(np.asarray(c, np.float32)[:, None], int(sel.sum()), 1)
    lum = np.ones(col.shape[1], np.float32) if lum is None else lum[sel].astype(np.float32)
    if acc is not None:                 # frame / loops: plain second colour
        on = acc[sel] > 0
        col[:, on] = accent[:, None]
        lum[on] = 1.0
    return col, lum


# each look: (colour (3,), luminance (size, size) or None, accent colour (3,) or None, accent mask or None)
def _look_held(rng, o, size, skin, hair, s):
    if o.kind == "hand":
        return (skin * _f(rng, 0.85, 1.1) if rng.random() < 0.6 else _pick(rng, SKIN_TONES)), None, None, None
    return _rand_colour(rng), None, None, None


def _look_hair(rng, o, size, skin, hair, s):
    """The identity's hair colour, strands along the lock."""
    lum = _gauss(_strokes(size, o.lines, rng.uniform(0.5, 1.5, len(o.lines)), 1), 0.35 * size / 128)
    return hair * _f(rng, 0.8, 1.0), lum, None, None


def _look_mask(rng, o, size, skin, hair, s):
    """Pleated medical mask (pale blue / white / black, white loops) or a plain cloth one."""
    if not o.lines:
        return _rand_colour(rng, (0.0, 0.7), (0.15, 0.9)), None, None, None
    c = MASK_COLOURS[rng.choice(len(MASK_COLOURS), p=MASK_P)] * _f(rng, 0.9, 1.05)
    folds = _strokes(size, o.lines, np.full(len(o.lines), _f(rng, 0.65, 0.8)), max(1, int(round(s * 0.025))))
    loops = np.array([0.92, 0.92, 0.9], np.float32) * _f(rng, 0.8, 1.0)
    return c, _gauss(folds, max(0.5, s * 0.015)), loops, _fill(size, o.accent)


def _look_sunglasses(rng, o, size, skin, hair, s):
    """Near-black tinted lenses with a highlight band; a dark or metal frame (bridge, temples, rims)."""
    c = np.clip(_rand_colour(rng, (0.2, 0.8), (0.4, 1.0)) * _f(rng, 0.05, 0.16), 0.01, 1)
    frame_col = np.array([0.04, 0.04, 0.04], np.float32) if rng.random() < 0.6 else METALS[rng.integers(3)]
    x, y = _grid(size)
    a = _f(rng, 0.3, 1.2)
    band = np.sin((x * math.cos(a) + y * math.sin(a)) / max(1.5, s * 0.08)) > 0.8
    lum = 1.0 + band * _f(rng, 0.3, 1.5)
    frame = _fill(size, o.accent)
    cv2.polylines(frame, [_fx(r) for r in o.lines], True, 1, max(1, int(round(s * 0.03))), cv2.LINE_8, _SHIFT)
    return c, lum, frame_col, frame


def _fill(size: int, polys: list[np.ndarray]) -> np.ndarray:
    out = np.zeros((size, size), np.uint8)
    cv2.fillPoly(out, [_fx(q) for q in polys], 1, cv2.LINE_8, _SHIFT)
    return out
