"""complete: M_γ (completed map) and the occlusion mask for every sample of the dataset, for the next stage."""

from typing import List

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from .base import COMPONENT


@dsl.component(**COMPONENT)
def complete(params_yaml: str, overrides: List[str], dataset: Input[Dataset], model: Input[Model],
             completed: Output[Dataset]) -> int:
    """faceparse.stages.completion.photo.complete_dataset(params, dataset, completed, model=the completion bundle);
    returns the number of samples completed."""
    from faceparse.stages.completion.photo import complete_dataset
    from faceparse.launch.params import whole_params

    params = whole_params(params_yaml, overrides)
    res = complete_dataset(params, dataset.path, completed.path, model=model.path, progress=False)
    completed.metadata.update({"count": res["count"]})
    return int(res["count"])
