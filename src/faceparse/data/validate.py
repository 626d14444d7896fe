"""The validation gate: per-file checks → a per-sample table → a great-expectations run (+ Data Docs),
dataset-level checks, and a quarantine list that ``manifest.load_split`` honours.

Nothing in the dataset is modified or deleted: bad samples are only listed in ``quarantine.json``.

Outputs under ``out_dir``: ``summary.json``, ``quarantine.json``, ``metrics.json`` (for DVC) and
``data_docs/index.html`` (great-expectations Data Docs; offline it renders unstyled, the results are in
the HTML).
"""
from __future__ import annotations

import json
import os
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

import great_expectations as gx  # ~5-10 s: only here
import numpy as np
import pandas as pd
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)
from PIL import Image

from ..hashing import sha256_file
from ..images import decode_label, open_image
from ..labels import get_table
from .ingest import progress_bar
from .manifest import SPLITS, read_info, read_manifest

SUITE_NAME = "faceparse-dataset"
COLUMNS = ("id", "split", "image", "label", "image_readable", "label_readable", "width", "height",
           "label_width", "label_height", "max_label", "n_classes", "background_fraction", "face_fraction",
           "sha256", "sha256_matches_manifest", "class_pixels_match_manifest", "landmarks_ok", "n_reasons",
           "image_mode", "label_channels")




def check_sample(root: Path, row: Any, num_classes: int, table_name: str, size: int, *, min_classes: int,
                 max_background_fraction: float, min_face_fraction: float,
                 n_points: int | None = None) -> tuple[dict[str, Any], list[str]]:
    """Per-file checks of one manifest row: (record for the per-sample table, reasons it is bad)."""
    reasons: list[str] = []
    img_rel, lab_rel = str(row.image), str(row.label)
    rec: dict[str, Any] = {c: None for c in COLUMNS}
    rec.update(id=str(row.id), split=str(row.split), image=img_rel, label=lab_rel, image_readable=False,
               label_readable=False, sha256_matches_manifest=False, class_pixels_match_manifest=False,
               landmarks_ok=True)
    if row.split not in SPLITS:
        reasons.append(f"{img_rel}: split {row.split!r} is not one of {list(SPLITS)}")

    img_path, lab_path = root / img_rel, root / lab_rel
    # image: exists, decodes completely, right size, matches the manifest hash
    if not img_path.is_file():
        reasons.append(f"{img_rel}: image file missing")
    else:
        rec["sha256"] = sha256_file(img_path)
        rec["sha256_matches_manifest"] = rec["sha256"] == row.sha256
        if not rec["sha256_matches_manifest"]:
            reasons.append(f"{img_rel}: sha256 differs from the manifest (file changed after the manifest was written)")
        try:
            im = open_image(img_path)  # the one reader: fully decoded, so a truncated JPEG fails here
            rec["width"], rec["height"] = im.size
            mode = im.mode
            rec["image_readable"], rec["image_mode"] = True, mode
            if mode not in ("RGB", "L"):
                reasons.append(f"{img_rel}: image mode {mode}, expected RGB")
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            reasons.append(f"{img_rel}: image does not decode ({e})")

    # label: exists, decodes, single channel, right size, ids in the table, enough classes / face
    lab: np.ndarray | None = None
    if not lab_path.is_file():
        reasons.append(f"{lab_rel}: label file missing")
    else:
        try:
            lab = decode_label(lab_path)  # as stored: the channel check below needs the raw array
            rec["label_readable"] = True
        except (OSError, SyntaxError, ValueError) as e:
            reasons.append(f"{lab_rel}: label map does not decode ({e})")
    if lab is not None:
        rec["label_height"], rec["label_width"] = int(lab.shape[0]), int(lab.shape[1])
        rec["label_channels"] = 1 if lab.ndim == 2 else int(lab.shape[2])
        if lab.ndim != 2:
            reasons.append(f"{lab_rel}: label map has {lab.shape[2]} channels, expected single-channel class ids")
            lab = lab[..., 0]
        lab = lab.astype(np.int64)
        counts = np.bincount(lab.ravel(), minlength=num_classes) if lab.size else np.zeros(num_classes, int)
        rec["max_label"] = int(lab.max()) if lab.size else 0
        outside = np.nonzero(counts[num_classes:])[0] + num_classes
        if len(outside):
            reasons.append(f"{lab_rel}: class ids {outside.tolist()} outside the {table_name} table (0..{num_classes - 1})")
        present = int(np.count_nonzero(counts))
        rec["n_classes"] = present
        total = max(int(lab.size), 1)
        rec["background_fraction"] = float(counts[0]) / total
        rec["face_fraction"] = 1.0 - rec["background_fraction"]
        if present < min_classes:
            reasons.append(f"{lab_rel}: only {present} distinct class(es), need >= {min_classes}")
        if rec["background_fraction"] > max_background_fraction:
            reasons.append(f"{lab_rel}: background covers {rec['background_fraction']:.3f} of the map "
                           f"(> {max_background_fraction})")
        if rec["face_fraction"] < min_face_fraction:
            reasons.append(f"{lab_rel}: non-background covers {rec['face_fraction']:.4f} (< {min_face_fraction})")
        recorded = row.class_pixels
        rec["class_pixels_match_manifest"] = recorded is not None and _same_counts(list(recorded), counts.tolist())
        if not rec["class_pixels_match_manifest"]:
            reasons.append(f"{lab_rel}: class pixel counts differ from the manifest (label changed after the manifest was written)")

    # sizes: image == label == dataset size
    if rec["width"] is not None and (rec["width"], rec["height"]) != (size, size):
        reasons.append(f"{img_rel}: image is {rec['width']}x{rec['height']}, dataset size is {size}x{size}")
    if rec["label_width"] is not None and (rec["label_width"], rec["label_height"]) != (size, size):
        reasons.append(f"{lab_rel}: label is {rec['label_width']}x{rec['label_height']}, dataset size is {size}x{size}"
                       + (f" (image {rec['width']}x{rec['height']})" if rec["width"] is not None else ""))

    # optional landmarks: a finite (K, 2) array of points inside the image (K = dataset.json's count)
    lm_rel = row.landmarks
    if lm_rel:
        try:
            pts = np.load(root / lm_rel, allow_pickle=False)
            if pts.ndim != 2 or pts.shape[1] != 2 or not np.isfinite(pts).all():
                rec["landmarks_ok"] = False
                reasons.append(f"{lm_rel}: landmarks have shape {pts.shape} or non-finite values; expected finite (K, 2)")
            elif n_points is not None and len(pts) != n_points:
                rec["landmarks_ok"] = False
                reasons.append(f"{lm_rel}: {len(pts)} landmarks, the dataset's samples have {n_points}")
            elif (pts < 0).any() or (pts > size).any():
                rec["landmarks_ok"] = False
                reasons.append(f"{lm_rel}: landmarks outside the {size}x{size} image "
                               f"(x {pts[:, 0].min():.1f}..{pts[:, 0].max():.1f}, y {pts[:, 1].min():.1f}..{pts[:, 1].max():.1f})")
        except FileNotFoundError:
            rec["landmarks_ok"] = False
            reasons.append(f"{lm_rel}: landmarks file missing")
        except (OSError, ValueError) as e:
            rec["landmarks_ok"] = False
            reasons.append(f"{lm_rel}: landmarks do not load ({e})")
    return rec, reasons


