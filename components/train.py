"""train: faceparse.train.train(params) distributed — torchrun on this machine (launcher=local), a Kubeflow
Training Operator v1 PyTorchJob (launcher=pytorchjob) or a Kubeflow Trainer v2 TrainJob (launcher=trainjob)
on GPU nodes; see faceparse.launch."""

from typing import List, NamedTuple, Optional

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from .base import COMPONENT


@dsl.component(**COMPONENT)
def train(params_yaml: str, overrides: List[str], dataset: Input[Dataset], validation: Input[Artifact],
          model: Output[Model], launcher: str = "local", nproc: int = 2, pytorchjob: dict = {},
          stage: str = "parser", trainjob: dict = {}, carry: Optional[Input[Model]] = None,
          carry_registered: Optional[Input[Artifact]] = None,
          ) -> NamedTuple("TrainOutputs", [("mlflow_run_id", str), ("val_metric", float)]):
    """faceparse.launch.dispatch.train_distributed(params of the model ``stage``, launcher, nproc, pytorchjob, trainjob)
    with data.dir = dataset, validate.out_dir = the validation report (its quarantine list is honoured) and
    train.bundle_dir = the Model artifact (weights.pt + bundle.json).

    launcher: local → torchrun --nproc-per-node ``nproc`` here (CPU: gloo); pytorchjob → a PyTorchJob
    with ``pytorchjob`` settings (workers × gpus_per_worker, A100 node selector, NCCL env; missing keys
    take faceparse.launch.settings.PYTORCHJOB_DEFAULTS); trainjob → a TrainJob on the faceparse-torch-distributed
    runtime with ``trainjob`` settings (the same keys + runtime; missing keys take TRAINJOB_DEFAULTS).

    carry / carry_registered: the model the stage's bundle carries and its registration record (fisn: the
    composed completion bundle and registered.json → ``carry.completion`` / ``carry.registered_file``);
    the cluster launchers stage both for the pods beside the dataset."""
    import tempfile
    from collections import namedtuple

    from faceparse.launch.dispatch import train_distributed
    from faceparse.launch.params import component_params
    from faceparse.stages import get_stage

    params = component_params(params_yaml, overrides, {
        "data.dir": dataset.path,
        "validate.out_dir": validation.path,
        "train.bundle_dir": model.path,
        "train.run_dir": tempfile.mkdtemp(prefix="faceparse-run-"),
        **({"carry.completion": carry.path} if carry is not None else {}),
        **({"carry.registered_file": carry_registered.path} if carry_registered is not None else {}),
    }, stage=stage)
    result = train_distributed(params, launcher=launcher, nproc=nproc, pytorchjob=pytorchjob, trainjob=trainjob)
    val = result.get("val") or {}
    model.framework = "pytorch"
    model.metadata.update({"mlflow_run_id": result.get("mlflow_run_id") or "", "launcher": launcher,
                           **{f"val_{k}": v for k, v in val.items() if isinstance(v, (int, float))}})
    return namedtuple("TrainOutputs", ["mlflow_run_id", "val_metric"])(
        str(result.get("mlflow_run_id") or ""), float(val.get(get_stage(stage).primary_metric) or 0.0))
