"""The backbone interface: a pretrained image network, its preprocessing and its weights file.

A backbone turns photos into pooled features (``features``) and, for the ImageNet-trained
ones, class logits (``logits``), which the known-answer tests check. Weights are loaded
strictly: a file whose tensors do not match the architecture one for one is refused with
one line naming the file and how to get the right one.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from ivae.images import image_to_array

CHANNELS_LAST = torch.channels_last


class BackboneError(ValueError):
    """A backbone cannot be built or fed; the message names the file or input and the fix."""


def file_hash(path: str | Path) -> str:
    """The first 8 hex digits of the file's SHA-256: the weights' identity in cache keys."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:8]


def _first(keys: list[str], n: int = 3) -> str:
    more = f" and {len(keys) - n} more" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def load_weights(net: nn.Module, path: str | Path, label: str, fix: str) -> None:
    """Load a state dict into ``net`` with every key and shape matching, or raise one line."""
    path = Path(path)
    if not path.is_file():
        raise BackboneError(f"{path}: no such {label} weights file; {fix}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, OSError, ValueError) as error:
        reason = str(error).splitlines()[0][:120]
        raise BackboneError(
            f"{path}: not a readable PyTorch state dict ({reason}); {fix}"
        ) from error
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BackboneError(f"{path}: expected a state dict of tensors for {label}; {fix}")
    expected = net.state_dict()
    # Files saved before PyTorch 0.4.1 (torchvision's first ResNet-50) lack the batch-norm step
    # counters; they only matter when training with momentum=None, so the net's own are kept.
    state = {**{k: v for k, v in expected.items() if k.endswith("num_batches_tracked")}, **state}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = [
        f"missing {_first(missing)}" if missing else "",
        f"unexpected {_first(unexpected)}" if unexpected else "",
        f"wrong shape {_first(shapes, 2)}" if shapes else "",
    ]
    if any(problems):
        found = "; ".join(p for p in problems if p)
        raise BackboneError(f"{path}: not {label} weights ({found}); {fix}")
    net.load_state_dict(state, strict=True)


def fold_batch_norms(net: nn.Module) -> nn.Module:
    """An inference copy of ``net`` with every batch norm folded into the convolution before it
    and laid out channels-last: the same function up to rounding, about 3x the images per
    second on CPU (docs/results.md, "Feature extraction speed"). ``net.conv_bn_pairs()`` names
    the (convolution, batch norm) pairs as (parent module, conv attribute, bn attribute)."""
    import copy

    fast = copy.deepcopy(net).eval()
    with torch.no_grad():
        for parent, conv_name, bn_name in fast.conv_bn_pairs():
            conv, bn = getattr(parent, conv_name), getattr(parent, bn_name)
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (C_out,)
            bias = bn.bias - bn.running_mean * scale
            if conv.bias is not None:
                bias = bias + conv.bias * scale
            conv.weight = nn.Parameter(conv.weight * scale.view(-1, 1, 1, 1))
            conv.bias = nn.Parameter(bias)
            setattr(parent, bn_name, nn.Identity())
    return fast.to(memory_format=torch.channels_last).requires_grad_(False)


def to_uint8_batch(images) -> torch.Tensor:
    """A list of PIL images or a uint8 array (N, H, W, 3) / (N, 3, H, W) -> (N, 3, H, W) uint8.

    PIL images keep their own sizes only if they agree; callers resize them first.
    """
    if isinstance(images, (list, tuple)) and images and isinstance(images[0], Image.Image):
        raise TypeError("PIL images are resized by Backbone.preprocess, not here")
    array = images.numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if array.dtype != np.uint8 or array.ndim != 4:
        raise BackboneError(
            f"images must be PIL images or a uint8 array (N, H, W, 3) or (N, 3, H, W); "
            f"got {array.dtype} with shape {array.shape}"
        )
    if array.shape[1] != 3 and array.shape[-1] == 3:
        array = array.transpose(0, 3, 1, 2)
    if array.shape[1] != 3:
        raise BackboneError(f"images must have 3 colour channels; got shape {array.shape}")
    return torch.from_numpy(np.ascontiguousarray(array))


class Backbone:
    """A pretrained network in eval mode with its input size and normalisation.

    ``mean`` and ``std`` are per channel in 0-255 units: the input the weights were trained on
    is ``(pixels - mean) / std``.
    """

    def __init__(
        self,
        name: str,
        net: nn.Module,
        image_size: int,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
        weights_path: str | Path,
    ):
        self.name, self.net, self.image_size = name, net.eval(), image_size
        self.feature_dim: int = net.feature_dim
        self.weights_path = Path(weights_path)
        self.weights_hash = file_hash(weights_path)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self._fast: nn.Module | None = None
        self.device = torch.device("cpu")

    def to(self, device: str | torch.device) -> Backbone:
        """Run the network on ``device``; features still come back as numpy arrays."""
        self.device = torch.device(device)
        self.net.to(self.device)
        if self._fast is not None:
            self._fast.to(self.device)
        self.mean, self.std = self.mean.to(self.device), self.std.to(self.device)
        return self

    @property
    def fast(self) -> nn.Module:
        """The batch-norm-folded, channels-last copy of ``net`` that inference runs."""
        if self._fast is None:
            self._fast = fold_batch_norms(self.net)
        return self._fast

    def __repr__(self) -> str:
        return f"Backbone({self.name!r}, {self.image_size}px, weights {self.weights_hash})"

    def resize(self, images) -> torch.Tensor:
        """Any accepted input -> (N, 3, S, S) uint8 at this backbone's image size, centre-cropped
        to a square first (the same path as the data sets and uploads: ivae.images)."""
        if isinstance(images, (list, tuple)) and all(isinstance(i, Image.Image) for i in images):
            arrays = [image_to_array(img, self.image_size) for img in images]
            return torch.from_numpy(np.stack(arrays)) if arrays else torch.zeros(0, 3, 1, 1)
        x = to_uint8_batch(images)
        height, width = x.shape[-2:]
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        x = x[:, :, top : top + side, left : left + side]
        if side != self.image_size:
            size = (self.image_size, self.image_size)
            x = F.interpolate(x.float(), size, mode="bicubic", antialias=True, align_corners=False)
            x = x.round().clamp(0, 255).to(torch.uint8)
        return x

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) uint8 -> float32 input of the network."""
        return (x.float() - self.mean) / self.std

    def preprocess(self, images) -> torch.Tensor:
        """Photos -> (N, 3, S, S) float32, resized and normalised as the weights expect."""
        return self.normalise(self.resize(images))

    @torch.inference_mode()
    def _batched(self, forward, images, batch_size: int, width: int) -> np.ndarray:
        x = self.resize(images)
        out = [
            forward(
                self.normalise(x[i : i + batch_size].to(self.device, non_blocking=True)).contiguous(
                    memory_format=CHANNELS_LAST
                )
            )
            for i in range(0, len(x), batch_size)
        ]
        return torch.cat(out).float().cpu().numpy() if out else np.zeros((0, width), np.float32)

    def features(self, images, batch_size: int = 64) -> np.ndarray:
        """(N, F) float32 pooled features of the last convolution (eval mode, no gradient)."""
        return self._batched(self.fast.features, images, batch_size, self.feature_dim)

    def logits(self, images, batch_size: int = 64) -> np.ndarray:
        """(N, 1000) ImageNet class logits."""
        return self._batched(self.fast, images, batch_size, 1000)
