"""Tests that would catch a wrong FP-LIIF."""
import pytest
import torch

from faceparse.config import load_params, model_config
from faceparse.models import build_model, count_params, make_coord
from faceparse.models.liif import ensemble_geometry, ensemble_weights


def cfg(preset="tiny", **over):
    c = model_config(load_params(overrides=[f"model.preset={preset}"]))
    c.update(over)
    return c


def test_paper_parameter_count_is_the_papers():
    n = count_params(build_model(cfg("paper"), 19))
    assert abs(n - 2.29e6) / 2.29e6 < 0.01, n


@pytest.mark.parametrize("out", [16, 37, 64, 96, (48, 80)])
def test_any_output_size_from_one_input(out):
    torch.manual_seed(0)
    m = build_model(cfg(), 19).eval()
    with torch.no_grad():
        y = m(torch.randn(2, 3, 64, 64), out)
    hw = (out, out) if isinstance(out, int) else out
    assert y.shape == (2, 19, *hw)
    assert torch.isfinite(y).all()


def test_paper_preset_shapes_and_latent_grid():
    m = build_model(cfg("paper"), 11).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        z = m.encoder(x)
        assert z.shape == (1, 64, 16, 16)  # /4, 64 channels
        assert m(x, 32).shape == (1, 11, 32, 32)


@pytest.mark.parametrize("over", [{"decoder": "unet"}, {"ensemble": False}, {"norm": "batch"}, {"norm": "none"}, {"unfold": False}])
def test_ablation_variants_run(over):
    m = build_model(cfg(**over), 19).eval()
    with torch.no_grad():
        assert m(torch.randn(2, 3, 64, 64), 40).shape == (2, 19, 40, 40)


def before_and_after(m, x, out, change):
    """The model's no-grad output, then its output again after change(m): for equivalence tests."""
    with torch.no_grad():
        a = m(x, out)
        change(m)
        return a, m(x, out)


def test_factorised_first_layer_equals_concatenated_formulation():
    torch.manual_seed(1)
    m = build_model(cfg(), 19).eval()
    a, b = before_and_after(m, torch.randn(2, 3, 64, 64), 50, lambda m: setattr(m, "factorized", False))
    assert torch.allclose(a, b, atol=1e-5)


def test_unfold_and_reduce_run_as_one_conv():
    # prepare() computes unfold3x3 + the first reduce Linear as a 3×3 conv: same codes as the paper's
    # literal unfold → MLP, and the same parameter (a Linear's weight).
    torch.manual_seed(5)
    m = build_model(cfg(), 19).eval()
    dec = m.decoder
    assert isinstance(dec.reduce[0], torch.nn.Linear)
    c = dec.reduce[0].in_features // 9
    z = torch.randn(2, c, 9, 7)
    with torch.no_grad():
        codes = dec.prepare(z)["codes"]
        literal = dec.reduce(torch.nn.functional.unfold(z, 3, padding=1).view(2, c * 9, 9, 7).permute(0, 2, 3, 1))
    assert torch.allclose(codes, literal.reshape(2, 63, -1), atol=1e-5)


def test_chunked_decoding_matches_one_chunk():
    torch.manual_seed(2)
    m = build_model(cfg(query_chunk=100), 19).eval()
    a, b = before_and_after(m, torch.randn(1, 3, 64, 64), 48, lambda m: setattr(m.decoder, "query_chunk", 10**6))
    assert torch.allclose(a, b, atol=1e-6)


def test_ensemble_weights_sum_to_one():
    torch.manual_seed(3)
    rels = [torch.rand(5, 7, 2) * 2 - 1 for _ in range(4)]
    w = ensemble_weights(rels)
    assert torch.allclose(w.sum(0), torch.ones(5, 7))
    assert (w > 0).all()


def test_ensemble_reproduces_hand_computed_case():
    """4×4 latent grid, query (row, col) = (-0.6, 0.1). Its 4 neighbouring cells are (0,1), (0,2), (1,1),
    (1,2); by hand the opposite-area weights are .21, .49, .09, .21 (= bilinear weights), so blending the
    members' cell indices gives .21·1 + .49·2 + .09·5 + .21·6 = 2.9."""
    coord = torch.tensor([[[-0.6, 0.1]]])
    idx, rel, wts = ensemble_geometry(coord, 4, 4)
    assert idx.tolist() == [1, 2, 5, 6]  # member order (vx, vy) = (-1,-1), (-1,1), (1,-1), (1,1)
    assert torch.allclose(wts[0], torch.tensor([0.21, 0.49, 0.09, 0.21]), atol=1e-5)
    assert (wts[0] * idx.float()).sum().item() == pytest.approx(2.9, abs=1e-5)
    assert torch.allclose(rel, torch.tensor([[0.6, 1.4], [0.6, -0.6], [-1.4, 1.4], [-1.4, -0.6]]), atol=1e-5)
    # second image of a batch: rows offset by one latent grid (16 cells)
    idx2, _, _ = ensemble_geometry(coord.expand(2, -1, -1), 4, 4)
    assert idx2.tolist() == [1, 2, 5, 6, 17, 18, 21, 22]


def test_cpu_tiles_match_one_call():
    torch.manual_seed(4)
    m = build_model(cfg(), 19).eval()
    # 7 is not a divisor of 2·40·40: exercises the ragged last tile
    a, b = before_and_after(m, torch.randn(2, 3, 64, 64), 40, lambda m: setattr(m.decoder, "CPU_TILE", 7))
    assert torch.allclose(a, b, atol=1e-6)


def test_make_coord_pixel_centres():
    c = make_coord(2, 4)
    assert c.shape == (8, 2)
    assert torch.allclose(c[0], torch.tensor([-0.5, -0.75]))
    assert torch.allclose(c[-1], torch.tensor([0.5, 0.75]))


@pytest.mark.parametrize("bad, match", [
    (torch.randn(1, 4, 32, 32), "shape"),
    (torch.randn(1, 1, 32, 32), "shape"),
    (torch.randn(3, 32, 32), "shape"),
    (torch.zeros(1, 3, 32, 32, dtype=torch.uint8), "float"),
    ([[0.0]], "torch.Tensor"),
])
def test_bad_images_raise_value_error(bad, match):
    m = build_model(cfg(), 19)
    with pytest.raises(ValueError, match=match):
        m(bad, 32)


@pytest.mark.parametrize("out", [0, -1, 4097, 10**6, 2.5, (32,), (32, 0)])
def test_bad_out_size_raises_value_error(out):
    m = build_model(cfg(), 19)
    with pytest.raises(ValueError, match="out_size"):
        m(torch.randn(1, 3, 32, 32), out)


def test_bad_model_config_raises_value_error():
    with pytest.raises(ValueError, match="norm"):
        build_model(cfg(norm="group"), 19)
    with pytest.raises(ValueError, match="decoder"):
        build_model(cfg(decoder="fpn"), 19)


def test_cpu_inference_path_matches_autograd_path():
    """The buffered no-grad CPU decoder (bias folded into the GEMM) against the plain one, with uneven
    hidden widths and a ragged last tile."""
    torch.manual_seed(5)
    m = build_model(cfg(hidden=[24, 16, 8]), 19).eval()
    m.decoder.CPU_TILE = 9
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a = m(x, 33)
    b = m(x, 33)  # grad enabled: the tiled autograd path
    assert torch.allclose(a, b.detach(), atol=1e-6)
