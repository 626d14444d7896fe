"""Synthetic faces with known geometry, for the 3D reconstruction stage (``recon3d``): the face model itself
(faceparse.face3d) rendered under random identity, expression, albedo, SH lighting and pose over the
synthetic backgrounds, with and without the synthetic occluders (the painter of faceparse.data.synth_face /
synth_render: hands, bars, objects, hair locks, face masks, sunglasses).

Sample ``i`` of seed ``S`` depends on ``(S, i)`` only (``numpy.random.default_rng([S, i])``); its first draw
decides whether it is occluded, as in faceparse.data.synth, so ``synth.occlusion_plan`` applies (the test
split can be all occluded, its faces cycling through the occluder kinds).

Draws: identity α ~ N(0, 0.8²) (ICT samples N(0, 1); 0.8 keeps away from caricatures); expression: one to
three blendshapes at U(0, 0.7); albedo: a skin tone of synth_render's table on the constant eigenvector,
smooth blotches N(0, (0.02 / √k)²) on the others; light: ambient ± 15 %, a directional band-1 term of
strength U(0.1, 0.35) from a random frontal-hemisphere direction, band 2 N(0, 0.04²), a slight colour cast;
pose: pitch U(±0.25), yaw U(±0.6), roll N(0, 0.12²) clipped to ±0.3 rad, log scale U(±0.12), t U(±0.07).
The face is rendered at twice the size and area-downsampled (anti-aliased edges), composited over a
background, occluders painted on top, then the camera: blur, pixel noise, JPEG — the same draws for the
occluded and the clean image.

Layout (the canonical one, docs/CONTRACTS.md, plus): ``images/`` the input (occluded or not), ``clean/``
every face without occluders, ``labels/`` the visible face-part map the renderer knows (CelebAMask-HQ ids;
occluder pixels take the class an annotator would give them, as in synth), ``complete/`` the part map
without occluders, ``occlusion/`` the occluder mask (+ ``kinds.json``), ``landmarks/`` the 68 landmark
vertices projected (continuous pixel coordinates, pixel i spans [i, i + 1)), ``coeffs/`` the true
coefficient vector (float32, the layout ``dataset.json`` records), ``manifest.parquet``, ``dataset.json``.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from ..defaults import fill_defaults
from ..face3d.model import N_ALBEDO, SKIN, FaceModel, asset_sha256
from ..face3d.render import F0, Renderer
from ..hashing import sha256_file
from ..labels import CELEBAMASK_HQ, CELEBAMASK_HQ as T
from ..stages.recon3d.params import Recon3dData
from ..staging import staging_dir
from .manifest import class_pixels, read_info, read_manifest, write_info, write_manifest
from .synth import (
    _VISIBLE_LUT,
    OCCLUDER_KINDS,
    _check_target,
    _progress,
    assign_splits,
    occlusion_plan,
    replace_dir,
    sample_id,
)
from .synth_face import FaceFrame, Pose, _fx, _occluder
from .synth_render import (
    HAIR_COLOURS,
    HAIR_P,
    SKIN_P,
    SKIN_TONES,
    _background,
    _camera,
    _jpeg,
    _noise_bank,
    _occluder_look,
    _pick,
)

SUPERSAMPLE = 2


@dataclass
class Sample3D:
    image: np.ndarray          # uint8 (S, S, 3): the input (occluded when ``occluders``)
    clean: np.ndarray          # uint8 (S, S, 3): the same face without occluders
    label: np.ndarray          # uint8 (S, S): visible face-part map
    complete: np.ndarray       # uint8 (S, S): face-part map without occluders
    occlusion: np.ndarray      # bool (S, S)
    landmarks: np.ndarray      # float32 (68, 2) continuous pixel coordinates
    coeffs: np.ndarray         # float32 (K,): the true coefficient vector
    occluders: list[str] = field(default_factory=list)


def sample_coeffs(rng: np.random.Generator, face) -> np.ndarray:
    """A random coefficient vector in the face model's layout (``FaceModel.sizes``)."""
    sz = face.sizes
    alpha = rng.normal(0.0, 0.8, sz["id"])
    beta = np.zeros(sz["exp"])
    k = rng.choice(sz["exp"], size=int(rng.integers(1, 4)), replace=False)
    beta[k] = rng.uniform(0.0, 0.7, len(k))
    alb = np.zeros((face.n_albedo, 3))
    alb[0] = _pick(rng, SKIN_TONES, SKIN_P, jitter=0.03) - SKIN        # eigenvector 0 is constant
    alb[1:] = rng.normal(0.0, 1.0, (face.n_albedo - 1, 3)) * (0.02 / np.sqrt(np.arange(1, face.n_albedo)))[:, None]
    sh = np.zeros((9, 3))
    sh[0] = rng.uniform(-0.15, 0.15) + rng.normal(0, 0.03, 3)
    d = rng.normal(0, 1, 3)
    d[2] = abs(d[2]) + 0.5                                             # from the camera's side
    sh[[3, 1, 2]] = (d / np.linalg.norm(d) * rng.uniform(0.1, 0.35))[:, None]   # band 1 holds (y, z, x)
    sh[4:] = rng.normal(0, 0.04, (5, 1))
    pose = [rng.uniform(-0.25, 0.25), rng.uniform(-0.6, 0.6), float(np.clip(rng.normal(0, 0.12), -0.3, 0.3)),
            rng.uniform(-0.12, 0.12), rng.uniform(-0.07, 0.07), rng.uniform(-0.07, 0.07)]
    return np.concatenate([alpha, beta, alb.ravel(), sh.ravel(), pose]).astype(np.float32)


