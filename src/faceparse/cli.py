"""The `faceparse` command line: one command per pipeline step, each calling one library function.

Heavy libraries (torch, mlflow, great-expectations) are imported inside the commands, so `--help`
stays fast."""
from __future__ import annotations

import importlib

import typer

from . import __version__
from .stages import stage_cli_modules

# Imports inside functions here: the command line starts without torch / mlflow (tests/code/test_light_imports.py)

app = typer.Typer(
    name="faceparse",
    help="Face parsing from data to endpoint: synthesise/ingest → validate → train → evaluate → "
         "register → package → serve. Configuration comes from params.yaml (see --params / --set).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"faceparse {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                       help="print the version and exit")) -> None:
    from .runtime import own_process

    own_process()  # this process is ours: big tensors kept in the heap, threads governed (faceparse.runtime)


# Command groups, in pipeline order; each module's register(app) adds its commands. A stage's own verbs
# (`complete`, `deocclude`, …) come from its package's `cli` module, after evaluation.
COMMAND_MODULES = ("data", "model", "train", "evaluate", *stage_cli_modules(), "chain", "serve", "ui")

for _name in COMMAND_MODULES:
    importlib.import_module(_name if "." in _name else f"faceparse.commands.{_name}").register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
