"""The model registry: importing this package registers every model."""

from ivae.models import contrastive, implicit_ivae, vae  # noqa: F401
from ivae.models.base import REGISTRY, Model, ModelConfig, UnknownModel, build_model, model_class

__all__ = ["REGISTRY", "Model", "ModelConfig", "UnknownModel", "build_model", "model_class"]
