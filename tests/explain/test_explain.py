"""Grad-CAM and occlusion heatmaps of tiny CNNs that learned where a bright box is (left or right half).

The box's half is known, so a sound explanation must put clearly more of its mass there than on the
other half; and the model must come out of explain() exactly as it went in.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from torch import nn

from medsight.errors import ConfigError, DataError
from medsight.explain import default_target_layer, explain, explanation_png

SHAPES = {2: (16, 32), 3: (12, 12, 12)}  # 2D (H, W) split along W; 3D (X, Y, Z) split along X
SPLIT_AXIS = {2: 1, 3: 0}
BOX = 4
# (dims, multilabel) -> Adam steps, learning rate, batch size; about 1 s in all on one thread
STEPS = {(2, False): (120, 2e-2, 32), (2, True): (300, 1e-2, 32), (3, False): (120, 1e-2, 16)}


def _images(n: int, dims: int, multilabel: bool, gen: torch.Generator):
    """Noisy images ``(n, 1, *shape)`` with a bright box at a random place in some halves.

    Multi-class: target 0 = no box, 1 = a box in the left half, 2 = a box in the right half.
    Multi-label: target ``(n, 2)`` says whether the left / the right half holds a box (maybe both).
    Returns ``(images, present (n, 2) bool, target)``.
    """
    shape, split = SHAPES[dims], SPLIT_AXIS[dims]
    x = 0.1 * torch.randn((n, 1, *shape), generator=gen)
    if multilabel:
        present = torch.randint(0, 2, (n, 2), generator=gen).bool()
        y = present.float()
    else:
        y = torch.randint(0, 3, (n,), generator=gen)
        present = torch.stack([y == 1, y == 2], dim=1)
    for i, half in torch.nonzero(present).tolist():
        starts = [int(torch.randint(0, side - BOX + 1, (1,), generator=gen)) for side in shape]
        width = shape[split] // 2
        starts[split] = half * width + int(torch.randint(0, width - BOX + 1, (1,), generator=gen))
        x[(i, 0, *[slice(s, s + BOX) for s in starts])] += 1.0
    return x, present, y


class _TinyCNN(nn.Module):
    """Two convolutions, global average pooling, a linear head: the shape of real classifiers (ResNet,
    DenseNet). A coordinate channel along the split axis lets it tell left from right."""

    def __init__(self, dims: int, n_out: int) -> None:
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        self.split_axis = SPLIT_AXIS[dims]
        self.features = nn.Sequential(
            conv(2, 8, 3, padding=1), nn.ReLU(inplace=True), conv(8, 8, 3, padding=1), nn.ReLU(inplace=True)
        )
        self.head = nn.Linear(8, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        side = x.shape[2 + self.split_axis]
        view = [1] * x.ndim
        view[2 + self.split_axis] = side
        coord = torch.linspace(-1.0, 1.0, side, dtype=x.dtype).view(view).expand(x.shape[0], 1, *x.shape[2:])
        feats = self.features(torch.cat([x, coord], dim=1))
        return self.head(feats.flatten(2).mean(2))


def _train(dims: int, multilabel: bool) -> tuple[nn.Module, torch.Generator]:
    """The tiny CNN fitted for a few dozen Adam steps; asserts it learned the task."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    model = _TinyCNN(dims, 2 if multilabel else 3)
    loss_fn = nn.functional.binary_cross_entropy_with_logits if multilabel else nn.functional.cross_entropy
    steps, lr, batch = STEPS[(dims, multilabel)]
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        x, _, y = _images(batch, dims, multilabel, gen)
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    opt.zero_grad(set_to_none=True)
    x, _, y = _images(64, dims, multilabel, gen)
    with torch.no_grad():
        out = model(x)
    acc = (((out > 0) == y.bool()) if multilabel else (out.argmax(1) == y)).float().mean().item()
    assert acc >= 0.9, f"the tiny {dims}D CNN did not learn the task (accuracy {acc:.2f})"
    return model.eval(), gen


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def models():
    """Trained lazily per (dims, multilabel), once per module."""
    cache: dict = {}

    def get(dims: int, multilabel: bool = False) -> tuple[nn.Module, torch.Generator]:
        if (dims, multilabel) not in cache:
            cache[(dims, multilabel)] = _train(dims, multilabel)
        return cache[(dims, multilabel)]

    return get


@pytest.fixture
def model2d(models):
    return models(2)


def _halves(heat: np.ndarray, axis: int) -> tuple[float, float]:
    left, right = np.split(heat, 2, axis=axis)
    return float(left.sum()), float(right.sum())


def _check_heatmap(heat: np.ndarray, dims: int) -> None:
    assert heat.shape == SHAPES[dims] and heat.dtype == np.float32
    assert heat.min() >= 0.0 and heat.max() == pytest.approx(1.0)


@pytest.mark.parametrize("method", ["gradcam", "occlusion"])
@pytest.mark.parametrize("dims", [2, 3])
def test_heatmap_mass_on_the_box_half(dims, method, models):
    """Multi-class, default target (the predicted class): mass on the box's half."""
    model, gen = models(dims)
    x, present, _ = _images(10, dims, False, gen)
    with torch.no_grad():
        pred = model(x).argmax(1)
    checked = 0
    for i, half in torch.nonzero(present).tolist():
        if int(pred[i]) != half + 1:
            continue  # misclassified: nothing to explain
        heat = explain(model, x[i], method=method)
        _check_heatmap(heat, dims)
        on, off = _halves(heat, SPLIT_AXIS[dims])[:: 1 if half == 0 else -1]
        assert on > 2.0 * off, (
            f"{method} {dims}D box in half {half}: mass {on:.2f} on its half, {off:.2f} off"
        )
        checked += 1
    assert checked >= 3


