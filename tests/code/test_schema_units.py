"""Fast unit tests of the params schema's error messages (faceparse.schema; `make mutation`): every bad key is
named in full, with at most two suggestions (best first), or the known keys of its section."""
import re

import pytest

from faceparse.schema import SchemaError, check_params, flatten


def problems(params) -> list[str]:
    with pytest.raises(SchemaError) as e:
        check_params(params)
    assert str(e.value) == "; ".join(e.value.problems)
    return e.value.problems


def test_schema_error_joins_its_problems():
    e = SchemaError(["a is bad", "b is bad"])
    assert e.problems == ["a is bad", "b is bad"] and str(e) == "a is bad; b is bad"


def test_valid_params_pass():
    check_params({})
    check_params({"train": {"epochs": 3, "lr": 0.5}, "validate": {"min_classes": 2},
                  "model": {"preset": "tiny", "presets": {"tiny": {"width": 8, "groups": [1, 1, 1]}}}})


def test_mistyped_value_shows_what_was_given():
    assert problems({"train": {"epochs": "three"}}) == [
        "train.epochs: input should be a valid integer, unable to parse string as an integer (got 'three')"]


def test_unknown_top_level_key_suggests_a_section_or_nothing():
    assert problems({"staging": "parser"}) == ["unknown key staging (did you mean stage?)"]   # ratio 8/12
    assert problems({"zzz": 1}) == ["unknown key zzz"]          # nothing alike, no section to list


def suggestions(problem: str) -> list[str]:
    """The keys after "did you mean", best first."""
    m = re.fullmatch(r"unknown key \S+ \(did you mean (.+)\?\)", problem)
    assert m, problem
    return m.group(1).split(" or ")


def test_unknown_section_names_each_key_inside_it():
    assert problems({"trian": {"epochs": 3, "sub": {"x": 1}}}) == [
        "unknown key trian.epochs (did you mean train.epochs?)", "unknown key trian.sub.x"]
    # a misspelt section further down: the whole key is matched against known keys of the same depth,
    # the best first, two at most (the runner-up depends on the schema's other keys)
    (p,) = problems({"modl": {"presets": {"tiny": {"width": 8}}}})
    assert p.startswith("unknown key modl.presets.tiny.width (did you mean ")
    got = suggestions(p)
    assert got[0] == "model.presets.tiny.width" and len(got) == 2 and got[1].startswith("model.presets.tiny.")
    (p,) = problems({"train": {"augmnt": {"p": 0.5}}})
    assert p.startswith("unknown key train.augmnt.p (did you mean ")   # the full dotted key of the leaf
    got = suggestions(p)
    assert got[0] == "train.augment.p" and len(got) == 2 and got[1].startswith("train.augment.")


def test_unknown_key_in_a_known_section_suggests_its_siblings_two_at_most():
    (p,) = problems({"serve": {"rollout": {"max_client_error": 0.1}}})
    got = suggestions(p)
    assert got[0] == "serve.rollout.max_client_error_delta" and len(got) == 2
    assert got[1].startswith("serve.rollout.max_")
    assert problems({"serve": {"rollout": {"percnt": 5}}}) == [
        "unknown key serve.rollout.percnt (did you mean serve.rollout.percent?)"]
    (p,) = problems({"data": {"synth": {"bogus": 1}}})     # nothing alike: the section's keys, sorted
    m = re.fullmatch(r"unknown key data\.synth\.bogus \(known: (.+)\)", p)
    assert m, p
    known = m.group(1).split(", ")
    assert known == sorted(known) and {"n", "occlusion_prob", "seed", "splits"} <= set(known)


def test_every_bad_key_is_reported():
    assert sorted(problems({"train": {"epoch": 1, "lr": "fast"}, "zzz": 0})) == [
        "train.lr: input should be a valid number, unable to parse string as a number (got 'fast')",
        "unknown key train.epoch (did you mean train.epochs?)",
        "unknown key zzz"]


def test_flatten_nested_sections():
    assert flatten({"x": 1}) == {"x": 1}
    assert flatten({"a": {"b": 1, "c": {"d": [2]}}, "e": {}, "f": None}, "p.", keep_empty=True) == {
        "p.a.b": 1, "p.a.c.d": [2], "p.e": {}, "p.f": None}


def test_fill_defaults_adds_only_what_is_left_out_and_only_inside_given_sections():
    from faceparse.defaults import fill_defaults, section_defaults
    from faceparse.schema import BaseParams, Rollout

    given = {"validate": {"min_classes": 5}, "model": {"presets": {"a": {"width": 8}}, "overrides": None},
             "serve": {"rollout": {"percent": 20, "min_agreement": None}}, "train": "not a mapping"}
    out = fill_defaults(BaseParams, given)
    assert out["validate"] == {"min_classes": 5, "max_background_fraction": 0.98, "min_face_fraction": 0.01}  # by alias
    assert out["model"] == {"presets": {"a": {"width": 8}}, "overrides": None}     # no preset default: unchanged
    ro = out["serve"]["rollout"]
    assert ro["percent"] == 20 and ro["router_port"] == 8483 and ro["min_agreement"] is None
    assert out["serve"]["detect"] is True and out["train"] == "not a mapping"
    assert set(out) == set(given) and "detect" not in given["serve"]              # no new section; a copy
    out["serve"]["rollout"]["steps"].append(99)
    assert fill_defaults(Rollout, None)["steps"] == [10, 50] == section_defaults(Rollout)["steps"]
    assert section_defaults(Rollout)["min_agreement"] is None and fill_defaults(Rollout, {}).get("min_agreement", 1) == 1


def test_fill_defaults_fills_each_entry_of_a_map_section():
    from typing import Optional

    from faceparse.defaults import fill_defaults
    from faceparse.schema import Rollout, Section

    class Many(Section):
        arms: Optional[dict[str, Rollout]] = None

    out = fill_defaults(Many, {"arms": {"a": {"percent": 5}, "b": 3}})
    assert out["arms"]["a"]["percent"] == 5 and out["arms"]["a"]["router_port"] == 8483 and out["arms"]["b"] == 3
