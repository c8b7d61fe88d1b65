"""Held-out evaluation: MCC against the true factors and cross-modal retrieval."""

from __future__ import annotations

import numpy as np
import torch

from ivae.data.dataset import Dataset
from ivae.encoding import encode_batched
from ivae.metrics import mcc, nuisance_leakage, retrieval
from ivae.models.base import Model


@torch.no_grad()
def encode(
    model: Model, data: Dataset, batch_size: int = 512, device: str | torch.device = "cpu"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Codes of every item: z = e(x) (N, k) and the query Gaussian mean, logvar (N, k)."""
    model.eval()
    (z,) = encode_batched(model, "x", data.x, batch_size, device)
    mean, logvar = encode_batched(model, "y", data.y, batch_size, device)
    return z, mean, logvar


def factor_scores(data: Dataset, z: np.ndarray) -> dict:
    """The MCC part of the report; every value ``None`` when there is no ground truth."""
    if data.factors is None or len(data) < 2:
        return {
            "mcc": None,
            "mcc_spearman": None,
            "mcc_per_factor": None,
            "correlation_matrix": None,
        }
    pearson = mcc(data.factors, z)
    per_factor = {
        name: (None if np.isnan(v) else float(v))
        for name, v in zip(data.factor_names, pearson["per_factor"])
    }
    return {
        "mcc": pearson["mcc"],
        "mcc_spearman": mcc(data.factors, z, "spearman")["mcc"],
        "mcc_per_factor": per_factor,
        "correlation_matrix": np.round(pearson["correlation"], 6).tolist(),
    }


@torch.no_grad()
def retrieval_scores(
    model: Model,
    z: np.ndarray,
    mean: np.ndarray,
    logvar: np.ndarray,
    subset_size: int = 1000,
    repeats: int = 10,
    seed: int = 0,
) -> dict:
    def score(index: np.ndarray) -> np.ndarray:
        t = [torch.from_numpy(a[index]) for a in (z, mean, logvar)]
        return model.score(*t).numpy()

    return retrieval(score, len(z), subset_size, repeats, seed)


def leakage(data: Dataset, z: np.ndarray) -> dict | None:
    """Largest |corr| of the factor-matched latents with each nuisance (None without truth)."""
    if data.factors is None or data.nuisances is None or len(data) < 2:
        return None
    matched = mcc(data.factors, z)["matching"]
    values = nuisance_leakage(data.nuisances, z, matched)
    return {name: float(v) for name, v in zip(data.nuisance_names, values)}


def evaluate(
    model: Model,
    data: Dataset,
    split: str = "test",
    subset_size: int = 1000,
    repeats: int = 10,
    device: str | torch.device = "cpu",
) -> dict:
    """The ``ivae evaluate --json`` report (docs/design.md schema) on one split of ``data``."""
    part = data.part(split)
    if len(part) == 0:
        raise ValueError(f"the {split!r} split of {data.source or data.name} is empty")
    z, mean, logvar = encode(model, part, device=device)
    model_cpu = model.to("cpu")
    report = {
        "model": model.name,
        "latent_dim": int(z.shape[1]),
        "n_items": len(part),
        "split": split,
        **factor_scores(part, z),
    }
    report["retrieval"] = retrieval_scores(model_cpu, z, mean, logvar, subset_size, repeats)
    model.to(device)
    return report