def _same_counts(a: list[int], b: list[int]) -> bool:
    n = max(len(a), len(b))
    return list(a) + [0] * (n - len(a)) == list(b) + [0] * (n - len(b))


def _expectations(gx, size: int, num_classes: int, min_classes: int, max_bg: float, min_face: float) -> list:
    E = gx.expectations
    yes = [True]
    return [
        E.ExpectTableRowCountToBeBetween(min_value=1),
        E.ExpectColumnValuesToBeUnique(column="id"),
        E.ExpectColumnValuesToBeInSet(column="split", value_set=list(SPLITS)),
        E.ExpectColumnDistinctValuesToContainSet(column="split", value_set=list(SPLITS)),
        E.ExpectColumnValuesToBeInSet(column="image_readable", value_set=yes),
        E.ExpectColumnValuesToBeInSet(column="label_readable", value_set=yes),
        E.ExpectColumnValuesToBeInSet(column="sha256_matches_manifest", value_set=yes),
        E.ExpectColumnValuesToBeInSet(column="class_pixels_match_manifest", value_set=yes),
        E.ExpectColumnValuesToBeBetween(column="width", min_value=size, max_value=size),
        E.ExpectColumnValuesToBeBetween(column="height", min_value=size, max_value=size),
        E.ExpectColumnValuesToBeBetween(column="label_width", min_value=size, max_value=size),
        E.ExpectColumnValuesToBeBetween(column="label_height", min_value=size, max_value=size),
        E.ExpectColumnValuesToBeBetween(column="max_label", min_value=0, max_value=num_classes - 1),
        E.ExpectColumnValuesToBeBetween(column="n_classes", min_value=min_classes),
        E.ExpectColumnValuesToBeBetween(column="background_fraction", min_value=0.0, max_value=max_bg),
        E.ExpectColumnValuesToBeBetween(column="face_fraction", min_value=min_face, max_value=1.0),
        E.ExpectColumnValuesToBeUnique(column="sha256"),
        E.ExpectColumnValuesToBeInSet(column="landmarks_ok", value_set=yes),
        E.ExpectColumnValuesToBeInSet(column="image_mode", value_set=["RGB", "L"]),
        E.ExpectColumnValuesToBeInSet(column="label_channels", value_set=[1]),
    ]


