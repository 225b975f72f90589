"""Image encoders for aligned face crops (the video branch)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SmallCNN(nn.Module):
    """A compact conv net: crops ``[N,3,H,W]`` in [0,1] → ``[N,dim]``.

    Crops are resized to ``input_size`` first, so any crop size works.
    """

    def __init__(self, dim: int, input_size: int = 64, width: int = 32) -> None:
        super().__init__()
        self.input_size = input_size
        channels = [3, width // 2, width, 2 * width, 2 * width]
        blocks = []
        for cin, cout in zip(channels[:-1], channels[1:]):
            blocks += [
                nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            ]
        self.features = nn.Sequential(*blocks)
        self.project = nn.Linear(channels[-1], dim)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        if crops.shape[-1] != self.input_size or crops.shape[-2] != self.input_size:
            crops = F.interpolate(
                crops, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False, antialias=True
            )
        x = self.features(crops - 0.5)
        return self.project(x.mean(dim=(2, 3)))


def build_image_encoder(name: str, dim: int, input_size: int = 64) -> nn.Module:
    """Image encoder by name: ``small_cnn`` (default) or ``resnet50`` (DECA-sized, 2048-d + projection)."""
    if name == "small_cnn":
        return SmallCNN(dim, input_size)
    if name == "resnet50":
        from au_face.nn.resnet import resnet50

        backbone = resnet50()
        return nn.Sequential(backbone, nn.Linear(backbone.out_features, dim))
    raise ValueError(f"unknown image encoder {name!r}; choose small_cnn or resnet50")
