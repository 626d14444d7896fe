import pytest
import torch

from faceparse.stages import get_stage, register_stage


def test_parser_stage_provides_the_whole_path():
    st = get_stage("parser")
    model = st.build_model({"width": 8, "groups": [1, 1, 1], "reduce": [16], "hidden": [16]}, 5)
    assert model(torch.randn(1, 3, 32, 32), 16).shape == (1, 5, 16, 16)
    loss = st.build_loss({"loss": {"edge_weight": 10, "temperature": 0.5, "edge_kernel": 3}})
    assert torch.isfinite(loss(torch.randn(1, 5, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long)))
    assert st.primary_metric == "mean_f1"


def test_unknown_stage_and_double_registration_are_refused():
    with pytest.raises(ValueError, match="unknown model stage 'fisn'"):
        get_stage("fisn")
    with pytest.raises(ValueError, match="already registered"):
        register_stage("parser", lambda: get_stage("parser"))
