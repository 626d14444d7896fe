"""``train_distributed``: the train step run by one of the three launchers (see faceparse.launch)."""
from __future__ import annotations

import os
from typing import Any, Mapping

from .pytorchjob import run_pytorchjob
from .torchrun import run_torchrun
from .trainjob import run_trainjob

LAUNCHERS = ("local", "pytorchjob", "trainjob")


def train_distributed(params: dict[str, Any], launcher: str = "local", nproc: int = 2,
                      pytorchjob: Mapping[str, Any] | None = None, workdir: str | os.PathLike | None = None,
                      client: Any = None, job_name: str | None = None,
                      trainjob: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Run ``faceparse.train.train(params)`` distributed; return its result (``bundle``, ``checkpoint``,
    ``mlflow_run_id``, ``val``). The bundle ends up in ``train.bundle_dir`` either way. ``pytorchjob`` /
    ``trainjob``: that launcher's cluster settings (missing keys from PYTORCHJOB_DEFAULTS / TRAINJOB_DEFAULTS);
    ``client``: the launcher's cluster client (TrainingClient / TrainJobClient; default: from the pod's
    service account or ~/.kube/config)."""
    if launcher == "local":
        return run_torchrun(params, nproc=nproc, workdir=workdir)
    if launcher == "pytorchjob":
        return run_pytorchjob(params, settings=pytorchjob, client=client, name=job_name)
    if launcher == "trainjob":
        return run_trainjob(params, settings=trainjob, client=client, name=job_name)
    raise ValueError(f"launcher {launcher!r} is not one of {list(LAUNCHERS)}")
