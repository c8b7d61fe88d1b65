"""The model interface and the registry.

Every model maps an image/vector ``x`` to factor values ``z`` (``encode_x``) and a query ``y``
to a Gaussian over ``z`` (``encode_y``), and returns its own named loss terms from
``loss(batch)``, so the trainer, the evaluator and the dashboard never look inside.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import ClassVar

import torch
from torch import nn

from ivae.nets import Modality, build_encoder

LOG_2PI = math.log(2 * math.pi)


@dataclass
class ModelConfig:
    """Fields every model has; each model's config extends it with its own."""

    latent_dim: int = 5
    hidden: int = 256  # width of the MLP layers / image encoder head
    depth: int = 3  # layers of the vector MLPs
    width: int = 16  # channels of the first image convolutions (doubling every third layer)

    # Options a model no longer has -> the value at which they did nothing. A saved run that
    # holds one at that value loads unchanged; any other value is refused by name.
    retired: ClassVar[dict[str, object]] = {}
    # Options added since runs were first saved -> the value those runs were trained with,
    # which a saved config without the option loads at (the default may differ).
    added: ClassVar[dict[str, object]] = {}

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> ModelConfig:
        d = cls._without_retired(d)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} option(s) {unknown}; known: {sorted(known)}")
        return cls(**d)

    @classmethod
    def from_saved(cls, d: dict) -> ModelConfig:
        """The config of a saved run: an option added after it was saved takes the value
        it was trained with, not today's default."""
        return cls.from_json({**cls.added, **d})

    @classmethod
    def _without_retired(cls, d: dict) -> dict:
        for key in sorted(set(d) & set(cls.retired)):
            if d[key] != cls.retired[key]:
                raise ValueError(
                    f"option {key}={d[key]!r} was removed from {cls.__name__} (no measurement "
                    f"kept it); only its no-op value {cls.retired[key]!r} still loads"
                )
        return {k: v for k, v in d.items() if k not in cls.retired}


