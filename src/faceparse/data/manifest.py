"""The canonical dataset's index: ``manifest.parquet`` (one row per sample) and ``dataset.json``.

Readers (``read_manifest``, ``read_info``, ``load_split``) are what validate / train / evaluate use;
writers (``sample_row``, ``build_manifest_rows``, ``write_manifest``, ``write_info``) are what the
adapters (ingest, synth) use, so every dataset on disk has the same columns and types.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..hashing import sha256_file  # noqa: F401 (re-exported where others import it)
from ..images import open_image, read_label

MANIFEST = "manifest.parquet"
INFO = "dataset.json"
SPLITS = ("train", "val", "test")
COLUMNS = ("id", "split", "image", "label", "landmarks", "width", "height", "label_width", "label_height",
           "class_pixels", "sha256", "source")




def class_pixels(label: np.ndarray, num_classes: int) -> list[int]:
    """Pixel count per class id (length num_classes, longer if the map holds ids outside the table)."""
    return np.bincount(np.asarray(label, dtype=np.uint8).ravel(), minlength=num_classes).astype(int).tolist()


# ----------------------------------------------------------------------------------------------- writers
def sample_row(dataset_dir: str | os.PathLike, sample_id: str, split: str, *, image: str, label: str,
               landmarks: str | None = None, num_classes: int, source: str,
               label_array: np.ndarray | None = None, image_size: tuple[int, int] | None = None) -> dict[str, Any]:
    """One manifest row for a sample already written under ``dataset_dir``.

    ``image`` / ``label`` / ``landmarks`` are paths relative to ``dataset_dir``. Pass ``label_array``
    (the map just written) and ``image_size`` ((width, height)) to avoid reading the files back.
    """
    root = Path(dataset_dir)
    if split not in SPLITS:
        raise ValueError(f"sample {sample_id!r}: split {split!r} is not one of {SPLITS}")
    if image_size is None:
        image_size = open_image(root / image).size
    if label_array is None:
        label_array = read_label(root / label)
    lh, lw = label_array.shape[:2]
    return {
        "id": str(sample_id), "split": split, "image": str(image), "label": str(label),
        "landmarks": None if landmarks is None else str(landmarks),
        "width": int(image_size[0]), "height": int(image_size[1]), "label_width": int(lw), "label_height": int(lh),
        "class_pixels": class_pixels(label_array, num_classes), "sha256": sha256_file(root / image),
        "source": str(source),
    }


def build_manifest_rows(dataset_dir: str | os.PathLike, samples: Iterable[Mapping[str, Any]], num_classes: int,
                        source: str) -> list[dict[str, Any]]:
    """Manifest rows for samples given as dicts with id, split, image, label[, landmarks] (relative paths):
    reads each image's size and label map back, hashes the image (sha256), counts class pixels."""
    return [sample_row(dataset_dir, s["id"], s["split"], image=s["image"], label=s["label"],
                       landmarks=s.get("landmarks"), num_classes=num_classes, source=source) for s in samples]


def _schema():
    return pa.schema([
        ("id", pa.string()), ("split", pa.string()), ("image", pa.string()), ("label", pa.string()),
        ("landmarks", pa.string()), ("width", pa.int32()), ("height", pa.int32()),
        ("label_width", pa.int32()), ("label_height", pa.int32()), ("class_pixels", pa.list_(pa.int64())),
        ("sha256", pa.string()), ("source", pa.string()),
    ])


def write_manifest(dataset_dir: str | os.PathLike, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write ``manifest.parquet`` (rows sorted by split then id; fixed column order and types)."""
    dup = sorted(i for i, n in Counter(r["id"] for r in rows).items() if n > 1)
    if dup:
        raise ValueError(f"manifest: duplicate sample ids {dup[:10]}")
    order = {s: i for i, s in enumerate(SPLITS)}
    rows = sorted(rows, key=lambda r: (order.get(r["split"], 99), r["id"]))
    cols = {c: [r.get(c) for r in rows] for c in COLUMNS}
    table = pa.table(cols, schema=_schema())
    path = Path(dataset_dir) / MANIFEST
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


def write_info(dataset_dir: str | os.PathLike, info: Mapping[str, Any]) -> Path:
    path = Path(dataset_dir) / INFO
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(dict(info), indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)
    return path


# ----------------------------------------------------------------------------------------------- readers
def read_info(dataset_dir: str | os.PathLike) -> dict[str, Any]:
    """``dataset.json`` as a dict (label_table, size, source, count, ...)."""
    path = Path(dataset_dir) / INFO
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no dataset.json: {Path(dataset_dir)} is not a canonical dataset "
                                "(run `faceparse data prepare`, `data synth` or `data ingest`)")
    try:
        info = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: corrupt dataset.json: {e}") from None
    if not isinstance(info, dict):
        raise ValueError(f"{path}: corrupt dataset.json: top level must be an object")
    for key in ("label_table", "size"):
        if key not in info:
            raise ValueError(f"{path}: dataset.json lacks {key!r}")
    return info


def read_manifest(dataset_dir: str | os.PathLike) -> pd.DataFrame:
    """``manifest.parquet`` as a DataFrame with the contract's columns."""
    path = Path(dataset_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no manifest.parquet: {Path(dataset_dir)} is not a canonical dataset")
    try:
        df = pq.read_table(path).to_pandas()
    except (pa.ArrowException, OSError) as e:
        raise ValueError(f"{path}: corrupt manifest: {e}") from None
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: manifest lacks columns {missing}")
    df["id"] = df["id"].astype(str)
    df["class_pixels"] = [list(map(int, v)) if v is not None else None for v in df["class_pixels"]]
    df["landmarks"] = pd.Series([None if (v is None or (isinstance(v, float) and np.isnan(v))) else str(v)
                                 for v in df["landmarks"]], index=df.index, dtype=object)
    return df


def read_quarantine(path: str | os.PathLike) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: quarantine file not found (run `faceparse data validate` first)")
    try:
        q = json.loads(p.read_text())
        ids = q["ids"]
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise ValueError(f"{p}: corrupt quarantine.json ({type(e).__name__}: {e})") from None
    return {"ids": [str(i) for i in ids], "reasons": q.get("reasons", {})}


def load_split(dataset_dir: str | os.PathLike, split: str, quarantine: str | os.PathLike | None = None) -> pd.DataFrame:
    """Rows of ``split`` minus the ids listed in ``quarantine`` (path of quarantine.json, or None), with
    absolute ``image_path`` / ``label_path`` (and ``landmarks_path``) columns added."""
    if split not in SPLITS:
        raise ValueError(f"split {split!r} is not one of {SPLITS}")
    root = Path(dataset_dir).resolve()
    df = read_manifest(root)
    df = df[df["split"] == split]
    if quarantine is not None:
        bad = set(read_quarantine(quarantine)["ids"])
        df = df[~df["id"].isin(bad)]
    df = df.reset_index(drop=True).copy()
    df["image_path"] = [str(root / p) for p in df["image"]]
    df["label_path"] = [str(root / p) for p in df["label"]]
    df["landmarks_path"] = pd.Series([None if p is None else str(root / p) for p in df["landmarks"]],
                                     index=df.index, dtype=object)
    return df
