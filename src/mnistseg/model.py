"""Stage 2: the network, a small U-Net.

Encoder: 3x3 conv blocks, max-pool halving the resolution. Bottleneck at 1/4 size.
Decoder: bilinear up-sampling, then the encoder's feature map of the same size is
concatenated on the channel axis (the skip connection) before more 3x3 convs. A 1x1
conv head gives per-pixel logits. At widths 64/128/256 this is exactly the reference::

    [N, 1, 28, 28] -> enc1 64 @28 -> enc2 128 @14 -> bottleneck 256 @7
      -> up @14, cat enc2 -> dec1 128 -> up @28, cat enc1 -> dec2 64 -> head [N, 11, 28, 28]

The skips matter: the bottleneck sees the whole digit (it knows *which* digit) but at
7x7 it cannot say *where* each stroke pixel is; the 28x28 encoder features can.

Five variants, all off by default so that ``SimpleUNet()`` stays the article's network:
``widths`` sets each level's channels on its own (the full-resolution level costs the
most per channel, the 7x7 bottleneck the least, and it is the bottleneck that tells the
digits apart); ``input_to_head`` concatenates the input image to the last features
before the 1x1 head; and ``decoder="scores"`` replaces the decoder's 3x3 convs by
FCN-style score maps (Long et al., 2015), split into *where* and *what*::

    enc1 @28 (+ input) -> 1x1 -> [background, digit]          where: full resolution, sharp
    enc2 @14           -> 1x1 -> 10 class scores  -+
    bottleneck @7      -> 1x1 -> 10 class scores  -+-> up-sampled to 28, log-softmax
                                                          what: coarse, sees the whole digit

    logits = [background, digit + log p(class 1), ..., digit + log p(class 10)]

The classes' probabilities sum to one, so softmax(logits) gives exactly
p(background) = sigmoid(background - digit) from the full-resolution head alone, and
p(class k) = p(not background) * p(class k): whether a pixel belongs to a digit is decided
where the pixels are sharp, which digit it is where the whole digit is seen. The network
still learns where a stroke ends from the masks (nothing knows the threshold); it is told
only which level answers which question. No 3x3 conv runs on up-sampled maps, which
makes a training step about 2x cheaper on a CPU, and the split learns from far fewer
images (measurements in ``recipes.py``).

The fifth widens what the coarse level sees: ``bottleneck_blocks`` 3x3 conv blocks at
quarter size (the reference's 2; each more lets a bottleneck pixel see 8 pixels further),
and, for the score decoder, ``half_scores=False`` takes the class scores from the bottleneck
alone. The half-size scores see about 13 pixels, less than a digit, so a stroke's end can
disagree with the rest of its digit: the vote mends that afterwards, a wider bottleneck
alone mends it in the network (``benchmarks/choices.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

DECODERS = ("concat", "scores")


def widths_from_base(base_width: int) -> tuple[int, int, int]:
    """The U-Net's usual widths: ``base_width`` channels at full resolution, twice and four times deeper."""
    return base_width, 2 * base_width, 4 * base_width


