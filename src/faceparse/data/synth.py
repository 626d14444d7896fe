"""The embedded synthetic face dataset: the default data of the whole pipeline.

Each sample draws a plausible face *label map* first (CelebAMask-HQ 19 classes: face oval, neck, cloth, hair
of several styles, ears, almond eyes, thin brows, nose, lips / inner mouth, and random eyeglasses, hat,
earrings, necklace) under a random identity, roll, yaw-like asymmetry, scale and translation
(:mod:`faceparse.data.synth_face`), then renders the RGB image from it (:mod:`faceparse.data.synth_render`):
per-identity colours, texture, shading, cluttered background, blur, noise, JPEG.

Occluders (one or two, in front of everything) come in the kinds ``OCCLUDER_KINDS``: ``hand``, ``bar``,
``object`` (held in front of a random face point), ``hair`` (a tapered lock from the hairline across an eye or
cheek, in the identity's hair colour), ``mask`` (a medical / cloth face mask from the nose tip past the chin,
following the jaw, with ear loops), ``sunglasses`` (opaque dark lenses over the eyes and lower brows, bridge,
temples). ``complete`` is the face without them; ``occlusion`` marks all their pixels; in the visible ``label``
their pixels take the class a CelebAMask-HQ annotator would give them (``OCCLUDER_VISIBLE``):

    hand, bar, object, mask → background (0)      hair → hair      sunglasses → eye_g

``write_dataset`` records each sample's kinds in ``occlusion/kinds.json``; its ``test`` split can be made
occlusion-rich (``test_occlusion_prob``), its occluded faces cycling through every kind in turn.

Clean images (de-occlusion targets): every occluded sample also carries ``clean``, the same face rendered
without its occluders (``clean/<id>.jpg``; unoccluded samples have none on disk, and ``clean`` is ``image``
itself). The scene is rendered once from one random stream and branches only where occluder pixels are
painted, so lighting, blur, noise and JPEG draws are the same. Choices that keep ``clean`` equal to ``image``
outside the occlusion mask (exactly before the camera's JPEG; JPEG then spreads differences over the 16×16
blocks that touch the mask, and chroma upsampling two pixels further):

- the occluder's soft cast shadow stays in ``clean`` (as if the occluder turned invisible but still blocked
  the light): it darkens the face outside the mask in ``image`` too, and dropping it only inside the mask
  would leave a visible step at the mask edge;
- the camera blur (and down-up sampling) bleeds occluder colour a few pixels past the mask in ``image``;
  ``clean`` takes ``image``'s pixels everywhere outside the mask, so that faint halo is in both.

Sample ``i`` of seed ``S`` depends on ``(S, i)`` only (``numpy.random.default_rng([S, i])``).
Side convention (as in the real CelebAMask-HQ maps): ``l_*`` = the subject's left = the image right, so iBUG
points 36-41 (image-left eye) outline ``r_eye`` and 42-47 outline ``l_eye``.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from faceparse.data.synth_face import OCCLUDER_KINDS, OCCLUDER_VISIBLE, paint, sample_geometry
from faceparse.data.synth_render import render
from faceparse.labels import CELEBAMASK_HQ, celebamask_to_lapa
from faceparse.staging import staging_dir

__all__ = ["SynthSample", "generate_sample", "write_dataset", "to_lapa", "sample_id", "assign_splits",
           "occlusion_plan", "OCCLUDER_KINDS", "OCCLUDER_VISIBLE"]

NUM_CLASSES = CELEBAMASK_HQ.num_classes
_LAPA_LUT = celebamask_to_lapa()
SPLIT_NAMES = ("train", "val", "test")
# occluder id (1 + index in OCCLUDER_KINDS; 0: none) → its class id in the visible label map
_VISIBLE_LUT = np.array([0] + [CELEBAMASK_HQ.index(OCCLUDER_VISIBLE[k]) for k in OCCLUDER_KINDS], np.uint8)


@dataclass
class SynthSample:
    image: np.ndarray        # uint8 (H, W, 3) RGB
    label: np.ndarray        # uint8 (H, W) visible CelebAMask-HQ class ids (occluders → OCCLUDER_VISIBLE)
    complete: np.ndarray     # uint8 (H, W) label map before occlusion
    occlusion: np.ndarray    # bool (H, W) occluder pixels
    landmarks: np.ndarray    # float32 (68, 2) (x, y) pixels, iBUG 300-W order
    occluders: list[str] = field(default_factory=list)   # kinds in drawing order ([] when unoccluded)
    clean: np.ndarray | None = None   # uint8 (H, W, 3) RGB without the occluders (``image`` when unoccluded)

    @property
    def occluded(self) -> bool:
        return bool(self.occlusion.any())


def generate_sample(seed: int, index: int, size: int = 256, occlusion_prob: float = 0.3,
                    kind: str | None = None) -> SynthSample:
    """Sample ``index`` of the synthetic dataset ``seed`` (a pure function of its arguments).

    Occluded with probability ``occlusion_prob`` (random kinds); ``kind`` (one of OCCLUDER_KINDS) forces an
    occluder of that kind, drawn first. The face (complete map, landmarks) depends on neither."""
    if size < 32:
        raise ValueError(f"synthetic faces need size >= 32, got {size}")
    if not 0.0 <= occlusion_prob <= 1.0:
        raise ValueError(f"occlusion_prob must be in [0, 1], got {occlusion_prob}")
    if kind is not None and kind not in OCCLUDER_KINDS:
        raise ValueError(f"unknown occluder kind {kind!r}; known: {list(OCCLUDER_KINDS)}")
    rng = np.random.default_rng([int(seed), int(index)])
    occluded = bool(rng.random() < occlusion_prob) or kind is not None   # the draw is _occlusion_draw's
    geo = sample_geometry(rng, size, occluded, kind)
    complete = paint(np.zeros((size, size), np.uint8), geo.ops)
    under = paint(np.zeros((size, size), np.uint8), geo.ops, skip_tags=("glasses", "glasses_frame"))
    occ_ids = np.zeros((size, size), np.uint8)      # 1 + drawing index, later occluders on top
    for k, o in enumerate(geo.occluders, 1):
        cv2.fillPoly(occ_ids, [np.round(p * 16).astype(np.int32).reshape(-1, 1, 2) for p in o.polys], k,
                     cv2.LINE_8, 4)
    occlusion = occ_ids > 0
    kind_ids = np.array([0] + [1 + OCCLUDER_KINDS.index(o.kind) for o in geo.occluders], np.uint8)
    label = np.where(occlusion, _VISIBLE_LUT[kind_ids[occ_ids]], complete).astype(np.uint8)
    image, clean = render(rng, geo, complete, under, occ_ids)
    return SynthSample(image=image, label=label, complete=complete, occlusion=occlusion,
                       landmarks=geo.landmarks.astype(np.float32), occluders=[o.kind for o in geo.occluders],
                       clean=image if clean is None else clean)


def _occlusion_draw(seed: int, index: int) -> float:
    """The first draw of sample ``(seed, index)``'s generator: it is occluded iff this < its occlusion_prob."""
    return float(np.random.default_rng([int(seed), int(index)]).random())


