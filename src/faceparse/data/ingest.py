"""Adapters from the real face-parsing layouts to the canonical dataset (see docs/CONTRACTS.md).

``ingest(fmt, src, out, ...)`` reads one of

* ``celebamask-hq``: ``CelebA-HQ-img/<i>.jpg`` + ``CelebAMask-HQ-mask-anno/<i // 2000>/<i:05d>_<part>.png``
  (one binary PNG per part, painted into one map in the official ``g_mask.py`` order, later parts on
  top); splits from ``CelebA-HQ-to-CelebA-mapping.txt`` as the official ``g_partition.py`` does
  (CelebA index < 162771 → train, < 182638 → val, else test), or from CelebA's
  ``list_eval_partition.txt`` keyed by ``orig_file`` when that file is present;
* ``lapa``: ``{train,val,test}/{images/*.jpg, labels/*.png, landmarks/*.txt}``;
* ``helen``: ``train|test/<name>_image.jpg`` + ``<name>_label.png`` (val carved from train);
* ``labelmaps``: a folder of images with same-stem single-channel label PNGs in a named class table
  (flat, or ``images/`` + ``labels/`` subfolders);

resizes once (bicubic images, nearest labels) to ``size``×``size`` and writes the canonical layout
atomically (a temporary directory renamed into place). The source is only read.
"""
from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
from PIL import Image
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..images import read_image, read_label as _read_label
from ..labels import CELEBAMASK_HQ, HELEN, LAPA, get_table
from ..landmark_map import draw_map
from ..staging import staging_dir
from .manifest import INFO, SPLITS, sample_row, write_info, write_manifest
from .pts import crop_to_face, read_pts

FORMATS = ("celebamask-hq", "lapa", "helen", "labelmaps", "300w")
DEFAULT_SPLITS = {"train": 0.8, "val": 0.1, "test": 0.1}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

# Official CelebAMask-HQ paint order (face_parsing/Data_preprocessing/g_mask.py, "list2"): part k is
# class k+1 and is painted over the parts before it.
CELEBAMASK_PARTS = ("skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear", "mouth",
                    "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth")
assert CELEBAMASK_PARTS == CELEBAMASK_HQ.classes[1:], "labels.CELEBAMASK_HQ must follow the official order"
CELEBA_VAL_START, CELEBA_TEST_START = 162771, 182638  # g_partition.py thresholds on the mapping's orig_idx


@dataclass
class Sample:
    id: str
    image: Path
    split: str | None = None                      # None: assigned from split_seed / fractions
    label: Path | None = None                     # single-channel label map
    parts: list[tuple[int, Path]] = field(default_factory=list)  # CelebAMask-HQ: (class id, binary mask)
    landmarks: Path | None = None


@dataclass
class Scan:
    table: str
    samples: list[Sample]
    skipped: list[dict[str, str]]
    meta: dict[str, Any]


def _console():
    return Console(stderr=True)


def _warn(msg: str) -> None:
    _console().print(f"[yellow]warning:[/] {msg}", highlight=False, soft_wrap=True)


# ------------------------------------------------------------------------------------------- readers
def open_image(path: Path):
    """A fully decoded RGB PIL image (faceparse.images, the one reader); ValueError naming the file."""
    return read_image(path)


def read_label(path: Path) -> np.ndarray:
    """A single-channel class-id map as (H, W) uint8; ValueError naming the file otherwise."""
    return _read_label(path)


def read_part_mask(path: Path) -> np.ndarray:
    """A CelebAMask-HQ part mask as bool (H, W). Like g_mask.py (cv2.imread, channel 0 = blue): a pixel
    belongs to the part where the blue channel of the decoded colour image is non-zero."""
    try:
        with Image.open(path) as im:
            im.load()
            arr = np.asarray(im.convert("RGB"))[..., 2]
    except (OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"{path}: unreadable part mask ({e})") from None
    return arr != 0


