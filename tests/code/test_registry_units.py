"""Fast unit tests of the registry's promotion decision (`registry.promote`) against an in-memory stand-in
for MlflowClient: which version becomes champion, and the decision / reason tags (`make mutation`). The
same flow against a real MLflow server is in tests/integration/test_registry.py."""
from types import SimpleNamespace

import pytest
from mlflow.exceptions import MlflowException

from faceparse import registry
from faceparse.config import ConfigError
from faceparse.registry import RegistryError, promote

NAME = "fp"
URI = "http://user:secret@127.0.0.1:5999"


class FakeClient:
    """The MlflowClient calls promote makes, on dicts: versions {v: tags}, aliases {alias: v}."""

    def __init__(self, versions: dict[str, dict[str, str]], aliases: dict[str, str], fail_on: str | None = None):
        self.versions = {v: dict(t) for v, t in versions.items()}
        self.aliases = dict(aliases)
        self.calls: list[tuple] = []
        self.fail_on = fail_on

    def _maybe_fail(self, what):
        if what == self.fail_on:
            raise MlflowException("store is read-only\nsecond line")

    def get_registered_model(self, name):
        assert name == NAME
        self._maybe_fail("get_registered_model")
        return SimpleNamespace(name=name, aliases=None if self.aliases is None else dict(self.aliases))

    def get_model_version(self, name, version):
        assert name == NAME and isinstance(version, str)
        return SimpleNamespace(version=version, tags=dict(self.versions[version]))

    def set_model_version_tag(self, name, version, key, value):
        assert name == NAME
        self._maybe_fail("set_model_version_tag")
        self.calls.append(("tag", str(version), key, value))
        self.versions[str(version)][key] = value

    def set_registered_model_alias(self, name, alias, version):
        assert name == NAME
        self._maybe_fail("set_registered_model_alias")
        self.calls.append(("alias", alias, str(version)))
        self.aliases[alias] = str(version)


def run(monkeypatch, client, margin=0.0, **reg):
    params = {"registry": {"model_name": NAME, "promote_margin": margin, **reg}}

    def client_for(p):
        assert p is params          # the store comes from these params (their tracking URI)
        return client, URI

    monkeypatch.setattr(registry, "client_for", client_for)
    return promote(params)


def tags(client, v):
    return {k: val for k, val in client.versions[v].items() if k.startswith("promotion.")}


def test_first_model_is_promoted(monkeypatch):
    c = FakeClient({"1": {"mean_f1": "0.5"}}, {"challenger": "1"})
    out = run(monkeypatch, c, margin=0.01)
    assert out == {"name": NAME, "promoted": True, "decision": "promoted",
                   "reason": "first model: no champion yet (challenger v1 test mean F1 0.5000)",
                   "challenger": "1", "champion_before": None, "champion_after": "1",
                   "challenger_mean_f1": 0.5, "champion_mean_f1": None, "margin": 0.01}
    assert c.aliases == {"challenger": "1", "champion": "1"}
    t = tags(c, "1")
    assert t["promotion.decision"] == "promoted" and t["promotion.reason"] == out["reason"]
    assert t["promotion.previous_champion"] == ""           # what rollback reads: no previous champion
    assert t["promotion.at"][:2] == "20" and t["promotion.at"].endswith("+00:00")


def test_challenger_beating_champion_by_more_than_the_margin_is_promoted(monkeypatch):
    c = FakeClient({"1": {"mean_f1": "0.5"}, "2": {"mean_f1": "0.8"}}, {"challenger": "2", "champion": "1"})
    out = run(monkeypatch, c, margin=0.25)
    assert out["promoted"] is True and out["decision"] == "promoted"
    assert out["reason"] == "challenger v2 test mean F1 0.8000 > champion v1 0.5000 + margin 0.25"
    assert (out["champion_before"], out["champion_after"]) == ("1", "2")
    assert (out["challenger_mean_f1"], out["champion_mean_f1"], out["margin"]) == (0.8, 0.5, 0.25)
    assert c.aliases["champion"] == "2"
    assert tags(c, "2")["promotion.previous_champion"] == "1"
    assert tags(c, "1") == {}                                # the old champion's tags are not touched
    # the alias moves last, after the decision is recorded
    assert [x[0] for x in c.calls] == ["tag", "tag", "tag", "tag", "alias"]