def occluder_frame(lm: np.ndarray, lm3: np.ndarray, pose6: np.ndarray, size: int) -> tuple[FaceFrame, Pose]:
    """The 2D painter's face frame and pose for a rendered face: origin between the eyes, x in half jaw
    widths (y down), from the 3D landmarks ``lm3`` (cm) and their projections ``lm`` (pixels)."""
    eyes = lm3[36:48].mean(0)
    w = (lm3[16, 0] - lm3[0, 0]) / 2

    def fy(i):
        return float(-(lm3[i, 1] - eyes[1]) / w)

    frame = FaceFrame(ex=float((lm3[42:48, 0].mean() - lm3[36:42, 0].mean()) / (2 * w)), ey=0.0,
                      ew=float((lm3[39, 0] - lm3[36, 0]) / (2 * w)), yn=fy(33), nw=float((lm3[35, 0] - lm3[31, 0]) / (2 * w)),
                      prot=0.3, ym=(fy(62) + fy(66)) / 2, cy=fy(8) - 1.35, b_up=1.25, b_low=1.35, p_low=2.5, p_up=2.2,
                      hairline=-1.0, hat_bottom=None, ears=[(-1.0, 0.15, 0.33), (1.0, 0.15, 0.33)])
    f = F0 * float(np.exp(pose6[3])) * size / 2
    centre = lm[36:48].mean(0)
    pose = Pose(tx=float(centre[0]), ty=float(centre[1]), s=float(w * f), roll=-float(pose6[2]), yaw=float(pose6[1]),
                pitch=float(pose6[0]), depth=0.5)
    return frame, pose


@torch.no_grad()
def render_face(renderer, y: np.ndarray, size: int):
    """(face RGB float (S, S, 3) in [0, 1], coverage (S, S) float, part map (S, S) uint8, landmarks (68, 2)
    pixels, 3D landmarks (68, 3) cm): rendered at SUPERSAMPLE × ``size`` and area-downsampled."""
    big = size * SUPERSAMPLE
    out = renderer(torch.from_numpy(y)[None], big)
    img = out.image[0].permute(1, 2, 0).clamp(0, 1).numpy()
    cov = out.mask[0, 0].numpy()
    parts = renderer.parts(out)[0].numpy().astype(np.uint8)
    small = (size, size)
    rgb = cv2.resize(img, small, interpolation=cv2.INTER_AREA)
    cov_s = cv2.resize(cov, small, interpolation=cv2.INTER_AREA)
    rgb = rgb / np.maximum(cov_s, 1e-6)[..., None] * (cov_s > 0)[..., None]     # un-premultiply the edges
    parts_s = cv2.resize(parts, small, interpolation=cv2.INTER_NEAREST)
    lm = out.landmarks[0].numpy() / SUPERSAMPLE
    _fill_holes(rgb, cov_s, parts_s, lm)
    lm3 = out.vertices[0, renderer.face.landmarks].numpy()
    return rgb.astype(np.float32), cov_s.astype(np.float32), parts_s, lm.astype(np.float32), lm3


