"""package: the promoted model version as a TorchServe archive (.mar)."""

from typing import List

from kfp import dsl
from kfp.dsl import Model, Output

from .base import COMPONENT


@dsl.component(**COMPONENT)
def package(params_yaml: str, overrides: List[str], model_uri: str, mar: Output[Model], upload: str = "",
            stage: str = "parser") -> str:
    """faceparse.serve.package.package(model_uri, params) → the .mar, copied into the ``mar`` artifact;
    upload: an s3:// prefix to also write the KServe storage layout to (empty: no upload). Returns the
    archive's file name."""
    import shutil
    import tempfile

    from faceparse.launch.params import component_params
    from faceparse.serve.package import package as package_step

    params = component_params(params_yaml, overrides, stage=stage)
    path = package_step(model_uri, params, model_store=tempfile.mkdtemp(prefix="faceparse-store-"),
                        upload=upload or None)
    shutil.copyfile(path, mar.path)
    mar.framework = "torchserve"
    mar.metadata.update({"model_uri": model_uri, "file": path.name})
    return path.name
