"""Stage 2: the network, a small U-Net.

Encoder: 3x3 conv blocks, max-pool halving the resolution. Bottleneck at 1/4 size.
Decoder: bilinear up-sampling, then the encoder's feature map of the same size is
concatenated on the channel axis (the skip connection) before more 3x3 convs. A 1x1
conv head gives per-pixel logits. At ``base_width=64`` this is exactly the reference::

    [N, 1, 28, 28] -> enc1 64 @28 -> enc2 128 @14 -> bottleneck 256 @7
      -> up @14, cat enc2 -> dec1 128 -> up @28, cat enc1 -> dec2 64 -> head [N, 11, 28, 28]

The skips matter: the bottleneck sees the whole digit (it knows *which* digit) but at
7x7 it cannot say *where* each stroke pixel is; the 28x28 encoder features can.

Two variants, both off by default so that ``SimpleUNet()`` stays the article's network:
``widths`` sets each level's channels on its own (the full-resolution level costs the
most per channel, the 7x7 bottleneck the least, and it is the bottleneck that tells the
digits apart), and ``input_to_head`` concatenates the input image to the last features
before the 1x1 head.
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
        widths: ``(full, half, quarter)``-resolution channels, each level on its own;
            None for ``base_width`` x 1, 2, 4. When given, ``base_width`` is ``widths[0]``.
        input_to_head: concatenate the input image to the features the 1x1 head sees.
    """

    in_channels: int = 1
    num_classes: int = 11
    base_width: int = 64
    widths: tuple[int, int, int] | None = None
    input_to_head: bool = False

    def __post_init__(self) -> None:
        for name in ("in_channels", "num_classes", "base_width"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2 (background and one class), got {self.num_classes}")
        if self.widths is not None:
            widths = tuple(self.widths)  # JSON gives a list
            if len(widths) != 3 or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths):
                raise ValueError(f"widths must be three positive integers (full, half, quarter), got {self.widths!r}")
            object.__setattr__(self, "widths", widths)
            object.__setattr__(self, "base_width", widths[0])
        if not isinstance(self.input_to_head, bool):
            raise ValueError(f"input_to_head must be true or false, got {self.input_to_head!r}")

    @property
    def level_widths(self) -> tuple[int, int, int]:
        """Channels at full, half and quarter resolution."""
        if self.widths is not None:
            return self.widths
        return self.base_width, 2 * self.base_width, 4 * self.base_width


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
        widths: channels per level (full, half, quarter size), instead of ``base_width``'s 1x/2x/4x.
        input_to_head: concatenate the input image to the features the 1x1 head sees.

    Input float ``[N, in_channels, H, W]`` with H and W divisible by 4; output logits
    float ``[N, num_classes, H, W]``. ``argmax(dim=1)`` of the logits is the mask.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 11,
        base_width: int = 64,
        widths: tuple[int, int, int] | None = None,
        input_to_head: bool = False,
    ) -> None:
        super().__init__()
        self.config = ModelConfig(in_channels, num_classes, base_width, widths, input_to_head)
        w1, w2, w3 = self.config.level_widths

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
        )
        # Before each decoder block: double the size, to match the skip it is concatenated with.
        self.upsample = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.decoder = nn.ModuleList(
            [
                nn.Sequential(*conv_bn_relu(w2 + w3, w2), *conv_bn_relu(w2, w2)),  # (N, w2, H/2, W/2)
                nn.Sequential(*conv_bn_relu(w1 + w2, w1), *conv_bn_relu(w1, w1)),  # (N, w1, H, W)
            ]
        )
        head_inputs = w1 + (in_channels if input_to_head else 0)
        self.head = nn.Conv2d(head_inputs, num_classes, 1)  # (N, num_classes, H, W)

    @classmethod
    def from_config(cls, config: ModelConfig) -> SimpleUNet:
        """Build the model a :class:`ModelConfig` describes."""
        return cls(config.in_channels, config.num_classes, config.base_width, config.widths, config.input_to_head)

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
        features = self.bottleneck(features)  # (N, w3, H/4, W/4)
        # Deepest skip first: zip pairs each decoder block with the encoder map of its size.
        for skip, block in zip(reversed(skips), self.decoder, strict=True):
            features = block(torch.cat([skip, self.upsample(features)], dim=1))
        if self.config.input_to_head:
            features = torch.cat([features, images.to(features.dtype)], dim=1)
        return self.head(features)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
