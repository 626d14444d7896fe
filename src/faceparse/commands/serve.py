"""`faceparse package`, `faceparse serve start|stop|status`, `faceparse rollout ...`, `faceparse export onnx`."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import List, Optional

import typer

from .common import ParamsOpt, SetOpt, StageOpt, console, emit_json, friendly_errors, params_from

# Imports inside functions here: the command line starts without torch / mlflow (tests/code/test_light_imports.py)

RunDirOpt = typer.Option(None, "--run-dir", help="server run dir (default: $FACEPARSE_SERVE_DIR or runs/serve)")
StoreOpt = typer.Option(None, "--model-store", help="where .mar files go (default: serving/model-store)")


def _champion(p: dict) -> str:
    return f"models:/{(p.get('registry') or {}).get('model_name', 'faceparse-fpliif')}@champion"


def _runtime_errors(fn):
    """ServeError / RuntimeError from the serving library → one red line, exit 1 (not a traceback)."""

    @functools.wraps(fn)
    def wrapper(*a, **kw):
        from ..serve.client import ServeError

        try:
            return fn(*a, **kw)
        except typer.Exit:  # click's Exit is a RuntimeError: let the command's own exit code through
            raise
        except (ServeError, RuntimeError, OSError) as e:
            if isinstance(e, (FileNotFoundError, PermissionError)):
                raise
            console.print(f"[bold red]error:[/] {e}")
            raise typer.Exit(1) from None

    return wrapper


def register(app: typer.Typer) -> None:
    serve_app = typer.Typer(help="A local TorchServe endpoint (loopback, token auth) with a canary router.",
                            no_args_is_help=True)
    rollout_app = typer.Typer(help="Canary rollout of a challenger beside the stable version.", no_args_is_help=True)
    export_app = typer.Typer(help="Export a model to other runtimes.", no_args_is_help=True)
    app.add_typer(serve_app, name="serve")
    app.add_typer(rollout_app, name="rollout")
    app.add_typer(export_app, name="export")

    @app.command("package")
    @friendly_errors
    @_runtime_errors
    def package_cmd(
        model: Optional[str] = typer.Option(None, "--model", "-m", help="models:/name@alias, models:/name/<v> or a bundle dir (default: the champion)"),
        version: Optional[str] = typer.Option(None, help="archive version (default: the registry version, or 1)"),
        name: Optional[str] = typer.Option(None, help="model name (default: registry.model_name)"),
        model_store: Optional[Path] = StoreOpt,
        upload: Optional[str] = typer.Option(None, help="also write the KServe layout to s3://bucket/prefix"),
        params: Optional[Path] = ParamsOpt,
        set_: Optional[List[str]] = SetOpt,
        stage: Optional[str] = StageOpt,
    ):
        """Build a TorchServe .mar (handler + bundle + model-config.yaml from params.serve)."""
        from ..serve.package import package

        p = params_from(params, set_, stage)
        mar = package(model or _champion(p), p, model_store=model_store, version=version, name=name, upload=upload)
        emit_json({"mar": str(mar), "bytes": mar.stat().st_size, "upload": upload})

    @serve_app.command("start")
    @friendly_errors
    @_runtime_errors
    def serve_start(
        model: Optional[str] = typer.Option(None, "--model", "-m", help="model to serve (default: models:/<registry.model_name>@champion)"),
        version: Optional[str] = typer.Option(None, help="archive version (default: the registry version, or 1)"),
        run_dir: Optional[Path] = RunDirOpt,
        model_store: Optional[Path] = StoreOpt,
        router: bool = typer.Option(True, "--router/--no-router", help="start the canary router in front"),
        json_out: bool = typer.Option(False, "--json"),
        params: Optional[Path] = ParamsOpt,
        set_: Optional[List[str]] = SetOpt,
        stage: Optional[str] = StageOpt,
    ):
        """Package the model and start TorchServe on 127.0.0.1 (token authorization on)."""
        from ..serve.server import start

        p = params_from(params, set_, stage)
        st = start(p, model=model or _champion(p), run_dir=run_dir, model_store=model_store, version=version,
                   router=router)
        if json_out:
            emit_json(_brief(st))
            return
        console.print(f"[green]serving[/] {st['model_name']} {st['models'].get(st['model_name'], {}).get('versions')}"
                      f" at {st['endpoint_url']}/predictions/{st['model_name']} (TorchServe {st['inference_url']}); "
                      f"token: key_file {st['key_file']}")

    @serve_app.command("stop")
    @friendly_errors
    @_runtime_errors
    def serve_stop(run_dir: Optional[Path] = RunDirOpt):
        """Stop the router and TorchServe (Java process and workers checked gone)."""
        from ..serve.server import stop

        emit_json(stop(run_dir))

    @serve_app.command("status")
    @friendly_errors
    @_runtime_errors
    def serve_status(run_dir: Optional[Path] = RunDirOpt, json_out: bool = typer.Option(False, "--json"),
                     full: bool = typer.Option(False, "--full", help="include router stats and rollout history")):
        """inference / management / endpoint URLs, key file, models (name → versions), rollout."""
        from ..serve.server import status

        st = status(run_dir)
        out = st if full else _brief(st)
        if json_out:
            emit_json(out)
            return
        if not st.get("running"):
            console.print(f"not running ({st['run_dir']})")
            raise typer.Exit(3)
        for k, v in out.items():
            console.print(f"[bold]{k}[/]: {v}")

    @serve_app.command("token")
    @friendly_errors
    def serve_token(run_dir: Optional[Path] = RunDirOpt,
                    management: bool = typer.Option(False, "--management", help="the management API's key")):
        """Print the running server's bearer token, for scripts and curl:
        curl -H "Authorization: Bearer $(faceparse serve token)" ... Exit 3 when nothing is running."""
        from ..serve.server import token

        key = token(run_dir, "management" if management else "inference")
        if key is None:
            console.print("not running: start it with `faceparse serve start`")
            raise typer.Exit(3)
        typer.echo(key)

    # --- rollout ---------------------------------------------------------------------------------------
    @serve_app.command("demo")
    @friendly_errors
    @_runtime_errors
    def serve_demo(
        image: Path = typer.Option(..., "--image", exists=True, dir_okay=False, help="JPEG/PNG to send"),
        out: Path = typer.Option(Path("runs/demo/served_overlay.png"), "--out", help="where the returned overlay goes"),
        model: Optional[str] = typer.Option(None, "--model", help="registry URI or bundle dir (default: the champion)"),
        resolution: int = typer.Option(512, "--resolution", help="output size asked of the endpoint"),
        detect: bool = typer.Option(True, "--detect/--no-detect",
                                    help="--no-detect: IMAGE is an aligned face crop (sent with X-Detect: false)"),
        run_dir: Optional[Path] = RunDirOpt,
        params: Optional[Path] = ParamsOpt,
        set_: Optional[List[str]] = SetOpt,
        stage: Optional[str] = StageOpt,
    ):
        """Serve a model, query it once with IMAGE, save the overlay, stop (kept running with KEEP_SERVING=1)."""
        from ..serve.demo import serve_and_query

        p = params_from(params, set_, stage)
        emit_json(serve_and_query(p, model or _champion(p), image, out, run_dir=run_dir, resolution=resolution,
                                  detect=detect))

    @rollout_app.command("start")
    @friendly_errors
    @_runtime_errors
    def rollout_start(
        model: str = typer.Option(..., "--model", "-m", help="the challenger: models:/name@challenger, models:/name/<v> or a bundle dir"),
        percent: Optional[float] = typer.Option(None, help="canary share of traffic, % (default serve.rollout.percent)"),
        version: Optional[str] = typer.Option(None, help="TorchServe version for it (default: registry version, or next free)"),
        run_dir: Optional[Path] = RunDirOpt,
        params: Optional[Path] = ParamsOpt,
        set_: Optional[List[str]] = SetOpt,
        stage: Optional[str] = StageOpt,
    ):
        """Register the challenger beside the stable version and send it PERCENT % of the router's traffic."""
        from ..serve.rollout import start_rollout

        emit_json(start_rollout(params_from(params, set_, stage), model, percent=percent, version=version, run_dir=run_dir))

    @rollout_app.command("set")
    @friendly_errors
    @_runtime_errors
    def rollout_set(percent: float = typer.Option(..., help="canary share, %"), run_dir: Optional[Path] = RunDirOpt,
                    params: Optional[Path] = ParamsOpt, set_: Optional[List[str]] = SetOpt,
                    stage: Optional[str] = StageOpt):
        """Change the canary's traffic share."""
        from ..serve.rollout import set_percent

        emit_json(set_percent(params_from(params, set_, stage), percent, run_dir))

    @rollout_app.command("analyse")
    @friendly_errors
    @_runtime_errors
    def rollout_analyse(run_dir: Optional[Path] = RunDirOpt, params: Optional[Path] = ParamsOpt,
                        set_: Optional[List[str]] = SetOpt, stage: Optional[str] = StageOpt):
        """Canary vs stable: error rates, p95 latency, agreement (mean IoU on mirrored requests) → verdict."""
        from ..serve.rollout import analyse

        emit_json(analyse(params_from(params, set_, stage), run_dir))

    @rollout_app.command("promote")
    @friendly_errors
    @_runtime_errors
    def rollout_promote(run_dir: Optional[Path] = RunDirOpt, params: Optional[Path] = ParamsOpt,
                        set_: Optional[List[str]] = SetOpt, stage: Optional[str] = StageOpt):
        """Canary → default version (router switched and drained first), old version unregistered."""
        from ..serve.rollout import promote

        emit_json(promote(params_from(params, set_, stage), run_dir))

    @rollout_app.command("rollback")
    @friendly_errors
    @_runtime_errors
    def rollout_rollback(run_dir: Optional[Path] = RunDirOpt, reason: str = typer.Option("manual"),
                         params: Optional[Path] = ParamsOpt, set_: Optional[List[str]] = SetOpt,
                    stage: Optional[str] = StageOpt):
        """Remove the canary (router switched and drained first)."""
        from ..serve.rollout import rollback

        emit_json(rollback(params_from(params, set_, stage), run_dir, reason=reason))

    @rollout_app.command("auto")
    @friendly_errors
    @_runtime_errors
    def rollout_auto(
        model: str = typer.Option(..., "--model", "-m", help="the challenger (URI or bundle dir)"),
        version: Optional[str] = typer.Option(None),
        run_dir: Optional[Path] = RunDirOpt,
        params: Optional[Path] = ParamsOpt,
        set_: Optional[List[str]] = SetOpt,
        stage: Optional[str] = StageOpt,
    ):
        """start → step through serve.rollout.steps, analysing each → promote, or rollback on any failure.
        Needs live traffic on the router endpoint while it runs."""
        from ..serve.rollout import auto

        res = auto(params_from(params, set_, stage), model, run_dir=run_dir, version=version,
                   log=lambda m: console.print(m))
        emit_json(res)
        if res["decision"] != "promoted":
            raise typer.Exit(4)

    # --- export -----------------------------------------------------------------------------------------
    @export_app.command("onnx")
    @friendly_errors
    def export_onnx_cmd(
        model: Optional[str] = typer.Option(None, "--model", "-m", help="bundle dir or models:/ URI (default: the champion)"),
        resolution: int = typer.Option(256, help="output resolution fixed in the graph"),
        out: Path = typer.Option(Path("artifacts/onnx/model.onnx"), help="the .onnx file (a .onnx.json sidecar beside it)"),
        check_image: Optional[List[Path]] = typer.Option(None, help="real images for the parity check (repeatable)"),
        params: Optional[Path] = ParamsOpt,
        set_: Optional[List[str]] = SetOpt,
        stage: Optional[str] = StageOpt,
    ):
        """torch.onnx.export (dynamo) + parity against PyTorch with onnxruntime (fails beyond 1e-3 / 99.9 %)."""
        from ..export import export_onnx

        p = params_from(params, set_, stage)
        rep = export_onnx(model or _champion(p), out, resolution, check_images=check_image or (), params=p)
        console.print(f"ONNX parity: max |Δlogit| = {rep['max_abs_logit_diff']:.3g}, label agreement "
                      f"{rep['label_agreement']:.4%} over {rep['checked_pixels']} pixels")
        emit_json(rep)


def _brief(st: dict) -> dict:
    keys = ("running", "inference_url", "management_url", "metrics_url", "endpoint_url", "key_file", "models",
            "model_name", "pid", "run_dir", "logs")
    out = {k: st.get(k) for k in keys if k in st}
    ro = st.get("rollout") or {}
    if ro:
        out["rollout"] = {k: ro.get(k) for k in ("model", "stable", "canary", "percent", "phase", "generation")}
    return out