def _fill_holes(rgb: np.ndarray, cov: np.ndarray, parts: np.ndarray, lm: np.ndarray) -> None:
    """The mesh has holes at the eyes and the mouth: paint them (in place) inside the landmark polygons, as
    eyes / an inner mouth (dark, uniform), so the background does not show through the face."""
    for idx, colour, cls in ((range(36, 42), (0.22, 0.17, 0.15), "r_eye"), (range(42, 48), (0.22, 0.17, 0.15), "l_eye"),
                             (range(60, 68), (0.3, 0.1, 0.1), "mouth")):
        hole = np.zeros(cov.shape, np.uint8)
        cv2.fillPoly(hole, [_fx(lm[list(idx)] - 0.5)], 1, cv2.LINE_8, 4)
        sel = (hole > 0) & (cov < 0.99)
        rgb[sel] = rgb[sel] * cov[sel, None] + np.asarray(colour, np.float32) * (1 - cov[sel, None])
        cov[sel] = 1.0
        parts[sel & (parts == 0)] = T.index(cls)


def generate_sample3d(renderer, seed: int, index: int, size: int = 128, occlusion_prob: float = 0.3,
                      kind: str | None = None) -> Sample3D:
    """Sample ``index`` of seed ``seed`` (a pure function of its arguments and the face model)."""
    rng = np.random.default_rng([int(seed), int(index)])
    occluded = bool(rng.random() < occlusion_prob) or kind is not None
    y = sample_coeffs(rng, renderer.face)
    face, cov, parts, lm, lm3 = render_face(renderer, y, size)
    skin, hair = _pick(rng, SKIN_TONES, SKIN_P), _pick(rng, HAIR_COLOURS, HAIR_P)
    bg = _background(rng, size, hair, skin)
    scene = face * cov[..., None] + bg * (1 - cov[..., None])
    occ_ids = np.zeros((size, size), np.uint8)
    kinds: list[str] = []
    painted = scene.copy()
    if occluded:
        frame, pose = occluder_frame(lm, lm3, y[-6:], size)
        for j in range(1 if rng.random() < 0.8 else 2):
            k = kind if j == 0 and kind is not None else str(rng.choice([c for c in OCCLUDER_KINDS if c not in kinds]))
            occ = _occluder(rng, k, frame, pose)
            kinds.append(occ.kind)
            cv2.fillPoly(occ_ids, [_fx(p) for p in occ.polys], len(kinds), cv2.LINE_8, 4)
            sel = occ_ids == len(kinds)
            if sel.any():
                col, lum = _occluder_look(rng, occ, sel, skin, hair, pose.s)
                painted[sel] = (col * lum).T
    images = _shoot(rng, [painted, scene], size)
    occlusion = occ_ids > 0
    kind_ids = np.array([0] + [1 + OCCLUDER_KINDS.index(k) for k in kinds], np.uint8)
    label = np.where(occlusion, _VISIBLE_LUT[kind_ids[occ_ids]], parts).astype(np.uint8)
    return Sample3D(images[0], images[1], label, parts, occlusion, lm, y, kinds)


