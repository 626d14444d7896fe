"""The landmark stage's params: its section ``landmarks:`` and the params resolved for it."""
from __future__ import annotations

from typing import Literal, Optional

from ...schema import Augment, BaseParams, Evaluate, Registry, Section, Train


class LandmarkPreset(Section):
    """A MobileNetV3 landmark regressor (``landmarks.model.presets.<name>``)."""
    arch: Optional[Literal["large", "small"]] = None
    width: Optional[float] = None
    num_points: Optional[int] = None
    dropout: Optional[float] = None
    head: Optional[Literal["fc", "integral"]] = None
    flip_test: Optional[bool] = None     # average with the mirrored image's prediction at inference
    refine: Optional[int] = None         # inference: look again this many times at the face crop the points give


class LandmarkAugment(Augment):
    """``landmarks.train.augment`` (faceparse.stages.landmarks.dataset.build_landmark_augment): no shear; a
    shift, a blur and a mirror image, off unless given."""
    shear: Optional[float] = None        # not a landmark augmentation (refused)
    shift: Optional[float] = 0.0
    blur: Optional[float] = 0.0
    flip: Optional[float] = 0.0


class LandmarkTrain(Train):
    augment: Optional[LandmarkAugment] = None
    framing: Optional[Literal["image", "face"]] = None   # face: the photo path's crop of the face (align.placement)
    frame_jitter: Optional[float] = None       # σ of the five framing points' noise, × inter-ocular distance
    eval_frame_jitter: Optional[float] = None  # the same at evaluation (fixed draws): a detector's error
    frame_loose: Optional[float] = None        # share of training frames zoomed out / moved (a whole image)


class LandmarkEvaluate(Evaluate):
    batch_size: Optional[int] = 16


class LandmarkModel(Section):
    preset: Optional[str] = None
    overrides: Optional[LandmarkPreset] = None
    presets: Optional[dict[str, LandmarkPreset]] = None


class LandmarkSection(Section):
    """``landmarks:``: whole sections that replace the top-level ones for the landmark stage."""
    model: Optional[LandmarkModel] = None
    train: Optional[LandmarkTrain] = None
    evaluate: Optional[LandmarkEvaluate] = None
    registry: Optional[Registry] = None


class LandmarkParams(BaseParams):
    """Params resolved for the landmark stage (``faceparse.stages.for_stage``, e.g. the file a torchrun
    worker or a kfp step reads): its model section is the landmark regressor's."""
    model: Optional[LandmarkModel] = None
    train: Optional[LandmarkTrain] = None
    evaluate: Optional[LandmarkEvaluate] = None


SECTION = LandmarkSection     # params.yaml `landmarks:`
RESOLVED = LandmarkParams    # faceparse.stages.for_stage(params, "landmarks")
