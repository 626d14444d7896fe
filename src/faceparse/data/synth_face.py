"""Geometry of the synthetic faces: random shape parameters → painted CelebAMask-HQ label maps + landmarks.

All parts are built in a *face frame* (units of the face half-width, x to the image right, y down, origin on
the eye line), given a depth ``z`` (a parabolic face surface plus protrusions), turned by a pseudo-3-D yaw /
pitch, then rolled, scaled and translated into pixels. The same projection yields the 68 iBUG landmarks, so
they line up with the painted parts.

Side convention (as in the real CelebAMask-HQ maps): ``l_*`` classes (l_eye, l_brow, l_ear) are the
subject's left, i.e. on the *image right*; iBUG points 36-41 / 17-21 (image-left eye / brow) therefore
outline ``r_eye`` / ``r_brow`` and 42-47 / 22-26 outline ``l_eye`` / ``l_brow``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from faceparse.labels import CELEBAMASK_HQ

C = {name: i for i, name in enumerate(CELEBAMASK_HQ.classes)}

# Occluder kinds (fixed order: the test split cycles through it) → the CelebAMask-HQ class their pixels take in
# the *visible* label map: what an annotator of the real dataset would mark there (a strand of hair over the
# face is hair, sunglasses are eye_g, hands / objects / face masks are not a face class → background).
OCCLUDER_VISIBLE = {"hand": "background", "bar": "background", "object": "background", "hair": "hair",
                    "mask": "background", "sunglasses": "eye_g"}
OCCLUDER_KINDS = tuple(OCCLUDER_VISIBLE)
_KIND_P = np.array([0.3, 0.15, 0.2, 0.15, 0.1, 0.1])     # random kinds (train / val), OCCLUDER_KINDS order
_SHIFT = 4                     # fixed-point bits for cv2 polygon coordinates (sub-pixel accuracy)
_ONE = 1 << _SHIFT


def _fx(pts: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(pts, np.float64) * _ONE).astype(np.int32).reshape(-1, 1, 2)


def ellipse_pts(cx: float, cy: float, a: float, b: float, ang: float = 0.0, n: int = 28,
                t0: float = 0.0, t1: float = 2 * np.pi) -> np.ndarray:
    t = np.linspace(t0, t1, n, endpoint=(t1 - t0) < 2 * np.pi - 1e-9)
    x, y = a * np.cos(t), b * np.sin(t)
    ca, sa = np.cos(ang), np.sin(ang)
    return np.stack([cx + x * ca - y * sa, cy + x * sa + y * ca], 1)


@dataclass
class Pose:
    """Face frame → pixels."""
    tx: float
    ty: float
    s: float          # face half-width in pixels
    roll: float
    yaw: float
    pitch: float
    depth: float      # D of the face surface z = D (1 - x²)

    def surface(self, x: np.ndarray) -> np.ndarray:
        return self.depth * (1.0 - np.clip(x, -1.0, 1.0) ** 2)

    def project(self, pts: np.ndarray, z: np.ndarray | float | None = None) -> np.ndarray:
        pts = np.asarray(pts, np.float64)
        x, y = pts[:, 0], pts[:, 1]
        if z is None:
            z = self.surface(x)
        xp = x * np.cos(self.yaw) + z * np.sin(self.yaw)
        yp = y * np.cos(self.pitch) + z * np.sin(self.pitch)
        cr, sr = np.cos(self.roll), np.sin(self.roll)
        return np.stack([self.tx + self.s * (xp * cr - yp * sr), self.ty + self.s * (xp * sr + yp * cr)], 1)

    def px(self, units: float) -> float:
        return units * self.s


@dataclass
class Op:
    """One paint operation: filled polygons, or a polyline of a given pixel thickness."""
    cls: int
    polys: list[np.ndarray]
    thickness: int = 0          # 0: filled polygons; > 0: polyline
    closed: bool = False
    tag: str = ""


def paint(canvas: np.ndarray, ops: list[Op], skip_tags: tuple[str, ...] = ()) -> np.ndarray:
    for op in ops:
        if op.tag in skip_tags:
            continue
        pts = [_fx(p) for p in op.polys]
        if op.thickness > 0:
            cv2.polylines(canvas, pts, op.closed, int(op.cls), thickness=int(op.thickness),
                          lineType=cv2.LINE_8, shift=_SHIFT)
        else:
            cv2.fillPoly(canvas, pts, int(op.cls), lineType=cv2.LINE_8, shift=_SHIFT)
    return canvas


@dataclass
class Occluder:
    """Something in front of the face; all coordinates in pixels."""
    kind: str
    polys: list[np.ndarray]                                     # their union is the occluder
    accent: list[np.ndarray] = field(default_factory=list)      # parts of it in a second colour (frame, straps)
    lines: list[np.ndarray] = field(default_factory=list)       # detail strokes (hair strands, pleats, rims)


@dataclass
class FaceGeometry:
    size: int
    pose: Pose
    ops: list[Op]                      # label paint ops, in painting order
    landmarks: np.ndarray              # (68, 2) float32
    occluders: list[Occluder]          # in drawing order (later ones on top)
    # details for the renderer (pixel coordinates)
    eyes: list[dict] = field(default_factory=list)  # centre, iris radius, lash polyline
    nostrils: list[np.ndarray] = field(default_factory=list)
    nose_side: np.ndarray | None = None
    teeth: np.ndarray | None = None
    lenses: list[np.ndarray] = field(default_factory=list)
    hair_style: str = ""
    hat: bool = False
    glasses: bool = False
    frame: FaceFrame | None = None     # face-frame parameters the occluders fit to


def _u(rng, lo, hi):
    return float(rng.uniform(lo, hi))


# --------------------------------------------------------------------------------------------------- face
def _face_outline(t, cy, b_up, b_low, p_low, p_up):
    """Points of the face oval at angles t (y down): lower half a superellipse (jaw), upper an ellipse."""
    c, s = np.cos(t), np.sin(t)
    p = np.where(s > 0, p_low, p_up)
    b = np.where(s > 0, b_low, b_up)
    x = np.sign(c) * np.abs(c) ** (2.0 / p)
    y = cy + b * np.sign(s) * np.abs(s) ** (2.0 / p)
    return np.stack([x, y], 1)


def sample_geometry(rng: np.random.Generator, size: int, occluded: bool, kind: str | None = None) -> FaceGeometry:
    """Draw one face. Consumes ``rng`` in a fixed order (deterministic per generator state). ``occluded``: add
    one or two occluders, the first of ``kind`` when given (else random kinds); drawn once the face is final,
    so the face does not depend on them."""
    for attempt in range(30):
        geo = _sample_once(rng, size, shrink=0.97 ** attempt)
        lm = geo.landmarks
        if lm.min() >= 1.0 and lm.max() <= size - 2.0:
            break
    else:
        geo.landmarks = np.clip(geo.landmarks, 0, size - 1)   # pragma: no cover - not reached in practice
    if occluded:
        for j in range(1 if rng.random() < 0.8 else 2):
            k = kind if j == 0 and kind is not None else _random_kind(rng, [o.kind for o in geo.occluders])
            geo.occluders.append(_occluder(rng, k, geo.frame, geo.pose))
    return geo


def _sample_once(rng: np.random.Generator, size: int, shrink: float) -> FaceGeometry:
    S = float(size)
    yaw = _u(rng, -0.42, 0.42) if rng.random() < 0.75 else _u(rng, -0.08, 0.08)
    pose = Pose(
        tx=S * (0.5 + _u(rng, -0.09, 0.09)),
        ty=S * (0.43 + _u(rng, -0.07, 0.07)),
        s=S * _u(rng, 0.16, 0.28) * shrink,
        roll=float(np.clip(rng.normal(0.0, 0.17), -0.45, 0.45)),
        yaw=yaw,
        pitch=_u(rng, -0.12, 0.12),
        depth=_u(rng, 0.42, 0.55),
    )
    P = pose.project
    ops: list[Op] = []
    lm = np.zeros((68, 2), np.float64)

    # ---- identity proportions
    cy, b_up, b_low = _u(rng, 0.05, 0.2), _u(rng, 1.15, 1.35), _u(rng, 1.25, 1.5)
    p_low, p_up = _u(rng, 2.0, 3.0), _u(rng, 2.0, 2.4)
    ex, ey, ew = _u(rng, 0.36, 0.46), _u(rng, -0.05, 0.05), _u(rng, 0.15, 0.21)
    eh = _u(rng, 0.045, 0.085)
    eh_low, tilt = eh * _u(rng, 0.5, 0.8), _u(rng, -0.03, 0.05)
    yn, nw, bw, prot = _u(rng, 0.42, 0.58), _u(rng, 0.15, 0.24), _u(rng, 0.05, 0.08), _u(rng, 0.2, 0.35)
    ym = max(_u(rng, 0.68, 0.85), yn + _u(rng, 0.16, 0.26))
    mw, ut, lt = _u(rng, 0.26, 0.4), _u(rng, 0.05, 0.1), _u(rng, 0.07, 0.13)
    opening = _u(rng, 0.03, 0.18) if rng.random() < 0.35 else 0.0
    smile, bow, ki = _u(rng, -0.02, 0.08), _u(rng, 0.2, 0.5), _u(rng, 0.78, 0.9)
    nk = _u(rng, 0.45, 0.62)
    y_sh = cy + b_low + _u(rng, 0.2, 0.6)
    hair_style = str(rng.choice(["short", "bob", "long", "bun", "buzz"], p=[0.3, 0.2, 0.3, 0.1, 0.1]))
    has_hat = rng.random() < 0.08
    if has_hat and rng.random() < 0.3:
        hair_style = "none"
    has_glasses = rng.random() < 0.12
    has_earrings = rng.random() < 0.2
    has_necklace = rng.random() < 0.15
    ears_visible = rng.random() < (0.5 if hair_style == "long" else 0.9)

    def ellipse_op(cls, cx_, cy_, a, b, ang=0.0, z=None, n=28, tag=""):
        pts = ellipse_pts(cx_, cy_, a, b, ang, n)
        return Op(cls, [P(pts, z)], tag=tag)

    # ---- hair behind the head
    Hx, Hy, cyh = _u(rng, 1.05, 1.25), _u(rng, 1.3, 1.5), _u(rng, -0.3, -0.15)
    if hair_style in ("bun", "buzz"):
        Hx, Hy = _u(rng, 1.02, 1.07), _u(rng, 1.25, 1.35)
    y_side = _u(rng, -0.1, 0.2)
    # a slightly irregular cranium outline (hair volume), shared by the back and front hair shapes
    harm_k = np.arange(2, 7)
    harm_a = rng.uniform(0.0, 0.035, 5) / harm_k ** 0.5
    harm_p = rng.uniform(0, 2 * np.pi, 5)

    def cranium(t0, t1, n):
        pts = ellipse_pts(0, cyh, Hx, Hy, 0, n, t0, t1)
        t = np.linspace(t0, t1, n)
        r = 1.0 + (harm_a[:, None] * np.sin(harm_k[:, None] * t[None] + harm_p[:, None])).sum(0)
        return np.stack([pts[:, 0] * r, cyh + (pts[:, 1] - cyh) * r], 1)

    hair_back: list[np.ndarray] = []
    if hair_style == "none":      # bald under a hat: the scalp is skin
        tc = np.arcsin(np.clip((y_side + 0.1 - cyh) / (Hy * 0.97), -1, 1))
        ops.append(Op(C["skin"], [P(ellipse_pts(0, cyh, Hx * 0.97, Hy * 0.97, 0, 40, np.pi - tc, 2 * np.pi + tc),
                                    0.0)]))
    if hair_style != "none":
        # top arc of the cranium between the two points at height y_cut
        y_cut = y_side + 0.1 if hair_style in ("short", "buzz", "bun") else cyh + Hy * 0.2
        tc = np.arcsin(np.clip((y_cut - cyh) / Hy, -1, 1))
        arc = cranium(np.pi - tc, 2 * np.pi + tc, 40)
        if hair_style in ("bob", "long"):
            y_end = _u(rng, 0.9, 1.4) if hair_style == "bob" else y_sh + _u(rng, 0.3, 1.5)
            flare = _u(rng, 1.0, 1.08) if hair_style == "bob" else _u(rng, 1.05, 1.35)
            xe = Hx * flare
            right = np.array([[xe, y_end], [0.55, y_end + 0.1]])
            left = np.array([[-0.55, y_end + 0.1], [-xe, y_end]])
            poly = np.concatenate([arc, right, left])
        else:
            poly = arc
        hair_back.append(P(poly, 0.0))
        if hair_style == "bun":
            hair_back.append(P(ellipse_pts(_u(rng, -0.2, 0.2), cyh - Hy * _u(rng, 0.85, 1.0),
                                           _u(rng, 0.3, 0.45), _u(rng, 0.25, 0.38)), 0.0))
        ops.append(Op(C["hair"], hair_back))

    # ---- neck, cloth, necklace
    ops.append(Op(C["neck"], [P(np.array([[-nk, 0.6], [nk, 0.6], [nk * 1.12, y_sh + 1.5], [-nk * 1.12, y_sh + 1.5]]),
                                0.0)]))
    neckline = str(rng.choice(["round", "v", "high"]))
    shoulder = np.array([[nk + 0.05, y_sh], [1.6, y_sh + 0.25], [2.3, y_sh + 0.7], [2.7, y_sh + 6.0]])
    if neckline == "round":
        dip = _u(rng, 0.15, 0.6)
        tt = np.linspace(0, np.pi, 9)
        mid = np.stack([(nk + 0.05) * np.cos(tt), y_sh + dip * np.sin(tt)], 1)
    elif neckline == "v":
        mid = np.array([[nk + 0.05, y_sh], [0.0, y_sh + _u(rng, 0.4, 1.0)], [-nk - 0.05, y_sh]])
    else:
        hc = _u(rng, 0.15, 0.4)
        mid = np.array([[nk + 0.05, y_sh - hc], [-nk - 0.05, y_sh - hc]])
    cloth = np.concatenate([shoulder[::-1] * [1, 1], mid, shoulder * [-1, 1]])
    ops.append(Op(C["cloth"], [P(cloth, 0.0)]))
    if has_necklace:
        xs = np.linspace(-nk * 0.95, nk * 0.95, 15)
        y0, dip = y_sh - _u(rng, 0.05, 0.35), _u(rng, 0.25, 0.9)
        chain = np.stack([xs, y0 + dip * (1 - (xs / (nk * 0.95)) ** 2)], 1)
        th = max(1, int(round(pose.px(_u(rng, 0.025, 0.05)))))
        ops.append(Op(C["neck_l"], [P(chain, 0.05)], thickness=th))
        if rng.random() < 0.5:
            ops.append(ellipse_op(C["neck_l"], 0.0, y0 + dip + 0.06, _u(rng, 0.05, 0.1), _u(rng, 0.06, 0.12),
                                  z=0.05, n=16))
    if hair_style == "long" and rng.random() < 0.6:   # strands falling in front of the shoulders
        front = []
        for sd in (-1, 1):
            yb = y_sh + _u(rng, 0.3, 1.5)
            xi = _u(rng, 0.62, 0.85)
            front.append(P(np.array([[sd * Hx, y_side], [sd * Hx * _u(rng, 1.05, 1.3), yb], [sd * xi, yb + 0.1],
                                     [sd * xi, 0.6]]), 0.0))
        ops.append(Op(C["hair"], front))

    # ---- ears + earrings
    ear_info = []
    for sd, cls in ((-1, C["r_ear"]), (1, C["l_ear"])):
        ecx, ecy = sd * _u(rng, 0.95, 1.02), _u(rng, 0.1, 0.25)
        ea, eb, eang = _u(rng, 0.13, 0.2), _u(rng, 0.28, 0.38), sd * _u(rng, -0.2, 0.1)
        ear_info.append((sd, cls, ecx, ecy, ea, eb, eang))
    if ears_visible:
        for sd, cls, ecx, ecy, ea, eb, eang in ear_info:
            t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
            x = ea * np.cos(t) * (1 - 0.3 * np.clip(np.sin(t), 0, 1))
            y = eb * np.sin(t)
            pts = np.stack([ecx + x * np.cos(eang) - y * np.sin(eang), ecy + x * np.sin(eang) + y * np.cos(eang)], 1)
            ops.append(Op(cls, [P(pts, -0.12)]))
        if has_earrings:
            kind = str(rng.choice(["stud", "drop", "hoop"]))
            r = _u(rng, 0.04, 0.12)
            for sd, cls, ecx, ecy, ea, eb, eang in ear_info:
                ax, ay = ecx - np.sin(eang) * eb * 0.85, ecy + np.cos(eang) * eb * 0.85
                if kind == "stud":
                    ops.append(ellipse_op(C["ear_r"], ax, ay, r * 0.5, r * 0.5, z=-0.1, n=12))
                elif kind == "drop":
                    ops.append(ellipse_op(C["ear_r"], ax, ay + r * 1.3, r * 0.6, r, z=-0.1, n=14))
                else:
                    th = max(1, int(round(pose.px(0.025))))
                    ops.append(Op(C["ear_r"], [P(ellipse_pts(ax, ay + r, r, r, 0, 20), -0.1)], thickness=th,
                                  closed=True))

    # ---- face oval (skin)
    t = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    outline = _face_outline(t, cy, b_up, b_low, p_low, p_up)
    ops.append(Op(C["skin"], [P(outline)]))
    d0 = np.arcsin(np.clip((cy - ey) / b_up, -0.99, 0.99))
    jaw_t = np.linspace(np.pi + d0, -d0, 17)
    jaw = _face_outline(jaw_t, cy, b_up, b_low, p_low, p_up)
    lm[0:17] = P(jaw)

    # ---- nose
    y_top = ey - 0.02
    half = np.array([[bw, y_top], [bw * 1.1, yn - 0.22], [nw, yn - 0.06], [nw * 0.95, yn + 0.02],
                     [nw * 0.6, yn + 0.05], [0.0, yn + 0.06]])
    nose = np.concatenate([half * [-1, 1], half[-2::-1]])

    def nose_z(pts):
        f = np.clip((pts[:, 1] - y_top) / (yn - y_top), 0, 1.1) ** 0.8
        return pose.surface(pts[:, 0]) + prot * f * (1 - 0.6 * np.clip(np.abs(pts[:, 0]) / nw, 0, 1))

    ops.append(Op(C["nose"], [P(nose, nose_z(nose))]))
    bridge = np.stack([np.zeros(4), np.linspace(ey, yn - 0.04, 4)], 1)
    lm[27:31] = P(bridge, nose_z(bridge))
    base = np.stack([np.array([-0.65, -0.35, 0, 0.35, 0.65]) * nw, yn + np.array([0, 0.03, 0.05, 0.03, 0])], 1)
    lm[31:36] = P(base, nose_z(base))
    nostrils = [P(ellipse_pts(sd * nw * 0.45, yn + 0.015, 0.05, 0.022, 0, 12), prot * 0.6 + pose.depth)
                for sd in (-1, 1)]
    side = float(rng.choice([-1, 1]))
    nside = np.array([[side * bw * 1.05, y_top + 0.1], [side * bw * 1.15, yn - 0.2], [side * nw * 0.9, yn - 0.05]])
    nose_side = P(nside, nose_z(nside))

    # ---- eyeglasses (lens + frame region, CelebAMask-HQ style: eyes/brows are painted over it)
    lenses = []
    if has_glasses:
        gw, gh = ew * _u(rng, 1.4, 1.8), _u(rng, 0.16, 0.26)
        gy = ey + _u(rng, -0.02, 0.05)
        rect_p = _u(rng, 2.0, 5.0)   # superellipse exponent: 2 round … 5 rectangular
        th = max(1, int(round(pose.px(_u(rng, 0.02, 0.05)))))
        tt = np.linspace(0, 2 * np.pi, 32, endpoint=False)
        c_, s_ = np.cos(tt), np.sin(tt)
        unit = np.stack([np.sign(c_) * np.abs(c_) ** (2 / rect_p), np.sign(s_) * np.abs(s_) ** (2 / rect_p)], 1)
        glass = []
        for sd in (-1, 1):
            pts = unit * [gw, gh] + [sd * ex, gy]
            lz = pose.surface(np.array([sd * ex]))[0] + 0.12
            lp = P(pts, lz)
            lenses.append(lp)
            glass.append(Op(C["eye_g"], [lp], tag="glasses"))
            glass.append(Op(C["eye_g"], [lp], thickness=th, closed=True, tag="glasses_frame"))
            temple = np.array([[sd * (ex + gw), gy - gh * 0.3], [sd * 1.0, ey + 0.05]])
            glass.append(Op(C["eye_g"], [P(temple, np.array([lz, -0.05]))], thickness=th, tag="glasses_frame"))
        brg = np.array([[-(ex - gw), gy - gh * 0.2], [0, gy - gh * 0.35], [ex - gw, gy - gh * 0.2]])
        glass.append(Op(C["eye_g"], [P(brg, pose.depth + 0.25)], thickness=th, tag="glasses_frame"))
        ops.extend(glass)

    # ---- eyes
    u = np.linspace(-1, 1, 15)
    eyes = []
    for sd, cls, sl in ((-1, C["r_eye"], slice(36, 42)), (1, C["l_eye"], slice(42, 48))):
        cxe = sd * ex
        tilt_y = -tilt * (sd * u)          # outer corner (|x| larger) higher when tilt > 0
        skew = _u(rng, -0.25, 0.25)
        upper = np.stack([cxe + ew * u, ey + tilt_y - eh * (1 - u ** 2) ** 0.8 * (1 + skew * u)], 1)
        lower = np.stack([cxe + ew * u, ey + tilt_y + eh_low * (1 - u ** 2) ** 1.0], 1)
        poly = np.concatenate([upper, lower[-2:0:-1]])
        z = pose.surface(poly[:, 0]) - 0.05
        ops.append(Op(cls, [P(poly, z)]))
        pick_u = np.array([-1, -1 / 3, 1 / 3, 1, 1 / 3, -1 / 3])
        up_y = ey - tilt * (sd * pick_u) - eh * (1 - pick_u ** 2) ** 0.8 * (1 + skew * pick_u)
        lo_y = ey - tilt * (sd * pick_u) + eh_low * (1 - pick_u ** 2)
        ys = np.where(np.arange(6) < 4, up_y, lo_y)
        ys[[0, 3]] = ey - tilt * (sd * pick_u[[0, 3]])
        pts = np.stack([cxe + ew * pick_u, ys], 1)
        lm[sl] = P(pts, pose.surface(pts[:, 0]) - 0.05)
        gaze = _u(rng, -0.35, 0.35) * ew
        centre = P(np.array([[cxe + gaze, ey - eh * 0.15]]), pose.surface(np.array([cxe])) - 0.05)[0]
        eyes.append({"cls": cls, "centre": centre, "iris_r": pose.px(ew * _u(rng, 0.38, 0.5)) * (0.75 + 0.25 * np.cos(pose.yaw)),
                     "lash": P(upper, pose.surface(upper[:, 0]) - 0.05)})

    # ---- brows
    tp = _u(rng, 0.55, 0.75)
    arch, slope = _u(rng, 0.03, 0.12), _u(rng, -0.04, 0.05)
    th_in, th_out = _u(rng, 0.05, 0.1), _u(rng, 0.02, 0.045)
    gap = _u(rng, 0.1, 0.2)
    x_in, x_out = ex - ew * _u(rng, 0.9, 1.2), ex + ew * _u(rng, 1.1, 1.5)
    yb = ey - eh - gap - th_in / 2
    tb = np.linspace(0, 1, 13)
    bump = np.sin(np.pi * tb ** (np.log(0.5) / np.log(tp)))
    for sd, cls, sl in ((-1, C["r_brow"], slice(17, 22)), (1, C["l_brow"], slice(22, 27))):
        jit = _u(rng, -0.015, 0.015)
        xb = sd * (x_in + tb * (x_out - x_in))
        yc = yb + jit - arch * bump + slope * tb
        th = th_in + (th_out - th_in) * tb
        poly = np.concatenate([np.stack([xb, yc - th / 2], 1), np.stack([xb, yc + th / 2], 1)[::-1]])
        ops.append(Op(cls, [P(poly, pose.surface(poly[:, 0]) + 0.02)]))
        k = np.array([12, 9, 6, 3, 0]) if sd < 0 else np.array([0, 3, 6, 9, 12])   # iBUG: image-left → right
        pts = np.stack([xb[k], yc[k] - th[k] * 0.3], 1)
        lm[sl] = P(pts, pose.surface(pts[:, 0]) + 0.02)

    # ---- mouth: inner mouth, upper lip, lower lip
    def corner(uu):
        return -smile * uu ** 2

    def open_prof(uu):
        return np.clip(1 - (uu / ki) ** 2, 0, None) ** 0.7

    um = np.linspace(-1, 1, 25)
    ui = np.linspace(-1, 1, 17)
    f_up = (1 - um ** 2) ** 0.6 * (1 - bow * np.exp(-(um / 0.15) ** 2))
    up_outer = np.stack([mw * um, ym + corner(um) - opening / 2 * open_prof(um) - ut * f_up], 1)
    lo_outer = np.stack([mw * um, ym + corner(um) + opening / 2 * open_prof(um) + lt * (1 - um ** 2) ** 0.5], 1)
    xi = ki * mw * ui
    in_up = np.stack([xi, ym + corner(xi / mw) - opening / 2 * (1 - ui ** 2) ** 0.7], 1)
    in_lo = np.stack([xi, ym + corner(xi / mw) + opening / 2 * (1 - ui ** 2) ** 0.7], 1)

    def mz(pts):
        return pose.surface(pts[:, 0]) + 0.12

    u_lip = np.concatenate([up_outer, in_up[::-1]])
    l_lip = np.concatenate([in_lo, lo_outer[::-1]])
    if opening > 0:
        inner = np.concatenate([in_up, in_lo[::-1]])
        ops.append(Op(C["mouth"], [P(inner, mz(inner))]))
    ops.append(Op(C["u_lip"], [P(u_lip, mz(u_lip))]))
    ops.append(Op(C["l_lip"], [P(l_lip, mz(l_lip))]))

    uo = np.array([-0.62, -0.3, 0.0, 0.3, 0.62])
    f_o = (1 - uo ** 2) ** 0.6 * (1 - bow * np.exp(-(uo / 0.15) ** 2))
    mpts = np.zeros((20, 2))
    mpts[0] = [-mw, ym + corner(1.0)]
    mpts[1:6] = np.stack([mw * uo, ym + corner(uo) - opening / 2 * open_prof(uo) - ut * f_o], 1)
    mpts[6] = [mw, ym + corner(1.0)]
    ul = uo[::-1]
    mpts[7:12] = np.stack([mw * ul, ym + corner(ul) + opening / 2 * open_prof(ul) + lt * (1 - ul ** 2) ** 0.5], 1)
    mpts[12] = [-ki * mw, ym + corner(ki)]
    vi = np.array([-0.45, 0.0, 0.45])
    mpts[13:16] = np.stack([ki * mw * vi, ym + corner(ki * vi) - opening / 2 * (1 - vi ** 2) ** 0.7], 1)
    mpts[16] = [ki * mw, ym + corner(ki)]
    vl = vi[::-1]
    mpts[17:20] = np.stack([ki * mw * vl, ym + corner(ki * vl) + opening / 2 * (1 - vl ** 2) ** 0.7], 1)
    lm[48:68] = P(mpts, mz(mpts))
    teeth = None
    if opening > 0.06 and rng.random() < 0.7:
        depth_t = opening * _u(rng, 0.3, 0.6)
        tpoly = np.concatenate([in_up, (in_up + [0, depth_t])[::-1]])
        teeth = P(tpoly, mz(tpoly))

    # ---- hair in front: the cap down to the hairline (+ bangs, + side curtains for long hair)
    hairline = -0.9                    # under a hat when bald (no draw: unoccluded faces keep their rng stream)
    if hair_style != "none":
        h0 = _u(rng, -0.95, -0.6)
        if hair_style in ("buzz", "bun"):
            h0 = _u(rng, -1.05, -0.85)
        bangs = hair_style in ("short", "bob", "long") and rng.random() < 0.25
        if bangs:
            h0 = _u(rng, -0.55, -0.38)
        hairline = h0
        kexp = _u(rng, 3.5, 6.0)
        tc = np.arcsin(np.clip((y_side - cyh) / Hy, -1, 1))
        top = cranium(np.pi - tc, 2 * np.pi + tc, 40)
        xl = np.linspace(top[-1, 0], top[0, 0], 41)
        yl = h0 + (y_side - h0) * np.clip(np.abs(xl) / Hx, 0, 1) ** kexp
        if bangs:
            yl = yl + _u(rng, 0.03, 0.08) * np.abs(np.sin(np.linspace(0, np.pi * _u(rng, 4, 9), 41)))
        line = np.stack([xl, yl], 1)
        front = [np.concatenate([P(top, 0.0), P(line)])]
        if hair_style in ("long", "bob") and rng.random() < 0.4:
            for sd in (-1, 1):
                xin = _u(rng, 0.85, 0.95)
                yb_ = _u(rng, 0.4, 1.0)
                cur = np.array([[sd * Hx, y_side], [sd * xin, y_side + 0.05], [sd * (xin + 0.03), yb_],
                                [sd * Hx * 1.02, yb_ + 0.3]])
                front.append(P(cur))
        ops.append(Op(C["hair"], front))

    # ---- hat
    hat_bottom = None
    if has_hat:
        y_hb = cyh - Hy * _u(rng, 0.1, 0.45) if hair_style != "none" else _u(rng, -1.05, -0.8)
        y_hb = min(y_hb, ey - eh - gap - 0.35)
        crown = ellipse_pts(0, y_hb, Hx * _u(rng, 1.0, 1.1), _u(rng, 0.8, 1.3), 0, 30, np.pi, 2 * np.pi)
        hat = [P(crown, 0.0)]
        hat_bottom = y_hb
        if rng.random() < 0.6:
            brim_a = Hx * _u(rng, 1.3, 1.8)
            brim_b = _u(rng, 0.08, 0.22)
            hat.append(P(ellipse_pts(0, y_hb, brim_a, brim_b, 0, 30), 0.05))
            hat_bottom = y_hb + brim_b
        ops.append(Op(C["hat"], hat))

    # what occluders fit to (they are added by sample_geometry, into a separate mask)
    frame = FaceFrame(ex=ex, ey=ey, ew=ew, yn=yn, nw=nw, prot=prot, ym=ym, cy=cy, b_up=b_up, b_low=b_low,
                      p_low=p_low, p_up=p_up, hairline=hairline, hat_bottom=hat_bottom,
                      ears=[(ecx, ecy, eb) for _, _, ecx, ecy, _, eb, _ in ear_info])
    return FaceGeometry(size=size, pose=pose, ops=ops, landmarks=lm.astype(np.float32), occluders=[],
                        eyes=eyes, nostrils=nostrils, nose_side=nose_side, teeth=teeth, lenses=lenses,
                        hair_style=hair_style, hat=has_hat, glasses=has_glasses, frame=frame)


@dataclass
class FaceFrame:
    """The face-frame parameters the face-attached occluders fit to (units of the face half-width)."""
    ex: float          # eye centre |x|
    ey: float          # eye line
    ew: float          # eye half-width
    yn: float          # nose base
    nw: float          # nose half-width
    prot: float        # nose protrusion (depth)
    ym: float          # mouth line
    cy: float          # face-oval centre
    b_up: float
    b_low: float       # jaw half-height
    p_low: float
    p_up: float
    hairline: float    # y of the hairline at x = 0
    hat_bottom: float | None   # y of the hat's lower edge at x = 0 (None: no hat)
    ears: list[tuple[float, float, float]]   # (cx, cy, half-height), image-left ear first


def _random_kind(rng: np.random.Generator, taken: list[str]) -> str:
    """A random kind, not one already on this face (a second mask or pair of sunglasses would be absurd)."""
    p = np.where(np.isin(OCCLUDER_KINDS, taken), 0.0, _KIND_P)
    return str(rng.choice(OCCLUDER_KINDS, p=p / p.sum()))


def _occluder(rng: np.random.Generator, kind: str, f: FaceFrame, pose: Pose) -> Occluder:
    """One occluder of ``kind`` (OCCLUDER_KINDS), in pixels."""
    if kind == "hair":
        return _hair_lock(rng, f, pose)
    if kind == "mask":
        return _face_mask(rng, f, pose)
    if kind == "sunglasses":
        return _sunglasses(rng, f, pose)
    if kind not in OCCLUDER_VISIBLE:
        raise ValueError(f"unknown occluder kind {kind!r}; known: {list(OCCLUDER_KINDS)}")
    anchors = np.array([[0, f.ym], [0, f.yn - 0.1], [-f.ex, f.ey], [f.ex, f.ey], [0, f.cy + f.b_low * 0.9],
                        [-0.6, 0.45], [0.6, 0.45], [0, -0.6]])
    a = anchors[rng.integers(len(anchors))] + rng.normal(0, 0.15, 2)
    z = pose.depth + 0.6                                   # held in front of the face, flat
    return Occluder(kind, [pose.project(q, np.full(len(q), z)) for q in _held(rng, kind, a)])


def _held(rng: np.random.Generator, kind: str, a: np.ndarray) -> list[np.ndarray]:
    """Face-frame polygons of a hand / bar / object centred near face point ``a``."""
    ang = _u(rng, 0, 2 * np.pi)
    d = np.array([np.cos(ang), np.sin(ang)])          # direction of the fingers / object axis
    nrm = np.array([-d[1], d[0]])
    polys = []
    if kind == "hand":
        pa, pb = _u(rng, 0.28, 0.4), _u(rng, 0.35, 0.5)
        polys.append(ellipse_pts(a[0], a[1], pb, pa, ang, 24))
        # wrist / forearm leaving the palm away from the fingers
        wrist_w = pa * 0.8
        fore = np.array([a - nrm * wrist_w, a + nrm * wrist_w, a + nrm * wrist_w * 1.2 - d * 4.0,
                         a - nrm * wrist_w * 1.2 - d * 4.0])
        polys.append(fore)
        n_f = 4
        spread = _u(rng, 0.0, 0.25)
        for k in range(n_f):
            off = (k - (n_f - 1) / 2) / ((n_f - 1) / 2)               # -1 … 1 across the palm
            fang = ang + off * spread
            fd = np.array([np.cos(fang), np.sin(fang)])
            length = _u(rng, 0.32, 0.48) * (1 - 0.25 * abs(off))
            base = a + d * pb * 0.7 + nrm * off * pa * 0.75
            polys.append(ellipse_pts(*(base + fd * length * 0.55), length * 0.62, _u(rng, 0.055, 0.08), fang, 14))
        sd = rng.choice([-1, 1])
        tang = ang + sd * _u(rng, 0.6, 1.1)
        td = np.array([np.cos(tang), np.sin(tang)])
        tb = a + nrm * sd * pa * 0.7
        polys.append(ellipse_pts(*(tb + td * 0.22), 0.26, 0.08, tang, 14))
    elif kind == "bar":
        ln, w = _u(rng, 1.5, 4.0), _u(rng, 0.08, 0.3)
        polys.append(np.array([a - d * ln / 2 - nrm * w / 2, a + d * ln / 2 - nrm * w / 2,
                               a + d * ln / 2 + nrm * w / 2, a - d * ln / 2 + nrm * w / 2]))
        if rng.random() < 0.4:    # a microphone head / lollipop at one end
            r = _u(rng, 0.15, 0.3)
            polys.append(ellipse_pts(*(a + d * ln / 2), r, r, 0, 16))
    else:
        r = _u(rng, 0.25, 0.8)
        if rng.random() < 0.5:
            nv = int(rng.integers(5, 10))
            t = np.sort(rng.uniform(0, 2 * np.pi, nv))
            rr = r * rng.uniform(0.6, 1.2, nv)
            polys.append(np.stack([a[0] + rr * np.cos(t), a[1] + rr * np.sin(t)], 1))
        else:
            polys.append(ellipse_pts(a[0], a[1], r, r * _u(rng, 0.4, 1.0), ang, 24))
    return polys


def _normals(line: np.ndarray) -> np.ndarray:
    d = np.gradient(line, axis=0)
    return np.stack([-d[:, 1], d[:, 0]], 1) / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)


def _band(centre: np.ndarray, half: np.ndarray | float) -> np.ndarray:
    """Polygon of a band of half-width ``half`` (scalar or per point) around a polyline (face frame)."""
    off = _normals(centre) * np.reshape(half, (-1, 1))
    return np.concatenate([centre + off, (centre - off)[::-1]])


def _bezier(p0, p1, p2, n: int) -> np.ndarray:
    t = np.linspace(0, 1, n)[:, None]
    return (1 - t) ** 2 * np.asarray(p0) + 2 * t * (1 - t) * np.asarray(p1) + t ** 2 * np.asarray(p2)


def _on_face(pose: Pose, pts: np.ndarray, lift: float) -> np.ndarray:
    return pose.project(pts, pose.surface(pts[:, 0]) + lift)


def _hair_lock(rng: np.random.Generator, f: FaceFrame, pose: Pose) -> Occluder:
    """A curved lock tapering from the hairline down across one eye or cheek (+ sometimes a thinner one)."""
    sd = float(rng.choice([-1.0, 1.0]))
    root = np.array([sd * _u(rng, 0.0, 0.45), f.hairline - _u(rng, 0.15, 0.35)])    # inside the hair
    if f.hat_bottom is not None:       # hair cannot fall over a hat: start the lock under its edge
        root[1] = max(root[1], f.hat_bottom + 0.02)
    tip = np.array([sd * _u(rng, 0.2, 0.85), _u(rng, f.ey + 0.15, f.ym + 0.1)])
    bend = np.array([sd * _u(rng, -0.4, 0.4), _u(rng, -0.15, 0.1)])
    w0 = _u(rng, 0.09, 0.18)
    centres = [_bezier(root, (root + tip) / 2 + bend, tip, 24)]
    widths = [w0]
    if rng.random() < 0.5:     # a thinner strand splitting off towards the tip
        t2 = tip + [sd * _u(rng, 0.05, 0.3), _u(rng, -0.25, 0.05)]
        centres.append(_bezier(root + [0, 0.1], (root + t2) / 2 + bend * 1.2, t2, 24))
        widths.append(w0 * _u(rng, 0.35, 0.6))
    polys, lines = [], []
    t = np.linspace(0, 1, 24)
    for c, w in zip(centres, widths):
        half = w * (1 - 0.8 * t ** 1.5)
        polys.append(_on_face(pose, _band(c, half), 0.1))
        nrm = _normals(c)
        n_str = int(np.clip(2 * w * pose.s / 0.8, 4, 30))
        for o in rng.uniform(-0.95, 0.95, n_str):     # strands run along the lock, converging at its tip
            k0, k1 = int(rng.integers(0, 6)), int(rng.integers(17, 24))
            lines.append(_on_face(pose, (c + nrm * (half * o)[:, None])[k0:k1], 0.1))
    return Occluder("hair", polys, lines=lines)


def _face_mask(rng: np.random.Generator, f: FaceFrame, pose: Pose) -> Occluder:
    """A face mask from over the nose tip down past the chin, following the jaw, with ear loops."""
    pleated = rng.random() < 0.6                            # medical (3 pleats) vs cloth
    y_c = f.yn - _u(rng, 0.1, 0.3)                          # top edge over the nose
    y_s = f.yn + _u(rng, -0.1, 0.05)                        # top edge at the cheeks
    widen, drop = _u(rng, 1.0, 1.06), _u(rng, 0.04, 0.14)
    s0 = np.arcsin(np.clip((y_s - f.cy) / f.b_low, 0.0, 0.99) ** (f.p_low / 2))
    t = np.linspace(s0, np.pi - s0, 33)                     # jaw from the right cheek, under the chin, to the left
    jaw = _face_outline(t, f.cy, f.b_up, f.b_low, f.p_low, f.p_up) * [widen, 1] + np.stack(
        [np.zeros_like(t), drop * np.sin(t) ** 2], 1)
    xw = jaw[0, 0]
    xs = np.linspace(-xw, xw, 25)
    kt = _u(rng, 0.7, 1.3)

    def top(x):
        return y_c + (y_s - y_c) * np.abs(x / xw) ** kt

    outline = np.concatenate([np.stack([xs, top(xs)], 1), jaw[1:-1]])

    def z(pts):    # over the nose: the fabric stands off the face by the nose protrusion near the midline
        bump = np.clip(1 - np.abs(pts[:, 0]) / (2.5 * f.nw), 0, 1) * np.clip(1.3 - (pts[:, 1] - f.yn), 0.3, 1)
        return pose.surface(pts[:, 0]) + 0.06 + f.prot * bump

    polys = [pose.project(outline, z(outline))]
    accent, lines = [], []
    hw = max(0.02, 0.6 / pose.s)
    for sd, (ecx, ecy, eb) in zip((-1, 1), f.ears):
        for y0, ye in ((y_s + 0.04, ecy - eb * 0.5), (f.ym + 0.15, ecy + eb * 0.55)):
            x0 = sd * np.interp(y0, jaw[:17, 1], jaw[:17, 0]) * 0.97
            loop = _bezier([x0, y0], [sd * 1.02, (y0 + ye) / 2], [ecx * 0.98, ye], 8)
            zl = np.linspace(pose.surface(np.array([x0]))[0] + 0.06, -0.1, 8)
            accent.append(pose.project(_band(loop, hw), np.concatenate([zl, zl[::-1]])))
    polys += accent
    if pleated:
        xb = np.linspace(-xw * 0.97, xw * 0.97, 21)
        bottom = np.interp(xb, jaw[::-1, 0], jaw[::-1, 1])
        for q in (0.3, 0.5, 0.7):
            pl = np.stack([xb, top(xb) + (bottom - top(xb)) * q * _u(rng, 0.9, 1.1)], 1)
            lines.append(pose.project(pl, z(pl)))
    return Occluder("mask", polys, accent=accent, lines=lines)


def _sunglasses(rng: np.random.Generator, f: FaceFrame, pose: Pose) -> Occluder:
    """Two opaque lenses over the eyes (and the lower brows), a bridge and the temples towards the ears."""
    gap = _u(rng, 0.06, 0.11)                               # half the bridge gap between the lenses
    gw = max(_u(rng, 0.3, 0.42), (f.ex + f.ew + 0.06 - gap) / 2)
    cx = gw + gap                                           # lens centre; the eye (ex ± ew) lies inside
    gh, gy = _u(rng, 0.22, 0.32), f.ey + _u(rng, -0.05, 0.02)
    rect_p, sag = _u(rng, 2.2, 5.0), _u(rng, 0.0, 0.35)     # round … rectangular; aviator-like lower bulge
    tt = np.linspace(0, 2 * np.pi, 36, endpoint=False)
    c_, s_ = np.cos(tt), np.sin(tt)
    unit = np.stack([np.sign(c_) * np.abs(c_) ** (2 / rect_p), np.sign(s_) * np.abs(s_) ** (2 / rect_p)], 1)
    unit[:, 1] *= np.where(unit[:, 1] > 0, 1 + sag, 1)
    hw = max(_u(rng, 0.02, 0.04), 0.6 / pose.s)
    lenses, frame, rims = [], [], []
    for sd in (-1, 1):
        pts = unit * [gw, gh] + [sd * cx, gy]
        lz = pose.surface(np.array([sd * cx]))[0] + 0.15
        lenses.append(pose.project(pts, lz))
        rims.append(pose.project(np.concatenate([pts, pts[:1]]), lz))
        temple = np.array([[sd * (cx + gw * 0.97), gy - gh * 0.4], [sd * 1.0, f.ey + 0.05]])
        temple = np.stack([np.linspace(*temple[:, 0], 6), np.linspace(*temple[:, 1], 6)], 1)
        zt = np.linspace(lz, -0.05, 6)
        frame.append(pose.project(_band(temple, hw), np.concatenate([zt, zt[::-1]])))
    xi = cx - gw * 0.9
    brg = np.stack([np.linspace(-xi, xi, 7), gy - gh * 0.4 - 0.04 * (1 - np.linspace(-1, 1, 7) ** 2)], 1)
    frame.append(pose.project(_band(brg, hw), pose.depth + 0.25))
    return Occluder("sunglasses", lenses + frame, accent=frame, lines=rims)
