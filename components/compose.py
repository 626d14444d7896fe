"""compose: the map-completion bundle from the parser and landmark models just trained and registered."""

from typing import List

from kfp import dsl
from kfp.dsl import Artifact, Input, Model, Output

from .base import COMPONENT


@dsl.component(**COMPONENT)
def compose(params_yaml: str, overrides: List[str], parser_model: Input[Model], landmark_model: Input[Model],
            parser_registered: Input[Artifact], landmark_registered: Input[Artifact], model: Output[Model],
            stage: str = "completion"):
    """faceparse.stages.get_stage(stage).compose(params) with the two Model artifacts as
    ``completion.compose`` and their registration records (registered.json) naming the versions composed."""
    from faceparse.launch.params import whole_params
    from faceparse.stages import get_stage

    params = whole_params(params_yaml, overrides, {
        f"{stage}.compose.parser": parser_model.path, f"{stage}.compose.landmarks": landmark_model.path,
        f"{stage}.train.bundle_dir": model.path,
        "registry.registered_file": parser_registered.path,
        "landmarks.registry.registered_file": landmark_registered.path,
    })
    res = get_stage(stage).compose(params)
    model.framework = "pytorch"
    model.metadata.update({f"composes_{k}": v.get("model_uri") or v["ref"] for k, v in res["composes"].items()})
