"""Fast unit tests of faceparse.config, the one loader of params.yaml (`make mutation`)."""
import pytest

from faceparse.config import (ConfigError, apply_overrides, deep_merge, find_params, load_params, model_config,
                              require, section, set_key)
from faceparse.schema import flatten

PRESETS = {"tiny": {"width": 8, "norm": "batch"}, "paper": {"width": 64, "norm": "instance"}}


def write(path, text):
    path.write_text(text)
    return path


def test_find_params_argument_then_env_then_default(tmp_path, monkeypatch):
    a = write(tmp_path / "a.yaml", "x: 1\n")
    b = write(tmp_path / "b.yaml", "x: 2\n")
    monkeypatch.setenv("FACEPARSE_PARAMS", str(b))
    assert find_params(a) == a
    assert find_params() == b
    monkeypatch.delenv("FACEPARSE_PARAMS")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"^params file not found: .*params\.yaml \(pass --params or set "
                                          r"FACEPARSE_PARAMS\)$"):
        find_params()
    write(tmp_path / "params.yaml", "x: 3\n")
    assert str(find_params()) == "params.yaml"
    with pytest.raises(ConfigError, match="params file not found"):
        find_params(tmp_path)                                  # a directory is not a params file


def test_load_params_empty_file_is_an_empty_mapping_and_lists_are_refused(tmp_path):
    assert load_params(write(tmp_path / "empty.yaml", "")) == {}
    with pytest.raises(ConfigError, match=r"list\.yaml: top level must be a mapping, got list$"):
        load_params(write(tmp_path / "list.yaml", "- 1\n- 2\n"))
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML: "):
        load_params(write(tmp_path / "bad.yaml", "train: {epochs: [1\n"))


def test_load_params_extends_relative_to_the_variant_and_applies_overrides(tmp_path):
    (tmp_path / "sub").mkdir()
    write(tmp_path / "base.yaml", "train: {epochs: 5, lr: 0.5}\nevaluate: {split: test}\n")
    v = write(tmp_path / "sub" / "v.yaml", "extends: ../base.yaml\ntrain: {epochs: 7}\n")
    p = load_params(v)
    assert p == {"train": {"epochs": 7, "lr": 0.5}, "evaluate": {"split": "test"}}   # "extends" is consumed
    p = load_params(v, ["train.lr=0.25", "evaluate.split=val"])
    assert p["train"] == {"epochs": 7, "lr": 0.25} and p["evaluate"] == {"split": "val"}
    assert load_params(v, iter(["train.epochs=9"]))["train"]["epochs"] == 9   # any iterable of overrides


def test_load_params_names_every_override_and_every_problem(tmp_path):
    f = write(tmp_path / "p.yaml", "train: {epochs: 5}\n")
    with pytest.raises(ConfigError) as e:
        load_params(f, ["train.epochs=2", "zzz=1", "qqq=2"])
    assert str(e.value).startswith("--set train.epochs=2 --set zzz=1 --set qqq=2: unknown key ")
    assert sorted(str(e.value).split(": ", 1)[1].split("; ")) == ["unknown key qqq", "unknown key zzz"]


def test_deep_merge_merges_mappings_and_copies():
    base = {"a": {"x": 1, "y": {"p": 1}}, "b": [1, 2], "c": 3}
    over = {"a": {"y": {"q": 2}, "z": 0}, "b": [3], "d": {"k": [1]}}
    out = deep_merge(base, over)
    assert out == {"a": {"x": 1, "y": {"p": 1, "q": 2}, "z": 0}, "b": [3], "c": 3, "d": {"k": [1]}}
    out["a"]["y"]["p"] = 99
    out["d"]["k"].append(2)
    assert base["a"]["y"]["p"] == 1 and over["d"]["k"] == [1]       # neither input is shared with the result
    kept = deep_merge(base, {})
    kept["a"]["x"] = 2
    kept["b"].append(9)
    assert base == {"a": {"x": 1, "y": {"p": 1}}, "b": [1, 2], "c": 3}     # keys only in base are copied too
    assert deep_merge({"a": 1}, {"a": {"b": 2}}) == {"a": {"b": 2}}  # a mapping replaces a value
    assert deep_merge({"a": {"b": 2}}, {"a": 1}) == {"a": 1}         # and a value replaces a mapping


