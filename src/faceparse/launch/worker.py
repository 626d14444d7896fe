"""The cluster pods' entry (``python -m faceparse.launch worker --staged s3://…``, the command both
launchers' manifests run): fetch the staged inputs, torchrun the train step across the job's nodes, and on
node rank 0 upload the bundle and the result next to the inputs."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..config import load_params, set_key
from ..data import storage
from .params import write_params
from .staging import fetch_staged, tar_dir, untar
from .torchrun import tee, torchrun_command


def worker_main(stage: str, data_dir: str | None = None, workdir: str | None = None) -> int:
    """In a PyTorchJob / TrainJob pod: fetch the inputs staged under ``stage``, torchrun the train step across
    the job's nodes (PET_NNODES / PET_NPROC_PER_NODE / PET_NODE_RANK, and MASTER_ADDR / MASTER_PORT from the
    Training Operator or PET_MASTER_ADDR / PET_MASTER_PORT from Trainer v2's torch plugin), then on node rank
    0 upload the bundle and the result next to the inputs. ``data_dir``: the dataset already mounted (PVC)."""
    wd = Path(workdir or os.environ.get("FACEPARSE_WORKDIR") or tempfile.mkdtemp(prefix="faceparse-worker-"))
    inputs = wd / "inputs"
    params = load_params(storage.fetch(f"{stage}/params.yaml", inputs))
    if data_dir:
        set_key(params, "data.dir", data_dir)
    else:
        set_key(params, "data.dir", str(untar(storage.fetch(f"{stage}/dataset.tar", inputs), wd / "dataset")))
    fetch_staged(params, stage, inputs, wd)
    set_key(params, "train.run_dir", str(wd / "run"))
    set_key(params, "train.bundle_dir", str(wd / "model"))
    params_file = write_params(params, wd / "params.yaml")
    result_file = wd / "result.json"
    env = os.environ
    node_rank = int(env.get("PET_NODE_RANK", env.get("RANK", "0")))
    cmd = torchrun_command(env.get("PET_NPROC_PER_NODE", "1"), params_file, result_file,
                           nnodes=env.get("PET_NNODES", "1"), node_rank=node_rank,
                           master_addr=env.get("MASTER_ADDR") or env.get("PET_MASTER_ADDR") or "localhost",
                           master_port=env.get("MASTER_PORT") or env.get("PET_MASTER_PORT") or "23456")
    print(f"[faceparse.launch] node {node_rank}: {' '.join(cmd)}", flush=True)
    rc, _ = tee(cmd, dict(env, PYTHONUNBUFFERED="1"))
    if rc != 0 or node_rank != 0:
        return rc
    storage.upload(tar_dir(wd / "model", wd / "model.tar"), f"{stage}/model.tar")
    storage.upload(result_file, f"{stage}/result.json")
    print(f"[faceparse.launch] uploaded the bundle and result to {stage}", flush=True)
    return 0