def occlusion_plan(n: int, seed: int, split_of: list[str], occlusion_prob: float,
                   test_occlusion_prob: float | None) -> list[tuple[float, str | None]]:
    """(occlusion_prob, forced kind) per index. With ``test_occlusion_prob`` set, test samples are occluded
    with it and its occluded samples cycle through OCCLUDER_KINDS, so every kind is about equally frequent
    there; otherwise (None, as before it existed) and in the other splits: ``occlusion_prob``, random kinds."""
    if test_occlusion_prob is None:
        return [(occlusion_prob, None)] * n
    p_test = float(test_occlusion_prob)
    if not 0.0 <= p_test <= 1.0:
        raise ValueError(f"test_occlusion_prob must be in [0, 1], got {test_occlusion_prob}")
    plan, k = [], 0
    for i in range(n):
        if split_of[i] != "test":
            plan.append((occlusion_prob, None))
        elif _occlusion_draw(seed, i) < p_test:
            plan.append((p_test, OCCLUDER_KINDS[k % len(OCCLUDER_KINDS)]))
            k += 1
        else:
            plan.append((p_test, None))
    return plan


def to_lapa(label: np.ndarray) -> np.ndarray:
    """CelebAMask-HQ ids → LaPa's 11 ids (accessories, ears, neck, cloth → background)."""
    return _LAPA_LUT[np.asarray(label)]


