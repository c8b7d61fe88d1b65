"""ResNet-50 (He et al. 2016, arXiv 1512.03385) with torchvision's module layout and state-dict
keys (``conv1``, ``bn1``, ``layer1.0.conv1``, ..., ``fc``), so torchvision's ImageNet weights
load strictly without torchvision itself. The stride of a downsampling bottleneck sits on its
3x3 convolution, as in torchvision ("ResNet v1.5").
"""

from __future__ import annotations

import torch
from torch import nn

STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))  # (width, blocks, stride)
EXPANSION = 4


class Bottleneck(nn.Module):
    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = width * EXPANSION
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.bn1(self.conv1(x)))
        h = self.relu(self.bn2(self.conv2(h)))
        h = self.bn3(self.conv3(h))
        return self.relu(h + (x if self.downsample is None else self.downsample(x)))


class ResNet50(nn.Module):
    """(B, 3, S, S) normalised images -> (B, 2048) pooled features -> (B, 1000) logits."""

    feature_dim = 512 * EXPANSION

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        cin = 64
        for i, (width, blocks, stride) in enumerate(STAGES, start=1):
            layer = []
            for b in range(blocks):
                layer.append(Bottleneck(cin, width, stride if b == 0 else 1))
                cin = width * EXPANSION
            setattr(self, f"layer{i}", nn.Sequential(*layer))
        self.fc = nn.Linear(cin, num_classes)

    def conv_bn_pairs(self):
        yield self, "conv1", "bn1"
        for i in range(1, len(STAGES) + 1):
            for block in getattr(self, f"layer{i}"):
                yield from ((block, f"conv{j}", f"bn{j}") for j in (1, 2, 3))
                if block.downsample is not None:
                    yield block.downsample, "0", "1"

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(1, len(STAGES) + 1):
            x = getattr(self, f"layer{i}")(x)
        return x.mean(dim=(2, 3))  # (B, 2048)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))
