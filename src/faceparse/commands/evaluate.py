"""`faceparse evaluate`, `register`, `promote`, `rollback`, `predict`: from a trained bundle to a registered,
promoted model, and predictions from any model the registry (or a folder) holds."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..stages import get_stage
from .common import ParamsOpt, SetOpt, StageOpt, console, emit_json, friendly_errors, params_from, params_or_empty

# Imports inside functions here: the command line starts without torch / mlflow (tests/code/test_light_imports.py)

PrecisionOpt = typer.Option(None, "--precision",
                            help="fp32 | int8 (default: the bundle's; int8 needs a bundle from `faceparse quantize`)")
ModelHelp = ("models:/NAME@ALIAS, models:/NAME/VERSION, a bundle directory (weights.pt + bundle.json) or a "
             "training checkpoint .pt")



def _score_photos(bundle: Optional[str], folder: Path, detect: bool, params, set_, stage: Optional[str]) -> None:
    """The stage's real-photo benchmark (its ``photo_benchmark``) on ``folder``: table, summary, JSON."""
    name = stage or (params_or_empty(params, set_) or {}).get("stage") or "parser"
    own = params_from(params, set_, name)
    ref = str(bundle or own["train"]["bundle_dir"])
    table, line, res = get_stage(name).photo_benchmark(ref, folder, detect, own)
    console.print(table, soft_wrap=True)
    console.print(f"[green]{line}[/]", soft_wrap=True)
    emit_json({"bundle": ref, **res})


