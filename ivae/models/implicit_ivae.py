"""The implicit identifiable VAE (Kim, Guerrero & Pavlovic, arXiv 2012.00682, ACM MM 2021).

An encoder-only model: no network maps factors back to pixels. The decoder is defined
implicitly as the inverse of the encoder e on the data, so by the change of variables
(docs/method.md, eq. 1)

    log p(x | y) = log p(e(x) | y) + 1/2 log det(J_e J_e^T)            (likelihood)

with p(z|y) the factorial Gaussian conditional prior of iVAE (Khemakhem et al. 2020) and
u := y the recipe. The log-volume term is the Jacobian regularisation that keeps e
invertible on the data. Alone it can be inflated off the data manifold (docs/method.md,
"Pitfalls"), so the default objective adds the density ratio

    log p(e(x_i) | y_i) - log 1/B sum_j p(e(x_i) | y_j)                    (ratio)

in which the Jacobian cancels: it measures the code's entropy on the data itself and
cannot be gamed off-manifold. Loss = -(w_r ratio + w_l likelihood) + w_f ||J||_F^2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ivae.jacobian import encoder_jacobian, frobenius_sq, half_logdet_jjt
from ivae.models.base import ConditionalPrior, Model, ModelConfig, pairwise_log_prob, register
from ivae.nets import Modality, build_encoder

JACOBIAN_MODES = ("exact", "none")


@dataclass
class ImplicitIVAEConfig(ModelConfig):
    ratio_weight: float = 1.0  # density-ratio term (entropy of e(X) on the data)
    likelihood_weight: float = 1.0  # log p(e(x)|y) + 1/2 log det(J J^T)
    jacobian: str = "exact"  # "exact" | "none" (the ablation without the Jacobian term)
    jacobian_samples: int = 64  # batch points per step for the Jacobian term (unbiased subset)
    frobenius_weight: float = 0.0  # penalty on ||J||_F^2: off-manifold sensitivity
    input_noise: float = 0.0  # std of Gaussian noise added to vector inputs while training

    def __post_init__(self) -> None:
        if self.jacobian not in JACOBIAN_MODES:
            raise ValueError(f"jacobian must be one of {JACOBIAN_MODES}, got {self.jacobian!r}")


@register
class ImplicitIVAE(Model):
    name = "implicit-ivae"
    Config = ImplicitIVAEConfig
    paper = "Kim, Guerrero & Pavlovic 2021, arXiv 2012.00682"

    def __init__(self, config: ImplicitIVAEConfig, x: Modality, y: Modality):
        super().__init__(config, x, y)
        self.encoder = build_encoder(x, config.latent_dim, config.hidden, config.depth)
        self.prior = ConditionalPrior(y, config.latent_dim, config.hidden, config.depth)

    def encode_x(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def encode_y(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.prior(y)

    def _noisy(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.config.input_noise > 0 and x.is_floating_point():
            return x + self.config.input_noise * torch.randn_like(x)
        return x

    def loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        c = self.config
        x, y = self._noisy(batch["x"]), batch["y"]
        mean, logvar = self.prior(y)
        needs_jacobian = c.jacobian == "exact" and (c.likelihood_weight > 0 or c.frobenius_weight > 0)
        m = min(c.jacobian_samples, len(x)) if needs_jacobian else 0
        if m:  # the first m points carry the Jacobian; the batch is already shuffled
            z_j, jac = encoder_jacobian(self.encoder, x[:m])
            z = torch.cat([z_j, self.encoder(x[m:])]) if m < len(x) else z_j
        else:
            z = self.encoder(x)
        logp = pairwise_log_prob(z, mean, logvar)  # (B, B): code i under query j's prior
        positive = logp.diagonal()  # (B,)
        ratio = positive - (torch.logsumexp(logp, dim=1) - math.log(len(x)))
        terms = {"ratio": ratio.mean(), "log_prior": positive.mean()}
        if m:
            terms["log_volume"] = half_logdet_jjt(jac).mean()
            terms["jacobian_frobenius"] = frobenius_sq(jac).mean()
            likelihood = positive[:m].mean() + terms["log_volume"]
        else:
            likelihood = positive.mean()
        terms["likelihood"] = likelihood
        loss = -(c.ratio_weight * terms["ratio"] + c.likelihood_weight * likelihood)
        if m and c.frobenius_weight > 0:
            loss = loss + c.frobenius_weight * terms["jacobian_frobenius"]
        return {"loss": loss, **terms}
