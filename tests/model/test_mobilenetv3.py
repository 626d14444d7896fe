"""MobileNetV3 as the paper's tables give it, and the landmark head's contract."""
import pytest
import torch

from faceparse.stages.landmarks.network import (LANDMARK_PRESETS, MobileNetV3Landmarks, build_landmark_model, classifier,
                                          make_divisible)


def _count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_large_classifier_has_the_papers_parameter_count():
    # Table 3: MobileNetV3-Large 1.0 = 5.4 M parameters, Small 1.0 = 2.5 M (with the 1000-class head)
    assert abs(_count(classifier(1000, "large")) / 5.4e6 - 1) < 0.03
    assert abs(_count(classifier(1000, "small")) / 2.5e6 - 1) < 0.03


def test_make_divisible_rounds_to_eight_without_losing_ten_percent():
    assert make_divisible(16 * 0.5) == 8
    assert make_divisible(72 / 4) == 24          # 18 → 16 would lose > 10 %, so 24
    assert make_divisible(120 / 4) == 32


@pytest.mark.parametrize("size", [128, 256])
def test_output_shape(size):
    torch.manual_seed(0)
    model = build_landmark_model(LANDMARK_PRESETS["small"]).eval()
    out = model(torch.rand(2, 3, size, size) * 2 - 1)
    assert out.shape == (2, 68, 2) and torch.isfinite(out).all()


def test_large_preset_forward_at_64():
    model = MobileNetV3Landmarks("large", num_points=5).eval()
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 5, 2)


def test_mean_shape_init_predicts_the_mean_shape_exactly():
    torch.manual_seed(0)
    mean = torch.rand(68, 2)
    model = build_landmark_model(LANDMARK_PRESETS["small"])
    model.set_mean_shape(mean)
    x = torch.rand(3, 3, 128, 128) * 2 - 1
    assert torch.equal(model.eval()(x), mean.expand(3, 68, 2))
    assert torch.equal(model.train()(x), mean.expand(3, 68, 2))   # dropout before a zero weight changes nothing


def test_one_optimiser_step_changes_the_output():
    torch.manual_seed(0)
    model = build_landmark_model(LANDMARK_PRESETS["small"])
    model.set_mean_shape(torch.full((68, 2), 0.5))
    x, target = torch.rand(4, 3, 128, 128) * 2 - 1, torch.rand(4, 68, 2)
    model.eval()
    before = model(x).detach()
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss = ((model(x) - target) ** 2).sum(-1).mean()
    loss.backward()
    grads = [p.grad for p in model.features.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert model.out.weight.grad.abs().sum() > 0
    opt.step()
    assert not torch.allclose(model.eval()(x), before)


def test_bad_config_and_input_are_refused():
    with pytest.raises(ValueError, match="unknown landmark model keys"):
        build_landmark_model({"arch": "small", "widht": 0.5})
    with pytest.raises(ValueError, match="arch"):
        MobileNetV3Landmarks("medium")
    with pytest.raises(ValueError, match="H, W >= 64"):
        MobileNetV3Landmarks("small", 0.5)(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="mean shape"):
        MobileNetV3Landmarks("small", 0.5).set_mean_shape(torch.zeros(67, 2))


def test_flip_test_prediction_is_mirror_equivariant():
    """With flip testing the prediction for the mirrored image is exactly the mirrored, l/r re-indexed
    prediction for the original (and training-mode output is the plain one)."""
    from faceparse.ibug68 import IBUG_FLIP

    torch.manual_seed(0)
    m = build_landmark_model({"arch": "small", "width": 0.25, "head": "integral", "flip_test": True}).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b = m(x), m(x.flip(-1))
    mirrored = torch.stack([1 - a[..., 0], a[..., 1]], -1)[:, torch.as_tensor(IBUG_FLIP)]
    torch.testing.assert_close(b, mirrored, atol=1e-5, rtol=0)
    m.flip_test = False
    with torch.no_grad():
        plain = m(x)
    assert not torch.allclose(plain, a)
