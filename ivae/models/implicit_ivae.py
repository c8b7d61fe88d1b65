"""The implicit identifiable VAE (Kim, Guerrero & Pavlovic, arXiv 2012.00682, ACM MM 2021).

An encoder-only model: no network maps factors back to pixels. The decoder is defined
implicitly as the inverse of the encoder e on the data, so by the change of variables
(docs/method.md, eq. 1)

    log p(x | y) = log p(e(x) | y) + 1/2 log det(J_e J_e^T)            (likelihood, eq. 1)

with p(z|y) the factorial Gaussian conditional prior of iVAE (Khemakhem et al. 2020) and
u := y the query. The log-volume term is the Jacobian regularisation that keeps e
invertible on the data. Alone it can be inflated off the data manifold
(docs/method.md#known-limits), so the objective also has the density ratio (eq. 3)

    log p(e(x_i) | y_i) - log 1/B sum_j p(e(x_i) | y_j)                    (ratio)

in which the Jacobian cancels: it is log p(x|y) - log p(x) with p(x) the model's own
aggregate over the batch, so it cannot be gamed off-manifold. The default loss is the ratio
alone, or -(ratio + 0.3 likelihood) when the encoder is the invertible flow of square data
(FLOW_LIKELIHOOD_WEIGHT). The other candidates that docs/experiments.md measures are selectable
here by configuration (a Frobenius penalty on J, a stochastic encoder with the first-order
implicit decoder, the likelihood without its Jacobian term).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ivae.distributed import gather
from ivae.jacobian import conditioning_gap, encoder_jacobian, frobenius_sq, half_logdet_jjt
from ivae.models.base import (
    ConditionalPrior,
    Model,
    ModelConfig,
    density_ratio,
    kl_gaussians,
    pairwise_log_prob,
    register,
)
from ivae.nets import (
    COUPLING_SCALE_BOUND,
    DIHEDRAL_VIEWS,
    CouplingFlow,
    LeakyFlow,
    Modality,
    backbone_tail,
    build_encoder,
    dihedral_view,
    pretrained_image_encoder,
)

# "exact": J of the whole encoder with respect to x; "head": of the CNN's head with respect to
# its trunk's features (the trunk gets no gradient from the term); "none": the ablation
JACOBIAN_MODES = ("exact", "head", "none")
POSTERIORS = ("deterministic", "stochastic")
FLOWS = ("flow", "leaky-flow")
# eq. 1's weight beside the ratio when the encoder is invertible ("auto"): on the square toy
# 0.3 beat 0.1 on all 8 seeds measured (docs/experiments.md, "How much of eq. 1 on square data")
FLOW_LIKELIHOOD_WEIGHT = 0.3
TAILS = ("efficientnet-lite0-tail", "efficientnet-lite0-stages-tail")  # fine-tuned last block
PRETRAINED = "efficientnet-lite0"  # the whole network on the photos, fine-tuned
ENCODERS = ("auto", "network", "flow", "leaky-flow", *TAILS, PRETRAINED)
SYMMETRIES = ("none", "dihedral")


@dataclass
class ImplicitIVAEConfig(ModelConfig):
    # Default ("auto", None): the density ratio, plus FLOW_LIKELIHOOD_WEIGHT of the flow term
    # when the encoder is the invertible flow of square data (0.1 of eq. 5 for the stochastic
    # posterior). There the flow term breaks the even-function ambiguity of variance-only
    # queries (docs/experiments.md, "Which objective"); on non-square data the ratio alone
    # is better on every seed (docs/experiments.md, "Restarts and schedule"), and the flow
    # term's Jacobian is a subset estimate.
    ratio_weight: float = 1.0  # density-ratio term (entropy of e(X) on the data), eq. 3
    likelihood_weight: float | None = None  # log p(e(x)|y) + 1/2 log det(J J^T), eq. 1
    # eq. 1 from this fraction of the epochs on (the density ratio alone before it): the term
    # then refines codes the ratio has aligned instead of steering them from the start
    likelihood_from: float = 0.0
    # "exact" | "head": the Jacobian of the image network's head on its trunk's features, k x F
    # per item instead of k x pixels (docs/experiments.md, "Which objective on images"); on
    # vector inputs (a backbone's features) the encoder is itself the head, and "head" is J on
    # its input, as "exact" |
    # "none" (the ablation without the Jacobian term)
    jacobian: str = "exact"
    jacobian_samples: int = 64  # batch points per step for the Jacobian term (unbiased subset)
    frobenius_weight: float = 0.0  # penalty on ||J||_F^2: off-manifold sensitivity
    posterior: str = "deterministic"  # "stochastic": q(z|x) with the first-order decoder, eq. 5
    decoder_std: float = 0.1  # s of the first-order implicit decoder (stochastic posterior)
    gauge_weight: float = 0.0  # pins the mean prior log-variance at 0: fixes the code scale
    # "network" | "flow" (affine couplings) | "leaky-flow" (invertible leaky-ReLU MLP) |
    # "auto": the coupling flow when dim x == k, else the network |
    # "efficientnet-lite0-tail": EfficientNet-Lite0's last block and head convolution, then the
    # network, on the map entering that block (`ivae train --finetune-last-block`, ivae.head) |
    # "efficientnet-lite0-stages-tail": the same block, the network on the stage means |
    # "efficientnet-lite0": the whole of it on the photos, from its ImageNet weights, then the
    # network; every layer fine-tunes, the pretrained ones at pretrained_lr_ratio of the lr
    encoder: str = "auto"
    pretrained_lr_ratio: float = 0.1  # learning rate of pretrained layers, relative to the lr
    flow_layers: int = 16  # layers of the invertible encoder (docs/experiments.md, "Which encoder")
    flow_mixing: bool = True  # coupling flow: a learned linear layer before every coupling
    flow_scale_bound: float = COUPLING_SCALE_BOUND  # coupling flow: |log scale| per coupling
    # coupling flow: its first linear layer starts as a whitening of the training inputs
    # (docs/experiments.md, "A whitened start"); runs saved before it started orthogonal
    flow_whiten: bool = True
    # "dihedral": a photo's codes are the mean of the codes of its 8 flips and quarter turns,
    # so they do not change under any of them, as the factors of a top-down photo do not;
    # training steps still see one view each (--augment dihedral). On kitchen it adds two
    # points of R@10 both ways (docs/experiments.md, "Codes of the 8 views") | "none"
    symmetry: str = "none"
    prior_logvar_min: float = -6.0  # range of the prior's log-variances (ConditionalPrior)
    prior_logvar_max: float = 4.0
    # Removed for want of a measurement that they helped; runs saved with them at these
    # no-op values load unchanged (ModelConfig.from_json).
    retired: ClassVar[dict[str, object]] = {
        "conditioning_weight": 0.0,
        "input_noise": 0.0,
        "warmup_steps": 0,
    }
    added: ClassVar[dict[str, object]] = {"flow_scale_bound": 2.0, "flow_whiten": False}

    def __post_init__(self) -> None:
        if self.jacobian not in JACOBIAN_MODES:
            raise ValueError(f"jacobian must be one of {JACOBIAN_MODES}, got {self.jacobian!r}")
        if self.posterior not in POSTERIORS:
            raise ValueError(f"posterior must be one of {POSTERIORS}, got {self.posterior!r}")
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {self.encoder!r}")
        if self.symmetry not in SYMMETRIES:
            raise ValueError(f"symmetry must be one of {SYMMETRIES}, got {self.symmetry!r}")
        if not self.prior_logvar_min < self.prior_logvar_max:
            raise ValueError("prior_logvar_min must be below prior_logvar_max")
        if not 0 <= self.likelihood_from < 1:
            raise ValueError(f"likelihood_from must be in [0, 1), got {self.likelihood_from}")
        if self.flow_layers < 1:
            raise ValueError(f"flow_layers must be at least 1, got {self.flow_layers}")
        if not self.pretrained_lr_ratio >= 0:
            raise ValueError(
                f"pretrained_lr_ratio must be 0 (frozen) or more, got {self.pretrained_lr_ratio}"
            )

    def objective_terms(self) -> list[str]:
        """The terms this configuration trains with, in words, with their weights."""
        jacobian = self.jacobian != "none"
        if self.likelihood_weight is None:  # not built yet: the model resolves "auto"
            return [
                f"density ratio (eq. 3), plus eq. 1 at {FLOW_LIKELIHOOD_WEIGHT:g} for square "
                "data (auto)"
            ]
        terms = []
        if self.ratio_weight > 0:
            terms.append(f"density ratio (eq. 3), weight {self.ratio_weight:g}")
        if self.posterior == "stochastic":
            terms.append(
                f"first-order implicit decoder ELBO (eq. 5), weight {self.likelihood_weight:g}"
            )
        elif self.likelihood_weight > 0:
            volume = "with" if jacobian else "without"
            where = " (J of the network's head on its trunk's features)" * (self.jacobian == "head")
            terms.append(
                f"likelihood (eq. 1) {volume} its Jacobian term 1/2 log det(J Jᵀ){where}, "
                f"weight {self.likelihood_weight:g}"
                + (
                    f", from {self.likelihood_from:.0%} of the epochs on"
                    * (self.likelihood_from > 0)
                )
            )
        if jacobian and self.frobenius_weight > 0:
            terms.append(f"Jacobian penalty ||J||²_F, weight {self.frobenius_weight:g}")
        if self.gauge_weight > 0:
            terms.append(f"scale gauge on the prior's log-variances, weight {self.gauge_weight:g}")
        if not any(w > 0 for w in (self.likelihood_weight, self.frobenius_weight)) or not jacobian:
            terms.append("no Jacobian term: in the density ratio alone the Jacobian cancels")
        return terms


@register
class ImplicitIVAE(Model):
    name = "implicit-ivae"
    Config = ImplicitIVAEConfig
    paper = "Kim, Guerrero & Pavlovic 2021, arXiv 2012.00682"

    def __init__(self, config: ImplicitIVAEConfig, x: Modality, y: Modality):
        super().__init__(config, x, y)
        k = config.latent_dim
        outputs = 2 * k if config.posterior == "stochastic" else k  # (mean, logvar) or e(x)
        flow = self._invertible(config, x)
        if config.likelihood_weight is None:  # "auto": resolved here, saved resolved
            stochastic = config.posterior == "stochastic"
            config.likelihood_weight = FLOW_LIKELIHOOD_WEIGHT if flow else 0.1 * stochastic
        if flow == "flow":
            self.encoder = CouplingFlow(
                k, config.hidden, config.flow_layers, config.flow_mixing, config.flow_scale_bound
            )
        elif flow == "leaky-flow":
            self.encoder = LeakyFlow(k, config.flow_layers)
        elif config.encoder == PRETRAINED:
            self.encoder = pretrained_image_encoder(x, outputs, config.hidden, config.depth)
        elif config.encoder in TAILS:
            stage_means = config.encoder == "efficientnet-lite0-stages-tail"
            self.encoder = backbone_tail(x, outputs, config.hidden, config.depth, stage_means)
        else:
            self.encoder = build_encoder(x, outputs, config.hidden, config.depth, config.width)
        if config.jacobian == "head" and x.kind == "image" and not hasattr(self.encoder, "trunk"):
            raise ValueError(
                "jacobian='head' needs an image encoder made of a trunk and a head (the CNN "
                f"on photos); this one is a {type(self.encoder).__name__}: use jacobian='exact'"
            )
        if config.symmetry == "dihedral" and not (x.kind == "image" and x.shape[-1] == x.shape[-2]):
            raise ValueError(
                "symmetry='dihedral' averages the codes of a photo's flips and quarter turns: "
                f"it needs square images, not {x.kind} {x.shape}; use symmetry='none'"
            )
        self.prior = ConditionalPrior(
            y, k, config.hidden, config.depth, (config.prior_logvar_min, config.prior_logvar_max)
        )

    def parameter_groups(self) -> list[dict]:
        """With a pretrained network in the encoder, its layers train at pretrained_lr_ratio
        of the learning rate: the head and the prior start from scratch, it does not."""
        if self.config.encoder != PRETRAINED:
            return super().parameter_groups()
        pretrained = list(self.encoder[0].parameters())
        known = {id(p) for p in pretrained}
        rest = [p for p in self.parameters() if id(p) not in known]
        return [
            {"params": rest, "lr_ratio": 1.0},
            {"params": pretrained, "lr_ratio": self.config.pretrained_lr_ratio},
        ]

    @staticmethod
    def _invertible(config: ImplicitIVAEConfig, x: Modality) -> str | None:
        """The invertible encoder to build ("flow" or "leaky-flow"), or None for a network."""
        square = x.kind == "vector" and x.shape == (config.latent_dim,)
        if config.encoder in FLOWS and not square:
            raise ValueError(
                f"encoder={config.encoder!r} needs vector data with as many "
                f"dimensions as latent_dim ({config.latent_dim}); "
                f"got {x.kind} {x.shape}"
            )
        if config.posterior != "deterministic" or config.encoder not in ("auto", *FLOWS):
            return None
        if config.encoder == "auto":
            return "flow" if square else None
        return config.encoder

    # ---- the two encoders ----------------------------------------------------------------
    @property
    def starts_from_data(self) -> bool:
        return isinstance(self.encoder, CouplingFlow) and self.config.flow_whiten

    def start_from(self, x: torch.Tensor) -> None:
        self.encoder.whiten(x)  # its first linear layer (docs/experiments.md, "A whitened start")

    def code(self, x: torch.Tensor) -> torch.Tensor:
        """(B, ...) -> (B, k): e(x), the posterior mean of a stochastic encoder."""
        return self.encoder(x)[:, : self.config.latent_dim]

    def encode_x(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.symmetry == "dihedral":
            views = [self.code(dihedral_view(x, v)) for v in range(DIHEDRAL_VIEWS)]
            return torch.stack(views).mean(0)
        return self.code(x)

    def encode_y(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.prior(y)

    # ---- the objective -------------------------------------------------------------------
    def selection_score(self, terms: dict[str, float]) -> float:
        """The validation density ratio (eq. 3), not the whole loss: the likelihood's
        log-volume can grow off the data manifold without better factors (docs/method.md,
        pitfall 1), the ratio cannot exceed log B and is what identifies them. Measured
        choice: docs/experiments.md, "Restarts"."""
        return terms["ratio"]

    @property
    def likelihood_weight(self) -> float:
        """eq. 1's weight at this point of training (``likelihood_from``)."""
        c = self.config
        return c.likelihood_weight if self.progress >= c.likelihood_from else 0.0

    def _needs_jacobian(self) -> bool:
        c = self.config
        weights = (self.likelihood_weight, c.frobenius_weight)
        stochastic = c.posterior == "stochastic"
        return c.jacobian != "none" and (stochastic or any(w > 0 for w in weights))

    def _exact_log_volume(self) -> bool:
        """An invertible encoder gives log |det J| in closed form on the whole batch; the
        Frobenius penalty still needs J itself."""
        return (
            hasattr(self.encoder, "forward_with_logdet")
            and self._needs_jacobian()
            and self.config.frobenius_weight == 0
        )

    def _codes(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """z = e(x) (B, k) and J (m, k, D) on the first m points (the batch is shuffled)."""
        m = min(self.config.jacobian_samples, len(x)) if self._needs_jacobian() else 0
        if not m:
            return self.code(x), None
        if self.config.jacobian == "head" and hasattr(self.encoder, "trunk"):
            # J of the head alone, on the trunk's features of the first m points, detached:
            # the term trains the head; a trunk trained by it could shrink its features and
            # grow the head's volume without bound (docs/method.md, pitfall 1)
            k, features = self.config.latent_dim, self.encoder.trunk(x)
            z = self.encoder.head(features)[:, :k]
            return z, encoder_jacobian(lambda f: self.encoder.head(f)[:, :k], features[:m])[1]
        z_j, jac = encoder_jacobian(self.code, x[:m])
        return (torch.cat([z_j, self.code(x[m:])]) if m < len(x) else z_j), jac

    def loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        c = self.config
        x, y = batch["x"], batch["y"]
        mean, logvar = self.prior(y)  # (B, k) each
        if self._exact_log_volume():  # invertible encoder: log |det J| on the whole batch
            (z, log_volume), jac = self.encoder.forward_with_logdet(x), None
        else:
            (z, jac), log_volume = self._codes(x), None
        # Under torchrun the negatives span the global batch: this process's B codes against
        # the priors of all N*B queries (gathered with gradients, ivae.distributed); the mean
        # of the N processes' ratios is then the ratio of one process on the whole batch.
        (means, logvars), offset = gather(mean, logvar)
        logp = pairwise_log_prob(z, means, logvars)  # (B, N*B): code i under query j's prior
        positive = logp.diagonal(offset)  # (B,): code i under its own query's prior
        ratio = density_ratio(logp, offset)
        terms = {"ratio": ratio.mean(), "log_prior": positive.mean()}
        if c.posterior == "stochastic":
            terms.update(self._elbo_terms(x, mean, logvar, jac))
            fit = terms["elbo"]
        else:
            terms.update(self._flow_terms(positive, jac, log_volume))
            fit = terms["likelihood"]
        loss = -(c.ratio_weight * terms["ratio"] + self.likelihood_weight * fit)
        # The objective is invariant to z -> c z (the prior follows); without a gauge the scale
        # drifts until the prior's variances sit at a bound of their range and stop learning.
        terms["gauge"] = logvars.mean() ** 2  # over the global batch: not a mean of means
        loss = loss + c.gauge_weight * terms["gauge"]
        if jac is not None:
            loss = loss + c.frobenius_weight * terms["jacobian_frobenius"]
        return {"loss": loss, **terms}

    def _jacobian_terms(self, jac: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            "log_volume": half_logdet_jjt(jac).mean(),
            "jacobian_frobenius": frobenius_sq(jac).mean(),
            "jacobian_conditioning": conditioning_gap(jac).mean(),
        }

    def _flow_terms(
        self,
        positive: torch.Tensor,
        jac: torch.Tensor | None,
        log_volume: torch.Tensor | None = None,
    ) -> dict:
        """Eq. 1: log p(e(x)|y) + 1/2 log det(J J^T), on the whole batch when the encoder is
        invertible (``log_volume`` (B,) given), else on the Jacobian subset."""
        if log_volume is not None:
            return {
                "log_volume": log_volume.mean(),
                "likelihood": positive.mean() + log_volume.mean(),
            }
        if jac is None:
            return {"likelihood": positive.mean()}
        terms = self._jacobian_terms(jac)
        terms["likelihood"] = positive[: len(jac)].mean() + terms["log_volume"]
        return terms

    def _elbo_terms(
        self, x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor, jac: torch.Tensor | None
    ) -> dict:
        """Eq. 5: a stochastic encoder q(z|x) = N(e(x), diag sigma^2(x)) decoded to first order,
        x' = x + J^+ (z - e(x)), so E_q log p(x|z) = -tr(Sigma (J J^T)^-1) / (2 s^2) + const."""
        k = self.config.latent_dim
        q_mean, q_logvar = self.encoder(x).split(k, dim=-1)
        q_logvar = (q_logvar - 6.0).clamp(-12.0, 6.0)  # start narrow: J is small at init
        kl = kl_gaussians(q_mean, q_logvar, mean, logvar)  # (B,)
        terms = {"kl": kl.mean()}
        if jac is None:  # no Jacobian: the reconstruction is unknown; KL alone
            terms["elbo"] = -kl.mean()
            return terms
        terms.update(self._jacobian_terms(jac))
        gram = jac @ jac.transpose(1, 2)  # (m, k, k)
        eye = torch.eye(k, device=gram.device, dtype=gram.dtype)
        inv_diag = torch.linalg.inv(gram + 1e-6 * eye).diagonal(dim1=1, dim2=2)  # (m, k)
        recon = -(q_logvar[: len(jac)].exp() * inv_diag).sum(1) / (2 * self.config.decoder_std**2)
        terms["reconstruction"] = recon.mean()
        terms["elbo"] = recon.mean() - kl[: len(jac)].mean()
        return terms
