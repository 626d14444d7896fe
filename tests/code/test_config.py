import re

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
    with pytest.raises(ConfigError, match=r"unknown key model\.overrides\.depth"):
        model_config(load_params(repo_root / "params.yaml", ["model.overrides.depth=3"]))
    with pytest.raises(ConfigError, match="unknown keys"):   # model_config's own check, for dict-built params
        model_config({"model": {"preset": "tiny", "presets": {"tiny": {"width": 8}}, "overrides": {"depth": 3}}})


@pytest.mark.parametrize("override,named", [
    ("train.epoch=3", "unknown key train.epoch (did you mean train.epochs?)"),
    ("trian.epochs=3", "unknown key trian.epochs (did you mean train.epochs?)"),
    ("data.synth.occlusion=0.5", "unknown key data.synth.occlusion (did you mean data.synth.occlusion_prob or "
                                 "data.synth.test_occlusion_prob?)"),
    ("model.presets.tiny.widht=8", "did you mean model.presets.tiny.width?"),
    ("serve.rollout.percnt=5", "did you mean serve.rollout.percent?"),
    ("data.synth.bogus=1", "unknown key data.synth.bogus (known: n, occlusion_prob, renders3d, seed, splits, "
                           "test_occlusion_prob)"),
    ("train.epochs=three", "train.epochs: input should be a valid integer"),
    ("model.overrides.norm=layer", "model.overrides.norm: input should be 'instance', 'batch' or 'none'"),
])
def test_unknown_or_mistyped_override_names_the_nearest_key(repo_root, override, named):
    with pytest.raises(ConfigError) as e:
        load_params(repo_root / "params.yaml", [override])
    assert named in str(e.value) and f"--set {override}" in str(e.value)


def test_bad_key_inside_a_params_file_names_the_file(tmp_path, repo_root):
    variant = tmp_path / "variant.yaml"
    variant.write_text(f"extends: {repo_root / 'params.yaml'}\ntrain:\n  epoch: 3\n")
    with pytest.raises(ConfigError) as e:
        load_params(variant)
    assert str(variant) in str(e.value) and "did you mean train.epochs?" in str(e.value)
    base = tmp_path / "base.yaml"    # a bad base is named too, not the variant that extends it
    base.write_text(re.sub(r"(?m)^  epochs:", "  epocs:", (repo_root / "params.yaml").read_text(), count=1))
    variant.write_text("extends: base.yaml\n")
    with pytest.raises(ConfigError, match=r"base\.yaml: unknown key train\.epocs"):
        load_params(variant)


def test_params_resolved_for_a_stage_load_again(tmp_path, repo_root):
    """What a torchrun worker / kfp step reads: params resolved for the landmark stage, written back."""
    import yaml

    from faceparse.stages import for_stage

    resolved = for_stage(load_params(repo_root / "params.yaml"), "landmarks")
    f = tmp_path / "params.yaml"
    f.write_text(yaml.safe_dump(resolved))
    assert load_params(f) == resolved
    with pytest.raises(ConfigError, match=r"unknown key model\.presets\.small\.widht"):
        load_params(f, ["model.presets.small.widht=2"])


def test_every_shipped_params_file_fits_the_schema(repo_root):
    from faceparse.schema import known_keys

    for f in [repo_root / "params.yaml", *sorted((repo_root / "configs").glob("*.yaml"))]:
        load_params(f)
    assert "train.epochs" in known_keys() and "model.presets.<name>.width" in known_keys()
