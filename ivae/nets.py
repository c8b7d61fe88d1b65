"""Networks, separate from the objectives that train them: any model takes any encoder.

``build_encoder(modality, out_dim)`` picks the network by the modality's kind:
an MLP for vectors, a small CNN for images, a 1-D convolutional text encoder for token ids.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

KINDS = ("vector", "image", "text")


@dataclass(frozen=True)
class Modality:
    """What a network's input looks like: (D,) vectors, (3, S, S) images, (L,) tokens."""

    kind: str
    shape: tuple[int, ...]
    vocab_size: int = 0

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> Modality:
        return cls(kind=d["kind"], shape=tuple(d["shape"]), vocab_size=d.get("vocab_size", 0))


LEAKY_SLOPE = 0.2  # of the MLPs' leaky ReLUs


def mlp(dims: list[int], slope: float = LEAKY_SLOPE) -> nn.Sequential:
    """Linear layers with leaky ReLUs between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(nn.LeakyReLU(slope))
    return nn.Sequential(*layers)


def _as_float_image(x: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, S, S) in [0, 255] -> float in [-1, 1]; float input is taken as [0, 1]."""
    if x.dtype == torch.uint8:
        return x.float().div(127.5).sub(1.0)
    return x * 2.0 - 1.0


DIHEDRAL_VIEWS = 8  # the symmetries of the square: 4 quarter turns, each also flipped


def dihedral_view(x: torch.Tensor, view: int) -> torch.Tensor:
    """(B, C, S, S) -> the same images under symmetry ``view`` (0-7) of the square."""
    turned = torch.rot90(x, view % 4, dims=(2, 3))
    return turned.flip(3) if view >= 4 else turned


class ConvEncoder(nn.Module):
    """(B, 3, S, S) -> (B, out_dim). Stride-2 convolutions down to 4x4, then an MLP head.

    GroupNorm rather than BatchNorm: per-sample Jacobians must not mix the batch.
    """

    def __init__(self, image_size: int, out_dim: int, width: int = 16, hidden: int = 256):
        super().__init__()
        blocks, channels, size = [], 3, image_size
        while size > 4:
            out = min(width * 2 ** (len(blocks) // 3), 128)
            blocks += [
                nn.Conv2d(channels, out, 4, stride=2, padding=1),
                nn.GroupNorm(8, out),
                nn.SiLU(),
            ]
            channels, size = out, size // 2
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * size * size, hidden),
            nn.SiLU(),
            nn.Linear(hidden, out_dim),
        )

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B, C, 4, 4): what the head reads (its Jacobian: jacobian='head')."""
        return self.features(_as_float_image(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))


class ConvDecoder(nn.Module):
    """(B, in_dim) -> (B, 3, S, S) in [0, 1] (sigmoid); the mirror of :class:`ConvEncoder`."""

    def __init__(self, image_size: int, in_dim: int, width: int = 16, hidden: int = 256):
        super().__init__()
        steps = max(1, (image_size // 4).bit_length() - 1)  # 4 -> S by doubling
        channels = [min(width * 2**i, 128) for i in reversed(range(steps))]
        self.stem = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.SiLU(), nn.Linear(hidden, channels[0] * 16), nn.SiLU()
        )
        blocks = []
        for a, b in zip(channels, channels[1:] + [3]):
            blocks.append(nn.ConvTranspose2d(a, b, 4, stride=2, padding=1))
            if b != 3:
                blocks += [nn.GroupNorm(8, b), nn.SiLU()]
        self.body = nn.Sequential(*blocks)
        self.first = channels[0]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.stem(z).view(len(z), self.first, 4, 4)
        return torch.sigmoid(self.body(h))


class TextEncoder(nn.Module):
    """(B, L) token ids (0 = padding) -> (B, out_dim).

    A convolution over five-word windows lets a quantity bind to the ingredient after it
    ("2 cups chicken broth"), which a bag of words cannot; masked mean and max pooling follow.
    One narrow layer keeps a 150-word recipe at ~3M multiply-adds, cheaper than the image.
    """

    def __init__(
        self, vocab_size: int, out_dim: int, embed: int = 32, channels: int = 96, hidden: int = 256
    ):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed, padding_idx=0)
        self.conv = nn.Sequential(nn.Conv1d(embed, channels, 5, padding=2), nn.SiLU())
        self.head = mlp([2 * channels, hidden, out_dim])

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        mask = (tokens > 0).unsqueeze(1).float()  # (B, 1, L)
        h = self.conv(self.embed(tokens).transpose(1, 2)) * mask  # (B, H, L)
        mean = h.sum(2) / mask.sum(2).clamp(min=1.0)
        peak = h.masked_fill(mask == 0, -1e4).amax(2)
        return self.head(torch.cat([mean, peak], 1))


class VectorEncoder(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, hidden: int = 256, depth: int = 3):
        super().__init__()
        self.net = mlp([in_dim] + [hidden] * (depth - 1) + [out_dim])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_encoder(
    modality: Modality, out_dim: int, hidden: int = 256, depth: int = 3, width: int = 16
) -> nn.Module:
    if modality.kind == "vector":
        return VectorEncoder(modality.shape[0], out_dim, hidden, depth)
    if modality.kind == "image":
        return ConvEncoder(modality.shape[-1], out_dim, width, hidden)
    if modality.kind == "text":
        return TextEncoder(modality.vocab_size, out_dim, hidden=hidden)
    raise ValueError(f"no encoder for modality kind {modality.kind!r}; known: {KINDS}")


def backbone_tail(
    modality: Modality, out_dim: int, hidden: int = 256, depth: int = 3, stage_means: bool = False
):
    """EfficientNet-Lite0's last block and head convolution (ImageNet weights loaded by
    ivae.head.pretrained_tail), then an MLP: the encoder of a run that fine-tunes the last
    block, on the flattened map entering it (the ``efficientnet-lite0-tail`` backbone). With
    ``stage_means`` the MLP reads the stage means instead of the head convolution's: the
    trunk's frozen ones, then the map's and the last block's (``…-stages-tail``)."""
    from ivae.backbones.efficientnet_lite0 import EfficientNetLite0Tail

    if modality.kind != "vector":
        raise ValueError(
            f"the efficientnet-lite0-tail encoder reads the cached map entering the last block "
            f"(vector data); got {modality.kind} {modality.shape}"
        )
    tail = EfficientNetLite0Tail(modality.shape[0], stage_means=stage_means)
    return nn.Sequential(tail, VectorEncoder(tail.out_dim, out_dim, hidden, depth))


