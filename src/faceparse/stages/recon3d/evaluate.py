"""The 3D reconstruction benchmark (``faceparse evaluate --stage recon3d``) on a split of the synthetic 3D set
(faceparse.data.synth3d; its ``clean/`` renders, occluded ``images/`` and true ``coeffs/``):

- ``*_clean``: every face of the split, without occluders (``clean/``);
- ``*_occluded``: its occluded faces as photographed (``images/``);
- ``*_deoccluded``: the same occluded photos passed through the de-occlusion chain first (landmarks → parser →
  Algorithm 1 → FISN; ``faceparse.stages.fisn.photo``) of the FISN bundle ``recon3d.evaluate.deocclude`` names (a bundle
  dir or ``models:/`` URI). Without one — null, or a bundle dir that does not exist — these are null and
  ``deocclude.note`` says why.

Per face: vertex errors after similarity alignment to the true mesh (faceparse.face3d.metrics), mean and 90th
percentile (mm), and the landmark NME (projected landmark vertices vs the true ones, over the inter-ocular
distance); the split's numbers are means over its faces. ``p90_mm_mean_face`` / ``mean_mm_mean_face``: the
mean face (all-zero identity and expression) scored the same way, the baseline. ``lmk_nme`` is the clean
inputs' NME.

With ``recon3d.fit.enabled`` (the default) each condition is scored again after the per-face fit
(faceparse.stages.recon3d.fitting: the shipped landmark model's points, the shipped parser's outline and
visible skin, the completion stage's occlusion mask): ``p90_mm_fitted_<condition>``, ``mean_mm_fitted_*``,
``lmk_nme_fitted_*``; ``p90_mm_fitted_true_points`` fits the clean faces to their true 68 points instead (the
upper bound of what the landmarks give); ``fit`` records the settings, the models and the seconds per face
(one face at a time, as a photo costs).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ... import plots
from ...bundle import WEIGHTS
from ...face3d.io import overlay
from ...face3d.metrics import face_errors
from ...log import console
from ...models import preprocess
from ...runtime import tick
from .. import bundle_input_size, plots_dir, write_table
from ..fisn.photo import load_chain
from .dataset import Recon3dDataset
from .fitting import FitInputs, fit_config, fit_each
from .scoring import face_rows, scored_vertices

CONDITIONS = ("clean", "occluded", "deoccluded")
CHAIN_BATCH = 32
EXAMPLES = 4


@torch.no_grad()
def _score(model, tensors: torch.Tensor, coeffs: torch.Tensor, points: torch.Tensor, bs: int) -> list[tuple]:
    device = next(model.parameters()).device
    rows = []
    for s in range(0, len(tensors), bs):
        y = model(tensors[s:s + bs].to(device)).float()
        rows += face_rows(model, y, coeffs[s:s + bs].to(device), points[s:s + bs].to(device))
        tick()
    return rows


def _stack(ds, idx: list[int]) -> dict[str, torch.Tensor]:
    items = [ds[i] for i in idx]
    return {k: torch.stack([it[k] for it in items]) for k in ("image", "coeffs", "points")}


def deocclusion_chain(params: dict[str, Any]):
    """(Chain or None, provenance dict): the FISN chain ``evaluate.deocclude`` names, or None with a note."""
    ev = params["evaluate"]
    ref = ev.get("deocclude")
    if not ref:
        return None, {"ref": None, "note": "no de-occlusion model given (recon3d.evaluate.deocclude: null)"}
    ref = str(ref)
    if not ref.startswith(("models:/", "runs:/")) and not (Path(ref) / WEIGHTS).is_file():
        return None, {"ref": ref, "note": f"{ref} is not a model bundle (train the fisn stage first)"}
    chain, versions = load_chain(params, model=ref)
    prov = {"ref": ref, **versions["fisn"]}
    reg = Path(str(ev.get("deocclude_registered") or ""))
    if not prov.get("model_uri") and str(reg) not in ("", ".") and reg.is_file():
        rec = json.loads(reg.read_text())
        if rec.get("bundle_sha256") == prov["bundle_sha256"]:
            prov["model_uri"] = rec.get("uri")
    return chain, prov


def _deoccluded(chain, ds, idx: list[int], size: int) -> tuple[torch.Tensor, list[np.ndarray]]:
    """The de-occlusion chain on the photos ``idx`` of ``ds``, CHAIN_BATCH at a time (the generator's
    activations for a whole split at once exceed the machine's memory) → (model inputs, outputs)."""
    outs = []
    for s in range(0, len(idx), CHAIN_BATCH):
        outs += [a.output for a in chain.run([Image.fromarray(ds.raw(i)) for i in idx[s:s + CHAIN_BATCH]])]
        tick()
    return (torch.stack([preprocess(o, size) for o in outs]) if outs else torch.zeros(0, 3, size, size)), outs


def evaluate_recon3d(model, meta, frame, data_dir: Path, params, progress: bool) -> tuple[dict, dict]:
    ev = params["evaluate"]
    size, bs = bundle_input_size(meta), int(ev["batch_size"])
    if not (data_dir / "coeffs").is_dir() or not (data_dir / "clean").is_dir():
        raise ValueError(f"{data_dir}: no coeffs/ or clean/: the 3D benchmark needs the synthetic 3D set "
                         "(`faceparse data synth3d`)")
    kinds = json.loads((data_dir / "occlusion" / "kinds.json").read_text())
    clean, photo = Recon3dDataset(frame, size, image_dir="clean"), Recon3dDataset(frame, size)
    everyone = list(range(len(frame)))
    occ = [i for i in everyone if kinds.get(photo.ids[i])]
    rows: dict[str, list] = {}
    inputs: dict[str, torch.Tensor] = {}
    truth: dict[str, dict[str, torch.Tensor]] = {}
    for cond, ds, idx in (("clean", clean, everyone), ("occluded", photo, occ)):
        b = _stack(ds, idx) if idx else None
        inputs[cond] = b["image"] if b else torch.zeros(0, 3, size, size)
        rows[cond] = _score(model, b["image"], b["coeffs"], b["points"], bs) if b else []
        if b:
            truth[cond] = {"coeffs": b["coeffs"], "points": b["points"]}
    chain, prov = deocclusion_chain(params)
    if chain is not None and occ:
        x, _ = _deoccluded(chain, photo, occ, size)
        b = _stack(photo, occ)
        inputs["deoccluded"], rows["deoccluded"] = x, _score(model, x, b["coeffs"], b["points"], bs)
        truth["deoccluded"] = truth["occluded"]
    result: dict[str, Any] = {}
    for cond in CONDITIONS:
        a = np.asarray(rows.get(cond) or [], np.float64).reshape(-1, 4)
        result[f"p90_mm_{cond}"] = float(a[:, 1].mean()) if len(a) else None
        result[f"mean_mm_{cond}"] = float(a[:, 0].mean()) if len(a) else None
        result[f"lmk_nme_{cond}"] = float(a[:, 2].mean()) if len(a) else None
        result[f"n_{cond}"] = int(len(a))
    base = _mean_face_errors(model, clean, everyone)
    result.update({"lmk_nme": result["lmk_nme_clean"], "p90_mm_mean_face": base[1], "mean_mm_mean_face": base[0],
                   "deocclude": prov, "input_size": size, "face_model": meta.get("face_model"),
                   "face_feature_loss": meta.get("face_feature_loss"),
                   "per_kind_p90_mm_occluded": _per_kind(rows["occluded"], [photo.ids[i] for i in occ], kinds)})
    ids = {"clean": [clean.ids[i] for i in everyone], "occluded": [photo.ids[i] for i in occ]}
    ids["deoccluded"] = ids["occluded"] if "deoccluded" in rows else []
    fitted = _fitted(model, params, inputs, truth, bs, result, progress)
    return result, {"rows": rows, "ids": ids, "inputs": inputs, "model": model, "fitted": fitted}


def _fitted(model, params, inputs: dict[str, torch.Tensor], truth: dict[str, dict], bs: int, result: dict[str, Any],
            progress: bool) -> dict[str, list]:
    """Each condition scored after the per-face fit (``recon3d.fit``): adds ``*_fitted_*`` and ``fit`` to
    ``result``; returns the per-face rows ({condition: rows, "clean_true_points": rows})."""
    cfg = fit_config(params)
    if cfg is None:
        result["fit"] = {"enabled": False}
        return {}
    seen = FitInputs.load(params)
    device = next(model.parameters()).device
    rows: dict[str, list] = {}
    secs: list[float] = []
    jobs = [(c, c, None) for c in CONDITIONS if c in truth and len(inputs.get(c, ()))]
    jobs += [("clean_true_points", "clean", "points")] if "clean" in truth and len(inputs.get("clean", ())) else []
    limit = (params.get("evaluate") or {}).get("fit_faces")
    before: dict[str, list] = {}
    for name, cond, use in jobs:
        x, t = inputs[cond][:limit], truth[cond]
        rows[name], before[name] = [], []
        for s in range(0, len(x), bs):
            xb = x[s:s + bs]
            with torch.no_grad():
                y0 = model(xb.to(device)).float()
            obs = seen.observe(xb)
            y, sec = fit_each(model, xb, y0, cfg, obs, None if use is None else t[use][s:s + bs])
            secs += sec
            truth_b = t["coeffs"][s:s + bs].to(device), t["points"][s:s + bs].to(device)
            rows[name] += face_rows(model, y.to(device), *truth_b)
            before[name] += face_rows(model, y0, *truth_b)
            tick()
        if progress:
            console.print(f"recon3d fit: {name} {len(x)} faces", soft_wrap=True)
    for name, r in rows.items():
        a = np.asarray(r, np.float64).reshape(-1, 4)
        key = "true_points" if name == "clean_true_points" else name
        result[f"p90_mm_fitted_{key}"] = float(a[:, 1].mean()) if len(a) else None
        result[f"mean_mm_fitted_{key}"] = float(a[:, 0].mean()) if len(a) else None
        result[f"lmk_nme_fitted_{key}"] = float(a[:, 2].mean()) if len(a) else None
        result[f"n_fitted_{key}"] = int(len(a))
        if limit is not None and name in CONDITIONS:     # the regressor on the same fitted faces, to compare
            b = np.asarray(before[name], np.float64).reshape(-1, 4)
            result[f"p90_mm_regressor_fitted_faces_{key}"] = float(b[:, 1].mean()) if len(b) else None
            result[f"p90_mm_mean_face_fitted_faces_{key}"] = float(b[:, 3].mean()) if len(b) else None
    for cond in CONDITIONS:
        result.setdefault(f"p90_mm_fitted_{cond}", None)
        result.setdefault(f"mean_mm_fitted_{cond}", None)
    result["fit"] = {"enabled": True, **cfg.to_dict(), "models": seen.versions, "faces": len(secs),
                     "seconds_per_face": float(np.mean(secs)) if secs else None,
                     "seconds_per_face_max": float(np.max(secs)) if secs else None}
    return rows


def _mean_face_errors(model, ds, idx: list[int]) -> tuple[float | None, float | None]:
    if not idx:
        return None, None
    face = model.face
    sel, mean = scored_vertices(face), face.mean.cpu().numpy()
    errs = []
    for i in idx:
        t = face.split(ds[i]["coeffs"][None].to(face.mean.device))
        errs.append(face_errors(mean, face.vertices(t["id"], t["exp"])[0].cpu().numpy(), sel))
    return float(np.mean([e["mean_mm"] for e in errs])), float(np.mean([e["p90_mm"] for e in errs]))


def _per_kind(rows: list, ids: list[str], kinds: dict) -> dict[str, dict[str, float]]:
    by: dict[str, list[float]] = {}
    for r, i in zip(rows, ids):
        for k in dict.fromkeys(kinds.get(i) or []):
            by.setdefault(k, []).append(r[1])
    return {k: {"n": len(v), "p90_mm": float(np.mean(v))} for k, v in sorted(by.items())}


@torch.no_grad()
def sheet(model, x: torch.Tensor, titles: list[str], path: Path) -> Path:
    """Input | render over the input, one row per face."""
    out = model.render(model(x).float(), x.shape[-1])
    photos = ((x.float().cpu() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    plt = plots._plt()
    p = plots._prepare(path)
    fig, axes = plt.subplots(len(photos), 2, figsize=(4, 2.0 * len(photos)), squeeze=False)
    for k, (row, ph) in enumerate(zip(axes, photos)):
        for ax, im, name in zip(row, (ph, overlay(ph, out.image[k].cpu(), out.mask[k].cpu())), ("input", "render")):
            ax.imshow(im)
            ax.set_axis_off()
            ax.set_title(f"{titles[k]}\n{name}" if name == "input" else name, fontsize=6)
    return plots.finish(fig, p)


def write_recon3d_reports(result, extras, params) -> list[Path]:
    """plots_dir/per_image.csv, conditions.csv, examples.png (each condition's first faces); the table."""
    ev = params["evaluate"]
    pdir = plots_dir(ev)
    lines = ["condition,id,mean_mm,p90_mm,lmk_nme,p90_mm_mean_face"]
    for cond in CONDITIONS:
        for i, r in zip(extras["ids"].get(cond, []), extras["rows"].get(cond, [])):
            lines.append(f"{cond},{i}," + ",".join(f"{v:.4f}" for v in r))
    for name, rows in (extras.get("fitted") or {}).items():
        for i, r in zip(extras["ids"].get(name.replace("_true_points", ""), []), rows):
            lines.append(f"{name}_fitted,{i}," + ",".join(f"{v:.4f}" for v in r))
    (pdir / "per_image.csv").write_text("\n".join(lines) + "\n")
    (pdir / "conditions.csv").write_text("condition,p90_mm,mean_mm\n" + "".join(
        f"{c},{_cell(result.get(f'p90_mm_{c}'))},{_cell(result.get(f'mean_mm_{c}'))}\n"
        for c in (*CONDITIONS, *(f"fitted_{k}" for k in (*CONDITIONS, "true_points")), "mean_face")))
    for cond in CONDITIONS:
        x = extras["inputs"].get(cond)
        if x is not None and len(x):
            sheet(extras["model"], x[:EXAMPLES], extras["ids"][cond][:EXAMPLES], pdir / f"examples_{cond}.png")
    return [pdir, *write_table(ev, markdown_table(result))]


def _cell(v) -> str:
    return "" if v is None else f"{v:.4f}"


def markdown_table(r: dict[str, Any]) -> str:
    def f(v, d=2):
        return "—" if v is None else f"{v:.{d}f}"

    dc = r.get("deocclude") or {}
    lines = [f"## 3D reconstruction on the {r.get('split', 'test')} split ({r.get('n_clean')} faces, "
             f"{r.get('n_occluded')} occluded; input {r.get('input_size')}²)", "",
             "| input | faces | p90 vertex error (mm) | mean vertex error (mm) | landmark NME |", "|---|---|---|---|---|"]
    for cond in CONDITIONS:
        lines.append(f"| {cond} | {r.get(f'n_{cond}')} | {f(r.get(f'p90_mm_{cond}'))} | {f(r.get(f'mean_mm_{cond}'))} | "
                     f"{f(r.get(f'lmk_nme_{cond}'), 4)} |")
    fit = r.get("fit") or {}
    if fit.get("enabled"):
        for cond in CONDITIONS:
            if r.get(f"p90_mm_fitted_{cond}") is not None:
                lines.append(f"| {cond}, fitted | {r.get(f'n_fitted_{cond}')} | {f(r.get(f'p90_mm_fitted_{cond}'))} | "
                             f"{f(r.get(f'mean_mm_fitted_{cond}'))} | {f(r.get(f'lmk_nme_fitted_{cond}'), 4)} |")
                if r.get(f"p90_mm_regressor_fitted_faces_{cond}") is not None:
                    lines.append(f"| {cond}, the same faces: regressor / mean face | {r.get(f'n_fitted_{cond}')} | "
                                 f"{f(r[f'p90_mm_regressor_fitted_faces_{cond}'])} / "
                                 f"{f(r.get(f'p90_mm_mean_face_fitted_faces_{cond}'))} | | |")
        if r.get("p90_mm_fitted_true_points") is not None:
            lines.append(f"| clean, fitted to the true 68 points (upper bound) | {r.get('n_fitted_true_points')} | "
                         f"{f(r.get('p90_mm_fitted_true_points'))} | {f(r.get('mean_mm_fitted_true_points'))} | "
                         f"{f(r.get('lmk_nme_fitted_true_points'), 4)} |")
    lines += [f"| mean face (baseline) | {r.get('n_clean')} | {f(r.get('p90_mm_mean_face'))} | "
              f"{f(r.get('mean_mm_mean_face'))} | — |", "",
              f"De-occlusion: {dc.get('model_uri') or dc.get('ref') or 'none'}"
              + (f" — {dc['note']}" if dc.get("note") else "") + ".", "",
              f"Face-feature loss (eq. 15): {r.get('face_feature_loss')}.", "",
              (f"Fit (recon3d.fit): {fit.get('steps')} Levenberg–Marquardt steps"
               + (f" + {fit.get('photo_steps')} photometric" if fit.get("photo_steps") else "")
               + f", {f(fit.get('seconds_per_face'))} s per face." if fit.get("enabled") else "Fit: off."), "",
              "| occluder | faces | p90 (mm) |", "|---|---|---|"]
    lines += [f"| {k} | {v['n']} | {f(v['p90_mm'])} |" for k, v in (r.get("per_kind_p90_mm_occluded") or {}).items()]
    return "\n".join(lines) + "\n"
