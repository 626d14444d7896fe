"""What every faceparse component shares: the image it runs in on a cluster, and the decorator options.

The image is built from infra/docker/Dockerfile.train (CUDA torch + requirements.lock + faceparse) and
pushed as ``ghcr.io/faceparse/faceparse:<faceparse version>``. To use another registry or tag, set
FACEPARSE_IMAGE when compiling (``FACEPARSE_IMAGE=registry.example.com/ml/faceparse:0.1.0 python
pipelines/compile.py``); the committed pipelines/faceparse_pipeline.yaml uses the default.

Components are lightweight Python components: kfp serialises each function's source into the pipeline,
so a component imports faceparse inside its body. The image already holds every dependency:
``install_kfp_package=False`` and no ``packages_to_install`` (no pip at run time, nothing installed into
the host venv by the local runner).
"""
from faceparse.launch.settings import DEFAULT_IMAGE

IMAGE = DEFAULT_IMAGE  # $FACEPARSE_IMAGE at compile time, else ghcr.io/faceparse/faceparse:<version>
COMPONENT = {"base_image": IMAGE, "install_kfp_package": False}
