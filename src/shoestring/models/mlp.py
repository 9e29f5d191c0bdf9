"""Multi-layer perceptrons, including the seed example's 784→128→64→10."""

from __future__ import annotations

import math

import torch
from torch import nn

# The seed example (a Keras script): Dense(128, relu) → Dense(64, relu) →
# Dense(10, softmax). The softmax is folded into the cross-entropy loss.
SEED_HIDDEN = (128, 64)


class MLP(nn.Module):
    """Flatten, then Linear→activation blocks, then a linear head (logits)."""

    def __init__(self, in_features: int, hidden: list[int] | tuple[int, ...], out_features: int,
                 dropout: float = 0.0, activation: str = "relu") -> None:
        super().__init__()
        act = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}[activation]
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), act()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, out_features))
        self.net = nn.Sequential(*layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Keras' Dense default: Glorot-uniform weights, zero biases (the seed
        # example's initialisation), rather than PyTorch's Kaiming-uniform.
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def flat_size(input_shape: tuple[int, ...]) -> int:
    return int(math.prod(input_shape))
