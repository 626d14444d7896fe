"""`faceparse ui mlflow`: user interfaces started from the project."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .common import ParamsOpt, SetOpt, console, friendly_errors, params_or_empty


def register(app: typer.Typer) -> None:
    ui_app = typer.Typer(help="User interfaces on 127.0.0.1.", no_args_is_help=True)
    app.add_typer(ui_app, name="ui")

    @ui_app.command("mlflow")
    @friendly_errors
    def mlflow_ui(
        port: int = typer.Option(5000, help="port on 127.0.0.1"),
        host: str = typer.Option("127.0.0.1", help="address to bind (loopback by default)"),
        params: Optional[Path] = ParamsOpt,
        set_: Optional[List[str]] = SetOpt,
    ):
        """The MLflow UI over this project's runs and registry (registry.tracking_uri, else runs/mlflow),
        as ONE lean server process (MLflow's job runner and its consumers are left off). Ctrl-C stops it."""
        import os

        from ..tracking import ui_command

        argv, env = ui_command(params_or_empty(params, set_), host=host, port=port)
        console.print(f"MLflow UI: [bold]http://{host}:{port}[/] (store {argv[argv.index('--backend-store-uri') + 1]})")
        os.execve(argv[0], argv, env)  # this process becomes the server: nothing else stays resident
