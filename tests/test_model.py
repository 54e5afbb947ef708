"""Stage 2: SimpleUNet's shapes, gradients, size and its refusals."""

from __future__ import annotations

import pytest
import torch

from mnistseg import SimpleUNet
from mnistseg.model import ModelConfig, count_parameters

# The reference network (base_width 64), counted by hand. A 3x3 conv from a to b channels
# has 9ab weights (+ b with a bias); BatchNorm has 2b (scale and shift).
#   encoder 1:  conv 1->64 with bias 9*64+64 = 640;  conv 64->64 36,864 + BN 128      =    37,632
#   encoder 2:  conv 64->128 73,728 + 256;           conv 128->128 147,456 + 256      =   221,696
#   bottleneck: conv 128->256 294,912 + 512;         conv 256->256 589,824 + 512      =   885,760
#   decoder 1:  conv (128+256)->128 442,368 + 256;   conv 128->128 147,456 + 256      =   590,336
#   decoder 2:  conv (64+128)->64 110,592 + 128;     conv 64->64 36,864 + 128         =   147,712
#   head:       1x1 conv 64->11 with bias 704 + 11                                    =       715
# total 37,632 + 221,696 + 885,760 + 590,336 + 147,712 + 715 = 1,883,851
REFERENCE_PARAMETERS = 1_883_851


def test_reference_parameter_count() -> None:
    assert count_parameters(SimpleUNet()) == REFERENCE_PARAMETERS


@pytest.mark.parametrize("base_width", [4, 16, 64])
@pytest.mark.parametrize("size", [(28, 28), (32, 48)])
def test_shapes_and_backward(base_width: int, size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    model = SimpleUNet(base_width=base_width)
    images = torch.rand(2, 1, *size)
    logits = model(images)
    assert logits.shape == (2, 11, *size) and logits.dtype == torch.float32
    torch.nn.functional.cross_entropy(logits, torch.randint(0, 11, (2, *size))).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_channels_last_gives_the_same_logits() -> None:
    torch.manual_seed(0)
    model = SimpleUNet(base_width=8).eval()
    images = torch.rand(3, 1, 28, 28)
    expected = model(images)
    model = model.to(memory_format=torch.channels_last)
    actual = model(images.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-4)


def test_widths_scale_with_base_width() -> None:
    model = SimpleUNet(in_channels=3, num_classes=5, base_width=8)
    assert model.encoder[0][0].in_channels == 3
    assert model.bottleneck[1].out_channels == 32  # 4 x base_width at 1/4 size
    assert model.head.out_channels == 5
    assert SimpleUNet.from_config(ModelConfig(3, 5, 8)).config == model.config


@pytest.mark.parametrize("size", [(30, 28), (28, 26), (27, 27)])
def test_sizes_the_pooling_cannot_halve_twice_are_refused(size: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="divisible by 4"):
        SimpleUNet(base_width=4)(torch.rand(1, 1, *size))


def test_wrong_channel_count_and_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match=r"\[N, 1, H, W\]"):
        SimpleUNet(base_width=4)(torch.rand(1, 3, 28, 28))
    with pytest.raises(ValueError, match="base_width"):
        SimpleUNet(base_width=0)
    with pytest.raises(ValueError, match="num_classes"):
        SimpleUNet(num_classes=1)