def test_tie_at_the_margin_is_rejected(monkeypatch):
    c = FakeClient({"1": {"mean_f1": "0.5"}, "2": {"mean_f1": "0.75"}}, {"challenger": "2", "champion": "1"})
    out = run(monkeypatch, c, margin=0.25)                   # 0.75 is not > 0.5 + 0.25
    assert out["promoted"] is False and out["decision"] == "rejected"
    assert out["reason"] == "challenger v2 test mean F1 0.7500 does not beat champion v1 0.5000 + margin 0.25"
    assert (out["champion_before"], out["champion_after"]) == ("1", "1")
    assert c.aliases["champion"] == "1"
    assert tags(c, "2")["promotion.decision"] == "rejected" and "promotion.previous_champion" not in tags(c, "2")
    assert ("alias", "champion", "2") not in c.calls


def test_tie_at_margin_zero_and_a_worse_challenger_are_rejected(monkeypatch):
    for f1 in ("0.5", "0.4"):
        c = FakeClient({"1": {"mean_f1": "0.5"}, "2": {"mean_f1": f1}}, {"challenger": "2", "champion": "1"})
        out = run(monkeypatch, c, margin=None)               # no margin configured: 0
        assert out["decision"] == "rejected" and out["margin"] == 0.0 and c.aliases["champion"] == "1"
        assert out["reason"].endswith("does not beat champion v1 0.5000 + margin 0")
    c = FakeClient({"1": {"mean_f1": "0.5"}, "2": {"mean_f1": "0.5001"}}, {"challenger": "2", "champion": "1"})
    assert run(monkeypatch, c)["promoted"] is True          # any improvement at margin 0
    # no promote_margin key at all: margin 0 too
    c = FakeClient({"1": {"mean_f1": "0.5"}, "2": {"mean_f1": "0.5001"}}, {"challenger": "2", "champion": "1"})
    monkeypatch.setattr(registry, "client_for", lambda params: (c, URI))
    out = promote({"registry": {"model_name": NAME}})
    assert out["promoted"] is True and out["margin"] == 0.0


def test_missing_or_unreadable_challenger_metric_is_rejected(monkeypatch):
    for t in ({}, {"mean_f1": "n/a"}, {"mean_f1": None}):
        c = FakeClient({"1": {"mean_f1": "0.5"}, "2": t}, {"challenger": "2", "champion": "1"})
        out = run(monkeypatch, c)
        assert out["decision"] == "rejected" and out["promoted"] is False and out["challenger_mean_f1"] is None
        assert out["reason"] == "challenger v2 has no test mean F1 (tag mean_f1): evaluate it and register again"
        assert c.aliases["champion"] == "1"
    c = FakeClient({"2": {}}, {"challenger": "2"})          # not even as the first model
    out = run(monkeypatch, c)
    assert out["decision"] == "rejected" and "champion" not in c.aliases and out["champion_after"] is None


def test_champion_without_metric_is_replaced(monkeypatch):
    c = FakeClient({"1": {}, "2": {"mean_f1": "0.6"}}, {"challenger": "2", "champion": "1"})
    out = run(monkeypatch, c, margin=0.5)
    assert out["decision"] == "promoted" and out["champion_mean_f1"] is None
    assert out["reason"] == "champion v1 has no recorded test mean F1; challenger v2 has 0.6000"
    assert c.aliases["champion"] == "2" and tags(c, "2")["promotion.previous_champion"] == "1"


def test_challenger_already_champion_changes_nothing(monkeypatch):
    c = FakeClient({"1": {"mean_f1": "0.5"}}, {"challenger": "1", "champion": "1"})
    out = run(monkeypatch, c)
    assert out["decision"] == "already-champion" and out["promoted"] is False
    assert out["reason"] == "challenger v1 is already the champion"
    assert (out["champion_before"], out["champion_after"]) == ("1", "1")
    assert c.calls == []


