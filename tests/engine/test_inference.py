"""Sliding-window inference: equals MONAI's, labels, float16, TTA, padding, eval mode, errors."""

from __future__ import annotations

import pytest
import torch
from monai.inferers import sliding_window_inference
from torch import nn

from medsight.engine.inference import predict_with_deep_supervision_head, sliding_window_predict
from medsight.errors import ConfigError, ShapeError
from medsight.models import build_model

torch.set_num_threads(1)


def _net(dims: int, cin: int = 2, cout: int = 3) -> nn.Module:
    conv = nn.Conv3d if dims == 3 else nn.Conv2d
    torch.manual_seed(0)
    return nn.Sequential(conv(cin, 4, 3, padding=1), nn.Tanh(), conv(4, cout, 3, padding=1))


def _monai(net: nn.Module, x: torch.Tensor, patch, overlap=0.5, mode="gaussian") -> torch.Tensor:
    with torch.no_grad():
        return sliding_window_inference(x[None], patch, 2, net, overlap=overlap, mode=mode)[0]


CASES = [  # (image shape, patch, overlap): many last-axis groups, uneven grids, smaller-than-patch axes
    ((2, 23, 19, 37), (8, 8, 8), 0.5),
    ((2, 5, 19, 6), (8, 8, 8), 0.5),
    ((2, 20, 20, 20), (8, 6, 10), 0.25),
    ((2, 16, 16), (16, 16), 0.5),
    ((2, 31, 45), (12, 10), 0.6),
]


@pytest.mark.parametrize(("shape", "patch", "overlap"), CASES)
@pytest.mark.parametrize("batch_size", [1, 3])
def test_equals_monai_sliding_window(shape, patch, overlap, batch_size) -> None:
    net = _net(len(patch))
    x = torch.randn(shape)
    ref = _monai(net, x, patch, overlap)
    ours = sliding_window_predict(
        net, x, patch_size=patch, overlap=overlap, activation=None, batch_size=batch_size
    )
    assert ours.shape == ref.shape and ours.dtype == torch.float32
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_constant_mode_and_softmax_equal_monai() -> None:
    net, x = _net(3), torch.randn(2, 17, 11, 21)
    ref = _monai(net, x, (8, 8, 8), 0.5, mode="constant")
    ours = sliding_window_predict(net, x, patch_size=(8, 8, 8), mode="constant", activation="softmax")
    torch.testing.assert_close(ours, ref.softmax(0), rtol=1e-5, atol=1e-5)


def test_labels_and_float16() -> None:
    net, x = _net(3, cout=4), torch.randn(2, 18, 13, 29)
    ref = _monai(net, x, (8, 8, 8))
    labels = sliding_window_predict(net, x, patch_size=(8, 8, 8), output="labels")
    assert labels.shape == (1, 18, 13, 29) and labels.dtype == torch.uint8
    assert torch.equal(labels[0].long(), ref.argmax(0))
    half = sliding_window_predict(net, x, patch_size=(8, 8, 8), accumulator_dtype=torch.float16)
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), ref.softmax(0), rtol=0, atol=3e-3)
    multi = sliding_window_predict(
        net, x, patch_size=(8, 8, 8), activation="sigmoid", output="labels", threshold=0.4
    )
    assert multi.shape == (4, 18, 13, 29) and torch.equal(multi.bool(), ref.sigmoid() > 0.4)


def test_batched_and_integer_inputs() -> None:
    net = _net(2)
    x = torch.randint(-50, 50, (2, 2, 21, 14), dtype=torch.int16)
    out = sliding_window_predict(net, x, patch_size=(8, 8), activation=None)
    assert out.shape == (2, 3, 21, 14)
    torch.testing.assert_close(out[1], _monai(net, x[1].float(), (8, 8)), rtol=1e-5, atol=1e-5)


class _Counting(nn.Module):
    """An orientation-sensitive net that counts its forward passes."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.conv(x)


def test_flip_tta_averages_flipped_predictions() -> None:
    net, x = _Counting(), torch.randn(1, 12, 12)
    with torch.no_grad():
        expected = torch.stack(
            [torch.flip(net(torch.flip(x[None], d)), d)[0] for d in ([], [2], [3], [2, 3])]
        ).mean(0)
    net.calls = 0
    all_flips = sliding_window_predict(net, x, patch_size=(12, 12), tta_flips=True, activation=None)
    assert net.calls == 4
    torch.testing.assert_close(all_flips, expected, rtol=1e-5, atol=1e-6)
    plain = sliding_window_predict(net, x, patch_size=(12, 12), activation=None)
    assert (plain - all_flips).abs().max() > 1e-3  # the conv is not flip-symmetric
    net.calls = 0
    sliding_window_predict(net, x, patch_size=(12, 12), tta_flips=[(1,)], activation=None)
    assert net.calls == 2


def test_eval_mode_inside_and_restored_with_deep_supervision() -> None:
    net = build_model(
        "dynunet", spatial_dims=3, in_channels=1, out_channels=2, patch_size=[16, 16, 16],
        deep_supervision=True, base_filters=4, max_depth=2,
    )  # fmt: skip
    net.train()
    x = torch.randn(1, 20, 18, 17)
    out = sliding_window_predict(net, x, patch_size=(16, 16, 16), out_channels=2)
    assert net.training and out.shape == (2, 20, 18, 17)
    torch.testing.assert_close(out.sum(0), torch.ones(20, 18, 17))
    net.eval()
    torch.testing.assert_close(out, _monai(net, x, (16, 16, 16)).softmax(0), rtol=1e-4, atol=1e-5)


def test_deep_supervision_head_helper() -> None:
    a, b = torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4)
    assert predict_with_deep_supervision_head([a, b]) is a
    torch.testing.assert_close(predict_with_deep_supervision_head(torch.stack([a, b], 1), 2), a)
    assert predict_with_deep_supervision_head(a, 2) is a


def test_bad_arguments_raise_clear_errors() -> None:
    net, x = _net(3), torch.randn(2, 8, 8, 8)
    with pytest.raises(ShapeError, match="expected shape"):
        sliding_window_predict(net, torch.randn(8, 8), patch_size=(8, 8, 8))
    with pytest.raises(ConfigError, match="overlap"):
        sliding_window_predict(net, x, patch_size=(8, 8, 8), overlap=1.0)
    with pytest.raises(ShapeError, match="output channels"):
        sliding_window_predict(net, x, patch_size=(8, 8, 8), out_channels=5)
    with pytest.raises(ConfigError, match="tta_flips"):
        sliding_window_predict(net, x, patch_size=(8, 8, 8), tta_flips=[(3,)])
    with pytest.raises(ConfigError, match="activation"):
        sliding_window_predict(net, x, patch_size=(8, 8, 8), activation="relu")  # type: ignore[arg-type]
