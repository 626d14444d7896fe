"""`faceparse chain`: every stage of the occlusion-robust pipeline on photos in one command."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .common import DetectOpt, OutOpt, PhotosArg, QuietOpt, friendly_errors, report_photos

# Imports inside functions here: the command line starts without torch / mlflow (tests/code/test_light_imports.py)

def register(app: typer.Typer) -> None:
    @app.command("chain")
    @friendly_errors
    def chain_cmd(
        images: List[str] = PhotosArg(),
        out: Path = OutOpt,
        model: Optional[List[str]] = typer.Option(
            None, "--model", "-m", help="STAGE=REF: another model for fisn, recon3d or completion (default: the shipped "
                                        "ones; completion: the one the FISN bundle carries, the parser and landmark "
                                        "model composed); REF: a bundle directory or models:/NAME@ALIAS"),
        resolution: int = typer.Option(512, "--resolution", "-r", min=64, max=4096,
                                       help="the long side the maps are computed at (then scaled to the photo's size)"),
        fit: bool = typer.Option(True, "--fit/--no-fit", help="fit each face's 3D model to the points, outline and "
                                                             "visible skin (default); --no-fit: the regressor alone"),
        detect: bool = DetectOpt,
        quiet: bool = QuietOpt,
    ):
        """Landmarks, face parsing, completed map, de-occlusion and a 3D mesh for each photo, in one run.

        Per photo <stem>: _labels.png and _completed.png (palette PNGs of the class ids), _occlusion.png (the
        pixels the de-occluder replaced), _deoccluded.png, _mesh_overlay.png, _points.json (68 points per face),
        _mesh<k>.obj / .json per face, and _sheet.jpg (everything side by side, with each stage's seconds), all at
        the photo's own size; chain.json names every model (reference, weights hash). Exit 1 when a photo could not
        be read or holds no face (the others are still written)."""
        from ..chain import chain_images

        models = _stage_refs(model or [])
        report_photos(chain_images(images, out, models, None if fit else {"enabled": False}, resolution,
                                   detect=detect, progress=not quiet), "chained", out)


def _stage_refs(pairs: list[str]) -> dict[str, str]:
    out = {}
    for p in pairs:
        stage, sep, ref = p.partition("=")
        if not sep or not stage or not ref:     # the stage name itself is checked by load_chain
            raise typer.BadParameter(f"--model {p!r}: give STAGE=REF, e.g. recon3d=artifacts/recon3d/model")
        out[stage] = ref
    return out