def test_apply_overrides_parses_yaml_values_and_splits_at_the_first_equals():
    params = {"train": {"epochs": 1}}
    out = apply_overrides(params, [" train.epochs =3", "train.name=a=b", "x.y=", "x.z=null", "x.w='007'"])
    assert out["train"] == {"epochs": 3, "name": "a=b"}
    assert out["x"] == {"y": None, "z": None, "w": "007"}
    assert params == {"train": {"epochs": 1}}                          # the input is not modified
    assert apply_overrides(params, []) == params and apply_overrides(params, []) is not params


def test_apply_overrides_errors_name_the_override():
    with pytest.raises(ConfigError, match=r"^override 'epochs' must look like section\.key=value$"):
        apply_overrides({}, ["epochs"])
    with pytest.raises(ConfigError, match=r"^override 'a\.b=\[1': value is not valid YAML: "):
        apply_overrides({}, ["a.b=[1"])


def test_set_key_creates_sections_and_refuses_to_descend_into_a_value():
    p = {"a": {"b": 1}}
    set_key(p, "a.c.d", "raw")
    set_key(p, "top", [1])
    assert p == {"a": {"b": 1, "c": {"d": "raw"}}, "top": [1]}
    with pytest.raises(ConfigError, match=r"^cannot set a\.b\.c: 'b' is a value, not a section$"):
        set_key(p, "a.b.c", 2)


def test_section_and_require():
    params = {"train": {"epochs": 3}, "bad": [1]}
    assert section(params, "train") == {"epochs": 3}
    with pytest.raises(ConfigError, match=r"^params has no 'eval' section$"):
        section(params, "eval")
    with pytest.raises(ConfigError, match=r"^params section 'bad' must be a mapping$"):
        section(params, "bad")
    assert require({"k": 0}, "k", "train") == 0
    assert require({"k": None}, "k", "train") is None
    with pytest.raises(ConfigError, match=r"^params: missing train\.epochs$"):
        require({}, "epochs", "train")


def test_model_config_resolves_preset_and_overrides():
    params = {"model": {"preset": "tiny", "presets": PRESETS, "overrides": {"norm": "none"}}}
    assert model_config(params) == {"width": 8, "norm": "none", "preset": "tiny"}
    assert PRESETS["tiny"] == {"width": 8, "norm": "batch"}            # the preset table is not modified
    params = {"model": {"preset": "paper", "presets": PRESETS, "overrides": None}}
    assert model_config(params) == {"width": 64, "norm": "instance", "preset": "paper"}
    assert model_config({"model": {"preset": "paper", "presets": PRESETS}})["width"] == 64
    presets = {"tiny": {"groups": [1, 1]}}
    cfg = model_config({"model": {"preset": "tiny", "presets": presets}})
    cfg["groups"].append(5)
    assert presets == {"tiny": {"groups": [1, 1]}}                      # nested values are copies


def test_model_config_errors():
    with pytest.raises(ConfigError, match=r"^params: model\.preset='big' is not one of \['paper', 'tiny'\]$"):
        model_config({"model": {"preset": "big", "presets": PRESETS}})
    with pytest.raises(ConfigError, match=r"^params: model\.overrides has unknown keys \['a', 'b'\]; known: "
                                          r"\['norm', 'width'\]$"):
        model_config({"model": {"preset": "tiny", "presets": PRESETS, "overrides": {"b": 1, "a": 2, "width": 3}}})
    with pytest.raises(ConfigError, match=r"^params: missing model\.preset$"):
        model_config({"model": {"presets": PRESETS}})
    with pytest.raises(ConfigError, match=r"^params: missing model\.presets$"):
        model_config({"model": {"preset": "tiny"}})
    with pytest.raises(ConfigError, match=r"^params has no 'model' section$"):
        model_config({})


def test_flatten():
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": None}) == {"a.b": 1, "a.c.d": [1, 2], "e": None}
    assert flatten({"a": {"b": 1}}, "p.") == {"p.a.b": 1}
    assert flatten({}) == {}