def sample_id(seed: int, index: int) -> str:
    return f"synth_{seed}_{index:06d}"


def assign_splits(n: int, seed: int, splits: dict[str, float]) -> list[str]:
    """Deterministic split per index (a function of n, seed, splits); every split with a positive fraction is
    non-empty when n >= the number of such splits."""
    unknown = set(splits) - set(SPLIT_NAMES)
    if unknown:
        raise ValueError(f"unknown split names {sorted(unknown)}; allowed: {list(SPLIT_NAMES)}")
    fr = {k: float(v) for k, v in splits.items()}
    if any(v < 0 for v in fr.values()) or sum(fr.values()) <= 0:
        raise ValueError(f"split fractions must be >= 0 with a positive sum, got {splits}")
    names = [k for k in SPLIT_NAMES if fr.get(k, 0.0) > 0]
    total = sum(fr[k] for k in names)
    exact = {k: n * fr[k] / total for k in names}
    counts = {k: int(np.floor(exact[k])) for k in names}
    for k in sorted(names, key=lambda k: exact[k] - counts[k], reverse=True)[: n - sum(counts.values())]:
        counts[k] += 1
    if n >= len(names):   # every split gets at least one sample, taken from the largest
        for k in names:
            while counts[k] == 0:
                big = max(names, key=lambda j: counts[j])
                counts[big] -= 1
                counts[k] += 1
    order = np.random.default_rng([int(seed), 0x5B1]).permutation(n)
    out = [""] * n
    pos = 0
    for k in names:
        for i in order[pos: pos + counts[k]]:
            out[int(i)] = k
        pos += counts[k]
    return out



def replace_dir(tmp: Path, out_dir: Path) -> None:
    """Put the finished ``tmp`` folder in ``out_dir``'s place (a generator's last step): the old folder is
    moved aside first and removed after, so a reader never sees half a dataset."""
    _check_target(out_dir)
    old = None
    if out_dir.exists():
        old = staging_dir(out_dir, ".old-")
        old.rmdir()
        out_dir.rename(old)
    tmp.rename(out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)

def _check_target(out_dir: Path) -> None:
    if out_dir.exists():
        if not out_dir.is_dir():
            raise ValueError(f"{out_dir} exists and is not a directory")
        if any(out_dir.iterdir()) and not (out_dir / "dataset.json").is_file():
            raise ValueError(f"{out_dir} is not empty and is not a faceparse dataset (no dataset.json); "
                             "refusing to overwrite it")


