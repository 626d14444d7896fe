"""`faceparse ui mlflow`, `faceparse ui page`: user interfaces started from the project."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer

from ..config import ConfigError, load_params
from ..stages import get_stage, params_module, stage_names
from ..tracking import ui_command
from .common import MODEL_REF, ParamsOpt, SetOpt, console, friendly_errors, params_or_empty

# Imports inside functions here: the command line starts without torch / mlflow (tests/code/test_light_imports.py)

# the page's options before every stage had a card: still taken (hidden), each mapped onto --model /
# --endpoint-model for its stage
DEPRECATED = {"--parser": ("--model", "parser"), "--landmarks": ("--model", "landmarks"),
              "--completion": ("--model", "completion"), "--parser-model": ("--endpoint-model", "parser"),
              "--landmarks-model": ("--endpoint-model", "landmarks"),
              "--completion-model": ("--endpoint-model", "completion")}


def stage_values(option: str, items: Optional[List[str]], what: str, aliases: dict[str, Optional[str]]) -> dict[str, str]:
    """``STAGE=VALUE`` items of a repeatable ``option`` → {stage: value}, plus the deprecated ``aliases``
    {old option: value} that map onto it; a ValueError names the option when an item has no ``=``, names an
    unknown stage, or gives a stage twice."""
    known = stage_names()
    out: dict[str, str] = {}
    pairs = [(f"{option} {item}", *item.partition("=")) for item in items or ()]
    pairs += [(f"{old} {value}", DEPRECATED[old][1], "=", value) for old, value in aliases.items() if value]
    for given, stage, eq, value in pairs:
        stage, value = stage.strip(), value.strip()
        if not eq or not stage or not value:
            raise ValueError(f"{given!r}: give {option} STAGE={what}")
        if stage not in known:
            raise ValueError(f"{given!r}: no model stage named {stage!r} (known: {', '.join(known)})")
        if stage in out:
            raise ValueError(f"{given!r}: {option} {stage}=… is given twice")
        out[stage] = value
    return out


def registry_name(raw: dict, stage: str) -> str:
    """A stage's model name on an endpoint: its ``registry.model_name`` in the params (its own section's; the
    parser's, whose sections are the top level: the top level's), else the stage's default name."""
    module = params_module(stage)
    own = raw if module is not None and module.SECTION is None else (raw.get(stage) or {})
    name = ((own if isinstance(own, dict) else {}).get("registry") or {}).get("model_name")
    return str(name) if name else get_stage(stage).info.model_name


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
        model: Optional[List[str]] = typer.Option(
            None, "--model", help=f"STAGE=REF: the model a stage's card loads in this process, {MODEL_REF} "
            "(repeatable; default: each card's own — its registry champion or what the stage ships; the "
            "completion: composed from the parser and landmark models)"),
        endpoint_model: Optional[List[str]] = typer.Option(
            None, "--endpoint-model", help="STAGE=NAME: the model a stage's card asks the endpoint for "
            "(repeatable; default: the stage's registry.model_name)"),
        parser: Optional[str] = typer.Option(None, "--parser", hidden=True, help="deprecated: --model parser=REF"),
        landmarks: Optional[str] = typer.Option(None, "--landmarks", hidden=True,
                                                help="deprecated: --model landmarks=REF"),
        completion: Optional[str] = typer.Option(None, "--completion", hidden=True,
                                                 help="deprecated: --model completion=REF"),
        parser_model: Optional[str] = typer.Option(None, "--parser-model", hidden=True,
                                                   help="deprecated: --endpoint-model parser=NAME"),
        landmarks_model: Optional[str] = typer.Option(None, "--landmarks-model", hidden=True,
                                                      help="deprecated: --endpoint-model landmarks=NAME"),
        completion_model: Optional[str] = typer.Option(None, "--completion-model", hidden=True,
                                                       help="deprecated: --endpoint-model completion=NAME"),
        samples: Optional[Path] = typer.Option(None, help="a folder of JPEG/PNG photos offered as samples too"),
        max_upload_mb: float = typer.Option(20.0, help="largest file the page takes, MB"),
        params: Optional[Path] = ParamsOpt,
        set_: Optional[List[str]] = SetOpt,
    ):
        """A web page for people: upload, drop or pick a photo; see every model stage's card (the parser's
        overlay with classes toggled and output resolution 64…1024, the 68 landmarks, the completion maps, …)
        and which model version and canary arm answered. Answers come from --endpoint / a running local
        server, else from the models in this process (--model STAGE=REF). Ctrl-C stops it."""
        from ..serve import server as serve_server
        from ..serve.imaging import DEFAULT_MAX_PIXELS
        from ..ui.app import PageServer, folder_samples, serve, synthetic_samples
        from ..ui.backends import Endpoint, InProcess
        from ..ui.chain_api import ChainRoute

        refs = stage_values("--model", model, "REF", {"--parser": parser, "--landmarks": landmarks,
                                                      "--completion": completion})
        given_names = stage_values("--endpoint-model", endpoint_model, "NAME",
                                   {"--parser-model": parser_model, "--landmarks-model": landmarks_model,
                                    "--completion-model": completion_model})
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
            names = {stage: given_names.get(stage) or registry_name(raw, stage) for stage in stage_names()}
            table = str((raw.get("data") or {}).get("label_table") or "celebamask-hq")
            backend = Endpoint(endpoint or "", names, token=token, serve_dir=str(serve_dir) if serve_dir else None,
                               label_table=table)
            console.print(f"answers from the endpoint [bold]{backend.url}[/] (models: "
                          + ", ".join(f"{k} {v!r}" for k, v in names.items() if v) + ")")
        else:
            console.print("loading the models in this process…")
            backend = InProcess(raw, refs)
            for stage, i in backend.stage_info.items():
                line = f"{stage}: {i['model']}" if i["available"] else f"{stage}: [yellow]{i['message']}[/]"
                console.print("  " + line)
        found = synthetic_samples() + (folder_samples(samples) if samples else [])
        max_pixels = int((raw.get("serve") or {}).get("max_pixels") or DEFAULT_MAX_PIXELS)
        page_server = PageServer(backend, found, max_upload=int(max_upload_mb * 1024 * 1024), max_pixels=max_pixels,
                                 chain=ChainRoute(refs))
        try:
            serve(page_server, host=host, port=port,
                  ready=lambda url: console.print(f"faceparse page: [bold]{url}[/] (Ctrl-C stops it)"))
        except OSError as e:
            raise ValueError(f"cannot listen on {host}:{port}: {e.strerror or e} (choose another --port)") from None