def paint_parts(parts: list[tuple[int, Path]]) -> np.ndarray:
    """Paint binary part masks into one class map, in the order given (later parts on top)."""
    base: np.ndarray | None = None
    first: Path | None = None
    for cls, path in parts:
        m = read_part_mask(path)
        if base is None:
            base, first = np.zeros(m.shape, dtype=np.uint8), path
        elif m.shape != base.shape:
            raise ValueError(f"{path}: part mask is {m.shape[1]}x{m.shape[0]}, but {first.name} is "
                             f"{base.shape[1]}x{base.shape[0]}")
        base[m] = cls
    assert base is not None
    return base


def read_landmarks(path: Path) -> np.ndarray:
    """LaPa landmark file: first line the point count (106), then one ``x y`` line per point."""
    try:
        lines = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
        n = int(lines[0][0])
        pts = np.array([[float(v) for v in ln[:2]] for ln in lines[1:1 + n]], dtype=np.float32)
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: unreadable landmark file ({e})") from None
    except (ValueError, IndexError) as e:
        raise ValueError(f"{path}: malformed landmark file: expected a count line then 'x y' lines ({e})") from None
    if pts.shape != (n, 2):
        raise ValueError(f"{path}: landmark file announces {n} points but holds {len(pts)} complete 'x y' lines")
    return pts


# ------------------------------------------------------------------------------------------- splits
def check_fractions(splits: Mapping[str, float] | None) -> dict[str, float]:
    fr = dict(DEFAULT_SPLITS if splits is None else splits)
    unknown = set(fr) - set(SPLITS)
    if unknown:
        raise ValueError(f"splits: unknown split names {sorted(unknown)}; use {list(SPLITS)}")
    try:
        fr = {s: float(fr.get(s, 0.0)) for s in SPLITS}
    except (TypeError, ValueError):
        raise ValueError(f"splits: fractions must be numbers, got {splits}") from None
    if any(v < 0 for v in fr.values()) or sum(fr.values()) <= 0:
        raise ValueError(f"splits: fractions must be >= 0 with a positive sum, got {splits}")
    total = sum(fr.values())
    return {s: v / total for s, v in fr.items()}


def split_counts(n: int, fractions: Mapping[str, float]) -> dict[str, int]:
    """Largest-remainder counts; every split with a positive fraction gets >= 1 sample when n allows."""
    fr = check_fractions(fractions)
    raw = {s: fr[s] * n for s in SPLITS}
    counts = {s: int(np.floor(v)) for s, v in raw.items()}
    for s in sorted(SPLITS, key=lambda s: (-(raw[s] - counts[s]), SPLITS.index(s)))[: n - sum(counts.values())]:
        counts[s] += 1
    wanted = [s for s in SPLITS if fr[s] > 0]
    if n >= len(wanted):
        for s in wanted:
            if counts[s] == 0:
                donor = max(wanted, key=lambda d: counts[d])
                counts[donor] -= 1
                counts[s] += 1
    return counts


def assign_splits(ids: list[str], fractions: Mapping[str, float], seed: int) -> dict[str, str]:
    """Deterministic split of ids (independent of their order) by seed and fractions."""
    ordered = sorted(ids)
    perm = np.random.default_rng(seed).permutation(len(ordered))
    counts = split_counts(len(ordered), fractions)
    out: dict[str, str] = {}
    pos = 0
    for s in SPLITS:
        for k in perm[pos:pos + counts[s]]:
            out[ordered[k]] = s
        pos += counts[s]
    return out


# ------------------------------------------------------------------------------------------- adapters
def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: {what} not found")
    return path


def _images_in(folder: Path, suffixes=IMAGE_SUFFIXES) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes
                  and not p.name.startswith("."))


