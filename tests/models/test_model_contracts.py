"""Every registered model, by family: forward + backward on a tiny input built from its declared contract."""

from __future__ import annotations

from collections.abc import Callable
from typing import get_args
from unittest.mock import ANY

import pytest
import torch

from medsight.errors import ConfigError
from medsight.models import MODELS, OutputKind, build_model, model_info, model_names
from medsight.models.info import Family

torch.set_num_threads(1)

BATCH, IN_CHANNELS, CLASSES = 2, 2, 3
SIDE = 8  # test inputs are at least this long per side, else the smallest the contract allows

# the shape each output kind has, from the input batch
EXPECTED: dict[str, Callable[[torch.Tensor], tuple[int, ...]]] = {
    "logits": lambda x: (x.shape[0], CLASSES),
    "logit_map": lambda x: (x.shape[0], CLASSES, *x.shape[2:]),
    "deep_supervision": lambda x: (x.shape[0], CLASSES, *x.shape[2:]),  # train mode without the heads
    "anchors": lambda x: (x.shape[0], ANY, CLASSES + 2 * (x.ndim - 2)),  # A anchors: set by the input size
    "any_map": lambda x: (x.shape[0], CLASSES, *[ANY] * (x.ndim - 2)),  # spatial size set by the network
}
CASES = [
    pytest.param(name, dims, id=f"{family}-{name}-{dims}d")
    for family in get_args(Family)
    for name in model_names(family)
    for dims in model_info(name).dims
]


def _tiny(name: str, dims: int, deep_supervision: bool = False) -> tuple[torch.nn.Module, torch.Tensor]:
    info = model_info(name)
    size = info.input_size(dims, at_least=SIDE)
    torch.manual_seed(0)
    model = build_model(
        name, spatial_dims=dims, in_channels=IN_CHANNELS, out_channels=CLASSES, patch_size=size,
        deep_supervision=deep_supervision, **info.tiny,
    )  # fmt: skip
    return model, torch.randn(BATCH, IN_CHANNELS, *size)


def test_every_model_declares_a_known_family_and_output_kind() -> None:
    assert set(get_args(OutputKind)) == set(EXPECTED)
    for name in MODELS.names():
        info = model_info(name)
        assert info.family in get_args(Family) and info.output in EXPECTED, name
        assert info.dims and set(info.dims) <= {2, 3}, name
    assert len(CASES) == sum(len(model_info(n).dims) for n in MODELS.names())
    assert {"dynunet", "unet"} <= set(model_names("segmentation"))
    assert {"resnet18", "transmed"} <= set(model_names("classification"))


@pytest.mark.parametrize(("name", "dims"), CASES)
def test_forward_backward_gives_the_declared_output(name: str, dims: int) -> None:
    model, x = _tiny(name, dims)
    expected = EXPECTED[model_info(name).output](x)
    model.train()
    out = model(x)
    assert isinstance(out, torch.Tensor) and tuple(out.shape) == expected
    out.float().square().mean().backward()
    # UNETR's ViT blocks hold unused cross-attention norms (MONAI), so some grads may be None
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert len(grads) > 0.5 * len(list(model.parameters()))
    assert all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    model.eval()
    with torch.no_grad():
        out = model(x)
    assert tuple(out.shape) == expected and torch.isfinite(out).all()


DEEP = [c for c in CASES if model_info(c.values[0]).deep_supervision]


@pytest.mark.parametrize(("name", "dims"), DEEP)
def test_deep_supervision_heads_are_stacked_on_dim_1(name: str, dims: int) -> None:
    model, x = _tiny(name, dims, deep_supervision=True)
    model.train()
    out = model(x)
    assert out.ndim == dims + 3 and out.shape[0] == BATCH and out.shape[2:] == (CLASSES, *x.shape[2:])
    assert out.shape[1] >= 2
    out.mean().backward()
    model.eval()
    with torch.no_grad():
        final = model(x)
    assert final.shape == (BATCH, CLASSES, *x.shape[2:])
    model.train()
    with torch.no_grad():
        torch.testing.assert_close(model(x)[:, 0], final)  # head 0 is the final output (no dropout/BN)


@pytest.mark.parametrize("name", MODELS.names())
def test_declared_contract_is_enforced(name: str) -> None:
    info = model_info(name)
    dims = info.dims[-1]
    kw = {"spatial_dims": dims, "in_channels": 1, "out_channels": 2, **info.tiny}
    if info.needs_patch_size:
        with pytest.raises(ConfigError, match="patch_size"):
            build_model(name, **kw)
    if not info.deep_supervision:
        with pytest.raises(ConfigError, match="deep_supervision"):
            build_model(name, patch_size=info.input_size(dims), deep_supervision=True, **kw)
    odd = [s + (m > 1) for s, m in zip(info.input_size(dims), info.multiples(dims), strict=True)]
    if odd != info.input_size(dims):
        with pytest.raises(ConfigError, match="multiple"):
            build_model(name, patch_size=odd, **kw)
    with pytest.raises(ConfigError, match="spatial_dims"):
        build_model(name, **{**kw, "spatial_dims": 4})
