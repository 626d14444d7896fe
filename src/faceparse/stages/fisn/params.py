"""The FISN stage's params: its section ``fisn:`` and the params resolved for it."""
from __future__ import annotations

from typing import Literal, Optional

from ...schema import BaseParams, Evaluate, Registry, Section, Train


class FisnGenerator(Section):
    """The generator's keyword arguments (``fisn.model.overrides.generator``): FISNGenerator's (sean presets),
    or the gated preset's Inpainter widths and whether it reads M_γ (map_channels)."""
    kind: Optional[Literal["sean", "gated"]] = None
    widths: Optional[list[int]] = None
    map_channels: Optional[bool] = None
    ngf: Optional[int] = None
    n_down: Optional[int] = None
    n_res: Optional[int] = None
    style_dim: Optional[int] = None
    style_ch: Optional[int] = None
    spade_hidden: Optional[int] = None


class FisnDiscriminator(Section):
    ndf: Optional[int] = None
    n_layers: Optional[int] = None
    num_d: Optional[int] = None
    spectral: Optional[bool] = None


class FisnOverrides(Section):
    generator: Optional[FisnGenerator] = None
    discriminator: Optional[FisnDiscriminator] = None


class FisnModel(Section):
    """``fisn.model``: a preset of faceparse.stages.fisn.network.PRESETS (tiny | paper | gated) and overrides."""
    preset: Optional[str] = None
    overrides: Optional[FisnOverrides] = None
    erase_occluded: Optional[bool] = False  # the generator sees the occluded region as mid-grey


class FisnLoss(Section):
    """``fisn.loss``: eq. 9's weights and the perceptual network (parser | parser:REF | vgg19:PATH)."""
    perceptual: Optional[str] = "parser"
    w_gan: Optional[float] = 1.0
    w_fm: Optional[float] = 10.0
    w_per: Optional[float] = 10.0
    w_l1: Optional[float] = 0.0
    w_hole: Optional[float] = 0.0
    w_occlusion: Optional[float] = 1.0    # the occlusion head's BCE + Dice (gated preset)


class FisnTrain(Train):
    mode: Optional[Literal["supervised", "paper"]] = None
    occluded_only: Optional[bool] = False     # train on the occluded faces only


class FisnEvaluate(Evaluate):
    batch_size: Optional[int] = 8
    maps: Optional[Literal["truth", "predicted"]] = None


class FisnCarry(Section):
    """``fisn.carry``: the completion bundle the FISN bundle carries (null: none) and register's record of it."""
    completion: Optional[str] = None
    registered_file: Optional[str] = None


class FisnSection(Section):
    """``fisn:``: the de-occlusion generator's sections."""
    model: Optional[FisnModel] = None
    loss: Optional[FisnLoss] = None
    train: Optional[FisnTrain] = None
    evaluate: Optional[FisnEvaluate] = None
    registry: Optional[Registry] = None
    carry: Optional[FisnCarry] = None


class FisnParams(BaseParams):
    """Params resolved for the fisn stage: its model / loss / train / evaluate sections and ``carry``."""
    model: Optional[FisnModel] = None
    loss: Optional[FisnLoss] = None
    train: Optional[FisnTrain] = None
    evaluate: Optional[FisnEvaluate] = None
    carry: Optional[FisnCarry] = None


SECTION = FisnSection     # params.yaml `fisn:`
RESOLVED = FisnParams    # faceparse.stages.for_stage(params, "fisn")