def test_different_test_data_is_noted(monkeypatch):
    note = " (note: the two were evaluated on different test data)"
    for sha1, sha2, noted in (("aa", "bb", True), ("aa", "aa", False), ("aa", None, False), (None, "bb", False)):
        t1 = {"mean_f1": "0.5", **({"dataset_sha256": sha1} if sha1 else {})}
        t2 = {"mean_f1": "0.9", **({"dataset_sha256": sha2} if sha2 else {})}
        c = FakeClient({"1": t1, "2": t2}, {"challenger": "2", "champion": "1"})
        out = run(monkeypatch, c)
        assert out["reason"] == "challenger v2 test mean F1 0.9000 > champion v1 0.5000 + margin 0" + (
            note if noted else ""), (sha1, sha2)
        assert tags(c, "2")["promotion.reason"] == out["reason"]


def test_no_challenger_and_missing_model_name_are_refused(monkeypatch):
    c = FakeClient({"1": {"mean_f1": "0.5"}}, {"champion": "1"})
    with pytest.raises(RegistryError, match=r"^registered model 'fp' has no 'challenger' alias in "
                                            r"http://127\.0\.0\.1:5999: run `faceparse register` first$"):
        run(monkeypatch, c)
    monkeypatch.setattr(registry, "client_for", lambda params: (c, URI))
    with pytest.raises(ConfigError, match=r"^params: missing registry\.model_name$"):
        promote({"registry": {"model_name": ""}})
    with pytest.raises(ConfigError, match="no 'registry' section"):
        promote({})


def test_unknown_registered_model_is_named(monkeypatch):
    c = FakeClient({}, {}, fail_on="get_registered_model")
    c._maybe_fail = lambda what: (_ for _ in ()).throw(
        MlflowException("Registered Model with name=fp not found", error_code="RESOURCE_DOES_NOT_EXIST"))
    with pytest.raises(RegistryError, match=r"^registered model 'fp' not found in http://127\.0\.0\.1:5999 "
                                            r"\(run `faceparse register` first\)$"):
        run(monkeypatch, c)


def test_store_errors_become_registry_errors(monkeypatch):
    c = FakeClient({"1": {"mean_f1": "0.5"}}, {"challenger": "1"}, fail_on="set_registered_model_alias")
    with pytest.raises(RegistryError, match=r"^promoting 'fp' failed on the MLflow store at "
                                            r"http://127\.0\.0\.1:5999: store is read-only$"):
        run(monkeypatch, c)


def test_landmark_stage_promotes_the_lower_nme(monkeypatch):
    # params `stage: landmarks`: the primary metric is NME (tag nme), lower is better, the margin is subtracted
    def decide(nme, margin=0.25):
        c = FakeClient({"1": {"nme": "0.5"}, "2": {"nme": nme}}, {"challenger": "2", "champion": "1"})
        monkeypatch.setattr(registry, "client_for", lambda params: (c, URI))
        out = promote({"stage": "landmarks", "registry": {"model_name": NAME, "promote_margin": margin}})
        assert c.aliases["champion"] == ("2" if out["promoted"] else "1")
        return out

    out = decide("0.125")
    assert out["promoted"] is True and out["decision"] == "promoted"
    assert out["reason"] == "challenger v2 test NME 0.1250 < champion v1 0.5000 - margin 0.25"
    assert (out["challenger_nme"], out["champion_nme"]) == (0.125, 0.5) and "challenger_mean_f1" not in out
    out = decide("0.25")                                     # exactly the margin better: not enough
    assert out["decision"] == "rejected"
    assert out["reason"] == "challenger v2 test NME 0.2500 does not beat champion v1 0.5000 - margin 0.25"
    assert decide("0.75")["decision"] == "rejected"          # a higher NME is worse
    assert decide("0.4999", margin=0)["promoted"] is True
    out = decide(None)
    assert out["reason"] == "challenger v2 has no test NME (tag nme): evaluate it and register again"


