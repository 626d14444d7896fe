"""The tiny pipeline run the kfp tests share: 24 synthetic faces at 64², one epoch per trained stage, the
promotion floors off (1-epoch models do not clear them). The subprocess run of every stage is a session
fixture (conftest.py): test_kfp_local.py checks it step by step, test_images.py compares the containerised run
with it. And the raw archive both fetch from S3."""
from __future__ import annotations

import shutil
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # components/ and pipelines/ live at the repo root
    sys.path.insert(0, str(REPO))

from pipelines.run_local import run, task_outputs  # noqa: E402

SMALL = ["data.synth.n=24", "data.size=64", "train.input_size=64", "train.out_size=64", "train.epochs=1",
         "train.batch_size=4", "evaluate.out_sizes=[32,64]", "landmarks.train.input_size=64",
         "landmarks.train.epochs=1", "landmarks.train.batch_size=4", "fisn.train.epochs=1", "fisn.train.batch_size=4",
         "recon3d.data.synth3d.n=8", "recon3d.data.size=48", "recon3d.train.input_size=48", "recon3d.train.epochs=1",
         "recon3d.train.batch_size=4", "recon3d.model.overrides.width=8",
         "registry.floor=null", "landmarks.registry.floor=null", "completion.registry.floor=null",
         "fisn.registry.floor=null"]


def small_run(runner: str, folder: Path, **pipeline_args) -> tuple[Path, dict, str]:
    """(run dir, task outputs, tracking URI) of the tiny pipeline run by ``runner`` under ``folder``."""
    uri = f"sqlite:///{folder}/mlflow/mlflow.db"
    run_dir = run(SMALL, folder / "root", uri, nproc=2, quick=False, runner=runner, **pipeline_args)
    return run_dir, task_outputs(run_dir), uri


def labelmaps_archive(dataset: Path, folder: Path) -> Path:
    """A dataset's images/ + labels/ as a raw ``labelmaps`` layout in ``folder``/faces.tar.gz (what a user puts
    on S3 for ``prepare``'s raw_uri)."""
    layout = folder / "faces"
    for sub in ("images", "labels"):
        shutil.copytree(Path(dataset) / sub, layout / sub)
    archive = folder / "faces.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(layout, arcname="faces")
    return archive
