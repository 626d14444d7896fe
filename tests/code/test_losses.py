import pytest
import torch

from faceparse.losses import EdgeAwareCE, edge_mask


def test_edge_mask_marks_boundaries_only():
    lab = torch.zeros(1, 6, 6, dtype=torch.long)
    lab[0, :, 3:] = 1
    e = edge_mask(lab, 3)
    assert e[0, :, 2:4].all() and not e[0, :, :2].any() and not e[0, :, 4:].any()


def test_loss_finite_and_edge_term_zero_on_constant_map():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 8, 8, requires_grad=True)
    const = torch.full((2, 8, 8), 3, dtype=torch.long)
    with_edges = EdgeAwareCE(edge_weight=40.0, temperature=0.5)(logits, const)
    plain = EdgeAwareCE(edge_weight=0.0, temperature=0.5)(logits, const)
    assert torch.isfinite(with_edges)
    assert with_edges.item() == pytest.approx(plain.item())  # no edges → no edge term
    with_edges.backward()
    assert torch.isfinite(logits.grad).all()


def test_edge_term_weighs_boundary_pixels():
    torch.manual_seed(0)
    logits = torch.randn(1, 2, 8, 8)
    lab = torch.zeros(1, 8, 8, dtype=torch.long)
    lab[:, :, 4:] = 1
    ce = torch.nn.functional.cross_entropy(logits / 0.5, lab, reduction="none")
    e = edge_mask(lab)
    expected = ce.mean() + 10 * ce[e].mean()
    assert EdgeAwareCE(10.0, 0.5)(logits, lab).item() == pytest.approx(expected.item(), rel=1e-5)


def test_temperature_sharpens():
    logits = torch.tensor([[[[2.0]], [[0.0]]]])
    lab = torch.zeros(1, 1, 1, dtype=torch.long)
    assert EdgeAwareCE(0, 0.5)(logits, lab) < EdgeAwareCE(0, 1.0)(logits, lab)


def test_bad_labels_raise():
    logits = torch.randn(1, 3, 4, 4)
    with pytest.raises(ValueError, match="0..2"):
        EdgeAwareCE()(logits, torch.full((1, 4, 4), 7, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        EdgeAwareCE()(logits, torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match="temperature"):
        EdgeAwareCE(temperature=0)
