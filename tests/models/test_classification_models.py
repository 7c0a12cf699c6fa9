"""Classifiers (ViT, ResNet stems, TransMed) and loading pretrained weights from a local file.

Forward + backward of every registered model: test_model_contracts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from medsight.errors import ConfigError, ShapeError
from medsight.models import build_model, model_info
from medsight.models.classification import vit_token_patch
from medsight.models.pretrained import load_pretrained
from medsight.models.transmed import TransMed, slice_images

torch.set_num_threads(1)


def _build(name: str, size: list[int]) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(
        name, spatial_dims=len(size), in_channels=2, out_channels=3, patch_size=size, **model_info(name).tiny
    )


def test_vit_logits_are_not_squashed() -> None:
    model = _build("vit", [28, 28])  # MONAI's default head ends in Tanh; ours must be a plain linear layer
    with torch.no_grad():
        model.net.classification_head.bias.fill_(5.0)
        assert model(torch.randn(2, 2, 28, 28)).min() > 2.0


def test_vit_token_patch_rule() -> None:
    assert vit_token_patch([28, 28]) == 4
    assert vit_token_patch([224, 224]) == 16
    assert vit_token_patch([32, 32, 32]) == 8
    assert vit_token_patch([30, 30]) == 2


def test_resnet_small_input_stem() -> None:
    small = build_model("resnet18", spatial_dims=2, in_channels=1, out_channels=2, patch_size=[28, 28])
    assert small.conv1.kernel_size == (3, 3) and small.conv1.stride == (1, 1) and small.no_max_pool
    big = build_model("resnet18", spatial_dims=2, in_channels=1, out_channels=2, patch_size=[224, 224])
    assert big.conv1.kernel_size == (7, 7) and big.conv1.stride == (2, 2) and not big.no_max_pool
    forced = build_model(
        "resnet18", spatial_dims=2, in_channels=1, out_channels=2, patch_size=[28, 28], small_input=False
    )
    assert forced.conv1.kernel_size == (7, 7)


def test_slice_images_groups_three_adjacent_slices_per_modality() -> None:
    # value = 100 * modality + slice, so every image's origin can be read back
    b, c, h, w, d = 2, 2, 4, 5, 6
    x = (100 * torch.arange(c).view(1, c, 1, 1, 1) + torch.arange(d).view(1, 1, 1, 1, d)).float()
    x = x.expand(b, c, h, w, d)
    images = slice_images(x, 3)
    assert images.shape == (b, c * d // 3, 3, h, w)
    expected = [[0, 1, 2], [3, 4, 5], [100, 101, 102], [103, 104, 105]]  # modality-major, then slices
    got = images[1, :, :, 2, 3].tolist()
    assert got == expected
    views = slice_images(torch.randn(2, 3, 4, 5), 3)  # 2D: each channel is one view, repeated
    assert views.shape == (2, 3, 3, 4, 5)
    assert torch.equal(views[:, 1, 0], views[:, 1, 2])


@pytest.mark.parametrize(
    ("shape", "variant"), [((2, 4, 32, 32, 12), "tiny"), ((2, 3, 32, 32), "tiny"), ((2, 3, 32, 32), "small")]
)
def test_transmed_inputs_and_token_count(shape: tuple[int, ...], variant: str) -> None:
    dims = len(shape) - 2
    torch.manual_seed(0)
    model = build_model(
        "transmed", spatial_dims=dims, in_channels=shape[1], out_channels=5, patch_size=list(shape[2:]),
        variant=variant,
    )  # fmt: skip
    assert isinstance(model, TransMed)
    x = torch.randn(*shape)
    n_images = shape[1] * (shape[4] // 3 if dims == 3 else 1)
    assert model.num_images == n_images
    assert model.tokens(x).shape == (2, 1 + n_images * model.tokens_per_image, model.pos_embed.shape[-1])
    out = model(x)
    assert out.shape == (2, 5)
    out.sum().backward()
    assert model.pos_embed.grad is not None and model.pos_embed.grad.abs().sum() > 0
    assert next(model.cnn.parameters()).grad.abs().sum() > 0  # gradients reach the shared CNN
    # the modalities interact: changing one modality changes the logits
    model.eval()
    with torch.no_grad():
        y = x.clone()
        y[:, -1] += 1.0
        assert not torch.allclose(model(x), model(y))


def test_small_variant_is_larger_than_tiny() -> None:
    def count(variant: str) -> int:
        net = TransMed(2, in_channels=1, num_classes=2, image_size=(32, 32), variant=variant)
        return sum(p.numel() for p in net.parameters())

    assert count("small") > 2 * count("tiny")


def _two_classes(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(n, 2, 16, 16, 6, generator=gen)
    y = torch.tensor([0, 1] * (n // 2))
    x[y == 1, 1, 4:12, 4:12, :] += 2.0  # class 1: a bright square in the second modality
    return x, y


def test_transmed_learns_two_trivial_classes() -> None:
    gen = torch.Generator().manual_seed(0)
    (x, y), (x_new, y_new) = _two_classes(8, gen), _two_classes(16, gen)
    torch.manual_seed(0)
    model = build_model("transmed", spatial_dims=3, in_channels=2, out_channels=2, patch_size=[16, 16, 6])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x).argmax(1), y)
        # it learned the square, not the 8 samples: unseen samples are classified too
        assert (model(x_new).argmax(1) == y_new).float().mean() >= 0.875


def test_classifier_config_errors_are_clear() -> None:
    kw = {"spatial_dims": 2, "in_channels": 1, "out_channels": 2}
    with pytest.raises(ConfigError, match="'resnet18'.*deep_supervision"):
        build_model("resnet18", patch_size=[28, 28], deep_supervision=True, **kw)
    with pytest.raises(ConfigError, match="'vit'.*patch_size.*required"):
        build_model("vit", **kw)
    with pytest.raises(ConfigError, match="'vit'.*token_patch must divide.*\\[28, 28\\].*got 8"):
        build_model("vit", patch_size=[28, 28], token_patch=8, **kw)
    with pytest.raises(ConfigError, match="'transmed'.*patch_size.*required"):
        build_model("transmed", **kw)
    with pytest.raises(ConfigError, match="'transmed'.*multiple of slices_per_image=3, got 10 \\(try 12\\)"):
        build_model("transmed", spatial_dims=3, in_channels=1, out_channels=2, patch_size=[32, 32, 10])
    with pytest.raises(ConfigError, match="'transmed'.*variant.*'huge'"):
        build_model("transmed", patch_size=[32, 32], variant="huge", **kw)
    with pytest.raises(ConfigError, match="'transmed'.*feature_patch must divide.*16x16, got 3"):
        build_model("transmed", patch_size=[32, 32], feature_patch=3, **kw)
    with pytest.raises(ConfigError, match="'transmed_cnn'"):
        build_model("transmed_cnn", patch_size=[32, 32], hidden_size=8, **kw)  # not a CNN option
    with pytest.raises(ConfigError, match="'densenet121'"):
        build_model("densenet121", no_such_option=1, **kw)
    model = build_model("transmed", patch_size=[32, 32], **kw)
    with pytest.raises(ShapeError, match="expected shape \\('B', 1, 32, 32\\), got \\(2, 1, 28, 28\\)"):
        model(torch.zeros(2, 1, 28, 28))


def test_import_does_not_load_monai() -> None:
    modules = "medsight.models.classification, medsight.models.transmed, medsight.models.pretrained"
    code = f"import sys, {modules}; print('monai' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------- load_pretrained


def _resnet(classes: int = 3, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(
        "resnet18",
        spatial_dims=2,
        in_channels=1,
        out_channels=classes,
        patch_size=[28, 28],
        widen_factor=0.25,
    )


def _same(a: torch.nn.Module, b: torch.nn.Module, skip: tuple[str, ...] = ()) -> bool:
    sb = b.state_dict()
    return all(torch.equal(v, sb[k]) for k, v in a.state_dict().items() if k not in skip)


def test_load_pretrained_round_trip(tmp_path: Path) -> None:
    src, dst = _resnet(seed=0), _resnet(seed=1)
    assert not _same(src, dst)
    path = tmp_path / "w.pt"
    torch.save(src.state_dict(), path)
    report = load_pretrained(dst, path, strict=True)
    assert report == {"loaded": len(src.state_dict()), "missing": [], "unexpected": [], "mismatched": []}
    assert _same(src, dst)


@pytest.mark.parametrize("wrap", ["state_dict", "model", "module", "state_dict+module"])
def test_load_pretrained_unwraps(tmp_path: Path, wrap: str) -> None:
    src, dst = _resnet(seed=0), _resnet(seed=1)
    state: object = src.state_dict()
    if "module" in wrap:
        state = {f"module.{k}": v for k, v in src.state_dict().items()}
    if wrap.startswith("state_dict"):
        state = {"state_dict": state, "epoch": 3}
    elif wrap == "model":
        state = {"model": state, "optimizer": {"lr": torch.tensor(0.1)}}
    path = tmp_path / "ckpt.pth"
    torch.save(state, path)
    assert load_pretrained(dst, path)["loaded"] == len(src.state_dict())
    assert _same(src, dst)


def test_load_pretrained_skips_head_on_class_count_change(tmp_path: Path) -> None:
    src, dst = _resnet(classes=3, seed=0), _resnet(classes=5, seed=1)
    head_before = dst.fc.weight.detach().clone()
    path = tmp_path / "w.pt"
    torch.save(src.state_dict(), path)
    report = load_pretrained(dst, path)
    assert sorted(report["mismatched"]) == ["fc.bias", "fc.weight"]
    assert report["missing"] == [] and report["unexpected"] == []
    assert report["loaded"] == len(src.state_dict()) - 2
    assert _same(src, dst, skip=("fc.weight", "fc.bias"))
    assert torch.equal(dst.fc.weight, head_before)
    with pytest.raises(ConfigError, match=r"w\.pt: strict.*fc\.weight file \(3, 128\) vs model \(5, 128\)"):
        load_pretrained(_resnet(classes=5), path, strict=True)


def test_load_pretrained_errors_name_file_and_keys(tmp_path: Path) -> None:
    other = build_model(
        "vit", spatial_dims=2, in_channels=1, out_channels=3, patch_size=[28, 28],
        hidden_size=32, mlp_dim=64, num_layers=1, num_heads=2,
    )  # fmt: skip
    path = tmp_path / "vit_weights.pt"
    torch.save(other.state_dict(), path)
    with pytest.raises(ConfigError) as err:
        load_pretrained(_resnet(), path)
    msg = str(err.value)
    assert "vit_weights.pt" in msg and "no tensor matches" in msg
    assert "missing: conv1.weight" in msg and "unexpected: net." in msg and "more" in msg
    # strict: one extra key is enough
    src = _resnet()
    extra = dict(src.state_dict(), **{"extra.weight": torch.zeros(2)})
    torch.save(extra, path)
    with pytest.raises(ConfigError, match="1 unexpected: extra.weight"):
        load_pretrained(_resnet(), path, strict=True)
    assert load_pretrained(_resnet(), path)["unexpected"] == ["extra.weight"]
    with pytest.raises(ConfigError, match="nope.pt: pretrained weights file not found"):
        load_pretrained(src, tmp_path / "nope.pt")
    torch.save([1, 2, 3], path)
    with pytest.raises(ConfigError, match="vit_weights.pt: expected a state dict.*got list"):
        load_pretrained(src, path)
    path.write_bytes(b"not a torch file")
    with pytest.raises(ConfigError, match="vit_weights.pt: cannot read pretrained weights"):
        load_pretrained(src, path)
