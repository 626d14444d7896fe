"""`faceparse compose` (a composed stage's bundle from the models it composes) and `faceparse complete`
(map completion on photos or a whole dataset)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ...commands.common import (
    DetectOpt,
    ModelOpt,
    ParamsOpt,
    PhotosArg,
    QuietOpt,
    SetOpt,
    console,
    emit_json,
    friendly_errors,
    report_photos,
)
from ...config import load_params
from .. import get_stage

# Imports inside functions here: the command line starts without torch / mlflow (tests/code/test_light_imports.py)


def register(app: typer.Typer) -> None:
    @app.command("compose")
    @friendly_errors
    def compose_cmd(
        parser: Optional[str] = ModelOpt("parser", "--parser", what="parser model", default="completion.compose.parser"),
        landmarks: Optional[str] = ModelOpt("landmarks", "--landmarks", what="landmark model",
                                            default="completion.compose.landmarks"),
        params: Optional[Path] = ParamsOpt,
        set_: Optional[List[str]] = SetOpt,
        stage: Optional[str] = typer.Option("completion", "--stage", help="the composed stage (`faceparse stages`: trainable no)"),
    ):
        """Bundle a stage that trains nothing (map completion) from the models it composes.

        Writes <stage>.train.bundle_dir: both models' weights and metas, Algorithm 1's settings
        (completion.model) and where each model came from (its registry version when `register` recorded
        the same weights). Evaluate, register, promote and serve it like any other stage."""
        st = get_stage(stage or "completion")
        if st.info.trainable or not hasattr(st, "compose"):
            raise ValueError(f"stage {st.name!r} is trained, not composed: use `faceparse train --stage {st.name}`")
        res = st.compose(load_params(params, set_ or []), {"parser": parser, "landmarks": landmarks})
        parts = ", ".join(f"{k} {v.get('model_uri') or v['ref']}" for k, v in res["composes"].items())
        console.print(f"[green]composed[/] {res['bundle']} ({st.name}): {parts}", soft_wrap=True)
        emit_json({"bundle": res["bundle"], "stage": st.name, "composes": res["composes"],
                   "model_config": res["model_config"]})

    @app.command("complete")
    @friendly_errors
    def complete_cmd(
        images: Optional[List[str]] = PhotosArg(required=False),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="output folder (photos: required; "
                                           "--dataset: default completion.dataset_out)"),
        dataset: Optional[Path] = typer.Option(None, "--dataset", help="complete every sample of this canonical "
                                               "dataset instead (completed/ + occlusion/ for the next stage)"),
        model: Optional[str] = ModelOpt("completion", what="a completion bundle", default=""),
        parser: Optional[str] = ModelOpt("parser", "--parser", what="parser model", shipped=True),
        landmarks: Optional[str] = ModelOpt("landmarks", "--landmarks", what="landmark model", shipped=True),
        resolution: Optional[int] = typer.Option(None, "--resolution", "-r",
                                                 help="long side of the maps (default: the photo's own; an aligned "
                                                      "face or --no-detect: the bundle's input size)"),
        detect: bool = DetectOpt,
        quiet: bool = QuietOpt,
        params: Optional[Path] = ParamsOpt,
        set_: Optional[List[str]] = SetOpt,
    ):
        """Complete face-parsing maps hidden by occluders (Zhao & Qi's Algorithm 1).

        Per photo: the parser's map M_alpha, the map drawn from the 68 landmarks M_beta, the completed map
        M_gamma, the occlusion mask (face in M_gamma, not in M_alpha) and a contact sheet of all of them —
        each face found, framed and completed in place, the maps of the photo's shape. Exit 1 when a photo
        could not be read or holds no face (the others are still written)."""
        from .photo import complete_dataset, complete_images

        p = load_params(params, set_ or [])   # whole: each composed stage's registry section is read
        if dataset is not None:
            if images:
                raise ValueError("give photos or --dataset, not both")
            res = complete_dataset(p, dataset, out, model, parser, landmarks, progress=not quiet)
            console.print(f"[green]completed[/] {res['count']} samples of {dataset} → {res['out']}", soft_wrap=True)
            emit_json(res)
            return
        if not images or out is None:
            raise ValueError("give photos and --out DIR (or --dataset DIR)")
        report_photos(complete_images(p, images, out, model, parser, landmarks, resolution, progress=not quiet,
                                      detect=detect), "completed", out)