def pretrained_image_encoder(modality: Modality, out_dim: int, hidden: int = 256, depth: int = 3):
    """The whole EfficientNet-Lite0 on the photos (ImageNet weights loaded by
    ivae.head.pretrained_network when the run starts), then an MLP on its 1280 pooled features:
    every layer fine-tunes with the head (``encoder="efficientnet-lite0"``; meant for a GPU)."""
    from ivae.backbones.efficientnet_lite0 import EfficientNetLite0Encoder

    if modality.kind != "image":
        raise ValueError(
            f"encoder=efficientnet-lite0 fine-tunes the network on the photos (image data); "
            f"got {modality.kind} {modality.shape}. Train it on a paired image directory "
            "without --backbone (a --backbone run trains a head on the frozen network's "
            "cached features)"
        )
    network = EfficientNetLite0Encoder()
    return nn.Sequential(network, VectorEncoder(network.feature_dim, out_dim, hidden, depth))


def build_decoder(
    modality: Modality, in_dim: int, hidden: int = 256, depth: int = 3, width: int = 16
) -> nn.Module:
    """Decoders exist only for the encoder-decoder baselines; the implicit model has none."""
    if modality.kind == "vector":
        return mlp([in_dim] + [hidden] * (depth - 1) + [modality.shape[0]])
    if modality.kind == "image":
        return ConvDecoder(modality.shape[-1], in_dim, width, hidden)
    raise ValueError(f"no decoder for modality kind {modality.kind!r}")


# |log scale| of each coupling below this: off the data a run of saturated couplings cannot
# compound into a cliff (docs/experiments.md, "Bounded couplings")
COUPLING_SCALE_BOUND = 0.5


# CouplingFlow's stacked tensors of the coupling MLPs: name -> (index in a coupling's MLP,
# attribute); weight1 is (layers, hidden, k), its column j the weights on coordinate j
STACKED = {
    "weight1": (0, "weight"),
    "bias1": (0, "bias"),
    "weight2": (2, "weight"),
    "bias2": (2, "bias"),
    "weight3": (4, "weight"),
    "bias3": (4, "bias"),
}


