"""`faceparse train` (also under `torchrun --nproc-per-node N -m faceparse train ...`)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer
import yaml

from ..launch.errors import LaunchError
from ..log import console
from .common import ParamsOpt, SetOpt, StageOpt, emit_json, friendly_errors, params_from

# Imports inside functions here: the command line starts without torch / mlflow (tests/code/test_light_imports.py)


def register(app: typer.Typer) -> None:
    @app.command("train")
    @friendly_errors
    def train_cmd(
        resume: bool = typer.Option(False, "--resume", help="continue from train.run_dir/last.pt"),
        no_progress: bool = typer.Option(False, "--no-progress", help="no progress bar / per-epoch lines"),
        params: Optional[Path] = ParamsOpt,
        set_: Optional[List[str]] = SetOpt,
        stage: Optional[str] = StageOpt,
        launcher: Optional[str] = typer.Option(
            None, "--launcher",
            help="run distributed instead of in this process: local (torchrun, --nproc processes here), "
                 "pytorchjob (Kubeflow Training Operator v1 PyTorchJob) or trainjob (Kubeflow Trainer v2 "
                 "TrainJob); the cluster ones stage data.dir on S3 and bring the bundle back to train.bundle_dir"),
        nproc: int = typer.Option(2, "--nproc", help="--launcher local: torchrun processes"),
        cluster: Optional[Path] = typer.Option(
            None, "--cluster-settings",
            help="--launcher pytorchjob|trainjob: YAML/JSON file of settings overriding "
                 "faceparse.launch.settings.PYTORCHJOB_DEFAULTS / TRAINJOB_DEFAULTS (workers, gpus_per_worker, image, ...)"),
        job_name: Optional[str] = typer.Option(None, "--job-name", help="--launcher pytorchjob|trainjob: the job's name"),
    ):
        """Train FP-LIIF on data.dir (quarantined ids excluded): checkpoints in train.run_dir, the model
        bundle in train.bundle_dir, the run in MLflow. Under torchrun: DDP, train.batch_size is global.
        With --launcher: the same step distributed by torchrun here or as a Kubeflow job on a cluster."""
        p = params_from(params, set_, stage)
        if launcher is not None:
            try:
                summary = _launch(p, launcher, nproc, cluster, job_name, resume)
            except LaunchError as e:  # the job's failure, its reason and log tail: no traceback needed
                console.print(f"[bold red]error:[/] {e}")
                raise typer.Exit(1) from None
            emit_json(summary)
            return
        from ..train import train

        summary = train(p, resume=resume, progress=not no_progress)
        if os.environ.get("RANK", "0") == "0":
            emit_json(summary)


def _launch(p: dict, launcher: str, nproc: int, cluster: Optional[Path], job_name: Optional[str],
            resume: bool) -> dict:
    from ..launch.dispatch import LAUNCHERS, train_distributed

    if launcher not in LAUNCHERS:
        raise ValueError(f"--launcher {launcher!r} is not one of {list(LAUNCHERS)}")
    if resume:
        raise ValueError("--resume works in this process only (without --launcher)")
    if cluster is not None and launcher == "local":
        raise ValueError("--cluster-settings is for --launcher pytorchjob / trainjob")
    settings = yaml.safe_load(Path(cluster).read_text()) if cluster is not None else None
    if settings is not None and not isinstance(settings, dict):
        raise ValueError(f"{cluster}: cluster settings must be a mapping")
    return train_distributed(p, launcher=launcher, nproc=nproc, job_name=job_name,
                             **({launcher: settings} if launcher != "local" else {}))
