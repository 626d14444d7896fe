"""The completion stage's params: its section ``completion:`` and the params resolved for it."""
from __future__ import annotations

from typing import Literal, Optional

from ...schema import BaseParams, Evaluate, Registry, Section, Train


class CompletionModel(Section):
    """Algorithm 1's settings (``completion.model``; faceparse.stages.completion.algorithm.Settings)."""
    preset: Optional[str] = None
    reading: Optional[Literal["sequential", "literal"]] = None
    mouth_is_feature: Optional[bool] = None
    brow_band: Optional[float] = None


class Compose(Section):
    parser: Optional[str] = None
    landmarks: Optional[str] = None


class CompletionEvaluate(Evaluate):
    batch_size: Optional[int] = 8


class CompletionSection(Section):
    """``completion:``: the map-completion stage's sections (nothing trained: ``train.bundle_dir`` only)."""
    model: Optional[CompletionModel] = None
    compose: Optional[Compose] = None
    train: Optional[Train] = None
    evaluate: Optional[CompletionEvaluate] = None
    registry: Optional[Registry] = None
    dataset_out: Optional[str] = None


class CompletionParams(BaseParams):
    """Params resolved for the completion stage: its model section holds Algorithm 1's settings."""
    model: Optional[CompletionModel] = None
    compose: Optional[Compose] = None
    evaluate: Optional[CompletionEvaluate] = None
    dataset_out: Optional[str] = None


SECTION = CompletionSection     # params.yaml `completion:`
RESOLVED = CompletionParams    # faceparse.stages.for_stage(params, "completion")
