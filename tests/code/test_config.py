import pytest

from faceparse.config import ConfigError, apply_overrides, load_params, model_config


def test_overrides_are_typed_and_nested():
    p = apply_overrides({"train": {"epochs": 1}}, ["train.epochs=3", "train.scale=[0.5, 3]", "model.overrides.norm=batch"])
    assert p["train"]["epochs"] == 3 and p["train"]["scale"] == [0.5, 3]
    assert p["model"]["overrides"]["norm"] == "batch"


def test_bad_override_and_missing_file_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="section.key=value"):
        apply_overrides({}, ["epochs"])
    with pytest.raises(ConfigError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1,\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_params(bad)


def test_paper_config_extends_params(repo_root):
    p = load_params(repo_root / "configs" / "paper.yaml")
    assert model_config(p)["preset"] == "paper" and p["train"]["epochs"] == 400
    assert p["registry"] == load_params(repo_root / "params.yaml")["registry"]  # inherited


def test_unknown_model_override_is_refused(repo_root):
    with pytest.raises(ConfigError, match="unknown keys"):
        model_config(load_params(repo_root / "params.yaml", ["model.overrides.depth=3"]))
