"""``python -m faceparse.launch worker|render``: the cluster pods' entry and the manifests as YAML (not a
user CLI; one torchrun process of the train step is ``python -m faceparse.launch.process``)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from .manifest import render_yaml
from .pytorchjob import build_pytorchjob
from .settings import settings_with_defaults, trainjob_settings
from .staging import stage_uri
from .trainjob import build_trainingruntime, build_trainjob
from .worker import worker_main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m faceparse.launch",
                                 description="faceparse distributed-training entries (used by PyTorchJob / "
                                             "TrainJob pods; not a user CLI)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("worker", help="a PyTorchJob / TrainJob pod: fetch inputs, torchrun, upload outputs")
    w.add_argument("--staged", required=True, help="s3:// prefix the pipeline staged the inputs under (not a model stage)")
    w.add_argument("--data-dir", default=None, help="dataset already mounted here (PVC): do not fetch it")
    w.add_argument("--workdir", default=None)
    r = sub.add_parser("render", help="print a manifest for the given settings (YAML): the PyTorchJob, the "
                                      "TrainJob, or the ClusterTrainingRuntime TrainJobs reference")
    r.add_argument("--kind", choices=("pytorchjob", "trainjob", "runtime"), default="pytorchjob")
    r.add_argument("--name", default="faceparse-train")
    r.add_argument("--staged", default=None, help="s3:// staging prefix (default: staging_uri/NAME)")
    r.add_argument("--settings", default=None, help="YAML/JSON file of pytorchjob / trainjob settings (overrides)")
    a = ap.parse_args(argv)
    if a.cmd == "worker":
        return worker_main(a.staged, data_dir=a.data_dir, workdir=a.workdir)
    settings = yaml.safe_load(Path(a.settings).read_text()) if a.settings else None
    if a.kind == "runtime":
        manifest = build_trainingruntime(**dict(settings or {}))
    elif a.kind == "trainjob":
        s = trainjob_settings(settings)
        manifest = build_trainjob(s, a.name, a.staged or stage_uri(s, a.name))
    else:
        s = settings_with_defaults(settings)
        manifest = build_pytorchjob(s, a.name, a.staged or stage_uri(s, a.name))
    sys.stdout.write(render_yaml(manifest))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
