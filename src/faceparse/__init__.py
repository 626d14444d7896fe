"""faceparse: train, track, validate and serve face-parsing models."""
import os as _os

# Telemetry off for every door into the library (CLI, DVC stages, kfp components, tests).
_os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
_os.environ.setdefault("DVC_NO_ANALYTICS", "1")
_os.environ.setdefault("DO_NOT_TRACK", "1")

__version__ = "0.1.0"
