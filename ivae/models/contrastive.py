"""A contrastive dual encoder (InfoNCE, as in CLIP: Radford et al. 2021, arXiv 2103.00020).

The retrieval reference: it learns to match images and recipes, not identifiable factors.
Codes are L2-normalised embeddings; the score is their cosine similarity over a learned
temperature.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ivae.distributed import gather, spans
from ivae.models.base import Model, ModelConfig, register
from ivae.nets import Modality, build_encoder


@dataclass
class ContrastiveConfig(ModelConfig):
    initial_temperature: float = 0.1


@register
class Contrastive(Model):
    name = "contrastive"
    Config = ContrastiveConfig
    paper = "Radford et al. 2021, arXiv 2103.00020 (InfoNCE: van den Oord et al. 2018)"

    def __init__(self, config: ContrastiveConfig, x: Modality, y: Modality):
        super().__init__(config, x, y)
        self.image_encoder = build_encoder(
            x, config.latent_dim, config.hidden, config.depth, config.width
        )
        self.query_encoder = build_encoder(y, config.latent_dim, config.hidden, config.depth)
        self.log_scale = nn.Parameter(torch.tensor(-math.log(config.initial_temperature)))

    def encode_x(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_encoder(x), dim=-1)

    def encode_y(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = F.normalize(self.query_encoder(y), dim=-1)
        return mean, torch.zeros_like(mean)

    def score(self, z: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return z @ mean.T * self.log_scale.exp().clamp(max=100.0)

    def loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        z, (mean, logvar) = self.encode_x(batch["x"]), self.encode_y(batch["y"])
        # Under torchrun both directions' negatives span the global batch (ivae.distributed):
        # this process's B rows against all N*B columns, gathered with gradients.
        (all_z, all_mean), offset = gather(z, mean)
        logits = self.score(z, all_mean, logvar)  # (B, N*B)
        target = torch.arange(len(z), device=logits.device) + offset
        x_to_y = F.cross_entropy(logits, target)
        y_to_x = F.cross_entropy(self.score(mean, all_z, logvar) if spans() else logits.T, target)
        return {"loss": 0.5 * (x_to_y + y_to_x), "nce_x_to_y": x_to_y, "nce_y_to_x": y_to_x}