def _shoot(rng: np.random.Generator, scenes: list[np.ndarray], size: int) -> list[np.ndarray]:
    """The camera (faceparse.data.synth_render): one set of draws applied to every scene."""
    blur = float(rng.uniform(0.2, 0.8)) * size / 256
    oy, ox = (int(v) for v in rng.integers(0, size, 2))
    bank = _noise_bank(size)
    noise = cv2.merge([bank[c, oy:oy + size, ox:ox + size] for c in range(3)])
    sigma = float(rng.uniform(0.004, 0.02))
    quality = int(rng.integers(60, 96))
    return [_jpeg(_camera(np.ascontiguousarray(s, dtype=np.float32), blur, None, noise, sigma), quality) for s in scenes]


def write_dataset3d(out_dir, n: int, size: int = 128, seed: int = 0, occlusion_prob: float = 0.3,
                    test_occlusion_prob: float | None = 1.0, splits: dict[str, float] | None = None,
                    n_albedo: int | None = None, progress: bool = True) -> Path:
    """Write ``n`` samples to ``out_dir`` (built in a temporary directory beside it, then renamed into place;
    a previous dataset is replaced, any other non-empty directory refused)."""
    out_dir, n = Path(out_dir), int(n)
    if n < 1 or size < 32:
        raise ValueError(f"synth3d: n must be >= 1 and size >= 32, got n={n}, size={size}")
    splits = dict(splits) if splits is not None else {"train": 0.8, "val": 0.1, "test": 0.1}
    split_of = assign_splits(n, seed, splits)
    plan = occlusion_plan(n, seed, split_of, occlusion_prob, test_occlusion_prob)
    _check_target(out_dir)
    face = FaceModel(n_albedo=int(n_albedo or N_ALBEDO))
    renderer = Renderer(face, size)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = staging_dir(out_dir, ".tmp-")
    try:
        ids = [sample_id(seed, i) for i in range(n)]
        rows, kinds = _render_into(tmp, renderer, seed, size, ids, split_of, plan, progress, f"synth3d → {out_dir}")
        (tmp / "occlusion" / "kinds.json").write_text(json.dumps(kinds, indent=1) + "\n")
        write_manifest(tmp, rows)
        info = {"label_table": CELEBAMASK_HQ.name, "size": int(size), "source": "synth3d", "count": n, "seed": int(seed),
                "occlusion_prob": float(occlusion_prob), "splits": splits, "landmarks": "ibug68",
                "test_occlusion_prob": None if test_occlusion_prob is None else float(test_occlusion_prob),
                "generator": "faceparse.data.synth3d", "face_model": "ict-facekit", "face_model_sha256": asset_sha256(),
                "coeffs": face.sizes, "n_albedo": face.n_albedo, "f0": F0, "supersample": SUPERSAMPLE}
        (tmp / "dataset.json").write_text(json.dumps(info, indent=2) + "\n")
        _replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def synth3d_from_params(params: dict, out=None, n: int | None = None, size: int | None = None,
                        progress: bool = True) -> Path:
    """The 3D set as ``recon3d.data`` says (``params`` resolved for the recon3d stage: its ``data`` section),
    ``out`` / ``n`` / ``size`` overriding: `faceparse data synth3d`, the DVC stage and the kfp component."""
    d = fill_defaults(Recon3dData, params.get("data"))
    syn = dict(d.get("synth3d") or {})
    n = n if n is not None else syn.get("n")
    syn.pop("n", None)
    out = out or d.get("dir")
    if out is None or n is None:
        raise ValueError("give --out and --n (no recon3d.data.dir / recon3d.data.synth3d.n in params)")
    return write_dataset3d(out, n=int(n), size=int(size if size is not None else d["size"]),
                           progress=progress, **syn)


