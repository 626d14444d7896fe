"""register: a new MLflow model version from the bundle + its test metrics (alias ``challenger``)."""

from typing import List, NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Input, Model, Output

from .base import COMPONENT


@dsl.component(**COMPONENT)
def register(params_yaml: str, overrides: List[str], model: Input[Model], eval_report: Input[Artifact],
             registered: Output[Artifact], stage: str = "parser"
             ) -> NamedTuple("RegisterOutputs", [("name", str), ("version", str), ("model_uri", str)]):
    """faceparse.registry.register(params, bundle_dir=model, metrics_file=eval_report/eval.json); the
    registration record (registered.json) is the ``registered`` artifact."""
    from collections import namedtuple
    from pathlib import Path

    from faceparse.launch.params import component_params
    from faceparse.registry import register as register_step

    params = component_params(params_yaml, overrides, {"registry.registered_file": registered.path}, stage=stage)
    out = register_step(params, bundle_dir=model.path, metrics_file=Path(eval_report.path) / "eval.json")
    registered.metadata.update({k: out.get(k) for k in ("name", "version", "alias", "uri")})
    return namedtuple("RegisterOutputs", ["name", "version", "model_uri"])(
        str(out["name"]), str(out["version"]), str(out["uri"]))