def run_great_expectations(df: pd.DataFrame, docs_dir: Path, *, size: int, num_classes: int, min_classes: int,
                           max_background_fraction: float, min_face_fraction: float) -> tuple[bool, list[dict], str]:
    """One checkpoint run over the per-sample table in an ephemeral context; Data Docs go to docs_dir.
    Returns (success, [per-expectation results], index.html path)."""
    if docs_dir.exists():
        shutil.rmtree(docs_dir)
    docs_dir.mkdir(parents=True)
    site = "faceparse"
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
        data_docs_sites={site: {
            "class_name": "SiteBuilder",
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir.resolve())},
        }},
    )
    ctx = gx.get_context(project_config=config, mode="ephemeral")
    batch_def = (ctx.data_sources.add_pandas("faceparse")
                 .add_dataframe_asset("samples")
                 .add_batch_definition_whole_dataframe("per-sample checks"))
    suite = ctx.suites.add(gx.ExpectationSuite(name=SUITE_NAME))
    for e in _expectations(gx, size, num_classes, min_classes, max_background_fraction, min_face_fraction):
        suite.add_expectation(e)
    vd = ctx.validation_definitions.add(gx.ValidationDefinition(name="dataset", data=batch_def, suite=suite))
    cp = ctx.checkpoints.add(gx.Checkpoint(
        name="faceparse-gate", validation_definitions=[vd],
        actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=[site])],
        result_format={"result_format": "COMPLETE"},
    ))
    result = cp.run(batch_parameters={"dataframe": df})
    out: list[dict] = []
    ids = df["id"].tolist()
    for vr in result.run_results.values():
        for r in vr.results:
            cfg = r.expectation_config
            res = r.result or {}
            idx = res.get("unexpected_index_list") or []
            bad_ids = sorted({ids[i] for i in idx if isinstance(i, (int, np.integer)) and 0 <= i < len(ids)})
            entry = {"kind": "great_expectations", "name": cfg.type, "column": cfg.kwargs.get("column"),
                     "success": bool(r.success)}
            for k in ("unexpected_count", "observed_value", "details"):
                if k in res and res[k] is not None:
                    entry[k] = res[k] if k != "details" else str(res[k])
            if bad_ids:
                entry["unexpected_ids"] = bad_ids[:100]
            if r.exception_info and r.exception_info.get("raised_exception"):
                entry["exception"] = r.exception_info.get("exception_message")
            out.append(entry)
    index = docs_dir / "index.html"
    return bool(result.success), out, str(index)


