import json

import pytest
import torch
from typer.testing import CliRunner

from faceparse.cli import app
from faceparse.stages import for_stage, get_stage, register_stage


def test_parser_stage_builds_its_model_from_bundle_meta():
    st = get_stage("parser")
    meta = {"model_config": {"width": 8, "groups": [1, 1, 1], "reduce": [16], "hidden": [16]}, "num_classes": 5,
            "label_table": "celebamask-hq"}
    assert st.build_model(meta)(torch.randn(1, 3, 32, 32), 16).shape == (1, 5, 16, 16)
    assert (st.primary_metric, st.info.direction, st.info.model_name) == ("mean_f1", "max", "faceparse-fpliif")
    assert st.better(0.5, 0.4) and not st.better(0.4, 0.4) and not st.better(0.45, 0.4, margin=0.05)


def test_unknown_stage_and_double_registration_are_refused():
    with pytest.raises(ValueError, match="unknown model stage 'reconstruct3d'"):
        get_stage("reconstruct3d")
    with pytest.raises(ValueError, match="already registered"):
        register_stage("parser", "faceparse.stages.parser.stage")


def test_a_stage_section_replaces_the_top_level_sections_for_that_stage():
    params = {"stage": "parser", "train": {"epochs": 24, "seed": 3}, "registry": {"model_name": "faceparse-fpliif"},
              "landmarks": {"train": {"epochs": 5}, "registry": {"model_name": "faceparse-landmarks"}}}
    lm = for_stage(params, "landmarks")
    assert lm["stage"] == "landmarks" and lm["train"] == {"epochs": 5, "report": True}   # whole section replaced
                                                                                         # (+ its defaults)
    assert lm["registry"]["model_name"] == "faceparse-landmarks" and "landmarks" not in lm
    params["registry"]["tracking_uri"] = "sqlite:///x.db"   # where runs go is shared unless a stage says
    assert for_stage(params, "landmarks")["registry"] == {"model_name": "faceparse-landmarks",
                                                          "tracking_uri": "sqlite:///x.db", "promote_margin": 0.0}
    p = for_stage(params, "parser")
    assert p["train"]["epochs"] == 24 and "landmarks" not in p
    assert for_stage(lm) == lm                                                  # idempotent


def test_for_stage_fills_each_stage_s_own_defaults_into_the_sections_it_holds():
    """A default lives on its pydantic field; the params a stage reads carry it: the stage's own default for a
    section it inherits from the top level (evaluate.batch_size: the parser's 4, the landmark stage's 16)."""
    params = {"stage": "parser", "evaluate": {"split": "test"}, "train": {"augment": {"p": 0.5}},
              "landmarks": {"registry": {"model_name": "lm", "promote_margin": None}}}
    p, lm = for_stage(params, "parser"), for_stage(params, "landmarks")
    assert p["evaluate"] == {"split": "test", "batch_size": 4} and lm["evaluate"]["batch_size"] == 16
    assert p["train"]["augment"]["p"] == 0.5 and p["train"]["augment"]["shear"] == 0      # given values kept
    assert "shear" not in lm["train"]["augment"] and lm["train"]["augment"]["flip"] == 0.0  # the landmark keys
    assert lm["registry"]["promote_margin"] is None          # an explicit null stays null
    assert "serve" not in p and "data" not in lm             # a section left out stays out
    assert "batch_size" not in params["evaluate"]            # the params given are not changed


def test_stages_json_lists_every_stage():
    r = CliRunner().invoke(app, ["stages", "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    assert {"name", "summary", "primary_metric", "direction", "trainable"} <= set(rows[0])
    by = {row["name"]: row for row in rows}
    assert by["parser"]["primary_metric"] == "mean_f1" and by["parser"]["direction"] == "max"
