"""Options and error handling shared by every CLI command."""
from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer
from ..config import ConfigError, load_params
from ..log import console

ParamsOpt = typer.Option(None, "--params", "-p", help="params file (default: $FACEPARSE_PARAMS or ./params.yaml)")
SetOpt = typer.Option(None, "--set", "-s", help="override a param, e.g. --set train.epochs=3 (repeatable)")
StageOpt = typer.Option(None, "--stage", help="model stage (default: params `stage`; `faceparse stages` lists them)")
DetectOpt = typer.Option(True, "--detect/--no-detect",
                         help="find and frame every face of a photo, answers in the photo's pixels (default); "
                              "--no-detect: the inputs are aligned face crops, taken whole")


def params_from(params: Optional[Path], sets: Optional[List[str]], stage: Optional[str] = None) -> dict[str, Any]:
    """The params file + overrides, resolved for ``stage`` (its own section replaces the top-level ones)."""
    from ..stages import for_stage

    return for_stage(load_params(params, sets or []), stage)


def params_or_empty(params: Optional[Path], sets: Optional[List[str]], stage: Optional[str] = None) -> dict[str, Any]:
    """params.yaml when there is one; {} when none was asked for and ./params.yaml is absent, so commands
    with explicit options (data ingest, predict, ...) also work outside the repository."""
    try:
        return params_from(params, sets, stage)
    except ConfigError:
        if params is None and not sets:
            from ..config import find_params

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