def test_stage_comparison_direction_and_default_margin():
    from faceparse.stages import get_stage

    parser, landmarks = get_stage("parser"), get_stage("landmarks")
    assert parser.better(0.625, 0.5) and not parser.better(0.5, 0.5) and not parser.better(0.375, 0.5)
    assert landmarks.better(0.375, 0.5) and not landmarks.better(0.5, 0.5) and not landmarks.better(0.625, 0.5)
    assert not parser.better(0.625, 0.5, 0.125) and parser.better(0.75, 0.5, 0.125)
    assert not landmarks.better(0.375, 0.5, 0.125) and landmarks.better(0.25, 0.5, 0.125)


def test_float_tag_and_version_by_alias():
    mv = SimpleNamespace(tags={"a": "0.25", "b": "x", "c": None})
    assert registry._float_tag(mv, "a") == 0.25
    assert registry._float_tag(mv, "b") is None and registry._float_tag(mv, "c") is None
    assert registry._float_tag(mv, "missing") is None
    c = FakeClient({"3": {"k": "v"}}, {"champion": "3"})
    got = registry._version_by_alias(c, NAME, "champion")
    assert got.version == "3" and got.tags == {"k": "v"}
    assert registry._version_by_alias(c, NAME, "challenger") is None
    c.aliases = {"champion": 3}                              # MLflow may hand the version as an int
    assert registry._version_by_alias(c, NAME, "champion").version == "3"
    c.aliases = None                                         # a model with no alias at all
    assert registry._version_by_alias(c, NAME, "champion") is None


@pytest.mark.parametrize("stage, primary, baseline, floor_param, promoted, reason", [
    # parser: mean F1 ≥ 3 × the constant-skin parser's (0.1 → 0.3)
    ("parser", {"mean_f1": "0.35"}, {"constant_skin_f1": "0.1"}, {}, True, None),
    ("parser", {"mean_f1": "0.25"}, {"constant_skin_f1": "0.1"}, {}, False,
     "challenger v1 test mean F1 0.2500 does not clear its floor 0.3000 (constant_skin_f1 0.1000 × 3; "
     "registry.floor)"),
    # landmarks: NME below 0.6 × the mean shape's
    ("landmarks", {"nme": "0.5"}, {"mean_shape_nme": "1.0"}, {}, True, None),
    ("landmarks", {"nme": "0.625"}, {"mean_shape_nme": "1.0"}, {}, False,
     "challenger v1 test NME 0.6250 does not clear its floor 0.6000 (mean_shape_nme 1.0000 × 0.6; registry.floor)"),
    ("landmarks", {"nme": "0.625"}, {"mean_shape_nme": "1.0"}, {"floor": 0.75}, True, None),   # set in params
    ("landmarks", {"nme": "0.95"}, {"mean_shape_nme": "1.0"}, {"floor": None}, True, None),    # turned off
    # fisn: 2 dB over the occluded input; completion: M_γ above M_α
    ("fisn", {"psnr_out": "17.5"}, {"psnr_input": "15.0"}, {}, True, None),
    ("fisn", {"psnr_out": "16.5"}, {"psnr_input": "15.0"}, {}, False,
     "challenger v1 test PSNR (dB) inside the occluded region 16.5000 does not clear its floor 17.0000 "
     "(psnr_input 15.0000 ± 2; registry.floor)"),
    ("completion", {"f1_occluded_gamma": "0.25"}, {"f1_occluded_alpha": "0.25"}, {}, False,
     "challenger v1 test F1 inside the occluded region 0.2500 does not clear its floor 0.2500 "
     "(f1_occluded_alpha 0.2500 ± 0; registry.floor)"),
    ("parser", {"mean_f1": "0.01"}, {}, {}, True, None),     # no baseline measured: nothing to hold it to
])
def test_a_first_model_below_its_floor_is_not_promoted(monkeypatch, stage, primary, baseline, floor_param,
                                                        promoted, reason):
    c = FakeClient({"1": {**primary, **baseline}}, {"challenger": "1"})
    monkeypatch.setattr(registry, "client_for", lambda params: (c, URI))
    out = promote({"stage": stage, "registry": {"model_name": NAME, "promote_margin": 0.0, **floor_param}})
    assert out["promoted"] is promoted and ("champion" in c.aliases) is promoted
    if reason:
        assert out["decision"] == "rejected" and out["reason"] == reason
