"""faceparse: train, track, validate and serve face-parsing models."""
import os as _os

# Telemetry off for every door into the library (CLI, DVC stages, kfp components, tests).
_os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
_os.environ.setdefault("DVC_NO_ANALYTICS", "1")
_os.environ.setdefault("DO_NOT_TRACK", "1")
# OpenMP threads that wait for a core sleep instead of spinning: on a shared CPU (a laptop, a busy node, CI)
# spinning threads of one process starve the others — a training step ran 17× slower beside one busy
# process with the default policy (0.34 vs 5.98 s). Read when the OpenMP runtime starts, i.e. at the first
# `import torch`: every entry point imports faceparse first (CLI, torchrun -m faceparse, kfp components).
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
