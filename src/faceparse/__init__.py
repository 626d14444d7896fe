"""faceparse: train, track, validate and serve face-parsing models."""
import os as _os

# Imports inside functions here: `import faceparse` stays light; torch loads with the first model
# (tests/code/test_light_imports.py)

# Telemetry off for every door into the library (CLI, DVC stages, kfp components, tests).
_os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
_os.environ.setdefault("DVC_NO_ANALYTICS", "1")
_os.environ.setdefault("DO_NOT_TRACK", "1")

__version__ = "0.1.0"

# The Python API, imported on first use so that `import faceparse` stays light (no torch, no cv2):
# `faceparse.load()`, `faceparse.NoFaceError`, ... (see faceparse.api).
_LAZY = {"load": "api", "Parser": "api", "ParseResult": "api", "NoPretrainedModel": "api", "Landmarker": "api",
         "LandmarkResult": "api", "load_chain": "chain", "FaceChain": "chain", "ChainResult": "chain",
         "NoFaceError": "photos", "Face": "detect"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
