"""`faceparse reconstruct`: 3D faces (mesh, coefficients, render overlay) from photos."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ...commands.common import (
    DetectOpt,
    ModelOpt,
    OutOpt,
    ParamsOpt,
    PhotosArg,
    QuietOpt,
    SetOpt,
    friendly_errors,
    report_photos,
)
from ...config import load_params

# Imports inside functions here: the command line starts without torch / mlflow (tests/code/test_light_imports.py)


def register(app: typer.Typer) -> None:
    @app.command("reconstruct")
    @friendly_errors
    def reconstruct_cmd(
        images: List[str] = PhotosArg(),
        out: Path = OutOpt,
        model: Optional[str] = ModelOpt("recon3d"),
        deocclude: bool = typer.Option(False, "--deocclude", help="remove occluders first (the de-occlusion chain)"),
        fisn: Optional[str] = ModelOpt("fisn", "--fisn", what="--deocclude: the FISN model", default="its champion"),
        fit: Optional[bool] = typer.Option(None, "--fit/--no-fit",
                                           help="refine each face by fitting to its landmarks and outline (default: recon3d.fit.enabled)"),
        detect: bool = DetectOpt,
        quiet: bool = QuietOpt,
        params: Optional[Path] = ParamsOpt,
        set_: Optional[List[str]] = SetOpt,
    ):
        """Reconstruct 3D faces: per photo <stem>.obj (mesh with vertex colours, cm), <stem>_coeffs.json
        (identity, expression, albedo, SH light, pose, projected landmarks) and <stem>_overlay.png (the render
        over the photo); with --deocclude also <stem>_deoccluded.png. The photo's most confident face is found
        and framed as the 3D training faces were; landmarks and the overlay are in the photo's pixels.
        reconstruct.json names every model's version. Exit 1 when a photo could not be read or holds no face
        (the others are still written). Each face is then refined by fitting (recon3d.fit: the shipped landmark
        model's points, the shipped parser's outline; --no-fit: the regressor alone); reconstruct.json records
        the seconds per face."""
        from .photo import reconstruct_images

        report_photos(reconstruct_images(load_params(params, set_ or []), images, out, model, deocclude, fisn,
                                         progress=not quiet, detect=detect, fit=fit), "reconstructed", out)