def gaussian_log_prob(z: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mean, diag exp(logvar)), summed over the last dimension."""
    return -0.5 * (((z - mean) ** 2) * torch.exp(-logvar) + logvar + LOG_2PI).sum(-1)


def pairwise_log_prob(z: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """(N, k), (M, k), (M, k) -> (N, M): every code under every query's prior.

    The square (z - m)^2 / v expanded into z^2 / v - 2 z m / v + m^2 / v: two matrix
    products instead of (N, M, k) elementwise tensors, a sixth of the time at N = M = 256.
    """
    inv = torch.exp(-logvar)  # (M, k)
    quad = (z * z) @ inv.T - 2 * z @ (mean * inv).T + (mean * mean * inv).sum(-1)
    return -0.5 * (quad + logvar.sum(-1) + z.shape[-1] * LOG_2PI)


def density_ratio(logp: torch.Tensor, offset: int = 0) -> torch.Tensor:
    """Eq. 3 per code: (B, M) log-densities of B codes under M queries' priors, code i's own
    query in column i + ``offset`` -> (B,) log p(z_i | y_i) - log 1/M sum_j p(z_i | y_j)."""
    return logp.diagonal(offset) - (torch.logsumexp(logp, dim=1) - math.log(logp.shape[1]))


def prior_gaussian(
    out: torch.Tensor, logvar_range: tuple[float, float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """A prior network's output (B, 2k) -> mean, logvar (B, k), the log-variance squashed into
    ``logvar_range`` by a tanh centred in it (slope 1 at 0; ConditionalPrior)."""
    low, high = logvar_range
    mean, raw = out.chunk(2, dim=-1)
    mid, half = (high + low) / 2, (high - low) / 2
    return mean, mid + half * torch.tanh(raw / half)


def kl_gaussians(m1, lv1, m2, lv2) -> torch.Tensor:
    """KL(N(m1, e^lv1) || N(m2, e^lv2)) for diagonal Gaussians, summed over the last dim."""
    return 0.5 * (lv2 - lv1 + (torch.exp(lv1) + (m1 - m2) ** 2) * torch.exp(-lv2) - 1).sum(-1)


class ConditionalPrior(nn.Module):
    """The factorial conditional prior p(z|y) = prod_i N(z_i; mu_i(y), sigma_i^2(y)).

    An exponential family with sufficient statistics (z, z^2) whose natural parameters vary
    with y: the condition of iVAE's identifiability theorem (Khemakhem et al. 2020, Thm 1).
    The log-variance is squashed into [low, high] so no factor can shrink to a point and
    inflate the likelihood without bound. The squashing is a tanh centred in the range: it
    starts in its linear part, so every query's variance gets a gradient (a sigmoid started
    near a bound saturates there and freezes the variances:
    docs/experiments.md#what-keeps-the-prior-trainable).
    """

    def __init__(
        self,
        modality: Modality,
        latent_dim: int,
        hidden: int,
        depth: int = 3,
        logvar_range: tuple[float, float] = (-6.0, 4.0),
    ):
        super().__init__()
        self.net = build_encoder(modality, 2 * latent_dim, hidden, depth)
        self.low, self.high = logvar_range

    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return prior_gaussian(self.net(y), (self.low, self.high))


class Model(nn.Module):
    """Base class. Subclasses set ``name``, ``Config`` and ``paper`` and implement the rest."""

    name: ClassVar[str]
    Config: ClassVar[type[ModelConfig]] = ModelConfig
    paper: ClassVar[str] = ""
    # the fraction of the epochs trained before the present one, which the trainer sets at
    # the start of every epoch; a loss whose terms follow a schedule reads it (1: trained)
    progress: float = 1.0

    def __init__(self, config: ModelConfig, x: Modality, y: Modality):
        super().__init__()
        self.config, self.x_modality, self.y_modality = config, x, y

    def loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{"loss": scalar to minimise, <term>: scalar, ...}`` for a batch ``{"x", "y"}``."""
        raise NotImplementedError

    def parameter_groups(self) -> list[dict]:
        """The optimizer's parameter groups, each with its learning rate relative to the
        run's (``lr_ratio``): one group at 1 unless a model trains pretrained layers slower."""
        return [{"params": list(self.parameters()), "lr_ratio": 1.0}]

    @property
    def starts_from_data(self) -> bool:
        """Whether a freshly initialised model wants ``start_from`` before training."""
        return False

    def start_from(self, x: torch.Tensor) -> None:
        """A data-dependent start, from ``x``, a sample of the training split's inputs."""

    def encode_x(self, x: torch.Tensor) -> torch.Tensor:
        """(B, ...) -> (B, k) factor values (posterior means)."""
        raise NotImplementedError

    def encode_y(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, ...) -> mean, logvar (B, k) of the Gaussian the query puts on the factors."""
        raise NotImplementedError

    def selection_score(self, terms: dict[str, float]) -> float:
        """How good a (briefly trained) model is by its validation objective's named terms
        (``loss``'s keys), higher is better: what chooses among restarts (ivae.train). The
        default is the objective itself."""
        return -terms["loss"]

    def score(self, z: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """(N, k) codes vs (M, k) query Gaussians -> (N, M) match scores, higher is better."""
        return pairwise_log_prob(z, mean, logvar)


REGISTRY: dict[str, type[Model]] = {}


class UnknownModel(ValueError):
    pass


def register(cls: type[Model]) -> type[Model]:
    REGISTRY[cls.name] = cls
    return cls


def model_class(name: str) -> type[Model]:
    import ivae.models  # noqa: F401  (fills the registry)

    if name not in REGISTRY:
        raise UnknownModel(f"unknown model {name!r}; choose one of: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def build_model(name: str, options: dict, x: Modality, y: Modality, saved: bool = False) -> Model:
    """``saved``: ``options`` is a saved run's config (ModelConfig.from_saved)."""
    cls = model_class(name)
    config = cls.Config.from_saved(options) if saved else cls.Config.from_json(options)
    return cls(config, x, y)