def write_dataset(out_dir, n: int, size: int = 256, seed: int = 0, occlusion_prob: float = 0.3,
                  splits: dict[str, float] | None = None, progress: bool = True,
                  test_occlusion_prob: float | None = None) -> Path:
    """Write ``n`` synthetic samples in the canonical dataset layout (docs/CONTRACTS.md) to ``out_dir``.

    Test samples are occluded with ``test_occlusion_prob``, cycling through the occluder kinds (None: like the
    other splits; :func:`occlusion_plan`); ``occlusion/kinds.json`` lists each sample's kinds; occluded samples
    also get ``clean/<id>.jpg`` (the face without its occluders).

    Built in a temporary directory beside ``out_dir`` and renamed into place; a previous faceparse dataset
    (a directory with dataset.json) is replaced, any other non-empty directory is refused (ValueError)."""
    out_dir = Path(out_dir)
    n = int(n)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    splits = dict(splits) if splits is not None else {"train": 0.8, "val": 0.1, "test": 0.1}
    split_of = assign_splits(n, seed, splits)
    plan = occlusion_plan(n, seed, split_of, occlusion_prob, test_occlusion_prob)
    _check_target(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = staging_dir(out_dir, ".tmp-")
    try:
        for sub in ("images", "labels", "complete", "occlusion", "landmarks", "clean"):
            (tmp / sub).mkdir()
        rows, kinds = [], {}
        bar = _progress(progress, n, f"synth → {out_dir}")
        with bar:
            task = bar.add_task("generate", total=n) if progress else None
            for i in range(n):
                s = generate_sample(seed, i, size=size, occlusion_prob=plan[i][0], kind=plan[i][1])
                sid = sample_id(seed, i)
                kinds[sid] = s.occluders
                img_rel, lab_rel, lm_rel = f"images/{sid}.jpg", f"labels/{sid}.png", f"landmarks/{sid}.npy"
                Image.fromarray(s.image, "RGB").save(tmp / img_rel, quality=95)
                if s.occluded:
                    Image.fromarray(s.clean, "RGB").save(tmp / f"clean/{sid}.jpg", quality=95)
                Image.fromarray(s.label, "L").save(tmp / lab_rel)
                Image.fromarray(s.complete, "L").save(tmp / f"complete/{sid}.png")
                Image.fromarray(s.occlusion.astype(np.uint8) * 255, "L").save(tmp / f"occlusion/{sid}.png")
                # on disk: continuous pixel coordinates (pixel i spans [i, i+1), as LaPa / 300-W ingest write
                # them); the painter's polygons put pixel centres on integers
                np.save(tmp / lm_rel, (s.landmarks + 0.5).astype(np.float32))
                rows.append({
                    "id": sid, "split": split_of[i], "image": img_rel, "label": lab_rel, "landmarks": lm_rel,
                    "width": size, "height": size, "label_width": size, "label_height": size,
                    "class_pixels": np.bincount(s.label.ravel(), minlength=NUM_CLASSES).astype(int).tolist(),
                    "sha256": hashlib.sha256((tmp / img_rel).read_bytes()).hexdigest(), "source": "synth",
                })
                if task is not None:
                    bar.advance(task)
        (tmp / "occlusion" / "kinds.json").write_text(json.dumps(kinds, indent=1) + "\n")
        df = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
        pq.write_table(pa.Table.from_pandas(df, schema=_manifest_schema(), preserve_index=False),
                       tmp / "manifest.parquet")
        info = {"label_table": CELEBAMASK_HQ.name, "size": int(size), "source": "synth", "count": n,
                "seed": int(seed), "occlusion_prob": float(occlusion_prob),
                "test_occlusion_prob": None if test_occlusion_prob is None else float(test_occlusion_prob),
                "occluder_kinds": list(OCCLUDER_KINDS), "occluder_classes": dict(OCCLUDER_VISIBLE), "splits": splits,
                "num_classes": NUM_CLASSES, "classes": list(CELEBAMASK_HQ.classes),
                "landmarks": "ibug68", "generator": "faceparse.data.synth"}
        (tmp / "dataset.json").write_text(json.dumps(info, indent=2) + "\n")
        replace_dir(tmp, out_dir)           # re-checks the target: it may have changed while generating
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


MANIFEST_COLUMNS = ("id", "split", "image", "label", "landmarks", "width", "height", "label_width",
                    "label_height", "class_pixels", "sha256", "source")


def _manifest_schema():
    """Column types of manifest.parquet (docs/CONTRACTS.md), as the other dataset writers use them."""
    return pa.schema([
        ("id", pa.string()), ("split", pa.string()), ("image", pa.string()), ("label", pa.string()),
        ("landmarks", pa.string()), ("width", pa.int32()), ("height", pa.int32()),
        ("label_width", pa.int32()), ("label_height", pa.int32()), ("class_pixels", pa.list_(pa.int64())),
        ("sha256", pa.string()), ("source", pa.string()),
    ])


class _NoProgress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _progress(enabled: bool, n: int, desc: str):
    if not enabled:
        return _NoProgress()

    return Progress(TextColumn(f"[bold]{desc}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True))
