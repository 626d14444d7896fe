"""Options and error handling shared by every CLI command."""
from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer

from ..config import ConfigError, find_params, load_params
from ..log import console
from ..stages import for_stage

ParamsOpt = typer.Option(None, "--params", "-p", help="params file (default: $FACEPARSE_PARAMS or ./params.yaml)")
SetOpt = typer.Option(None, "--set", "-s", help="override a param, e.g. --set train.epochs=3 (repeatable)")
StageOpt = typer.Option(None, "--stage", help="model stage (default: params `stage`; `faceparse stages` lists them)")
DetectOpt = typer.Option(True, "--detect/--no-detect",
                         help="find and frame every face of a photo, answers in the photo's pixels (default); "
                              "--no-detect: the inputs are aligned face crops, taken whole")
QuietOpt = typer.Option(False, "--quiet", "-q", help="no progress bar")
OutOpt = typer.Option(..., "--out", "-o", help="output folder")
MODEL_REF = "models:/NAME@ALIAS, models:/NAME/VERSION or a bundle directory"
CHAMPION = object()   # ModelOpt's default: the stage's registry champion


def PhotosArg(required: bool = True) -> Any:   # factories named like the options they make
    return typer.Argument(... if required else None, help="photos: files, folders or glob patterns")


def ModelOpt(stage: str, *names: str, what: str = "", default: Any = CHAMPION, shipped: bool = False) -> Any:
    """A model reference option (``--model/-m`` unless ``names``) for ``stage``: its help says what the model
    is (``what``, default "the <stage> model"), its default when left out (``default``; CHAMPION:
    ``models:/<stage.registry.model_name>@champion``, after the model shipped with faceparse when ``shipped``;
    "": none said) and the references it takes."""
    said = f"models:/<{stage}.registry.model_name>@champion" if default is CHAMPION else default
    said = f"the one shipped with faceparse, else {said}" if shipped else said
    return typer.Option(None, *(names or ("--model", "-m")),
                        help=f"{what or f'the {stage} model'}{f' (default: {said})' if said else ''}: {MODEL_REF}")


def report_photos(res: Any, verb: str, out: Any) -> None:
    """The end of a photo command: "<verb> N/M images → OUT (the models used)", the result as JSON, exit 1
    when a photo could not be read or held no face (``res``: a list of per-photo results, or a dict with
    ``results`` and ``models``)."""
    results = res["results"] if isinstance(res, dict) else res
    ok = [r for r in results if r["ok"]]
    used = ""
    if isinstance(res, dict):
        named = {k: v.get("model_uri") or v.get("ref") for k, v in res["models"].items() if isinstance(v, dict)}
        used = " (" + ", ".join(f"{k} {v}" for k, v in named.items() if v) + ")"
    console.print(f"[green]{verb}[/] {len(ok)}/{len(results)} images → {out}{used}", soft_wrap=True)
    emit_json(res)
    if len(ok) < len(results):
        raise typer.Exit(1)


def params_from(params: Optional[Path], sets: Optional[List[str]], stage: Optional[str] = None) -> dict[str, Any]:
    """The params file + overrides, resolved for ``stage`` (its own section replaces the top-level ones)."""
    return for_stage(load_params(params, sets or []), stage)


def params_or_empty(params: Optional[Path], sets: Optional[List[str]], stage: Optional[str] = None) -> dict[str, Any]:
    """params.yaml when there is one; {} when none was asked for and ./params.yaml is absent, so commands
    with explicit options (data ingest, predict, ...) also work outside the repository."""
    try:
        return params_from(params, sets, stage)
    except ConfigError:
        if params is None and not sets:
            try:
                find_params(None)
            except ConfigError:
                return {}
        raise


def friendly_errors(fn: Callable) -> Callable:
    """Turn the library's input errors into one red line and exit code 2, instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ConfigError, ValueError, FileNotFoundError, FileExistsError, PermissionError) as e:
            console.print(f"[bold red]error:[/] {e}")
            raise typer.Exit(2) from None

    return wrapper


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")
