"""`faceparse train` (also under `torchrun --nproc-per-node N -m faceparse train ...`)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer

from .common import ParamsOpt, SetOpt, StageOpt, emit_json, friendly_errors, params_from


def register(app: typer.Typer) -> None:
    @app.command("train")
    @friendly_errors
    def train_cmd(
        resume: bool = typer.Option(False, "--resume", help="continue from train.run_dir/last.pt"),
        no_progress: bool = typer.Option(False, "--no-progress", help="no progress bar / per-epoch lines"),
        params: Optional[Path] = ParamsOpt,
        set_: Optional[List[str]] = SetOpt,
        stage: Optional[str] = StageOpt,
    ):
        """Train FP-LIIF on data.dir (quarantined ids excluded): checkpoints in train.run_dir, the model
        bundle in train.bundle_dir, the run in MLflow. Under torchrun: DDP, train.batch_size is global."""
        from ..train import train

        p = params_from(params, set_, stage)
        summary = train(p, resume=resume, progress=not no_progress)
        if os.environ.get("RANK", "0") == "0":
            emit_json(summary)
