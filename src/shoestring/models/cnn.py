"""A small convolutional net for image data (two conv blocks, then a head)."""

from __future__ import annotations

import torch
from torch import nn


class SmallCNN(nn.Module):
    """conv(3×3)→ReLU→maxpool per channel width, then global average pool → linear.

    Global average pooling keeps the head independent of the image size.
    """

    def __init__(self, in_channels: int, channels: list[int] | tuple[int, ...], out_features: int,
                 dropout: float = 0.0) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        width = in_channels
        for c in channels:
            blocks += [nn.Conv2d(width, c, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            width = c
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
            nn.Linear(width, out_features),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