@pytest.mark.parametrize("method", ["gradcam", "occlusion"])
def test_multilabel_target_is_the_label_index(method, models):
    """One box: label ``half``'s map is on that half. Boxes in both halves: label 0's map leans further
    left than label 1's."""
    model, gen = models(2, multilabel=True)
    x, present, _ = _images(16, 2, True, gen)
    with torch.no_grad():
        found = model(x) > 0
    singles = doubles = 0
    for i in range(len(x)):
        labels = [t for t in (0, 1) if present[i, t] and found[i, t]]
        heats = {t: explain(model, x[i], method=method, target=t) for t in labels}
        for heat in heats.values():
            _check_heatmap(heat, 2)
        if len(labels) == 1 and not present[i].all():
            on, off = _halves(heats[labels[0]], 1)[:: 1 if labels[0] == 0 else -1]
            assert on > 2.0 * off, f"{method} label {labels[0]}: mass {on:.2f} on its half, {off:.2f} off"
            singles += 1
        elif len(labels) == 2:
            shares = [_halves(heats[t], 1)[0] / float(heats[t].sum()) for t in (0, 1)]
            assert shares[0] > shares[1] + 0.1, f"{method}, boxes in both halves: left share {shares}"
            doubles += 1
    assert singles >= 3 and doubles >= 2


@pytest.mark.parametrize("method", ["gradcam", "occlusion"])
def test_model_untouched(method, model2d):
    model, gen = model2d
    x, _, _ = _images(1, 2, False, gen)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    n_hooks = sum(len(m._forward_hooks) + len(m._backward_hooks) for m in model.modules())
    model.train()
    model.features.eval()  # a submodule in another mode than its parent must stay so
    try:
        explain(model, x[0], method=method, target=1)
        assert model.training and model.head.training
        assert not any(m.training for m in model.features.modules())
    finally:
        model.eval()
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in model.parameters())
    assert all(m.inplace for m in relus)
    assert sum(len(m._forward_hooks) + len(m._backward_hooks) for m in model.modules()) == n_hooks


def test_default_target_and_inputs(model2d):
    model, gen = model2d
    x, _, y = _images(8, 2, False, gen)
    image = x[int(torch.nonzero(y == 1)[0])]  # a box on the left
    with torch.no_grad():
        assert int(model(image[None]).argmax()) == 1
    default = explain(model, image, method="gradcam")
    assert np.allclose(default, explain(model, image, method="gradcam", target=1, layer="features.2"))
    occ = explain(model, image, method="occlusion", mask_size=(4, 4))
    assert np.allclose(occ, explain(model, image.numpy(), method="occlusion", mask_size=4))
    left, right = _halves(occ, 1)
    assert left > 2.0 * right


def test_default_target_layer():
    assert default_target_layer(_TinyCNN(2, 3)) == "features.2"
    assert default_target_layer(_TinyCNN(3, 3)) == "features.2"
    vit = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    with pytest.raises(ConfigError, match="occlusion"):
        default_target_layer(vit)
    with pytest.raises(ConfigError, match="occlusion"):
        explain(vit, torch.zeros(1, 4, 4))
    assert explain(vit, torch.rand(1, 4, 4), method="occlusion", mask_size=2).shape == (4, 4)


def test_errors(model2d):
    model, _ = model2d
    image = torch.rand(1, *SHAPES[2])
    with pytest.raises(ConfigError, match=r"gradcam, occlusion.*'lime'"):
        explain(model, image, method="lime")
    with pytest.raises(ConfigError, match=r"'features\.9'.*conv layers include features.0, features.2"):
        explain(model, image, layer="features.9")
    with pytest.raises(ConfigError, match=r"'head'.*spatial"):
        explain(model, image, layer="head")  # the Linear layer: no feature map
    unused = _TinyCNN(2, 3)
    unused.spare = nn.Conv2d(8, 8, 1)  # registered, never called
    with pytest.raises(ConfigError, match=r"'spare'.*no activation"):
        explain(unused, image, layer="spare")
    with pytest.raises(ConfigError, match=r"target.*\[0, 3\).*5"):
        explain(model, image, target=5)
    with pytest.raises(ConfigError, match="mask_size"):
        explain(model, image, method="occlusion", mask_size=(4, 40))
    with pytest.raises(DataError, match=r"image.*\(1, 1, 1, 16, 32\).*model"):
        explain(model, image[None])
    with pytest.raises(DataError, match="finite"):
        explain(model, torch.full((1, *SHAPES[2]), float("nan")))


@pytest.mark.parametrize(
    "image",
    [
        np.random.default_rng(0).normal(size=(1, 16, 32)),  # grey, any range
        np.random.default_rng(1).uniform(size=(3, 16, 32)),  # RGB in 0..1
        np.random.default_rng(2).normal(5, 3, size=(3, 16, 32)),  # RGB in another range
        np.random.default_rng(3).normal(size=(1, 8, 10, 12)),  # 3D
    ],
)
def test_png_decodes(image):
    from matplotlib.image import imread

    heat = np.zeros(image.shape[1:], np.float32)
    heat[(1,) * heat.ndim] = 1.0
    png = explanation_png(image, heat, title="case 1: class 0")
    pixels = imread(io.BytesIO(png), format="png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and pixels.ndim == 3 and pixels.shape[0] > 50
    with pytest.raises(DataError, match="heatmap"):
        explanation_png(image, heat[:-1])
