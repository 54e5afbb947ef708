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
    assert SimpleUNet.from_config(ModelConfig(3, 5, (8, 16, 32))).config == model.config


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


def test_widths_per_level_and_the_input_at_the_head() -> None:
    # Counted by hand as above, for widths 4/8/16 with the 1-channel input at the head:
    #   encoder 1: 9*4+4 + 9*4*4+8 = 192;  encoder 2: 9*4*8+16 + 9*8*8+16 = 896
    #   bottleneck: 9*8*16+32 + 9*16*16+32 = 3,520;  decoder 1: 9*24*8+16 + 9*8*8+16 = 2,336
    #   decoder 2: 9*12*4+8 + 9*4*4+8 = 592;  head: (4+1)*11+11 = 66;  total 7,602
    model = SimpleUNet(widths=(4, 8, 16), input_to_head=True)
    assert count_parameters(model) == 7_602
    assert (model.encoder[1][1].out_channels, model.bottleneck[1].out_channels) == (8, 16)
    assert model.head.in_channels == 5
    images = torch.rand(2, 1, 28, 28)
    assert model(images).shape == (2, 11, 28, 28)
    assert model.config == ModelConfig(1, 11, (4, 8, 16), True)
    assert SimpleUNet.from_config(ModelConfig(**{**vars(model.config), "widths": [4, 8, 16]})).config == model.config
    # widths alone hold the widths; base_width is the constructor's shortcut, and old files' key.
    assert SimpleUNet(base_width=4).config.widths == (4, 8, 16)
    assert SimpleUNet(base_width=99, widths=(4, 8, 16)).config.widths == (4, 8, 16)
    old = {"in_channels": 1, "num_classes": 11, "base_width": 4, "widths": None, "input_to_head": True}
    assert ModelConfig.from_json(old) == model.config
    assert ModelConfig.from_json({**old, "widths": [4, 8, 16], "base_width": 4}) == model.config
    # The default is still the article's network, variant fields off.
    assert SimpleUNet().config == ModelConfig(1, 11, (64, 128, 256), False, "concat", 0.0, 1.0)


def test_the_score_decoder_by_hand() -> None:
    # Widths 8/32/64, input at the head: the encoder as the U-Net's (9*8+8 + 9*8*8+16 = 672;
    # 9*8*32+64 + 9*32*32+64 = 11,648; 9*32*64+128 + 9*64*64+128 = 55,552), then three 1x1
    # convs: where (8+1)*2+2 = 20, what 32*10 + 64*10 (no bias) = 960. Total 68,852.
    model = SimpleUNet(widths=(8, 32, 64), input_to_head=True, decoder="scores")
    assert count_parameters(model) == 672 + 11_648 + 55_552 + 20 + 960 == 68_852
    # Widths 16/32/64 (fast where bf16 is native): 9*16+16 + 9*16*16+32 = 2,496; 9*16*32+64 + 9*32*32+64
    # = 13,952; the quarter level as above, 55,552; where (16+1)*2+2 = 36; what 960. Total 72,996.
    wider = SimpleUNet(widths=(16, 32, 64), input_to_head=True, decoder="scores")
    assert count_parameters(wider) == 2_496 + 13_952 + 55_552 + 36 + 960 == 72_996
    assert not hasattr(model, "head") and not hasattr(model, "decoder")
    assert model.config.describe() == "SimpleUNet widths 8/32/64, input at the head, score decoder"


def test_the_score_decoders_background_comes_from_full_resolution_alone() -> None:
    """p(background) = sigmoid(where_0 - where_1): the coarse "what" maps cannot move it."""
    torch.manual_seed(0)
    model = SimpleUNet(widths=(4, 8, 16), decoder="scores").eval()
    images = torch.rand(2, 1, 28, 28)
    with torch.inference_mode():
        before = model(images).softmax(dim=1)
        for layer in model.what:
            layer.weight.mul_(-5.0)  # other classes win, with other confidence
        after = model(images).softmax(dim=1)
        where = model.where(model.encoder[0](images))  # (2, 2, 28, 28)
    assert not torch.allclose(before[:, 1:], after[:, 1:], atol=1e-3)
    assert torch.allclose(before[:, 0], after[:, 0], atol=1e-6)
    assert torch.allclose(after[:, 0], torch.sigmoid(where[:, 0] - where[:, 1]), atol=1e-6)


