"""`faceparse reconstruct`: 3D faces (mesh, coefficients, render overlay) from photos."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ...commands.common import DetectOpt, ParamsOpt, SetOpt, console, emit_json, friendly_errors

ModelRef = "models:/NAME@ALIAS, models:/NAME/VERSION or a bundle directory"


def register(app: typer.Typer) -> None:
    @app.command("reconstruct")
    @friendly_errors
    def reconstruct_cmd(
        images: List[str] = typer.Argument(..., help="photos: files, folders or glob patterns"),
        out: Path = typer.Option(..., "--out", "-o", help="output folder"),
        model: Optional[str] = typer.Option(None, "--model", "-m",
                                            help=f"the recon3d model (default: models:/<recon3d.registry.model_name>@champion): {ModelRef}"),
        deocclude: bool = typer.Option(False, "--deocclude", help="remove occluders first (the de-occlusion chain)"),
        fisn: Optional[str] = typer.Option(None, "--fisn", help=f"--deocclude: the FISN model (default: its champion): {ModelRef}"),
        detect: bool = DetectOpt,
        quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
        params: Optional[Path] = ParamsOpt,
        set_: Optional[List[str]] = SetOpt,
    ):
        """Reconstruct 3D faces: per photo <stem>.obj (mesh with vertex colours, cm), <stem>_coeffs.json
        (identity, expression, albedo, SH light, pose, projected landmarks) and <stem>_overlay.png (the render
        over the photo); with --deocclude also <stem>_deoccluded.png. The photo's most confident face is found
        and framed as the 3D training faces were; landmarks and the overlay are in the photo's pixels.
        reconstruct.json names every model's version. Exit 1 when a photo could not be read or holds no face
        (the others are still written)."""
        from ...config import load_params
        from .photo import reconstruct_images

        res = reconstruct_images(load_params(params, set_ or []), images, out, model, deocclude, fisn,
                                 progress=not quiet, detect=detect)
        ok = [r for r in res["results"] if r["ok"]]
        names = ", ".join(f"{k} {v.get('model_uri') or v.get('ref')}" for k, v in res["models"].items())
        console.print(f"[green]reconstructed[/] {len(ok)}/{len(res['results'])} images → {out} ({names})", soft_wrap=True)
        emit_json(res)
        if len(ok) < len(res["results"]):
            raise typer.Exit(1)
