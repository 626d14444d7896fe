"""`faceparse ui mlflow`, `faceparse ui page`: user interfaces started from the project."""
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

    @ui_app.command("page")
    @friendly_errors
    def page(
        port: int = typer.Option(8090, help="port on 127.0.0.1"),
        host: str = typer.Option("127.0.0.1", help="address to bind (loopback by default)"),
        endpoint: Optional[str] = typer.Option(None, help="a running endpoint's URL (the canary router or "
                                               "TorchServe's inference API): forward each photo to it"),
        token: Optional[str] = typer.Option(None, envvar="FACEPARSE_TOKEN",
                                            help="bearer token for --endpoint (TorchServe's inference key)"),
        serve_dir: Optional[Path] = typer.Option(None, help="the run dir of a `faceparse serve start` server: its "
                                                 "endpoint and key file (default: used when a server runs there)"),
        in_process: bool = typer.Option(False, "--in-process", help="the models in this process, even when a "
                                        "local server runs"),
        parser: Optional[str] = typer.Option(None, help="in-process parser: bundle dir or models:/ URI "
                                             "(default: the registry champion)"),
        landmarks: Optional[str] = typer.Option(None, help="in-process landmark model (default: its champion)"),
        completion: Optional[str] = typer.Option(None, help="in-process completion bundle (default: composed "
                                                 "from --parser and --landmarks)"),
        parser_model: Optional[str] = typer.Option(None, help="endpoint model name of the parser "
                                                   "(default: its registry.model_name)"),
        landmarks_model: Optional[str] = typer.Option(None, help="endpoint model name of the landmark stage"),
        completion_model: Optional[str] = typer.Option(None, help="endpoint model name of the completion stage"),
        samples: Optional[Path] = typer.Option(None, help="a folder of JPEG/PNG photos offered as samples too"),
        max_upload_mb: float = typer.Option(20.0, help="largest file the page takes, MB"),
        params: Optional[Path] = ParamsOpt,
        set_: Optional[List[str]] = SetOpt,
    ):
        """A web page for people: upload, drop or pick a photo; see the parser's overlay (classes toggled,
        output resolution 64…1024), the 68 landmarks, the completion maps, which model version and canary arm
        answered. Answers come from --endpoint / a running local server, else from the models in this process.
        Ctrl-C stops it."""
        from ..config import ConfigError, load_params
        from ..serve import server as serve_server
        from ..serve.imaging import DEFAULT_MAX_PIXELS
        from ..stages import for_stage, get_stage
        from ..ui.app import PageServer, folder_samples, serve, synthetic_samples
        from ..ui.backends import Endpoint, InProcess

        if not 0 < max_upload_mb <= 1024:
            raise ValueError(f"--max-upload-mb must be in (0, 1024], got {max_upload_mb}")
        if host not in ("127.0.0.1", "::1", "localhost"):
            console.print(f"[yellow]warning:[/] binding {host}: the page has no authentication")
        try:
            raw = load_params(params, set_ or [])
        except ConfigError:
            if params is not None or set_:
                raise
            raw = {}
        if endpoint is None and serve_dir is None and not in_process:
            if serve_server.token(None) is not None:      # a local server runs (its key file is readable)
                serve_dir = serve_server.run_dir_of(None)
                console.print(f"a local server runs from {serve_dir}: the page asks it (--in-process: not)")
        if (endpoint or serve_dir) and not in_process:
            names = {}
            for stage, given in (("parser", parser_model), ("landmarks", landmarks_model),
                                 ("completion", completion_model)):
                try:
                    names[stage] = given or str(for_stage(raw, stage)["registry"]["model_name"])
                except (KeyError, TypeError, ValueError):      # no params here: the stage's default name
                    names[stage] = get_stage(stage).info.model_name
            table = str((raw.get("data") or {}).get("label_table") or "celebamask-hq")
            backend = Endpoint(endpoint or "", names, token=token, serve_dir=str(serve_dir) if serve_dir else None,
                               label_table=table)
            console.print(f"answers from the endpoint [bold]{backend.url}[/] (models: "
                          + ", ".join(f"{k} {v!r}" for k, v in names.items() if v) + ")")
        else:
            console.print("loading the models in this process…")
            backend = InProcess(raw, {"parser": parser, "landmarks": landmarks, "completion": completion})
            for stage, i in backend.stage_info.items():
                line = f"{stage}: {i['model']}" if i["available"] else f"{stage}: [yellow]{i['message']}[/]"
                console.print("  " + line)
        found = synthetic_samples() + (folder_samples(samples) if samples else [])
        max_pixels = int((raw.get("serve") or {}).get("max_pixels") or DEFAULT_MAX_PIXELS)
        page_server = PageServer(backend, found, max_upload=int(max_upload_mb * 1024 * 1024), max_pixels=max_pixels)
        try:
            serve(page_server, host=host, port=port,
                  ready=lambda url: console.print(f"faceparse page: [bold]{url}[/] (Ctrl-C stops it)"))
        except OSError as e:
            raise ValueError(f"cannot listen on {host}:{port}: {e.strerror or e} (choose another --port)") from None
