"""synth3d: params ``recon3d.data.*`` → the 3D reconstruction stage's own dataset (the face model rendered
with known geometry, with and without occluders; faceparse.data.synth3d)."""

from typing import List

from kfp import dsl
from kfp.dsl import Dataset, Output

from .base import COMPONENT


@dsl.component(**COMPONENT)
def synth3d(params_yaml: str, overrides: List[str], dataset: Output[Dataset]):
    """faceparse.data.synth3d.synth3d_from_params(params of the recon3d stage) into the Dataset artifact."""
    from faceparse.data.manifest import read_info
    from faceparse.data.synth3d import synth3d_from_params
    from faceparse.launch.params import component_params

    out = synth3d_from_params(component_params(params_yaml, overrides, stage="recon3d"), out=dataset.path,
                              progress=False)
    info = read_info(out)
    dataset.metadata.update({k: info[k] for k in ("label_table", "size", "source", "count") if k in info})