@dataclass(frozen=True)
class ModelConfig:
    """What is needed to rebuild a :class:`SimpleUNet` (stored in ``config.json``).

    Attributes:
        in_channels: image channels (1 for MNIST).
        num_classes: output classes, background included (11 for MNIST).
        widths: channels at full, half and quarter resolution (the reference's 64/128/256;
            :func:`widths_from_base` for the usual 1x, 2x, 4x).
        input_to_head: concatenate the input image to the features the 1x1 head sees.
        decoder: "concat" (the U-Net's: up-sample, concatenate the skip, 3x3 convs) or
            "scores" (1x1 score maps per level, the background decided at full resolution).
        input_mean: subtracted from the input before anything else (0 for none).
        input_std: the input is then divided by this (1 for none).
        bottleneck_blocks: 3x3 conv blocks at quarter size (the reference's 2).
        half_scores: the score decoder's class scores also come from the half-size level
            (FCN's skip); False: from the bottleneck alone. True for the concat decoder.
    """

    in_channels: int = 1
    num_classes: int = 11
    widths: tuple[int, int, int] = (64, 128, 256)
    input_to_head: bool = False
    decoder: str = "concat"
    input_mean: float = 0.0
    input_std: float = 1.0
    bottleneck_blocks: int = 2
    half_scores: bool = True

    def __post_init__(self) -> None:
        for name in ("in_channels", "num_classes", "bottleneck_blocks"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2 (background and one class), got {self.num_classes}")
        widths = tuple(self.widths) if isinstance(self.widths, (list, tuple)) else self.widths  # JSON gives a list
        if (
            not isinstance(widths, tuple)
            or len(widths) != 3
            or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths)
        ):
            raise ValueError(f"widths must be three positive integers (full, half, quarter), got {self.widths!r}")
        object.__setattr__(self, "widths", widths)
        for name in ("input_to_head", "half_scores"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if not self.input_std > 0:
            raise ValueError(f"input_std must be positive, got {self.input_std!r}")
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {self.decoder!r}")
        if not self.half_scores and not self.score_decoder:
            raise ValueError(
                "class scores from the bottleneck alone (half_scores=False) are for the score decoder; "
                "the concat decoder always uses every level (add --half-scores)"
            )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelConfig:
        """The JSON form (``dataclasses.asdict``); files from before ``widths`` alone held the
        widths give ``base_width`` (and ``widths`` null for its 1x, 2x, 4x), and load too."""
        data = dict(data)
        base_width = data.pop("base_width", None)
        if data.get("widths") is None and base_width is not None:
            data["widths"] = widths_from_base(base_width)
        return cls(**data)

    @property
    def score_decoder(self) -> bool:
        """True for the "scores" decoder, False for the U-Net's "concat"."""
        return self.decoder == "scores"

    def describe(self) -> str:
        """The network in a few words, e.g. ``"SimpleUNet widths 8/32/64, input at the head, score decoder"``."""
        return (
            f"SimpleUNet widths {'/'.join(map(str, self.widths))}"
            + (", input at the head" if self.input_to_head else "")
            + (", score decoder" if self.score_decoder else "")
            + (f", {self.bottleneck_blocks} bottleneck blocks" if self.bottleneck_blocks != 2 else "")
            + (", class scores from the bottleneck alone" if not self.half_scores else "")
            + (", normalised input" if (self.input_mean, self.input_std) != (0.0, 1.0) else "")
        )


def conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    """3x3 conv (no bias: BatchNorm's shift replaces it), BatchNorm, ReLU; size kept."""
    return [
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class SimpleUNet(nn.Module):
    """The reference's simple U-Net, its widths set per level (the reference's: 64/128/256).

    Args:
        in_channels: image channels.
        num_classes: output classes, background included.
        base_width: a shortcut for ``widths``: this many channels at full resolution (64 in the
            reference), twice and four times as many deeper (:func:`widths_from_base`).
        widths: channels per level (full, half, quarter size); when given, ``base_width`` is not used.
        input_to_head: concatenate the input image to the features the 1x1 head sees.
        decoder: "concat" (the reference's) or "scores" (see the module's docstring).
        input_mean: the network first computes ``(images - input_mean) / input_std``.
        input_std: see ``input_mean``.
        bottleneck_blocks: 3x3 conv blocks at quarter size (the reference's 2).
        half_scores: score decoder: class scores from the half-size level too (see the module's docstring).

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
        decoder: str = "concat",
        input_mean: float = 0.0,
        input_std: float = 1.0,
        bottleneck_blocks: int = 2,
        half_scores: bool = True,
    ) -> None:
        super().__init__()
        if widths is None:
            if not isinstance(base_width, int) or isinstance(base_width, bool) or base_width < 1:
                raise ValueError(f"base_width must be a positive integer, got {base_width!r}")
            widths = widths_from_base(base_width)
        self.config = ModelConfig(in_channels, num_classes, widths, input_to_head, decoder, input_mean, input_std,
                                  bottleneck_blocks, half_scores)  # fmt: skip
        w1, w2, w3 = self.config.widths

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
            *(layer for _ in range(self.config.bottleneck_blocks - 1) for layer in conv_bn_relu(w3, w3)),
        )  # (N, w3, H/4, W/4)
        # Doubles the size: before each concat decoder block, to match its skip; or the score maps.
        self.upsample = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        head_inputs = w1 + (in_channels if input_to_head else 0)
        if not self.config.score_decoder:
            self.decoder = nn.ModuleList(
                [
                    nn.Sequential(*conv_bn_relu(w2 + w3, w2), *conv_bn_relu(w2, w2)),  # (N, w2, H/2, W/2)
                    nn.Sequential(*conv_bn_relu(w1 + w2, w1), *conv_bn_relu(w1, w1)),  # (N, w1, H, W)
                ]
            )
            self.head = nn.Conv2d(head_inputs, num_classes, 1)  # (N, num_classes, H, W)
        else:  # "scores": where (background or not) at full size, what (which class) from the coarse levels
            self.where = nn.Conv2d(head_inputs, 2, 1)  # (N, 2, H, W)
            self.what = nn.ModuleList(
                [nn.Conv2d(width, num_classes - 1, 1, bias=False) for width in ((w2, w3) if half_scores else (w3,))]
            )  # (N, num_classes - 1, H/2, W/2) if half_scores, and (.., H/4, W/4): the bottleneck's last

    @property
    def pixel_head(self) -> nn.Conv2d:
        """The 1x1 conv that decides each pixel at full resolution: ``where`` (scores) or ``head`` (concat)."""
        return self.where if self.config.score_decoder else self.head

    @classmethod
    def from_config(cls, config: ModelConfig) -> SimpleUNet:
        """Build the model a :class:`ModelConfig` describes."""
        return cls(
            config.in_channels, config.num_classes, widths=config.widths, input_to_head=config.input_to_head,
            decoder=config.decoder, input_mean=config.input_mean, input_std=config.input_std,
            bottleneck_blocks=config.bottleneck_blocks, half_scores=config.half_scores,
        )  # fmt: skip

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
        if (self.config.input_mean, self.config.input_std) != (0.0, 1.0):
            images = (images - self.config.input_mean) / self.config.input_std
        skips = []
        features = images
        for block in self.encoder:
            features = block(features)
            skips.append(features)
        features = self.bottleneck(features)  # (N, w3, H/4, W/4)
        if self.config.score_decoder:
            return self._scores_head(images, skips, features)
        # Deepest skip first: zip pairs each decoder block with the encoder map of its size.
        for skip, block in zip(reversed(skips), self.decoder, strict=True):
            features = block(torch.cat([skip, self.upsample(features)], dim=1))
        if self.config.input_to_head:
            features = torch.cat([features, images.to(features.dtype)], dim=1)
        return self.head(features)

    def _scores_head(self, images: Tensor, skips: list[Tensor], bottleneck: Tensor) -> Tensor:
        """The "scores" decoder: ``[N, num_classes, H, W]`` logits from the encoder's maps."""
        full, half = skips  # (N, w1, H, W), (N, w2, H/2, W/2)
        what = self.upsample(self.what[-1](bottleneck))  # (N, C-1, H/2, W/2)
        if self.config.half_scores:
            what = what + self.what[0](half)
        what = self.upsample(what).log_softmax(dim=1)  # (N, C-1, H, W): log p(class), from the whole digit
        if self.config.input_to_head:
            full = torch.cat([full, images.to(full.dtype)], dim=1)
        where = self.where(full)  # (N, 2, H, W): background, and "a digit is here"
        return torch.cat([where[:, :1], where[:, 1:] + what], dim=1)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