class CouplingFlow(nn.Module):
    """(B, k) -> (B, k): an invertible map, RealNVP affine couplings (Dinh et al., ICLR 2017,
    arXiv 1605.08803) with alternating masks, each after a learned square linear layer
    (Glow's invertible 1x1 convolution, Kingma & Dhariwal 2018), so every coupling splits the
    coordinates along new directions. A coupling scales and shifts the unmasked coordinates by
    an MLP of the masked ones: invertible by construction, with a triangular Jacobian. Used as
    the encoder when x has as many dimensions as the factors: an invertible encoder cannot
    fold a factor onto |factor|, which a variance-only query would not notice
    (docs/experiments.md#which-encoder-for-square-data).

    The layers' parameters are stacked, one tensor per kind with the layer first, and split
    once per pass: on a 5-dimensional problem a step is per-tensor overhead, and ~130 small
    tensors through the gradient clip and Adam cost a quarter of it (bench/flow_steps.py).
    Runs saved with one module per coupling load unchanged (``_load_from_state_dict``).
    """

    def __init__(
        self,
        dim: int,
        hidden: int = 64,
        layers: int = 6,
        mixing: bool = True,
        scale_bound: float = COUPLING_SCALE_BOUND,
    ):
        super().__init__()
        self.scale_bound = scale_bound  # |log scale| of each coupling below this
        masks = torch.stack([(torch.arange(dim) + i) % 2 for i in range(layers)])
        self.register_buffer("masks", masks.float())  # (L, k): 1 on the coordinates read
        # Drawn as the per-layer modules were, in their order: a seed gives the same start.
        nets = [mlp([dim, hidden, hidden, 2 * dim]) for _ in range(layers)]
        linears = [nn.Linear(dim, dim) for _ in range(layers if mixing else 1)]
        for linear in linears:
            nn.init.orthogonal_(linear.weight)
        for name, (index, attr) in STACKED.items():
            stacked = torch.stack([getattr(net[index], attr) for net in nets]).detach()
            self.register_parameter(name, nn.Parameter(stacked))
        with torch.no_grad():  # every coupling starts at the identity
            self.weight3.zero_()
            self.bias3.zero_()
        self.mix_weight = nn.Parameter(torch.stack([lin.weight for lin in linears]).detach())
        self.mix_bias = nn.Parameter(torch.stack([lin.bias for lin in linears]).detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_logdet(x)[0]

    @torch.no_grad()
    def whiten(self, x: torch.Tensor) -> None:
        """Start the first linear layer as a whitening of ``x`` (N, k), a sample of the
        training inputs: W <- W Lambda^-1/2 U^T and b <- -W mean, with U Lambda U^T the
        sample's covariance and W the layer's random orthogonal start, so the codes start
        uncorrelated with unit variance whatever the scales the data come in: Glow's
        data-dependent ActNorm start (Kingma & Dhariwal 2018), in every direction. The mixed
        toy's covariances have condition numbers of 100-1,400; from this start 20 epochs
        reach what 45 reached from the orthogonal one, within 0.003 MCC
        (docs/experiments.md, "A whitened start")."""
        x = x.double()
        variances, directions = torch.linalg.eigh(torch.cov(x.T))
        floor = max(float(variances.max()) * 1e-8, 1e-12)  # a constant direction stays finite
        whitening = (directions / variances.clamp_min(floor).sqrt()).T
        weight = self.mix_weight[0].double() @ whitening
        self.mix_weight[0] = weight.to(self.mix_weight.dtype)
        self.mix_bias[0] = (-(weight @ x.mean(0))).to(self.mix_bias.dtype)

    def forward_with_logdet(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z (B, k) and log |det dz/dx| (B,), exact.

        The pass runs on the transposed activations, (features, B): every product is then
        weight @ activations. On the CPU the thin products (5 coordinates on one side) ran
        2-4 times slower each in PyTorch's (B, features) layout, and the toy's training step
        took 1.18 times as long (docs/experiments.md, "A transposed pass")."""
        free = 1 - self.masks  # the coordinates each coupling scales and shifts
        outputs = torch.cat([free, free], dim=1)  # (log scale, shift) rows
        # Masking the weights equals masking the input and output of every coupling, in one
        # operation for all layers (zero gradient on the masked entries alike).
        weight1 = (self.weight1 * self.masks[:, None, :]).unbind()
        weight3 = (self.weight3 * outputs[:, :, None]).unbind()
        bias3 = (self.bias3 * outputs)[:, :, None].unbind()  # biases as columns
        bias1, bias2 = self.bias1[:, :, None].unbind(), self.bias2[:, :, None].unbind()
        weight2, mix_weight = self.weight2.unbind(), self.mix_weight.unbind()
        mix_bias = self.mix_bias[:, :, None].unbind()
        bound, k, z, scales = self.scale_bound, x.shape[1], x.t(), []
        for i in range(len(weight1)):
            if i < len(mix_weight):
                z = torch.addmm(mix_bias[i], mix_weight[i], z)
            h = F.leaky_relu(torch.addmm(bias1[i], weight1[i], z), LEAKY_SLOPE)
            h = F.leaky_relu(torch.addmm(bias2[i], weight2[i], h), LEAKY_SLOPE)
            scale, shift = torch.addmm(bias3[i], weight3[i], h).split(k)
            scale = bound * torch.tanh(scale / bound)  # 0 where kept
            z = torch.addcmul(shift, z, scale.exp())
            scales.append(scale)
        # the linear layers' log-dets do not depend on x: one batched call for all of them
        logdet = torch.linalg.slogdet(self.mix_weight)[1].sum() + torch.stack(scales).sum((0, 1))
        return z.t(), logdet

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """A run saved with one module per coupling (``couplings.i.net.j``, ``linears.i``):
        its tensors stacked into this layout, then loaded."""
        if f"{prefix}couplings.0.net.0.weight" in state_dict:
            layers, mixes = len(self.masks), len(self.mix_weight)  # a mismatch fails to load
            for name, (index, attr) in STACKED.items():
                state_dict[prefix + name] = torch.stack(
                    [
                        state_dict.pop(f"{prefix}couplings.{i}.net.{index}.{attr}")
                        for i in range(layers)
                    ]
                )
            for attr in ("weight", "bias"):
                state_dict[f"{prefix}mix_{attr}"] = torch.stack(
                    [state_dict.pop(f"{prefix}linears.{i}.{attr}") for i in range(mixes)]
                )
            state_dict[f"{prefix}masks"] = torch.stack(
                [state_dict.pop(f"{prefix}couplings.{i}.mask") for i in range(layers)]
            )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class InvertibleLeakyReLU(nn.Module):
    """Elementwise v -> v (v > 0), a v (v <= 0) with a learned slope a = exp(log_slope) > 0
    per unit: invertible for any a, with log |det| = sum over the negative units of log a."""

    def __init__(self, dim: int, slope: float = 0.5):
        super().__init__()
        self.log_slope = nn.Parameter(torch.full((dim,), float(torch.tensor(slope).log())))

    def forward(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        negative = v <= 0
        out = torch.where(negative, v * self.log_slope.exp(), v)
        return out, (negative * self.log_slope).sum(-1)


class LeakyFlow(nn.Module):
    """(B, k) -> (B, k): an invertible leaky-ReLU MLP, square affine layers with invertible
    leaky ReLUs between them. The inverse of a leaky-ReLU MLP mixing with invertible layers
    is again such a network (slopes 1/a), so this family contains the inverse of the iVAE
    protocol's mixing (docs/experiments.md, "Which encoder"); log |det J| is exact and costs one
    k x k log-determinant per layer."""

    def __init__(self, dim: int, layers: int = 3, slope: float = 0.5):
        super().__init__()
        self.linears = nn.ModuleList(nn.Linear(dim, dim) for _ in range(layers))
        for linear in self.linears:
            nn.init.orthogonal_(linear.weight)
            nn.init.zeros_(linear.bias)
        self.activations = nn.ModuleList(InvertibleLeakyReLU(dim, slope) for _ in range(layers - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_logdet(x)[0]

    def forward_with_logdet(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z (B, k) and log |det dz/dx| (B,), exact."""
        z, logdet = x, x.new_zeros(len(x))
        for i, linear in enumerate(self.linears):
            z = linear(z)
            logdet = logdet + torch.linalg.slogdet(linear.weight)[1]
            if i < len(self.activations):
                z, part = self.activations[i](z)
                logdet = logdet + part
        return z, logdet
