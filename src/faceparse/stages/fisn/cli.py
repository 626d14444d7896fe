"""`faceparse deocclude`: the whole chain (landmarks → parser → Algorithm 1 → FISN) on photos."""
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
    @app.command("deocclude")
    @friendly_errors
    def deocclude_cmd(
        images: List[str] = PhotosArg(),
        out: Path = OutOpt,
        model: Optional[str] = ModelOpt("fisn", what="the FISN model", shipped=True),
        completion: Optional[str] = ModelOpt("completion", "--completion", default="",
                                             what="a completion model to run instead of the one the FISN bundle carries"),
        detect: bool = DetectOpt,
        quiet: bool = QuietOpt,
        params: Optional[Path] = ParamsOpt,
        set_: Optional[List[str]] = SetOpt,
    ):
        """Remove occluders from faces: the completed map guides the de-occlusion generator (FISN).

        Per photo: <stem>_deoccluded.png (the photo at its own size, each face's occluded pixels re-synthesised),
        _mask.png (those pixels), and for its most confident face _raw.png (the generator's whole output at
        its size), M_alpha / M_beta / M_gamma and a contact sheet; deocclude.json names every model's version.
        Exit 1 when a photo could not be read or holds no face (the others are still written)."""
        from .photo import deocclude_images

        report_photos(deocclude_images(load_params(params, set_ or []), images, out, model, completion,
                                       progress=not quiet, detect=detect), "de-occluded", out)
