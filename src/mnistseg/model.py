"""Stage 2: the network, a small U-Net.

Encoder: 3x3 conv blocks, max-pool halving the resolution. Bottleneck at 1/4 size.
Decoder: bilinear up-sampling, then the encoder's feature map of the same size is
concatenated on the channel axis (the skip connection) before more 3x3 convs. A 1x1
conv head gives per-pixel logits. At ``base_width=64`` this is exactly the reference::

    [N, 1, 28, 28] -> enc1 64 @28 -> enc2 128 @14 -> bottleneck 256 @7
      -> up @14, cat enc2 -> dec1 128 -> up @28, cat enc1 -> dec2 64 -> head [N, 11, 28, 28]

The skips matter: the bottleneck sees the whole digit (it knows *which* digit) but at
7x7 it cannot say *where* each stroke pixel is; the 28x28 encoder features can.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class ModelConfig:
    """What is needed to rebuild a :class:`SimpleUNet` (stored in ``config.json``).

    Attributes:
        in_channels: image channels (1 for MNIST).
        num_classes: output classes, background included (11 for MNIST).
        base_width: channels of the first encoder block; the next levels use 2x and 4x.
    """

    in_channels: int = 1
    num_classes: int = 11
    base_width: int = 64


def conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    """3x3 conv (no bias: BatchNorm's shift replaces it), BatchNorm, ReLU; size kept."""
    return [
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class SimpleUNet(nn.Module):
    """The reference's simple U-Net, with every width scaled by ``base_width / 64``.

    Args:
        in_channels: image channels.
        num_classes: output classes, background included.
        base_width: channels at full resolution (64 in the reference).

    Input float ``[N, in_channels, H, W]`` with H and W divisible by 4; output logits
    float ``[N, num_classes, H, W]``. ``argmax(dim=1)`` of the logits is the mask.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 11, base_width: int = 64) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("num_classes", num_classes), ("base_width", base_width)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2 (background and one class), got {num_classes}")
        self.config = ModelConfig(in_channels, num_classes, base_width)
        w1, w2, w3 = base_width, 2 * base_width, 4 * base_width

        self.encoder = nn.ModuleList(
            [
                nn.Sequential(
                    # The first conv keeps its bias and has no BatchNorm, as in the reference.
                    nn.Conv2d(in_channels, w1, 3, padding=1),
                    nn.ReLU(inplace=True),
                    *conv_bn_relu(w1, w1),
                ),  # (N, w1, H, W)
                nn.Sequential(nn.MaxPool2d(2), *conv_bn_relu(w1, w2), *conv_bn_relu(w2, w2)),  # (N, w2, H/2, W/2)
            ]
        )
        self.bottleneck = nn.Sequential(
            nn.MaxPool2d(2),
            *conv_bn_relu(w2, w3),
            *conv_bn_relu(w3, w3),  # (N, w3, H/4, W/4)
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),  # (N, w3, H/2, W/2)
        )
        self.decoder = nn.ModuleList(
            [
                nn.Sequential(
                    *conv_bn_relu(w2 + w3, w2),
                    *conv_bn_relu(w2, w2),
                    nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                ),  # (N, w2, H, W)
                nn.Sequential(*conv_bn_relu(w1 + w2, w1), *conv_bn_relu(w1, w1)),  # (N, w1, H, W)
            ]
        )
        self.head = nn.Conv2d(w1, num_classes, 1)  # (N, num_classes, H, W)

    @classmethod
    def from_config(cls, config: ModelConfig) -> SimpleUNet:
        """Build the model a :class:`ModelConfig` describes."""
        return cls(config.in_channels, config.num_classes, config.base_width)

    def forward(self, images: Tensor) -> Tensor:
        """Per-pixel class logits.

        Args:
            images: float ``[N, in_channels, H, W]``, H and W divisible by 4.

        Returns:
            float ``[N, num_classes, H, W]`` logits.
        """
        if images.dim() != 4 or images.shape[1] != self.config.in_channels:
            raise ValueError(f"expected images of shape [N, {self.config.in_channels}, H, W], got {list(images.shape)}")
        height, width = images.shape[-2:]
        if height % 4 or width % 4:
            raise ValueError(
                f"SimpleUNet halves the image twice, so H and W must be divisible by 4; got {height}x{width} "
                "(pad or resize the input)"
            )
        skips = []
        features = images
        for block in self.encoder:
            features = block(features)
            skips.append(features)
        features = self.bottleneck(features)
        # Deepest skip first: zip pairs each decoder block with the encoder map of its size.
        for skip, block in zip(reversed(skips), self.decoder, strict=True):
            features = block(torch.cat([skip, features], dim=1))
        return self.head(features)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
