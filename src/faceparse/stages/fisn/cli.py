"""`faceparse deocclude`: the whole chain (landmarks → parser → Algorithm 1 → FISN) on photos."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ...commands.common import DetectOpt, ParamsOpt, SetOpt, console, emit_json, friendly_errors

ModelRef = "models:/NAME@ALIAS, models:/NAME/VERSION or a bundle directory"


def register(app: typer.Typer) -> None:
    @app.command("deocclude")
    @friendly_errors
    def deocclude_cmd(
        images: List[str] = typer.Argument(..., help="photos: files, folders or glob patterns"),
        out: Path = typer.Option(..., "--out", "-o", help="output folder"),
        model: Optional[str] = typer.Option(None, "--model", "-m",
                                            help="the FISN model (default: the one shipped with faceparse, else "
                                            f"models:/<fisn.registry.model_name>@champion): {ModelRef}"),
        completion: Optional[str] = typer.Option(None, "--completion",
                                                 help=f"a completion model to run instead of the one the FISN bundle carries: {ModelRef}"),
        detect: bool = DetectOpt,
        quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
        params: Optional[Path] = ParamsOpt,
        set_: Optional[List[str]] = SetOpt,
    ):
        """Remove occluders from faces: the completed map guides the de-occlusion generator (FISN).

        Per photo: <stem>_deoccluded.png (the photo at its own size, each face's occluded pixels re-synthesised),
        _mask.png (those pixels), and for its most confident face _raw.png (the generator's whole output at
        its size), M_alpha / M_beta / M_gamma and a contact sheet; deocclude.json names every model's version.
        Exit 1 when a photo could not be read or holds no face (the others are still written)."""
        from ...config import load_params
        from .photo import deocclude_images

        res = deocclude_images(load_params(params, set_ or []), images, out, model, completion, progress=not quiet,
                               detect=detect)
        ok = [r for r in res["results"] if r["ok"]]
        names = ", ".join(f"{k} {v.get('model_uri') or v.get('ref')}" for k, v in res["models"].items())
        console.print(f"[green]de-occluded[/] {len(ok)}/{len(res['results'])} images → {out} ({names})", soft_wrap=True)
        emit_json(res)
        if len(ok) < len(res["results"]):
            raise typer.Exit(1)