def _dump(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")
    os.replace(tmp, path)


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def validate_dataset(dataset_dir: str | os.PathLike, out_dir: str | os.PathLike, min_classes: int = 2,
                     max_background_fraction: float = 0.98, min_face_fraction: float = 0.01,
                     progress: bool = True) -> dict[str, Any]:
    """Validate a canonical dataset; write summary.json, quarantine.json, metrics.json and Data Docs under
    ``out_dir``; return the summary (``success`` False when any sample is bad or a dataset check fails)."""
    root, out = Path(dataset_dir), Path(out_dir)
    info = read_info(root)
    manifest = read_manifest(root)
    table = get_table(info["label_table"])
    size = int(info["size"])
    out.mkdir(parents=True, exist_ok=True)

    records: list[dict[str, Any]] = []
    bad: dict[str, list[str]] = defaultdict(list)
    lm = info.get("landmarks")   # synth: "ibug68"; ingest: the count when every sample has the same
    n_points = 68 if lm == "ibug68" else lm if isinstance(lm, int) else None
    thresholds = dict(min_classes=int(min_classes), max_background_fraction=float(max_background_fraction),
                      min_face_fraction=float(min_face_fraction))
    with progress_bar(progress) as bar:
        task = bar.add_task("validate", total=len(manifest))
        for row in manifest.itertuples(index=False):
            rec, reasons = check_sample(root, row, table.num_classes, table.name, size, n_points=n_points,
                                        **thresholds)
            records.append(rec)
            if reasons:
                bad[rec["id"]].extend(reasons)
            bar.advance(task)

    # duplicate images (same bytes): the first by (split, id) stays, later copies are quarantined
    order = {s: i for i, s in enumerate(SPLITS)}
    by_hash: dict[str, list[dict]] = defaultdict(list)
    for rec in records:
        if rec["sha256"]:
            by_hash[rec["sha256"]].append(rec)
    dataset_checks: list[dict[str, Any]] = []
    cross_split: list[dict[str, Any]] = []
    for recs in by_hash.values():
        if len(recs) < 2:
            continue
        recs = sorted(recs, key=lambda r: (order.get(r["split"], 9), r["id"]))
        for dup in recs[1:]:
            bad[dup["id"]].append(f"{dup['image']}: duplicate image of sample {recs[0]['id']!r} ({recs[0]['image']})")
        if len({r["split"] for r in recs}) > 1:
            cross_split.append({"sha256": recs[0]["sha256"], "ids": {r["id"]: r["split"] for r in recs}})

    # dataset level: ids unique, splits disjoint (by id and by image hash), every split usable
    id_splits: dict[str, set] = defaultdict(set)
    id_count: dict[str, int] = defaultdict(int)
    for rec in records:
        id_splits[rec["id"]].add(rec["split"])
        id_count[rec["id"]] += 1
    dup_ids = sorted(i for i, n in id_count.items() if n > 1)
    dataset_checks.append({"kind": "dataset", "name": "ids_unique", "success": not dup_ids,
                           **({"duplicate_ids": dup_ids[:100]} if dup_ids else {})})
    ids_in_two = sorted(i for i, s in id_splits.items() if len(s) > 1)
    dataset_checks.append({"kind": "dataset", "name": "splits_disjoint",
                           "success": not ids_in_two and not cross_split,
                           **({"ids_in_several_splits": ids_in_two[:100]} if ids_in_two else {}),
                           **({"images_in_several_splits": cross_split[:100]} if cross_split else {})})
    per_split: dict[str, dict[str, int]] = {}
    for s in SPLITS:
        ids = [r["id"] for r in records if r["split"] == s]
        n_bad_s = sum(1 for i in ids if i in bad)
        per_split[s] = {"samples": len(ids), "bad": n_bad_s, "usable": len(ids) - n_bad_s}
    empty = [s for s in SPLITS if per_split[s]["usable"] == 0]
    dataset_checks.append({"kind": "dataset", "name": "splits_non_empty", "success": not empty,
                           **({"empty_splits": empty} if empty else {})})

    df = pd.DataFrame(records, columns=list(COLUMNS))
    df["n_reasons"] = [len(bad.get(i, [])) for i in df["id"]]
    ge_ok, ge_results, docs_index = run_great_expectations(
        df, out / "data_docs", size=size, num_classes=table.num_classes, **thresholds)

    n_bad = len(bad)
    datasets_ok = all(c["success"] for c in dataset_checks)
    success = bool(ge_ok and datasets_ok and n_bad == 0)
    problems = [f"split {s!r} is empty" + (" (all its samples are quarantined)" if per_split[s]["samples"] else "")
                for s in empty]
    problems += [f"sample id {i!r} appears {id_count[i]} times in the manifest" for i in dup_ids]
    problems += [f"sample id {i!r} is in several splits {sorted(id_splits[i])}" for i in ids_in_two]
    problems += [f"the same image is in several splits: {c['ids']}" for c in cross_split]
    summary = {
        "success": success,
        "dataset": str(root),
        "label_table": table.name,
        "size": size,
        "n_samples": len(records),
        "n_bad": n_bad,
        "bad": {k: bad[k] for k in sorted(bad)},
        "per_split": per_split,
        "problems": problems,
        "expectations": ge_results + dataset_checks,
        "great_expectations_success": ge_ok,
        "thresholds": thresholds,
        "data_docs": docs_index,
        "orphan_files": _orphans(root, records),
    }
    quarantine = {"ids": sorted(bad), "reasons": {k: bad[k] for k in sorted(bad)}}
    metrics = {"success": success, "n_samples": len(records), "n_bad": n_bad,
               "n_usable": len(records) - n_bad,
               **{f"{s}_samples": per_split[s]["samples"] for s in SPLITS},
               **{f"{s}_usable": per_split[s]["usable"] for s in SPLITS}}
    _dump(out / "quarantine.json", quarantine)
    _dump(out / "metrics.json", metrics)
    _dump(out / "summary.json", summary)
    return summary


def _orphans(root: Path, records: list[dict[str, Any]]) -> list[str]:
    """Files under images/ and labels/ that no manifest row references (reported, not failed)."""
    known = {r["image"] for r in records} | {r["label"] for r in records}
    out: list[str] = []
    for sub in ("images", "labels"):
        d = root / sub
        if d.is_dir():
            out += [f"{sub}/{p.name}" for p in sorted(d.iterdir()) if f"{sub}/{p.name}" not in known]
    return out[:1000]
