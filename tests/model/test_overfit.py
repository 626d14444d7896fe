"""The full paper preset (depth and width) must be able to fit a handful of images: catches broken
gradients, a decoder that ignores its codes, or coordinates that do not line up with the labels."""
import numpy as np
import pytest
import torch

from faceparse.config import load_params, model_config
from faceparse.losses import EdgeAwareCE, edge_mask
from faceparse.models import build_model, make_coord


def random_shapes(n=8, size=64, classes=5, seed=0):
    """Images of random rectangles / discs; each class has its own colour, plus noise."""
    rng = np.random.default_rng(seed)
    colours = rng.uniform(-1, 1, (classes, 3))
    yy, xx = np.mgrid[:size, :size]
    labels = np.zeros((n, size, size), np.int64)
    for i in range(n):
        for _ in range(4):
            c = rng.integers(1, classes)
            cy, cx = rng.integers(8, size - 8, 2)
            r = int(rng.integers(5, 16))
            if rng.random() < 0.5:
                mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
            else:
                mask = (abs(yy - cy) < r // 2) & (abs(xx - cx) < r)
            labels[i][mask] = c
    images = colours[labels].transpose(0, 3, 1, 2) + rng.normal(0, 0.1, (n, 3, size, size))
    return torch.tensor(images, dtype=torch.float32), torch.tensor(labels)


@pytest.mark.slow
def test_paper_preset_overfits_eight_images():
    torch.manual_seed(0)
    images, labels = random_shapes()
    model = build_model(model_config(load_params(overrides=["model.preset=paper"])), 5)
    loss_fn = EdgeAwareCE(edge_weight=10.0, temperature=0.5)
    opt = torch.optim.Adam(model.parameters(), lr=5e-4)
    coord = make_coord(64, 64).unsqueeze(0).expand(8, -1, -1)
    flat = labels.view(8, -1)
    edges = edge_mask(labels).view(8, -1)
    g = torch.Generator().manual_seed(0)
    acc = 0.0
    for step in range(300):
        model.train()
        idx = torch.randint(0, 64 * 64, (8, 1024), generator=g)  # LIIF-style sampled queries
        q = torch.gather(coord, 1, idx.unsqueeze(-1).expand(-1, -1, 2))
        logits = model.query(model.encode(images), q).transpose(1, 2)
        loss = loss_fn(logits, torch.gather(flat, 1, idx), torch.gather(edges, 1, idx))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 25 == 24:
            model.eval()
            with torch.no_grad():
                hit = model(images, 64).argmax(1) == labels
            acc, fg_acc = hit.float().mean().item(), hit[labels > 0].float().mean().item()
            print(f"step {step + 1}: loss {loss.item():.3f} pixel acc {acc:.3f} foreground acc {fg_acc:.3f}")
            if acc >= 0.95 and fg_acc >= 0.9:
                break
    # foreground too: a model stuck on the majority class must not pass
    assert acc >= 0.95 and fg_acc >= 0.9, f"pixel acc {acc:.3f}, foreground {fg_acc:.3f} after {step + 1} steps"