def _render_into(root: Path, renderer, seed: int, size: int, ids: list[str], split_of: list[str], plan: list,
                 progress: bool, desc: str) -> tuple[list[dict], dict[str, list[str]]]:
    """Render sample ``i`` of ``seed`` as ``ids[i]`` into ``root``'s canonical folders → (manifest rows,
    occluder kinds per id)."""
    for sub in ("images", "clean", "labels", "complete", "occlusion", "landmarks", "coeffs"):
        (root / sub).mkdir(exist_ok=True)
    rows, kinds = [], {}
    with _progress(progress, len(ids), desc) as bar:
        task = bar.add_task("render", total=len(ids)) if progress else None
        for i, sid in enumerate(ids):
            s = generate_sample3d(renderer, seed, i, size, plan[i][0], plan[i][1])
            kinds[sid] = s.occluders
            _write_sample(root, sid, s)
            rows.append({"id": sid, "split": split_of[i], "image": f"images/{sid}.jpg", "label": f"labels/{sid}.png",
                         "landmarks": f"landmarks/{sid}.npy", "width": size, "height": size, "label_width": size,
                         "label_height": size, "class_pixels": class_pixels(s.label, CELEBAMASK_HQ.num_classes),
                         "sha256": _sha(root / f"images/{sid}.jpg"), "source": "synth3d"})
            if task is not None:
                bar.advance(task)
    return rows, kinds


def add_renders3d(dataset_dir, n: int, seed: int = 0, occlusion_prob: float = 0.3, progress: bool = True) -> Path:
    """Add ``n`` rendered faces of the 3D model (ids ``synth3d_<seed>_<i>``) to the **training split** of a 2D
    synthetic dataset (``data.synth.renders3d``): real face geometry and shading for the parser's eyes, brows,
    nose and lips, which the 2D painter draws as flat shapes (measured on the four real fixture photos:
    README, issue #16). Rendered beside the dataset, then moved in; the manifest and dataset.json are
    rewritten last, so an interrupted run leaves the 2D dataset as it was (plus stray files)."""
    root, n = Path(dataset_dir), int(n)
    info = read_info(root)
    if info.get("label_table") != "celebamask-hq" or "renders3d" in info:
        raise ValueError(f"{root}: 3D renders join a CelebAMask-HQ-labelled synthetic dataset once "
                         f"(label_table {info.get('label_table')!r}, renders3d {info.get('renders3d')})")
    size = int(info["size"])
    tmp = staging_dir(root, ".renders3d-")
    try:
        ids = [f"synth3d_{int(seed)}_{i:06d}" for i in range(n)]
        rows, kinds = _render_into(tmp, Renderer(FaceModel(), size), int(seed), size, ids, ["train"] * n,
                                   [(float(occlusion_prob), None)] * n, progress, f"3D renders → {root}")
        for sub in [d for d in tmp.iterdir() if d.is_dir()]:
            (root / sub.name).mkdir(exist_ok=True)
            for f in sub.iterdir():
                os.replace(f, root / sub.name / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    kinds_file = root / "occlusion" / "kinds.json"
    all_kinds = json.loads(kinds_file.read_text()) if kinds_file.is_file() else {}
    kinds_file.write_text(json.dumps({**all_kinds, **kinds}, indent=1) + "\n")
    write_manifest(root, read_manifest(root).to_dict("records") + rows)
    write_info(root, {**info, "count": int(info.get("count", 0)) + n,
                      "renders3d": {"n": n, "seed": int(seed), "occlusion_prob": float(occlusion_prob), "split": "train",
                                    "generator": "faceparse.data.synth3d", "face_model_sha256": asset_sha256()}})
    return root


def _write_sample(root: Path, sid: str, s: Sample3D) -> None:
    Image.fromarray(s.image).save(root / f"images/{sid}.jpg", quality=95)
    Image.fromarray(s.clean).save(root / f"clean/{sid}.jpg", quality=95)
    Image.fromarray(s.label, "L").save(root / f"labels/{sid}.png")
    Image.fromarray(s.complete, "L").save(root / f"complete/{sid}.png")
    Image.fromarray(s.occlusion.astype(np.uint8) * 255, "L").save(root / f"occlusion/{sid}.png")
    np.save(root / f"landmarks/{sid}.npy", s.landmarks)
    np.save(root / f"coeffs/{sid}.npy", s.coeffs)


def _sha(path: Path) -> str:
    return sha256_file(path)


def _replace(tmp: Path, out_dir: Path) -> None:
    replace_dir(tmp, out_dir)
