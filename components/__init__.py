"""kfp components of the faceparse pipeline: one lightweight Python component per step, each a thin
wrapper over the step's library function (docs/CONTRACTS.md). Artifacts: Dataset (canonical dataset
dir), HTML (Data Docs), Model (bundle; .mar), Metrics + ClassificationMetrics (evaluation)."""

from .base import COMPONENT, IMAGE
from .complete import complete
from .compose import compose
from .evaluate import evaluate
from .package import package
from .prepare import prepare
from .promote import promote
from .register import register
from .synth3d import synth3d
from .train import train
from .validate import validate
from .validation_failed import validation_failed

__all__ = ["COMPONENT", "IMAGE", "prepare", "validate", "validation_failed", "train", "evaluate", "register",
           "promote", "package", "compose", "complete", "synth3d"]
