"""The parser's params: the top-level sections themselves (it has no section of its own)."""
from __future__ import annotations

from ...schema import BaseParams

SECTION = None         # the parser reads the top level: params.yaml `model:`, `train:`, `evaluate:`, …
RESOLVED = BaseParams  # faceparse.stages.for_stage(params, "parser")