def test_input_normalisation_is_the_first_step() -> None:
    torch.manual_seed(0)
    plain = SimpleUNet(base_width=4).eval()
    normalised = SimpleUNet(base_width=4, input_mean=0.1307, input_std=0.3081).eval()
    normalised.load_state_dict(plain.state_dict())  # no new weights: the constants live in the config
    images = torch.rand(2, 1, 28, 28)
    with torch.inference_mode():
        assert torch.allclose(normalised(images), plain((images - 0.1307) / 0.3081), atol=1e-6)
    with pytest.raises(ValueError, match="input_std must be positive"):
        SimpleUNet(input_std=0.0)
    with pytest.raises(ValueError, match="decoder must be one of concat, scores"):
        SimpleUNet(decoder="fcn")


def test_the_bottleneck_works_at_a_quarter_of_the_size() -> None:
    model = SimpleUNet(base_width=4)
    sizes = []
    model.bottleneck.register_forward_hook(lambda module, inputs, output: sizes.append(tuple(output.shape)))
    model(torch.rand(1, 1, 28, 28))
    assert sizes == [(1, 16, 7, 7)]  # 28 -> 14 -> 7


def test_bad_widths_are_refused() -> None:
    for widths in ((4, 8), (4, 0, 16), (4, 8.5, 16)):
        with pytest.raises(ValueError, match="widths must be three positive integers"):
            SimpleUNet(widths=widths)  # type: ignore[arg-type]


def test_a_deeper_bottleneck_and_class_scores_from_it_alone_by_hand() -> None:
    # The 16/32/64 score network with two blocks (72,996 above); each bottleneck block more is a
    # 3x3 conv 64->64 without bias and its BatchNorm, 9*64*64 + 2*64 = 36,992; without the
    # half-size class scores its 1x1 conv 32*10 = 320 goes. fast's three blocks:
    # 72,996 + 36,992 - 320 = 109,668; four: 72,996 + 2 * 36,992 - 320 = 146,660.
    fast = SimpleUNet(widths=(16, 32, 64), input_to_head=True, decoder="scores", bottleneck_blocks=3,
                      half_scores=False)  # fmt: skip
    assert count_parameters(fast) == 72_996 + 36_992 - 320 == 109_668
    model = SimpleUNet(widths=(16, 32, 64), input_to_head=True, decoder="scores", bottleneck_blocks=4,
                       half_scores=False)  # fmt: skip
    assert count_parameters(model) == 72_996 + 2 * 36_992 - 320 == 146_660
    # fast in float32, 8/32/64 (68,852 with two blocks, above): 68,852 + 36,992 - 320 = 105,524.
    fp32_fast = SimpleUNet(widths=(8, 32, 64), input_to_head=True, decoder="scores", bottleneck_blocks=3,
                           half_scores=False)  # fmt: skip
    assert count_parameters(fp32_fast) == 68_852 + 36_992 - 320 == 105_524
    assert [layer.in_channels for layer in model.what] == [64]  # the bottleneck's scores alone
    assert sum(isinstance(layer, torch.nn.Conv2d) for layer in model.bottleneck) == 4
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 11, 28, 28)
    assert model.config.describe() == (
        "SimpleUNet widths 16/32/64, input at the head, score decoder, 4 bottleneck blocks, "
        "class scores from the bottleneck alone"
    )
    assert SimpleUNet.from_config(model.config).config == model.config
    # Files written before these fields load as the network they describe: 2 blocks, both levels' scores.
    old = {"in_channels": 1, "num_classes": 11, "widths": [16, 32, 64], "input_to_head": True, "decoder": "scores"}
    assert ModelConfig.from_json(old) == SimpleUNet(widths=(16, 32, 64), input_to_head=True, decoder="scores").config
    with pytest.raises(ValueError, match="bottleneck_blocks"):
        ModelConfig(bottleneck_blocks=0)
    with pytest.raises(ValueError, match="score decoder"):
        ModelConfig(half_scores=False)  # the concat decoder always uses every level
