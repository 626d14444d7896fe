"""FISN (faceparse.stages.fisn.network, faceparse.losses_gan): SEANNorm by hand, shapes, no norm layers, one GAN
step, hinge / feature-matching / perceptual losses, VGG-19 weights loading."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from faceparse.losses_gan import (FrozenFeatures, ParserEncoderFeatures, PerceptualLoss, VGG19Features,
                                  d_hinge_loss, feature_matching_loss, g_hinge_loss, generator_loss,
                                  perceptual_network)
from faceparse.stages.fisn.network import (PRESETS, FISNGenerator, MultiscaleDiscriminator, SEANNorm, one_hot,
                                   region_pool)

SMALL_G = {"ngf": 8, "n_down": 2, "n_res": 4, "style_dim": 8, "spade_hidden": 8}
EPS = 1e-5


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _identity_sean(c: int = 2, k: int = 3) -> SEANNorm:
    """style_dim = channels; per-class transform = identity; style convs = centre tap ±identity (+ bias);
    SPADE branch zeroed; blends at sigmoid(0) = ½ → γ = ½·code, β = ½·(0.25 − code)."""
    n = SEANNorm(c, k, style_dim=c, hidden=4)
    with torch.no_grad():
        n.class_weight.copy_(torch.eye(c).expand(k, c, c))
        n.class_bias.zero_()
        for conv, scale, bias in ((n.style_gamma, 1.0, 0.0), (n.style_beta, -1.0, 0.25)):
            conv.weight.zero_()
            conv.weight[:, :, 1, 1] = scale * torch.eye(c)
            conv.bias.fill_(bias)
        for conv in (n.spade_gamma, n.spade_beta):
            conv.weight.zero_()
            conv.bias.zero_()
    return n


def _expected(z: np.ndarray, code_map: np.ndarray) -> np.ndarray:
    mu = z.mean((0, 2, 3), keepdims=True)
    var = z.var((0, 2, 3), keepdims=True)
    zn = (z - mu) / np.sqrt(var + EPS)
    return zn * (1 + 0.5 * code_map) + 0.5 * (0.25 - code_map)


def _halves(b: int = 2, size: int = 4) -> torch.Tensor:
    seg = torch.zeros(b, size, size, dtype=torch.long)
    seg[:, :, size // 2:] = 1
    return seg


def test_sean_norm_by_hand():
    codes = torch.tensor([[[0.2, 0.4], [1.0, 0.6], [0.0, 0.0]],
                          [[0.5, 0.1], [0.3, 0.9], [0.0, 0.0]]])
    present = torch.tensor([[True, True, False]] * 2)
    seg = _halves()
    z = torch.randn(2, 2, 4, 4)
    out = _identity_sean()(z, codes, present, one_hot(seg, 3))
    code_map = codes.numpy()[np.arange(2)[:, None, None], seg.numpy()].transpose(0, 3, 1, 2)
    np.testing.assert_allclose(out.detach().numpy(), _expected(z.numpy(), code_map), atol=1e-5)


def test_target_region_absent_from_source_takes_the_default_code():
    n = _identity_sean()
    with torch.no_grad():
        n.default[2] = torch.tensor([0.7, 0.3])
    codes = torch.tensor([[[0.2, 0.4], [1.0, 0.6], [0.0, 0.0]],
                          [[0.5, 0.1], [0.3, 0.9], [0.9, 0.8]]])
    present = torch.tensor([[True, True, False], [True, True, True]])   # class 2 only in sample 1's source
    target = _halves()
    target[:, :, 3] = 2
    z = torch.randn(2, 2, 4, 4)
    out = n(z, codes, present, one_hot(target, 3))
    used = codes.clone()
    used[0, 2] = torch.tensor([0.7, 0.3])
    code_map = used.numpy()[np.arange(2)[:, None, None], target.numpy()].transpose(0, 3, 1, 2)
    np.testing.assert_allclose(out.detach().numpy(), _expected(z.numpy(), code_map), atol=1e-5)


def test_region_pool_by_hand():
    feats = torch.arange(32, dtype=torch.float32).view(1, 2, 4, 4)
    codes, present = region_pool(feats, one_hot(_halves(1), 3))
    f = feats.numpy()[0]
    np.testing.assert_allclose(codes[0, 0].numpy(), f[:, :, :2].mean((1, 2)))
    np.testing.assert_allclose(codes[0, 1].numpy(), f[:, :, 2:].mean((1, 2)))
    assert present.tolist() == [[True, True, False]] and codes[0, 2].abs().sum() == 0


def test_sean_norm_eval_uses_running_statistics():
    n = _identity_sean()
    codes, present = torch.rand(2, 3, 2), torch.ones(2, 3, dtype=torch.bool)
    masks = one_hot(_halves(), 3)
    z = torch.randn(2, 2, 4, 4)
    n(z, codes, present, masks)
    np.testing.assert_allclose(n.running_mean.numpy(), 0.1 * z.mean((0, 2, 3)).numpy(), atol=1e-6)
    n.eval()
    alone = n(z[:1], codes[:1], present[:1], masks[:1])
    np.testing.assert_allclose(alone.detach().numpy(), n(z, codes, present, masks)[:1].detach().numpy(), atol=1e-6)


@pytest.mark.parametrize("size", [32, 64])
def test_generator_and_discriminator_shapes(size):
    g = FISNGenerator(19, **SMALL_G)
    d = MultiscaleDiscriminator(19, ndf=8, n_layers=3, num_d=2)
    image = torch.rand(2, 3, size, size) * 2 - 1
    seg = torch.randint(0, 19, (2, size, size))
    out = g(image, seg, torch.randint(0, 19, (2, size, size)))
    assert out.shape == image.shape and out.abs().max() <= 1
    feats = d(out, seg)
    assert len(feats) == 2
    h = size
    for scale in feats:
        assert [f.shape[1] for f in scale] == [8, 16, 32, 64, 1]
        side = h
        for _ in range(3):
            side = side // 2 + 1          # 4×4, stride 2, padding 2
        assert scale[-1].shape == (2, 1, side + 2, side + 2)   # two stride-1 4×4 convs: +1 each
        h = (h - 1) // 2 + 1              # 3×3 / 2 average pooling, padding 1
    with pytest.raises(ValueError, match="divisible"):
        g(image[..., :30, :30], seg[..., :30, :30], seg[..., :30, :30])


def test_no_torch_norm_layers_in_the_generator():
    norm_kinds = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)
    for name in (n for n in PRESETS if PRESETS[n]["generator"].get("kind", "sean") == "sean"):
        with torch.device("meta"):
            g = FISNGenerator(19, **PRESETS[name]["generator"])
        assert not [m for m in g.modules() if isinstance(m, norm_kinds)], name
        assert sum(isinstance(m, SEANNorm) for m in g.modules()) == 2 * PRESETS[name]["generator"]["n_res"]


def _snapshot(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.named_parameters()}


def _changed(net: nn.Module, before: dict[str, torch.Tensor]) -> set[str]:
    return {k for k, v in net.named_parameters() if not torch.equal(v, before[k])}


def test_one_gan_step_changes_both_networks():
    g = FISNGenerator(19, **SMALL_G)
    d = MultiscaleDiscriminator(19, ndf=8, n_layers=2, num_d=2)
    per = PerceptualLoss(VGG19Features())
    opt_g, opt_d = (torch.optim.Adam(n.parameters(), lr=1e-3, betas=(0.0, 0.9)) for n in (g, d))
    image = torch.rand(2, 3, 32, 32) * 2 - 1
    seg = torch.randint(0, 19, (2, 32, 32))
    g0, d0 = _snapshot(g), _snapshot(d)

    fake = g(image, seg, seg)
    loss_d = d_hinge_loss(d(image, seg), d(fake.detach(), seg))
    opt_d.zero_grad()
    loss_d.backward()
    opt_d.step()
    d1 = _snapshot(d)
    weights = {k for k in d0 if k.endswith("weight.original")}   # (the last bias's hinge gradient is 0 at init)
    assert not _changed(g, g0) and weights and weights <= _changed(d, d0)

    d_fake = d(fake, seg)
    with torch.no_grad():
        d_real = d(image, seg)
    loss_g, parts = generator_loss(d_fake, d_real, fake, image, per)
    opt_g.zero_grad()
    loss_g.backward()
    opt_g.step()
    assert torch.isfinite(loss_g) and set(parts) == {"gan", "fm", "per"}
    assert not _changed(d, d1) and not any(p.requires_grad for p in per.parameters())
    changed = {k.split(".")[0] for k in _changed(g, g0)}
    assert changed == {"style", "stem", "downs", "sfts", "blocks", "ups", "head"}


def test_hinge_losses_by_hand():
    real = [[torch.tensor([2.0, 0.5])], [torch.tensor([0.0])]]
    fake = [[torch.tensor([-2.0, 0.0])], [torch.tensor([3.0])]]
    # scale 1: (0 + 0.5)/2 + (0 + 1)/2 = 0.75; scale 2: 1 + 4 = 5 → mean 2.875
    assert d_hinge_loss(real, fake).item() == pytest.approx(2.875)
    assert g_hinge_loss(fake).item() == pytest.approx((1.0 - 3.0) / 2)


def test_feature_matching_by_hand():
    one = torch.ones(1, 1, 2, 2)
    fake = [[one, 2 * one, 100 * one], [0 * one, 0 * one, -100 * one]]
    real = [[0 * one, one, 0 * one], [0 * one, 0 * one, 0 * one]]
    # logits are left out: scale 1: 1 + 1 = 2, scale 2: 0 → averaged over discriminators: 1
    assert feature_matching_loss(fake, real).item() == pytest.approx(1.0)


class _Doubling(FrozenFeatures):
    weights = (1.0, 0.5)

    def forward(self, x):
        return [x, 2 * nn.functional.avg_pool2d(x, 2)]


def test_perceptual_and_total_by_hand():
    real = torch.zeros(1, 3, 4, 4)
    fake = torch.full((1, 3, 4, 4), 0.25, requires_grad=True)
    per = PerceptualLoss(_Doubling())
    assert per(fake, real).item() == pytest.approx(0.25 + 0.5 * 0.5)      # mean |Δ| per layer, weighted
    d_fake = [[torch.ones(1), torch.tensor([-1.0])]]
    d_real = [[torch.zeros(1), torch.tensor([5.0])]]
    total, parts = generator_loss(d_fake, d_real, fake, real, per, w_fm=10, w_per=10)
    assert parts["gan"].item() == pytest.approx(1.0) and parts["fm"].item() == pytest.approx(1.0)
    assert total.item() == pytest.approx(1.0 + 10 * 1.0 + 10 * 0.5)
    total.backward()
    assert fake.grad is not None


def test_vgg19_loads_torchvision_layout(tmp_path):
    ref = VGG19Features()
    state = {f"features.{k}": v.half() for k, v in ref.features.state_dict().items()}
    state["features.34.weight"] = torch.zeros(2, 2)       # deeper layers and the classifier: ignored
    state["classifier.0.weight"] = torch.zeros(2, 2)
    torch.save(state, tmp_path / "vgg19.pth")
    net = VGG19Features.from_state_dict(tmp_path / "vgg19.pth")
    assert torch.equal(net.features[28].weight, state["features.28.weight"].float())
    assert not any(p.requires_grad for p in net.parameters())
    net.train()
    assert not net.training
    feats = net(torch.zeros(1, 3, 32, 32))
    assert [f.shape[1] for f in feats] == [64, 128, 256, 512, 512] and feats[-1].shape[-1] == 2


def test_vgg19_refuses_missing_or_mismatched_files(tmp_path):
    with pytest.raises(ValueError, match="nope.pth"):
        VGG19Features.from_state_dict(tmp_path / "nope.pth")
    torch.save({"features.0.weight": torch.zeros(64, 1, 3, 3)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"bad.pth.*missing.*features.0.bias.*wrong shapes.*features.0.weight"):
        VGG19Features.from_state_dict(tmp_path / "bad.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth"):
        VGG19Features.from_state_dict(tmp_path / "junk.pth")


def test_perceptual_network_factory(tmp_path):
    with pytest.raises(ValueError, match="missing-vgg.pth"):
        perceptual_network(f"vgg19:{tmp_path / 'missing-vgg.pth'}")
    with pytest.raises(ValueError, match="parser_model"):
        perceptual_network("parser")
    with pytest.raises(ValueError, match="unknown perceptual network"):
        perceptual_network({"network": "alexnet"})
    from faceparse.models import FPLIIF

    parser = FPLIIF(19, width=8, groups=(1, 1, 1), hidden=(16,), reduce=(16, 8))
    net = perceptual_network({"network": "parser"}, parser_model=parser)
    assert isinstance(net, ParserEncoderFeatures) and all(p.requires_grad for p in parser.parameters())
    x = torch.zeros(1, 3, 16, 16, requires_grad=True)
    feats = net(x)
    assert [f.shape[-1] for f in feats] == [16, 8, 4] and len(net.weights) == 3
    sum(f.sum() for f in feats).backward()
    assert x.grad is not None and all(p.grad is None for p in net.parameters())