def register(app: typer.Typer) -> None:
    @app.command("evaluate")
    @friendly_errors
    def evaluate_cmd(
        bundle: Optional[str] = typer.Option(None, "--bundle", "-b",
                                             help=f"model to evaluate (default: train.bundle_dir): {ModelHelp}"),
        data: Optional[Path] = typer.Option(None, "--data", "-d", help="canonical dataset (default: data.dir)"),
        photos: Optional[Path] = typer.Option(
            None, "--photos", help="score on real photos instead — the parser: <stem>.jpg beside <stem>.png "
            "(class ids); --stage landmarks: photos beside dlib68.json (reference points); --stage fisn: labelled "
            "photos, occluders pasted at known masks (bars, a palm, another face's eye); e.g. "
            "../shared/fixtures/celebamask-hq-samples. Each photo detected and aligned as `predict` does; a "
            "table printed (per-class F1 / per-photo NME with the mean-shape baseline / PSNR beside cv2.inpaint); "
            "fisn also draws its cases in evaluate.plots_dir/photos_pasted.png"),
        no_detect: bool = typer.Option(False, "--no-detect", help="with --photos: the photos are aligned crops"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
        precision: Optional[str] = PrecisionOpt,
        params: Optional[Path] = ParamsOpt,
        set_: Optional[List[str]] = SetOpt,
        stage: Optional[str] = StageOpt,
    ):
        """Score a model on the test split (quarantined ids left out).

        Writes evaluate.metrics_file (per-class F1/IoU, mean F1, mIoU, the multi-resolution table 64…512),
        the plots in evaluate.plots_dir and the paper-style markdown table evaluate.table_file; logs the test
        metrics to the bundle's MLflow run when it has one. Prints the metrics as JSON on stdout.
        With --photos: the model on real photos (a per-class F1 or per-photo NME table, then JSON)."""
        from ..evaluate import evaluate

        if photos is not None:
            return _score_photos(bundle, photos, not no_detect, params, set_, stage)

        res = evaluate(params_from(params, set_, stage), bundle_dir=bundle, dataset_dir=data, progress=not quiet,
                       precision=precision)
        key = get_stage(res["stage"]).primary_metric
        value = "n/a" if res.get(key) is None else f"{res[key]:.4f}"
        console.print(f"[green]evaluated[/] {res['bundle']} ({res['stage']}) on {res['n_images']} {res['split']} "
                      f"images: {key} {value}", soft_wrap=True)
        if "multires" in res:
            multires = "  ".join(f"{s}: {m['mean_f1']:.4f}" if m["mean_f1"] is not None else f"{s}: n/a"
                                 for s, m in sorted(res["multires"].items(), key=lambda kv: int(kv[0])))
            console.print(f"mean F1 by output size: {multires}", soft_wrap=True)
        emit_json({k: res[k] for k in (key, "mean_f1", "miou", "pixel_acc", "mean_shape_nme", "n_images", "multires",
                                       "stage", "bundle", "bundle_sha256", "precision") if k in res})

    @app.command("register")
    @friendly_errors
    def register_cmd(
        bundle: Optional[Path] = typer.Option(None, "--bundle", "-b", help="bundle directory (default: train.bundle_dir)"),
        metrics: Optional[Path] = typer.Option(None, "--metrics", "-m",
                                               help="test metrics of this bundle (default: evaluate.metrics_file)"),
        params: Optional[Path] = ParamsOpt,
        set_: Optional[List[str]] = SetOpt,
        stage: Optional[str] = StageOpt,
    ):
        """Register a bundle as a new version of registry.model_name (alias 'challenger').

        The bundle is logged as an artifact of its training run (or of a new run), the version gets alias
        'challenger' and the test metrics as tags; writes metrics/registered.json."""
        from ..registry import register

        res = register(params_from(params, set_, stage), bundle_dir=bundle, metrics_file=metrics)
        st = get_stage(res["stage"])
        console.print(f"[green]registered[/] {res['name']} v{res['version']} @{res['alias']} "
                      f"(test {st.info.metric_label} {res[st.primary_metric]}) in {res['tracking_uri']}", soft_wrap=True)
        emit_json(res)

    @app.command("promote")
    @friendly_errors
    def promote_cmd(params: Optional[Path] = ParamsOpt, set_: Optional[List[str]] = SetOpt,
                    stage: Optional[str] = typer.Option(
                        None, "--stage", help="model stage (default: params `stage`); several comma-separated "
                                              "(parser,landmarks) are promoted in turn by one process")):
        """Move alias 'champion' to the challenger if it beats the champion's test metric (the stage's:
        mean F1, higher is better; landmark NME, lower is better).

        The challenger must beat the champion by more than registry.promote_margin; the first model is always
        promoted. The decision and its reason are recorded as model-version tags; a refusal is not an error
        (exit 0, "promoted": false). With several stages the JSON is a list, one decision per stage."""
        from ..registry import promote

        results = []
        for one in (stage.split(",") if stage else [None]):
            res = promote(params_from(params, set_, one.strip() if one else None))
            colour = "green" if res["promoted"] else "yellow"
            console.print(f"[{colour}]{'promoted' if res['promoted'] else 'not promoted'}[/]"
                          f"{f' ({one.strip()})' if stage and ',' in stage else ''}: {res['reason']}", soft_wrap=True)
            results.append(res)
        emit_json(results if stage and "," in stage else results[0])

    @app.command("rollback")
    @friendly_errors
    def rollback_cmd(params: Optional[Path] = ParamsOpt, set_: Optional[List[str]] = SetOpt,
                    stage: Optional[str] = StageOpt):
        """Point 'champion' back at the previous champion (recorded when the current one was promoted)."""
        from ..registry import rollback

        res = rollback(params_from(params, set_, stage))
        console.print(f"[green]rolled back[/] {res['name']}: champion v{res['champion_before']} → "
                      f"v{res['champion_after']}", soft_wrap=True)
        emit_json(res)

    @app.command("predict")
    @friendly_errors
    def predict_cmd(
        inputs: List[str] = typer.Argument(..., help="image files, folders and/or glob patterns (quote globs)"),
        model: Optional[str] = typer.Option(None, "--model", "-m",
                                            help=f"{ModelHelp} (default: the model of --stage shipped with "
                                                 "faceparse: the parser, or --stage landmarks)"),
        out: Path = typer.Option(..., "--out", "-o", help="output folder"),
        resolution: Optional[int] = typer.Option(None, "--resolution", "-r",
                                                 help="output size in pixels, any value 1…4096 "
                                                      "(default: the model's input size)"),
        masks: bool = typer.Option(False, "--masks", help="also write <stem>_masks/<class>.png (0/255) per class"),
        detect: bool = typer.Option(True, "--detect/--no-detect",
                                    help="find, align and parse every face of a photo (default); --no-detect: "
                                         "the inputs are aligned face crops, parsed whole"),
        batch_size: int = typer.Option(4, "--batch-size", help="images per forward pass"),
        device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:1… (default: a GPU if any)"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
        precision: Optional[str] = PrecisionOpt,
        params: Optional[Path] = ParamsOpt,
        set_: Optional[List[str]] = SetOpt,
        stage: Optional[str] = StageOpt,
    ):
        """Parse faces in images with any model: label maps, overlays, masks (a landmark model: 68 points per face).

        Per input, --out gets <stem>_label.png (palette PNG of class ids) and <stem>_overlay.png. Photos: each
        face is detected, aligned, parsed and warped back; the map has the photo's shape, its long side
        --resolution (default: the photo's). Aligned faces (--no-detect, or a CelebAMask-HQ-framed photo) are
        resized to the model's input size and decoded at --resolution². Unreadable images and photos without
        a face are named and skipped (exit 1 once the rest are written). --stage landmarks (or a landmark
        --model): <stem>_points.json (68 points per face, the photo's pixels) and <stem>_overlay.png."""
        from ..predict import predict

        p = params_or_empty(params, set_, stage)
        results = predict(model, inputs, out, resolution=resolution, masks=masks, batch_size=batch_size,
                          params=p, progress=not quiet, device=device, detect=detect, precision=precision,
                          stage=stage)
        failed = [r for r in results if not r["ok"]]
        done = len(results) - len(failed)
        console.print(f"[green]predicted[/] {done} image(s) into {out}"
                      + (f"; [bold red]{len(failed)} failed[/]" if failed else ""), soft_wrap=True)
        emit_json({"model": model or "pretrained", "out": str(out), "ok": done, "failed": len(failed), "results": results})
        if failed:
            raise typer.Exit(1)

    @app.command("quantize")
    @friendly_errors
    def quantize_cmd(
        bundle: str = typer.Option(..., "--bundle", "-b", help=f"the fp32 parser: {ModelHelp}"),
        out: Path = typer.Option(..., "--out", "-o", help="folder of the int8 bundle"),
        calib: int = typer.Option(32, "--calib", help="training images the activation ranges are calibrated on"),
        data: Optional[Path] = typer.Option(None, "--data", "-d", help="canonical dataset (default: data.dir)"),
        split: str = typer.Option("train", "--split", help="split the calibration images come from"),
        params: Optional[Path] = ParamsOpt,
        set_: Optional[List[str]] = SetOpt,
    ):
        """Int8 parser bundle: activation ranges calibrated on --calib training images, recorded in bundle.json
        with "precision": "int8" (the fp32 weights kept). predict / evaluate / serve then run it in int8 (x86
        CPU; --precision fp32 still runs it in fp32)."""
        from ..quantize import quantize_bundle

        res = quantize_bundle(bundle, out, calib=calib, data_dir=data, split=split,
                              params=params_or_empty(params, set_))
        cal = res["calibration"]
        console.print(f"[green]quantized[/] {bundle} → {out} (int8, {cal['images']} {cal['split']} images)",
                      soft_wrap=True)
        emit_json(res)
