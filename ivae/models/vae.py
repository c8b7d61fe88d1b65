"""Encoder-decoder baselines: the VAE (Kingma & Welling 2014, arXiv 1312.6114), beta-VAE
(Higgins et al., ICLR 2017) and the explicit-decoder iVAE (Khemakhem et al., AISTATS 2020,
arXiv 1907.04809), which differ only in the prior and the weight of its KL term.

All three decode x from z with a Gaussian likelihood of fixed variance. The VAEs never see y
during representation learning; a query head fitted to their (detached) codes gives them a
query side for retrieval without changing what they learn.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ivae.models.base import (
    ConditionalPrior,
    Model,
    ModelConfig,
    gaussian_log_prob,
    kl_gaussians,
    register,
)
from ivae.nets import Modality, build_decoder, build_encoder


@dataclass
class VAEConfig(ModelConfig):
    decoder_var: float = 0.01  # fixed observation variance of p(x|z)
    beta: float = 1.0  # weight of the KL term


@dataclass
class BetaVAEConfig(VAEConfig):
    beta: float = 4.0


def _targets(x: torch.Tensor) -> torch.Tensor:
    """What the decoder reconstructs: images in [0, 1], vectors as they are."""
    return x.float() / 255.0 if x.dtype == torch.uint8 else x


@register
class VAE(Model):
    name = "vae"
    Config = VAEConfig
    paper = "Kingma & Welling 2014, arXiv 1312.6114"

    def __init__(self, config: VAEConfig, x: Modality, y: Modality):
        super().__init__(config, x, y)
        k = config.latent_dim
        self.encoder = build_encoder(x, 2 * k, config.hidden, config.depth, config.width)
        self.decoder = build_decoder(x, k, config.hidden, config.depth, config.width)
        self.query = ConditionalPrior(y, k, config.hidden, config.depth)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.encoder(x).chunk(2, dim=-1)
        return mean, logvar.clamp(-12.0, 6.0)

    def encode_x(self, x: torch.Tensor) -> torch.Tensor:
        return self.posterior(x)[0]

    def encode_y(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.query(y)

    def prior(self, y: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """p(z) = N(0, I) for the VAEs; the explicit iVAE overrides it with p(z|y)."""
        return torch.zeros_like(like), torch.zeros_like(like)

    def loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        c = self.config
        x, y = batch["x"], batch["y"]
        mean, logvar = self.posterior(x)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar)
        recon = self.decoder(z).flatten(1)
        target = _targets(x).flatten(1)
        recon_loss = 0.5 * ((recon - target) ** 2).sum(1).mean() / c.decoder_var
        prior_mean, prior_logvar = self.prior(y, mean)
        kl = kl_gaussians(mean, logvar, prior_mean, prior_logvar).mean()
        terms = {"recon_loss": recon_loss, "kl": kl}
        loss = recon_loss + c.beta * kl
        if self.name != "ivae":  # the retrieval head, trained on detached codes
            q_mean, q_logvar = self.query(y)
            terms["query_nll"] = -gaussian_log_prob(mean.detach(), q_mean, q_logvar).mean()
            loss = loss + terms["query_nll"]
        return {"loss": loss, **terms}


@register
class BetaVAE(VAE):
    name = "beta-vae"
    Config = BetaVAEConfig
    paper = "Higgins et al., ICLR 2017"


@register
class ExplicitIVAE(VAE):
    """iVAE with an explicit decoder: the same ELBO, with the prior p(z|y) learned from y.

    Khemakhem et al. condition the encoder on u as well; here q(z|x) sees x alone so that
    gallery images can be encoded without their recipe, like every model in the registry.
    """

    name = "ivae"
    paper = "Khemakhem et al., AISTATS 2020, arXiv 1907.04809"

    def prior(self, y: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.query(y)
