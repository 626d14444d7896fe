"""Run the whole pipeline locally with kfp.local: ``python pipelines/run_local.py [--set k=v ...]``.

``--runner subprocess`` (default): kfp.local.SubprocessRunner(use_venv=False) runs every component in this
interpreter's environment (the project venv; base_image is ignored, nothing is installed). ``--runner
docker``: kfp.local.DockerRunner runs every component in the project image its component names (``make
images`` builds it; ``FACEPARSE_IMAGE`` picks another), through Docker's API — podman's, started and stopped
by the run, unless DOCKER_HOST names an engine (pipelines/containers.py). Training uses ``launcher=local``:
torchrun with ``--nproc`` CPU processes. Quick defaults keep it to a few minutes on 2 cores (a small
synthetic dataset, 2 epochs); later ``--set`` values win. The model is registered in the repo's embedded
MLflow store (runs/mlflow) unless ``--tracking-uri`` says otherwise, so ``faceparse`` commands see it.
Artifacts land under ``--root`` (default runs/kfp-local/<pipeline>-<timestamp>/<task>/<output>).
Exit 0 when the pipeline succeeded, 1 when a step failed (e.g. the validation gate), 2 on bad input.
"""
import argparse
import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from kfp import local  # noqa: E402

from components import IMAGE  # noqa: E402
from faceparse.tracking import tracking_uri as resolve_tracking_uri  # noqa: E402
from pipelines.containers import ContainerEngineError, docker_runner  # noqa: E402

RUNNERS = ("subprocess", "docker")
QUICK = ["data.synth.n=32", "train.epochs=2", "evaluate.out_sizes=[64,128,256]"]


def latest_run_dir(root: Path, name: str) -> Path | None:
    runs = sorted((p for p in root.glob(f"{name}-*") if p.is_dir()), key=lambda p: p.stat().st_mtime)
    return runs[-1] if runs else None


def task_outputs(run_dir: Path) -> dict[str, dict]:
    """{task: {"parameters": {...}, "artifacts": [paths]}} from kfp.local's executor_output.json files."""
    out: dict[str, dict] = {}
    for task in sorted(p for p in run_dir.iterdir() if p.is_dir()):
        eo = task / "executor_output.json"
        parameters = json.loads(eo.read_text()).get("parameterValues", {}) if eo.is_file() else {}
        arts = sorted(str(p) for p in task.iterdir() if p.name != "executor_output.json")
        out[task.name] = {"parameters": parameters, "artifacts": arts}
    return out


@contextmanager
def task_runner(name: str, tracking_uri: str):
    """kfp.local's runner by name (RUNNERS); the docker one with its engine up for the block."""
    if name == "subprocess":
        yield local.SubprocessRunner(use_venv=False)
        return
    if name != "docker":
        raise ValueError(f"runner {name!r}: one of {', '.join(RUNNERS)}")
    with docker_runner(IMAGE, tracking_uri) as runner:
        yield runner


def run(overrides: list[str], root: Path, tracking_uri: str, nproc: int = 2, quick: bool = True,
        runner: str = "subprocess", **pipeline_args) -> Path:
    """Run the pipeline; return its run directory. Raises RuntimeError when a task fails,
    ContainerEngineError when ``runner="docker"`` finds no engine or no step image."""
    from pipelines.pipeline import PARAMS_YAML, PIPELINE_NAME, faceparse_pipeline

    root.mkdir(parents=True, exist_ok=True)
    # absolute here, once: every step, in this venv or in a container, then means the same store
    tracking_uri = resolve_tracking_uri({"registry": {"tracking_uri": tracking_uri}})
    ov = (QUICK if quick else []) + [f"registry.tracking_uri={tracking_uri}"] + list(overrides)
    started = time.time()
    with task_runner(runner, tracking_uri) as task_run:
        local.init(runner=task_run, pipeline_root=str(root), raise_on_error=True)
        try:
            faceparse_pipeline(params_yaml=pipeline_args.pop("params_yaml", PARAMS_YAML), overrides=ov,
                               launcher="local", nproc=nproc, **pipeline_args)
        finally:
            print(f"[run_local] {runner} runner, {time.time() - started:.0f} s; overrides: {ov}", file=sys.stderr)
    run_dir = latest_run_dir(root, PIPELINE_NAME)
    assert run_dir is not None
    return run_dir


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", "-s", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="params override, e.g. --set train.epochs=3 (repeatable)")
    ap.add_argument("--root", default=str(REPO / "runs" / "kfp-local"), help="kfp.local pipeline_root")
    ap.add_argument("--tracking-uri", default=f"sqlite:///{REPO / 'runs' / 'mlflow' / 'mlflow.db'}",
                    help="MLflow tracking URI (default: the repo's embedded store runs/mlflow)")
    ap.add_argument("--nproc", type=int, default=2, help="torchrun processes for the train step (default 2)")
    ap.add_argument("--runner", choices=RUNNERS, default="subprocess",
                    help="where each step runs: this venv (subprocess, default) or the project image (docker: "
                         "podman's Docker API unless DOCKER_HOST is set; `make images` builds the image)")
    ap.add_argument("--full", action="store_true", help="no quick defaults: params.yaml as it is")
    ap.add_argument("--raw-uri", default="", help="s3:// archive of a real dataset layout for prepare")
    ap.add_argument("--allow-quarantine", action="store_true", help="pass the gate when only samples are bad")
    a = ap.parse_args(argv)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from faceparse.config import ConfigError, apply_overrides

    try:
        apply_overrides({}, a.sets)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    root = Path(a.root).resolve()
    try:
        run_dir = run(a.sets, root, a.tracking_uri, nproc=a.nproc, quick=not a.full, runner=a.runner,
                      raw_uri=a.raw_uri, allow_quarantine=a.allow_quarantine)
    except ContainerEngineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        from pipelines.pipeline import PIPELINE_NAME

        print(f"error: {e}", file=sys.stderr)
        d = latest_run_dir(root, PIPELINE_NAME)
        if d is not None:
            print(f"artifacts so far: {d}", file=sys.stderr)
        return 1
    outs = task_outputs(run_dir)
    print(json.dumps({"run_dir": str(run_dir), "tracking_uri": a.tracking_uri, "tasks": outs}, indent=2))
    reg = outs.get("register", {}).get("parameters", {})
    if reg:
        print(f"registered {reg.get('model_uri')} in {a.tracking_uri}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