def scan_celebamask_hq(src: Path, **_: Any) -> Scan:
    img_dir = _require_dir(src / "CelebA-HQ-img", "CelebAMask-HQ image folder CelebA-HQ-img/")
    anno = _require_dir(src / "CelebAMask-HQ-mask-anno", "CelebAMask-HQ annotation folder CelebAMask-HQ-mask-anno/")
    images = [p for p in _images_in(img_dir) if p.stem.isdigit()]
    images.sort(key=lambda p: int(p.stem))
    samples, skipped = [], []
    for p in images:
        i = int(p.stem)
        folder = anno / str(i // 2000)
        parts = [(k + 1, folder / f"{i:05d}_{part}.png") for k, part in enumerate(CELEBAMASK_PARTS)]
        parts = [(k, f) for k, f in parts if f.is_file()]
        if not parts:
            rel = f"CelebAMask-HQ-mask-anno/{i // 2000}/{i:05d}_<part>.png"
            skipped.append({"id": str(i), "file": rel, "reason": "no part masks (label missing)"})
            _warn(f"{rel}: no part masks for image {p.name}; skipped")
            continue
        samples.append(Sample(id=str(i), image=p, parts=parts))

    meta: dict[str, Any] = {}
    mapping = src / "CelebA-HQ-to-CelebA-mapping.txt"
    partition = src / "list_eval_partition.txt"
    if mapping.is_file():
        rows = _read_mapping(mapping)
        if partition.is_file():
            part = _read_partition(partition)
            meta["split_method"] = "list_eval_partition.txt (CelebA official partition by orig_file)"
        else:
            part = None
            meta["split_method"] = ("CelebA-HQ-to-CelebA-mapping.txt orig_idx thresholds "
                                    f"({CELEBA_VAL_START}, {CELEBA_TEST_START}) as g_partition.py")
        for s in samples:
            row = rows.get(int(s.id))
            if row is None:
                raise ValueError(f"{mapping}: no row for CelebA-HQ image {s.id}")
            orig_idx, orig_file = row
            if part is not None:
                if orig_file not in part:
                    raise ValueError(f"{partition}: no entry for {orig_file} (CelebA-HQ image {s.id})")
                s.split = part[orig_file]
            else:
                s.split = ("train" if orig_idx < CELEBA_VAL_START else
                           "val" if orig_idx < CELEBA_TEST_START else "test")
    else:
        _warn(f"{mapping} not found: splitting by split_seed and fractions instead of the official partition")
        meta["split_method"] = "split_seed (no CelebA-HQ-to-CelebA-mapping.txt)"
    return Scan(CELEBAMASK_HQ.name, samples, skipped, meta)


def _read_mapping(path: Path) -> dict[int, tuple[int, str]]:
    out: dict[int, tuple[int, str]] = {}
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: unreadable ({e})") from None
    for n, line in enumerate(lines, 1):
        cols = line.split()
        if not cols or not cols[0].isdigit():
            continue  # header "idx orig_idx orig_file" / blank lines
        try:
            out[int(cols[0])] = (int(cols[1]), cols[2])
        except (IndexError, ValueError):
            raise ValueError(f"{path}:{n}: expected 'idx orig_idx orig_file', got {line!r}") from None
    return out


def _read_partition(path: Path) -> dict[str, str]:
    names = {"0": "train", "1": "val", "2": "test"}
    out: dict[str, str] = {}
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: unreadable ({e})") from None
    for n, line in enumerate(lines, 1):
        cols = line.split()
        if not cols:
            continue
        if len(cols) != 2 or cols[1] not in names:
            raise ValueError(f"{path}:{n}: expected '<file> 0|1|2', got {line!r}")
        out[cols[0]] = names[cols[1]]
    return out


def scan_lapa(src: Path, **_: Any) -> Scan:
    samples, skipped = [], []
    present = [s for s in SPLITS if (src / s).is_dir()]
    if not present:
        raise FileNotFoundError(f"{src}: no LaPa split folders (expected train/, val/, test/ with images/ labels/ landmarks/)")
    for split in present:
        d = src / split
        img_dir = _require_dir(d / "images", f"LaPa {split}/images folder")
        for p in _images_in(img_dir):
            label = d / "labels" / f"{p.stem}.png"
            lm = d / "landmarks" / f"{p.stem}.txt"
            if not label.is_file():
                rel = f"{split}/labels/{p.stem}.png"
                skipped.append({"id": p.stem, "file": rel, "reason": "label file missing"})
                _warn(f"{rel}: label file missing for {split}/images/{p.name}; skipped")
                continue
            samples.append(Sample(id=p.stem, image=p, split=split, label=label,
                                  landmarks=lm if lm.is_file() else None))
    return Scan(LAPA.name, samples, skipped, {"split_method": "official LaPa folders"})


def scan_helen(src: Path, **_: Any) -> Scan:
    samples, skipped = [], []
    present = [s for s in SPLITS if (src / s).is_dir()]
    if "train" not in present and "test" not in present:
        raise FileNotFoundError(f"{src}: no Helen split folders (expected train/ and test/ with <name>_image.jpg + <name>_label.png)")
    for split in present:
        d = src / split
        for p in sorted(d.iterdir()):
            stem = p.stem
            if not (p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and stem.endswith("_image")):
                continue
            name = stem[: -len("_image")]
            label = d / f"{name}_label.png"
            if not label.is_file():
                rel = f"{split}/{name}_label.png"
                skipped.append({"id": name, "file": rel, "reason": "label file missing"})
                _warn(f"{rel}: label file missing for {split}/{p.name}; skipped")
                continue
            # train samples without an official val folder get val carved out below
            samples.append(Sample(id=name, image=p, split=split if (split != "train" or "val" in present) else None,
                                  label=label))
    meta = {"split_method": "official Helen folders" + ("" if "val" in present else "; val carved from train by split_seed")}
    return Scan(HELEN.name, samples, skipped, meta)


def scan_labelmaps(src: Path, labelmaps_table: str = CELEBAMASK_HQ.name, **_: Any) -> Scan:
    table = get_table(labelmaps_table).name
    if (src / "images").is_dir() and (src / "labels").is_dir():
        images, label_dir, prefix = _images_in(src / "images"), src / "labels", "labels/"
    else:
        images = [p for p in _images_in(src) if p.suffix.lower() != ".png"]
        label_dir, prefix = src, ""
    if not images:
        raise FileNotFoundError(f"{src}: no images found (expected <stem>.jpg beside <stem>.png label maps, "
                                "or images/ + labels/ folders)")
    samples, skipped = [], []
    for p in images:
        label = label_dir / f"{p.stem}.png"
        if not label.is_file():
            skipped.append({"id": p.stem, "file": f"{prefix}{p.stem}.png", "reason": "label file missing"})
            _warn(f"{label}: label file missing for {p.name}; skipped")
            continue
        samples.append(Sample(id=p.stem, image=p, label=label))
    return Scan(table, samples, skipped, {"split_method": "split_seed"})


def scan_300w(src: Path, **_: Any) -> Scan:
    """300-W / iBUG: ``<name>.jpg|png`` beside ``<name>.pts`` (version 1, 68 points), in any sub-folder
    (the official release nests afw/, helen/, lfpw/, ibug/); ids are the relative paths. A missing .pts
    skips its image; a broken one is named and skipped at conversion."""
    images = sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not images:
        raise FileNotFoundError(f"{src}: no images found (expected <name>.jpg beside <name>.pts)")
    samples, skipped = [], []
    for p in images:
        pts = p.with_suffix(".pts")
        sid = _safe_id(p.relative_to(src).with_suffix(""))
        if not pts.is_file():
            skipped.append({"id": sid, "file": str(pts.relative_to(src)), "reason": "landmark file missing"})
            _warn(f"{pts}: .pts file missing for {p.name}; skipped")
            continue
        samples.append(Sample(id=sid, image=p, landmarks=pts))
    return Scan(CELEBAMASK_HQ.name, samples, skipped,
                {"split_method": "split_seed", "labels": "drawn from the 68 landmarks (faceparse.landmark_map)",
                 "crop": "square around the landmarks, 25 % margin"})


def _safe_id(rel: Path) -> str:
    return "_".join(rel.parts).replace(" ", "_")


ADAPTERS: dict[str, Callable[..., Scan]] = {
    "celebamask-hq": scan_celebamask_hq, "lapa": scan_lapa, "helen": scan_helen, "labelmaps": scan_labelmaps,
    "300w": scan_300w,
}


# ------------------------------------------------------------------------------------------- writing
def _is_within(a: Path, b: Path) -> bool:
    try:
        a.relative_to(b)
        return True
    except ValueError:
        return False


def check_output(out: Path, src: Path | None = None) -> None:
    """Refuse an output that overlaps the source, or an existing non-dataset folder we would replace."""
    o = out.resolve()
    if src is not None:
        s = src.resolve()
        if _is_within(o, s) or _is_within(s, o):
            raise ValueError(f"output {out} overlaps the source {src}; the source is never modified")
    if o.exists():
        if not o.is_dir():
            raise FileExistsError(f"{out} exists and is not a directory")
        if any(o.iterdir()) and not (o / INFO).is_file():
            raise FileExistsError(f"{out} exists, is not empty and holds no dataset.json: refusing to replace it")


@contextlib.contextmanager
def atomic_dir(out: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``out``; on success it replaces ``out`` by rename, on error it goes."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = staging_dir(out, ".tmp-")
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    os.chmod(tmp, 0o755)
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.rename(out, old)
        os.rename(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, out)


def progress_bar(enabled: bool = True):
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=_console(), disable=not enabled,
                    transient=False)


def _label_of(s: Sample) -> np.ndarray:
    return paint_parts(s.parts) if s.parts else read_label(s.label)


def _aspect_differs(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return abs(a[0] * b[1] - a[1] * b[0]) > 0.01 * a[0] * b[1]


def _load_sample(s: Sample, size: int):
    """(image, label map, landmarks or None, None) — or (…, (file, reason)) when the sample is unusable.

    300-W (``.pts`` landmarks): the face is cropped square around its points with a margin and resized to
    ``size``; the label map is drawn from the points (faceparse.landmark_map: M_β — 300-W has no parsing
    labels). Other layouts: the image and its label map as stored (resized later)."""
    if s.landmarks is not None and s.landmarks.suffix.lower() == ".pts":
        try:
            pts = read_pts(s.landmarks, one_based=True) + 0.5   # 300-W: 1-based → continuous pixel coordinates
            if pts.shape != (68, 2):
                raise ValueError(f"{s.landmarks}: {len(pts)} points, expected the 68 iBUG points")
            img, pts = crop_to_face(np.asarray(open_image(s.image)), pts, size)
        except ValueError as e:
            return None, None, None, (s.landmarks, str(e).removeprefix(f"{s.landmarks}: "))
        return Image.fromarray(img), draw_map(pts, size), pts.astype(np.float32), None
    img = open_image(s.image)
    label = _label_of(s)
    lab_size = (label.shape[1], label.shape[0])
    if _aspect_differs(img.size, lab_size):
        reason = f"label {lab_size[0]}x{lab_size[1]} does not match image {img.size[0]}x{img.size[1]} aspect"
        return img, label, None, (s.label or s.parts[0][1], reason)
    return img, label, (read_landmarks(s.landmarks) if s.landmarks is not None else None), None


def ingest(fmt: str, src: str | os.PathLike, out: str | os.PathLike, size: int = 256,
           labelmaps_table: str = CELEBAMASK_HQ.name, split_seed: int = 0,
           splits: Mapping[str, float] | None = None, progress: bool = True) -> Path:
    """Convert a real dataset layout under ``src`` into the canonical dataset at ``out``; returns ``out``."""
    if fmt not in ADAPTERS:
        raise ValueError(f"unknown dataset format {fmt!r}; known: {list(FORMATS)}")
    size = int(size)
    if size < 8:
        raise ValueError(f"size must be >= 8, got {size}")
    fractions = check_fractions(splits)
    src_p, out_p = Path(src), Path(out)
    _require_dir(src_p, f"{fmt} source folder")
    check_output(out_p, src_p)

    scan = ADAPTERS[fmt](src_p, labelmaps_table=labelmaps_table)
    table = get_table(scan.table)

    seen: dict[str, Path] = {}
    for s in scan.samples:
        if s.id in seen:
            raise ValueError(f"duplicate sample id {s.id!r}: {seen[s.id]} and {s.image}")
        seen[s.id] = s.image

    skipped = list(scan.skipped)
    rows: list[dict[str, Any]] = []
    n_landmarks: set[int] = set()
    with atomic_dir(out_p) as tmp:
        for sub in ("images", "labels"):
            (tmp / sub).mkdir()
        kept: list[tuple[Sample, dict[str, Any]]] = []
        with progress_bar(progress) as bar:
            task = bar.add_task(f"ingest {fmt}", total=len(scan.samples))
            for s in scan.samples:
                img, label, lms, bad = _load_sample(s, size)
                if bad is not None:
                    skipped.append({"id": s.id, "file": str(bad[0].relative_to(src_p)), "reason": bad[1]})
                    _warn(f"{bad[0]}: {bad[1]}; skipped")
                    bar.advance(task)
                    continue
                w0, h0 = img.size
                img_r = img if img.size == (size, size) else img.resize((size, size), Image.BICUBIC)
                lab_r = Image.fromarray(label, mode="L")
                if lab_r.size != (size, size):
                    lab_r = lab_r.resize((size, size), Image.NEAREST)
                img_r.save(tmp / "images" / f"{s.id}.jpg", quality=95)
                lab_r.save(tmp / "labels" / f"{s.id}.png")
                lm_rel = None
                if lms is not None:
                    # continuous pixel coordinates (the image spans [0, W] x [0, H]) scaled per axis
                    lms = (lms * np.array([size / w0, size / h0], dtype=np.float32)).astype(np.float32)
                    n_landmarks.add(len(lms))
                    (tmp / "landmarks").mkdir(exist_ok=True)
                    lm_rel = f"landmarks/{s.id}.npy"
                    np.save(tmp / lm_rel, lms)
                row = sample_row(tmp, s.id, s.split or "train", image=f"images/{s.id}.jpg",
                                 label=f"labels/{s.id}.png", landmarks=lm_rel, num_classes=table.num_classes,
                                 source=fmt, label_array=np.asarray(lab_r), image_size=(size, size))
                kept.append((s, row))
                bar.advance(task)

        if not kept:
            raise ValueError(f"{src_p}: no usable samples found for format {fmt!r}"
                             + (f" ({len(skipped)} skipped)" if skipped else ""))
        # splits: official ones where the layout has them, the seeded fractions elsewhere
        free = [s.id for s, _ in kept if s.split is None]
        if free:
            if fmt == "helen":
                fr = {"train": fractions["train"], "val": fractions["val"]}
                if sum(fr.values()) <= 0:
                    fr = {"train": 1.0}
            else:
                fr = fractions
            chosen = assign_splits(free, fr, split_seed)
            for s, _ in kept:
                if s.split is None:
                    s.split = chosen[s.id]
        for s, row in kept:
            row["split"] = s.split
            rows.append(row)
        write_manifest(tmp, rows)
        counts = {sp: sum(r["split"] == sp for r in rows) for sp in SPLITS}
        write_info(tmp, {
            "label_table": table.name, "num_classes": table.num_classes, "size": size, "source": fmt,
            "source_dir": str(src_p), "count": len(rows), "splits": counts,
            "skipped": sorted(skipped, key=lambda d: d["id"]),
            "split_seed": split_seed, "split_fractions": fractions, **scan.meta,
            "landmarks": sorted(n_landmarks)[0] if len(n_landmarks) == 1 else (sorted(n_landmarks) or None),
            "resize": {"image": "bicubic", "label": "nearest"},
        })
    if skipped:
        _warn(f"{len(skipped)} sample(s) skipped; listed in {out_p / INFO} under 'skipped'")
    return out_p
